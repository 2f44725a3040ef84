/** Time: the clock every part reads, the longest delay a Node timer can hold, and a bounded wait. */

/** The longest delay a Node timer can hold (about 24.8 days); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A monotonic clock in milliseconds. Tests swap it; the default is `performance.now()`. */
export interface Clock {
  /** The current time in ms. Only differences between readings matter; it must never go backwards. */
  now(): number;
}

/** The default clock: `performance.now()`. */
export const PERFORMANCE_CLOCK: Clock = Object.freeze({ now: () => performance.now() });

/**
 * Waits for `work` to settle (either way), at most `ms`: true when it did, false when the time ran out first. The
 * timer is cleared the moment the work is over, so a bound never holds the process longer than the work.
 */
export async function settleWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = work.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false)))]);
  } finally {
    clearTimeout(timer);
  }
}
