/**
 * Circuit breakers on opossum: one per agent (its attempts' outcomes feed it; open quarantines the agent,
 * half-open lets one probe through, closed returns it) and named ones guarding the host's own dependencies.
 *
 * Every breaker of one window length shares one bucket-rotation interval (opossum's `rotateBucketController`)
 * instead of keeping two intervals each, so 10,000 agents cost one timer, and a removed agent's breaker is shut
 * down with it.
 */
import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import type { ResolvedBreakerOptions } from '../config.js';
import type { Disposable, Disposables } from './disposables.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Buckets per rolling window, as opossum counts them. */
const BUCKETS = 10;

/** The one action of an agent breaker: it replays an outcome that already happened. */
const FAILED = new Error('attempt failed');
const replay = (ok: boolean): Promise<boolean> => (ok ? Promise.resolve(true) : Promise.reject(FAILED));
const noop = (): void => {};

/** opossum's Status counts per bucket with `increment`; its typings leave the method out. */
interface CountingStatus {
  increment(property: 'fires'): void;
}

export function stateOf(breaker: CircuitBreaker): BreakerState {
  if (breaker.opened) return 'open';
  if (breaker.halfOpen) return 'half-open';
  return 'closed';
}

/** Options that map onto opossum's, with our names. */
export function opossumOptions(options: ResolvedBreakerOptions, rotate: EventEmitter, name: string): CircuitBreaker.Options {
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
 * Cost: a success while closed is one counter increment (opossum's error rate is failures / fires); everything
 * else goes through opossum's `fire`, which weighs the rate and moves the state.
 */
export class AgentBreaker implements Disposable {
  readonly name: string;
  readonly #breaker: CircuitBreaker<[boolean], boolean>;
  readonly #status: CountingStatus;
  #state: BreakerState = 'closed';

  constructor(
    name: string,
    options: ResolvedBreakerOptions,
    rotate: EventEmitter,
    onChange: (breaker: AgentBreaker, from: BreakerState, to: BreakerState) => void,
  ) {
    this.name = name;
    this.#breaker = new CircuitBreaker(replay, opossumOptions(options, rotate, name));
    this.#status = this.#breaker.status as unknown as CountingStatus;
    const move = (to: BreakerState) => () => {
      const from = this.#state;
      if (from === to) return;
      this.#state = to;
      onChange(this, from, to);
    };
    this.#breaker.on('open', move('open'));
    this.#breaker.on('halfOpen', move('half-open'));
    this.#breaker.on('close', move('closed'));
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Folds one finished attempt in. Outcomes that arrive while open (attempts started before it opened) are ignored. */
  record(ok: boolean): void {
    if (this.#state === 'open') return;
    if (ok && this.#state === 'closed') {
      this.#status.increment('fires');
      return;
    }
    this.#breaker.fire(ok).catch(noop);
  }

  dispose(): void {
    this.#breaker.shutdown();
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
      const timer = this.#disposables.interval(() => emitter.emit('rotate'), Math.max(1, Math.floor(windowMs / BUCKETS)));
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
