/**
 * The results streams, `results:<node>`: one per origin node, read by that node only.
 *
 * - {@link ResultWriter}, on a serving node: reports what it ran, batched per turn of the event loop, in two steps
 *   whose every reply is checked. First the results, per origin one script call per signed message (more than one
 *   when its results are over BATCH_CHARS of JSON) that adds the message to the origin's stream and sets the `done`
 *   markers of its tasks. Then, for the entries whose tasks are all written, the acks (or, for an entry with a refused
 *   task, the refusal count). A result Redis refuses (OOM at maxmemory, a key of the wrong type) is retried with
 *   backoff while its entry stays pending under this node and is kept fresh; an entry is never acked before all its
 *   results are written.
 * - {@link readResults}, on an origin node: the blocking loop that reads its own stream and hands each well-formed
 *   result on to the hand-off waiting for it.
 */
import type { HandOffResult } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import type { RedisNode } from './redis-node.js';
import {
  cutBatches,
  field,
  GROUP,
  itemJson,
  pause,
  refusalKey,
  replyError,
  replyText,
  streamsOf,
  type Replies,
} from './redis-streams.js';

/**
 * Adds one results message (ARGV[1] the message, ARGV[2] its signature) to the stream KEYS[1] and sets the `done`
 * markers KEYS[2..] with a TTL of ARGV[3] ms, all or nothing: the markers are never set for a result that was not
 * written (a redelivered entry would then be acked without running, and its result lost). Should the XADD fail (OOM,
 * WRONGTYPE), the script stops there and nothing was written; at maxmemory, Redis refuses only a script's first write,
 * so once the XADD went in the markers do too.
 */
const WRITE_RESULTS =
  "redis.call('XADD', KEYS[1], '*', 'm', ARGV[1], 's', ARGV[2]) " +
  "for i = 2, #KEYS do redis.call('SET', KEYS[i], '1', 'PX', ARGV[3]) end return #KEYS - 1";

/** The first wait before results Redis refused are written again; it doubles on each failure up to RETRY_MAX_MS. */
const RETRY_MIN_MS = 50;
/** The longest wait between two attempts to write refused results. */
const RETRY_MAX_MS = 1_000;

/** A delivered stream entry while its tasks run. */
export interface Entry {
  readonly stream: string;
  readonly id: string;
  /** Tasks of the entry whose report is not over yet (not reported, or its result not written yet). */
  open: number;
  /** One was refused here: the entry is left pending for reclaim instead of acked. */
  refused: boolean;
  /** A result of one of its tasks was given up (the node stopped while Redis refused it): left pending, not acked. */
  lost: boolean;
}

/** The reports of one turn of the event loop: `done` settles once each of them is over. */
interface Round {
  open: number;
  readonly done: Promise<void>;
  readonly resolve: () => void;
}

/** What one task of an entry reported: its result, or none (refused here, or it already had one). */
interface Report {
  readonly entry: Entry;
  readonly result: HandOffResult | undefined;
  readonly origin: string;
  readonly taskId: string;
  readonly round: Round;
  /** The result as JSON, once serialised (kept for the retries, so that it is sent as it was first serialised). */
  json: string | undefined;
  /** Its result and `done` marker are in Redis, or it has none to write. */
  written: boolean;
}

/** What the serving side hears from a {@link ResultWriter}. */
export interface ResultWriterHooks {
  /** A task's report is over (its result written, or given up): it no longer counts against flow control. */
  reported(): void;
  /** An entry's flush is over (acked, left pending, or Redis failed): it is no longer running here. Once per entry. */
  release(entry: Entry): void;
}

/** The results of the tasks a serving node ran, and the acks of their entries, batched per turn of the event loop. */
export class ResultWriter {
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  readonly #hooks: ResultWriterHooks;
  /** Reports to write (new ones, and refused ones due again), flushed once per turn of the event loop. */
  readonly #outbox: Report[] = [];
  /** Reports whose write Redis refused, waiting for the retry timer. */
  readonly #retrying: Report[] = [];
  #retryTimer: NodeJS.Timeout | undefined;
  /** Reports with a result not written yet (nor given up): the node's `results` trouble lasts until none is left. */
  #unwritten = 0;
  /** Flushes in a row whose writes Redis refused: the retry's backoff. */
  #failures = 0;
  /** The round this turn's reports join, until the flush takes them. */
  #round: Round | undefined;
  /** The latest round's `done`. */
  #flushed: Promise<void> = Promise.resolve();
  #flushScheduled = false;

  constructor(node: RedisNode, connections: RedisConnections, hooks: ResultWriterHooks) {
    this.#node = node;
    this.#connections = connections;
    this.#hooks = hooks;
  }

