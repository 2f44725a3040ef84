/**
 * The engine's options: how tasks are routed, queued, timed out, retried, deduplicated and remembered. They sit at
 * the top level of the orchestrator's options (`OrchestratorOptions` extends `EngineOptions`).
 */
import { ValidationError } from '../errors.js';
import { describe, expectDuration, expectInteger, keysOf, optional, own } from '../util/validate.js';
import { ROUTING_STRATEGIES, type RoutingStrategyName } from './routing-strategy.js';

/** The engine's options, at the top level of the orchestrator's. */
export interface EngineOptions {
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
   * The largest task payload accepted, in bytes of its JSON. A larger one (or, with a limit set, one that cannot be
   * serialised to be measured) is refused with ValidationError before it is queued or handed to another node. Send a
   * reference (a URL, a key) for large inputs. @default none
   */
  maxPayloadBytes?: number;
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
}

/** {@link EngineOptions} with every default applied. */
export type ResolvedEngineOptions = { readonly [K in keyof EngineOptions]-?: NonNullable<EngineOptions[K]> };

/** The defaults of {@link EngineOptions}. */
export const ENGINE_DEFAULTS = Object.freeze({
  /** The routing strategy. */
  routing: 'score' as RoutingStrategyName,
  /** Waiting tasks held at most. */
  maxQueueSize: 100_000,
  /** Per-attempt timeout of a task that sets none, in ms. */
  defaultTimeoutMs: 120_000,
  /** Attempts of a task that sets no `maxAttempts`. */
  defaultMaxAttempts: 1,
  /** No payload size limit. */
  maxPayloadBytes: Infinity,
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
}) satisfies ResolvedEngineOptions;

/** Task fields' defaults that are not options. */
export const TASK_DEFAULTS = Object.freeze({
  /** The priority of a task that sets none; higher runs first. */
  priority: 0,
  /** The whole-task limit (ms from acceptance) of a task that sets none: none. */
  deadlineMs: Infinity,
});

/** The top-level option names the engine owns. */
export const ENGINE_KEYS = keysOf<EngineOptions>({
  routing: true,
  maxQueueSize: true,
  defaultTimeoutMs: true,
  defaultMaxAttempts: true,
  maxPayloadBytes: true,
  agingIntervalMs: true,
  idempotencyTtlMs: true,
  maxIdempotencyKeys: true,
  maxDeadLetters: true,
  maxAffinityKeys: true,
});

/** Validates the engine's options out of the orchestrator's (already known to be an object of known keys). */
export function resolveEngineOptions(o: Record<string, unknown>): ResolvedEngineOptions {
  const d = ENGINE_DEFAULTS;
  return {
    routing: optional(own(o, 'routing'), d.routing, (v) => {
      if (typeof v !== 'string' || !Object.hasOwn(ROUTING_STRATEGIES, v)) {
        throw new ValidationError(
          'options.routing',
          `Expected \`options.routing\` to be one of ${Object.keys(ROUTING_STRATEGIES).join(', ')}, got ${describe(v)}`,
        );
      }
      return v as RoutingStrategyName;
    }),
    maxQueueSize: optional(own(o, 'maxQueueSize'), d.maxQueueSize, (v) => expectInteger(v, 'options.maxQueueSize', 0)),
    defaultTimeoutMs: optional(own(o, 'defaultTimeoutMs'), d.defaultTimeoutMs, (v) =>
      expectDuration(v, 'options.defaultTimeoutMs', true),
    ),
    defaultMaxAttempts: optional(own(o, 'defaultMaxAttempts'), d.defaultMaxAttempts, (v) =>
      expectInteger(v, 'options.defaultMaxAttempts', 1, 100),
    ),
    maxPayloadBytes: optional(own(o, 'maxPayloadBytes'), d.maxPayloadBytes, (v) =>
      v === Infinity ? Infinity : expectInteger(v, 'options.maxPayloadBytes', 1),
    ),
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
  };
}
