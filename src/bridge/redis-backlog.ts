/**
 * The backlog of the task streams a node hands off to, held against `maxStreamBacklog`. A stream's backlog is its
 * length (XLEN: entries not yet delivered, and delivered ones still pending; an entry is deleted once acked), read on
 * every heartbeat, plus the entries this node has added to it since that read (counted as the hand-offs of one turn
 * of the event loop are batched: a new entry every BATCH tasks). A hand-off to a stream at the bound is refused with
 * QueueFullError, so that a slow or absent consumer makes producers refuse work instead of Redis filling up.
 */
import type { Redis } from 'ioredis';
import { QueueFullError } from '../errors.js';
import { BATCH } from './redis-streams.js';

/** What this node knows of one stream's backlog. */
interface Backlog {
  /** Its length at the last read. */
  read: number;
  /** Entries this node added since. */
  added: number;
  /** Hand-offs to it in this turn of the event loop (they share entries). */
  turn: number;
}

/** The backlog of each task stream this node hands off to, and the refusal past `maxStreamBacklog`. */
export class StreamBacklog {
  readonly #max: number;
  readonly #streams = new Map<string, Backlog>();
  /** Whether the end of this turn is scheduled (it resets the per-turn counts). */
  #turnEnds = false;

  /** `max`: the `maxStreamBacklog` option, in entries. */
  constructor(max: number) {
    this.#max = max;
  }

  /**
   * QueueFullError when the stream `stream` (of the class `requires`) holds `maxStreamBacklog` entries or more, as
   * far as this node knows; otherwise `undefined`.
   */
  refusal(stream: string, requires: readonly string[]): QueueFullError | undefined {
    const b = this.#streams.get(stream);
    if (!b) {
      // A stream this node never sent to: from now on, read on each heartbeat like the others.
      this.#streams.set(stream, { read: 0, added: 0, turn: 0 });
      return undefined;
    }
    // A hand-off that joins an entry of this turn adds no entry: only one that starts an entry needs room.
    const backlog = b.read + b.added;
    if (backlog < this.#max || b.turn % BATCH !== 0) return undefined;
    return new QueueFullError(
      this.#max,
      `The task stream of [${requires.join(', ')}] holds about ${backlog} entries (up to ${BATCH} tasks each) not yet run, its bound (RedisBridge maxStreamBacklog ${this.#max}); retry later, add nodes that serve these capabilities, or raise maxStreamBacklog`,
      'maxStreamBacklog',
    );
  }

  /** Counts a hand-off to `stream` (after `refusal` let it through). */
  add(stream: string): void {
    let b = this.#streams.get(stream);
    if (!b) this.#streams.set(stream, (b = { read: 0, added: 0, turn: 0 }));
    if (b.turn++ % BATCH === 0) b.added++;
    if (!this.#turnEnds) {
      this.#turnEnds = true;
      // The hand-offs of a turn go out together (see RedisHandOffs): the next turn starts new entries.
      setImmediate(() => {
        this.#turnEnds = false;
        for (const s of this.#streams.values()) s.turn = 0;
      });
    }
  }

  /** Reads the length of every stream this node hands off to (one pipeline); on a failed read, keeps the counts. */
  async read(redis: Redis): Promise<void> {
    if (this.#streams.size === 0) return;
    const streams = [...this.#streams.keys()];
    const pipeline = redis.pipeline();
    for (const stream of streams) pipeline.xlen(stream);
    const replies = await pipeline.exec();
    streams.forEach((stream, i) => {
      const [error, length] = replies?.[i] ?? [new Error('no reply')];
      const b = this.#streams.get(stream);
      if (error || typeof length !== 'number' || !b) return;
      b.read = length;
      b.added = 0;
    });
  }
}
