/** SlaWindows: rolling per-type latency percentiles and error rates over a ring of time slots, judged against thresholds. */
import { describe, expect, it } from 'vitest';
import type { ResolvedSlaOptions, SlaThresholds } from '../../src/health/options.js';
import { SlaWindows } from '../../src/health/sla.js';

function windows(
  options: Partial<Omit<ResolvedSlaOptions, 'types'>> & { types?: Record<string, SlaThresholds> } = {},
): SlaWindows {
  const { types = {}, ...rest } = options;
  return new SlaWindows({
    windowMs: 1_200,
    minSamples: 1,
    default: undefined,
    maxTypes: 100,
    ...rest,
    types: new Map(Object.entries(types)),
  });
}

const within10 = (actual: number | undefined, expected: number): void => {
  expect(actual).toBeDefined();
  expect(Math.abs(actual! - expected) / expected).toBeLessThanOrEqual(0.1);
};

describe('SlaWindows figures', () => {
  it('has no figures for a type never recorded', () => {
    expect(windows().figures('t', 0)).toBeUndefined();
  });

  it('gives percentiles within ~10% of the exact ones', () => {
    const w = windows();
    // 1..1000 ms, shuffled: exact p50 500, p95 950, p99 990.
    const values = Array.from({ length: 1_000 }, (_, i) => i + 1);
    for (let i = values.length - 1; i > 0; i--) {
      const j = (i * 7919) % (i + 1);
      [values[i], values[j]] = [values[j]!, values[i]!];
    }
    for (const v of values) w.record('t', v, true, 10);
    const f = w.figures('t', 10)!;
    expect(f).toMatchObject({ type: 't', count: 1_000, errors: 0, errorRate: 0 });
    within10(f.p50Ms, 500);
    within10(f.p95Ms, 950);
    within10(f.p99Ms, 990);
  });

  it('follows a skewed distribution: the tail shows in p95 and p99, not in p50', () => {
    const w = windows();
    for (let i = 0; i < 90; i++) w.record('t', 10, true, 0);
    for (let i = 0; i < 10; i++) w.record('t', 2_000, true, 0);
    const f = w.figures('t', 0)!;
    within10(f.p50Ms, 10);
    within10(f.p95Ms, 2_000);
    within10(f.p99Ms, 2_000);
  });

  it('keeps sub-millisecond and huge latencies apart and finite', () => {
    const w = windows();
    w.record('tiny', 0, true, 0);
    w.record('tiny', 0.001, true, 0);
    w.record('huge', 3_600_000, true, 0);
    const tiny = w.figures('tiny', 0)!;
    const huge = w.figures('huge', 0)!;
    expect(tiny.p99Ms).toBeLessThan(0.02);
    within10(huge.p50Ms, 3_600_000);
    expect(Number.isFinite(huge.p99Ms)).toBe(true);
  });

  it('counts errors and the error rate', () => {
    const w = windows();
    for (let i = 0; i < 8; i++) w.record('t', 5, i % 4 !== 0, 0);
    expect(w.figures('t', 0)).toMatchObject({ count: 8, errors: 2, errorRate: 0.25 });
  });

  it('drops samples once their slot leaves the window, and reuses the ring', () => {
    // 1200 ms window, 12 slots of 100 ms.
    const w = windows({ windowMs: 1_200 });
    w.record('t', 10, true, 50); // slot 0
    w.record('t', 20, false, 550); // slot 5
    expect(w.figures('t', 1_199)).toMatchObject({ count: 2, errors: 1 }); // slot 11: both still in
    expect(w.figures('t', 1_200)).toMatchObject({ count: 1, errors: 1 }); // slot 12: slot 0 is out
    within10(w.figures('t', 1_200)!.p50Ms, 20);
    expect(w.figures('t', 1_699)).toMatchObject({ count: 1 });
    expect(w.figures('t', 1_700)).toMatchObject({
      count: 0,
      errors: 0,
      errorRate: 0,
      p50Ms: undefined,
      p95Ms: undefined,
      p99Ms: undefined,
    });

    // Slot 12 lands on slot 0's ring position: its old counts are gone, not added.
    w.record('t', 300, true, 1_250);
    const f = w.figures('t', 1_250)!;
    expect(f.count).toBe(2);
    within10(f.p99Ms, 300);
    // Much later, one sample: only it counts, whatever was in its position laps ago.
    w.record('t', 7, true, 100_000);
    expect(w.figures('t', 100_000)).toMatchObject({ count: 1, errors: 0 });
  });

  it('tracks at most maxTypes types: later ones are ignored, earlier ones keep counting', () => {
    const w = windows({ maxTypes: 2 });
    w.record('a', 1, true, 0);
    w.record('b', 1, true, 0);
    w.record('c', 1, true, 0);
    w.record('a', 1, true, 0);
    expect(w.figures('a', 0)?.count).toBe(2);
    expect(w.figures('b', 0)?.count).toBe(1);
    expect(w.figures('c', 0)).toBeUndefined();
  });
});

