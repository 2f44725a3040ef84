/**
 * Latency sampling on tinybench, and the summary statistics every suite reports.
 *
 * Each case measures its own interval with `performance.now()` and hands it to tinybench as `overriddenDuration`:
 * tinybench drives warm-up, iteration counts and time budgets, while the sample is exactly the interval the case
 * names (submit → execute, say), not the whole iteration with its clean-up.
 */
import { Bench } from 'tinybench';
import type { LatencyBudget } from './settings.js';

/** Percentiles of one latency distribution, in microseconds. */
export interface LatencyStats {
  readonly samples: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly maxUs: number;
  readonly meanUs: number;
}

/** Linear interpolation between closest ranks (the usual "R-7" quantile), on sorted samples. */
function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const pos = (n - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** Summarises samples given in milliseconds; the result is in microseconds. */
export function summarise(samplesMs: ArrayLike<number>): LatencyStats {
  const sorted = Float64Array.from(samplesMs).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const n = sorted.length;
  return {
    samples: n,
    p50Us: quantile(sorted, 0.5) * 1_000,
    p99Us: quantile(sorted, 0.99) * 1_000,
    maxUs: (n === 0 ? Number.NaN : sorted[n - 1]!) * 1_000,
    meanUs: (n === 0 ? Number.NaN : sum / n) * 1_000,
  };
}

export interface SampleOptions extends LatencyBudget {
  /** Skip warm-up, so the first (cold) calls are in the sample. */
  readonly cold?: boolean;
}

/**
 * Runs `measure` under tinybench and returns its samples in ms. `measure` performs one iteration and returns the
 * interval it measured, in ms; whatever else it does (clean-up, waiting for a refill) is not in the sample.
 */
export async function sampleLatency(
  name: string,
  measure: () => number | Promise<number>,
  options: SampleOptions,
): Promise<Float64Array> {
  const bench = new Bench({
    name,
    time: options.timeMs,
    iterations: options.minSamples,
    warmup: !options.cold && options.warmupMs > 0,
    warmupTime: options.warmupMs,
    warmupIterations: options.cold ? 0 : 16,
    retainSamples: true,
    throws: true, // a case that throws fails the run instead of leaving a hole in the table
  });
  bench.add(name, async () => {
    const t0 = performance.now();
    const measured = await measure();
    return { overriddenDuration: measured, overriddenIterationCost: performance.now() - t0 };
  });
  await bench.run();
  const task = bench.tasks[0];
  const result = task?.result;
  if (!result || (result.state !== 'completed' && result.state !== 'aborted-with-statistics')) {
    throw new Error(`Bench case "${name}" did not complete (state ${result?.state ?? 'missing'})`);
  }
  const samples = result.latency.samples;
  if (!samples) throw new Error(`Bench case "${name}" kept no samples`);
  return Float64Array.from(samples);
}

/** The median of a few numbers (round results). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return quantile(sorted, 0.5);
}

/** Prints a progress line on stderr, so stdout carries only the results. */
export function progress(message: string): void {
  process.stderr.write(`  ${message}\n`);
}
