/**
 * The results streams, `results:<node>`: one per origin node, read by that node only.
 *
 * - {@link ResultWriter}, on a serving node: reports what it ran, batched per turn of the event loop, every reply
 *   checked. Per origin one script call per signed message (more than one when its results are over BATCH_CHARS of
 *   JSON) adds the message to the origin's stream, sets the `done` markers of its tasks and acks the entries whose
 *   tasks have all reported with it, all in one step: an entry is never acked before all its results are written,
 *   and one pipeline per flush is all a task's report costs. An entry with nothing to write (its tasks had results
 *   already) is acked apart; one with a task refused here is left pending and its refusal counted instead. A
 *   result Redis refuses (OOM at maxmemory, a key of the wrong type) is retried with backoff while its entry stays
 *   pending under this node and is kept fresh.
 * - {@link readResults}, on an origin node: the blocking loop that reads its own stream and hands each well-formed
 *   result on to the hand-off waiting for it.
 */
import type { HandOffNotice, HandOffResult } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import type { RedisNode } from './redis-node.js';
import {
  cutBatches,
  field,
  GROUP,
  itemJson,
  nextTurn,
  pause,
  refusalKey,
  replyError,
  replyText,
  send,
  streamsOf,
  type Command,
  type Replies,
} from './redis-streams.js';

/**
 * Writes one results message and what follows from it. Adds the message (ARGV[1], its signature ARGV[2]) to the
 * origin's stream KEYS[1]; sets the `done` markers KEYS[2] to KEYS[n + 1] (n = ARGV[4]) with a TTL of ARGV[3] ms; then
 * acks and deletes, in the group ARGV[5], the task entries all of whose tasks reported with this message: each further
 * key is a task stream, and its ids follow in ARGV from ARGV[6] on, each run of them led by its count. The markers are
 * never set, and no entry is acked, for a result that was not written (a redelivered entry would then be acked without
 * running, and its result lost): should the XADD fail (OOM, WRONGTYPE), the script stops there and nothing was
 * written; at maxmemory, Redis refuses only a script's first write, so once the XADD went in the rest does too. An ack
 * that fails (a task stream replaced by a key of another type) does not undo the write: the script returns its error
 * (the entry stays pending, and its markers make its redelivery an ack without a run); otherwise 0.
 */
export const WRITE_RESULTS =
  "redis.call('XADD', KEYS[1], '*', 'm', ARGV[1], 's', ARGV[2]) " +
  'local n = tonumber(ARGV[4]) ' +
  "for i = 2, n + 1 do redis.call('SET', KEYS[i], '1', 'PX', ARGV[3]) end " +
  'local a, err = 6, nil ' +
  'for k = n + 2, #KEYS do ' +
  'local c = tonumber(ARGV[a]) ' +
  "local r = redis.pcall('XACK', KEYS[k], ARGV[5], unpack(ARGV, a + 1, a + c)) " +
  "if type(r) == 'table' and r.err then err = err or r.err else " +
  "r = redis.pcall('XDEL', KEYS[k], unpack(ARGV, a + 1, a + c)) " +
  "if type(r) == 'table' and r.err then err = err or r.err end end " +
  'a = a + c + 1 ' +
  'end ' +
  'return err or 0';

/** Entry ids one run of WRITE_RESULTS' acks holds at most (Lua's `unpack` passes them on the C stack). */
const ACK_RUN = 256;

/**
 * Entries of its results stream an origin reads before it deletes them (with its next read), unless the stream goes
 * quiet first: at most this many and one read's worth are left in Redis between two deletions.
 */