  /**
   * Settles once what was reported so far is over: written and its entries acked, or given up (the node stopped while
   * Redis refused it). While Redis refuses the writes and the node runs, it waits for the retries.
   */
  get flushed(): Promise<void> {
    return this.#flushed;
  }

  /** Queues what a task of `entry` reported (`result` undefined: nothing to send back) for the next flush. */
  report(entry: Entry, result: HandOffResult | undefined, origin: string, taskId: string): void {
    let round = this.#round;
    if (!round) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      round = this.#round = { open: 0, done, resolve };
      this.#flushed = done;
    }
    round.open++;
    if (result) this.#unwritten++;
    this.#outbox.push({ entry, result, origin, taskId, round, json: undefined, written: result === undefined });
    this.#flushSoon();
  }

  #flushSoon(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#round = undefined;
      // #flush handles its own failures; the catch only keeps a bug there from becoming an unhandled rejection.
      this.#flush(this.#outbox.splice(0)).catch(() => {});
    });
  }

  /**
   * Writes the results of `items` (step 1), then acks the entries whose reports are all over (step 2). What Redis
   * refused waits for a retry while the node runs, and is given up once it stopped (its entry left pending, for
   * another node to run again).
   */
  async #flush(items: Report[]): Promise<void> {
    if (items.length === 0) return;
    await this.#write(items);
    const over: Report[] = [];
    const refused: Report[] = [];
    const finished: Entry[] = [];
    for (const item of items) {
      if (!item.written) {
        if (this.#node.running) {
          refused.push(item);
          continue;
        }
        item.entry.lost = true; // stopping: given up; the entry stays pending and runs again elsewhere
      }
      if (item.result) this.#unwritten--;
      over.push(item);
      this.#hooks.reported();
      if (--item.entry.open === 0) finished.push(item.entry);
    }
    if (refused.length > 0) this.#retryLater(refused);
    else if (this.#unwritten === 0) this.#node.clear('results');
    if (finished.length > 0) await this.#ack(finished);
    for (const { round } of over) if (--round.open === 0) round.resolve();
  }

  /**
   * Step 1: per origin node, signed messages carrying its results (any number, up to BATCH_CHARS of JSON each, so
   * most often one), each written with its tasks' `done` markers by one WRITE_RESULTS call. Marks the reports of each
   * call that succeeded `written`; the node is degraded with Redis's reply while a call fails. A result that cannot be
   * sent is replaced by a ValidationError result for its task alone.
   */
  async #write(items: readonly Report[]): Promise<void> {
    const byOrigin = new Map<string, Array<{ json: string; report: Report }>>();
    for (const report of items) {
      if (report.written || !report.result) continue;
      report.json ??= serialiseResult(report.result, this.#node.nodeId).json;
      const list = byOrigin.get(report.origin);
      if (list) list.push({ json: report.json, report });
      else byOrigin.set(report.origin, [{ json: report.json, report }]);
    }
    if (byOrigin.size === 0) return;
    /** The reports each command of the pipeline writes, by its place. */
    const calls: Report[][] = [];
    let replies: Replies;
    try {
      const pipeline = this.#connections.redis.pipeline();
      const ttl = String(this.#node.options.doneTtlMs);
      for (const [origin, results] of byOrigin) {
        for (const batch of cutBatches(results, Infinity)) {
          const sealed = this.#node.signer.sealJson('results', `{"results":[${batch.map((r) => r.json).join(',')}]}`);
          const keys = [
            this.#node.key('results', origin),
            ...batch.map((r) => this.#node.key('done', r.report.taskId)),
          ];
          pipeline.eval(WRITE_RESULTS, keys.length, ...keys, sealed.m, sealed.s, ttl);
          calls.push(batch.map((r) => r.report));
        }
      }
      replies = await pipeline.exec();
    } catch {
      // Redis went away mid-flush (or building the pipeline threw): nothing is known to be written; retried.
      return;
    }
    let refusal: Error | undefined;
    for (const [index, reports] of calls.entries()) {
      const error = replyError(replies, index);
      if (error) refusal ??= error;
      else for (const report of reports) report.written = true;
    }
    if (refusal) {
      // Degraded until every result this node keeps is written (see #flush), whatever other writes Redis takes.
      this.#node.writeRefused(replyText(refusal), 'results');
      return;
    }
    this.#failures = 0;
    this.#node.writeTaken();
  }

  /**
   * Step 2, once step 1's replies are in: per stream one XACK and one XDEL for the entries whose reports are all
   * written. An entry with a refused task stays pending (reclaim gives it to a node that runs what has no result) and
   * its refusal is counted apart, so that a busy cluster does not spend the deliveries meant for nodes that die; an
   * entry with a result given up stays pending too. Never rejects; releases each entry once, whatever Redis replies:
   * one whose ack failed stays pending, and its `done` markers make its redelivery an ack without a run.
   */
  async #ack(entries: readonly Entry[]): Promise<void> {
    try {
      const { doneTtlMs } = this.#node.options;
      const byStream = new Map<string, string[]>();
      const pipeline = this.#connections.redis.pipeline();
      for (const e of entries) {
        if (e.lost) continue;
        if (e.refused) {
          pipeline.incr(refusalKey(e.stream, e.id)).pexpire(refusalKey(e.stream, e.id), doneTtlMs);
          continue;
        }
        const ids = byStream.get(e.stream);
        if (ids) ids.push(e.id);
        else byStream.set(e.stream, [e.id]);
      }
      for (const [stream, ids] of byStream) pipeline.xack(stream, GROUP, ...ids).xdel(stream, ...ids);
      if (pipeline.length === 0) return;
      const replies = await pipeline.exec();
      for (let i = 0; i < pipeline.length; i++) {
        const error = replyError(replies, i);
        if (error) {
          // A refusal not counted (INCR at maxmemory) makes that delivery count as one that ended in silence.
          this.#node.writeRefused(replyText(error));
          break;
        }
      }
    } catch {
      // Redis went away: the entries stay pending; their `done` markers spare their tasks a second run.
    } finally {
      for (const e of entries) this.#hooks.release(e);
    }
  }

  /** Queues reports Redis refused for another attempt, after a backoff that doubles with each failed flush. */
  #retryLater(reports: readonly Report[]): void {
    for (const report of reports) this.#retrying.push(report);
    if (this.#retryTimer) return;
    this.#failures++;
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.#failures - 1, 16));
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      for (const report of this.#retrying.splice(0)) this.#outbox.push(report);
      this.#flushSoon();
    }, delay);
    // Not keeping the process alive: a node that stops gives these up at their next attempt.
    this.#retryTimer.unref();
  }
}

