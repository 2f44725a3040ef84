/**
 * A guarded call to one of the host's own dependencies (an LLM API, a search service): it waits for its rate limit,
 * fails fast while its breaker is open (or answers from the fallback), and on a retry-after error pauses the
 * dependency for that long and tries again.
 */
import CircuitBreaker from 'opossum';
import type { BreakerOptions, RateLimitOptions, ResolvedBreakerOptions } from './options.js';
import type { Clock } from '../util/timers.js';
import { BreakerOpenError, OrchestratorStoppedError, ValidationError } from '../errors.js';
import { opossumOptions, stateOf, type BreakerState } from './circuit-breakers.js';
import type { EventEmitter } from 'node:events';
import type { RateLimiter } from './rate-limiter.js';

/** Options of `resources.breaker(name, fn, options)`. */
export interface DependencyBreakerOptions<TArgs extends unknown[], TResult> extends BreakerOptions {
  /**
   * Answers instead of the dependency when a call fails or the breaker is open; gets the call's arguments and then
   * the error (BreakerOpenError while open). Without one, those calls reject.
   */
  fallback?: (...args: [...TArgs, unknown]) => TResult | Promise<TResult>;
  /** A call that has not settled by then fails (and counts against the breaker). @default none */
  timeoutMs?: number;
  /** A rate limit for this dependency; `options.rateLimits[name]` when omitted. @default unlimited */
  rateLimit?: RateLimitOptions;
  /** Units one call spends against the limit's `units`, from its arguments (tokens of a prompt, say). @default 0 */
  units?: (...args: TArgs) => number;
}

/** The guarded function `resources.breaker()` returns: call it like `fn`. */
export interface GuardedFunction<TArgs extends unknown[], TResult> {
  (...args: TArgs): Promise<TResult>;
  /** The breaker's name. */
  readonly breakerName: string;
  /** The breaker's state now. */
  readonly state: BreakerState;
}

const OPEN = 'EOPENBREAKER';
const SHUTDOWN = 'ESHUTDOWN';

function codeOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

export class DependencyBreaker<TArgs extends unknown[], TResult> {
  readonly name: string;
  readonly breaker: CircuitBreaker<TArgs, TResult>;
  readonly limiter: RateLimiter;
  readonly #clock: Clock;
  readonly #units: ((...args: TArgs) => number) | undefined;
  readonly #fallback: DependencyBreakerOptions<TArgs, TResult>['fallback'];
  readonly #retryAfter: (error: unknown) => number | undefined;

  constructor(
    name: string,
    fn: (...args: TArgs) => TResult | Promise<TResult>,
    options: ResolvedBreakerOptions & { timeoutMs: number | undefined },
    extra: Pick<DependencyBreakerOptions<TArgs, TResult>, 'fallback' | 'units'>,
    rotate: EventEmitter,
    limiter: RateLimiter,
    clock: Clock,
    retryAfter: (error: unknown) => number | undefined,
  ) {
    this.name = name;
    this.#retryAfter = retryAfter;
    this.limiter = limiter;
    this.#clock = clock;
    this.#units = extra.units;
    this.#fallback = extra.fallback;
    this.breaker = new CircuitBreaker<TArgs, TResult>(async (...args: TArgs) => fn(...args), {
      ...opossumOptions(options, rotate, name),
      timeout: options.timeoutMs ?? false,
      // A retry-after is the vendor pacing us, not the dependency failing: it pauses the limiter instead of counting.
      errorFilter: (error: unknown) => retryAfter(error) !== undefined,
    });
    const fallback = extra.fallback;
    if (fallback) {
      this.breaker.fallback((...argsAndError: unknown[]) => {
        const error = argsAndError[argsAndError.length - 1];
        const args = argsAndError.slice(0, -1) as TArgs;
        return fallback(...args, codeOf(error) === OPEN ? new BreakerOpenError(name) : error);
      });
    }
  }

  get state(): BreakerState {
    return stateOf(this.breaker);
  }

  async call(args: TArgs): Promise<TResult> {
    const units = this.#units ? this.#units(...args) : 0;
    if (typeof units !== 'number' || !Number.isFinite(units) || units < 0) {
      throw new ValidationError(
        'units',
        `Expected the units() of breaker ${JSON.stringify(this.name)} to return a finite number >= 0, got ${String(units)}`,
      );
    }
    for (let deferrals = 0; ; deferrals++) {
      await this.limiter.acquire(units);
      try {
        return await this.breaker.fire(...args);
      } catch (error) {
        const code = codeOf(error);
        if (code === OPEN) throw new BreakerOpenError(this.name);
        if (code === SHUTDOWN)
          throw new OrchestratorStoppedError(
            `The breaker ${JSON.stringify(this.name)} was shut down with the orchestrator`,
          );
        const wait = this.#retryAfter(error);
        if (wait === undefined) throw error;
        if (deferrals < this.limiter.options.maxDeferrals) {
          this.limiter.pause(wait, this.#clock.now());
          continue;
        }
        if (this.#fallback) return this.#fallback(...args, error);
        throw error;
      }
    }
  }

  dispose(): void {
    this.breaker.shutdown();
  }
}
