/**
 * Load generation shared by the suites and the memory child: a windowed task driver and a seeded random source.
 * No imports, so the memory child can load it before it takes its bare-process baseline.
 */

/** What a windowed run did. */
export interface WindowedRun {
  readonly elapsedMs: number;
  readonly fulfilled: number;
  readonly rejected: number;
}

/**
 * Starts `total` operations, keeping at most `window` in flight: each one that settles starts the next. A million
 * tasks never means a million promises alive at once. `start` may throw synchronously (a refused submit); that
 * counts as a rejection.
 */
export function runWindowed(
  total: number,
  window: number,
  start: (i: number) => Promise<unknown>,
): Promise<WindowedRun> {
  return new Promise((resolve) => {
    let started = 0;
    let fulfilled = 0;
    let rejected = 0;
    const t0 = performance.now();
    const settle = (): void => {
      if (started < total) launch();
      else if (fulfilled + rejected === total) resolve({ elapsedMs: performance.now() - t0, fulfilled, rejected });
    };
    const onFulfilled = (): void => {
      fulfilled++;
      settle();
    };
    const onRejected = (): void => {
      rejected++;
      settle();
    };
    const launch = (): void => {
      const i = started++;
      let pending: Promise<unknown>;
      try {
        pending = start(i);
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then(onFulfilled, onRejected);
    };
    if (total === 0) resolve({ elapsedMs: 0, fulfilled: 0, rejected: 0 });
    for (let i = 0; i < Math.min(window, total); i++) launch();
  });
}

/** mulberry32: a small, fast, seeded PRNG in [0, 1), so every run draws the same priorities and failures. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A uniform integer in [min, max]. */
export function randomInt(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** Resolves on the next turn of the event loop (after pending I/O and immediates), not merely the next microtask. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export const noop = async (): Promise<void> => {};
