/**
 * A node's heartbeat, every `heartbeatMs` while it runs (and at once when a new class is announced). Each beat
 * rewrites the node's registry entry (its lease), reconciles with the standing control state when its version changed
 * (see redis-standing.ts), starts consuming the new classes it can serve, keeps the entries it runs fresh (and aborts
 * those another node took over), reclaims entries no live node runs, re-reads the registry and, after a Redis restart
 * (a new run id: it may have lost everything), sends again the hand-offs still waiting. After a mere reconnect nothing
 * is sent again: Redis lost nothing (see RedisConnections.restarted).
 *
 * Reclaim is by lease. An entry pending under the consumer of a live node (see RedisRegistry.isLive) is that node's,
 * however long it has been idle: the node may be stalled, and is not taken for gone before its lease runs out. Each
 * pass lists the entries idle for `reclaimIdleMs` (XPENDING IDLE) and
 * - hands those pending under this node that it does not run (refused here, or left by an earlier run under the same
 *   id) to the RELEASED consumer, their delivery count kept, for any node to claim (not during a grace after a
 *   stall, when a read reply held up by it may still be bringing some of them in);
 * - claims (XCLAIM, with `reclaimIdleMs` as min-idle-time, so that an entry its owner refreshed or another node claimed
 *   meanwhile is left alone) those of RELEASED and of consumers that are not live nodes.
 * A claimed entry runs what has no result yet, or is dead-lettered once its deliveries that ended in silence (not in a
 * refusal) exceed `maxDeliveries`: it goes to the `dead` stream and its tasks reject at their origin with
 * TASK_DEAD_LETTERED. Now and then a pass also deletes the group consumers of nodes gone for good.
 */
import type { HandOffResult } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import type { StreamBacklog } from './redis-backlog.js';
import type { RedisHandOffs } from './redis-handoffs.js';
import type { RedisJanitor } from './redis-janitor.js';
import type { RedisNode } from './redis-node.js';
import type { RedisRegistry } from './redis-registry.js';
import type { RedisServing } from './redis-serving.js';
import { addDoneMarkers } from './redis-terminal.js';
import type { RedisStanding } from './redis-standing.js';
import {
  DEL_IDLE_CONSUMER,
  ensureGroup,
  field,
  fieldsOf,
  GROUP,
  openBatch,
  refusalKey,
  replyError,
  replyText,
  RELEASED,
  type Delivered,
  type Fields,
  type StreamEntries,
} from './redis-streams.js';

/** Reclaim passes (one per heartbeat) between two sweeps of the consumers of nodes gone for good. */
const CONSUMER_SWEEP_EVERY = 30;
/** Entries claimed per stream and pass at most. */
const RECLAIM_COUNT = 32;
/** Idle entries listed per stream and pass at most (the next pass goes on from the last one). */
const RECLAIM_SCAN = 128;

/** An entry of XPENDING's extended form: its id, its consumer, its idle ms and its deliveries. */
type PendingEntry = [id: string, consumer: string, idleMs: number, deliveries: number];

/** The parts of a node a heartbeat tends. */
export interface HeartbeatParts {
  readonly registry: RedisRegistry;
  readonly serving: RedisServing;
  readonly handOffs: RedisHandOffs;
  readonly standing: RedisStanding;
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
  readonly #standing: RedisStanding;
  readonly #parts: HeartbeatParts;
  /** The next beat, while the node runs. */
  #timer: NodeJS.Timeout | undefined;
  /** Reclaim passes so far (every CONSUMER_SWEEP_EVERY-th one also sweeps consumers). */
  #reclaims = 0;
  /** Per stream, where the next reclaim pass lists idle entries from (`-`: the start). */
  readonly #cursors = new Map<string, string>();
  /** Redis restarted and the hand-offs still waiting were not sent again yet. */
  #resendDue = false;

