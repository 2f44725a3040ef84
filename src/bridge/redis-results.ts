/**
 * The results streams, `results:<node>`: one per origin node, read by that node only.
 *
 * - {@link ResultWriter}, on a serving node: reports what it ran, one pipeline per turn of the event loop with a
 *   signed message per origin (more when its results are over BATCH_CHARS of JSON), the `done` markers, and the acks
 *   of the entries whose tasks all reported.
 * - {@link readResults}, on an origin node: the blocking loop that reads its own stream and hands each well-formed
 *   result on to the hand-off waiting for it.
 */
import type { HandOffResult } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import type { RedisNode } from './redis-node.js';
import { cutBatches, field, GROUP, itemJson, pause, refusalKey, streamsOf } from './redis-streams.js';

/** Sets every KEYS[i] to 1 with a TTL of ARGV[1] ms: the `done` markers of a flush in one call. */
const SET_DONE = "for i = 1, #KEYS do redis.call('SET', KEYS[i], '1', 'PX', ARGV[1]) end return #KEYS";

/** A delivered stream entry while its tasks run. */
export interface Entry {
  readonly stream: string;
  readonly id: string;
  /** Tasks of the entry that have not reported yet. */
  open: number;
  /** One was refused here: the entry is left pending for reclaim instead of acked. */
  refused: boolean;
}

/** What one task of an entry reported: its result, or none (refused here, or it already had one). */
interface Report {
  readonly entry: Entry;
  readonly result: HandOffResult | undefined;
  readonly origin: string;
  readonly taskId: string;
}

/** The results of the tasks a serving node ran, and the acks of their entries, batched per turn of the event loop. */
export class ResultWriter {
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  /** Called for each entry once its flush is over (acked, left pending, or Redis failed): it is no longer running. */
  readonly #release: (entry: Entry) => void;
  /** Results to report and entries to ack, flushed in one pipeline per turn of the event loop. */
  readonly #outbox: Report[] = [];
  #flushed: Promise<void> = Promise.resolve();
  #flushScheduled = false;

  constructor(node: RedisNode, connections: RedisConnections, release: (entry: Entry) => void) {
    this.#node = node;
    this.#connections = connections;
    this.#release = release;
  }

  /** Settles when the flush that carries what was reported so far is over. */
  get flushed(): Promise<void> {
    return this.#flushed;
  }

  /** Queues what a task of `entry` reported (`result` undefined: nothing to send back) for the next flush. */
  report(entry: Entry, result: HandOffResult | undefined, origin: string, taskId: string): void {
    this.#outbox.push({ entry, result, origin, taskId });
    this.#flushSoon();
  }

  #flushSoon(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    this.#flushed = new Promise<void>((resolve) => {
      setImmediate(() => {
        this.#flushScheduled = false;
        // #flush handles its own failures; the catch only keeps a bug there from becoming an unhandled rejection.
        this.#flush()
          .catch(() => {})
          .finally(resolve);
      });
    });
  }

  /**
   * One pipeline per turn: per origin node signed messages carrying its results (any number, up to BATCH_CHARS of JSON
   * each, so most often one), the `done` markers in one script call, and per stream one XACK and one XDEL for the entries whose
   * tasks have all reported. The commands (and signatures) per task are what bounds a serving node, so they are shared
   * by the batch. A result that cannot be sent is replaced by a ValidationError result for its task alone.
   */
  async #flush(): Promise<void> {
    const items = this.#outbox.splice(0);
    if (items.length === 0) return;
    // The entries this flush finishes, counted first: whatever happens next, each is released exactly once.
    const finished = new Map<string, Entry[]>();
    for (const { entry } of items) {
      if (--entry.open === 0) {
        const list = finished.get(entry.stream);
        if (list) list.push(entry);
        else finished.set(entry.stream, [entry]);
      }
    }
    try {
      await this.#send(items, finished);
    } catch {
      // Redis went away mid-flush (or building the pipeline threw): the entries stay pending; their tasks run again
      // elsewhere (at least once).
    } finally {
      for (const entries of finished.values()) for (const e of entries) this.#release(e);
    }
  }

  async #send(items: readonly Report[], finished: ReadonlyMap<string, Entry[]>): Promise<void> {
    const pipeline = this.#connections.redis.pipeline();
    const byOrigin = new Map<string, Array<{ json: string }>>();
    const doneKeys: string[] = [];
    for (const { result, origin, taskId } of items) {
      if (!result) continue;
      const list = byOrigin.get(origin);
      const serialised = serialiseResult(result, this.#node.nodeId);
      if (list) list.push(serialised);
      else byOrigin.set(origin, [serialised]);
      doneKeys.push(this.#node.key('done', taskId));
    }
    for (const [origin, results] of byOrigin) {
      for (const batch of cutBatches(results, Infinity)) {
        const sealed = this.#node.signer.sealJson('results', `{"results":[${batch.map((r) => r.json).join(',')}]}`);
        pipeline.xadd(this.#node.key('results', origin), '*', 'm', sealed.m, 's', sealed.s);
      }
    }
    const { doneTtlMs } = this.#node.options;
    if (doneKeys.length > 0) pipeline.eval(SET_DONE, doneKeys.length, ...doneKeys, String(doneTtlMs));
    for (const [stream, entries] of finished) {
      // An entry with a refused task stays pending: reclaim gives it to a node that runs what has no result. The
      // refusal is counted apart, so that a busy cluster does not spend the deliveries meant for nodes that die.
      const ids: string[] = [];
      for (const e of entries) {
        if (!e.refused) ids.push(e.id);
        else pipeline.incr(refusalKey(stream, e.id)).pexpire(refusalKey(stream, e.id), doneTtlMs);
      }
      if (ids.length > 0) {
        pipeline.xack(stream, GROUP, ...ids);
        pipeline.xdel(stream, ...ids);
      }
    }
    await pipeline.exec();
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
