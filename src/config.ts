/**
 * Options, their defaults and their validation: the one place where defaults live.
 * Each `XOptions` type has every field optional (but the few that have no sensible default), one frozen
 * defaults object, and a resolved type. Resolution returns a new object and never mutates the caller's.
 */
import { ValidationError } from './errors.js';
import type { AgentFactory } from './pool/agent.js';
import type { ResourceSampler } from './resources/pressure.js';
import type { TracerLike, TracingMode } from './health/tracing.js';

/** The longest delay a Node timer can hold (about 24.8 days); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Agents one pool may hold at most: a bound on memory and on creations queued at start. */
export const MAX_POOL_AGENTS = 10_000;

/** A monotonic clock in milliseconds. Tests swap it; the default is `performance.now()`. */
export interface Clock {
  /** The current time in ms. Only differences between readings matter; it must never go backwards. */
  now(): number;
}

/** The routing strategies. `score` weighs capability fit, specialisation, load, success rate and latency. */
export type RoutingStrategyName = 'score' | 'least-loaded' | 'round-robin';

/**
 * The retry policy of task attempts, agent creation and bridge reconnects: exponential backoff with full jitter
 * (attempt n waits a random time in [0, min(maxDelayMs, baseDelayMs * 2^(n-1))]), or the error's own retry-after
 * hint when it carries one.
 */
export interface RetryOptions {
  /**
   * Ceiling of the wait after the first failed attempt, in ms (0 to 2^31-1); it doubles per attempt.
   * @default 100
   */
  baseDelayMs?: number;
  /**
   * The largest ceiling, in ms (from `baseDelayMs` to 2^31-1): no wait without a retry-after hint is longer.
   * @default 10_000, or `baseDelayMs` when that is larger
   */
  maxDelayMs?: number;
  /**
   * The longest wait a retry-after hint on an error is honoured for (task retries, rate-limit pauses, dependency
   * calls); a longer hint is cut to this. @default 300_000
   */
  maxRetryAfterMs?: number;
  /**
   * Whether an error is worth another attempt; `false` ends the retries at once. A task then gives up as it would
   * after its last attempt: dead-lettered with its history when its `maxAttempts` is above 1, failed with the error
   * otherwise. A predicate that throws counts as `false`. @default {@link defaultRetryable}: every error except one
   * with an own `retryable: false` property and the library's own ValidationError, TaskCancelledError and
   * BudgetExceededError
   */
  retryable?: (error: unknown) => boolean;
}

/** Thresholds of a circuit breaker (opossum): it opens when the failure rate in the window crosses the threshold. */
export interface BreakerOptions {
  /** Failure percentage in the rolling window above which the breaker opens. @default 50 */
  errorThresholdPercentage?: number;
  /** Calls in the window before the breaker may open at all, so two early failures do not trip it. @default 5 */
  volumeThreshold?: number;
  /** Length of the rolling window that the rate is measured over, in ms. @default 10_000 */
  windowMs?: number;
  /** How long an open breaker waits before letting one probe call through (half-open), in ms. @default 10_000 */
  resetTimeoutMs?: number;
}

/**
 * Memory and CPU pressure. The level is the higher of `rss / memoryLimitBytes` and `cpu / cpuLimitPercent`:
 * from `elevatedAt` it is elevated (no scale-up; warm spares and idle agents above the minimum are shed), from 1
 * critical (tasks below `priorityFloor` refused as well). It only steps down once the ratio is `hysteresis` below
 * the threshold it crossed, so it does not flap.
 */
export interface PressureOptions {
  /** Resident set size at which pressure is critical, in bytes. @default 2 GiB (2_147_483_648) */
  memoryLimitBytes?: number;
  /** Process CPU, in percent of one core as `top` shows it, at which pressure is critical. @default 80 */
  cpuLimitPercent?: number;
  /** Fraction of a limit from which pressure is elevated. @default 0.85 */
  elevatedAt?: number;
  /** How far below a threshold the ratio must fall before the level steps down. @default 0.05 */
  hysteresis?: number;
  /** How often the process is sampled, in ms. @default 1_000 */
  sampleIntervalMs?: number;
  /**
   * CPU counts only when it stayed high for this many samples in a row (memory counts at once): a busy second is
   * normal, a busy stretch is pressure. @default 3
   */
  cpuSustainedSamples?: number;
  /**
   * Under critical pressure, tasks with a priority below this are refused with ResourcePressureError. The default
   * sheds background work (negative priority) and keeps normal work; raise it to shed more. @default 0
   */
  priorityFloor?: number;
  /** Where the samples come from. @default pidusage for CPU and RSS, process.memoryUsage() for the heap */
  sampler?: ResourceSampler;
}

/** Per-tenant cost budgets over a sliding window, fed by `ctx.reportCost(units)`. */
export interface BudgetOptions {
  /** The sliding window that spend is summed over, in ms. @default 3_600_000 (one hour) */
  windowMs?: number;
  /** Units each tenant may spend per window, by tenant id. @default {} */
  limits?: Readonly<Record<string, number>>;
  /** The limit of a tenant not in `limits`; tasks without a `tenantId` are never budgeted. @default Infinity */
  defaultLimit?: number;
  /** When a tenant goes over, also cancel its waiting tasks (running ones finish). @default false */
  haltOnExceeded?: boolean;
}

/**
 * A rate limit on a capability (every task that requires it) or a named dependency (`resources.breaker(name, …)`).
 * Work over the limit waits for room instead of failing.
 */
export interface RateLimitOptions {
  /** Calls or tasks started per interval. @default unlimited */
  requests?: number;
  /** Units (tokens, say) per interval: tasks report them with `ctx.reportCost`, dependencies with their `units` option. @default unlimited */
  units?: number;
  /** The interval both budgets refill over, continuously, in ms. Required. */
  intervalMs: number;
  /** Times one task or call is put back after a retry-after error before that error is final. @default 10 */
  maxDeferrals?: number;
}

/** A pool of interchangeable agents for one role. */
export interface PoolOptions {
  /** Name of the role, unique per orchestrator; agent ids are `${role}-${n}`. */
  role: string;
  /** What every agent of this pool can do; tasks route by these. */
  capabilities: readonly string[];
  /** Makes one agent. Called at start (pre-warm), to refill spares and to scale up. */
  create: AgentFactory;
  /** Agents kept routable at all times. @default 5 (or `maxAgents` when that is lower) */
  minAgents?: number;
  /** Upper bound on agents, spares included. @default 75 */
  maxAgents?: number;
  /** Tasks one agent runs at once. @default 1 */
  concurrency?: number;
  /** Ready agents held outside routing, so `spawnAgent` and scale-up are instant. @default 1 */
  warmSpares?: number;
  /**
   * An agent above the minimum that stayed idle this long (ms; `Infinity` for never) is drained and disposed.
   * @default 60_000
   */
  idleTimeoutMs?: number;
  /**
   * A `create()` call (or the new agent's first `healthCheck()`) that has not settled after this many ms counts as
   * failed; `Infinity` for no limit. @default 30_000
   */
  createTimeoutMs?: number;
  /** Attempts per agent creation before the failure is reported. @default 3 */
  createAttempts?: number;
  /** `create()` calls of this pool running at once. @default 4 */
  createConcurrency?: number;
}

