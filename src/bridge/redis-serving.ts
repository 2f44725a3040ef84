/**
 * Serving: a node's side of the task streams (`tasks:<class>`, group `workers`) of the classes it can serve. A
 * blocking XREADGROUP loop takes new entries, with flow control (a node holds at most about four times its slots of
 * bridge tasks); each entry's signature and its tasks' `done` markers are checked, what has no result yet runs through
 * the host, and every task reports through the ResultWriter, which acks the entry once all its tasks reported.
 *
 * The entries running here are kept fresh on each heartbeat (their idle time reset), as long as they are still this
 * node's: one that another node took over meanwhile (it reclaimed it while this node was stalled past its lease) is
 * lost here, and its tasks still running here are aborted through their `ctx.signal` and report nothing (the node
 * that holds the entry now reports them).
 */
import type { Redis } from 'ioredis';
import type { BridgeHost, HandOff, HandOffNotice, HandOffProgress, HandOffResult } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import { requiresOf } from './redis-keys.js';
import type { RedisNode } from './redis-node.js';
import { ResultWriter, type Entry } from './redis-results.js';
import { refuseEntries, SEND_IF_HEARD } from './redis-terminal.js';
import {
  BATCH,
  DEL_IDLE_CONSUMER,
  ensureGroup,
  GROUP,
  KEEP_FRESH,
  nextTurn,
  openBatch,
  pause,
  replyError,
  replyText,
  send,
  streamsOf,
  type Delivered,
  type Replies,
  type OpenedEntry,
  type TaskBatch,
} from './redis-streams.js';

/** Entries kept fresh per KEEP_FRESH call at most (the script's arguments). */
const FRESH_CHUNK = 256;

/** The key of an entry among those running here. */
/** The tasks of one entry running here (see RedisServing #aborts). */
interface Running {
  readonly taskIds: string[];
  abandoned: boolean;
  readonly run: number;
}

