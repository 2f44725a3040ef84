/**
 * Every metric the orchestrator exports, in one place: the names dashboards and alert rules are written against.
 * Each is `prefix + name`; the prefix defaults to `unified_orchestrator_`.
 * Label values are bounded: task types beyond `maxTaskTypes` are reported as `other`, and no label carries an id.
 */
export const METRIC_NAMES = Object.freeze({
  /** Counter {type, outcome}: tasks that reached a terminal state. */
  tasks: 'tasks_total',
  /** Histogram {type, outcome}: seconds from acceptance to the terminal state. */
  taskDuration: 'task_duration_seconds',
  /** Histogram {type}: seconds a task waited for an agent before an attempt started. */
  queueWait: 'queue_wait_seconds',
  /** Gauge: tasks waiting for an agent. */
  queueDepth: 'queue_depth',
  /** Gauge: attempts running. */
  tasksRunning: 'tasks_running',
  /** Counter: attempts after the first. */
  retries: 'retries_total',
  /** Gauge {role, state}: agents by pool (or `role` label, `none` for unlabelled outside agents) and lifecycle state. */
  agents: 'agents',
  /** Gauge {role}: 1 while the pool is healthy, 0 when it is below its minimum or cannot recover. */
  poolHealthy: 'pool_healthy',
  /** Gauge {state}: agent circuit breakers by state (closed, open, half-open). */
  agentBreakers: 'agent_breakers',
  /** Gauge {breaker}: a dependency breaker's state: 0 closed, 1 half-open, 2 open. */
  dependencyBreakerState: 'dependency_breaker_state',
  /** Gauge: resource pressure: 0 normal, 1 elevated, 2 critical. */
  pressure: 'resource_pressure',
  /** Counter {role, reason}: agents replaced by the HealthMonitor (`health-check`, `stuck`). */
  recoveries: 'recoveries_total',
  /** Counter {type, metric}: SLA thresholds crossed (`p50`, `p95`, `p99`, `error_rate`). */
  slaViolations: 'sla_violations_total',
  /** Gauge {type, metric}: 1 while that SLA threshold is crossed. */
  slaBreached: 'sla_breached',
  /** Counter: routing decisions answered from the routing cache. */
  routingCacheHits: 'routing_cache_hits_total',
  /** Counter: routing decisions that had to build their candidate set. */
  routingCacheMisses: 'routing_cache_misses_total',
  /** Gauge: overall health: 0 healthy, 1 degraded, 2 unhealthy. */
  health: 'health_status',
  /** Gauge: 1 while the orchestrator is halted (its waiting work held), 0 otherwise. */
  halted: 'halted',
});

/**
 * The metrics of the durable layer, registered beside {@link METRIC_NAMES} (same prefix) only when a `store` is
 * configured: without one, none of these names exists. Writes are counted per statement (a batch), never per task.
 */
export const STORE_METRIC_NAMES = Object.freeze({
  /** Histogram {kind}: seconds a write statement to the store took (`insert` of runs, `append` of events). */
  writeDuration: 'store_write_duration_seconds',
  /** Histogram {kind}: runs (`insert`) or events (`append`) in one write statement. */
  batchSize: 'store_batch_size',
  /** Counter {operation}: store operations that failed (`insert`, `append`, `heartbeat`, `claim`, `prune`). */
  writeFailures: 'store_write_failures_total',
  /** Counter {recovered}: runs taken over from the store; `recovered="true"` when their node died holding them. */
  runsAdopted: 'runs_adopted_total',
  /** Counter: progress events dropped because the store was down longer than `durability.maxBufferedEvents` holds. */
  eventsDropped: 'store_events_dropped_total',
  /** Gauge: events waiting to be written to the store. */
  eventsBuffered: 'store_events_buffered',
  /** Gauge: 1 while the store answers (the last write or lease renewal worked), 0 while it fails. */
  available: 'store_available',
  /** Gauge: due runs no live node took for `durability.unclaimedAfterMs` (no node that can serve them is up). */
  unclaimed: 'runs_unclaimed',
});

/**
 * The metrics of workflows, registered beside {@link METRIC_NAMES} (same prefix) once the orchestrator hosts workflow
 * runs (a `store` is configured, or a workflow is registered). The `workflow` label is a registered workflow's name
 * (bounded by the code), the `kind` label a step kind (`task`, `step`, `signal`, `sleep`).
 */
export const WORKFLOW_METRIC_NAMES = Object.freeze({
  /** Counter {workflow, outcome}: workflow runs that ended on this node (`completed`, `failed`, `cancelled`, `timed-out`). */
  runs: 'workflow_runs_total',
  /** Counter {workflow}: times a run parked here to wait for a signal or a timer (holding nothing in memory). */
  parks: 'workflow_parks_total',
  /** Histogram {workflow, kind, ok}: seconds a step took when it ran (not replayed), its wait included for signals and sleeps. */
  stepDuration: 'workflow_step_duration_seconds',
  /** Counter {workflow}: steps returned from their checkpoints on a replay (after a park, a restart or a take-over). */
  stepsReplayed: 'workflow_steps_replayed_total',
  /** Gauge: workflow runs executing on this node now. */
  active: 'workflow_runs_active',
});

/** The default prefix of metric names: the orchestrator's (`metrics.prefix`) and a TrafficRouter's. */
export const DEFAULT_METRIC_PREFIX = 'unified_orchestrator_';

/** The metrics of a TrafficRouter (compat), on the registry and with the prefix it was given. */
export const COMPAT_METRIC_NAMES = Object.freeze({
  /** Counter {method, side}: legacy calls a TrafficRouter sent to each side (`legacy`, `unified`). */
  calls: 'compat_calls_total',
  /** Histogram {method, side}: seconds a legacy call took on each side (shadow runs included, as side `shadow`). */
  callDuration: 'compat_call_duration_seconds',
  /** Counter {method, result}: shadow comparisons (`match`, `mismatch`, `incomplete` when a side did not finish in time, `skipped` past `maxShadowInFlight`). */
  shadowComparisons: 'compat_shadow_comparisons_total',
  /** Counter {method, kind}: differences found in shadow mode (`outcome`, `error_code`, `result`, `latency`). */
  shadowDifferences: 'compat_shadow_differences_total',
  /** Gauge: the share of legacy calls routed to the unified orchestrator, 0 to 100. */
  trafficPercent: 'compat_traffic_percent',
  /** Gauge: 1 while shadow mode runs. */
  shadow: 'compat_shadow_enabled',
});