/** Latency and error-rate thresholds of one task type (or the default for all). Each is optional. */
export interface SlaThresholds {
  /** Median latency (acceptance to end) in ms above which the SLA is breached. */
  p50Ms?: number;
  /** 95th-percentile latency (acceptance to end) in ms above which the SLA is breached. */
  p95Ms?: number;
  /** 99th-percentile latency (acceptance to end) in ms above which the SLA is breached. */
  p99Ms?: number;
  /** Share of tasks (0 to 1) ending in anything but success, cancellations left out, above which it is breached. */
  errorRate?: number;
}

/** SLA monitoring per task type. */
export interface SlaOptions {
  /** The rolling window the figures are taken over, in ms. @default 60_000 */
  windowMs?: number;
  /** Tasks of a type in the window before it is judged at all. @default 20 */
  minSamples?: number;
  /** Thresholds for every type. @default none (no type is judged unless it has thresholds) */
  default?: SlaThresholds;
  /** Thresholds per type, over the default's. @default {} */
  types?: Readonly<Record<string, SlaThresholds>>;
  /** Task types tracked at most (memory bound); later types are not tracked. @default 100 */
  maxTypes?: number;
}

/** Health checks, stuck detection, automatic recovery and SLA windows. */
export interface HealthOptions {
  /** How often agents' `healthCheck()` runs (and stuck agents and SLAs are looked at), in ms. @default 10_000 */
  checkIntervalMs?: number;
  /** A `healthCheck()` that has not settled after this many ms failed. @default 5_000 */
  checkTimeoutMs?: number;
  /**
   * An agent whose given-up attempt (timed out or cancelled) has still not returned after this many ms is stuck;
   * `Infinity` to never call an agent stuck. @default 30_000
   */
  stuckAfterMs?: number;
  /**
   * Replacements per pool (failed or stuck agents, failed creations) allowed per window; beyond that the pool stops
   * recovering until the window moves on and is reported unhealthy, instead of crash-looping. @default { maxReplacements: 5, windowMs: 60_000 }
   */
  recovery?: {
    /** Replacements and failed creations a pool may have in one window. @default 5 */
    maxReplacements?: number;
    /** The sliding window they are counted over, in ms. @default 60_000 */
    windowMs?: number;
  };
  /** SLA thresholds per task type and the window they are judged over; no type is judged unless given thresholds. */
  sla?: SlaOptions;
}

/**
 * Prometheus metrics through prom-client. Give your own `registry` to expose them with your other metrics, or read
 * them from `orchestrator.metrics()` / the HTTP handler's `/metrics`.
 */
export interface MetricsOptions {
  /** A prom-client Registry. @default a private registry */
  registry?: import('prom-client').Registry;
  /** Prepended to every metric name. @default 'unified_orchestrator_' */
  prefix?: string;
  /** Also collect prom-client's default process metrics into the registry. @default false */
  defaultMetrics?: boolean;
  /** Task types given their own label value; later ones are counted as `other`. @default 100 */
  maxTaskTypes?: number;
}

/** Options of {@link UnifiedOrchestrator}. */
export interface OrchestratorOptions {
  /** The pools to pre-warm at `start()`. @default [] */
  pools?: readonly PoolOptions[];
  /** How a task picks among the free agents that hold its capabilities. @default 'score' */
  routing?: RoutingStrategyName;
  /** Waiting tasks held at most; beyond that `submit` rejects with QueueFullError. @default 100_000 */
  maxQueueSize?: number;
  /**
   * Per-attempt timeout in ms of a task that sets none; `Infinity` for none. Any finite value is honoured in full,
   * even one above the 2^31-1 ms (about 24.8 days) a Node timer holds: the deadline timer re-arms. @default 120_000
   */
  defaultTimeoutMs?: number;
  /** Attempts of a task that sets no `maxAttempts` (1 to 100). @default 1 */
  defaultMaxAttempts?: number;
  /**
   * Backoff between attempts of a task and of an agent creation, and which errors are retried.
   * @default the RetryOptions defaults
   */
  retry?: RetryOptions;
  /**
   * The circuit breaker every agent gets; `false` for none. An open breaker quarantines its agent.
   * @default the BreakerOptions defaults
   */
  agentBreaker?: BreakerOptions | false;
  /**
   * Memory and CPU pressure sampling and what it sheds; `false` to turn sampling off.
   * @default on, with the PressureOptions defaults
   */
  pressure?: PressureOptions | false;
  /** Per-tenant cost budgets. */
  budgets?: BudgetOptions;
  /** Rate limits by capability or dependency name. @default {} */
  rateLimits?: Readonly<Record<string, RateLimitOptions>>;
  /** Health checks, stuck detection, recovery and SLA windows. */
  health?: HealthOptions;
  /** Prometheus metrics; `false` for none. @default on, on a private registry */
  metrics?: MetricsOptions | false;
  /** How this node talks to the others: a RedisBridge for many processes. @default a private MemoryBridge (one process) */
  bridge?: import('./bridge/bridge.js').CommunicationBridge;
  /**
   * With this many tasks of a class already waiting here, a new one goes to another node that can serve it (through
   * the bridge) instead of queueing. Tasks no local agent can serve go to the cluster regardless. @default none
   */
  handOffAbove?: number;
  /**
   * The largest task payload accepted, in bytes of its JSON. A larger one (or, with a limit set, one that cannot be
   * serialised to be measured) is refused with ValidationError before it is queued or handed to another node. Send a
   * reference (a URL, a key) for large inputs. @default none
   */
  maxPayloadBytes?: number;
  /** The audit trail of critical operations (`audit` events); see {@link AuditOptions}. */
  audit?: AuditOptions;
  /**
   * OpenTelemetry spans per task, through `@opentelemetry/api` (an optional peer dependency). `'auto'`: when the
   * package is installed and an SDK is registered at `start()`; `true`: whenever installed; `{ tracer }`: that tracer
   * (the package must still be installed); `false`: never.
   * @default 'auto'
   */
  tracing?: TracingMode;
  /**
   * A waiting task gains one priority level for every `agingIntervalMs` (ms) it waits, so nothing starves; `Infinity`
   * for no aging. @default 5_000
   */
  agingIntervalMs?: number;
  /**
   * How long (ms) a succeeded task's result answers a resubmission with the same idempotency key (a failed task's
   * key is forgotten). @default 300_000
   */
  idempotencyTtlMs?: number;
  /** Idempotency keys remembered at most (oldest forgotten first). @default 10_000 */
  maxIdempotencyKeys?: number;
  /** Dead letters kept at most (oldest dropped first). @default 10_000 */
  maxDeadLetters?: number;
  /** Affinity keys remembered at most (least recently used forgotten first). @default 10_000 */
  maxAffinityKeys?: number;
  /** How often (ms) pools check for idle agents to scale down, and top up to their minimum. @default 1_000 */
  scaleIntervalMs?: number;
  /** Monotonic clock in ms. @default performance.now */
  clock?: Clock;
  /** Random source in [0, 1), for jitter. @default Math.random */
  random?: () => number;
}

/** {@link RetryOptions} with every default applied: the type of {@link RETRY_DEFAULTS}. */
export interface ResolvedRetryOptions {
  /** Ceiling of the wait after the first failed attempt, in ms; it doubles per attempt. */
  readonly baseDelayMs: number;
  /** The largest ceiling of a wait without a retry-after hint, in ms. */
  readonly maxDelayMs: number;
  /** The longest retry-after hint honoured, in ms; a longer one is cut to this. */
  readonly maxRetryAfterMs: number;
  /** Whether an error is worth another attempt. */
  readonly retryable: (error: unknown) => boolean;
}

