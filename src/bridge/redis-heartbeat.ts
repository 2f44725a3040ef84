/**
 * A node's heartbeat, every `heartbeatMs` while it runs (and at once when a new class is announced). Each beat
 * rewrites the node's registry entry, starts consuming the new classes it can serve, keeps the entries it runs fresh,
 * reclaims entries idle for `reclaimIdleMs` (a dead node's, or refused ones), re-reads the registry and, after a lost
 * connection, sends again the hand-offs still waiting.
 *
 * Reclaim (XAUTOCLAIM) runs what a claimed entry has no result for yet, or dead-letters the entry once its deliveries
 * that ended in silence (not in a refusal) exceed `maxDeliveries`: it goes to the `dead` stream and its tasks reject
 * at their origin with TASK_DEAD_LETTERED. Now and then it also deletes the group consumers of nodes gone for good.
 */
import type { HandOffResult } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import type { StreamBacklog } from './redis-backlog.js';
import type { RedisHandOffs } from './redis-handoffs.js';
import type { RedisJanitor } from './redis-janitor.js';
import type { RedisNode } from './redis-node.js';
import type { RedisRegistry } from './redis-registry.js';
import type { RedisServing } from './redis-serving.js';
import {
  DEL_IDLE_CONSUMER,
  ensureGroup,
  field,
  fieldsOf,
  GROUP,
  openBatch,
  refusalKey,
  type Fields,
  type StreamEntries,
} from './redis-streams.js';

/** Reclaim passes (one per heartbeat) between two sweeps of the consumers of nodes gone for good. */
const CONSUMER_SWEEP_EVERY = 30;
/** Entries claimed per stream and pass at most. */
const RECLAIM_COUNT = '32';

/** The parts of a node a heartbeat tends. */
export interface HeartbeatParts {
  readonly registry: RedisRegistry;
  readonly serving: RedisServing;
  readonly handOffs: RedisHandOffs;
  readonly backlog: StreamBacklog;
  readonly janitor: RedisJanitor;
}

/** The periodic upkeep of one node: registry, classes, freshness, reclaim, resends. */
export class RedisHeartbeat {
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  readonly #registry: RedisRegistry;
  readonly #serving: RedisServing;
  readonly #handOffs: RedisHandOffs;
  readonly #parts: HeartbeatParts;
  /** The next beat, while the node runs. */
  #timer: NodeJS.Timeout | undefined;
  /** Reclaim passes so far (every CONSUMER_SWEEP_EVERY-th one also sweeps consumers). */
  #reclaims = 0;

  constructor(node: RedisNode, connections: RedisConnections, parts: HeartbeatParts) {
    this.#node = node;
    this.#connections = connections;
    this.#registry = parts.registry;
    this.#serving = parts.serving;
    this.#handOffs = parts.handOffs;
    this.#parts = parts;
  }

  /** Beats every `heartbeatMs` from now on while the node runs, each beat scheduled once the one before is over. */
  start(): void {
    const tick = (): void => {
      this.#timer = setTimeout(() => {
        void this.beat().finally(() => {
          if (this.#node.running) tick();
        });
      }, this.#node.options.heartbeatMs);
      this.#timer.unref();
    };
    tick();
  }

