/**
 * A rate limit for a capped vendor: a token bucket of requests and, optionally, one of units (tokens, say) per
 * interval, refilled continuously, plus a pause that a retry-after error sets. Work over the limit waits: the
 * engine keeps such tasks queued, and a dependency call awaits {@link RateLimiter.acquire}.
 */
import type { Clock } from '../util/timers.js';
import type { ResolvedRateLimitOptions } from './options.js';
import type { Disposables, TrackedTimer } from './disposables.js';
import type { LimiterLease } from './cluster-limits.js';

/** What a limiter tells its owner. */
export interface RateLimiterHooks {
  paused(limiter: RateLimiter, ms: number): void;
  resumed(limiter: RateLimiter): void;
  /** Room came back (a refill or the end of a pause) while someone was waiting for it. */
  ready(limiter: RateLimiter): void;
}

/** A point-in-time view of a limiter. */
export interface RateLimiterSnapshot {
  /** The capability or dependency name of the limit. */
  readonly name: string;
  /** Requests that may start now (rounded down; `Infinity` when unlimited). */
  readonly requestsAvailable: number;
  /** Units left in the bucket; negative while in debt from reported costs. */
  readonly unitsAvailable: number;
  /** Whether a retry-after pause holds its work now. */
  readonly paused: boolean;
  /** Dependency calls waiting for room. */
  readonly waiting: number;
}

interface Waiter {
  readonly units: number;
  readonly resolve: () => void;
  readonly reject: (reason: unknown) => void;
}

export class RateLimiter {
  readonly name: string;
  readonly options: ResolvedRateLimitOptions;
  readonly #clock: Clock;
  readonly #hooks: RateLimiterHooks;
  readonly #timer: TrackedTimer;
  #requests: number;
  #units: number;
  #updatedAt: number;
  #pausedUntil = 0;
  #paused = false;
  /** Someone is blocked on this limiter: wake them when room comes back. */
  #wanted = false;
  readonly #waiters: Waiter[] = [];
  #closed: { reason: unknown } | undefined;
  /** The cluster's share of this limit (a RedisBridge), or `undefined` when the limit is this process's own. */
  #cluster: LimiterLease | undefined;