/** {@link BreakerOptions} with every default applied: the type of {@link BREAKER_DEFAULTS}. */
export interface ResolvedBreakerOptions {
  /** Failure percentage (0 to 100) in the rolling window above which the breaker opens. */
  readonly errorThresholdPercentage: number;
  /** Calls in the window before the breaker may open at all. */
  readonly volumeThreshold: number;
  /** Length of the rolling window, in ms. */
  readonly windowMs: number;
  /** How long an open breaker waits before it goes half-open, in ms. */
  readonly resetTimeoutMs: number;
}

export interface ResolvedPressureOptions {
  readonly memoryLimitBytes: number;
  readonly cpuLimitPercent: number;
  readonly elevatedAt: number;
  readonly hysteresis: number;
  readonly sampleIntervalMs: number;
  readonly cpuSustainedSamples: number;
  readonly priorityFloor: number;
  readonly sampler: ResourceSampler | undefined;
}

export interface ResolvedBudgetOptions {
  readonly windowMs: number;
  readonly limits: ReadonlyMap<string, number>;
  readonly defaultLimit: number;
  readonly haltOnExceeded: boolean;
}

export interface ResolvedSlaOptions {
  readonly windowMs: number;
  readonly minSamples: number;
  readonly default: SlaThresholds | undefined;
  readonly types: ReadonlyMap<string, SlaThresholds>;
  readonly maxTypes: number;
}

export interface ResolvedHealthOptions {
  readonly checkIntervalMs: number;
  readonly checkTimeoutMs: number;
  readonly stuckAfterMs: number;
  readonly recovery: { readonly maxReplacements: number; readonly windowMs: number };
  readonly sla: ResolvedSlaOptions;
}

export interface ResolvedMetricsOptions {
  readonly registry: import('prom-client').Registry | undefined;
  readonly prefix: string;
  readonly defaultMetrics: boolean;
  readonly maxTaskTypes: number;
}

export interface ResolvedRateLimitOptions {
  readonly requests: number;
  readonly units: number;
  readonly intervalMs: number;
  readonly maxDeferrals: number;
}

export interface ResolvedPoolOptions {
  readonly role: string;
  readonly capabilities: readonly string[];
  readonly create: AgentFactory;
  readonly minAgents: number;
  readonly maxAgents: number;
  readonly concurrency: number;
  readonly warmSpares: number;
  readonly idleTimeoutMs: number;
  readonly createTimeoutMs: number;
  readonly createAttempts: number;
  readonly createConcurrency: number;
}

export interface ResolvedOrchestratorOptions {
  readonly pools: readonly ResolvedPoolOptions[];
  readonly routing: RoutingStrategyName;
  readonly maxQueueSize: number;
  readonly defaultTimeoutMs: number;
  readonly defaultMaxAttempts: number;
  readonly retry: ResolvedRetryOptions;
  readonly agentBreaker: ResolvedBreakerOptions | false;
  readonly pressure: ResolvedPressureOptions | false;
  readonly budgets: ResolvedBudgetOptions;
  readonly rateLimits: ReadonlyMap<string, ResolvedRateLimitOptions>;
  readonly health: ResolvedHealthOptions;
  readonly metrics: ResolvedMetricsOptions | false;
  readonly tracing: TracingMode;
  readonly bridge: import('./bridge/bridge.js').CommunicationBridge | undefined;
  readonly handOffAbove: number;
  readonly maxPayloadBytes: number;
  readonly audit: ResolvedAuditOptions;
  readonly agingIntervalMs: number;
  readonly idempotencyTtlMs: number;
  readonly maxIdempotencyKeys: number;
  readonly maxDeadLetters: number;
  readonly maxAffinityKeys: number;
  readonly scaleIntervalMs: number;
  readonly clock: Clock;
  readonly random: () => number;
}

/** The defaults of {@link PoolOptions}. */
export const POOL_DEFAULTS = Object.freeze({
  /** Agents kept routable; a pool whose `maxAgents` is lower gets `maxAgents` instead. */
  minAgents: 5,
  /** Upper bound on agents, spares included. */
  maxAgents: 75,
  /** Tasks one agent runs at once (also the default of `registerAgent`). */
  concurrency: 1,
  /** Ready agents held outside routing. */
  warmSpares: 1,
  /** Idle time (ms) after which an agent above the minimum is retired. */
  idleTimeoutMs: 60_000,
  /** Time (ms) a `create()` call may take. */
  createTimeoutMs: 30_000,
  /** Attempts per agent creation. */
  createAttempts: 3,
  /** `create()` calls of one pool running at once. */
  createConcurrency: 4,
});

/**
 * The default `retryable` predicate: every error is retried except one that says otherwise with an own
 * `retryable: false` property, and the library's own refusals that another attempt cannot fix.
 */
export function defaultRetryable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return true;
  if ((error as { retryable?: unknown }).retryable === false) return false;
  const code = (error as { code?: unknown }).code;
  return code !== 'VALIDATION_ERROR' && code !== 'TASK_CANCELLED' && code !== 'BUDGET_EXCEEDED';
}

/**
 * The defaults of {@link RetryOptions}: a backoff ceiling of 100 ms doubling per attempt up to 10 s (each wait is
 * random below it), retry-after hints honoured up to 5 minutes, and {@link defaultRetryable}. Given a
 * `retry.baseDelayMs` above 10 s, `maxDelayMs` defaults to that instead.
 */
export const RETRY_DEFAULTS: ResolvedRetryOptions = Object.freeze({
  baseDelayMs: 100,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 300_000,
  retryable: defaultRetryable,
});

/** The defaults of {@link BreakerOptions}, for agent breakers and dependency breakers alike. */
export const BREAKER_DEFAULTS: ResolvedBreakerOptions = Object.freeze({
  errorThresholdPercentage: 50,
  volumeThreshold: 5,
  windowMs: 10_000,
  resetTimeoutMs: 10_000,
});

/** The defaults of {@link PressureOptions} (sampling itself is on unless `pressure: false`). */
export const PRESSURE_DEFAULTS = Object.freeze({
  /** Resident set size at which pressure is critical: 2 GiB, in bytes. */
  memoryLimitBytes: 2 * 1024 ** 3,
  /** Process CPU, in percent of one core, at which pressure is critical. */
  cpuLimitPercent: 80,
  /** Fraction (0 to 1) of a limit from which pressure is elevated. */
  elevatedAt: 0.85,
  /** How far (as a fraction) below a threshold the level steps down. */
  hysteresis: 0.05,
  /** Sampling interval, in ms. */
  sampleIntervalMs: 1_000,
  /** Samples in a row that CPU must stay high to count. */
  cpuSustainedSamples: 3,
  /** Under critical pressure, tasks with a priority below this are refused. */
  priorityFloor: 0,
});

/** The defaults of {@link BudgetOptions}: no tenant is limited unless given a limit. */
export const BUDGET_DEFAULTS = Object.freeze({
  /** The sliding window spend is summed over: one hour, in ms. */
  windowMs: 3_600_000,
  /** The limit of a tenant not in `limits`: none. */
  defaultLimit: Infinity,
  /** Whether going over also cancels the tenant's waiting tasks. */
  haltOnExceeded: false,
});

