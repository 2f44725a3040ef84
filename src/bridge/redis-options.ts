/**
 * RedisBridge options: the documented type, the frozen defaults, the resolved type and the resolver. They are
 * validated when the bridge is made, like the orchestrator's own (a misspelt or out-of-range option is a
 * ValidationError naming it, never a silent default or a failure at the first heartbeat).
 */
import type { Redis, RedisOptions } from 'ioredis';
import { MAX_TIMER_MS } from '../util/timers.js';
import {
  expectBoolean,
  expectFunction,
  expectInteger,
  expectObject,
  expectString,
  own,
  rejectUnknownKeys,
  keysOf,
} from '../util/validate.js';
import { ValidationError } from '../errors.js';
import type { RetryPolicy } from '../resources/retry-policy.js';
import { RELEASED } from './redis-streams.js';

/**
 * Options of {@link RedisBridge}. `secret` and one of `url` or `redis` are required.
 *
 * The timings depend on each other (the constructor refuses `nodeTtlMs` or `reclaimIdleMs` at or below `heartbeatMs`):
 * `heartbeatMs` well below `nodeTtlMs` (say a third at most) and well below `reclaimIdleMs`, and `doneTtlMs` above
 * the time an entry can stay pending (about `maxDeliveries` × `reclaimIdleMs`, plus the tasks' run time).
 */
