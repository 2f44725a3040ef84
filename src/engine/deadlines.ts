/**
 * Attempt timeouts without a Node timer per attempt. Entries with the same duration form one list, which is
 * in deadline order because entries join it in time order; one timer is armed for the earliest head. Add and
 * remove are O(1) pointer updates, and nothing is allocated per attempt. When no entry is left the timer is
 * unref'd rather than cleared (re-arming per task costs more than the whole task), so finished work never keeps
 * the process alive; it is ref'd again by the next entry.
 */
import { MAX_TIMER_MS, type Clock } from '../config.js';

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
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Infinity;

  constructor(clock: Clock, onExpire: (entry: E) => void) {
    this.#clock = clock;
    this.#onExpire = onExpire;
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
    if (this.#count++ === 0) this.#timer?.ref();
    if (entry.dueAt < this.#armedFor) this.#arm(entry.dueAt, now);
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
    if (--this.#count === 0) this.#timer?.unref();
  }

  /** Drops the timer (stop: every entry was settled by then). */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
    if (this.#count === 0) this.#lists.clear();
  }

  #arm(dueAt: number, now: number): void {
    clearTimeout(this.#timer);
    const delay = Math.max(0, Math.ceil(dueAt - now));
    // A Node timer holds at most 2^31-1 ms (about 24.8 days); beyond that it fires at once. Arm for the cap and
    // re-arm from there: `#fire` treats only what was due by `#armedFor` as due.
    const capped = Math.min(delay, MAX_TIMER_MS);
    this.#armedFor = capped < delay ? now + capped : dueAt;
    this.#timer = setTimeout(() => this.#fire(), capped);
    if (this.#count === 0) this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    // Trust the timer: whatever was due by the time it was armed for is due now, even if an injected clock lags.
    const now = Math.max(this.#clock.now(), this.#armedFor);
    this.#armedFor = Infinity;
    let next = Infinity;
    for (const list of this.#lists.values()) {
      while (list.head && list.head.dueAt <= now) {
        const entry = list.head as E;
        this.remove(entry);
        this.#onExpire(entry);
      }
      if (list.head && list.head.dueAt < next) next = list.head.dueAt;
    }
    if (next !== Infinity && this.#count > 0 && next < this.#armedFor) this.#arm(next, this.#clock.now());
  }
}
