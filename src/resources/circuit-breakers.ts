/**
 * Circuit breakers on opossum: one per agent (its attempts' outcomes feed it; open quarantines the agent,
 * half-open lets one probe through, closed returns it) and named ones guarding the host's own dependencies.
 *
 * Every breaker of one window length shares one bucket-rotation interval (opossum's `rotateBucketController`)
 * instead of keeping two intervals each, so 10,000 agents cost one timer, and a removed agent's breaker is shut
 * down with it. An agent's opossum breaker is only made at its first failure.
 */
import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import { MAX_TIMER_MS } from '../util/timers.js';
import { type ResolvedBreakerOptions } from './options.js';
import type { Disposable, Disposables } from './disposables.js';

/**
 * A circuit breaker's state. `closed`: calls go through. `open`: too many failed in the window, so calls fail fast
 * (an agent is quarantined). `half-open`: after `resetTimeoutMs`, one probe call (or task) decides between the two.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** Buckets per rolling window, as opossum counts them. */
const BUCKETS = 10;

/** An agent breaker never calls its action (outcomes are recorded, see `record`); opossum requires one. */
const unused = (): Promise<never> => Promise.reject(new Error('an agent breaker is never fired'));
const noop = (): void => {};

/** opossum's Status: `increment` counts in the newest bucket (its typings leave the method out), `window` lists the buckets. */
interface CountingStatus {
  increment(property: 'fires' | 'failures'): void;
  readonly window: ReadonlyArray<{ readonly fires: number; readonly failures: number }>;
}

export function stateOf(breaker: CircuitBreaker): BreakerState {
  if (breaker.opened) return 'open';
  if (breaker.halfOpen) return 'half-open';
  return 'closed';
}

/** Options that map onto opossum's, with our names. */
export function opossumOptions(
  options: ResolvedBreakerOptions,
  rotate: EventEmitter,
  name: string,
): CircuitBreaker.Options {
  return {
    name,
    errorThresholdPercentage: options.errorThresholdPercentage,
    volumeThreshold: options.volumeThreshold,
    resetTimeout: options.resetTimeoutMs,
    rollingCountTimeout: options.windowMs,
    rollingCountBuckets: BUCKETS,
    rotateBucketController: rotate,
    enableSnapshots: false,
    rollingPercentilesEnabled: false,
    timeout: false,
  };
}

/**
 * The breaker of one agent. The engine reports each attempt's outcome after the fact (an engine timeout counts as
 * a failure, a cancellation as nothing), so a hung agent trips its breaker too.
 *
 * Cost: the opossum breaker (about 6.5 KB) is made at the agent's first failure, not at registration: until then a
 * success is one counter increment, so registering 10,000 healthy agents costs no breakers at all. The new breaker
 * is primed with the attempts counted in the current window, so its failure rate (failures / fires) is true.
 * After that, opossum keeps the rolling window, the state, the reset timer and the events; see `record`.
 */
export class AgentBreaker implements Disposable {
  readonly name: string;
  readonly #options: ResolvedBreakerOptions;
  readonly #rotation: () => EventEmitter;
  readonly #onChange: (breaker: AgentBreaker, from: BreakerState, to: BreakerState) => void;
  #breaker: CircuitBreaker<[], never> | undefined;
  #status: CountingStatus | undefined;
  #state: BreakerState = 'closed';
  /** Before the breaker exists: attempts since `#windowStart`, to prime it with. */
  #fires = 0;
  #windowStart = -Infinity;
  #disposed = false;
  /**
   * While open: a timer that keeps the process alive until half-open. opossum's own reset timer is unref'd, and tasks
   * waiting for this agent would otherwise be dropped by a process that exits under them.
   */
  #hold: NodeJS.Timeout | undefined;