/** The defaults of {@link RateLimitOptions} (`intervalMs` has none: it is required). */
export const RATE_LIMIT_DEFAULTS = Object.freeze({
  /** Calls or tasks per interval: unlimited. */
  requests: Infinity,
  /** Units per interval: unlimited. */
  units: Infinity,
  /** Times one task or call is put back after a retry-after error before that error is final. */
  maxDeferrals: 10,
});

/** The defaults of {@link HealthOptions}. */
export const HEALTH_DEFAULTS = Object.freeze({
  /** Interval of health checks, stuck detection and SLA evaluation, in ms. */
  checkIntervalMs: 10_000,
  /** Time a `healthCheck()` may take, in ms. */
  checkTimeoutMs: 5_000,
  /** Time after which an agent with a given-up attempt that never returned is stuck, in ms. */
  stuckAfterMs: 30_000,
  /** The recovery budget of each pool. */
  recovery: Object.freeze({
    /** Replacements and failed creations per window. */
    maxReplacements: 5,
    /** The window, in ms. */
    windowMs: 60_000,
  }),
  /** SLA windows (no type is judged unless given thresholds). */
  sla: Object.freeze({
    /** The rolling window, in ms. */
    windowMs: 60_000,
    /** Tasks of a type in the window before it is judged. */
    minSamples: 20,
    /** Task types tracked at most. */
    maxTypes: 100,
  }),
});

/** The defaults of {@link MetricsOptions} (metrics are on, on a private registry, unless `metrics: false`). */
export const METRICS_DEFAULTS = Object.freeze({
  /** Prepended to every metric name. */
  prefix: 'unified_orchestrator_',
  /** Whether prom-client's default process metrics are collected too. */
  defaultMetrics: false,
  /** Task types given their own label value; later ones are `other`. */
  maxTaskTypes: 100,
});

const performanceClock: Clock = Object.freeze({ now: () => performance.now() });

/**
 * The defaults of {@link OrchestratorOptions} that are plain values. The others: no pools, a private MemoryBridge,
 * and the defaults of each nested option.
 */
export const ORCHESTRATOR_DEFAULTS = Object.freeze({
  /** The routing strategy. */
  routing: 'score' as RoutingStrategyName,
  /** Waiting tasks held at most. */
  maxQueueSize: 100_000,
  /** Per-attempt timeout of a task that sets none, in ms. */
  defaultTimeoutMs: 120_000,
  /** Attempts of a task that sets no `maxAttempts`. */
  defaultMaxAttempts: 1,
  /** Wait (ms) per priority level gained by a waiting task. */
  agingIntervalMs: 5_000,
  /** How long (ms) a succeeded task's result answers its idempotency key. */
  idempotencyTtlMs: 300_000,
  /** Idempotency keys remembered at most. */
  maxIdempotencyKeys: 10_000,
  /** Dead letters kept at most. */
  maxDeadLetters: 10_000,
  /** Affinity keys remembered at most. */
  maxAffinityKeys: 10_000,
  /** OpenTelemetry spans when `@opentelemetry/api` is installed and an SDK is registered. */
  tracing: 'auto' as TracingMode,
  /** No hand-off for load: only tasks this node cannot serve go to the cluster. */
  handOffAbove: Infinity,
  /** No payload size limit. */
  maxPayloadBytes: Infinity,
  /** Interval (ms) of the pools' scale-down and top-up pass. */
  scaleIntervalMs: 1_000,
  /** `performance.now()`. */
  clock: performanceClock,
  /** `Math.random`. */
  random: Math.random,
});

/** Options of `stop()`. */
export interface StopOptions {
  /** Finish waiting and running tasks first (`true`), or cancel them at once (`false`). @default true */
  drain?: boolean;
  /**
   * Longest wait for draining, in ms (or `Infinity`); what is left then is cancelled and its agents disposed anyway.
   * @default 30_000
   */
  timeoutMs?: number;
  /** Who stops it, for the audit trail. @default the `audit.actor` option */
  actor?: string;
}

/** The defaults of {@link StopOptions}. */
export const STOP_DEFAULTS = Object.freeze({
  /** Finish accepted tasks before stopping. */
  drain: true,
  /** Longest wait for draining, in ms. */
  timeoutMs: 30_000,
});

/** Without draining, how long stop() still waits for agents to return from their aborted attempts before disposing them anyway. */
export const STOP_ABORT_GRACE_MS = 1_000;

/** Validates `stop()` options. */
export function resolveStopOptions(input: unknown): { drain: boolean; timeoutMs: number; actor?: string } {
  if (input === undefined) return { ...STOP_DEFAULTS };
  const o = expectObject(input, 'options');
  rejectUnknownKeys(o, new Set(['drain', 'timeoutMs', 'actor']), 'options');
  const actor = own(o, 'actor');
  const drain = own(o, 'drain');
  if (drain !== undefined && typeof drain !== 'boolean') {
    throw new ValidationError('options.drain', `Expected \`options.drain\` to be a boolean, got ${describe(drain)}`);
  }
  return {
    drain: drain ?? STOP_DEFAULTS.drain,
    timeoutMs: optional(own(o, 'timeoutMs'), STOP_DEFAULTS.timeoutMs, (v) =>
      expectDuration(v, 'options.timeoutMs', true, MAX_TIMER_MS),
    ),
    ...(actor !== undefined ? { actor: expectString(actor, 'options.actor') } : {}),
  };
}

/** Task fields' defaults that are not orchestrator options. */
export const TASK_DEFAULTS = Object.freeze({ priority: 0 });

const ROUTING_STRATEGIES: readonly RoutingStrategyName[] = ['score', 'least-loaded', 'round-robin'];

// ---------------------------------------------------------------------------------------------
// Validation helpers, shared by options, tasks and agent registration.
// ---------------------------------------------------------------------------------------------

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return typeof value === 'object' ? 'an object' : typeof value;
}

/** Throws unless `value` is a plain object; returns it typed as a record of unknowns. */
export function expectObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(field, `Expected \`${field}\` to be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Throws on any own key of `value` that is not in `allowed`: a misspelt option must not be ignored silently. */
export function rejectUnknownKeys(value: Record<string, unknown>, allowed: ReadonlySet<string>, field: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.has(key)) throw unknownKeyError(key, allowed, field);
  }
}

export function unknownKeyError(key: string, allowed: ReadonlySet<string>, field: string): ValidationError {
  return new ValidationError(
    `${field}.${key}`,
    `Unknown field \`${field}.${key}\`; expected one of: ${[...allowed].join(', ')}`,
  );
}

/** Reads an own property only, so a polluted prototype can never supply a value. */
export function own(value: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(value, key) ? value[key] : undefined;
}

export function expectString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ValidationError(field, `Expected \`${field}\` to be a non-empty string, got ${describe(value)}`);
  }
  return value;
}

export function expectFunction<T>(value: unknown, field: string): T {
  if (typeof value !== 'function') {
    throw new ValidationError(field, `Expected \`${field}\` to be a function, got ${describe(value)}`);
  }
  return value as T;
}