function entryKey(stream: string, id: string): string {
  return `${stream}\n${id}`;
}

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
  /**
   * Per entry with tasks running here: their task ids (abandoned through the host when another node took the entry
   * over, see keepFresh), whether that happened, and the Redis run (see restarted) it was taken in.
   */
  readonly #aborts = new Map<string, Running>();
  /** Entries delivered here and on their way through take(), with how many deliveries of each are. */
  readonly #arriving = new Map<string, number>();
  /** Redis restarts seen: an entry taken before one may be gone from Redis without another node having taken it. */
  #redisRuns = 0;
  /** Hand-offs running here, by task id: for their `started` notices and the check for a cancel (see notify). */
  readonly #started = new Map<string, HandOff>();
  /** Those of them whose `started` notice went out (or was given up on): the attempt it was for. */
  readonly #noticed = new Map<string, number>();
  /** Where the host reports the progress of every hand-off running here (one function for all). */
  readonly #onProgress = (handOff: HandOff, update: HandOffProgress): void => this.#progress(handOff, update);
  /** Progress notices of this turn, per origin, sent together (see #progress). */
  readonly #progressBox = new Map<string, HandOffNotice[]>();
  /** Bridge tasks taken and not reported yet. */
  #backlog = 0;
  /** The read loop's wake-up when the backlog falls. */
  #onCapacity: (() => void) | undefined;

  constructor(node: RedisNode, connections: RedisConnections) {
    this.#node = node;
    this.#connections = connections;
    this.#writer = new ResultWriter(node, connections, {
      // Flow control counts a task until its result is written: while Redis refuses results, no more are taken.
      reported: () => this.#drop(),
      release: (entry) => {
        this.#inflight.get(entry.stream)?.delete(entry.id);
        this.#aborts.delete(entryKey(entry.stream, entry.id));
      },
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

  /**
   * Whether this node is running the entry `id` of `stream` (it took it, and not all of its tasks reported), or is
   * taking it (see receive).
   */
  runs(stream: string, id: string): boolean {
    return this.#inflight.get(stream)?.has(id) === true || this.#arriving.has(entryKey(stream, id));
  }

  /** Redis restarted (a new run id): the entries taken before may be gone from it without another node taking them. */
  restarted(): void {
    this.#redisRuns++;
  }

  /**
   * Resets the idle time of the entries this node is running and still holds, in one atomic check per stream and
   * chunk (KEEP_FRESH): never one another node took over meanwhile, which this node would otherwise steal back and
   * both would run. Lost here are those pending under another node now, and those no longer pending at all since the
   * Redis run they were taken in (another node took them over and finished or dead-lettered them): their tasks still
   * running here are aborted through their `ctx.signal` and report nothing. An entry Redis lost in a restart is not
   * lost here: its tasks run on and report (their hand-offs were sent again, and the first result wins). Returns the
   * entries lost, as `[stream, id]`. Throws when Redis does not answer.
   */
  async keepFresh(): Promise<Array<[stream: string, id: string]>> {
    const calls: Array<[string, string[]]> = [];
    for (const [stream, ids] of this.#inflight) {
      const all = [...ids];
      for (let i = 0; i < all.length; i += FRESH_CHUNK) calls.push([stream, all.slice(i, i + FRESH_CHUNK)]);
    }
    if (calls.length === 0) return [];
    const pipeline = this.#connections.redis.pipeline();
    for (const [stream, ids] of calls) pipeline.eval(KEEP_FRESH, 1, stream, GROUP, this.#node.nodeId, ...ids);
    const replies = await pipeline.exec();
    // A connection lost meanwhile may hide a Redis restart the heartbeat has not seen yet: then nothing gone counts.
    const goneCounts = !this.#connections.restartUnknown;
    const lost: Array<[string, string]> = [];
    calls.forEach(([stream], i) => {
      // An error (NOGROUP: Redis lost the stream) takes nothing from this node: its entries run on.
      const reply = replies?.[i];
      if (!reply || reply[0] || !Array.isArray(reply[1])) return;
      const [taken, gone] = reply[1] as [unknown[], unknown[]];
      for (const id of taken ?? []) lost.push([stream, String(id)]);
      if (!goneCounts) return;
      for (const id of gone ?? []) {
        // Acked here (its tasks all reported, the release to come): nothing runs to abort. Taken in an earlier Redis
        // run: Redis lost it, nobody took it over.
        if (this.#aborts.get(entryKey(stream, String(id)))?.run === this.#redisRuns) lost.push([stream, String(id)]);
      }
    });
    for (const [stream, id] of lost) this.#abandon(stream, id);
    return lost;
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
      await this.receive(batch);
      // The next read waits for the turn after: the results of tasks that ended at once (this turn's flush, see
      // ResultWriter) leave first, so a short task's round trip does not also wait for this read to be sent.
      await nextTurn();
    }
  }

  /**
   * Takes delivered entries (see take), and until take() has registered them counts them as run here (see runs), so
   * that reclaim never hands on an entry whose read reply is still on its way in (Redis stalled between the two).
   */
  async receive(batch: readonly Delivered[]): Promise<void> {
    const keys = batch.map(([stream, id]) => entryKey(stream, id));
    for (const key of keys) this.#arriving.set(key, (this.#arriving.get(key) ?? 0) + 1);
    try {
      await this.take(batch);
    } finally {
      for (const key of keys) {
        const n = (this.#arriving.get(key) ?? 1) - 1;
        if (n > 0) this.#arriving.set(key, n);
        else this.#arriving.delete(key);
      }
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
    /** Deliveries of each entry, as reclaim counted them (a first read: 1). */
    let deliveries: Map<string, number> | undefined; // reclaimed entries only: a first read is delivery 1
    for (const [stream, id, fields, delivered] of batch) {
      if (delivered !== undefined) (deliveries ??= new Map()).set(entryKey(stream, id), delivered);
      const opened = openBatch(this.#node.signer, fields, id, this.#node.options);
      if (!opened || opened.refusal) {
        this.#node.counts.rejected++;
        if (opened) refused.push({ stream, id, opened });
        else forged.push([stream, id]); // never executed; not worth redelivering either
      } else if (!this.#inflight.get(stream)?.has(id)) {
        valid.push({ stream, id, batch: opened.batch });
      }
    }
    const keys = valid.flatMap((v) => v.batch.tasks.map((t) => this.#node.key('done', t.taskId)));
    let replies: Replies;
    let mget = 0;
    if (forged.length === 0 && refused.length === 0) {
      // The usual case: the markers' read alone, sent as one command.
      if (keys.length === 0) return;
      replies = await send(this.#connections.redis, [['MGET', ...keys]]);
    } else {
      const pipeline = this.#connections.redis.pipeline();
      for (const [stream, id] of forged) pipeline.xack(stream, GROUP, id).xdel(stream, id);
      mget = pipeline.length;
      if (keys.length > 0) pipeline.mget(...keys);
      const ending = pipeline.length;
      refuseEntries(
        this.#node,
        pipeline,
        refused.map((r) => r.opened),
      );
      try {
        replies = await pipeline.exec();
      } catch {
        return; // Redis went away: the entries stay pending and come back by reclaim
      }
      // A forged entry whose ack failed is delivered again, and dropped again: nothing to do about it here.
      if (refused.length > 0) await this.#dropRefused(refused, replies, ending, pipeline.length);
    }
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
      /** The entry's record among those running here, made at its first task that runs (once per entry). */
      let running: Running | undefined;
      for (const { taskId, task } of b.tasks) {
        if (done[k++] != null) {
          // Already has a result (a replay, or a redelivery after its node died between report and ack).
          this.#node.counts.rejected++;
          this.#report(entry, undefined, b.origin, taskId);
        } else {
          running ??= this.#running(stream, id);
          const delivery = deliveries?.get(entryKey(stream, id)) ?? 1;
          this.#run(entry, running, { taskId, origin: b.origin, task, delivery });
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

  /**
   * Another node holds the entry `id` of `stream` now: its tasks still running here are aborted, and it is no longer
   * kept fresh. What they report is dropped (see #run), so the writer never acks the entry nor counts a refusal.
   */
  #abandon(stream: string, id: string): void {
    const key = entryKey(stream, id);
    this.#inflight.get(stream)?.delete(id);
    const running = this.#aborts.get(key);
    this.#aborts.delete(key);
    if (!running) return;
    running.abandoned = true;
    const reason = `the bridge entry ${id} of ${stream} was taken over by another node (this node's lease lapsed)`;
    for (const taskId of running.taskIds) this.#node.host?.abandon?.(taskId, reason);
  }

  /** The record of the entry `id` of `stream` among those running here (see #aborts), made if there is none. */
  #running(stream: string, id: string): Running {
    const key = entryKey(stream, id);
    let running = this.#aborts.get(key);
    if (!running) this.#aborts.set(key, (running = { taskIds: [], abandoned: false, run: this.#redisRuns }));
    return running;
  }

  #run(entry: Entry, lost: Running, handOff: HandOff): void {
    lost.taskIds.push(handOff.taskId);
    const { taskId } = handOff;
    this.#started.set(taskId, handOff);
    const reported = this.#node.host!.run(handOff, this.#onProgress).then(
      (result) => {
        this.#ran(handOff);
        if (lost.abandoned) return this.#drop(); // the node that holds the entry now reports this task
        this.#node.counts.served++;
        this.#report(entry, result, handOff.origin, handOff.taskId);
        return this.#writer.flushed;
      },
      () => {
        this.#ran(handOff);
        if (lost.abandoned) return this.#drop();
        // Refused here (stopping, queue full): the entry stays pending; reclaim hands it to another node.
        entry.refused = true;
        this.#report(entry, undefined, handOff.origin, handOff.taskId);
      },
    );
    this.#runningTasks.add(reported);
    reported.catch(() => {}).finally(() => this.#runningTasks.delete(reported));
  }

  /** A hand-off ran here (it reported, or was refused): no notice or cancel check for it any more. */
  #ran(handOff: HandOff): void {
    if (this.#started.get(handOff.taskId) !== handOff) return; // a later delivery of it runs here now
    this.#started.delete(handOff.taskId);
    this.#noticed.delete(handOff.taskId);
  }

  /**
   * Queues a progress notice of a hand-off running here for its origin; the notices of one turn of the event loop go
   * out together, one message per origin (written only while the origin is registered or reads its stream). A value
   * JSON cannot carry is dropped. Best effort: lost with Redis away, never retried.
   */
  #progress(handOff: HandOff, update: HandOffProgress): void {
    let value: unknown;
    try {
      const json = JSON.stringify(update.value);
      value = json === undefined ? null : (JSON.parse(json) as unknown);
    } catch {
      return;
    }
    const notice: HandOffNotice = {
      taskId: handOff.taskId,
      node: this.#node.nodeId,
      kind: 'progress',
      delivery: handOff.delivery ?? 1,
      attempt: update.attempt,
      value,
      at: update.at,
    };
    const list = this.#progressBox.get(handOff.origin);
    if (list) list.push(notice);
    else this.#progressBox.set(handOff.origin, [notice]);
    if (this.#progressBox.size === 1 && list === undefined) setImmediate(() => void this.#sendProgress());
  }

  /** Sends this turn's progress notices (see #progress). Never rejects. */
  async #sendProgress(): Promise<void> {
    const boxes = [...this.#progressBox];
    this.#progressBox.clear();
    if (boxes.length === 0) return;
    try {
      const pipeline = this.#connections.redis.pipeline();
      for (const [origin, notices] of boxes) this.#addNotices(pipeline, origin, notices);
      await pipeline.exec();
    } catch {
      // Redis went away: progress is best effort.
    }
  }

  /** Adds to `pipeline` one message of `notices` for `origin`, written only while the origin can hear it. */
  #addNotices(pipeline: ReturnType<Redis['pipeline']>, origin: string, notices: readonly HandOffNotice[]): void {
    const sealed = this.#node.signer.seal('results', { results: [], notices });
    pipeline.eval(
      SEND_IF_HEARD,
      2,
      this.#node.key('results', origin),
      this.#node.key('node', origin),
      sealed.m,
      sealed.s,
    );
  }

  /**
   * Called on each heartbeat. Tells the origins of the hand-offs whose attempt started here since the last beat and
   * still runs that it runs here (one `started` notice message per origin, written only while the origin is
   * registered or reads its stream): a task that ends within a beat costs no notice, nor does one queued here. For those noticed at an earlier beat, reads
   * their `done` markers: a marker set while the task still runs here is its origin's cancel (see
   * RedisBridge.cancel), which this node missed on the channel (its subscriber was reconnecting): the task is
   * cancelled here. Never rejects.
   */
  async notify(): Promise<void> {
    if (this.#started.size === 0) return;
    const byOrigin = new Map<string, HandOffNotice[]>();
    const watched: string[] = [];
    const host = this.#node.host;
    for (const [taskId, handOff] of this.#started) {
      const noticed = this.#noticed.get(taskId);
      if (noticed !== undefined) watched.push(taskId);
      // Only a running attempt is told, once: a task queued here for an agent is not timed by its origin yet.
      const attempt = host?.attemptOf ? host.attemptOf(taskId) : 1;
      if (attempt === 0 || attempt === noticed) continue;
      this.#noticed.set(taskId, attempt);
      const delivery = handOff.delivery ?? 1;
      const notice: HandOffNotice = { taskId, node: this.#node.nodeId, kind: 'started', delivery, attempt };
      const list = byOrigin.get(handOff.origin);
      if (list) list.push(notice);
      else byOrigin.set(handOff.origin, [notice]);
    }
    try {
      const pipeline = this.#connections.redis.pipeline();
      for (const [origin, notices] of byOrigin) this.#addNotices(pipeline, origin, notices);
      if (watched.length > 0) pipeline.mget(...watched.map((taskId) => this.#node.key('done', taskId)));
      const replies = await pipeline.exec();
      if (watched.length === 0) return;
      const done = replies?.[byOrigin.size]?.[1];
      if (!Array.isArray(done)) return;
      watched.forEach((taskId, i) => {
        if (done[i] != null && this.#started.has(taskId))
          this.#node.host?.cancel?.(taskId, 'cancelled by the node that handed it off');
      });
    } catch {
      // Redis went away: the notices are lost (the origin's bounds still hold), the check comes again next beat.
    }
  }

  #report(entry: Entry, result: HandOffResult | undefined, origin: string, taskId: string): void {
    this.#writer.report(entry, result, origin, taskId);
  }

  /** A task taken here is over: room for another. */
  #drop(): void {
    this.#backlog--;
    this.#onCapacity?.();
  }
}