describe('SlaWindows evaluation', () => {
  it('merges the default thresholds under each type’s own', () => {
    const w = windows({
      default: { p95Ms: 100, errorRate: 0.5 },
      types: { strict: { p95Ms: 10 }, lenient: { errorRate: 0.9 } },
    });
    for (const type of ['strict', 'plain', 'lenient']) {
      for (let i = 0; i < 5; i++) w.record(type, 50, i >= 3, 0); // 50 ms, 3 of 5 failed
    }
    const { violations, recoveries } = w.evaluate(0);
    expect(recoveries).toEqual([]);
    const got = violations.map((v) => `${v.type}/${v.metric}/${v.threshold}`).sort();
    // strict: own p95 (10) and the default error rate; plain: default error rate only (50 ms is under 100);
    // lenient: own error rate (0.9) over the default's, so nothing.
    expect(got).toEqual(['plain/errorRate/0.5', 'strict/errorRate/0.5', 'strict/p95/10']);
    const p95 = violations.find((v) => v.metric === 'p95')!;
    within10(p95.value, 50);
    expect(p95.figures).toMatchObject({ type: 'strict', count: 5, errors: 3 });
    expect(violations.find((v) => v.type === 'plain')!.value).toBeCloseTo(0.6);
  });

  it('judges no type without thresholds of its own or a default', () => {
    const w = windows({ types: { other: { p50Ms: 1 } } });
    for (let i = 0; i < 10; i++) w.record('free', 1_000, false, 0);
    expect(w.evaluate(0)).toEqual({ violations: [], recoveries: [] });
    expect(w.breaches()).toEqual([]);
  });

  it('judges p50, p95 and p99 each against its own threshold, strictly above', () => {
    const w = windows({ types: { t: { p50Ms: 1_000, p95Ms: 1_000, p99Ms: 50 }, e: { errorRate: 0.5 } } });
    for (let i = 0; i < 98; i++) w.record('t', 10, true, 0);
    w.record('t', 100, true, 0);
    w.record('t', 100, true, 0);
    // Exactly at the error-rate threshold: not a breach.
    w.record('e', 1, true, 0);
    w.record('e', 1, false, 0);
    const { violations } = w.evaluate(0);
    expect(violations.map((v) => `${v.type}/${v.metric}`)).toEqual(['t/p99']);
    within10(violations[0]!.value, 100);
  });

  it('reports a violation once, updates it while it lasts, and reports its recovery once', () => {
    const w = windows({ windowMs: 1_200, minSamples: 2, types: { t: { p95Ms: 20 } } });
    w.record('t', 40, true, 0);
    w.record('t', 40, true, 0);
    const first = w.evaluate(0);
    expect(first.violations).toHaveLength(1);
    expect(first.violations[0]).toMatchObject({ type: 't', metric: 'p95', threshold: 20 });
    expect(w.breaches()).toHaveLength(1);

    // Still over, and worse: no new violation, but the breach in force shows the new value.
    w.record('t', 400, true, 50);
    w.record('t', 400, true, 50);
    expect(w.evaluate(50)).toEqual({ violations: [], recoveries: [] });
    expect(w.breaches()).toHaveLength(1);
    within10(w.breaches()[0]!.value, 400);

    // The slow samples leave the window and fast ones arrive: recovered, once.
    for (let i = 0; i < 5; i++) w.record('t', 5, true, 1_300);
    const later = w.evaluate(1_300);
    expect(later.violations).toEqual([]);
    expect(later.recoveries).toHaveLength(1);
    expect(later.recoveries[0]).toMatchObject({ type: 't', metric: 'p95', threshold: 20 });
    within10(later.recoveries[0]!.value, 5);
    expect(later.recoveries[0]!.figures.count).toBe(5);
    expect(w.breaches()).toEqual([]);
    expect(w.evaluate(1_300)).toEqual({ violations: [], recoveries: [] });
  });

  it('does not judge fewer than minSamples, and a breached type that falls below it recovers', () => {
    const w = windows({ windowMs: 1_200, minSamples: 3, types: { t: { errorRate: 0.1 } } });
    w.record('t', 1, false, 0);
    w.record('t', 1, false, 0);
    expect(w.evaluate(0).violations).toEqual([]);
    w.record('t', 1, false, 600);
    expect(w.evaluate(600).violations).toHaveLength(1);
    // At 1200 the first two are out of the window: one sample left, too few to judge.
    const { recoveries } = w.evaluate(1_200);
    expect(recoveries).toHaveLength(1);
    expect(recoveries[0]!.figures.count).toBe(1);
    expect(w.breaches()).toEqual([]);
  });

  it('recovers with value 0 once the window is empty', () => {
    const w = windows({ windowMs: 1_200, types: { t: { p50Ms: 1 } } });
    w.record('t', 100, true, 0);
    expect(w.evaluate(0).violations).toHaveLength(1);
    const { recoveries } = w.evaluate(5_000);
    expect(recoveries).toHaveLength(1);
    expect(recoveries[0]).toMatchObject({ value: 0, figures: { count: 0 } });
  });
});
