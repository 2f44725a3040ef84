/**
 * SLA windows per task type: rolling latency percentiles and error rate over `windowMs`, compared with thresholds.
 * Each type keeps a ring of time slots, each slot a log-scale latency histogram, so memory per type is fixed and
 * recording a task is a few array writes; percentiles are read from the merged slots when the monitor evaluates.
 */
import type { ResolvedSlaOptions, SlaThresholds } from './options.js';

/** The SLA metrics that can be given a threshold. */
export type SlaMetric = 'p50' | 'p95' | 'p99' | 'errorRate';

/** One type's figures over the window. */
export interface SlaFigures {
  /** The task type. */
  readonly type: string;
  /** Tasks of the type that ended in the window, cancelled ones left out. */
  readonly count: number;
  /** Those that ended in anything but success. */
  readonly errors: number;
  /** `errors / count`, from 0 to 1 (0 with no tasks). */
  readonly errorRate: number;
  /** Latency percentiles in ms (accurate to the histogram's ~10% buckets); `undefined` with no samples. */
  readonly p50Ms: number | undefined;
  /** 95th-percentile latency in ms, acceptance to end; `undefined` with no samples. */
  readonly p95Ms: number | undefined;
  /** 99th-percentile latency in ms, acceptance to end; `undefined` with no samples. */
  readonly p99Ms: number | undefined;
}

/** A threshold crossed (or no longer crossed). */
export interface SlaBreach {
  /** The task type. */
  readonly type: string;
  /** Which threshold: a latency percentile or the error rate. */
  readonly metric: SlaMetric;
  /** The metric's value over the window: ms for a percentile, 0 to 1 for `errorRate`. */
  readonly value: number;
  /** The threshold, in the same unit. */
  readonly threshold: number;
  /** All of the type's figures over the window. */
  readonly figures: SlaFigures;
}

const SLOTS = 12;
/** Bucket i holds latencies up to MIN_MS * GROWTH^i. */
const GROWTH = 1.2;
const MIN_MS = 0.01;
const BUCKETS = 128;
const LOG_GROWTH = Math.log(GROWTH);

function bucketOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  return Math.min(BUCKETS - 1, Math.ceil(Math.log(ms / MIN_MS) / LOG_GROWTH));
}

/** A representative value of bucket i: the geometric middle of its range. */
function valueOf(bucket: number): number {
  return bucket === 0 ? MIN_MS : MIN_MS * GROWTH ** (bucket - 0.5);
}

class TypeWindow {
  readonly latencies = new Uint32Array(SLOTS * BUCKETS);
  readonly counts = new Uint32Array(SLOTS);
  readonly errors = new Uint32Array(SLOTS);
  /** Absolute slot number each ring position holds. */
  readonly slotOf = new Float64Array(SLOTS).fill(-1);

  record(slot: number, latencyMs: number, ok: boolean): void {
    const i = slot % SLOTS;
    if (this.slotOf[i] !== slot) {
      this.slotOf[i] = slot;
      this.counts[i] = 0;
      this.errors[i] = 0;
      this.latencies.fill(0, i * BUCKETS, (i + 1) * BUCKETS);
    }
    this.counts[i]!++;
    if (!ok) this.errors[i]!++;
    this.latencies[i * BUCKETS + bucketOf(latencyMs)]!++;
  }

  figures(type: string, slot: number): SlaFigures {
    const merged = new Uint32Array(BUCKETS);
    let count = 0;
    let errors = 0;
    for (let i = 0; i < SLOTS; i++) {
      const s = this.slotOf[i]!;
      if (s < 0 || slot - s >= SLOTS) continue;
      count += this.counts[i]!;
      errors += this.errors[i]!;
      for (let b = 0; b < BUCKETS; b++) merged[b]! += this.latencies[i * BUCKETS + b]!;
    }
    const at = (q: number): number | undefined => {
      if (count === 0) return undefined;
      const rank = Math.ceil(q * count);
      let seen = 0;
      for (let b = 0; b < BUCKETS; b++) {
        seen += merged[b]!;
        if (seen >= rank) return valueOf(b);
      }
      return valueOf(BUCKETS - 1);
    };
    return {
      type,
      count,
      errors,
      errorRate: count === 0 ? 0 : errors / count,
      p50Ms: at(0.5),
      p95Ms: at(0.95),
      p99Ms: at(0.99),
    };
  }
}

