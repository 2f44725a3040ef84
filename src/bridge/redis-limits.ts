/**
 * Cluster-wide rate limits and tenant budgets in Redis, for the nodes of one namespace (see
 * src/resources/cluster-limits.ts for how a node uses them). Two scripts, each atomic, on Redis's own clock (TIME), so
 * that the nodes' clocks do not matter:
 * - LIMIT on `limit:<name>` (hash: `r` requests and `u` units in the bucket, `ts` when last refilled, `p` until when a
 *   retry-after pauses it): the token bucket of a rate limit, refilled continuously like the local one. `lease` takes
 *   up to n requests (none while paused or while the units are in debt), `give` puts unused ones back (never above the
 *   limit), `units` charges reported units (the bucket may go into debt), `pause` pauses it and publishes the pause on
 *   `limits`. The key expires once the bucket would be full again (an absent key is a full bucket).
 * - BUDGET on `budget:<tenant>` (hash: one field per bucket of windowMs / 20, by its absolute index): adds each
 *   tenant's charge, drops buckets that left the window, and answers the spend and, when it reached the limit sent,
 *   the ms until it is under again (published on `limits` as well, so every node refuses the tenant's next tasks).
 * Names and tenant ids are percent-encoded in keys (as capabilities are in class keys: redis-keys.ts).
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ResolvedRateLimitOptions } from '../resources/options.js';
import type { BudgetCharge, BudgetReply, ClusterLimitsBackend, LimitReply } from '../resources/cluster-limits.js';
import type { RedisConnections } from './redis-connections.js';
import { classKey } from './redis-keys.js';
import type { RedisNode } from './redis-node.js';

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** KEYS[1] limit; ARGV op, n, requests (-1: unlimited), units (-1), intervalMs, channel, node id, name. */
const LIMIT = `${NOW}
local op, n = ARGV[1], tonumber(ARGV[2])
local cap, ucap, interval = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'r', 'u', 'ts', 'p')
local r = tonumber(h[1]) or cap
local u = tonumber(h[2]) or ucap
local ts = tonumber(h[3]) or now
local p = tonumber(h[4]) or 0
if cap >= 0 and r > cap then r = cap end
if ucap >= 0 and u > ucap then u = ucap end
local el = now - ts
if el > 0 then
  if cap >= 0 then r = math.min(cap, r + el * cap / interval) end
  if ucap >= 0 then u = math.min(ucap, u + el * ucap / interval) end
  ts = now
end
local granted, retry = 0, 0
if op == 'lease' then
  if now < p then
    retry = p - now
  elseif ucap >= 0 and u <= 0 then
    retry = math.ceil((1e-9 - u) * interval / ucap)
  elseif cap < 0 then
    granted = n
  else
    granted = math.min(n, math.floor(r))
    r = r - granted
    if granted == 0 then retry = math.ceil((1 - r) * interval / cap) end
  end
elseif op == 'give' then
  if cap >= 0 then r = math.min(cap, r + n) end
elseif op == 'units' then
  if ucap >= 0 then u = u - n end
elseif op == 'pause' then
  local untilp = now + n
  if untilp > p then
    p = untilp
    if cap >= 0 then
      r = math.min(r, 1)
      if ts < untilp then ts = untilp end
    end
    redis.call('PUBLISH', ARGV[6], 'p\\n' .. ARGV[7] .. '\\n' .. ARGV[8] .. '\\n' .. n)
  end
end
local full = 0
if cap >= 0 then full = math.max(full, (cap - r) * interval / cap) end
if ucap >= 0 then full = math.max(full, (ucap - u) * interval / ucap) end
redis.call('HSET', KEYS[1], 'r', r, 'u', u, 'ts', ts, 'p', p)
redis.call('PEXPIRE', KEYS[1], math.ceil(full + math.max(0, ts - now) + math.max(0, p - now) + 1000))
return {granted, math.max(0, p - now), math.max(0, retry)}`;

