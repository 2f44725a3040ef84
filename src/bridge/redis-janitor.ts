/**
 * Upkeep of the results streams (`results:<node>`), so that nodes coming and going leave nothing behind in Redis. A
 * node lists itself in `origins` (a sorted set of the nodes that may have a results stream, scored by when each was
 * last seen, by Redis's clock) as it starts and on every sweep. Every two node TTLs, each node sweeps the listed nodes
 * that are gone (no registry entry): their results stream is deleted once neither read nor written for ten node TTLs,
 * and their listing once they were last seen `doneTtlMs` ago (a late result, of a task reclaimed or dead-lettered
 * after its origin left, can come until then and would make the stream again). Check and delete are one script, so
 * a node back under the same id (it registers before it hands anything off) keeps its stream. A node that leaves
 * cleanly deletes its own stream at once.
 */
import type { Redis } from 'ioredis';
import type { RedisConnections } from './redis-connections.js';
import { nodeKey } from './redis-control.js';
import type { RedisNode } from './redis-node.js';
import type { RedisRegistry } from './redis-registry.js';

/** Lists a node (ARGV[1]) in `origins` (KEYS[1]) as seen now, by Redis's clock. */
const LIST_ORIGIN = `
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
`;

/**
 * The sweep of one gone node (ARGV[1]): nothing while its registry entry (KEYS[2]) exists; its results stream
 * (KEYS[1]) deleted once idle for ARGV[2] ms; its listing in `origins` (KEYS[3]) dropped once it was last seen ARGV[3]
 * ms ago and the stream is gone. The idle time is OBJECT IDLETIME (reads count), or under an LFU eviction policy, where
 * Redis does not keep it, the age of the stream's last entry.
 */
const SWEEP_ORIGIN = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 1 then
  local ok, idle = pcall(redis.call, 'OBJECT', 'IDLETIME', KEYS[1])
  local idleMs
  if ok then
    idleMs = idle * 1000
  else
    local info = redis.call('XINFO', 'STREAM', KEYS[1])
    local last = '0-0'
    for i = 1, #info, 2 do if info[i] == 'last-generated-id' then last = info[i + 1] end end
    idleMs = now - tonumber(string.match(last, '^(%d+)'))
  end
  if idleMs < tonumber(ARGV[2]) then return 0 end
  redis.call('DEL', KEYS[1])
end
local seen = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[1]) or '0')
if now - seen >= tonumber(ARGV[3]) then redis.call('ZREM', KEYS[3], ARGV[1]) end
return 1
`;

/** The results-stream upkeep of one node (see the file header). */
export class RedisJanitor {
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  readonly #registry: RedisRegistry;
  /** When the last sweep ran (ms, performance clock); 0 before the first, which runs on the first beat. */
  #sweptAt = 0;

  constructor(node: RedisNode, connections: RedisConnections, registry: RedisRegistry) {
    this.#node = node;
    this.#connections = connections;
    this.#registry = registry;
  }

  /** Ms between two sweeps: two node TTLs (at least a heartbeat). */
  get sweepEveryMs(): number {
    const { nodeTtlMs, heartbeatMs } = this.#node.options;
    return Math.max(heartbeatMs, 2 * nodeTtlMs);
  }

  /** Ms a gone node's results stream must have been idle before it is deleted: ten node TTLs. */
  get idleMs(): number {
    return 10 * this.#node.options.nodeTtlMs;
  }

  /**
   * Called on every heartbeat, after the registry was read: when a sweep is due, lists this node in `origins` and
   * sweeps the listed nodes that are gone. Rejects when Redis fails (the beat retries on the next one).
   */
  async tend(): Promise<void> {
    const now = performance.now();
    if (this.#sweptAt !== 0 && now - this.#sweptAt < this.sweepEveryMs) return;
    const redis = this.#connections.redis;
    const origins = this.#node.key('origins');
    const listed = (await redis.eval(LIST_ORIGIN, 1, origins, this.#node.nodeId)) as string[];
    this.#sweptAt = now;
    const live = new Set(this.#registry.nodes.map((n) => n.nodeId));
    live.add(this.#node.nodeId);
    const gone = listed.filter((id) => !live.has(id));
    if (gone.length === 0) return;
    const { ns, options } = this.#node;
    const pipeline = redis.pipeline();
    for (const id of gone) {
      const results = this.#node.key('results', id);
      pipeline.eval(SWEEP_ORIGIN, 3, results, nodeKey(ns, id), origins, id, this.idleMs, options.doneTtlMs);
    }
    await pipeline.exec();
  }

  /** Adds to `pipeline` (a clean stop) the deletion of this node's results stream. */
  leave(pipeline: ReturnType<Redis['pipeline']>): void {
    // Still listed: a late result makes the stream again, and the sweep deletes it.
    pipeline.del(this.#node.key('results', this.#node.nodeId));
  }
}
