/**
 * Serving: a node's side of the task streams (`tasks:<class>`, group `workers`) of the classes it can serve. A
 * blocking XREADGROUP loop takes new entries, with flow control (a node holds at most about four times its slots of
 * bridge tasks); each entry's signature and its tasks' `done` markers are checked, what has no result yet runs through
 * the host, and every task reports through the ResultWriter, which acks the entry once all its tasks reported. The
 * entries running here are kept fresh on each heartbeat, so that no live node reclaims them.
 */
import type { Redis } from 'ioredis';
import type { BridgeHost, HandOff, HandOffResult } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import { requiresOf } from './redis-keys.js';
import type { RedisNode } from './redis-node.js';
import { ResultWriter, type Entry } from './redis-results.js';
import { refuseEntries } from './redis-terminal.js';
import {
  BATCH,
  DEL_IDLE_CONSUMER,
  ensureGroup,
  GROUP,
  openBatch,
  pause,
  replyError,
  replyText,
  streamsOf,
  type Delivered,
  type Replies,
  type OpenedEntry,
  type TaskBatch,
} from './redis-streams.js';

/** The task streams a node consumes, and the entries it runs. */
export class RedisServing {
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  readonly #writer: ResultWriter;
  /** Streams this node consumes (classes it can serve). */
  readonly #served = new Set<string>();
  /** Entries this node is running, per stream: their idle time is refreshed so nobody reclaims them. */
  readonly #inflight = new Map<string, Set<string>>();
  /** Hand-offs running here, until they reported. */
  readonly #runningTasks = new Set<Promise<unknown>>();
  /** Bridge tasks taken and not reported yet. */
  #backlog = 0;
  /** The read loop's wake-up when the backlog falls. */
  #onCapacity: (() => void) | undefined;

