/**
 * unified-orchestrator: run fleets of AI agents (or any async workers) in-process.
 * @packageDocumentation
 */
export { UnifiedOrchestrator } from './orchestrator/orchestrator.js';
export type { HaltOptions, OrchestratorStats, RunHistory, TenantOptions } from './orchestrator/orchestrator.js';
export { DURABILITY_DEFAULTS } from './store/durability-options.js';
export type { DurabilityOptions } from './store/durability-options.js';
export type { DurableStats, DurableTaskHandle } from './store/durable-runs.js';
export type { RunWriterStats } from './store/run-writer.js';
export type { ControlState } from './orchestrator/cluster-link.js';
export type { OrchestratorState } from './health/health-monitor.js';
export type { EngineOptions } from './engine/options.js';
export type { ActorOptions, AuditAction, AuditEntry } from './health/audit.js';

// The parts the orchestrator builds and wires: named for types and docs; users reach them through UnifiedOrchestrator.
export type { AgentPoolManager, RoutingListener } from './pool/agent-pool-manager.js';
export type { WaitingDemand } from './pool/pool.js';
export type { RegisterAgentOptions } from './pool/options.js';
export type { EngineStats, TaskExecutionEngine, TaskObserver, TaskSnapshot } from './engine/task-execution-engine.js';
export type { ResourceManager, ResourceStats } from './resources/resource-manager.js';
export type { HealthMonitor, HealthReport, HealthStatus, PoolHealth, StoreHealth } from './health/health-monitor.js';
export {
  COMPAT_METRIC_NAMES,
  DEFAULT_METRIC_PREFIX,
  METRIC_NAMES,
  STORE_METRIC_NAMES,
  WORKFLOW_METRIC_NAMES,
} from './health/metric-names.js';
export { MemoryBridge, MemoryHub } from './bridge/memory-bridge.js';
export type { MemoryBridgeOptions } from './bridge/memory-bridge.js';
export { RedisBridge } from './bridge/redis-bridge.js';
export type { RedisBridgeOptions } from './bridge/redis-bridge.js';
export { REDIS_BRIDGE_DEFAULTS } from './bridge/redis-options.js';
export { RemoteTaskError } from './bridge/bridge.js';
export type {
  BridgeHost,
  BridgeStats,
  HandOff,
  HandOffResult,
  HandOffNotice,
  HandOffProgress,
  HandOffOptions,
  BridgeStatus,
  CommunicationBridge,
  ControlMessage,
  NodeInfo,
  NodeStatus,
  StandingEntry,
  TrafficSetting,
  WireTask,
} from './bridge/bridge.js';

// Compat: the legacy API over the unified orchestrator, and the gradual move from a legacy implementation.
export { OrchestratorsCompatibilityAdapter } from './compat/adapter.js';
export { bucketOf, TrafficRouter } from './compat/traffic-router.js';
export type {
  ShadowComparison,
  ShadowSide,
  TrafficRouterEvents,
  TrafficRouterStats,
  TrafficSide,
} from './compat/traffic-router.js';
export type { CompatibilityAdapterOptions, RoutedCall, TrafficRouterOptions } from './compat/options.js';
export {
  isLegacyError,
  LEGACY_ERROR_CODES,
  LEGACY_INTERNAL_ERROR,
  LEGACY_PRIORITIES,
  LEGACY_TASK_FAILED,
} from './compat/legacy.js';
export type {
  LegacyAgentState,
  LegacyAgentStatus,
  LegacyErrorResponse,
  LegacyImplementation,
  LegacyOrchestrator,
  LegacyOrchestratorSnake,
  LegacyPriority,
  LegacyResult,
  LegacyShutdown,
  LegacyTask,
  LegacyTaskState,
  LegacyTaskStatus,
} from './compat/legacy.js';
export type { SpanAttributes, SpanLike, TracerLike, TracingMode } from './health/tracing.js';
export type { SlaBreach, SlaFigures, SlaMetric } from './health/sla.js';

export { AGENT_STATES, canTransition } from './pool/agent-state.js';
export type { AgentState } from './pool/agent-state.js';
export type { Agent, AgentFactory, AgentFactoryContext, TaskContext } from './pool/agent.js';
export type { AgentSnapshot } from './pool/agent-record.js';
export type { PoolSnapshot } from './pool/pool.js';
export type { Task, TaskHandle } from './engine/task.js';
export { ProgressFeed } from './engine/progress.js';
export type { ProgressIterateOptions, ProgressIterator, ProgressStream, ProgressUpdate } from './engine/progress.js';
export type { DeadLetter } from './engine/dead-letter.js';