  /** Cancels the next beat (one under way finishes, and schedules no other once the node no longer runs). */
  stop(): void {
    clearTimeout(this.#timer);
  }

  /** One beat; never rejects. */
  async beat(): Promise<void> {
    const host = this.#node.host;
    if (!host || !this.#node.running) return;
    try {
      const pipeline = this.#registry.write(host);
      pipeline.smembers(this.#node.key('classes'));
      const results = await pipeline.exec();
      const classes = (results?.[2]?.[1] as string[] | undefined) ?? [];
      await this.#serving.serveClasses(classes, host);
      await this.#serving.keepFresh();
      await this.#reclaim();
      await this.#registry.refresh();
      await this.#upkeep(); // stream backlogs and results streams: a failure waits for the next beat, alone
      // Redis may have lost what was sent before (a restart without persistence).
      if (this.#connections.takeLostConnection()) await this.#handOffs.resend();
    } catch {
      // A failed beat (Redis down) is retried on the next one; the status says degraded meanwhile.
    }
  }

  /** Reads the backlog of the streams this node hands off to, then tends the results streams (redis-janitor.ts). */
  async #upkeep(): Promise<void> {
    await this.#parts.backlog
      .read(this.#connections.redis)
      .then(() => this.#parts.janitor.tend())
      .catch(() => {});
  }

  async #reclaim(): Promise<void> {
    const redis = this.#connections.redis;
    const { maxDeliveries, reclaimIdleMs } = this.#node.options;
    // Now and then, also the consumers that nodes gone for good left in the groups (see #dropGoneConsumers).
    const sweep = ++this.#reclaims % CONSUMER_SWEEP_EVERY === 0;
    for (const stream of this.#serving.streams) {
      if (sweep) await this.#dropGoneConsumers(stream).catch(() => {});
      let claimed: unknown;
      try {
        claimed = await redis.call(
          'XAUTOCLAIM',
          stream,
          GROUP,
          this.#node.nodeId,
          String(reclaimIdleMs),
          '0-0',
          'COUNT',
          RECLAIM_COUNT,
        );
      } catch (error) {
        if (String(error).includes('NOGROUP')) await ensureGroup(redis, stream);
        continue;
      }
      const entries = ((claimed as [string, StreamEntries] | undefined)?.[1] ?? []).filter((e) => e[1] !== null);
      for (const [id, fields] of entries) {
        const [pending, refusals] = await Promise.all([
          redis.call('XPENDING', stream, GROUP, id, id, '1') as Promise<Array<[string, string, number, number]>>,
          redis.get(refusalKey(stream, id)),
        ]);
        // Deliveries that ended in a refusal (a node busy or stopping) do not count: only those that ended in silence.
        const deliveries = (pending[0]?.[3] ?? 1) - (Number(refusals) || 0);
        this.#node.counts.reclaimed++;
        if (deliveries > maxDeliveries) await this.#deadLetter(stream, id, fields, deliveries);
        else await this.#serving.take([[stream, id, fields]]);
      }
    }
  }

  /**
   * A node that stopped with entries pending under its name keeps its group consumer (so that they stay claimable);
   * once they were claimed, the consumer is empty and its node gone. Deletes such consumers: nothing pending, idle
   * for two node TTLs, and no registry entry. Atomically, so one that took an entry meanwhile stays.
   */
  async #dropGoneConsumers(stream: string): Promise<void> {
    const redis = this.#connections.redis;
    const consumers = (await redis.call('XINFO', 'CONSUMERS', stream, GROUP)) as unknown[];
    const live = new Set(this.#registry.nodes.map((n) => n.nodeId));
    live.add(this.#node.nodeId);
    for (const c of consumers) {
      const info = fieldsOf(c);
      const name = String(info['name']);
      if (live.has(name) || Number(info['pending']) > 0 || Number(info['idle']) < 2 * this.#node.options.nodeTtlMs)
        continue;
      await redis.eval(DEL_IDLE_CONSUMER, 1, stream, GROUP, name);
    }
  }

  /** Moves an entry to the `dead` stream and rejects its tasks at their origin with TASK_DEAD_LETTERED. */
  async #deadLetter(stream: string, id: string, fields: Fields, deliveries: number): Promise<void> {
    this.#node.counts.deadLettered++;
    const batch = openBatch(this.#node.signer, fields);
    const pipeline = this.#connections.redis.pipeline();
    pipeline.xadd(
      this.#node.key('dead'),
      // Exact, not `~`: dead letters are rare, and the cap is a promise about Redis memory.
      'MAXLEN',
      String(this.#node.options.maxDeadEntries),
      '*',
      'stream',
      stream,
      'entry',
      id,
      'deliveries',
      String(deliveries),
      'm',
      field(fields, 'm') ?? '',
      's',
      field(fields, 's') ?? '',
    );
    pipeline.xack(stream, GROUP, id);
    pipeline.xdel(stream, id);
    if (batch) {
      const results: HandOffResult[] = batch.tasks.map(({ taskId }) => ({
        taskId,
        node: this.#node.nodeId,
        ok: false,
        error: {
          name: 'TaskDeadLetteredError',
          code: 'TASK_DEAD_LETTERED',
          message: `Task ${taskId} was delivered ${deliveries} times without a result (it keeps killing its nodes) and was dead-lettered`,
        },
      }));
      const sealed = this.#node.signer.seal('results', { results });
      pipeline.xadd(this.#node.key('results', batch.origin), '*', 'm', sealed.m, 's', sealed.s);
    }
    await pipeline.exec();
  }
}