/** A copy of a list of non-empty strings, duplicates removed. */
export function expectStringArray(value: unknown, field: string): string[] {
  if (!Array.isArray(value)) {
    throw new ValidationError(field, `Expected \`${field}\` to be an array of strings, got ${describe(value)}`);
  }
  const out: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < value.length; i++) {
    const item: unknown = value[i];
    if (typeof item !== 'string' || item.length === 0) {
      throw new ValidationError(
        `${field}[${i}]`,
        `Expected \`${field}[${i}]\` to be a non-empty string, got ${describe(item)}`,
      );
    }
    if (!seen.has(item)) {
      seen.add(item);
      out.push(item);
    }
  }
  return out;
}

export function expectInteger(value: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new ValidationError(field, `Expected \`${field}\` to be an integer ${range}, got ${describe(value)}`);
  }
  return value;
}

/**
 * A duration in ms: > 0 and at most `max`, or `Infinity` when `allowInfinity`. Durations that arm a Node timer
 * directly pass `MAX_TIMER_MS` as `max` (a longer timer would fire at once).
 */
export function expectDuration(value: unknown, field: string, allowInfinity = false, max = Number.MAX_VALUE): number {
  const ok =
    typeof value === 'number' &&
    value > 0 &&
    ((Number.isFinite(value) && value <= max) || (allowInfinity && value === Infinity));
  if (!ok) {
    const range = max === Number.MAX_VALUE ? '> 0' : `from 1 to ${max}`;
    const also = allowInfinity ? ' (or Infinity for none)' : '';
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a number of milliseconds ${range}${also}, got ${describe(value)}`,
    );
  }
  return value;
}

/** Like {@link expectDuration} but 0 is allowed (no delay). */
function expectDelay(value: unknown, field: string): number {
  // A Node timer holds at most 2^31-1 ms; a longer delay would fire at once.
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_TIMER_MS) {
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a number of milliseconds from 0 to 2147483647, got ${describe(value)}`,
    );
  }
  return value;
}

function optional<T>(value: unknown, fallback: T, check: (v: unknown) => T): T {
  return value === undefined ? fallback : check(value);
}

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

const POOL_KEYS: ReadonlySet<string> = new Set([
  'role',
  'capabilities',
  'create',
  'minAgents',
  'maxAgents',
  'concurrency',
  'warmSpares',
  'idleTimeoutMs',
  'createTimeoutMs',
  'createAttempts',
  'createConcurrency',
]);

/** Validates one pool declaration; `field` is where it sits in the caller's options, for messages. */
export function resolvePoolOptions(input: unknown, field = 'pool'): ResolvedPoolOptions {
  const o = expectObject(input, field);
  rejectUnknownKeys(o, POOL_KEYS, field);
  const role = expectString(own(o, 'role'), `${field}.role`);
  const capabilities = expectStringArray(own(o, 'capabilities'), `${field}.capabilities`);
  const create = expectFunction<AgentFactory>(own(o, 'create'), `${field}.create`);
  const maxAgents = optional(own(o, 'maxAgents'), POOL_DEFAULTS.maxAgents, (v) =>
    expectInteger(v, `${field}.maxAgents`, 1, MAX_POOL_AGENTS),
  );
  const minRaw = own(o, 'minAgents');
  const minAgents =
    minRaw === undefined
      ? Math.min(POOL_DEFAULTS.minAgents, maxAgents)
      : expectInteger(minRaw, `${field}.minAgents`, 0, MAX_POOL_AGENTS);
  if (minAgents > maxAgents) {
    throw new ValidationError(
      `${field}.minAgents`,
      `Expected \`${field}.minAgents\` (${minAgents}) to be <= \`${field}.maxAgents\` (${maxAgents})`,
    );
  }
  return {
    role,
    capabilities,
    create,
    minAgents,
    maxAgents,
    concurrency: optional(own(o, 'concurrency'), POOL_DEFAULTS.concurrency, (v) =>
      expectInteger(v, `${field}.concurrency`, 1, 10_000),
    ),
    warmSpares: optional(own(o, 'warmSpares'), POOL_DEFAULTS.warmSpares, (v) =>
      expectInteger(v, `${field}.warmSpares`, 0, 1_000),
    ),
    idleTimeoutMs: optional(own(o, 'idleTimeoutMs'), POOL_DEFAULTS.idleTimeoutMs, (v) =>
      expectDuration(v, `${field}.idleTimeoutMs`, true),
    ),
    createTimeoutMs: optional(own(o, 'createTimeoutMs'), POOL_DEFAULTS.createTimeoutMs, (v) =>
      expectDuration(v, `${field}.createTimeoutMs`, true, MAX_TIMER_MS),
    ),
    createAttempts: optional(own(o, 'createAttempts'), POOL_DEFAULTS.createAttempts, (v) =>
      expectInteger(v, `${field}.createAttempts`, 1, 100),
    ),
    createConcurrency: optional(own(o, 'createConcurrency'), POOL_DEFAULTS.createConcurrency, (v) =>
      expectInteger(v, `${field}.createConcurrency`, 1, 1_000),
    ),
  };
}

const RETRY_KEYS: ReadonlySet<string> = new Set(['baseDelayMs', 'maxDelayMs', 'maxRetryAfterMs', 'retryable']);

export function resolveRetryOptions(input: unknown, field = 'retry'): ResolvedRetryOptions {
  if (input === undefined) return RETRY_DEFAULTS;
  const o = expectObject(input, field);
  rejectUnknownKeys(o, RETRY_KEYS, field);
  const baseDelayMs = optional(own(o, 'baseDelayMs'), RETRY_DEFAULTS.baseDelayMs, (v) =>
    expectDelay(v, `${field}.baseDelayMs`),
  );
  const maxDelayMs = optional(own(o, 'maxDelayMs'), Math.max(RETRY_DEFAULTS.maxDelayMs, baseDelayMs), (v) =>
    expectDelay(v, `${field}.maxDelayMs`),
  );
  if (maxDelayMs < baseDelayMs) {
    throw new ValidationError(
      `${field}.maxDelayMs`,
      `Expected \`${field}.maxDelayMs\` (${maxDelayMs}) to be >= baseDelayMs (${baseDelayMs})`,
    );
  }
  const retryable = optional(own(o, 'retryable'), RETRY_DEFAULTS.retryable, (v) =>
    expectFunction<(e: unknown) => boolean>(v, `${field}.retryable`),
  );
  const maxRetryAfterMs = optional(own(o, 'maxRetryAfterMs'), RETRY_DEFAULTS.maxRetryAfterMs, (v) =>
    expectDelay(v, `${field}.maxRetryAfterMs`),
  );
  return { baseDelayMs, maxDelayMs, maxRetryAfterMs, retryable };
}

