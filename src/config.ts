/**
 * The orchestrator's options, composed from the options of each part: the engine's at the top level, then one field
 * per part (`pools`, `retry`, `health`, ...). Each part keeps its own type, frozen `*_DEFAULTS`, resolved type and
 * resolver beside its code (`engine/options.ts`, `pool/options.ts`, `resources/options.ts`, `health/options.ts`);
 * this file only puts them together. Resolution returns a new object and never mutates the caller's.
 */
import type { CommunicationBridge } from './bridge/bridge.js';
import {
  resolveDurabilityOptions,
  type DurabilityOptions,
  type ResolvedDurabilityOptions,
} from './store/durability-options.js';
import type { RunStore } from './store/store.js';
import {
  ENGINE_DEFAULTS,
  ENGINE_KEYS,
  resolveEngineOptions,
  type EngineOptions,
  type ResolvedEngineOptions,
} from './engine/options.js';
import {
  resolveHealthOptions,
  resolveMetricsOptions,
  resolveTracingMode,
  type HealthOptions,
  type MetricsOptions,
  type ResolvedHealthOptions,
  type ResolvedMetricsOptions,
} from './health/options.js';
import { resolveAuditOptions, type AuditOptions, type ResolvedAuditOptions } from './health/audit.js';
import type { TracingMode } from './health/tracing.js';
import { resolvePools, type PoolOptions, type ResolvedPoolOptions } from './pool/options.js';
import {
  resolveBreakerOptions,
  resolveBudgetOptions,
  resolvePressureOptions,
  resolveRateLimits,
  resolveRetryOptions,
  type BreakerOptions,
  type BudgetOptions,
  type PressureOptions,
  type RateLimitOptions,
  type ResolvedBreakerOptions,
  type ResolvedBudgetOptions,
  type ResolvedPressureOptions,
  type ResolvedRateLimitOptions,
  type ResolvedRetryOptions,
  type RetryOptions,
} from './resources/options.js';
import { MAX_TIMER_MS, PERFORMANCE_CLOCK, type Clock } from './util/timers.js';
import {
  expectDuration,
  expectFunction,
  expectInteger,
  expectObject,
  keysOf,
  optional,
  own,
  rejectUnknownKeys,
} from './util/validate.js';

/** Options of {@link UnifiedOrchestrator}: the engine's at the top level, and one field per part. */
export interface OrchestratorOptions extends EngineOptions {
  /** The pools to pre-warm at `start()`. @default [] */
  pools?: readonly PoolOptions[];
  /** How often (ms) pools check for idle agents to scale down, and top up to their minimum. @default 1_000 */
  scaleIntervalMs?: number;
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
  /** The audit trail of critical operations (`audit` events); see {@link AuditOptions}. */
  audit?: AuditOptions;
  /**
   * OpenTelemetry spans per task, through `@opentelemetry/api` (an optional peer dependency). `'auto'`: when the
   * package is installed and an SDK is registered at `start()`; `true`: whenever installed; `{ tracer }`: that tracer
   * (the package must still be installed); `false`: never.
   * @default 'auto'
   */
  tracing?: TracingMode;
  /** How this node talks to the others: a RedisBridge for many processes. @default a private MemoryBridge (one process) */
  bridge?: CommunicationBridge;
  /**
   * The store of record for durable runs: with one, every submitted task is stored before it is accepted, its history
   * is kept, and the tasks of a node that dies are taken over by another node (or by the same one after a restart).
   * `PostgresStore` on a PostgreSQL server (many nodes), `PGliteStore` embedded (one process, no service),
   * `MemoryStore` (history in memory, nothing durable). The orchestrator opens it at `start()` and closes it at
   * `stop()`. Tasks are not handed off through the bridge while a store is set: nodes share work through the store.
   * @default none (tasks live in memory only, at full speed)
   */
  store?: RunStore;
  /** How durable runs are held, written and taken over; see {@link DurabilityOptions}. Only with a `store`. */
  durability?: DurabilityOptions;
  /**
   * With this many tasks of a class already waiting here, a new one goes to another node that can serve it (through
   * the bridge) instead of queueing. Tasks no local agent can serve go to the cluster regardless. @default none
   */
  handOffAbove?: number;
  /**
   * How long a task handed to the cluster waits for a live node that serves its `requires` while none does (ms): it
   * stays queued in the cluster meanwhile (a node that starts within the wait runs it), then ends with
   * NoCapableNodeError. `0` refuses such a task at once with NoCapableAgentError instead. Only with a `bridge` given
   * (the default private bridge has no other node to wait for); the task's `deadlineMs` bounds it too. @default 60_000
   */
  waitForNodeMs?: number;
  /** Monotonic clock in ms. @default performance.now */
  clock?: Clock;
  /** Random source in [0, 1), for jitter. @default Math.random */
  random?: () => number;
}

/** {@link OrchestratorOptions} with every default applied. */
export interface ResolvedOrchestratorOptions extends ResolvedEngineOptions {
  readonly pools: readonly ResolvedPoolOptions[];
  readonly scaleIntervalMs: number;
  readonly retry: ResolvedRetryOptions;
  readonly agentBreaker: ResolvedBreakerOptions | false;
  readonly pressure: ResolvedPressureOptions | false;
  readonly budgets: ResolvedBudgetOptions;
  readonly rateLimits: ReadonlyMap<string, ResolvedRateLimitOptions>;
  readonly health: ResolvedHealthOptions;
  readonly metrics: ResolvedMetricsOptions | false;
  readonly audit: ResolvedAuditOptions;
  readonly tracing: TracingMode;
  readonly bridge: CommunicationBridge | undefined;
  readonly store: RunStore | undefined;
  readonly durability: ResolvedDurabilityOptions;
  readonly handOffAbove: number;
  readonly waitForNodeMs: number;
  readonly clock: Clock;
  readonly random: () => number;
}

