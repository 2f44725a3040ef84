/**
 * The rate limiter on its own: a retry-after pause always ends (and says so) even when its timer fires a little
 * early by the limiter's clock, and the end of a pause lets work start again at the limit's pace, not in a burst.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Disposables } from '../../src/resources/disposables.js';
import { RateLimiter } from '../../src/resources/rate-limiter.js';
import { until } from '../support/agents.js';

const owned: Disposables[] = [];
afterEach(() => {
  for (const d of owned.splice(0)) d.close();
});

function limiter(options: { requests?: number; intervalMs: number }, clock: { now(): number }) {
  const disposables = new Disposables();
  owned.push(disposables);
  const events: string[] = [];
  const l = new RateLimiter(
    'llm',
    { requests: Infinity, units: Infinity, maxDeferrals: 10, ...options },
    clock,
    disposables,
    {
      paused: (_l, ms) => events.push(`paused ${ms}`),
      resumed: () => events.push('resumed'),
      ready: () => events.push('ready'),
    },
  );
  return { l, events };
}

describe('RateLimiter', () => {
  it("a pause with nobody waiting ends and reports resumed, even when its timer fires before the pause ends by the limiter's clock", async () => {
    // A clock 5 ms behind the timers: the first wake-up comes "early". It used to leave the limiter paused for good.
    const lagging = { now: () => performance.now() - 5 };
    const { l, events } = limiter({ intervalMs: 1_000 }, lagging);
    l.pause(20.4, lagging.now());
    expect(l.snapshot().paused).toBe(true);
    await until(() => events.includes('resumed'), 2_000);
    expect(l.snapshot().paused).toBe(false);
    expect(events).toEqual(['paused 20.4', 'resumed']);
  });

  it("after a pause, work starts again at the limit's pace: one request at once, then one per interval / requests", () => {
    let now = 0;
    const clock = { now: () => now };
    const { l } = limiter({ requests: 5, intervalMs: 100 }, clock); // one request per 20 ms, bursts of 5
    expect(l.ready(now)).toBe(true); // a full bucket of 5
    l.pause(50, now); // the far side answered 429: the 5 are not really there
    now = 49;
    expect(l.ready(now)).toBe(false);
    expect(l.snapshot()).toMatchObject({ paused: true, requestsAvailable: 0 });
    now = 50;
    expect(l.ready(now)).toBe(true);
    l.take(now);
    expect(l.ready(now)).toBe(false); // no burst of the 5 the bucket held before the pause
    now = 69;
    expect(l.ready(now)).toBe(false);
    now = 70;
    expect(l.ready(now)).toBe(true);
  });

  it('a limit without a request count is not throttled by a pause once it ended', () => {
    let now = 0;
    const { l } = limiter({ intervalMs: 100 }, { now: () => now });
    l.pause(10, now);
    now = 10;
    for (let i = 0; i < 100; i++) {
      expect(l.ready(now)).toBe(true);
      l.take(now);
    }
  });
});