/** A number > 0 and at most `max`; `Infinity` too when `allowInfinity`. */
function expectPositive(value: unknown, field: string, max = Number.MAX_VALUE, allowInfinity = false): number {
  if (typeof value !== 'number' || !(value > 0) || (value > max && !(allowInfinity && value === Infinity))) {
    const range = max === Number.MAX_VALUE ? '> 0' : `> 0 and <= ${max}`;
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a number ${range}${allowInfinity ? ' (or Infinity)' : ''}, got ${describe(value)}`,
    );
  }
  return value;
}

const BREAKER_KEYS: ReadonlySet<string> = new Set([
  'errorThresholdPercentage',
  'volumeThreshold',
  'windowMs',
  'resetTimeoutMs',
]);

export function resolveBreakerOptions(input: unknown, field: string): ResolvedBreakerOptions {
  if (input === undefined) return BREAKER_DEFAULTS;
  const o = expectObject(input, field);
  rejectUnknownKeys(o, BREAKER_KEYS, field);
  const d = BREAKER_DEFAULTS;
  return {
    errorThresholdPercentage: optional(own(o, 'errorThresholdPercentage'), d.errorThresholdPercentage, (v) =>
      expectPositive(v, `${field}.errorThresholdPercentage`, 100),
    ),
    volumeThreshold: optional(own(o, 'volumeThreshold'), d.volumeThreshold, (v) =>
      expectInteger(v, `${field}.volumeThreshold`, 0, 1_000_000),
    ),
    windowMs: optional(own(o, 'windowMs'), d.windowMs, (v) =>
      expectDuration(v, `${field}.windowMs`, false, MAX_TIMER_MS),
    ),
    resetTimeoutMs: optional(own(o, 'resetTimeoutMs'), d.resetTimeoutMs, (v) =>
      expectDuration(v, `${field}.resetTimeoutMs`, false, MAX_TIMER_MS),
    ),
  };
}

const PRESSURE_KEYS: ReadonlySet<string> = new Set([
  'memoryLimitBytes',
  'cpuLimitPercent',
  'elevatedAt',
  'hysteresis',
  'sampleIntervalMs',
  'cpuSustainedSamples',
  'priorityFloor',
  'sampler',
]);

function resolvePressureOptions(input: unknown): ResolvedPressureOptions | false {
  if (input === false) return false;
  const d = PRESSURE_DEFAULTS;
  const o = input === undefined ? {} : expectObject(input, 'options.pressure');
  rejectUnknownKeys(o, PRESSURE_KEYS, 'options.pressure');
  const elevatedAt = optional(own(o, 'elevatedAt'), d.elevatedAt, (v) =>
    expectPositive(v, 'options.pressure.elevatedAt', 1),
  );
  const hysteresis = optional(own(o, 'hysteresis'), d.hysteresis, (v) => {
    if (v === 0) return 0;
    return expectPositive(v, 'options.pressure.hysteresis', 0.5);
  });
  if (hysteresis >= elevatedAt) {
    // The level could then never step back down to normal.
    throw new ValidationError(
      'options.pressure.hysteresis',
      `Expected \`options.pressure.hysteresis\` (${hysteresis}) to be below \`options.pressure.elevatedAt\` (${elevatedAt})`,
    );
  }
  const sampler = optional<ResourceSampler | undefined>(own(o, 'sampler'), undefined, (v) => {
    expectFunction(expectObject(v, 'options.pressure.sampler')['sample'], 'options.pressure.sampler.sample');
    return v as ResourceSampler;
  });
  return {
    memoryLimitBytes: optional(own(o, 'memoryLimitBytes'), d.memoryLimitBytes, (v) =>
      expectPositive(v, 'options.pressure.memoryLimitBytes', Number.MAX_VALUE, true),
    ),
    cpuLimitPercent: optional(own(o, 'cpuLimitPercent'), d.cpuLimitPercent, (v) =>
      expectPositive(v, 'options.pressure.cpuLimitPercent', Number.MAX_VALUE, true),
    ),
    elevatedAt,
    hysteresis,
    sampleIntervalMs: optional(own(o, 'sampleIntervalMs'), d.sampleIntervalMs, (v) =>
      expectDuration(v, 'options.pressure.sampleIntervalMs', false, MAX_TIMER_MS),
    ),
    cpuSustainedSamples: optional(own(o, 'cpuSustainedSamples'), d.cpuSustainedSamples, (v) =>
      expectInteger(v, 'options.pressure.cpuSustainedSamples', 1, 100),
    ),
    priorityFloor: optional(own(o, 'priorityFloor'), d.priorityFloor, (v) =>
      expectInteger(v, 'options.pressure.priorityFloor', -1_000_000, 1_000_001),
    ),
    sampler,
  };
}

/** A budget or rate amount: a number >= 0, or Infinity. */
function expectAmount(value: unknown, field: string): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new ValidationError(field, `Expected \`${field}\` to be a number >= 0 (or Infinity), got ${describe(value)}`);
  }
  return value;
}

const BUDGET_KEYS: ReadonlySet<string> = new Set(['windowMs', 'limits', 'defaultLimit', 'haltOnExceeded']);

function resolveBudgetOptions(input: unknown): ResolvedBudgetOptions {
  const d = BUDGET_DEFAULTS;
  const o = input === undefined ? {} : expectObject(input, 'options.budgets');
  rejectUnknownKeys(o, BUDGET_KEYS, 'options.budgets');
  const limits = new Map<string, number>();
  const raw = own(o, 'limits');
  if (raw !== undefined) {
    const l = expectObject(raw, 'options.budgets.limits');
    for (const tenant of Object.keys(l))
      limits.set(tenant, expectAmount(l[tenant], `options.budgets.limits.${tenant}`));
  }
  const halt = own(o, 'haltOnExceeded');
  if (halt !== undefined && typeof halt !== 'boolean') {
    throw new ValidationError(
      'options.budgets.haltOnExceeded',
      `Expected \`options.budgets.haltOnExceeded\` to be a boolean, got ${describe(halt)}`,
    );
  }
  return {
    windowMs: optional(own(o, 'windowMs'), d.windowMs, (v) => expectDuration(v, 'options.budgets.windowMs')),
    limits,
    defaultLimit: optional(own(o, 'defaultLimit'), d.defaultLimit, (v) =>
      expectAmount(v, 'options.budgets.defaultLimit'),
    ),
    haltOnExceeded: halt ?? d.haltOnExceeded,
  };
}

const RATE_LIMIT_KEYS: ReadonlySet<string> = new Set(['requests', 'units', 'intervalMs', 'maxDeferrals']);

/** Validates one rate limit; `field` is where it sits in the caller's options, for messages. */
export function resolveRateLimitOptions(input: unknown, field: string): ResolvedRateLimitOptions {
  const o = expectObject(input, field);
  rejectUnknownKeys(o, RATE_LIMIT_KEYS, field);
  const d = RATE_LIMIT_DEFAULTS;
  const requests = optional(own(o, 'requests'), d.requests, (v) => {
    // A bucket that holds less than one request could never start one.
    if (typeof v === 'number' && v > 0 && v < 1) {
      throw new ValidationError(
        `${field}.requests`,
        `Expected \`${field}.requests\` to be a number >= 1 (or Infinity), got ${v}`,
      );
    }
    return expectPositive(v, `${field}.requests`, Number.MAX_VALUE, true);
  });
  const units = optional(own(o, 'units'), d.units, (v) => expectPositive(v, `${field}.units`, Number.MAX_VALUE, true));
  return {
    requests,
    units,
    intervalMs: expectDuration(own(o, 'intervalMs'), `${field}.intervalMs`, false, MAX_TIMER_MS),
    maxDeferrals: optional(own(o, 'maxDeferrals'), d.maxDeferrals, (v) =>
      expectInteger(v, `${field}.maxDeferrals`, 0, 1_000),
    ),
  };
}

const THRESHOLD_KEYS: ReadonlySet<string> = new Set(['p50Ms', 'p95Ms', 'p99Ms', 'errorRate']);