/** KEYS budgets; ARGV windowMs, channel, node id, then per key: units, limit (-1: none), tenant id. */
const BUDGET = `${NOW}
local window = tonumber(ARGV[1])
local bucketMs = window / 20
local head = math.floor(now / bucketMs)
local out = {}
for i, key in ipairs(KEYS) do
  local units, limit, tenant = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2]), ARGV[3 * i + 3]
  if units > 0 then redis.call('HINCRBYFLOAT', key, head, units) end
  local flat = redis.call('HGETALL', key)
  local total, buckets = 0, {}
  for j = 1, #flat, 2 do
    local idx, v = tonumber(flat[j]), tonumber(flat[j + 1])
    if idx <= head - 20 then redis.call('HDEL', key, flat[j])
    else
      total = total + v
      buckets[#buckets + 1] = {idx, v}
    end
  end
  if units > 0 then redis.call('PEXPIRE', key, math.ceil(window + bucketMs)) end
  local ms = 0
  if limit >= 0 and total >= limit then
    if limit == 0 then ms = -1
    else
      table.sort(buckets, function(a, b) return a[1] < b[1] end)
      local left = total
      ms = math.ceil((head + 20) * bucketMs - now)
      for _, b in ipairs(buckets) do
        left = left - b[2]
        if left < limit then
          ms = math.ceil((b[1] + 20) * bucketMs - now)
          break
        end
      end
      if ms < 1 then ms = 1 end
    end
    if units > 0 then redis.call('PUBLISH', ARGV[2], 'b\\n' .. ARGV[3] .. '\\n' .. tenant .. '\\n' .. tostring(total) .. '\\n' .. ms) end
  end
  out[i] = {tostring(total), ms}
end
return out`;

/** A script and its SHA1, run by EVALSHA (EVAL once after Redis forgot it: a restart, SCRIPT FLUSH). */
class Script {
  readonly source: string;
  readonly sha: string;

  constructor(source: string) {
    this.source = source;
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!String((error as Error | undefined)?.message).startsWith('NOSCRIPT')) throw error;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

const LIMIT_SCRIPT = new Script(LIMIT);
const BUDGET_SCRIPT = new Script(BUDGET);

/** -1 for unlimited, as the scripts read it. */
function finite(n: number): number {
  return n === Infinity ? -1 : n;
}

/** A glob pattern that matches `channel` only (Redis glob: `* ? [ ] \` escaped). */
function exactPattern(channel: string): string {
  return channel.replace(/[*?[\]\\]/g, '\\$&');
}

/** One node's access to the cluster's limits in Redis; made by `RedisBridge.clusterLimits()`. */
export class RedisLimits implements ClusterLimitsBackend {
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  readonly #channel: string;

  constructor(node: RedisNode, connections: RedisConnections) {
    this.#node = node;
    this.#connections = connections;
    this.#channel = node.key('limits');
  }

  async limit(
    name: string,
    options: ResolvedRateLimitOptions,
    op: 'lease' | 'give' | 'units' | 'pause',
    n: number,
  ): Promise<LimitReply> {
    const reply = (await LIMIT_SCRIPT.run(
      this.#connections.redis,
      [this.#node.key('limit', classKey([name]))],
      [
        op,
        n,
        finite(options.requests),
        finite(options.units),
        options.intervalMs,
        this.#channel,
        this.#node.nodeId,
        name,
      ],
    )) as [number, number, number];
    return { granted: Number(reply[0]), pausedMs: Number(reply[1]), retryMs: Number(reply[2]) };
  }

  async budgets(windowMs: number, charges: readonly BudgetCharge[]): Promise<BudgetReply[]> {
    const keys: string[] = [];
    const args: Array<string | number> = [windowMs, this.#channel, this.#node.nodeId];
    for (const c of charges) {
      keys.push(this.#node.key('budget', classKey([c.tenantId])));
      args.push(c.units, finite(c.limit), c.tenantId);
    }
    const replies = (await BUDGET_SCRIPT.run(this.#connections.redis, keys, args)) as Array<[string, number]>;
    return replies.map(([spent, ms]) => ({ spent: Number(spent), msUntilUnder: Number(ms) }));
  }

  async listen(
    onPause: (name: string, ms: number) => void,
    onBudget: (tenantId: string, reply: BudgetReply) => void,
  ): Promise<() => void> {
    const subscriber = this.#connections.subscriber;
    // A pattern subscription: its messages come as `pmessage`, apart from the bridge's own channels.
    const pattern = exactPattern(this.#channel);
    const own = this.#node.nodeId;
    const onMessage = (p: string, _channel: string, raw: string): void => {
      if (p !== pattern) return;
      // `kind \n node \n name \n numbers…`: the name is read from both ends, so a `\n` in it changes nothing.
      const parts = raw.split('\n');
      if (parts[1] === own) return;
      if (parts[0] === 'p' && parts.length >= 4) {
        const ms = Number(parts[parts.length - 1]);
        if (ms > 0) onPause(parts.slice(2, -1).join('\n'), ms);
      } else if (parts[0] === 'b' && parts.length >= 5) {
        const n = parts.length;
        onBudget(parts.slice(2, -2).join('\n'), { spent: Number(parts[n - 2]), msUntilUnder: Number(parts[n - 1]) });
      }
    };
    subscriber.on('pmessage', onMessage);
    await subscriber.psubscribe(pattern);
    return () => {
      subscriber.off('pmessage', onMessage);
      subscriber.punsubscribe(pattern).catch(() => {});
    };
  }
}
