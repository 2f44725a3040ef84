/**
 * Memory and CPU pressure: the process is sampled on an interval and the higher of its memory and CPU ratios
 * gives a level, `normal | elevated | critical`, with hysteresis so it does not flap around a threshold.
 * The sampler is a small interface: pidusage by default, a test double in tests.
 */
import pidusage from 'pidusage';
import type { ResolvedPressureOptions, ResourceSample, ResourceSampler } from './options.js';
import type { Disposables, TrackedTimer } from './disposables.js';

/**
 * The host's memory/CPU pressure. `normal`; `elevated` from `pressure.elevatedAt` of a limit (no scale-up; warm
 * spares and idle agents above the minimum are shed); `critical` at a limit (tasks below `pressure.priorityFloor` are
 * refused as well).
 */
export type PressureLevel = 'normal' | 'elevated' | 'critical';

/** pidusage for RSS and CPU (what `ps` and `top` show), `process.memoryUsage()` for the heap. */
export class PidusageSampler implements ResourceSampler {
  #primed = false;

  async sample(): Promise<ResourceSample> {
    const stat = await pidusage(process.pid);
    const cpuPercent = this.#primed ? stat.cpu : Number.NaN;
    this.#primed = true;
    return { rssBytes: stat.memory, heapUsedBytes: process.memoryUsage().heapUsed, cpuPercent };
  }

  close(): void {
    // pidusage keeps its CPU history behind an (unref'd) interval of its own; release it.
    pidusage.clear();
  }
}

/**
 * The level after `current` given the load `ratio` (the higher of memory/limit and cpu/limit). Going up takes
 * crossing a threshold; coming down takes falling `hysteresis` below it.
 */
export function nextPressureLevel(
  current: PressureLevel,
  ratio: number,
  elevatedAt: number,
  hysteresis: number,
): PressureLevel {
  if (ratio >= 1) return 'critical';
  if (current === 'critical' && ratio > 1 - hysteresis + EPSILON) return 'critical';
  if (ratio >= elevatedAt) return 'elevated';
  if (current !== 'normal' && ratio > elevatedAt - hysteresis + EPSILON) return 'elevated';
  return 'normal';
}

/** So that 0.85 - 0.05 steps down at 0.8 as written, not at 0.7999999999999999. */
const EPSILON = 1e-9;

export interface PressureChange {
  readonly from: PressureLevel;
  readonly to: PressureLevel;
  readonly sample: ResourceSample;
  /** The higher of the memory and CPU ratios to their limits. */
  readonly ratio: number;
}

export class PressureMonitor {
  readonly options: ResolvedPressureOptions;
  readonly #sampler: ResourceSampler;
  readonly #timer: TrackedTimer;
  readonly #onChange: (change: PressureChange) => void;
  readonly #onError: (error: unknown) => void;
  #level: PressureLevel = 'normal';
  #last: ResourceSample | undefined;
  #running = false;
  #sampling: Promise<void> | undefined;
  /** The last `cpuSustainedSamples` CPU ratios: CPU counts at the lowest of them, so one busy second moves nothing. */
  readonly #cpu: number[] = [];

  constructor(
    options: ResolvedPressureOptions,
    disposables: Disposables,
    onChange: (change: PressureChange) => void,
    onError: (error: unknown) => void,
  ) {
    this.options = options;
    this.#sampler = options.sampler ?? new PidusageSampler();
    this.#onChange = onChange;
    this.#onError = onError;
    this.#timer = disposables.timer(() => void this.sampleNow().finally(() => this.#schedule()));
    disposables.add(() => {
      this.#running = false;
      this.#sampler.close?.();
    });
  }

  get level(): PressureLevel {
    return this.#level;
  }

  get lastSample(): ResourceSample | undefined {
    return this.#last;
  }

  /**
   * Samples at once and then every `sampleIntervalMs`, each after the previous one finished (never overlapping).
   * Resolves after the first sample, or after `sampleIntervalMs` if the sampler is slower: a hung sampler must not
   * hold `start()` up.
   */
  async start(): Promise<void> {
    this.#running = true;
    const first = this.sampleNow().finally(() => this.#schedule());
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.sampleIntervalMs)));
    try {
      await Promise.race([first, bound]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Takes one sample and applies it. A sampler that fails leaves the level as it was and is reported. */
  sampleNow(): Promise<void> {
    this.#sampling ??= this.#sample().finally(() => (this.#sampling = undefined));
    return this.#sampling;
  }

  async #sample(): Promise<void> {
    let sample: ResourceSample;
    let timer: NodeJS.Timeout | undefined;
    try {
      // A sample that never returns must not stop sampling (and freeze the level) for good.
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`The pressure sampler did not return within ${this.options.sampleIntervalMs} ms`)),
          this.options.sampleIntervalMs,
        );
      });
      sample = await Promise.race([this.#sampler.sample(), late]);
      if (!isSample(sample))
        throw new TypeError(
          'The pressure sampler returned something other than { rssBytes, heapUsedBytes, cpuPercent } numbers',
        );
    } catch (error) {
      this.#onError(error);
      return;
    } finally {
      clearTimeout(timer);
    }
    this.#last = sample;
    const { memoryLimitBytes, cpuLimitPercent, elevatedAt, hysteresis, cpuSustainedSamples } = this.options;
    if (!Number.isNaN(sample.cpuPercent)) {
      this.#cpu.push(sample.cpuPercent / cpuLimitPercent);
      if (this.#cpu.length > cpuSustainedSamples) this.#cpu.shift();
    }
    // Memory acts at once (running out of it is fatal); CPU only when it stayed high for every recent sample.
    const cpu = this.#cpu.length < cpuSustainedSamples ? 0 : Math.min(...this.#cpu);
    const ratio = Math.max(sample.rssBytes / memoryLimitBytes, cpu);
    const from = this.#level;
    const to = nextPressureLevel(from, ratio, elevatedAt, hysteresis);
    if (to === from) return;
    this.#level = to;
    this.#onChange({ from, to, sample, ratio });
  }

  #schedule(): void {
    if (this.#running) this.#timer.arm(this.options.sampleIntervalMs);
  }
}

function isSample(value: unknown): value is ResourceSample {
  if (typeof value !== 'object' || value === null) return false;
  const s = value as Record<string, unknown>;
  return Number.isFinite(s['rssBytes']) && Number.isFinite(s['heapUsedBytes']) && typeof s['cpuPercent'] === 'number';
}
