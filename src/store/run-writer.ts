/**
 * Grouped commits: every run inserted, and every event appended, in one event-loop turn goes to the store in one
 * statement (one transaction), so durability costs a round trip per batch, not per task. Inserts and events are two
 * lanes, each with one statement in flight: events stay in order, and a run's events come after its insert.
 *
 * A failed insert fails its submits (StoreUnavailableError: nothing was stored, nothing accepted). Failed events are
 * kept and written again with backoff once the store answers: running tasks go on, and their outcomes reach the store
 * when it is back. While it is down, at most `maxBufferedEvents` progress events are kept (the oldest beyond are
 * dropped, counted); terminal events are always kept, and there is at most one per live task.
 */
import { StoreUnavailableError, isInstance, messageOf } from '../errors.js';
import { backoffTimer } from '../util/backoff-timer.js';
import { terminalStatusOf } from './store-support.js';
import type { InsertOutcome, NewRun, RunEventInput, RunEventKind, RunStore } from './store.js';

/** Counts and timings of the writes, for stats and metrics. */
export interface RunWriterStats {
  /** Batches written (insert and append statements that succeeded). */
  readonly batches: number;
  /** Runs inserted. */
  readonly inserted: number;
  /** Events appended. */
  readonly appended: number;
  /** Write statements that failed. */
  readonly failures: number;
  /** Progress events dropped because the store was down longer than the buffer holds. */
  readonly eventsDropped: number;
  /** Events waiting to be written now. */
  readonly buffered: number;
}

/** Told of each write: its kind, its size and how long it took; and of each failure. */
export interface RunWriterObserver {
  written(kind: 'insert' | 'append', size: number, ms: number): void;
  failed(kind: 'insert' | 'append', error: unknown): void;
}

interface PendingInsert {
  readonly run: NewRun;
  readonly resolve: (outcome: InsertOutcome) => void;
  readonly reject: (error: unknown) => void;
}

/** Whether an event ends its run. */
function endsRun(kind: RunEventKind): boolean {
  return terminalStatusOf(kind) !== undefined;
}

/** The longest wait between two attempts to write buffered events, in ms. */
const MAX_RETRY_MS = 2_000;
/** At most this many events in one append. */
const MAX_EVENTS_PER_APPEND = 2_000;

/** The store's error as a submit sees it: StoreUnavailableError, whatever the driver threw. */
export function unavailable(operation: string, error: unknown): StoreUnavailableError {
  if (isInstance(error, StoreUnavailableError)) return error;
  return new StoreUnavailableError(operation, messageOf(error) ?? 'unknown error', error);
}

export class RunWriter {
  readonly #store: RunStore;
  readonly #nodeId: string;
  readonly #maxBatch: number;
  readonly #maxBuffered: number;
  #observer: RunWriterObserver | undefined;
  #inserts: PendingInsert[] = [];
  #events: RunEventInput[] = [];
  /** Non-terminal events among `#events`. */
  #progress = 0;
  #insertScheduled = false;
  #appendScheduled = false;
  #insertLane: Promise<void> | undefined;
  #appendLane: Promise<void> | undefined;
  /** Events at the head of `#events` that an append in flight is writing. */
  #inFlight = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryMs = 0;
  #closed = false;
  #drained: (() => void)[] = [];
  #batches = 0;
  #inserted = 0;
  #appended = 0;
  #failures = 0;
  #dropped = 0;

  constructor(store: RunStore, nodeId: string, maxBatch: number, maxBufferedEvents: number) {
    this.#store = store;
    this.#nodeId = nodeId;
    this.#maxBatch = maxBatch;
    this.#maxBuffered = maxBufferedEvents;
  }

  observe(observer: RunWriterObserver): void {
    this.#observer = observer;
  }

  /** Whether the last write failed (the store is taken for down until one succeeds). */
  get failing(): boolean {
    return this.#retryMs > 0;
  }