export class SlaWindows {
  readonly #options: ResolvedSlaOptions;
  readonly #slotMs: number;
  readonly #types = new Map<string, TypeWindow>();
  /** Whether a type has thresholds, per type asked about (bounded like the windows). */
  readonly #judges = new Map<string, boolean>();
  /** `${type}\0${metric}` currently breached. */
  readonly #breached = new Map<string, SlaBreach>();

  constructor(options: ResolvedSlaOptions) {
    this.#options = options;
    this.#slotMs = options.windowMs / SLOTS;
  }

  /** Records one finished task. `ok` is false for every outcome but completed (cancellations excluded by the caller). */
  record(type: string, latencyMs: number, ok: boolean, now: number): void {
    let w = this.#types.get(type);
    if (!w) {
      if (this.#types.size >= this.#options.maxTypes) return; // bounded memory; the first `maxTypes` types are kept
      w = new TypeWindow();
      this.#types.set(type, w);
    }
    w.record(Math.floor(now / this.#slotMs), latencyMs, ok);
  }

  /** Whether `type` has thresholds: the monitor records only such types, so others never use up `maxTypes`. */
  judges(type: string): boolean {
    let judged = this.#judges.get(type);
    if (judged === undefined) {
      judged = this.#thresholdsFor(type) !== undefined;
      if (this.#judges.size < this.#options.maxTypes * 10) this.#judges.set(type, judged);
    }
    return judged;
  }

  figures(type: string, now: number): SlaFigures | undefined {
    return this.#types.get(type)?.figures(type, Math.floor(now / this.#slotMs));
  }

  /** Breaches in force now. */
  breaches(): SlaBreach[] {
    return [...this.#breached.values()];
  }

  /**
   * Compares every type's window with its thresholds; returns what newly crossed and what recovered since the last
   * call. A type with fewer than `minSamples` tasks in the window is not judged (and recovers if it was breached).
   */
  evaluate(now: number): { violations: SlaBreach[]; recoveries: SlaBreach[] } {
    const violations: SlaBreach[] = [];
    const recoveries: SlaBreach[] = [];
    const slot = Math.floor(now / this.#slotMs);
    for (const [type, w] of this.#types) {
      const thresholds = this.#thresholdsFor(type);
      if (!thresholds) continue;
      const figures = w.figures(type, slot);
      const judged = figures.count >= this.#options.minSamples;
      for (const metric of ['p50', 'p95', 'p99', 'errorRate'] as const) {
        const threshold = metric === 'errorRate' ? thresholds.errorRate : thresholds[`${metric}Ms`];
        if (threshold === undefined) continue;
        const value = metric === 'errorRate' ? figures.errorRate : figures[`${metric}Ms`];
        const key = `${type}\u0000${metric}`;
        const was = this.#breached.get(key);
        const over = judged && value !== undefined && value > threshold;
        if (over && !was) {
          const breach = { type, metric, value, threshold, figures };
          this.#breached.set(key, breach);
          violations.push(breach);
        } else if (!over && was) {
          this.#breached.delete(key);
          recoveries.push({ type, metric, value: value ?? 0, threshold, figures });
        } else if (over && was) {
          this.#breached.set(key, { type, metric, value, threshold, figures });
        }
      }
    }
    return { violations, recoveries };
  }

  #thresholdsFor(type: string): SlaThresholds | undefined {
    const own = this.#options.types.get(type);
    const d = this.#options.default;
    if (!own) return d;
    return d ? { ...d, ...own } : own;
  }
}
