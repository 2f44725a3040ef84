/**
 * Progress of a running task: what its agent reports through `ctx.progress(value)`, fanned out to the readers of its
 * handle's `progress`. One {@link ProgressFeed} per task, made only when an agent reports or a caller reads; each
 * reader (an async iterator) keeps a bounded buffer of its own, so a slow reader never grows memory without bound.
 */
import { ValidationError } from '../errors.js';

/** One progress update of a task: a value its agent reported with `ctx.progress(value)`. */
export interface ProgressUpdate {
  /** The task's id. */
  readonly taskId: string;
  /** The number of the attempt that reported it, from 1. */
  readonly attempt: number;
  /**
   * What the agent reported. Passed by reference on the node that ran it (not copied: do not change it); a task run
   * on another node reports what crossed the bridge.
   */
  readonly value: unknown;
  /** When it was reported, epoch ms (`Date.now()` on the node that ran the attempt). */
  readonly at: number;
  /**
   * Set only on an update an iterator yields after its buffer overflowed: how many older updates that iterator
   * dropped since the one it yielded before (the newest are kept).
   */
  readonly dropped?: number;
}

/** Options of {@link ProgressStream.iterate}. */
export interface ProgressIterateOptions {
  /**
   * Updates this iterator holds for its reader at most (1 to 100_000); past it the oldest is dropped and counted.
   * @default 64
   */
  readonly buffer?: number;
}

/** One reader of a task's progress (see {@link ProgressStream}). */
export interface ProgressIterator extends AsyncIterableIterator<ProgressUpdate> {
  /** Updates this iterator dropped so far because its buffer was full (its reader was slower than the agent). */
  readonly dropped: number;
}

/**
 * A task's progress, as its handle's `progress` gives it: `for await (const update of handle.progress)`.
 *
 * - Every iterator first yields the latest update reported before it started (if any), then every later one, in
 *   order; several iterators each see every update.
 * - Iteration ends when the task reaches its terminal state, whatever it is (completed, failed, cancelled, timed out,
 *   dead-lettered); the task's outcome is its handle's `result`. Iterating a task that ended already yields its last
 *   update, if it had one, and ends.
 * - Each iterator holds at most `buffer` updates (64 by default) its reader has not taken yet: past that the oldest
 *   is dropped, and the next update it yields carries `dropped` (how many it missed). Breaking out of the loop
 *   releases the iterator.
 */
export interface ProgressStream extends AsyncIterable<ProgressUpdate> {
  /** The latest update reported (on this node, for this handle), or `undefined` before the first. */
  readonly latest: ProgressUpdate | undefined;
  /** Whether the task has reached its terminal state: no update follows. */
  readonly ended: boolean;
  /** An iterator with its own buffer size. Throws ValidationError for a `buffer` out of range. */
  iterate(options?: ProgressIterateOptions): ProgressIterator;
  /** An iterator with the default buffer (64). */
  [Symbol.asyncIterator](): ProgressIterator;
  /**
   * Calls `listener` synchronously with every later update until the task ends or the returned function is called
   * (it unsubscribes). What the listener throws is ignored: it never reaches the agent that reported. For code that
   * forwards updates at once (a bridge, a server-sent-events response); a loop over the stream is simpler otherwise.
   */
  listen(listener: (update: ProgressUpdate) => void): () => void;
}

/** The default bound of an iterator's buffer. */
export const DEFAULT_PROGRESS_BUFFER = 64;
const MAX_PROGRESS_BUFFER = 100_000;

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * The progress of one task: `push` an update (the engine, or a bridge for a task run elsewhere), `end` it when the
 * task ends; readers iterate it (see {@link ProgressStream}). Reusable wherever updates come from.
 */
export class ProgressFeed implements ProgressStream {
  #latest: ProgressUpdate | undefined;
  #ended: boolean;
  /** Live iterators; made with the first. */
  #readers: Set<Reader> | undefined;
  /** Synchronous listeners; made with the first. */
  #listeners: Set<(update: ProgressUpdate) => void> | undefined;

  /** A feed; `ended` makes one that is over already (for a task that ended before anyone asked). */
  constructor(ended = false) {
    this.#ended = ended;
  }

  /** The latest update pushed, or `undefined`. */
  get latest(): ProgressUpdate | undefined {
    return this.#latest;
  }

