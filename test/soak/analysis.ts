/**
 * The soak's arithmetic, kept apart from the workload: least-squares fit of heap over time and over tasks, and the
 * flat/growing verdict. Pure functions, no imports.
 */

export const MB = 1024 * 1024;

/** One reading, taken after full GCs. */
export interface Sample {
  /** Seconds since the workload started. */
  readonly t: number;
  readonly warmup: boolean;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly rss: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** Tasks that reached a terminal state so far (any outcome), and of those, completed. */
  readonly terminal: number;
  readonly completed: number;
  /** Terminal tasks per second over the interval since the previous sample. */
  readonly throughput: number;
  /** Harness operations in flight (tasks accepted and not yet settled, adapter waits). */
  readonly inFlight: number;
  /** From `stats()`: waiting, running, backing off. */
  readonly waiting: number;
  readonly running: number;
  readonly backingOff: number;
  /** `stats().resources.tracked`: timers, listeners, breakers held by the library. */
  readonly tracked: number;
  /** `stats().deadLetters`. */
  readonly deadLetters: number;
  /** `stats().routingCache.size`. */
  readonly routingCacheSize: number;
  /** Agents registered (every state), from `stats().agents`. */
  readonly agents: number;
  readonly halted: boolean;
  /** Milliseconds the GC rounds and the reading took. */
  readonly gcMs: number;
}

export interface Fit {
  readonly slope: number;
  readonly intercept: number;
  /** Coefficient of determination; 0 when the values do not vary at all. */
  readonly r2: number;
}

/** Ordinary least squares of ys over xs. */
export function linearFit(xs: readonly number[], ys: readonly number[]): Fit {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return { slope: 0, intercept: ys[0] ?? 0, r2: 0 };
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += xs[i]!;
    my += ys[i]!;
  }
  mx /= n;
  my /= n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = xs[i]! - mx;
    const dy = ys[i]! - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  if (sxx === 0) return { slope: 0, intercept: my, r2: 0 };
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  let ssRes = 0;
  for (let i = 0; i < n; i++) {
    const e = ys[i]! - (intercept + slope * xs[i]!);
    ssRes += e * e;
  }
  return { slope, intercept, r2: syy === 0 ? 0 : 1 - ssRes / syy };
}

const mean = (v: readonly number[]): number => (v.length === 0 ? Number.NaN : v.reduce((a, b) => a + b, 0) / v.length);

/** The thresholds of the verdict. */
export interface VerdictRule {
  /** Flat needs the heap slope below this (MB per minute)... */
  readonly maxSlopeMBPerMin: number;
  /** ...and the mean of the last third of the post-warm-up samples within this share of the first third's... */
  readonly maxThirdsDriftShare: number;
  /** ...or within this many MB of it (whichever allows more). */
  readonly maxThirdsDriftMB: number;
  /** Fewer post-warm-up samples than this: no verdict. */
  readonly minSamples: number;
}

export const DEFAULT_RULE: VerdictRule = {
  maxSlopeMBPerMin: 0.5,
  maxThirdsDriftShare: 0.05,
  maxThirdsDriftMB: 2,
  minSamples: 6,
};

export function describeRule(rule: VerdictRule): string {
  return (
    `flat when the heapUsed slope over the post-warm-up samples is < ${rule.maxSlopeMBPerMin} MB/min AND the mean of ` +
    `their last third is within ${rule.maxThirdsDriftShare * 100}% or ${rule.maxThirdsDriftMB} MB (whichever is larger) ` +
    `of the mean of their first third; otherwise growing (inconclusive with fewer than ${rule.minSamples} samples)`
  );
}

export type Verdict = 'flat' | 'growing' | 'inconclusive';

export interface HeapAnalysis {
  readonly samples: number;
  readonly windowSeconds: number;
  /** heapUsed over minutes. */
  readonly slopeMBPerMin: number;
  readonly r2: number;
  /** heapUsed over terminal tasks: bytes per 1,000 tasks. */
  readonly bytesPer1000Tasks: number;
  readonly r2PerTask: number;
  readonly minMB: number;
  readonly maxMB: number;
  readonly firstThirdMeanMB: number;
  readonly lastThirdMeanMB: number;
  /** last − first third, MB. */
  readonly thirdsDriftMB: number;
  readonly allowedDriftMB: number;
  /** The same slope for rss and external, MB per minute (for information; the verdict reads heapUsed only). */
  readonly rssSlopeMBPerMin: number;
  readonly externalSlopeMBPerMin: number;
  readonly verdict: Verdict;
  readonly reasons: readonly string[];
}

/** Fits and judges the post-warm-up samples. */
export function analyseHeap(all: readonly Sample[], rule: VerdictRule = DEFAULT_RULE): HeapAnalysis {
  const s = all.filter((x) => !x.warmup);
  const minutes = s.map((x) => x.t / 60);
  const heap = s.map((x) => x.heapUsed / MB);
  const fit = linearFit(minutes, heap);
  const perTask = linearFit(
    s.map((x) => x.terminal),
    s.map((x) => x.heapUsed),
  );
  const third = Math.floor(s.length / 3);
  const first = mean(heap.slice(0, Math.max(1, third)));
  const last = mean(heap.slice(heap.length - Math.max(1, third)));
  const drift = last - first;
  const allowed = Math.max(rule.maxThirdsDriftMB, rule.maxThirdsDriftShare * first);
  const reasons: string[] = [];
  let verdict: Verdict;
  if (s.length < rule.minSamples) {
    verdict = 'inconclusive';
    reasons.push(`only ${s.length} samples after the warm-up (need ${rule.minSamples})`);
  } else {
    const slopeOk = fit.slope < rule.maxSlopeMBPerMin;
    const driftOk = drift <= allowed;
    if (!slopeOk) reasons.push(`slope ${fit.slope.toFixed(3)} MB/min >= ${rule.maxSlopeMBPerMin}`);
    if (!driftOk) reasons.push(`last third ${drift.toFixed(2)} MB above the first (allowed ${allowed.toFixed(2)} MB)`);
    verdict = slopeOk && driftOk ? 'flat' : 'growing';
  }
  return {
    samples: s.length,
    windowSeconds: s.length > 0 ? s[s.length - 1]!.t - s[0]!.t : 0,
    slopeMBPerMin: fit.slope,
    r2: fit.r2,
    bytesPer1000Tasks: perTask.slope * 1000,
    r2PerTask: perTask.r2,
    minMB: heap.length ? Math.min(...heap) : Number.NaN,
    maxMB: heap.length ? Math.max(...heap) : Number.NaN,
    firstThirdMeanMB: first,
    lastThirdMeanMB: last,
    thirdsDriftMB: drift,
    allowedDriftMB: allowed,
    rssSlopeMBPerMin: linearFit(
      minutes,
      s.map((x) => x.rss / MB),
    ).slope,
    externalSlopeMBPerMin: linearFit(
      minutes,
      s.map((x) => x.external / MB),
    ).slope,
    verdict,
    reasons,
  };
}

/** Slope per minute of any sampled series after the warm-up (for attributing growth: tracked, dead letters...). */
export function seriesSlopePerMin(
  all: readonly Sample[],
  pick: (s: Sample) => number,
): { slope: number; first: number; last: number } {
  const s = all.filter((x) => !x.warmup);
  const fit = linearFit(
    s.map((x) => x.t / 60),
    s.map(pick),
  );
  return {
    slope: fit.slope,
    first: s.length ? pick(s[0]!) : Number.NaN,
    last: s.length ? pick(s[s.length - 1]!) : Number.NaN,
  };
}