export interface RedisBridgeOptions {
  /**
   * A `redis://` or `rediss://` URL (credentials and ACL user in it pass through to ioredis). The bridge makes its own
   * connection from it in `start()` and closes it in `stop()`. Unused when `redis` is given.
   */
  url?: string;
  /**
   * Your own ioredis client: the bridge uses it for commands (and duplicates it for its subscriber and the two
   * blocking readers) and never closes it. Wins over `url`.
   */
  redis?: Redis;
  /**
   * Extra ioredis options (TLS, username, password, ...) for the connection made from `url`; they override the
   * bridge's own (`maxRetriesPerRequest: null`, so commands wait out a reconnect, and a `retryStrategy` from `retry`).
   * Ignored when `redis` is given.
   */
  redisOptions?: RedisOptions;
  /** Shared by every node; signs every message. At least 16 characters. */
  secret: string;
  /**
   * Prefix of every key, and part of every signature: nodes of two namespaces are two clusters. Any string: `%` and `:`
   * in it are percent-encoded where it opens a key, so no namespace reaches another's keys (a `{...}` hash tag is
   * kept). @default 'uo'
   */
  namespace?: string;
  /**
   * This node's id, unique in the cluster: it names its registry entry, its results stream and its consumer in each
   * task group (`~released` is kept by the bridge). @default `node-` and 8 random hex digits
   */
  nodeId?: string;
  /**
   * Ms between heartbeats. Each beat rewrites this node's registry entry, starts consuming new task classes it can
   * serve, keeps its running entries from being reclaimed, reclaims idle ones and re-reads the registry (what
   * `canAnyServe` answers from). Lower: a fresher view of the cluster, for more Redis commands per node.
   * Keep it well below `nodeTtlMs` (the others read a node's entry on their own beat, so a live node can look two
   * beats old) and `reclaimIdleMs`. @default 1_000
   */
  heartbeatMs?: number;
  /**
   * Ms a node's registry entry lives after its last heartbeat (its TTL in Redis): its lease. A node whose heartbeat
   * is this old is gone: it no longer counts for `canAnyServe` on the others, and its entries may be reclaimed. Time
   * during which Redis or the reading node stalled does not count (see redis-registry.ts). Lower: a dead node drops
   * out sooner; too close to `heartbeatMs` and live nodes drop out between beats (at or below it, the constructor
   * refuses it). @default 5_000
   */
  nodeTtlMs?: number;
  /**
   * Ms a delivered entry must sit idle before a live node claims it and runs what has no result yet, when the node
   * that holds it is gone (its lease, `nodeTtlMs`, ran out) or refused it. An entry of a live node is never claimed,
   * however long it is idle. Live nodes reset the idle time of what they run on every heartbeat, and a node hands on
   * what it holds but does not run once it is this idle, so keep it well above `heartbeatMs` (at or below it, the
   * constructor refuses it). Lower: the tasks of a dead node, or refused ones, resume sooner.
   * @default 15_000
   */
  reclaimIdleMs?: number;
  /**
   * Deliveries of one stream entry (up to 16 hand-offs of one node) before the next claim dead-letters it: its tasks
   * that have no result yet reject at their origin with TASK_DEAD_LETTERED, and the entry goes to the `dead` stream.
   * Only deliveries that ended in silence count (the node died or hung); one that a node refused (queue full,
   * pressure, stopping) does not, so a busy cluster never dead-letters work. @default 5
   */
  maxDeliveries?: number;
  /**
   * Entries the `dead` stream keeps at most; adding one past it drops the oldest, so a poison-task storm cannot fill
   * Redis. Each entry keeps its sealed batch for inspection (`XRANGE <namespace>:dead - +`). @default 10_000
   */
  maxDeadEntries?: number;
  /**
   * Entries (of up to 16 hand-offs each) a task stream may hold not yet run (waiting for a node, or running) before this
   * node refuses to add to it: `submit` rejects with QueueFullError (`limit: 'maxStreamBacklog'`), as it does past
   * `maxQueueSize`. Each node reads the length of the streams it hands off to on every heartbeat and counts what it
   * added since, so a burst between two beats can pass it by a beat's worth of hand-offs. Lower: Redis holds less work
   * no node has taken; higher: longer bursts are absorbed while the consumers catch up. @default 10_000
   */
  maxStreamBacklog?: number;
  /**
   * Ms a blocking read of tasks or results waits for new entries. Lower: tasks of a class this node just started
   * serving are picked up sooner, for more round trips while idle. `stop()` does not wait for it. @default 1_000
   */
  blockMs?: number;
  /**
   * Ms a task's `done` marker lives after its result is reported (or it is dead-lettered): a redelivery of the task
   * within this time is not run again. A task entry sealed longer ago than this is not run at all (its marker may be
   * gone): its submitter gets TASK_DELIVERY_STALE. Longer: more keys in Redis (one per handed-off task).
   * @default 3_600_000 (an hour)
   */
  doneTtlMs?: number;
  /**
   * Ms by which a control message's timestamp may differ from this node's clock (older, or ahead by clock skew)
   * before it is dropped as a replay. Must exceed the clock skew between nodes. The standing state replayed at start is
   * not checked against it. A task entry added to Redis more than this before or after its message was sealed (an old
   * entry written back, or clocks of nodes and Redis that disagree by more) is refused, and its submitter, if still
   * waiting, gets TASK_DELIVERY_STALE. @default 60_000
   */
  maxMessageAgeMs?: number;
  /**
   * Seal every message (tasks, results, control, registry entries) as AES-256-GCM ciphertext under a key derived from
   * `secret` (HKDF), as well as signing it, so that whoever reads Redis without the secret sees no payload, result or
   * status. Costs CPU on every message (docs/usage.md has a measurement). Every node of a fleet, and the CLI
   * (`--encrypt`), must agree: a node refuses the messages of one that does not (counted in `rejected`, and its status
   * turns degraded saying so). @default false
   */
  encrypt?: boolean;
  /**
   * Longest wait of `stop()`, in ms, for what it finishes gracefully: the hand-offs running here reporting their
   * results, the node leaving the registry, the connection made from `url` quitting. Past it (Redis down, paused or
   * slow), the hand-offs still waiting reject with OrchestratorStoppedError and every connection the bridge made is cut,
   * so that nothing keeps the process alive. An orchestrator's `stop()` bounds it further by what is left of its own
   * `timeoutMs`. @default 5_000
   */
  stopTimeoutMs?: number;
  /**
   * Delays between reconnects of the connection made from `url` (at least 50 ms each). @default the orchestrator's
   * retry policy (outside an orchestrator: 50 ms × 2^attempt, at most 2 s)
   */
  retry?: RetryPolicy;
}