  /** Whether `end()` was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Passes an update to every reader and listener; returns false (and does nothing) once the feed ended. */
  push(update: ProgressUpdate): boolean {
    if (this.#ended) return false;
    this.#latest = update;
    if (this.#readers) for (const reader of this.#readers) reader.offer(update);
    if (this.#listeners) {
      for (const listener of this.#listeners) {
        try {
          listener(update);
        } catch {
          // a listener's failure is its own: the agent that reported goes on
        }
      }
    }
    return true;
  }

  /** Ends the feed: iterators yield what they hold, then finish; listeners are dropped. Idempotent. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#listeners = undefined;
    if (this.#readers) for (const reader of this.#readers) reader.close();
    this.#readers = undefined;
  }

  /**
   * Relays `source` into this feed: its latest update now, then each later one, until either ends (ending `source`
   * does not end this feed: its owner does).
   */
  follow(source: ProgressStream): void {
    if (this.#ended) return;
    if (source.latest) this.push(source.latest);
    source.listen((update) => this.push(update));
  }

  /** See {@link ProgressStream.listen}. */
  listen(listener: (update: ProgressUpdate) => void): () => void {
    if (typeof listener !== 'function')
      throw new ValidationError('listener', 'Expected progress.listen(listener) to get a function');
    if (this.#ended) return noop;
    (this.#listeners ??= new Set()).add(listener);
    return () => void this.#listeners?.delete(listener);
  }

  /** See {@link ProgressStream.iterate}. */
  iterate(options?: ProgressIterateOptions): ProgressIterator {
    const buffer = bufferOf(options);
    const reader = new Reader(buffer, (r) => this.#readers?.delete(r));
    if (this.#latest) reader.offer(this.#latest);
    if (this.#ended) reader.close();
    else (this.#readers ??= new Set()).add(reader);
    return reader;
  }

  /** An iterator with the default buffer. */
  [Symbol.asyncIterator](): ProgressIterator {
    return this.iterate();
  }

  /** A feed that is over and never had an update: the progress of a task answered without running here. */
  static readonly none: ProgressStream = new ProgressFeed(true);
}

const noop = (): void => {};

function bufferOf(options: ProgressIterateOptions | undefined): number {
  const buffer = options?.buffer;
  if (buffer === undefined) return DEFAULT_PROGRESS_BUFFER;
  if (typeof buffer !== 'number' || !Number.isInteger(buffer) || buffer < 1 || buffer > MAX_PROGRESS_BUFFER) {
    throw new ValidationError(
      'options.buffer',
      `Expected progress.iterate({ buffer }) to get an integer from 1 to ${MAX_PROGRESS_BUFFER}, got ${String(buffer)}`,
    );
  }
  return buffer;
}

/** One iterator: a ring buffer of at most `capacity` updates, and at most one `next()` waiting for the next. */
class Reader implements ProgressIterator {
  readonly #capacity: number;
  readonly #detach: (reader: Reader) => void;
  #ring: (ProgressUpdate | undefined)[] = [];
  #head = 0;
  #size = 0;
  #closed = false;
  /** Dropped since the last update yielded (reported on the next one). */
  #gap = 0;
  #dropped = 0;
  /** `next()` calls waiting for an update, oldest first (a `for await` has one at most). */
  readonly #waiting: ((result: IteratorResult<ProgressUpdate, undefined>) => void)[] = [];

  constructor(capacity: number, detach: (reader: Reader) => void) {
    this.#capacity = capacity;
    this.#detach = detach;
  }

  get dropped(): number {
    return this.#dropped;
  }

  /** A new update: straight to a waiting `next()`, else into the ring (dropping the oldest when full). */
  offer(update: ProgressUpdate): void {
    if (this.#closed) return;
    const waiting = this.#waiting.shift();
    if (waiting) {
      waiting({ done: false, value: this.#stamp(update) });
      return;
    }
    if (this.#size === this.#capacity) {
      this.#ring[this.#head] = undefined;
      this.#head = (this.#head + 1) % this.#capacity;
      this.#size--;
      this.#gap++;
      this.#dropped++;
    }
    this.#ring[(this.#head + this.#size) % this.#capacity] = update;
    this.#size++;
  }

  /** No update follows: what the ring holds is still yielded, then `done`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const waiting of this.#waiting.splice(0)) waiting(DONE);
  }

  next(): Promise<IteratorResult<ProgressUpdate, undefined>> {
    if (this.#size > 0) {
      const update = this.#ring[this.#head]!;
      this.#ring[this.#head] = undefined;
      this.#head = (this.#head + 1) % this.#capacity;
      this.#size--;
      return Promise.resolve({ done: false, value: this.#stamp(update) });
    }
    if (this.#closed) return Promise.resolve(DONE);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** The reader stopped (a `break`): it leaves the feed and holds nothing more. */
  return(): Promise<IteratorResult<ProgressUpdate, undefined>> {
    this.#ring = [];
    this.#size = 0;
    this.close();
    this.#detach(this);
    return Promise.resolve(DONE);
  }

  [Symbol.asyncIterator](): ProgressIterator {
    return this;
  }

  /** The update as yielded: a copy with `dropped` when updates were dropped since the last one. */
  #stamp(update: ProgressUpdate): ProgressUpdate {
    if (this.#gap === 0) return update;
    const dropped = this.#gap;
    this.#gap = 0;
    return { ...update, dropped };
  }
}
