/**
 * The one retry policy of the library: exponential backoff with full jitter. The engine (task retries) and
 * the pools (factory retries) both use it, so there is one definition of how long to wait.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { ResolvedRetryOptions } from '../config.js';

/**
 * Delay before attempt `attempt + 1` after `attempt` failed: uniform in [0, min(maxDelayMs, baseDelayMs * 2^(attempt-1))].
 * Full jitter spreads retries of many failures over the whole window instead of bunching them at its edges.
 */
export function backoffDelay(attempt: number, policy: ResolvedRetryOptions, random: () => number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(unitRandom(random) * ceiling);
}

/**
 * `random()` clamped to [0, 1). An injected source that throws or returns junk must not break a task's bookkeeping
 * (this runs inside completion handlers and timers): it falls back to Math.random.
 */
function unitRandom(random: () => number): number {
  let r: unknown;
  try {
    r = random();
  } catch {
    return Math.random();
  }
  return typeof r === 'number' && r >= 0 && r < 1 ? r : Math.random();
}

/**
 * Waits `ms` unless `signal` aborts first, in which case it rejects with the signal's reason.
 * The timer keeps the process alive (someone awaits it); `stop()` aborts `signal` so none outlives it.
 */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) {
    signal.throwIfAborted();
    return;
  }
  try {
    await delay(ms, undefined, { signal });
  } catch (err) {
    // node:timers/promises rejects with its own AbortError; surface the caller's reason instead.
    if (signal.aborted) throw signal.reason;
    throw err;
  }
}
