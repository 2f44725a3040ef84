/**
 * ResourceManager: circuit breakers (per agent, and named ones for the host's dependencies), the retry policy,
 * memory/CPU pressure, per-tenant budgets, rate limits, and the tracked disposables that `stop()` releases.
 * The orchestrator builds it; hosts reach it as `orchestrator.resources`.
 */
import type { EventEmitter } from 'node:events';
import { expectFunction, expectString, expectDuration, expectObject, own } from '../util/validate.js';
import {
  resolveBreakerOptions,
  resolveRateLimitOptions,
  RATE_LIMIT_DEFAULTS,
  type ResolvedBreakerOptions,
  type ResolvedBudgetOptions,
  type ResolvedPressureOptions,
  type ResolvedRateLimitOptions,
  type ResolvedRetryOptions,
} from './options.js';
import { MAX_TIMER_MS, type Clock } from '../util/timers.js';
import { OrchestratorStoppedError, ValidationError } from '../errors.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import type { ResourceEvents } from './events.js';
import { AgentBreaker, BucketClock, type BreakerState } from './circuit-breakers.js';
import { DependencyBreaker, type DependencyBreakerOptions, type GuardedFunction } from './dependency-breaker.js';
import { Disposables } from './disposables.js';
import { PressureMonitor, type PressureLevel } from './pressure.js';
import { RateLimiter, type RateLimiterHooks, type RateLimiterSnapshot } from './rate-limiter.js';
import { RetryPolicy } from './retry-policy.js';
import { TenantBudgets } from './budgets.js';
import { ClusterLimits, type ClusterLimitsBackend } from './cluster-limits.js';

/** What the resource manager reads of the orchestrator's options: the resources part's own, the clock and jitter. */
export interface ResourceSettings {
  readonly retry: ResolvedRetryOptions;
  readonly agentBreaker: ResolvedBreakerOptions | false;
  readonly pressure: ResolvedPressureOptions | false;
  readonly budgets: ResolvedBudgetOptions;
  readonly rateLimits: ReadonlyMap<string, ResolvedRateLimitOptions>;
  readonly clock: Clock;
  readonly random: () => number;
}

/** What `stats().resources` and `resources.stats()` return. */
export interface ResourceStats {
  /** Memory and CPU pressure. */
  readonly pressure: {
    /** The level now; always `normal` when sampling is off. */
    readonly level: PressureLevel;
    /** The last sample, when sampling is on and one was taken. */
    readonly rssBytes: number | undefined;
    /** V8 heap in use at the last sample, in bytes. */
    readonly heapUsedBytes: number | undefined;
    /** Process CPU at the last sample, in percent of one core; `NaN` when not known yet. */
    readonly cpuPercent: number | undefined;
  };
  /** Circuit breakers. */
  readonly breakers: {
    /** Agent breakers by state. */
    readonly agents: Readonly<Record<BreakerState, number>>;
    /** Named dependency breakers and their state. */
    readonly dependencies: Readonly<Record<string, BreakerState>>;
  };
  /** Rate limits by capability or dependency name (a dependency's breaker has one even without a limit). */
  readonly rateLimits: Readonly<Record<string, RateLimiterSnapshot>>;
  /** Timers, listeners, breakers and connections held now; all released by `stop()`. */
  readonly tracked: number;
}

const DEPENDENCY_KEYS: ReadonlySet<string> = new Set([
  'errorThresholdPercentage',
  'volumeThreshold',
  'windowMs',
  'resetTimeoutMs',
  'fallback',
  'timeoutMs',
  'rateLimit',
  'units',
]);
const BREAKER_OPTION_KEYS = ['errorThresholdPercentage', 'volumeThreshold', 'windowMs', 'resetTimeoutMs'] as const;

/** A dependency with no rate limit still gets a limiter, so a retry-after error can pause it. */
const UNLIMITED: ResolvedRateLimitOptions = Object.freeze({ ...RATE_LIMIT_DEFAULTS, intervalMs: 1_000 });

/**
 * Circuit breakers for the host's own dependencies, memory/CPU pressure, tenant budgets and rate limits. The
 * orchestrator builds it; reach it as `orchestrator.resources`.
 */
