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
  /**
   * Due runs that no node took for this long are reported (`health()`, `stats().durable.unclaimed`, the
   * `runs_unclaimed` metric): no node that can serve them is up (no agent with their capabilities, no node with
   * their workflow version). `Infinity`: never looked for. @default 60_000
   */
  unclaimedAfterMs?: number;
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
  readonly unclaimedAfterMs: number;
}

const DAY_MS = 86_400_000;

/**
 * The defaults of {@link DurabilityOptions}: plain values (`nodeId` is random per process, and `heartbeatMs` a third
 * of `leaseMs`, when not given).
 */
export const DURABILITY_DEFAULTS = Object.freeze({
  /** A node not heard from for this long is taken for dead, ms. */
  leaseMs: 30_000,
  /** How often runs without a live owner are looked for, ms. */
  claimIntervalMs: 1_000,
  /** Runs taken at once, and kept waiting here, from the store. */
  maxClaim: 64,
  /** Take-overs from dead nodes before a run is dead-lettered instead. */
  maxRecoveries: 3,
  /** Runs in one insert statement at most. */
  maxBatch: 500,
  /** Progress events kept while the store cannot be written. */
  maxBufferedEvents: 10_000,
  /** How long finished runs are kept, ms (7 days). */
  retentionMs: 7 * DAY_MS,
  /** How often finished runs past the retention are pruned, ms. */
  pruneIntervalMs: 60_000,
  /** How often `attach()` handles ask the store, ms. */
  pollMs: 1_000,
  /** Due runs no node took for this long are reported, ms. */
  unclaimedAfterMs: 60_000,
});

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
  unclaimedAfterMs: true,
});

/** Validates and completes the `durability` option. Throws ValidationError naming the first wrong field. */
export function resolveDurabilityOptions(input: unknown): ResolvedDurabilityOptions {
  const field = 'options.durability';
  const o = input === undefined ? {} : expectObject(input, field);
  rejectUnknownKeys(o, DURABILITY_KEYS, field);
  const ms = (key: string, fallback: number, allowInfinity = false): number =>
    optional(own(o, key), fallback, (v) => expectDuration(v, `${field}.${key}`, allowInfinity, MAX_TIMER_MS));
  const d = DURABILITY_DEFAULTS;
  const leaseMs = ms('leaseMs', d.leaseMs);
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
    claimIntervalMs: ms('claimIntervalMs', d.claimIntervalMs),
    maxClaim: optional(own(o, 'maxClaim'), d.maxClaim, (v) => expectInteger(v, `${field}.maxClaim`, 1, 10_000)),
    maxRecoveries: optional(own(o, 'maxRecoveries'), d.maxRecoveries, (v) =>
      expectInteger(v, `${field}.maxRecoveries`, 1, 1_000),
    ),
    maxBatch: optional(own(o, 'maxBatch'), d.maxBatch, (v) => expectInteger(v, `${field}.maxBatch`, 1, 10_000)),
    maxBufferedEvents: optional(own(o, 'maxBufferedEvents'), d.maxBufferedEvents, (v) =>
      expectInteger(v, `${field}.maxBufferedEvents`, 0, 10_000_000),
    ),
    retentionMs: optional(own(o, 'retentionMs'), d.retentionMs, (v) => expectDuration(v, `${field}.retentionMs`, true)),
    pruneIntervalMs: ms('pruneIntervalMs', d.pruneIntervalMs, true),
    pollMs: ms('pollMs', d.pollMs),
    unclaimedAfterMs: ms('unclaimedAfterMs', d.unclaimedAfterMs, true),
  };
}
