/**
 * The one Node timer of a deadline scheduler, armed for its earliest entry. A Node timer holds at most 2^31-1 ms
 * (about 24.8 days), beyond which it fires at once: a later due time is armed for the cap and re-armed from there.
 * Held (ref'd) only while the scheduler has entries, so finished work never keeps the process alive.
 */
import { MAX_TIMER_MS, type Clock } from '../util/timers.js';

export class DueTimer {
  readonly #clock: Clock;
  readonly #onFire: (now: number) => void;
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Infinity;

  /** `onFire(now)`: everything due by `now` is due; `now` trusts the timer even if an injected clock lags. */
  constructor(clock: Clock, onFire: (now: number) => void) {
    this.#clock = clock;
    this.#onFire = onFire;
  }

  /** Whether an entry due at `dueAt` needs the timer armed earlier than it is. */
  earlier(dueAt: number): boolean {
    return dueAt < this.#armedFor;
  }

  /** Arms for `dueAt` (capped); `held` says whether the scheduler has entries (else the timer is unref'd). */
  arm(dueAt: number, now: number, held: boolean): void {
    clearTimeout(this.#timer);
    const delay = Math.max(0, Math.ceil(dueAt - now));
    const capped = Math.min(delay, MAX_TIMER_MS);
    this.#armedFor = capped < delay ? now + capped : dueAt;
    this.#timer = setTimeout(() => this.#fire(), capped);
    if (!held) this.#timer.unref();
  }

  /** The scheduler got its first entry (`true`) or lost its last (`false`). */
  hold(held: boolean): void {
    if (held) this.#timer?.ref();
    else this.#timer?.unref();
  }

  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
  }

  #fire(): void {
    this.#timer = undefined;
    const now = Math.max(this.#clock.now(), this.#armedFor);
    this.#armedFor = Infinity;
    this.#onFire(now);
  }
}