  constructor(node: RedisNode, connections: RedisConnections) {
    this.#node = node;
    this.#connections = connections;
    this.#writer = new ResultWriter(node, connections, {
      // Flow control counts a task until its result is written: while Redis refuses results, no more are taken.
      reported: () => {
        this.#backlog--;
        this.#onCapacity?.();
      },
      release: (entry) => this.#inflight.get(entry.stream)?.delete(entry.id),
    });
  }

  /** The streams this node consumes (live: a class it starts serving is added). */
  get streams(): ReadonlySet<string> {
    return this.#served;
  }

  /** Starts consuming the streams of those of `classes` (requirement classes) that `host` can serve. */
  async serveClasses(classes: readonly string[], host: BridgeHost): Promise<void> {
    for (const key of classes) {
      const stream = this.#node.key('tasks', key);
      if (this.#served.has(stream)) continue;
      const requires = requiresOf(key);
      if (!requires || !host.canServe(requires)) continue;
      await ensureGroup(this.#connections.redis, stream);
      this.#served.add(stream);
    }
  }

  /** Resets the idle time of the entries this node is running, so that reclaim only takes a dead node's. */
  async keepFresh(): Promise<void> {
    if (this.#inflight.size === 0) return;
    const pipeline = this.#connections.redis.pipeline();
    for (const [stream, ids] of this.#inflight) {
      if (ids.size > 0) pipeline.call('XCLAIM', stream, GROUP, this.#node.nodeId, '0', ...ids, 'JUSTID');
    }
    await pipeline.exec();
  }

  /** Settles once the hand-offs running here have reported (and their report was flushed). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#runningTasks]);
  }

  /**
   * Adds to `pipeline` the deletion of this node's consumer in each stream it served, where nothing is pending under
   * it: entries left pending (refused here) must stay claimable by reclaim.
   */
  leave(pipeline: ReturnType<Redis['pipeline']>): void {
    for (const stream of this.#served) pipeline.eval(DEL_IDLE_CONSUMER, 1, stream, GROUP, this.#node.nodeId);
  }

  /** The blocking read loop of the served streams, while the node runs. */
  async read(): Promise<void> {
    const reader = this.#connections.taskReader;
    const { blockMs, heartbeatMs } = this.#node.options;
    while (this.#node.running) {
      const streams = [...this.#served];
      if (streams.length === 0) {
        await pause(Math.min(blockMs, heartbeatMs));
        continue;
      }
      // Flow control: a node holds at most about four times its slots of bridge tasks (running or queued here); past
      // that it waits for some to report, so that it never sits on much work another node could run now.
      const info = this.#node.host?.info();
      const limit = Math.max(2 * BATCH, 4 * (info?.slots ?? 1));
      if (this.#backlog >= limit) {
        await new Promise<void>((resolve) => {
          this.#onCapacity = resolve;
          setTimeout(resolve, blockMs).unref();
        });
        this.#onCapacity = undefined;
        continue;
      }
      const room = Math.min(64, Math.max(1, Math.ceil((limit - this.#backlog) / BATCH)));
      let reply: unknown;
      try {
        reply = await reader.call(
          'XREADGROUP',
          'GROUP',
          GROUP,
          this.#node.nodeId,
          'COUNT',
          String(room),
          'BLOCK',
          String(blockMs),
          'STREAMS',
          ...streams,
          ...streams.map(() => '>'),
        );
      } catch (error) {
        if (!this.#node.running) return;
        if (String(error).includes('NOGROUP')) {
          // Redis lost the group (a restart): make it again and go on.
          for (const s of streams) await ensureGroup(this.#connections.redis, s).catch(() => {});
        } else {
          await pause(100);
        }
        continue;
      }
      if (!reply) continue;
      const batch: Delivered[] = [];
      for (const [stream, entries] of streamsOf(reply)) {
        for (const [id, fields] of entries) if (fields) batch.push([stream, id, fields]);
      }
      await this.take(batch);
    }
  }

  /**
   * Runs delivered entries (read here, or reclaimed): checks their signatures and every task's `done` marker (one
   * round trip for the read), runs what has no result yet, and reports through the writer. An entry is acked once all
   * its tasks reported.
   */
  async take(batch: readonly Delivered[]): Promise<void> {
    const valid: Array<{ stream: string; id: string; batch: TaskBatch }> = [];
    const forged: Array<[string, string]> = [];
    /** Genuine entries openBatch does not trust (written back, or too old): their tasks end here, then they go. */
    const refused: Array<{ stream: string; id: string; opened: OpenedEntry }> = [];
    for (const [stream, id, fields] of batch) {
      const opened = openBatch(this.#node.signer, fields, id, this.#node.options);
      if (!opened || opened.refusal) {
        this.#node.counts.rejected++;
        if (opened) refused.push({ stream, id, opened });
        else forged.push([stream, id]); // never executed; not worth redelivering either
      } else if (!this.#inflight.get(stream)?.has(id)) {
        valid.push({ stream, id, batch: opened.batch });
      }
    }
    const pipeline = this.#connections.redis.pipeline();
    for (const [stream, id] of forged) pipeline.xack(stream, GROUP, id).xdel(stream, id);
    const keys = valid.flatMap((v) => v.batch.tasks.map((t) => this.#node.key('done', t.taskId)));
    const mget = pipeline.length;
    if (keys.length > 0) pipeline.mget(...keys);
    const ending = pipeline.length;
    refuseEntries(
      this.#node,
      pipeline,
      refused.map((r) => r.opened),
    );
    let replies: Replies;
    try {
      replies = await pipeline.exec();
    } catch {
      return; // Redis went away: the entries stay pending and come back by reclaim
    }
    // A forged entry whose ack failed is delivered again, and dropped again: nothing to do about it here.
    if (refused.length > 0) await this.#dropRefused(refused, replies, ending, pipeline.length);
    if (keys.length === 0) return;
    const done = replies?.[mget]?.[1] as Array<string | null> | undefined;
    if (replyError(replies, mget) || !Array.isArray(done) || done.length !== keys.length) {
      // Whether these tasks have a result is unknown, which is not "no result": none runs. The entries stay pending
      // (not marked in flight here), and reclaim delivers them again once they are idle.
      return;
    }
    let k = 0;
    for (const { stream, id, batch: b } of valid) {
      let ids = this.#inflight.get(stream);
      if (!ids) this.#inflight.set(stream, (ids = new Set()));
      ids.add(id);
      const entry: Entry = { stream, id, open: b.tasks.length, refused: false, lost: false };
      this.#backlog += b.tasks.length;
      for (const { taskId, task } of b.tasks) {
        if (done[k++] != null) {
          // Already has a result (a replay, or a redelivery after its node died between report and ack).
          this.#node.counts.rejected++;
          this.#report(entry, undefined, b.origin, taskId);
        } else {
          this.#run(entry, { taskId, origin: b.origin, task });
        }
      }
    }
  }

  /**
   * Acks and deletes the refused entries once Redis took what ends their tasks (replies `from` to `to`): at maxmemory
   * it refuses those writes, and an entry acked without them would leave its submitter waiting. Refused, they stay
   * pending and are refused again on their next delivery.
   */
  async #dropRefused(
    refused: ReadonlyArray<{ stream: string; id: string }>,
    replies: Replies,
    from: number,
    to: number,
  ): Promise<void> {
    for (let i = from; i < to; i++) {
      const error = replyError(replies, i);
      if (error) {
        this.#node.writeRefused(replyText(error));
        return;
      }
    }
    const pipeline = this.#connections.redis.pipeline();
    for (const { stream, id } of refused) pipeline.xack(stream, GROUP, id).xdel(stream, id);
    await pipeline.exec().catch(() => {}); // not acked: delivered again, refused again
  }

  #run(entry: Entry, handOff: HandOff): void {
    const run = this.#node.host!.run(handOff).then(
      (result) => {
        this.#node.counts.served++;
        this.#report(entry, result, handOff.origin, handOff.taskId);
        return this.#writer.flushed;
      },
      () => {
        // Refused here (stopping, queue full): the entry stays pending for another node to claim once idle.
        entry.refused = true;
        this.#report(entry, undefined, handOff.origin, handOff.taskId);
      },
    );
    this.#runningTasks.add(run);
    run.catch(() => {}).finally(() => this.#runningTasks.delete(run));
  }

  #report(entry: Entry, result: HandOffResult | undefined, origin: string, taskId: string): void {
    this.#writer.report(entry, result, origin, taskId);
  }
}
