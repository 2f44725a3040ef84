/**
 * Deadlines of any duration in a binary min-heap, with one Node timer for the earliest. For task deadlines
 * (`deadlineMs`), which request handlers set to "time left" and so are nearly all different: the duration lists of
 * {@link Deadlines} (O(1), made for a few fixed attempt timeouts) would become one list per task. Add and remove are
 * O(log n). Like those lists, the timer is unref'd while no entry is scheduled, so finished work never keeps the
 * process alive.
 */
import { MAX_TIMER_MS, type Clock } from '../config.js';

/** What the heap needs on an entry. */
export interface HeapEntry {
  dueAt: number;
  /** Its index in the heap while scheduled, -1 otherwise. */
  heapIndex: number;
}

export class DeadlineHeap<E extends HeapEntry> {
  readonly #heap: E[] = [];
  readonly #clock: Clock;
  readonly #onExpire: (entry: E) => void;
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Infinity;

  constructor(clock: Clock, onExpire: (entry: E) => void) {
    this.#clock = clock;
    this.#onExpire = onExpire;
  }

  get size(): number {
    return this.#heap.length;
  }

  /** Schedules `entry` to expire `ms` from `now`. */
  add(entry: E, ms: number, now: number): void {
    entry.dueAt = now + ms;
    entry.heapIndex = this.#heap.length;
    this.#heap.push(entry);
    this.#up(entry.heapIndex);
    if (this.#heap.length === 1) this.#timer?.ref();
    if (entry.dueAt < this.#armedFor) this.#arm(entry.dueAt, now);
  }

  /** Unschedules `entry`; a no-op when it is not scheduled. */
  remove(entry: E): void {
    const i = entry.heapIndex;
    if (i < 0 || this.#heap[i] !== entry) return;
    entry.heapIndex = -1;
    const last = this.#heap.pop()!;
    if (i < this.#heap.length) {
      this.#heap[i] = last;
      last.heapIndex = i;
      this.#down(i);
      this.#up(last.heapIndex);
    }
    // The timer may be armed for an earlier entry than is left: it fires, finds nothing due, and re-arms.
    if (this.#heap.length === 0) this.#timer?.unref();
  }

  /** Drops the timer and every entry (stop: every entry was settled by then). */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
    for (const e of this.#heap) e.heapIndex = -1;
    this.#heap.length = 0;
  }

  #arm(dueAt: number, now: number): void {
    clearTimeout(this.#timer);
    const delay = Math.max(0, Math.ceil(dueAt - now));
    // A Node timer holds at most 2^31-1 ms; beyond that arm for the cap and re-arm from there.
    const capped = Math.min(delay, MAX_TIMER_MS);
    this.#armedFor = capped < delay ? now + capped : dueAt;
    this.#timer = setTimeout(() => this.#fire(), capped);
    if (this.#heap.length === 0) this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    // Trust the timer: whatever was due by the time it was armed for is due now, even if an injected clock lags.
    const now = Math.max(this.#clock.now(), this.#armedFor);
    this.#armedFor = Infinity;
    while (this.#heap.length > 0 && this.#heap[0]!.dueAt <= now) {
      const entry = this.#heap[0]!;
      this.remove(entry);
      this.#onExpire(entry);
    }
    const next = this.#heap[0];
    if (next && next.dueAt < this.#armedFor) this.#arm(next.dueAt, this.#clock.now());
  }

  #up(i: number): void {
    const heap = this.#heap;
    const entry = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.dueAt <= entry.dueAt) break;
      heap[i] = heap[parent]!;
      heap[i]!.heapIndex = i;
      i = parent;
    }
    heap[i] = entry;
    entry.heapIndex = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const entry = heap[i]!;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && heap[right]!.dueAt < heap[left]!.dueAt ? right : left;
      if (heap[child]!.dueAt >= entry.dueAt) break;
      heap[i] = heap[child]!;
      heap[i]!.heapIndex = i;
      i = child;
    }
    heap[i] = entry;
    entry.heapIndex = i;
  }
}