const DELETE_AFTER = 64;

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
   * Writes the results of `items`, with the acks of the entries they finish (see #write), then acks apart the
   * entries that finished otherwise. What Redis refused waits for a retry while the node runs, and is given up once it
   * stopped (its entry left pending, for another node to run again).
   */
  async #flush(items: Report[]): Promise<void> {
    if (items.length === 0) return;
    const acked = await this.#write(items);
    const over: Report[] = [];
    const refused: Report[] = [];
    /** Entries whose reports are all over and that the write did not ack: acked (or counted as refused) apart. */
    const finished: Entry[] = [];
    /** Entries the write acked. */
    const released: Entry[] = [];
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
      if (--item.entry.open === 0) (acked.has(item.entry) ? released : finished).push(item.entry);
    }
    if (refused.length > 0) this.#retryLater(refused);
    else if (this.#unwritten === 0) this.#node.clear('results');
    for (const entry of released) this.#hooks.release(entry);
    if (finished.length > 0) await this.#ack(finished);
    for (const { round } of over) if (--round.open === 0) round.resolve();
  }

  /**
   * Per origin node, signed messages carrying its results (any number, up to BATCH_CHARS of JSON each, so most often
   * one), each written by one WRITE_RESULTS call with its tasks' `done` markers and the acks of the entries it
   * finishes: those whose reports left are all in this flush, with every result among them in this message (and no
   * refused task). Marks the reports of each call that succeeded `written`, and resolves with the entries those calls
   * acked; the node is degraded with Redis's reply while a call fails. A result that cannot be sent is replaced by a
   * ValidationError result for its task alone.
   */
  async #write(items: readonly Report[]): Promise<ReadonlySet<Entry>> {
    const acked = new Set<Entry>();
    /** Per entry, its reports in this flush and how many of them have a result to write. */
    const inFlush = new Map<Entry, { reports: number; writes: number }>();
    const byOrigin = new Map<string, Array<{ json: string; report: Report }>>();
    for (const report of items) {
      let counts = inFlush.get(report.entry);
      if (!counts) inFlush.set(report.entry, (counts = { reports: 0, writes: 0 }));
      counts.reports++;
      if (report.written || !report.result) continue;
      counts.writes++;
      report.json ??= serialiseResult(report.result, this.#node.nodeId).json;
      const list = byOrigin.get(report.origin);
      if (list) list.push({ json: report.json, report });
      else byOrigin.set(report.origin, [{ json: report.json, report }]);
    }
    if (byOrigin.size === 0) return acked;
    /** The reports each command of the pipeline writes and the entries it acks, by its place. */
    const calls: Array<{ reports: Report[]; acks: Entry[] }> = [];
    let replies: Replies;
    try {
      const commands: Command[] = [];
      const ttl = String(this.#node.options.doneTtlMs);
      for (const [origin, results] of byOrigin) {
        for (const batch of cutBatches(results, Infinity)) {
          const sealed = this.#node.signer.sealJson('results', `{"results":[${batch.map((r) => r.json).join(',')}]}`);
          const keys = [this.#node.key('results', origin)];
          for (const r of batch) keys.push(this.#node.key('done', r.report.taskId));
          const args = [sealed.m, sealed.s, ttl, String(batch.length), GROUP];
          const acks = finishedBy(batch, inFlush);
          for (const [stream, ids] of byStream(acks)) {
            for (let i = 0; i < ids.length; i += ACK_RUN) {
              const run = ids.slice(i, i + ACK_RUN);
              keys.push(stream);
              args.push(String(run.length), ...run);
            }
          }
          commands.push(['EVAL', WRITE_RESULTS, String(keys.length), ...keys, ...args]);
          calls.push({ reports: batch.map((r) => r.report), acks });
        }
      }
      replies = await send(this.#connections.redis, commands);
    } catch {
      // Redis went away mid-flush (or building the pipeline threw): nothing is known to be written; retried.
      return acked;
    }
    let refusal: Error | undefined;
    /** An ack a call could not make (its write went in): reported as #ack reports its own. */
    let ackError: string | undefined;
    for (const [index, { reports, acks }] of calls.entries()) {
      const error = replyError(replies, index);
      if (error) {
        refusal ??= error;
        continue;
      }
      for (const report of reports) report.written = true;
      const reply = replies?.[index]?.[1];
      // Its acks failed: the entries are acked apart once more (see #flush), and fail there too or go in.
      if (typeof reply === 'string') ackError ??= reply;
      else for (const entry of acks) acked.add(entry);
    }
    if (refusal) {
      // Degraded until every result this node keeps is written (see #flush), whatever other writes Redis takes.
      this.#node.writeRefused(replyText(refusal), 'results');
      return acked;
    }
    this.#failures = 0;
    this.#node.writeTaken();
    if (ackError !== undefined) this.#node.writeRefused(ackError);
    return acked;
  }

  /**
   * The entries whose reports are all over and that no results message acked (see #write): per stream one XACK and
   * one XDEL for those with nothing left to write (every task had a result already) or whose ack in the script failed.
   * An entry with a refused task stays pending (reclaim gives it to a node that runs what has no result) and
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
 * The entries a results message finishes, given the reports of this flush per entry (`inFlush`): those with no
 * refused task and no result given up, whose reports still open are all in this flush, and whose results to write are
 * all in this message. The message's call acks them once it wrote the results.
 */
function finishedBy(
  batch: ReadonlyArray<{ readonly report: Report }>,
  inFlush: ReadonlyMap<Entry, { readonly reports: number; readonly writes: number }>,
): Entry[] {
  const inMessage = new Map<Entry, number>();
  for (const { report } of batch) inMessage.set(report.entry, (inMessage.get(report.entry) ?? 0) + 1);
  const out: Entry[] = [];
  for (const [entry, n] of inMessage) {
    const counts = inFlush.get(entry);
    if (entry.refused || entry.lost || !counts) continue;
    if (counts.reports === entry.open && counts.writes === n) out.push(entry);
  }
  return out;
}

/** The ids of `entries`, per stream. */
function byStream(entries: readonly Entry[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const e of entries) {
    const ids = out.get(e.stream);
    if (ids) ids.push(e.id);
    else out.set(e.stream, [e.id]);
  }
  return out;
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
  onNotice: (notice: HandOffNotice) => void = () => {},
): Promise<void> {
  const reader = connections.resultReader;
  const stream = node.key('results', node.nodeId);
  // From the start of the stream, never '$': a '$' read misses what arrives between two reads (or before the first
  // one reaches Redis), and that task would wait forever. Entries are deleted once read, a few at a time, so the
  // stream stays short; left-overs of an earlier node with this id match no pending hand-off and are dropped.
  let last = '0-0';
  /** Entries read and not deleted yet. */
  let read: string[] = [];
  /** The last read came back empty (it timed out): the stream is quiet. */
  let quiet = false;
  while (node.running) {
    let reply: unknown;
    try {
      const xread = ['COUNT', '256', 'BLOCK', String(node.options.blockMs), 'STREAMS', stream, last];
      if (read.length < DELETE_AFTER && !(quiet && read.length > 0)) reply = await reader.call('XREAD', ...xread);
      else {
        // The entries read so far go in the same write as the next read: the deletion goes first and never blocks,
        // and whether it went in matters little (an entry left is before `last`, and goes with the stream once the
        // node is gone). Deleting a batch at a time, not after each read, spares a round trip most of that work.
        const replies = await reader
          .pipeline()
          .xdel(stream, ...read)
          .call('XREAD', ...xread)
          .exec();
        read = []; // deleted, or refused by Redis: either way not sent again
        const error = replyError(replies, 1);
        if (error) throw error;
        reply = replies![1]![1];
      }
    } catch {
      // The connection failed: the deletion goes with the next read.
      if (!node.running) return;
      await pause(100);
      continue;
    }
    quiet = !reply;
    if (!reply) continue;
    for (const [, entries] of streamsOf(reply)) {
      for (const [id, fields] of entries) {
        last = id;
        read.push(id);
        const message = node.signer.open<{ results: HandOffResult[]; notices?: unknown }>(
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
        // Notices (nodes of earlier versions send none): dropped unless well-formed.
        if (Array.isArray(message.notices)) for (const notice of message.notices) readNotice(notice, onNotice);
      }
    }
    // The next read (and this one's deletion) waits for the next turn of the event loop: what the results just
    // settled goes on first (a caller's next hand-off among it), not behind two more writes.
    await nextTurn();
  }
}

/** Passes `value` on as a notice when it is a well-formed one. */
function readNotice(value: unknown, onNotice: (notice: HandOffNotice) => void): void {
  if (typeof value !== 'object' || value === null) return;
  const { taskId, node, kind, delivery, attempt, value: reported, at } = value as Record<string, unknown>;
  if (typeof taskId !== 'string' || typeof node !== 'string' || (kind !== 'started' && kind !== 'progress')) return;
  const n = typeof delivery === 'number' && Number.isInteger(delivery) && delivery >= 1 ? delivery : 1;
  const a = typeof attempt === 'number' && Number.isInteger(attempt) && attempt >= 1 ? attempt : n;
  if (kind === 'started') return onNotice({ taskId, node, kind, delivery: n, attempt: a });
  const when = typeof at === 'number' && Number.isFinite(at) ? at : Date.now();
  onNotice({ taskId, node, kind, delivery: n, attempt: a, value: reported, at: when });
}
