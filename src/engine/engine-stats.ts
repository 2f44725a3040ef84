/**
 * The engine's task counters: what `stats()` reports as {@link EngineStats}, and the live counts behind it.
 *
 * Between two engine steps the counts add up: `submitted` = rejected + deduplicated + the five terminal outcomes +
 * waiting + running + backingOff (the property tests check it after every operation).
 */
import type { TaskOutcome } from './events.js';
import type { RoutingCache } from './routing-cache.js';

/**
 * Task counters since the orchestrator was made, and what is in flight now.
 * `submitted` = rejected + deduplicated + the five terminal outcomes + in flight.
 */
export interface EngineStats {
  /**
   * Tasks submitted here (`submit`, `delegate`, `retryDeadLetter`), refused ones included; one handed straight to
   * another node is not.
   */
  readonly submitted: number;
  /** Refused at submit (validation, queue full, no capable agent, stopped): never accepted. */
  readonly rejected: number;
  /** Answered from an idempotency key instead of running again. */
  readonly deduplicated: number;
  /** Tasks that succeeded. */
  readonly completed: number;
  /** Tasks that ended with outcome `failed` (see the `task:failed` event). */
  readonly failed: number;
  /** Tasks cancelled after they were accepted. */
  readonly cancelled: number;
  /** Tasks that ended with outcome `timed-out`: their one attempt timed out, or the task ran past its `deadlineMs`. */
  readonly timedOut: number;
  /** Tasks dead-lettered, including ones since dropped from the list or retried. */
  readonly deadLettered: number;
  /** Attempts after a task's first (re-runs after a halt or a rate limit's retry-after included). */
  readonly retries: number;
  /** Tasks waiting for an agent now (held ones included). */
  readonly waiting: number;
  /** Attempts running now (given-up attempts whose agent has not returned are not counted). */
  readonly running: number;
  /** Waiting out a backoff delay before the next attempt. */
  readonly backingOff: number;
  /** The routing cache: candidate lists per requirements and preferences, rebuilt when routing changes. */
  readonly routingCache: {
    /** Routing decisions that reused a cached candidate list. */
    readonly hits: number;
    /** Routing decisions that had to build one. */
    readonly misses: number;
    /** Candidate lists cached now. */
    readonly size: number;
  };
  /** Dead letters held now (at most `maxDeadLetters`). */
  readonly deadLetters: number;
}

/** The counts the engine keeps itself (the waiting count is the waiting room's). */
export class EngineCounters {
  submitted = 0;
  rejected = 0;
  deduplicated = 0;
  completed = 0;
  failed = 0;
  cancelled = 0;
  timedOut = 0;
  deadLettered = 0;
  retries = 0;
  /** Attempts running now. */
  running = 0;
  /** Tasks waiting out a backoff now. */
  backingOff = 0;

  /** Counts a task that reached its terminal `outcome`. */
  ended(outcome: TaskOutcome): void {
    switch (outcome) {
      case 'completed':
        this.completed++;
        break;
      case 'failed':
        this.failed++;
        break;
      case 'cancelled':
        this.cancelled++;
        break;
      case 'timed-out':
        this.timedOut++;
        break;
      case 'dead-lettered':
        this.deadLettered++;
        break;
    }
  }

  /** The counters, with the waiting count, the routing cache's and the dead letters held: what `stats()` returns. */
  snapshot(waiting: number, routingCache: RoutingCache, deadLetters: number): EngineStats {
    return {
      submitted: this.submitted,
      rejected: this.rejected,
      deduplicated: this.deduplicated,
      completed: this.completed,
      failed: this.failed,
      cancelled: this.cancelled,
      timedOut: this.timedOut,
      deadLettered: this.deadLettered,
      retries: this.retries,
      waiting,
      running: this.running,
      backingOff: this.backingOff,
      routingCache: { hits: routingCache.hits, misses: routingCache.misses, size: routingCache.size },
      deadLetters,
    };
  }
}
