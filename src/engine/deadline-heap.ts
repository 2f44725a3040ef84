/**
 * Deadlines of any duration in a binary min-heap, with one Node timer for the earliest. For task deadlines
 * (`deadlineMs`), which request handlers set to "time left" and so are nearly all different: the duration lists of
 * {@link Deadlines} (O(1), made for a few fixed attempt timeouts) would become one list per task. Add and remove are
 * O(log n). Like those lists, the timer is unref'd while no entry is scheduled, so finished work never keeps the
 * process alive.
 */
import type { Clock } from '../util/timers.js';
import { DueTimer } from './due-timer.js';

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
  readonly #timer: DueTimer;

  constructor(clock: Clock, onExpire: (entry: E) => void) {
    this.#clock = clock;
    this.#onExpire = onExpire;
    this.#timer = new DueTimer(clock, (now) => this.#fire(now));
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
    if (this.#heap.length === 1) this.#timer.hold(true);
    if (this.#timer.earlier(entry.dueAt)) this.#timer.arm(entry.dueAt, now, true);
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
    if (this.#heap.length === 0) this.#timer.hold(false);
  }

  /** Drops the timer and every entry (stop: every entry was settled by then). */
  clear(): void {
    this.#timer.clear();
    for (const e of this.#heap) e.heapIndex = -1;
    this.#heap.length = 0;
  }

  #fire(now: number): void {
    while (this.#heap.length > 0 && this.#heap[0]!.dueAt <= now) {
      const entry = this.#heap[0]!;
      this.remove(entry);
      this.#onExpire(entry);
    }
    const next = this.#heap[0];
    if (next && this.#timer.earlier(next.dueAt)) this.#timer.arm(next.dueAt, this.#clock.now(), true);
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