  constructor(
    name: string,
    options: ResolvedRateLimitOptions,
    clock: Clock,
    disposables: Disposables,
    hooks: RateLimiterHooks,
  ) {
    this.name = name;
    this.options = options;
    this.#clock = clock;
    this.#hooks = hooks;
    this.#requests = options.requests;
    this.#units = options.units;
    this.#updatedAt = clock.now();
    // Unref'd while nobody waits; held (see #arm) while tasks or calls wait on it, as a retry backoff would be.
    this.#timer = disposables.timer(() => this.#wake());
  }

  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Makes the limit cluster-wide: from now on a request also needs one leased from the cluster (see
   * cluster-limits.ts), reported units go to the cluster too, and pauses are shared both ways.
   */
  attachCluster(lease: LimiterLease): void {
    this.#cluster = lease;
    lease.wake = () => this.#wake();
    lease.paused = (ms) => this.pause(ms, this.#clock.now(), false);
  }

  /** Whether one more request may start now. */
  ready(now: number): boolean {
    if (this.#paused && now < this.#pausedUntil) return false;
    this.#refill(now);
    if (!(this.#requests >= 1 && this.#units > 0)) return false;
    return this.#cluster === undefined || this.#cluster.available();
  }

  /** Takes one request and `units` units; the caller checked {@link ready}. Units may push the bucket into debt. */
  take(now: number, units = 0): void {
    this.#refill(now);
    this.#requests -= 1;
    this.#units -= units;
    if (this.#cluster) {
      this.#cluster.take();
      if (units > 0) this.#cluster.charge(units);
    }
  }

  /** Charges units spent after the fact (a task's reported cost): the bucket may go into debt, delaying what follows. */
  charge(units: number, now: number): void {
    if (this.options.units === Infinity || units <= 0) return;
    this.#refill(now);
    this.#units -= units;
    this.#cluster?.charge(units);
  }

  /**
   * Holds every request for `ms` (a retry-after); a longer pause wins over a shorter one. With `share` (unless the
   * pause came from the cluster), a cluster-wide limit pauses on every node.
   */
  pause(ms: number, now: number, share = true): void {
    if (share) this.#cluster?.pause(ms);
    const until = now + ms;
    if (this.#paused && until <= this.#pausedUntil) return;
    this.#pausedUntil = until;
    const wasPaused = this.#paused;
    this.#paused = true;
    // The far side said "too many": the requests this bucket still holds are not really there, and letting them all
    // go at the end of the pause would only earn the next 429. It refills from the pause's end, at the limit's pace.
    if (this.options.requests !== Infinity) {
      this.#refill(now);
      this.#requests = Math.min(this.#requests, 1);
      this.#updatedAt = Math.max(this.#updatedAt, until);
    }
    // Rounded up: a timer rounded down would fire before the pause ends and find the limiter still paused.
    this.#arm(Math.max(1, Math.ceil(until - now)));
    if (!wasPaused) this.#hooks.paused(this, ms);
  }

  /** Asks for a wake-up (the `ready` hook) when room comes back; the engine calls it when a queued task is held. */
  want(now: number): void {
    this.#wanted = true;
    if (this.#timer.armed) this.#timer.hold();
    else this.#arm(this.#msUntilReady(now));
  }

  /** Resolves when one request (and `units`) may start, first come first served, and takes them. */
  acquire(units = 0): Promise<void> {
    const now = this.#clock.now();
    if (this.#waiters.length === 0 && this.ready(now)) {
      this.take(now, units);
      return Promise.resolve();
    }
    if (this.#closed) return Promise.reject(this.#closed.reason);
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ units, resolve, reject });
      if (this.#timer.armed) this.#timer.hold();
      else this.#arm(this.#msUntilReady(now));
    });
  }

  /** Rejects every waiting call with `reason`, and later ones too: the orchestrator is stopping. */
  close(reason: unknown): void {
    this.#closed = { reason };
    for (const w of this.#waiters.splice(0)) w.reject(reason);
    this.#timer.dispose();
  }

  snapshot(): RateLimiterSnapshot {
    this.#refill(this.#clock.now());
    return {
      name: this.name,
      requestsAvailable: this.#paused && this.#clock.now() < this.#pausedUntil ? 0 : Math.floor(this.#requests),
      unitsAvailable: this.#units,
      paused: this.#paused,
      waiting: this.#waiters.length,
    };
  }

  #refill(now: number): void {
    const elapsed = now - this.#updatedAt;
    if (elapsed <= 0) return;
    this.#updatedAt = now;
    const { requests, units, intervalMs } = this.options;
    if (requests !== Infinity) this.#requests = Math.min(requests, this.#requests + (elapsed * requests) / intervalMs);
    if (units !== Infinity) this.#units = Math.min(units, this.#units + (elapsed * units) / intervalMs);
  }

  /** How long until one request may start (at least 1 ms, so a timer never spins). */
  #msUntilReady(now: number): number {
    if (this.#paused && now < this.#pausedUntil) return Math.max(1, Math.ceil(this.#pausedUntil - now));
    this.#refill(now);
    const { requests, units, intervalMs } = this.options;
    let ms = 0;
    if (this.#requests < 1) ms = Math.max(ms, ((1 - this.#requests) * intervalMs) / requests);
    if (this.#units <= 0) ms = Math.max(ms, ((1e-9 - this.#units) * intervalMs) / units);
    // A lease under way wakes the limiter when it answers; this is the wait when it does not, or said "not yet".
    if (this.#cluster && ms === 0) ms = this.#cluster.msUntilRetry();
    return Math.max(1, Math.ceil(ms));
  }

  #wake(): void {
    const now = this.#clock.now();
    if (this.#paused && now >= this.#pausedUntil) {
      this.#paused = false;
      this.#hooks.resumed(this);
    }
    while (this.#waiters.length > 0 && this.ready(now)) {
      const waiter = this.#waiters.shift()!;
      this.take(now, waiter.units);
      waiter.resolve();
    }
    const wanted = this.#wanted;
    this.#wanted = false;
    if (wanted && this.ready(now)) this.#hooks.ready(this);
    else if (wanted) this.#wanted = true;
    // Also while still paused with nobody waiting (a timer that fired early): the pause must end, and say so.
    if (this.#waiters.length > 0 || this.#wanted || this.#paused) this.#arm(this.#msUntilReady(now));
  }

  /** Arms the wake-up; it holds the process open only while someone waits on this limiter. */
  #arm(ms: number): void {
    this.#timer.arm(ms);
    if (this.#waiters.length > 0 || this.#wanted) this.#timer.hold();
  }
}
