/**
 * Attempt timeouts without a Node timer per attempt. Entries with the same duration form one list, which is
 * in deadline order because entries join it in time order; one timer is armed for the earliest head. Add and
 * remove are O(1) pointer updates, and nothing is allocated per attempt. When no entry is left the timer is
 * unref'd rather than cleared (re-arming per task costs more than the whole task), so finished work never keeps
 * the process alive; it is ref'd again by the next entry.
 */
import type { Clock } from '../util/timers.js';
import { DueTimer } from './due-timer.js';

/** What the scheduler needs on an entry; the engine's Attempt carries these fields itself. */
export interface DeadlineEntry {
  dueAt: number;
  deadlinePrev: DeadlineEntry | undefined;
  deadlineNext: DeadlineEntry | undefined;
  deadlineList: unknown;
}

/** Lists kept before the empty ones are swept. */
const MAX_LISTS = 256;

class DeadlineList {
  head: DeadlineEntry | undefined;
  tail: DeadlineEntry | undefined;
}

export class Deadlines<E extends DeadlineEntry> {
  readonly #lists = new Map<number, DeadlineList>();
  readonly #clock: Clock;
  readonly #onExpire: (entry: E) => void;
  #count = 0;
  readonly #timer: DueTimer;

  constructor(clock: Clock, onExpire: (entry: E) => void) {
    this.#clock = clock;
    this.#onExpire = onExpire;
    this.#timer = new DueTimer(clock, (now) => this.#fire(now));
  }

  get size(): number {
    return this.#count;
  }

  /** Schedules `entry` to expire `ms` from `now`. */
  add(entry: E, ms: number, now: number): void {
    let list = this.#lists.get(ms);
    if (!list) {
      // Many distinct durations (per-request timeouts): drop the empty lists before adding one more.
      if (this.#lists.size >= MAX_LISTS) for (const [k, l] of this.#lists) if (!l.head) this.#lists.delete(k);
      this.#lists.set(ms, (list = new DeadlineList()));
    }
    entry.dueAt = now + ms;
    entry.deadlineList = list;
    entry.deadlineNext = undefined;
    entry.deadlinePrev = list.tail;
    if (list.tail) list.tail.deadlineNext = entry;
    else list.head = entry;
    list.tail = entry;
    if (this.#count++ === 0) this.#timer.hold(true);
    if (this.#timer.earlier(entry.dueAt)) this.#timer.arm(entry.dueAt, now, true);
  }

  /** Unschedules `entry` (its work finished first). O(1); a no-op when it is not scheduled. */
  remove(entry: E): void {
    const list = entry.deadlineList as DeadlineList | undefined;
    if (!list) return;
    if (entry.deadlinePrev) entry.deadlinePrev.deadlineNext = entry.deadlineNext;
    else list.head = entry.deadlineNext;
    if (entry.deadlineNext) entry.deadlineNext.deadlinePrev = entry.deadlinePrev;
    else list.tail = entry.deadlinePrev;
    entry.deadlinePrev = entry.deadlineNext = undefined;
    entry.deadlineList = undefined;
    if (--this.#count === 0) this.#timer.hold(false);
  }

  /** Drops the timer (stop: every entry was settled by then). */
  clear(): void {
    this.#timer.clear();
    if (this.#count === 0) this.#lists.clear();
  }

  #fire(now: number): void {
    let next = Infinity;
    for (const list of this.#lists.values()) {
      while (list.head && list.head.dueAt <= now) {
        const entry = list.head as E;
        this.remove(entry);
        this.#onExpire(entry);
      }
      if (list.head && list.head.dueAt < next) next = list.head.dueAt;
    }
    if (next !== Infinity && this.#count > 0 && this.#timer.earlier(next))
      this.#timer.arm(next, this.#clock.now(), true);
  }
}