/**
 * A result serialised on its own for a results message; one that cannot be (it does not serialise, or alone is
 * longer than a message holds) becomes a ValidationError result for its task, so that the origin hears of it.
 */
function serialiseResult(result: HandOffResult, node: string): { json: string } {
  const serialised = itemJson(result);
  if ('json' in serialised) return serialised;
  const failed: HandOffResult = {
    taskId: result.taskId,
    node,
    ok: false,
    error: {
      name: 'ValidationError',
      code: 'VALIDATION_ERROR',
      message: `The result of the handed-off task ${result.taskId} cannot be sent back: ${serialised.error}; return a reference to the data (a URL, a key) instead of the data`,
    },
  };
  return { json: JSON.stringify(failed) };
}

/**
 * Reads this node's results stream while the node runs and passes each result that is well-formed (an object with a
 * `taskId`) to `onResult`; unsigned, forged or malformed ones are counted as rejected. Entries are deleted once read.
 */
export async function readResults(
  node: RedisNode,
  connections: RedisConnections,
  onResult: (result: HandOffResult) => void,
): Promise<void> {
  const reader = connections.resultReader;
  const stream = node.key('results', node.nodeId);
  // From the start of the stream, never '$': a '$' read misses what arrives between two reads (or before the first
  // one reaches Redis), and that task would wait forever. Entries are deleted once read, so the stream stays short;
  // left-overs of an earlier node with this id match no pending hand-off and are dropped.
  let last = '0-0';
  while (node.running) {
    let reply: unknown;
    try {
      reply = await reader.call(
        'XREAD',
        'COUNT',
        '256',
        'BLOCK',
        String(node.options.blockMs),
        'STREAMS',
        stream,
        last,
      );
    } catch {
      if (!node.running) return;
      await pause(100);
      continue;
    }
    if (!reply) continue;
    const done: string[] = [];
    for (const [, entries] of streamsOf(reply)) {
      for (const [id, fields] of entries) {
        last = id;
        done.push(id);
        const message = node.signer.open<{ results: HandOffResult[] }>(
          'results',
          field(fields, 'm'),
          field(fields, 's'),
        );
        if (!message || !Array.isArray(message.results)) {
          node.counts.rejected++;
          continue;
        }
        for (const result of message.results) {
          if (typeof result !== 'object' || result === null || typeof result.taskId !== 'string') {
            node.counts.rejected++;
            continue;
          }
          onResult(result);
        }
      }
    }
    if (done.length > 0) void connections.redis.xdel(stream, ...done).catch(() => {});
  }
}
