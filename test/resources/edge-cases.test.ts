/**
 * Edge cases around the resources that once hung a task or a limit, or let bad input in: hostile errors, units()
 * that are not numbers, hung samplers, a pool with no agent under pressure, and options that could never work.
 */
import { describe, expect, it } from 'vitest';
import {
  UnifiedOrchestrator,
  ValidationError,
  type OrchestratorOptions,
  type ResourceSample,
} from 'unified-orchestrator';
import { echoAgent, rejectionOf, startEach, until } from '../engine/helpers.js';

const start = startEach();

describe('hostile errors', () => {
  it('an agent error whose getters throw still fails its task and frees the agent', async () => {
    const o = await start({ pools: [] });
    const hostile = new Error('hostile');
    for (const key of ['retryAfterMs', 'retryAfter', 'headers', 'response', 'retryable', 'code']) {
      Object.defineProperty(hostile, key, {
        get: () => {
          throw new Error(`getter ${key}`);
        },
      });
    }
    o.registerAgent({ execute: () => Promise.reject(hostile) }, { id: 'a', capabilities: ['x'] });
    await expect(o.submit({ type: 't', requires: ['x'], maxAttempts: 2 })).rejects.toMatchObject({
      code: 'TASK_DEAD_LETTERED',
    });
    expect(o.agent('a')).toMatchObject({ state: 'IDLE', running: 0 });
    expect(o.stats()).toMatchObject({ running: 0, waiting: 0, backingOff: 0, deadLettered: 1 });
  });
});

describe('dependency units()', () => {
  it.each([Number.NaN, -1, Infinity, '3' as unknown as number])(
    'a units() result of %s rejects the call and leaves the limit usable',
    async (bad) => {
      const o = await start({ pools: [] });
      let good = true;
      const guarded = o.resources.breaker('vendor', async (n: number) => n * 2, {
        rateLimit: { requests: 100, units: 1_000, intervalMs: 1_000 },
        units: () => (good ? 1 : bad),
      });
      good = false;
      const err = await rejectionOf(guarded(1));
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).message).toMatch(/units\(\) of breaker "vendor" to return a finite number >= 0/);
      good = true;
      await expect(guarded(2)).resolves.toBe(4);
      expect(o.stats().resources.rateLimits['vendor']).toMatchObject({ paused: false, waiting: 0 });
    },
  );
});

describe('pressure sampling', () => {
  it('a sample that never returns is reported and sampling goes on', async () => {
    let hang = false;
    let rss = 100;
    const sampler = {
      sample: (): ResourceSample | Promise<ResourceSample> =>
        hang ? new Promise<ResourceSample>(() => {}) : { rssBytes: rss, heapUsedBytes: 1, cpuPercent: Number.NaN },
    };
    const o = await start({ pools: [], pressure: { memoryLimitBytes: 1_000, sampleIntervalMs: 30, sampler } });
    const failures: unknown[] = [];
    o.on('pressure:sample-failed', ({ error }) => failures.push(error));
    rss = 950;
    await until(() => o.resources.pressure === 'elevated');
    hang = true;
    await until(() => failures.length > 0);
    expect(String(failures[0])).toMatch(/did not return within 30 ms/);
    hang = false;
    rss = 100;
    await until(() => o.resources.pressure === 'normal');
  });

  it('under pressure a pool with no agent still gets one for the work it accepted', async () => {
    let rss = 950;
    const sampler = { sample: () => ({ rssBytes: rss, heapUsedBytes: 1, cpuPercent: Number.NaN }) };
    const o = await start({
      pools: [{ role: 'w', capabilities: ['w'], minAgents: 0, maxAgents: 3, warmSpares: 0, create: echoAgent }],
      pressure: { memoryLimitBytes: 1_000, sampleIntervalMs: 60_000, sampler },
    });
    expect(o.resources.pressure).toBe('elevated');
    await expect(
      Promise.all([1, 2, 3].map((payload) => o.submit({ type: 't', requires: ['w'], payload }))),
    ).resolves.toEqual(['w-1:1', 'w-1:2', 'w-1:3']);
    // One agent for the pool, not one per task: pressure still stops growth beyond that.
    expect(o.stats().pools[0]).toMatchObject({ members: 1, spares: 0 });
    rss = 100;
  });
});

describe('options that could never work', () => {
  const refused = (options: OrchestratorOptions): ValidationError => {
    try {
      new UnifiedOrchestrator(options);
    } catch (err) {
      return err as ValidationError;
    }
    throw new Error('expected a ValidationError');
  };

  it('refuses a rate limit of less than one request per interval', () => {
    const err = refused({ rateLimits: { llm: { requests: 0.5, intervalMs: 1_000 } } });
    expect(err).toMatchObject({ code: 'VALIDATION_ERROR', field: 'options.rateLimits.llm.requests' });
    expect(err.message).toMatch(/>= 1 \(or Infinity\), got 0.5/);
  });

  it('refuses a hysteresis that would keep pressure from ever stepping down to normal', () => {
    const err = refused({ pressure: { elevatedAt: 0.3, hysteresis: 0.4 } });
    expect(err).toMatchObject({ code: 'VALIDATION_ERROR', field: 'options.pressure.hysteresis' });
    expect(err.message).toMatch(/\(0.4\) to be below `options.pressure.elevatedAt` \(0.3\)/);
  });

  it('refuses a maxRetryAfterMs a timer cannot hold', () => {
    expect(refused({ retry: { maxRetryAfterMs: 2 ** 31 } })).toMatchObject({ field: 'options.retry.maxRetryAfterMs' });
  });
});
