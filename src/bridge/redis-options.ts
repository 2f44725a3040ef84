/**
 * RedisBridge options: validated when the bridge is made, like the orchestrator's own (a misspelt or out-of-range
 * option is a ValidationError naming it, never a silent default or a failure at the first heartbeat).
 */
import { expectFunction, expectInteger, expectObject, expectString, own, rejectUnknownKeys } from '../util/validate.js';
import { MAX_TIMER_MS } from '../util/timers.js';
import { ValidationError } from '../errors.js';
import type { RedisBridgeOptions } from './redis-bridge.js';

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
  /** Ms a blocking stream read waits. */
  blockMs: 1_000,
  /** Ms a `done` marker keeps a task from running again. */
  doneTtlMs: 3_600_000,
  /** Ms after which a control message is dropped as a replay. */
  maxMessageAgeMs: 60_000,
});

/** The timings and limits of a bridge, resolved. */
export type ResolvedRedisBridgeOptions = {
  -readonly [K in keyof typeof REDIS_BRIDGE_DEFAULTS]: (typeof REDIS_BRIDGE_DEFAULTS)[K] extends string
    ? string
    : number;
};

const KEYS: ReadonlySet<string> = new Set([
  'url',
  'redis',
  'redisOptions',
  'secret',
  'namespace',
  'nodeId',
  'heartbeatMs',
  'nodeTtlMs',
  'reclaimIdleMs',
  'maxDeliveries',
  'blockMs',
  'doneTtlMs',
  'maxMessageAgeMs',
  'retry',
]);

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
      `Expected \`options.url\` to be a redis:// or rediss:// URL, got ${typeof url === 'string' ? JSON.stringify(url.replace(/\/\/[^@/]*@/, '//…@')) : typeof url}`,
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

  const D = REDIS_BRIDGE_DEFAULTS;
  // Integers: every one of them goes to Redis as a millisecond argument (PX, BLOCK, min-idle), which must be whole.
  const int = (key: keyof typeof D & string, max: number): number => {
    const v = own(o, key);
    return v === undefined ? (D[key] as number) : expectInteger(v, `options.${key}`, 1, max);
  };
  const namespaceValue = own(o, 'namespace');
  const resolved: ResolvedRedisBridgeOptions = {
    namespace: namespaceValue === undefined ? D.namespace : expectString(namespaceValue, 'options.namespace'),
    heartbeatMs: int('heartbeatMs', MAX_TIMER_MS),
    nodeTtlMs: int('nodeTtlMs', Number.MAX_SAFE_INTEGER),
    reclaimIdleMs: int('reclaimIdleMs', Number.MAX_SAFE_INTEGER),
    maxDeliveries: int('maxDeliveries', Number.MAX_SAFE_INTEGER),
    blockMs: int('blockMs', MAX_TIMER_MS),
    doneTtlMs: int('doneTtlMs', Number.MAX_SAFE_INTEGER),
    maxMessageAgeMs: int('maxMessageAgeMs', Number.MAX_SAFE_INTEGER),
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
      `Expected \`options.reclaimIdleMs\` (${resolved.reclaimIdleMs}) to be above \`options.heartbeatMs\` (${resolved.heartbeatMs}): work running on live nodes would be reclaimed and run twice`,
    );
  }
  return resolved;
}