export class ResourceManager {
  /** @internal Every long-lived timer, listener, breaker and connection, released on stop. */
  readonly disposables = new Disposables();
  /** @internal */
  readonly retry: RetryPolicy;
  /** @internal */
  readonly budgets: TenantBudgets;
  /** @internal `undefined` when pressure sampling is off. */
  readonly pressureMonitor: PressureMonitor | undefined;
  readonly #options: ResourceSettings;
  readonly #events: TypedEmitter<ResourceEvents>;
  readonly #buckets: BucketClock;
  readonly #agentBreakers = new Set<AgentBreaker>();
  /** Named breakers, each kept for its state (never called through here, hence `never[]` for its arguments). */
  readonly #dependencies = new Map<string, DependencyBreaker<never[], unknown>>();
  /** Capability and dependency limiters by name. */
  readonly #limiters = new Map<string, RateLimiter>();
  readonly #limiterHooks: RateLimiterHooks;
  readonly #pressureListeners: Array<(level: PressureLevel) => void> = [];
  #readyListener: (() => void) | undefined;
  #stopped = false;
  /** The cluster's limits and budgets, while attached (a RedisBridge). */
  #cluster: ClusterLimits | undefined;

  /** @internal Built by the orchestrator. */
  constructor(options: ResourceSettings, events: TypedEmitter<ResourceEvents>) {
    this.#options = options;
    this.#events = events;
    this.retry = new RetryPolicy(options.retry, options.random);
    this.budgets = new TenantBudgets(options.budgets);
    this.#buckets = new BucketClock(this.disposables);
    this.disposables.add(() => this.#buckets.dispose());
    this.#limiterHooks = {
      paused: (limiter, ms) => this.#events.emit('ratelimit:paused', { name: limiter.name, ms }),
      resumed: (limiter) => this.#events.emit('ratelimit:resumed', { name: limiter.name }),
      ready: () => this.#readyListener?.(),
    };
    for (const [name, limit] of options.rateLimits) this.#limiters.set(name, this.#newLimiter(name, limit));
    this.pressureMonitor =
      options.pressure === false
        ? undefined
        : new PressureMonitor(
            options.pressure,
            this.disposables,
            (change) => {
              const { sample } = change;
              this.#events.emit('pressure:changed', {
                from: change.from,
                to: change.to,
                ratio: change.ratio,
                rssBytes: sample.rssBytes,
                heapUsedBytes: sample.heapUsedBytes,
                cpuPercent: sample.cpuPercent,
              });
              for (const listener of this.#pressureListeners) listener(change.to);
            },
            (error) => this.#events.emit('pressure:sample-failed', { error }),
          );
  }

  /** The pressure level now; always `normal` when sampling is off. */
  get pressure(): PressureLevel {
    return this.pressureMonitor?.level ?? 'normal';
  }

  /**
   * Guards a dependency of the host's own (an LLM API, say) with a circuit breaker and, optionally, a rate limit and
   * a fallback. Returns a function to call instead of `fn`: it waits for the rate limit, fails fast with
   * BreakerOpenError (or answers from `fallback`) while the breaker is open, and on an error carrying a retry-after
   * pauses the dependency for that long and calls again. State changes are `breaker:state` events.
   *
   * @example
   * ```ts
   * const complete = orchestrator.resources.breaker('llm', (prompt: string) => client.complete(prompt), {
   *   rateLimit: { requests: 60, intervalMs: 60_000 },
   *   fallback: (prompt, error) => cachedAnswer(prompt),
   * });
   * const text = await complete('Summarise this');
   * ```
   */
  breaker<TArgs extends unknown[], TResult>(
    name: string,
    fn: (...args: TArgs) => TResult | Promise<TResult>,
    options: DependencyBreakerOptions<TArgs, TResult> = {},
  ): GuardedFunction<TArgs, Awaited<TResult>> {
    expectString(name, 'name');
    expectFunction(fn, 'fn');
    if (this.#stopped) throw new OrchestratorStoppedError();
    if (this.#dependencies.has(name)) {
      throw new ValidationError(
        'name',
        `A breaker named ${JSON.stringify(name)} exists already; give each dependency its own name`,
      );
    }
    const o = expectObject(options, 'options');
    for (const key of Object.keys(o)) {
      if (!DEPENDENCY_KEYS.has(key))
        throw new ValidationError(
          `options.${key}`,
          `Unknown field \`options.${key}\`; expected one of: ${[...DEPENDENCY_KEYS].join(', ')}`,
        );
    }
    const thresholds: Record<string, unknown> = {};
    for (const key of BREAKER_OPTION_KEYS) if (own(o, key) !== undefined) thresholds[key] = own(o, key);
    const resolved = resolveBreakerOptions(thresholds, 'options');
    const timeoutMs =
      own(o, 'timeoutMs') === undefined
        ? undefined
        : expectDuration(own(o, 'timeoutMs'), 'options.timeoutMs', false, MAX_TIMER_MS);
    const fallback =
      own(o, 'fallback') === undefined
        ? undefined
        : expectFunction<NonNullable<typeof options.fallback>>(own(o, 'fallback'), 'options.fallback');
    const units =
      own(o, 'units') === undefined
        ? undefined
        : expectFunction<NonNullable<typeof options.units>>(own(o, 'units'), 'options.units');
    if (own(o, 'rateLimit') !== undefined && this.#options.rateLimits.has(name)) {
      throw new ValidationError(
        'options.rateLimit',
        `${JSON.stringify(name)} already has a rate limit in options.rateLimits; set it in one place`,
      );
    }
    const limiter = this.#newLimiter(
      name,
      own(o, 'rateLimit') === undefined ? UNLIMITED : resolveRateLimitOptions(own(o, 'rateLimit'), 'options.rateLimit'),
    );
    const dependency = new DependencyBreaker<TArgs, Awaited<TResult>>(
      name,
      fn as (...args: TArgs) => Awaited<TResult> | Promise<Awaited<TResult>>,
      { ...resolved, timeoutMs },
      { fallback: fallback as DependencyBreakerOptions<TArgs, Awaited<TResult>>['fallback'], units },
      this.#rotation(resolved.windowMs),
      limiter,
      this.#options.clock,
      // A retry-after on an error that is not retryable (a BudgetExceededError passed on) is not the vendor pacing us.
      (error) => (this.retry.retryable(error) ? this.retry.retryAfter(error) : undefined),
    );
    this.#watch(dependency.breaker, name);
    this.#dependencies.set(name, dependency as unknown as DependencyBreaker<never[], unknown>);
    this.disposables.add(() => {
      limiter.close(
        new OrchestratorStoppedError(
          `The orchestrator stopped while a call to ${JSON.stringify(name)} waited for its rate limit`,
        ),
      );
      dependency.dispose();
    });
    const guarded = ((...args: TArgs) => dependency.call(args)) as GuardedFunction<TArgs, Awaited<TResult>>;
    Object.defineProperty(guarded, 'breakerName', { value: name });
    Object.defineProperty(guarded, 'state', { get: () => dependency.state });
    return guarded;
  }

  /** Units `tenantId` spent in the current budget window. */
  spend(tenantId: string): number {
    return this.budgets.spent(expectString(tenantId, 'tenantId'), this.#options.clock.now());
  }

  /** Sets (or, with `undefined`, removes) a tenant's budget per window at runtime. */
  setBudget(tenantId: string, limit: number | undefined): void {
    expectString(tenantId, 'tenantId');
    if (limit !== undefined && (typeof limit !== 'number' || Number.isNaN(limit) || limit < 0)) {
      throw new ValidationError(
        'limit',
        `Expected \`limit\` to be a number >= 0 (or Infinity, or undefined to remove it), got ${String(limit)}`,
      );
    }
    this.budgets.setLimit(tenantId, limit);
  }

  /** Pressure, breakers, rate limits and tracked resources, as of now (also `orchestrator.stats().resources`). */
  stats(): ResourceStats {
    const agents: Record<BreakerState, number> = { closed: 0, open: 0, 'half-open': 0 };
    for (const b of this.#agentBreakers) agents[b.state]++;
    const dependencies: Record<string, BreakerState> = {};
    for (const [name, d] of this.#dependencies) dependencies[name] = d.state;
    const rateLimits: Record<string, RateLimiterSnapshot> = {};
    for (const [name, l] of this.#limiters) rateLimits[name] = l.snapshot();
    const sample = this.pressureMonitor?.lastSample;
    return {
      pressure: {
        level: this.pressure,
        rssBytes: sample?.rssBytes,
        heapUsedBytes: sample?.heapUsedBytes,
        cpuPercent: sample?.cpuPercent,
      },
      breakers: { agents, dependencies },
      rateLimits,
      tracked: this.disposables.size,
    };
  }

  // --- Used by the orchestrator, pools and engine -------------------------------------------------

  /** @internal Starts sampling (the first sample is taken before this resolves). */
  async start(): Promise<void> {
    await this.pressureMonitor?.start();
  }

  /** @internal Releases everything: breakers, limiters (their waiting calls reject), the sampler, timers. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.disposables.close();
    // Pools removed every agent (and its breaker) before this; any left over is released here all the same.
    for (const breaker of this.#agentBreakers) breaker.dispose();
    this.#agentBreakers.clear();
  }

  /**
   * @internal Makes rate limits and tenant budgets cluster-wide, kept by `backend` (the bridge's); called once the
   * bridge started. Every limiter made so far, and every one made later, leases from the cluster.
   */
  async attachCluster(backend: ClusterLimitsBackend): Promise<void> {
    if (this.#stopped || this.#cluster) return;
    const cluster = new ClusterLimits(backend);
    this.#cluster = cluster;
    for (const limiter of this.#limiters.values())
      limiter.attachCluster(cluster.leaseFor(limiter.name, limiter.options));
    this.budgets.attachCluster(cluster);
    await cluster.start();
  }

  /** @internal The cluster's limits, when attached: their round trips, for the bench and tests. */
  get cluster(): ClusterLimits | undefined {
    return this.#cluster;
  }

  /** @internal Sends the last charges and gives back unused leases, within `timeoutMs`; before the bridge leaves. */
  async detachCluster(timeoutMs: number): Promise<void> {
    await this.#cluster?.close(timeoutMs);
  }

  /** @internal The breaker of a new agent, or `undefined` when agent breakers are off. */
  agentBreaker(agentId: string, onChange: (from: BreakerState, to: BreakerState) => void): AgentBreaker | undefined {
    const options = this.#options.agentBreaker;
    if (options === false || this.#stopped) return undefined;
    const breaker = new AgentBreaker(
      `agent:${agentId}`,
      options,
      () => this.#rotation(options.windowMs),
      (b, from, to) => {
        this.#events.emit('breaker:state', { breaker: b.name, agentId, from, to });
        onChange(from, to);
      },
    );
    this.#agentBreakers.add(breaker);
    return breaker;
  }

  /** @internal An agent left: shut its breaker down (timer, listeners). */
  releaseAgentBreaker(breaker: AgentBreaker): void {
    if (this.#agentBreakers.delete(breaker)) breaker.dispose();
  }

  /**
   * @internal Agent breakers alive, how many of those made their opossum breaker (after a failure), and breakers
   * still listening for bucket rotation: what a leak test reads.
   */
  get breakerCounts(): { readonly agents: number; readonly materialised: number; readonly rotationListeners: number } {
    let materialised = 0;
    for (const b of this.#agentBreakers) if (b.materialised) materialised++;
    return { agents: this.#agentBreakers.size, materialised, rotationListeners: this.#buckets.listeners };
  }

  /** @internal The limiters of the capabilities in `requires` (empty when none is limited). */
  limitersFor(requires: readonly string[]): RateLimiter[] {
    const out: RateLimiter[] = [];
    if (this.#options.rateLimits.size === 0) return out;
    for (const c of requires) {
      const l = this.#options.rateLimits.has(c) ? this.#limiters.get(c) : undefined;
      if (l) out.push(l);
    }
    return out;
  }

  /** @internal Whether any capability carries a rate limit: lets the engine skip the checks entirely. */
  get limitsCapabilities(): boolean {
    return this.#options.rateLimits.size > 0;
  }

  /** @internal Called when a capability limiter that someone waited on has room again. */
  onLimiterReady(listener: () => void): void {
    this.#readyListener = listener;
  }

  /** @internal Called on every pressure level change, after the public `pressure:changed` event. */
  onPressure(listener: (level: PressureLevel) => void): void {
    this.#pressureListeners.push(listener);
  }

  #newLimiter(name: string, options: ResolvedRateLimitOptions): RateLimiter {
    // A configured limit and a dependency of the same name share one budget: a capability `llm` and the host's
    // own `llm` client hit the same vendor.
    const existing = this.#limiters.get(name);
    if (existing) return existing;
    const limiter = new RateLimiter(name, options, this.#options.clock, this.disposables, this.#limiterHooks);
    if (this.#cluster) limiter.attachCluster(this.#cluster.leaseFor(name, options));
    this.#limiters.set(name, limiter);
    return limiter;
  }

  #rotation(windowMs: number): EventEmitter {
    return this.#buckets.for(windowMs);
  }

  #watch(breaker: { on(event: string, fn: () => void): unknown }, name: string): void {
    let state: BreakerState = 'closed';
    const move = (to: BreakerState) => () => {
      const from = state;
      if (from === to) return;
      state = to;
      this.#events.emit('breaker:state', { breaker: name, agentId: undefined, from, to });
    };
    breaker.on('open', move('open'));
    breaker.on('halfOpen', move('half-open'));
    breaker.on('close', move('closed'));
  }
}
