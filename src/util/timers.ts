/** Time: the clock every part reads, and the longest delay a Node timer can hold. */

/** The longest delay a Node timer can hold (about 24.8 days); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A monotonic clock in milliseconds. Tests swap it; the default is `performance.now()`. */
export interface Clock {
  /** The current time in ms. Only differences between readings matter; it must never go backwards. */
  now(): number;
}

/** The default clock: `performance.now()`. */
export const PERFORMANCE_CLOCK: Clock = Object.freeze({ now: () => performance.now() });
