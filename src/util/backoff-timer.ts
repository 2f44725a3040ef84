/** The retry timer of the store writers: a doubling wait from 50 ms up to a ceiling, on an unref'd timer. */

/** The next wait after `previousMs` (0: the first), doubled from 50 ms up to `maxMs`; and a timer calling `fn` then. */
export function backoffTimer(previousMs: number, maxMs: number, fn: () => void): { ms: number; timer: NodeJS.Timeout } {
  const ms = Math.min(maxMs, previousMs === 0 ? 50 : previousMs * 2);
  const timer = setTimeout(fn, ms);
  timer.unref();
  return { ms, timer };
}