  constructor(
    name: string,
    options: ResolvedBreakerOptions,
    rotation: () => EventEmitter,
    onChange: (breaker: AgentBreaker, from: BreakerState, to: BreakerState) => void,
  ) {
    this.name = name;
    this.#options = options;
    this.#rotation = rotation;
    this.#onChange = onChange;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Whether the opossum breaker was made (the agent failed at least once). */
  get materialised(): boolean {
    return this.#breaker !== undefined;
  }

  /**
   * Folds one finished attempt in. Outcomes that arrive while open, and while half-open from any attempt but the
   * probe (`probe`), are ignored: they started before the breaker opened and say nothing about the agent now.
   *
   * The outcome is counted in opossum's rolling window and the decision taken here, by opossum's rule (open when
   * the failure percentage is above the threshold with at least `volumeThreshold` attempts; the probe's outcome
   * closes or reopens a half-open breaker), then carried out with its public `open()` / `close()`. Nothing goes
   * through `fire()`: the outcome is already known, `fire` costs a promise chain, and its verdict would come a few
   * microtasks late, after the engine had handed the failing agent its next task.
   */
  record(ok: boolean, now: number, probe: boolean): void {
    if (this.#state === 'open' || this.#disposed || (this.#state === 'half-open' && !probe)) return;
    if (!this.#breaker) {
      if (now - this.#windowStart >= this.#options.windowMs) {
        this.#windowStart = now;
        this.#fires = 0;
      }
      if (ok) {
        this.#fires++;
        return;
      }
      this.#materialise();
    }
    const breaker = this.#breaker!;
    if (this.#state === 'half-open') {
      if (ok) breaker.close();
      else breaker.open();
      return;
    }
    const status = this.#status!;
    status.increment('fires');
    if (ok) return;
    status.increment('failures');
    if (this.#crossed(status)) breaker.open();
  }

  /** opossum's rule over its rolling window (summed from the buckets, not its `stats`, which also sorts latencies). */
  #crossed(status: CountingStatus): boolean {
    let fires = 0;
    let failures = 0;
    for (const bucket of status.window) {
      fires += bucket.fires;
      failures += bucket.failures;
    }
    return fires >= this.#options.volumeThreshold && (failures / fires) * 100 > this.#options.errorThresholdPercentage;
  }

  dispose(): void {
    this.#disposed = true;
    clearTimeout(this.#hold);
    this.#breaker?.shutdown();
  }

  #materialise(): void {
    const rotate = this.#rotation();
    const options = opossumOptions(this.#options, rotate, this.name);
    const status = CircuitBreaker.newStatus({
      rollingCountBuckets: options.rollingCountBuckets!,
      rollingCountTimeout: options.rollingCountTimeout!,
      rotateBucketController: rotate,
      enableSnapshots: false,
      rollingPercentilesEnabled: false,
      stats: { fires: this.#fires } as CircuitBreaker.Stats,
    });
    const breaker = new CircuitBreaker(unused, { ...options, status });
    this.#breaker = breaker;
    this.#status = breaker.status as unknown as CountingStatus;
    const move = (to: BreakerState) => () => {
      const from = this.#state;
      if (from === to) return;
      this.#state = to;
      clearTimeout(this.#hold);
      // Fires just after opossum's reset timer; it does nothing but keep the process alive until then.
      this.#hold =
        to === 'open' && !this.#disposed
          ? setTimeout(noop, Math.min(MAX_TIMER_MS, this.#options.resetTimeoutMs + 1))
          : undefined;
      this.#onChange(this, from, to);
    };
    breaker.on('open', move('open'));
    breaker.on('halfOpen', move('half-open'));
    breaker.on('close', move('closed'));
  }
}

/** One rotation interval per window length, shared by every breaker with that window. */
export class BucketClock implements Disposable {
  readonly #rotators = new Map<number, { emitter: EventEmitter; timer: Disposable }>();
  readonly #disposables: Disposables;

  constructor(disposables: Disposables) {
    this.#disposables = disposables;
  }

  /** The emitter that rotates buckets of breakers whose window is `windowMs`. */
  for(windowMs: number): EventEmitter {
    let r = this.#rotators.get(windowMs);
    if (!r) {
      const emitter = new EventEmitter();
      emitter.setMaxListeners(0); // one listener per breaker, by design
      const timer = this.#disposables.interval(
        () => emitter.emit('rotate'),
        Math.max(1, Math.floor(windowMs / BUCKETS)),
      );
      r = { emitter, timer };
      this.#rotators.set(windowMs, r);
    }
    return r.emitter;
  }

  /** Breakers still listening for rotation: 0 once every breaker has been shut down. */
  get listeners(): number {
    let n = 0;
    for (const r of this.#rotators.values()) n += r.emitter.listenerCount('rotate');
    return n;
  }

  dispose(): void {
    for (const r of this.#rotators.values()) r.timer.dispose();
    this.#rotators.clear();
  }
}
