/**
 * The `durability` option: how a node holds, writes and takes over durable runs when a `store` is configured.
 */
import { MAX_TIMER_MS } from '../util/timers.js';
import {
  expectDuration,
  expectInteger,
  expectObject,
  expectString,
  keysOf,
  optional,
  own,
  rejectUnknownKeys,
} from '../util/validate.js';
import { ValidationError } from '../errors.js';

/**
 * How durable runs are held and written (with a `store`). Size the lease for your worst event-loop stall and network
 * blip: a node that does not renew it for `leaseMs` is taken for dead and its runs run again elsewhere.
 *
 * @example
 * ```ts
 * const orchestrator = new UnifiedOrchestrator({
 *   pools,
 *   store: new PostgresStore({ connectionString: process.env.DATABASE_URL }),
 *   durability: { leaseMs: 15_000, nodeId: process.env.HOSTNAME },
 * });
 * ```
 */
export interface DurabilityOptions {
  /**
   * This node's name in the store. With a name that stays the same across restarts (a pod or host name), a restarted
   * node takes its own unfinished runs back at start instead of waiting for its old lease to expire. Two live
   * processes must never share one. @default a random name per process
   */
  nodeId?: string;
  /** How long a node's lease lasts without renewal, in ms; its runs are taken over after that. @default 30_000 */
  leaseMs?: number;
  /** How often the lease is renewed, in ms; below `leaseMs`. @default leaseMs / 3 */
  heartbeatMs?: number;
  /** How often the node looks for runs without a live owner, in ms. @default 1_000 */
  claimIntervalMs?: number;
  /** At most this many runs taken at once, and kept waiting here, from the store. @default 64 */
  maxClaim?: number;
  /**
   * Times a run may be taken over from a node that died holding it before it is dead-lettered instead (a task that
   * kills its process). The run's `maxAttempts` counts when it is larger. @default 3
   */
  maxRecoveries?: number;
  /** At most this many runs in one insert statement. @default 500 */
  maxBatch?: number;
  /**
   * Progress events (started, retrying, …) kept while the store cannot be written, beyond which the oldest are
   * dropped (counted in `stats().durable.eventsDropped`). Terminal events are never dropped. @default 10_000
   */
  maxBufferedEvents?: number;
  /** How long finished runs are kept, in ms, before pruning deletes them. @default 7 days */
  retentionMs?: number;
  /** How often finished runs past `retentionMs` are pruned, in ms (`Infinity`: never, by this node). @default 60_000 */
  pruneIntervalMs?: number;
  /** How often `attach()` handles check the store for the end of a run another node runs, in ms. @default 1_000 */
  pollMs?: number;
}

/** {@link DurabilityOptions} with every default applied. */
export interface ResolvedDurabilityOptions {
  readonly nodeId: string | undefined;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly claimIntervalMs: number;
  readonly maxClaim: number;
  readonly maxRecoveries: number;
  readonly maxBatch: number;
  readonly maxBufferedEvents: number;
  readonly retentionMs: number;
  readonly pruneIntervalMs: number;
  readonly pollMs: number;
}

const DURABILITY_KEYS = keysOf<DurabilityOptions>({
  nodeId: true,
  leaseMs: true,
  heartbeatMs: true,
  claimIntervalMs: true,
  maxClaim: true,
  maxRecoveries: true,
  maxBatch: true,
  maxBufferedEvents: true,
  retentionMs: true,
  pruneIntervalMs: true,
  pollMs: true,
});

const DAY_MS = 86_400_000;

/** Validates and completes the `durability` option. Throws ValidationError naming the first wrong field. */
export function resolveDurabilityOptions(input: unknown): ResolvedDurabilityOptions {
  const field = 'options.durability';
  const o = input === undefined ? {} : expectObject(input, field);
  rejectUnknownKeys(o, DURABILITY_KEYS, field);
  const ms = (key: string, fallback: number, allowInfinity = false): number =>
    optional(own(o, key), fallback, (v) => expectDuration(v, `${field}.${key}`, allowInfinity, MAX_TIMER_MS));
  const leaseMs = ms('leaseMs', 30_000);
  if (leaseMs < 100)
    throw new ValidationError(`${field}.leaseMs`, `Expected \`${field}.leaseMs\` to be at least 100 ms`);
  const heartbeatMs = ms('heartbeatMs', Math.floor(leaseMs / 3));
  if (heartbeatMs >= leaseMs || heartbeatMs === 0) {
    throw new ValidationError(
      `${field}.heartbeatMs`,
      `Expected \`${field}.heartbeatMs\` (${heartbeatMs}) to be above 0 and below leaseMs (${leaseMs}): a lease must be renewed before it runs out`,
    );
  }
  const nodeId = optional(own(o, 'nodeId'), undefined, (v) => expectString(v, `${field}.nodeId`));
  if (nodeId !== undefined && (nodeId.length === 0 || nodeId.length > 200)) {
    throw new ValidationError(`${field}.nodeId`, `Expected \`${field}.nodeId\` to have 1 to 200 characters`);
  }
  return {
    nodeId,
    leaseMs,
    heartbeatMs,
    claimIntervalMs: ms('claimIntervalMs', 1_000),
    maxClaim: optional(own(o, 'maxClaim'), 64, (v) => expectInteger(v, `${field}.maxClaim`, 1, 10_000)),
    maxRecoveries: optional(own(o, 'maxRecoveries'), 3, (v) => expectInteger(v, `${field}.maxRecoveries`, 1, 1_000)),
    maxBatch: optional(own(o, 'maxBatch'), 500, (v) => expectInteger(v, `${field}.maxBatch`, 1, 10_000)),
    maxBufferedEvents: optional(own(o, 'maxBufferedEvents'), 10_000, (v) =>
      expectInteger(v, `${field}.maxBufferedEvents`, 0, 10_000_000),
    ),
    retentionMs: optional(own(o, 'retentionMs'), 7 * DAY_MS, (v) => expectDuration(v, `${field}.retentionMs`, true)),
    pruneIntervalMs: ms('pruneIntervalMs', 60_000, true),
    pollMs: ms('pollMs', 1_000),
  };
}