  constructor(node: RedisNode, connections: RedisConnections, parts: HeartbeatParts) {
    this.#node = node;
    this.#connections = connections;
    this.#registry = parts.registry;
    this.#serving = parts.serving;
    this.#handOffs = parts.handOffs;
    this.#standing = parts.standing;
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
      // After a lost connection: a new run id means Redis restarted and may have lost its data (no persistence).
      if (await this.#connections.restarted()) {
        this.#registry.restarted();
        this.#serving.restarted();
        this.#resendDue = true;
      }
      const pipeline = this.#registry.write(host);
      pipeline.smembers(this.#node.key('classes'));
      pipeline.get(this.#standing.versionKey);
      const results = await pipeline.exec();
      this.#registry.contact(); // a late answer (this node or Redis stalled) starts a grace before any reclaim
      // The registry write (SET, SADD) is also the node's probe of whether Redis takes writes again.
      const refused = replyError(results, 0) ?? replyError(results, 1);
      if (refused) this.#node.writeRefused(replyText(refused));
      else this.#node.writeTaken();
      const classes = (results?.[2]?.[1] as string[] | undefined) ?? [];
      // The standing control state changed since this node last read it (a message it may have missed): reconcile.
      if (!results?.[3]?.[0]) await this.#standing.check((results?.[3]?.[1] as string | null | undefined) ?? null);
      // A class whose group Redis refuses to make (OOM, WRONGTYPE) waits for the next beat; the rest of the beat
      // (keeping this node's entries fresh above all) goes on.
      await this.#serving.serveClasses(classes, host).catch(() => {});
      await this.#serving.keepFresh();
      await this.#serving.notify();
      await this.#reclaim();
      await this.#registry.refresh();
      if (this.#resendDue) {
        this.#resendDue = false;
        await this.#handOffs.resend();
      }
      await this.#upkeep(); // stream backlogs and results streams: a failure waits for the next beat, alone
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
    // Now and then, also the consumers that nodes gone for good left in the groups (see #dropGoneConsumers).
    const sweep = ++this.#reclaims % CONSUMER_SWEEP_EVERY === 0;
    for (const stream of this.#serving.streams) {
      if (sweep) await this.#dropGoneConsumers(stream).catch(() => {});
      await this.#reclaimStream(stream);
    }
  }

  /** One reclaim pass over a stream (see the header). */
  async #reclaimStream(stream: string): Promise<void> {
    const redis = this.#connections.redis;
    const idle = String(this.#node.options.reclaimIdleMs);
    const from = this.#cursors.get(stream) ?? '-';
    let reply: unknown;
    try {
      reply = await redis.call('XPENDING', stream, GROUP, 'IDLE', idle, from, '+', String(RECLAIM_SCAN));
    } catch (error) {
      if (String(error).includes('NOGROUP')) await ensureGroup(redis, stream);
      return;
    }
    this.#registry.contact(); // a late answer: the owners may be live yet unable to refresh their entries
    const pending = Array.isArray(reply) ? (reply as PendingEntry[]) : [];
    this.#cursors.set(stream, pending.length < RECLAIM_SCAN ? '-' : `(${pending[pending.length - 1]![0]}`);
    const mine: string[] = [];
    const claimable: PendingEntry[] = [];
    for (const entry of pending) {
      const [id, consumer] = entry;
      if (consumer === this.#node.nodeId) {
        if (!this.#serving.runs(stream, id)) mine.push(id);
      } else if (consumer === RELEASED || !this.#registry.isLive(consumer)) {
        claimable.push(entry);
      }
    }
    // Not right after a stall: a read reply held up by it may still be on its way in with some of them.
    if (mine.length > 0 && !this.#registry.inGrace) await this.#release(stream, mine);
    if (claimable.length > 0) await this.#claim(stream, claimable.slice(0, RECLAIM_COUNT));
  }

  /**
   * Hands entries pending under this node that it does not run to the RELEASED consumer, for any node to claim: it
   * refused them (busy, stopping), an earlier run of this node id took them, or their read's reply was lost. Their
   * delivery count is kept (JUSTID) and so is their idle time, so that the next pass of any node may claim them.
   */
  async #release(stream: string, ids: readonly string[]): Promise<void> {
    const idle = String(this.#node.options.reclaimIdleMs);
    const released = ids.filter((id) => !this.#serving.runs(stream, id));
    if (released.length === 0) return;
    await this.#connections.redis.call('XCLAIM', stream, GROUP, RELEASED, idle, ...released, 'IDLE', idle, 'JUSTID');
  }

  /**
   * Claims idle entries of RELEASED and of consumers that are not live nodes (their min-idle-time checked again
   * atomically by XCLAIM), then runs them or dead-letters those whose silent deliveries exceed `maxDeliveries`.
   */
  async #claim(stream: string, entries: readonly PendingEntry[]): Promise<void> {
    const redis = this.#connections.redis;
    const { maxDeliveries, reclaimIdleMs } = this.#node.options;
    const ids = entries.map(([id]) => id);
    const claimed = (await redis.call('XCLAIM', stream, GROUP, this.#node.nodeId, String(reclaimIdleMs), ...ids)) as
      StreamEntries | undefined;
    // Entries deleted meanwhile come back empty (or, since Redis 7, not at all: they left the group's pending list).
    const got = (claimed ?? []).filter((e) => Array.isArray(e) && e[1] !== null);
    if (got.length === 0) return;
    const refusals = await redis.mget(...got.map(([id]) => refusalKey(stream, id)));
    // Claimed, so nobody claimed it since the listing (that would have reset its idle time): one more delivery.
    const deliveriesBefore = new Map(entries.map(([id, , , deliveries]) => [id, Number(deliveries)]));
    const run: Delivered[] = [];
    for (let i = 0; i < got.length; i++) {
      const [id, fields] = got[i]!;
      // Deliveries that ended in a refusal (a node busy or stopping) do not count: only those that ended in silence.
      const deliveries = (deliveriesBefore.get(id) ?? 0) + 1 - (Number(refusals[i]) || 0);
      this.#node.counts.reclaimed++;
      if (deliveries > maxDeliveries) await this.#deadLetter(stream, id, fields, deliveries);
      else run.push([stream, id, fields, deliveries]);
    }
    if (run.length > 0) await this.#serving.receive(run);
  }

  /**
   * A node that stopped with entries pending under its name keeps its group consumer (so that they stay claimable);
   * once they were claimed, the consumer is empty and its node gone. Deletes such consumers: nothing pending, idle
   * for two node TTLs, and no live node of that name. Atomically, so one that took an entry meanwhile stays.
   */
  async #dropGoneConsumers(stream: string): Promise<void> {
    const redis = this.#connections.redis;
    const consumers = (await redis.call('XINFO', 'CONSUMERS', stream, GROUP)) as unknown[];
    for (const c of consumers) {
      const info = fieldsOf(c);
      const name = String(info['name']);
      if (
        this.#registry.isLive(name) ||
        Number(info['pending']) > 0 ||
        Number(info['idle']) < 2 * this.#node.options.nodeTtlMs
      )
        continue;
      await redis.eval(DEL_IDLE_CONSUMER, 1, stream, GROUP, name);
    }
  }

  /**
   * Moves an entry to the `dead` stream and rejects its tasks at their origin with TASK_DEAD_LETTERED, in two steps:
   * the entry is acked and deleted only once Redis took both the dead letter and the results. Should it refuse either
   * (OOM at maxmemory, WRONGTYPE), the entry stays pending and a later reclaim pass tries again (the dead letter may
   * then be written twice; the origin drops the second result). Never rejects on a refusal: the beat goes on.
   */
  async #deadLetter(stream: string, id: string, fields: Fields, deliveries: number): Promise<void> {
    const batch = openBatch(this.#node.signer, fields, id, this.#node.options)?.batch;
    const redis = this.#connections.redis;
    const pipeline = redis.pipeline();
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
    if (batch) {
      // Its tasks end here: the entry written back into a task stream is not run (see redis-terminal.ts).
      addDoneMarkers(
        this.#node,
        pipeline,
        batch.tasks.map((t) => t.taskId),
      );
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
    const written = await pipeline.exec();
    for (let i = 0; i < pipeline.length; i++) {
      const error = replyError(written, i);
      if (error) {
        this.#node.writeRefused(replyText(error));
        return;
      }
    }
    this.#node.writeTaken();
    this.#node.counts.deadLettered++;
    // Acks are not refused at maxmemory; one that fails anyway leaves the entry pending, dead-lettered again later.
    await redis.pipeline().xack(stream, GROUP, id).xdel(stream, id).exec();
  }
}