/**
 * The defaults of {@link OrchestratorOptions} that are plain values: the engine's, and the few top-level ones. The
 * others: no pools, a private MemoryBridge, and the defaults of each part's options.
 */
export const ORCHESTRATOR_DEFAULTS = Object.freeze({
  ...ENGINE_DEFAULTS,
  /** Interval (ms) of the pools' scale-down and top-up pass. */
  scaleIntervalMs: 1_000,
  /** OpenTelemetry spans when `@opentelemetry/api` is installed and an SDK is registered. */
  tracing: 'auto',
  /** No hand-off for load: only tasks this node cannot serve go to the cluster. */
  handOffAbove: Infinity,
  /** A task waits up to a minute in the cluster for a node that serves it. */
  waitForNodeMs: 60_000,
  /** `performance.now()`. */
  clock: PERFORMANCE_CLOCK,
  /** `Math.random`. */
  random: Math.random,
});

/** Every top-level option name, in the order a ValidationError lists them. */
const ORCHESTRATOR_KEYS: ReadonlySet<string> = new Set([
  ...keysOf<Omit<OrchestratorOptions, keyof EngineOptions>>({
    pools: true,
    scaleIntervalMs: true,
    retry: true,
    agentBreaker: true,
    pressure: true,
    budgets: true,
    rateLimits: true,
    health: true,
    metrics: true,
    audit: true,
    tracing: true,
    bridge: true,
    store: true,
    durability: true,
    handOffAbove: true,
    waitForNodeMs: true,
    clock: true,
    random: true,
  }),
  ...ENGINE_KEYS,
]);

/** The methods an object must have to serve as the `bridge` option. */
const BRIDGE_METHODS = ['start', 'stop', 'handOff', 'nodes', 'control', 'canAnyServe', 'status', 'stats'] as const;

/** The methods an object must have to serve as the `store` option (the RunStore interface). */
const STORE_METHODS = [
  'open',
  'close',
  'insert',
  'append',
  'heartbeat',
  'claim',
  'leave',
  'get',
  'getMany',
  'events',
  'list',
  'deadLetters',
  'onFinished',
  'prune',
] as const;

/** Validates and completes the orchestrator's options. Throws ValidationError naming the first wrong field. */
export function resolveOrchestratorOptions(input: unknown = {}): ResolvedOrchestratorOptions {
  const o = expectObject(input, 'options');
  rejectUnknownKeys(o, ORCHESTRATOR_KEYS, 'options');
  const d = ORCHESTRATOR_DEFAULTS;
  return {
    pools: resolvePools(own(o, 'pools') ?? []),
    ...resolveEngineOptions(o),
    retry: resolveRetryOptions(own(o, 'retry'), 'options.retry'),
    agentBreaker:
      own(o, 'agentBreaker') === false ? false : resolveBreakerOptions(own(o, 'agentBreaker'), 'options.agentBreaker'),
    pressure: resolvePressureOptions(own(o, 'pressure')),
    budgets: resolveBudgetOptions(own(o, 'budgets')),
    rateLimits: resolveRateLimits(own(o, 'rateLimits')),
    health: resolveHealthOptions(own(o, 'health')),
    metrics: resolveMetricsOptions(own(o, 'metrics')),
    tracing: resolveTracingMode(own(o, 'tracing'), d.tracing),
    bridge: optional(own(o, 'bridge'), undefined, (v) => {
      const b = expectObject(v, 'options.bridge');
      for (const m of BRIDGE_METHODS) expectFunction(b[m], `options.bridge.${m}`);
      return v as CommunicationBridge;
    }),
    store: optional(own(o, 'store'), undefined, (v) => {
      const store = expectObject(v, 'options.store');
      for (const m of STORE_METHODS) expectFunction(store[m], `options.store.${m}`);
      return v as RunStore;
    }),
    durability: resolveDurabilityOptions(own(o, 'durability')),
    handOffAbove: optional(own(o, 'handOffAbove'), d.handOffAbove, (v) => expectInteger(v, 'options.handOffAbove', 0)),
    waitForNodeMs: optional(own(o, 'waitForNodeMs'), d.waitForNodeMs, (v) =>
      v === Infinity ? Infinity : expectInteger(v, 'options.waitForNodeMs', 0),
    ),
    audit: resolveAuditOptions(own(o, 'audit')),
    scaleIntervalMs: optional(own(o, 'scaleIntervalMs'), d.scaleIntervalMs, (v) =>
      expectDuration(v, 'options.scaleIntervalMs', false, MAX_TIMER_MS),
    ),
    clock: optional(own(o, 'clock'), d.clock, (v) => {
      expectFunction(expectObject(v, 'options.clock')['now'], 'options.clock.now');
      return v as Clock;
    }),
    random: optional(own(o, 'random'), d.random, (v) => expectFunction<() => number>(v, 'options.random')),
  };
}