/** The defaults of {@link RedisBridgeOptions}' timings and limits (see each option). */
export const REDIS_BRIDGE_DEFAULTS = Object.freeze({
  /** Prefix of every key. */
  namespace: 'uo',
  /** Ms between a node's heartbeats. */
  heartbeatMs: 1_000,
  /** Ms a registry entry lives after its last heartbeat. */
  nodeTtlMs: 5_000,
  /** Ms an entry sits idle before a live node claims it. */
  reclaimIdleMs: 15_000,
  /** Deliveries of a stream entry before it is dead-lettered. */
  maxDeliveries: 5,
  /** Entries the `dead` stream keeps at most. */
  maxDeadEntries: 10_000,
  /** Entries a task stream holds before hand-offs to it are refused. */
  maxStreamBacklog: 10_000,
  /** Ms a blocking stream read waits. */
  blockMs: 1_000,
  /** Ms a `done` marker keeps a task from running again. */
  doneTtlMs: 3_600_000,
  /** Ms after which a control message is dropped as a replay. */
  maxMessageAgeMs: 60_000,
  /** Longest wait of `stop()`, in ms, before it cuts the connections. */
  stopTimeoutMs: 5_000,
  /** Messages are signed, not encrypted. */
  encrypt: false,
});

/** The timings and limits of a bridge, resolved. */
export type ResolvedRedisBridgeOptions = {
  -readonly [K in keyof typeof REDIS_BRIDGE_DEFAULTS]: (typeof REDIS_BRIDGE_DEFAULTS)[K] extends string
    ? string
    : (typeof REDIS_BRIDGE_DEFAULTS)[K] extends boolean
      ? boolean
      : number;
};

const KEYS = keysOf<RedisBridgeOptions>({
  url: true,
  redis: true,
  redisOptions: true,
  secret: true,
  namespace: true,
  nodeId: true,
  heartbeatMs: true,
  nodeTtlMs: true,
  reclaimIdleMs: true,
  maxDeliveries: true,
  maxDeadEntries: true,
  maxStreamBacklog: true,
  blockMs: true,
  doneTtlMs: true,
  maxMessageAgeMs: true,
  stopTimeoutMs: true,
  encrypt: true,
  retry: true,
});

/**
 * A Redis URL fit for a message or a log: everything between the scheme and the last `@` (user and password) is
 * hidden, also in a URL that does not parse.
 */
export function redactRedisUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/).*@/i, '$1…@');
}