function resolveThresholds(input: unknown, field: string): SlaThresholds {
  const o = expectObject(input, field);
  rejectUnknownKeys(o, THRESHOLD_KEYS, field);
  const out: SlaThresholds = {};
  for (const key of ['p50Ms', 'p95Ms', 'p99Ms'] as const) {
    if (own(o, key) !== undefined) out[key] = expectPositive(own(o, key), `${field}.${key}`);
  }
  if (own(o, 'errorRate') !== undefined) {
    const v = own(o, 'errorRate');
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) {
      throw new ValidationError(
        `${field}.errorRate`,
        `Expected \`${field}.errorRate\` to be a number from 0 to 1, got ${describe(v)}`,
      );
    }
    out.errorRate = v;
  }
  return out;
}

const SLA_KEYS: ReadonlySet<string> = new Set(['windowMs', 'minSamples', 'default', 'types', 'maxTypes']);
const HEALTH_KEYS: ReadonlySet<string> = new Set([
  'checkIntervalMs',
  'checkTimeoutMs',
  'stuckAfterMs',
  'recovery',
  'sla',
]);
const RECOVERY_KEYS: ReadonlySet<string> = new Set(['maxReplacements', 'windowMs']);

function resolveHealthOptions(input: unknown): ResolvedHealthOptions {
  const d = HEALTH_DEFAULTS;
  const o = input === undefined ? {} : expectObject(input, 'options.health');
  rejectUnknownKeys(o, HEALTH_KEYS, 'options.health');
  const r = own(o, 'recovery') === undefined ? {} : expectObject(own(o, 'recovery'), 'options.health.recovery');
  rejectUnknownKeys(r, RECOVERY_KEYS, 'options.health.recovery');
  const s = own(o, 'sla') === undefined ? {} : expectObject(own(o, 'sla'), 'options.health.sla');
  rejectUnknownKeys(s, SLA_KEYS, 'options.health.sla');
  const types = new Map<string, SlaThresholds>();
  if (own(s, 'types') !== undefined) {
    const t = expectObject(own(s, 'types'), 'options.health.sla.types');
    for (const type of Object.keys(t)) types.set(type, resolveThresholds(t[type], `options.health.sla.types.${type}`));
  }
  return {
    checkIntervalMs: optional(own(o, 'checkIntervalMs'), d.checkIntervalMs, (v) =>
      expectDuration(v, 'options.health.checkIntervalMs', false, MAX_TIMER_MS),
    ),
    checkTimeoutMs: optional(own(o, 'checkTimeoutMs'), d.checkTimeoutMs, (v) =>
      expectDuration(v, 'options.health.checkTimeoutMs', false, MAX_TIMER_MS),
    ),
    stuckAfterMs: optional(own(o, 'stuckAfterMs'), d.stuckAfterMs, (v) =>
      expectDuration(v, 'options.health.stuckAfterMs', true),
    ),
    recovery: {
      maxReplacements: optional(own(r, 'maxReplacements'), d.recovery.maxReplacements, (v) =>
        expectInteger(v, 'options.health.recovery.maxReplacements', 0, 1_000_000),
      ),
      windowMs: optional(own(r, 'windowMs'), d.recovery.windowMs, (v) =>
        expectDuration(v, 'options.health.recovery.windowMs'),
      ),
    },
    sla: {
      windowMs: optional(own(s, 'windowMs'), d.sla.windowMs, (v) => expectDuration(v, 'options.health.sla.windowMs')),
      minSamples: optional(own(s, 'minSamples'), d.sla.minSamples, (v) =>
        expectInteger(v, 'options.health.sla.minSamples', 1),
      ),
      default:
        own(s, 'default') === undefined
          ? undefined
          : resolveThresholds(own(s, 'default'), 'options.health.sla.default'),
      types,
      maxTypes: optional(own(s, 'maxTypes'), d.sla.maxTypes, (v) =>
        expectInteger(v, 'options.health.sla.maxTypes', 1, 100_000),
      ),
    },
  };
}

const METRICS_KEYS: ReadonlySet<string> = new Set(['registry', 'prefix', 'defaultMetrics', 'maxTaskTypes']);

function resolveMetricsOptions(input: unknown): ResolvedMetricsOptions | false {
  if (input === false) return false;
  const d = METRICS_DEFAULTS;
  const o = input === undefined ? {} : expectObject(input, 'options.metrics');
  rejectUnknownKeys(o, METRICS_KEYS, 'options.metrics');
  const registry = own(o, 'registry');
  if (registry !== undefined) {
    // Duck-typed: the host's prom-client may be another copy than ours, so instanceof would be wrong.
    const r = expectObject(registry, 'options.metrics.registry');
    expectFunction(r['registerMetric'], 'options.metrics.registry.registerMetric');
    expectFunction(r['metrics'], 'options.metrics.registry.metrics');
    expectFunction(r['getSingleMetric'], 'options.metrics.registry.getSingleMetric');
  }
  const prefix = optional(own(o, 'prefix'), d.prefix, (v) => {
    // Colons are for recording rules, not for what a client exposes (promtool rejects them there).
    if (typeof v !== 'string' || !/^[a-zA-Z_][a-zA-Z0-9_]*$|^$/.test(v)) {
      throw new ValidationError(
        'options.metrics.prefix',
        `Expected \`options.metrics.prefix\` to match [a-zA-Z_][a-zA-Z0-9_]* (a Prometheus metric name), got ${describe(v)}`,
      );
    }
    return v;
  });
  const defaultMetrics = own(o, 'defaultMetrics');
  if (defaultMetrics !== undefined && typeof defaultMetrics !== 'boolean') {
    throw new ValidationError(
      'options.metrics.defaultMetrics',
      `Expected \`options.metrics.defaultMetrics\` to be a boolean, got ${describe(defaultMetrics)}`,
    );
  }
  return {
    registry: registry as ResolvedMetricsOptions['registry'],
    prefix,
    defaultMetrics: defaultMetrics ?? d.defaultMetrics,
    maxTaskTypes: optional(own(o, 'maxTaskTypes'), d.maxTaskTypes, (v) =>
      expectInteger(v, 'options.metrics.maxTaskTypes', 1, 10_000),
    ),
  };
}

function resolveRateLimits(input: unknown): ReadonlyMap<string, ResolvedRateLimitOptions> {
  const out = new Map<string, ResolvedRateLimitOptions>();
  if (input === undefined) return out;
  const o = expectObject(input, 'options.rateLimits');
  for (const name of Object.keys(o)) out.set(name, resolveRateLimitOptions(o[name], `options.rateLimits.${name}`));
  return out;
}

const ORCHESTRATOR_KEYS: ReadonlySet<string> = new Set([
  'pools',
  'routing',
  'maxQueueSize',
  'defaultTimeoutMs',
  'defaultMaxAttempts',
  'retry',
  'agingIntervalMs',
  'idempotencyTtlMs',
  'maxIdempotencyKeys',
  'maxDeadLetters',
  'maxAffinityKeys',
  'scaleIntervalMs',
  'clock',
  'random',
  'agentBreaker',
  'pressure',
  'budgets',
  'rateLimits',
  'health',
  'metrics',
  'tracing',
  'bridge',
  'handOffAbove',
  'maxPayloadBytes',
  'audit',
]);