export { HEALTH_DEFAULTS, METRICS_DEFAULTS } from './health/options.js';
export { AUDIT_DEFAULTS } from './health/audit.js';
export {
  BREAKER_DEFAULTS,
  BUDGET_DEFAULTS,
  defaultRetryable,
  PRESSURE_DEFAULTS,
  RATE_LIMIT_DEFAULTS,
  RETRY_DEFAULTS,
} from './resources/options.js';
export { ADAPTER_DEFAULTS, TRAFFIC_ROUTER_DEFAULTS } from './compat/options.js';
export { ORCHESTRATOR_DEFAULTS } from './config.js';
export { POOL_DEFAULTS } from './pool/options.js';
export { STOP_DEFAULTS } from './orchestrator/stop-options.js';
export type { HealthOptions, MetricsOptions, SlaOptions, SlaThresholds } from './health/options.js';
export type { AuditOptions } from './health/audit.js';
export type {
  BreakerOptions,
  BudgetOptions,
  PressureOptions,
  RateLimitOptions,
  ResolvedBreakerOptions,
  ResolvedRetryOptions,
  RetryOptions,
} from './resources/options.js';
export type { Clock } from './util/timers.js';
export type { OrchestratorOptions } from './config.js';
export type { PoolOptions } from './pool/options.js';
export type { RoutingStrategyName } from './engine/routing-strategy.js';
export type { StopOptions } from './orchestrator/stop-options.js';
export type { BreakerState } from './resources/circuit-breakers.js';
export type { DependencyBreakerOptions, GuardedFunction } from './resources/dependency-breaker.js';
export type { PressureLevel } from './resources/pressure.js';
export type { ResourceSample, ResourceSampler } from './resources/options.js';
export type { RateLimiterSnapshot } from './resources/rate-limiter.js';
export { retryAfterMs } from './resources/retry-after.js';
export type { RetryPolicy, RetryRunOptions } from './resources/retry-policy.js';

export {
  AgentCreationError,
  AgentNotFoundError,
  BreakerOpenError,
  BridgeWriteError,
  StoreUnavailableError,
  BudgetExceededError,
  ClusterLimitsUnavailableError,
  DuplicateAgentError,
  IllegalStateTransitionError,
  isOrchestratorError,
  isOrchestratorErrorCode,
  NoCapableAgentError,
  NoCapableNodeError,
  OrchestratorError,
  OrchestratorHaltedError,
  OrchestratorNotStartedError,
  OrchestratorStoppedError,
  PoolAtCapacityError,
  QueueFullError,
  ResourcePressureError,
  TaskCancelledError,
  TaskDeadLetteredError,
  TaskNotFoundError,
  TaskTimeoutError,
  UnknownRoleError,
  ValidationError,
  WorkflowNonDeterminismError,
  WorkflowLimitError,
  WorkflowStepError,
  SignalTimeoutError,
  WorkflowNotFoundError,
  RunNotFoundError,
} from './errors.js';
export type { AttemptRecord, OrchestratorErrorCode } from './errors.js';

export type { OrchestratorEventName, OrchestratorEvents, OrchestratorListener } from './events.js';
export type { SlaEvent } from './health/events.js';
export type { TaskFailureOutcome, TaskOutcome } from './engine/events.js';

// Durable runs: the store of record (src/store/store.ts) and its three implementations.
export { MemoryStore } from './store/memory-store.js';
export type { MemoryStoreOptions, StoreClock } from './store/memory-store.js';
export { PostgresStore } from './store/postgres-store.js';
export type { PgPoolLike, PostgresStoreOptions } from './store/postgres-store.js';
export { PGliteStore } from './store/pglite-store.js';
export type { PGliteLike, PGliteStoreOptions } from './store/pglite-store.js';
export type { SqlRunStore, SqlStoreOptions } from './store/sql/sql-store.js';
export { isTerminal } from './store/store.js';
export type {
  ClaimRequest,
  ClaimResult,
  InsertOutcome,
  NewRun,
  ParkInput,
  ParkOutcome,
  WorkflowHistory,
  SignalInput,
  SignalOutcome,
  SignalRecord,
  StepInput,
  StepKind,
  StepRecord,
  StepStatus,
  UnclaimedRuns,
  RunEvent,
  RunEventInput,
  RunEventKind,
  RunPage,
  RunQuery,
  RunRecord,
  RunStatus,
  RunStore,
  StoredError,
  StoredTask,
  TerminalRunStatus,
} from './store/store.js';

// Durable workflows (src/workflow/).
export { isWorkflowInterrupt, WorkflowInterrupt } from './workflow/workflow.js';
export type {
  SendSignalOptions,
  SignalWaitOptions,
  StartWorkflowOptions,
  StepContext,
  StepOptions,
  WorkflowContext,
  WorkflowFunction,
  WorkflowHandle,
  WorkflowOptions,
} from './workflow/workflow.js';
export type { WorkflowStats } from './workflow/workflow-runner.js';
export type { CheckpointStats } from './workflow/checkpoints.js';
export type { WorkflowEvents } from './workflow/events.js';
export type { ScheduleInfo, ScheduleTarget } from './workflow/scheduler.js';
export { MAX_CATCH_UP, resolveSchedule } from './workflow/schedule.js';
export type {
  CronSchedule,
  CronScheduleSpec,
  IntervalSchedule,
  IntervalScheduleSpec,
  MissedTickPolicy,
  Schedule,
  ScheduleSpec,
  ScheduleSpecCommon,
} from './workflow/schedule.js';