  /** Stores `run` with the others of this turn; resolves once committed, rejects with StoreUnavailableError. */
  insert(run: NewRun): Promise<InsertOutcome> {
    if (this.#closed) return Promise.reject(unavailable('insert', 'the orchestrator is stopping'));
    return new Promise<InsertOutcome>((resolve, reject) => {
      this.#inserts.push({ run, resolve, reject });
      this.#schedule();
    });
  }

  /** Queues an event; it is written with the others of this turn, and again later if the store is down. */
  append(event: RunEventInput): void {
    if (this.#closed) return; // stopped: what is left is given back by the store's `leave`
    this.#events.push(event);
    if (!endsRun(event.kind)) {
      this.#progress++;
      if (this.#progress > this.#maxBuffered) this.#dropOldestProgress();
    }
    this.#schedule();
  }

  /** Resolves once everything queued so far is written, or after `timeoutMs` (false then). */
  async flush(timeoutMs: number): Promise<boolean> {
    if (this.#idle()) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      new Promise<boolean>((resolve) => this.#drained.push(() => resolve(true))),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return done;
  }

  /** Stops writing: pending inserts fail; buffered events are dropped (the caller flushed first). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const inserts = this.#inserts;
    this.#inserts = [];
    for (const p of inserts) p.reject(unavailable('insert', 'the orchestrator stopped'));
    this.#events = [];
    this.#progress = 0;
    this.#wakeDrained();
  }

  stats(): RunWriterStats {
    return {
      batches: this.#batches,
      inserted: this.#inserted,
      appended: this.#appended,
      failures: this.#failures,
      eventsDropped: this.#dropped,
      buffered: this.#events.length,
    };
  }

  #idle(): boolean {
    return (
      this.#inserts.length === 0 &&
      this.#events.length === 0 &&
      this.#insertLane === undefined &&
      this.#appendLane === undefined
    );
  }

  /**
   * Inserts and appends go in two lanes, each serial (one statement in flight): a run's events exist only once its
   * insert resolved, so they cannot overtake it, and a batch of events in flight does not hold up the next submits.
   */
  #schedule(): void {
    if (this.#closed) return;
    if (!this.#insertScheduled && !this.#insertLane && this.#inserts.length > 0) {
      this.#insertScheduled = true;
      setImmediate(() => {
        this.#insertScheduled = false;
        this.#insertLane = this.#writeInserts().finally(() => {
          this.#insertLane = undefined;
          this.#afterLane();
        });
      });
    }
    if (!this.#appendScheduled && !this.#appendLane && this.#events.length > 0 && !this.#retryTimer) {
      this.#appendScheduled = true;
      setImmediate(() => {
        this.#appendScheduled = false;
        this.#appendLane = this.#writeEvents().finally(() => {
          this.#appendLane = undefined;
          this.#afterLane();
        });
      });
    }
  }

  #afterLane(): void {
    if (this.#closed) return;
    this.#schedule();
    if (this.#idle()) this.#wakeDrained();
  }

  async #writeInserts(): Promise<void> {
    while (!this.#closed && this.#inserts.length > 0) {
      const batch = this.#inserts.splice(0, this.#maxBatch);
      const started = performance.now();
      let outcomes: InsertOutcome[];
      try {
        outcomes = await this.#store.insert(
          this.#nodeId,
          batch.map((p) => p.run),
        );
      } catch (error) {
        this.#failures++;
        this.#observer?.failed('insert', error);
        const refused = unavailable('insert', error);
        for (const p of batch) p.reject(refused);
        continue;
      }
      this.#batches++;
      this.#inserted += batch.length;
      this.#observer?.written('insert', batch.length, performance.now() - started);
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(outcomes[i] ?? { kind: 'inserted' });
      // The store answers: buffered events may go now rather than at the end of their backoff.
      if (this.#retryTimer) {
        clearTimeout(this.#retryTimer);
        this.#retryTimer = undefined;
        this.#schedule();
      }
    }
  }

  async #writeEvents(): Promise<void> {
    while (!this.#closed && this.#events.length > 0 && !this.#retryTimer) {
      const batch = this.#events.slice(0, MAX_EVENTS_PER_APPEND);
      const started = performance.now();
      this.#inFlight = batch.length;
      try {
        await this.#store.append(batch);
      } catch (error) {
        this.#inFlight = 0;
        this.#failures++;
        this.#observer?.failed('append', error);
        ({ ms: this.#retryMs, timer: this.#retryTimer } = backoffTimer(this.#retryMs, MAX_RETRY_MS, () => {
          this.#retryTimer = undefined;
          this.#schedule();
        }));
        return;
      }
      this.#inFlight = 0;
      this.#retryMs = 0;
      // Events appended while this batch was in flight are behind it in the array: remove only what was written.
      this.#events.splice(0, batch.length);
      for (const e of batch) if (!endsRun(e.kind)) this.#progress--;
      this.#batches++;
      this.#appended += batch.length;
      this.#observer?.written('append', batch.length, performance.now() - started);
    }
  }

  /** The buffer is full of progress while the store is down: the oldest progress event that is not being written goes. */
  #dropOldestProgress(): void {
    // A batch in flight holds the head of the array: never drop from it (it is removed by count once written).
    for (let i = this.#inFlight; i < this.#events.length; i++) {
      if (!endsRun(this.#events[i]!.kind)) {
        this.#events.splice(i, 1);
        this.#progress--;
        this.#dropped++;
        return;
      }
    }
  }

  #wakeDrained(): void {
    const waiting = this.#drained;
    this.#drained = [];
    for (const wake of waiting) wake();
  }
}