/**
 * The audit trail: every critical operation (agent spawn and terminate, halt, resume, drain, stop, traffic change,
 * rollback, budget halt, dead-letter retry) is an `audit` event with its time, actor and node, and goes to `sink`.
 */
export interface AuditOptions {
  /**
   * Receives every entry, in order (append it to a file, a table, a log pipeline): agent spawn, register and
   * terminate; halt, resume, drain and stop; traffic change and rollback; budget halt; dead-letter retry. A sink that throws or rejects is
   * reported as an `audit:sink-failed` event; the operation itself is not affected.
   */
  sink?: (entry: import('./health/audit.js').AuditEntry) => void | Promise<void>;
  /** Who acts when a call does not say (`{ actor }` on the call). @default 'local' */
  actor?: string;
}

export interface ResolvedAuditOptions {
  readonly sink: ((entry: import('./health/audit.js').AuditEntry) => void | Promise<void>) | undefined;
  readonly actor: string;
}

/** The defaults of {@link AuditOptions} (no sink: entries are only `audit` events). */
export const AUDIT_DEFAULTS = Object.freeze({
  /** The actor of a call that names none. */
  actor: 'local',
});

function resolveAuditOptions(input: unknown): ResolvedAuditOptions {
  if (input === undefined) return { sink: undefined, actor: AUDIT_DEFAULTS.actor };
  const o = expectObject(input, 'options.audit');
  rejectUnknownKeys(o, new Set(['sink', 'actor']), 'options.audit');
  return {
    sink: optional(own(o, 'sink'), undefined, (v) =>
      expectFunction<ResolvedAuditOptions['sink']>(v, 'options.audit.sink'),
    ),
    actor: optional(own(o, 'actor'), AUDIT_DEFAULTS.actor, (v) => expectString(v, 'options.audit.actor')),
  };
}

/** Validates and completes the orchestrator's options. Throws ValidationError naming the first wrong field. */
export function resolveOrchestratorOptions(input: unknown = {}): ResolvedOrchestratorOptions {
  const o = expectObject(input, 'options');
  rejectUnknownKeys(o, ORCHESTRATOR_KEYS, 'options');
  const d = ORCHESTRATOR_DEFAULTS;

  const poolsRaw = own(o, 'pools') ?? [];
  if (!Array.isArray(poolsRaw)) {
    throw new ValidationError(
      'options.pools',
      `Expected \`options.pools\` to be an array of pool options, got ${describe(poolsRaw)}`,
    );
  }
  const pools: ResolvedPoolOptions[] = [];
  for (let i = 0; i < poolsRaw.length; i++)
    pools.push(resolvePoolOptions((poolsRaw as unknown[])[i], `options.pools[${i}]`));
  const seen = new Set<string>();
  pools.forEach((p, i) => {
    if (seen.has(p.role)) {
      throw new ValidationError(
        `options.pools[${i}].role`,
        `Two pools declare role ${JSON.stringify(p.role)}; roles must be unique`,
      );
    }
    seen.add(p.role);
  });

  const routing = optional(own(o, 'routing'), d.routing, (v) => {
    if (!ROUTING_STRATEGIES.includes(v as RoutingStrategyName)) {
      throw new ValidationError(
        'options.routing',
        `Expected \`options.routing\` to be one of ${ROUTING_STRATEGIES.join(', ')}, got ${describe(v)}`,
      );
    }
    return v as RoutingStrategyName;
  });

  const clock = optional(own(o, 'clock'), d.clock, (v) => {
    const c = expectObject(v, 'options.clock');
    expectFunction(c['now'], 'options.clock.now');
    return v as Clock;
  });

  return {
    pools,
    routing,
    maxQueueSize: optional(own(o, 'maxQueueSize'), d.maxQueueSize, (v) => expectInteger(v, 'options.maxQueueSize', 0)),
    defaultTimeoutMs: optional(own(o, 'defaultTimeoutMs'), d.defaultTimeoutMs, (v) =>
      expectDuration(v, 'options.defaultTimeoutMs', true),
    ),
    defaultMaxAttempts: optional(own(o, 'defaultMaxAttempts'), d.defaultMaxAttempts, (v) =>
      expectInteger(v, 'options.defaultMaxAttempts', 1, 100),
    ),
    retry: resolveRetryOptions(own(o, 'retry'), 'options.retry'),
    agentBreaker:
      own(o, 'agentBreaker') === false ? false : resolveBreakerOptions(own(o, 'agentBreaker'), 'options.agentBreaker'),
    pressure: resolvePressureOptions(own(o, 'pressure')),
    budgets: resolveBudgetOptions(own(o, 'budgets')),
    rateLimits: resolveRateLimits(own(o, 'rateLimits')),
    health: resolveHealthOptions(own(o, 'health')),
    metrics: resolveMetricsOptions(own(o, 'metrics')),
    tracing: optional<TracingMode>(own(o, 'tracing'), d.tracing, (v) => {
      if (typeof v === 'boolean' || v === 'auto') return v;
      const t = expectObject(v, 'options.tracing');
      expectFunction(
        expectObject(t['tracer'], 'options.tracing.tracer')['startSpan'],
        'options.tracing.tracer.startSpan',
      );
      return { tracer: t['tracer'] as TracerLike };
    }),
    bridge: optional(own(o, 'bridge'), undefined, (v) => {
      const b = expectObject(v, 'options.bridge');
      for (const m of ['start', 'stop', 'handOff', 'nodes', 'control', 'canAnyServe', 'status', 'stats'])
        expectFunction(b[m], `options.bridge.${m}`);
      return v as import('./bridge/bridge.js').CommunicationBridge;
    }),
    handOffAbove: optional(own(o, 'handOffAbove'), d.handOffAbove, (v) => expectInteger(v, 'options.handOffAbove', 0)),
    maxPayloadBytes: optional(own(o, 'maxPayloadBytes'), d.maxPayloadBytes, (v) =>
      v === Infinity ? Infinity : expectInteger(v, 'options.maxPayloadBytes', 1),
    ),
    audit: resolveAuditOptions(own(o, 'audit')),
    agingIntervalMs: optional(own(o, 'agingIntervalMs'), d.agingIntervalMs, (v) =>
      expectDuration(v, 'options.agingIntervalMs', true),
    ),
    idempotencyTtlMs: optional(own(o, 'idempotencyTtlMs'), d.idempotencyTtlMs, (v) =>
      expectDuration(v, 'options.idempotencyTtlMs'),
    ),
    maxIdempotencyKeys: optional(own(o, 'maxIdempotencyKeys'), d.maxIdempotencyKeys, (v) =>
      expectInteger(v, 'options.maxIdempotencyKeys', 0),
    ),
    maxDeadLetters: optional(own(o, 'maxDeadLetters'), d.maxDeadLetters, (v) =>
      expectInteger(v, 'options.maxDeadLetters', 0),
    ),
    maxAffinityKeys: optional(own(o, 'maxAffinityKeys'), d.maxAffinityKeys, (v) =>
      expectInteger(v, 'options.maxAffinityKeys', 0),
    ),
    scaleIntervalMs: optional(own(o, 'scaleIntervalMs'), d.scaleIntervalMs, (v) =>
      expectDuration(v, 'options.scaleIntervalMs', false, MAX_TIMER_MS),
    ),
    clock,
    random: optional(own(o, 'random'), d.random, (v) => expectFunction<() => number>(v, 'options.random')),
  };
}
