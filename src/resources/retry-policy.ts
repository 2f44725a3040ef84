/**
 * The one retry policy of the library: exponential backoff with full jitter, a ceiling, a cap on attempts and a
 * predicate for which errors are worth retrying. Task retries (engine), agent creation (pools) and reconnects
 * (bridge) all go through it, so there is one definition of when and how long to wait.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { ResolvedRetryOptions } from './options.js';
import { retryAfterMs } from './retry-after.js';

/** Options of one {@link RetryPolicy.run}. */
export interface RetryRunOptions {
  /** Attempts in all, the first included. */
  readonly attempts: number;
  /** Aborting it stops retrying (and the wait between attempts) with the signal's reason. */
  readonly signal: AbortSignal;
  /** Called after each failed attempt, before the wait; `willRetry` is false when this failure is final. */
  readonly onFailure?: (error: unknown, attempt: number, willRetry: boolean) => void;
  /** A further filter on top of the policy's own `retryable` predicate, for errors only this caller knows. */
  readonly retryable?: (error: unknown) => boolean;
}

/**
 * The retry policy built from the `retry` option: backoff with full jitter, retry-after hints, and which errors are
 * retried. Task retries, agent creation and bridge reconnects all use one; a RedisBridge may be given its own.
 */
export class RetryPolicy {
  /** The resolved `retry` option it applies. */
  readonly options: ResolvedRetryOptions;
  readonly #random: () => number;

  constructor(options: ResolvedRetryOptions, random: () => number) {
    this.options = options;
    this.#random = random;
  }

  /**
   * How long to wait after failed attempt number `attempt` (1-based): the error's own retry-after hint when it
   * carries one (a rate-limited vendor knows best), else uniform in [0, min(maxDelayMs, baseDelayMs * 2^(attempt-1))].
   * Full jitter spreads the retries of many failures over the whole window instead of bunching them at its edges.
   */
  delay(attempt: number, error?: unknown): number {
    const hinted = error === undefined ? undefined : this.retryAfter(error);
    if (hinted !== undefined) return hinted;
    const ceiling = Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** Math.max(0, attempt - 1));
    return Math.floor(unitRandom(this.#random) * ceiling);
  }

  /** The error's retry-after hint in ms, cut to `maxRetryAfterMs`; `undefined` when it carries none. */
  retryAfter(error: unknown): number | undefined {
    const ms = retryAfterMs(error);
    return ms === undefined ? undefined : Math.min(ms, this.options.maxRetryAfterMs);
  }

  /** Whether `error` is worth another attempt, by the configured predicate. A predicate that throws means "no". */
  retryable(error: unknown): boolean {
    try {
      return this.options.retryable(error) !== false;
    } catch {
      return false;
    }
  }

  /**
   * Runs `fn` until it resolves, the error is not retryable, `attempts` are spent or `signal` aborts; waits
   * {@link delay} between attempts. Rejects with the last error (or the signal's reason).
   */
  async run<T>(fn: (attempt: number) => Promise<T>, options: RetryRunOptions): Promise<T> {
    const { attempts, signal, onFailure, retryable } = options;
    for (let attempt = 1; ; attempt++) {
      signal.throwIfAborted();
      try {
        return await fn(attempt);
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        const willRetry = attempt < attempts && this.retryable(error) && (retryable?.(error) ?? true);
        onFailure?.(error, attempt, willRetry);
        if (!willRetry) throw error;
        await sleep(this.delay(attempt, error), signal);
      }
    }
  }
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