/** Checks every option and the relations between the timings; returns the timings and limits with their defaults. */
export function resolveRedisBridgeOptions(options: RedisBridgeOptions): ResolvedRedisBridgeOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('options', 'Expected RedisBridge options with a secret and a url or redis client');
  }
  const o = expectObject(options, 'options');
  rejectUnknownKeys(o, KEYS, 'options');
  const secret = own(o, 'secret');
  if (typeof secret !== 'string' || secret.length < 16) {
    throw new ValidationError(
      'options.secret',
      'Expected `options.secret` to be a string of at least 16 characters, shared by every node',
    );
  }
  const url = own(o, 'url');
  const redis = own(o, 'redis');
  if (url === undefined && redis === undefined) {
    throw new ValidationError(
      'options.url',
      'Expected `options.url` (redis:// or rediss://) or `options.redis` (an ioredis client)',
    );
  }
  if (url !== undefined && (typeof url !== 'string' || !/^rediss?:\/\//i.test(url))) {
    throw new ValidationError(
      'options.url',
      `Expected \`options.url\` to be a redis:// or rediss:// URL, got ${typeof url === 'string' ? JSON.stringify(redactRedisUrl(url)) : typeof url}`,
    );
  }
  if (typeof url === 'string' && !URL.canParse(url)) {
    // ioredis would throw a TypeError whose `input` holds the whole URL, password included.
    throw new ValidationError(
      'options.url',
      `Expected \`options.url\` to be a valid redis:// or rediss:// URL, got ${JSON.stringify(redactRedisUrl(url))}: check the host and port, and percent-encode reserved characters in the user and password`,
    );
  }
  if (
    redis !== undefined &&
    (typeof redis !== 'object' || redis === null || typeof (redis as { duplicate?: unknown }).duplicate !== 'function')
  ) {
    throw new ValidationError('options.redis', 'Expected `options.redis` to be an ioredis client (with duplicate())');
  }
  const redisOptions = own(o, 'redisOptions');
  if (redisOptions !== undefined) expectObject(redisOptions, 'options.redisOptions');
  const retry = own(o, 'retry');
  if (retry !== undefined) expectFunction(expectObject(retry, 'options.retry')['delay'], 'options.retry.delay');
  const nodeId = own(o, 'nodeId');
  if (nodeId !== undefined) expectString(nodeId, 'options.nodeId');
  if (nodeId === RELEASED) {
    throw new ValidationError(
      'options.nodeId',
      `Expected \`options.nodeId\` to be another id than ${JSON.stringify(RELEASED)}, which the bridge keeps for entries no node holds`,
    );
  }

  const D = REDIS_BRIDGE_DEFAULTS;
  // Integers: every one of them goes to Redis as a millisecond argument (PX, BLOCK, min-idle), which must be whole.
  const int = (key: keyof typeof D, max: number): number => {
    const v = own(o, key);
    return v === undefined ? (D[key] as number) : expectInteger(v, `options.${key}`, 1, max);
  };
  const namespaceValue = own(o, 'namespace');
  const encrypt = own(o, 'encrypt');
  const resolved: ResolvedRedisBridgeOptions = {
    namespace: namespaceValue === undefined ? D.namespace : expectString(namespaceValue, 'options.namespace'),
    heartbeatMs: int('heartbeatMs', MAX_TIMER_MS),
    nodeTtlMs: int('nodeTtlMs', Number.MAX_SAFE_INTEGER),
    reclaimIdleMs: int('reclaimIdleMs', Number.MAX_SAFE_INTEGER),
    maxDeliveries: int('maxDeliveries', Number.MAX_SAFE_INTEGER),
    maxDeadEntries: int('maxDeadEntries', Number.MAX_SAFE_INTEGER),
    maxStreamBacklog: int('maxStreamBacklog', Number.MAX_SAFE_INTEGER),
    blockMs: int('blockMs', MAX_TIMER_MS),
    doneTtlMs: int('doneTtlMs', Number.MAX_SAFE_INTEGER),
    maxMessageAgeMs: int('maxMessageAgeMs', Number.MAX_SAFE_INTEGER),
    stopTimeoutMs: int('stopTimeoutMs', MAX_TIMER_MS),
    encrypt: encrypt === undefined ? D.encrypt : expectBoolean(encrypt, 'options.encrypt'),
  };
  // A node beats every heartbeatMs; its registry entry must outlive a beat, and its running entries are kept fresh on
  // each beat, so a reclaim threshold at or below the beat would take work from live nodes and run it twice.
  if (resolved.nodeTtlMs <= resolved.heartbeatMs) {
    throw new ValidationError(
      'options.nodeTtlMs',
      `Expected \`options.nodeTtlMs\` (${resolved.nodeTtlMs}) to be above \`options.heartbeatMs\` (${resolved.heartbeatMs}): a live node would drop out of the registry between beats; keep it at 3 beats or more`,
    );
  }
  if (resolved.reclaimIdleMs <= resolved.heartbeatMs) {
    throw new ValidationError(
      'options.reclaimIdleMs',
      `Expected \`options.reclaimIdleMs\` (${resolved.reclaimIdleMs}) to be above \`options.heartbeatMs\` (${resolved.heartbeatMs}): a node would hand on entries it has just read before it starts running them, and they would run twice`,
    );
  }
  return resolved;
}
