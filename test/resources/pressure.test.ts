/**
 * Memory and CPU pressure: levels with hysteresis, the `pressure:changed` event, what pools shed and refuse
 * under pressure, what the engine refuses under critical pressure, a failing sampler, and one test on the real
 * default sampler with real memory.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ResourcePressureError,
  UnifiedOrchestrator,
  type OrchestratorEvents,
  type OrchestratorOptions,
  type PressureOptions,
  type ResourceSample,
  type ResourceSampler,
} from 'unified-orchestrator';
import { nextPressureLevel } from '../../src/resources/pressure.js';
import { echoAgent, manualAgent, rejectionOf, until, type Call } from '../engine/helpers.js';
import { wait } from '../support/agents.js';

/** A sampler whose readings the test sets. */
class FakeSampler implements ResourceSampler {
  rssBytes = 100;
  heapUsedBytes = 50;
  cpuPercent = Number.NaN;
  /** When set, `sample()` fails with it (thrown, or as a rejection when `async`). */
  failWith: Error | undefined = undefined;
  async = false;
  /** When set, `sample()` returns it instead of a reading. */
  junk: unknown = undefined;
  samples = 0;
  closed = 0;

  sample(): ResourceSample | Promise<ResourceSample> {
    this.samples++;
    if (this.failWith !== undefined) {
      if (this.async) return Promise.reject(this.failWith);
      throw this.failWith;
    }
    if (this.junk !== undefined) return this.junk as ResourceSample;
    const reading = { rssBytes: this.rssBytes, heapUsedBytes: this.heapUsedBytes, cpuPercent: this.cpuPercent };
    return this.async ? Promise.resolve(reading) : reading;
  }

  close(): void {
    this.closed++;
  }
}

/** Memory limit of the fake: `rssBytes` is then the memory ratio in thousandths. */
const LIMIT = 1_000;

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
});

/** An orchestrator (not started) sampling `sampler`; samples are taken when the test asks (the interval is long). */
function make(
  sampler: ResourceSampler,
  pressure: PressureOptions = {},
  extra: OrchestratorOptions = {},
): UnifiedOrchestrator {
  const o = new UnifiedOrchestrator({
    pools: [],
    pressure: { memoryLimitBytes: LIMIT, sampleIntervalMs: 60_000, sampler, ...pressure },
    ...extra,
  });
  live.push(o);
  return o;
}

/** The internal monitor, to take a sample now instead of waiting for the interval. */
function monitor(o: UnifiedOrchestrator): { sampleNow(): Promise<void> } {
  const m = (o.resources as unknown as { pressureMonitor?: { sampleNow(): Promise<void> } }).pressureMonitor;
  if (!m) throw new Error('pressure sampling is off');
  return m;
}

/** Sets the fake's reading and applies one sample. */
async function load(
  o: UnifiedOrchestrator,
  sampler: FakeSampler,
  rssBytes: number,
  cpuPercent = Number.NaN,
): Promise<void> {
  sampler.rssBytes = rssBytes;
  sampler.cpuPercent = cpuPercent;
  await monitor(o).sampleNow();
}

function record<E extends keyof OrchestratorEvents>(o: UnifiedOrchestrator, event: E): Array<OrchestratorEvents[E]> {
  const out: Array<OrchestratorEvents[E]> = [];
  o.on(event, (e) => out.push(e));
  return out;
}

/** Settles every unsettled call as it arrives, until `n` calls were settled. */
async function settleAll(calls: Call[], n: number, value: (c: Call) => unknown = (c) => c.ctx.payload): Promise<void> {
  await until(() => {
    for (const c of calls) if (!c.settled) c.resolve(value(c));
    return calls.length >= n && calls.every((c) => c.settled);
  });
}

describe('nextPressureLevel', () => {
  it('goes up on crossing a threshold and down only `hysteresis` below it', () => {
    const up: Array<[Parameters<typeof nextPressureLevel>[0], number, string]> = [
      ['normal', 0.5, 'normal'],
      ['normal', 0.849, 'normal'],
      ['normal', 0.85, 'elevated'],
      ['normal', 0.99, 'elevated'],
      ['normal', 1, 'critical'],
      ['normal', 3, 'critical'],
      ['elevated', 1, 'critical'],
    ];
    const down: typeof up = [
      ['elevated', 0.84, 'elevated'],
      ['elevated', 0.81, 'elevated'],
      ['elevated', 0.801, 'elevated'],
      ['elevated', 0.799, 'normal'],
      ['elevated', 0.2, 'normal'],
      ['critical', 0.99, 'critical'],
      ['critical', 0.951, 'critical'],
      ['critical', 0.949, 'elevated'],
      ['critical', 0.81, 'elevated'],
      ['critical', 0.799, 'normal'],
    ];
    for (const [current, ratio, expected] of [...up, ...down]) {
      expect(nextPressureLevel(current, ratio, 0.85, 0.05), `${current} at ${ratio}`).toBe(expected);
    }
  });

  it('with no hysteresis steps down as soon as the ratio is under the threshold', () => {
    expect(nextPressureLevel('elevated', 0.849, 0.85, 0)).toBe('normal');
    expect(nextPressureLevel('critical', 0.999, 0.85, 0)).toBe('elevated');
  });
});

describe('pressure levels', () => {
  it('memory moves the level at once; each change is a pressure:changed event with the sample that moved it', async () => {
    const sampler = new FakeSampler();
    const o = make(sampler);
    const events = record(o, 'pressure:changed');
    await o.start();
    expect(sampler.samples).toBe(1); // the first sample comes with start()
    expect(o.resources.pressure).toBe('normal');
    expect(o.stats().resources.pressure).toEqual({
      level: 'normal',
      rssBytes: 100,
      heapUsedBytes: 50,
      cpuPercent: Number.NaN,
    });

    sampler.heapUsedBytes = 77;
    await load(o, sampler, 900);
    expect(o.resources.pressure).toBe('elevated');
    expect(events).toEqual([
      { from: 'normal', to: 'elevated', ratio: 0.9, rssBytes: 900, heapUsedBytes: 77, cpuPercent: Number.NaN },
    ]);
    expect(o.stats().resources.pressure).toEqual({
      level: 'elevated',
      rssBytes: 900,
      heapUsedBytes: 77,
      cpuPercent: Number.NaN,
    });

    await load(o, sampler, 1_200);
    expect(o.resources.pressure).toBe('critical');
    expect(o.stats().resources.pressure.level).toBe('critical');
    expect(events[1]).toMatchObject({ from: 'elevated', to: 'critical', ratio: 1.2, rssBytes: 1_200 });

    // Same level again: no event.
    await load(o, sampler, 1_100);
    expect(events).toHaveLength(2);

    await load(o, sampler, 100);
    expect(o.resources.pressure).toBe('normal');
    expect(events[2]).toMatchObject({ from: 'critical', to: 'normal', ratio: 0.1 });
    expect(events).toHaveLength(3);
    await o.stop();
  });

  it('does not flap around a threshold: it steps down only `hysteresis` below it', async () => {
    const sampler = new FakeSampler();
    const o = make(sampler, { elevatedAt: 0.85, hysteresis: 0.05 });
    const events = record(o, 'pressure:changed');
    await o.start();
    const levels: string[] = [];
    for (const rss of [860, 840, 870, 820, 851, 810, 849, 801]) {
      await load(o, sampler, rss);
      levels.push(o.resources.pressure);
    }
    expect(levels).toEqual(Array(8).fill('elevated'));
    expect(events.map((e) => e.to)).toEqual(['elevated']);

    await load(o, sampler, 799);
    expect(o.resources.pressure).toBe('normal');

    // The same around the critical threshold.
    for (const rss of [1_000, 980, 1_010, 960, 999]) {
      await load(o, sampler, rss);
      expect(o.resources.pressure).toBe('critical');
    }
    await load(o, sampler, 949);
    expect(o.resources.pressure).toBe('elevated');
    expect(events.map((e) => `${e.from}>${e.to}`)).toEqual([
      'normal>elevated',
      'elevated>normal',
      'normal>critical',
      'critical>elevated',
    ]);
    await o.stop();
  });

  it('CPU counts only when the last cpuSustainedSamples readings were all high (at the lowest of them); NaN is skipped', async () => {
    const sampler = new FakeSampler();
    const o = make(sampler, { cpuLimitPercent: 100, cpuSustainedSamples: 3 });
    const events = record(o, 'pressure:changed');
    await o.start(); // cpu NaN: not known yet

    await load(o, sampler, 100, 95);
    await load(o, sampler, 100, 95);
    expect(o.resources.pressure).toBe('normal'); // two busy samples are not a busy stretch
    await load(o, sampler, 100, Number.NaN);
    expect(o.resources.pressure).toBe('normal'); // NaN neither counts nor resets
    await load(o, sampler, 100, 95);
    expect(o.resources.pressure).toBe('elevated');
    expect(events[0]).toMatchObject({ from: 'normal', to: 'elevated', ratio: 0.95, cpuPercent: 95, rssBytes: 100 });

    // One idle sample brings the sustained CPU down at once.
    await load(o, sampler, 100, 10);
    expect(o.resources.pressure).toBe('normal');
    expect(events[1]).toMatchObject({ from: 'elevated', to: 'normal', ratio: 0.1 });

    // A single spike moves nothing.
    await load(o, sampler, 100, 400);
    await load(o, sampler, 100, 10);
    expect(o.resources.pressure).toBe('normal');

    // Three over the limit in a row: critical, at the lowest of the three.
    await load(o, sampler, 100, 130);
    await load(o, sampler, 100, 120);
    expect(o.resources.pressure).toBe('normal');
    await load(o, sampler, 100, 125);
    expect(o.resources.pressure).toBe('critical');
    expect(events[2]).toMatchObject({ from: 'normal', to: 'critical', ratio: 1.2, cpuPercent: 125 });

    // Memory still counts at once, and the level is the higher of the two ratios.
    await load(o, sampler, 1_500, 10);
    expect(o.resources.pressure).toBe('critical');
    expect(events).toHaveLength(3);
    await o.stop();
  });

  it('samples every sampleIntervalMs, and stop() stops sampling and closes the sampler', async () => {
    const sampler = new FakeSampler();
    const o = make(sampler, { sampleIntervalMs: 10 });
    const events = record(o, 'pressure:changed');
    await o.start();
    await until(() => sampler.samples >= 3);
    sampler.rssBytes = 950;
    await until(() => o.resources.pressure === 'elevated');
    expect(events).toHaveLength(1);
    expect(sampler.closed).toBe(0);

    await o.stop();
    expect(sampler.closed).toBe(1);
    const taken = sampler.samples;
    sampler.rssBytes = 100;
    await wait(60);
    expect(sampler.samples).toBe(taken);
    expect(events).toHaveLength(1);
  });

  it('a sampler that throws, rejects or returns junk is reported as pressure:sample-failed and leaves the level as it was', async () => {
    const sampler = new FakeSampler();
    const boom = new Error('sampler down');
    sampler.failWith = boom;
    const o = make(sampler);
    const failures = record(o, 'pressure:sample-failed');
    const changes = record(o, 'pressure:changed');
    // A failing first sample does not fail start().
    await o.start();
    expect(o.state).toBe('running');
    expect(failures).toEqual([{ error: boom }]);
    expect(o.resources.pressure).toBe('normal');
    expect(o.stats().resources.pressure.rssBytes).toBeUndefined();

    sampler.failWith = undefined;
    await load(o, sampler, 900);
    expect(o.resources.pressure).toBe('elevated');

    // Thrown, rejected, junk: each reported; the level stays elevated.
    const rejected = new Error('async failure');
    sampler.failWith = rejected;
    sampler.async = true;
    await load(o, sampler, 100);
    sampler.failWith = undefined;
    sampler.async = false;
    sampler.junk = { rssBytes: 'lots', heapUsedBytes: 1, cpuPercent: 1 };
    await load(o, sampler, 100);
    sampler.junk = null;
    await load(o, sampler, 100);
    expect(failures.map((f) => f.error)).toEqual([boom, rejected, expect.any(TypeError), expect.any(TypeError)]);
    expect(o.resources.pressure).toBe('elevated');
    expect(o.stats().resources.pressure.rssBytes).toBe(900); // the last good sample
    expect(changes).toHaveLength(1);

    // The orchestrator still works, and a good sample moves the level again.
    o.registerAgent(echoAgent(), { id: 'a', capabilities: ['x'] });
    await expect(o.submit({ type: 't', requires: ['x'], payload: 1 })).resolves.toBe('a:1');
    sampler.junk = undefined;
    await load(o, sampler, 100);
    expect(o.resources.pressure).toBe('normal');
    expect(changes).toHaveLength(2);
    await o.stop();
  });

  it('with pressure: false nothing is sampled and the level is always normal', async () => {
    const o = new UnifiedOrchestrator({ pools: [], pressure: false });
    live.push(o);
    const changes = record(o, 'pressure:changed');
    await o.start();
    expect(o.resources.pressure).toBe('normal');
    expect((o.resources as unknown as { pressureMonitor: unknown }).pressureMonitor).toBeUndefined();
    expect(o.stats().resources.pressure).toEqual({
      level: 'normal',
      rssBytes: undefined,
      heapUsedBytes: undefined,
      cpuPercent: undefined,
    });
    o.registerAgent(echoAgent(), { id: 'a', capabilities: ['x'] });
    await expect(o.submit({ type: 't', requires: ['x'], priority: -1_000, payload: 'low' })).resolves.toBe('a:low');
    await wait(20);
    expect(changes).toEqual([]);
    await o.stop();
  });
});

describe('critical pressure sheds low-priority work', () => {
  it('refuses tasks below the priority floor, accepts those at or above it, and lets accepted tasks finish', async () => {
    const sampler = new FakeSampler();
    const o = make(sampler);
    await o.start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });

    // Accepted before the pressure: one running, one waiting, both background work.
    const running = o.submit({ type: 't', requires: ['x'], priority: -5, payload: 'running' });
    const waiting = o.submit({ type: 't', requires: ['x'], priority: -5, payload: 'waiting' });
    expect(o.stats()).toMatchObject({ running: 1, waiting: 1 });

    await load(o, sampler, 1_000);
    expect(o.resources.pressure).toBe('critical');

    const refused = await rejectionOf(o.submit({ type: 't', requires: ['x'], priority: -1 }));
    expect(refused).toBeInstanceOf(ResourcePressureError);
    expect(refused).toMatchObject({ code: 'RESOURCE_PRESSURE', level: 'critical', priority: -1, priorityFloor: 0 });
    // delegate refuses synchronously, with the same error.
    let thrown: unknown;
    try {
      o.delegate({ type: 't', requires: ['x'], priority: -3 });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ResourcePressureError);
    expect(thrown).toMatchObject({ level: 'critical', priority: -3, priorityFloor: 0 });
    expect(o.stats().rejected).toBe(2);

    // At and above the floor: accepted (the default priority is 0).
    const atFloor = o.submit({ type: 't', requires: ['x'], payload: 'at-floor' });
    const above = o.submit({ type: 't', requires: ['x'], priority: 4, payload: 'above' });
    expect(o.stats()).toMatchObject({ running: 1, waiting: 3 });

    await settleAll(calls, 4);
    await expect(Promise.all([running, waiting, atFloor, above])).resolves.toEqual([
      'running',
      'waiting',
      'at-floor',
      'above',
    ]);
    expect(o.stats()).toMatchObject({ completed: 4, rejected: 2, failed: 0, cancelled: 0 });

    // Back under the limit: background work is accepted again.
    await load(o, sampler, 100);
    expect(o.resources.pressure).toBe('normal');
    const later = o.submit({ type: 't', requires: ['x'], priority: -1, payload: 'later' });
    await settleAll(calls, 5);
    await expect(later).resolves.toBe('later');
    await o.stop();
  });

  it('honours a configured priorityFloor, and refuses nothing under elevated pressure', async () => {
    const sampler = new FakeSampler();
    const o = make(sampler, { priorityFloor: 5 });
    await o.start();
    o.registerAgent(echoAgent(), { id: 'a', capabilities: ['x'] });

    await load(o, sampler, 900);
    expect(o.resources.pressure).toBe('elevated');
    await expect(o.submit({ type: 't', requires: ['x'], priority: -10, payload: 'low' })).resolves.toBe('a:low');

    await load(o, sampler, 2_000);
    expect(o.resources.pressure).toBe('critical');
    const refused = await rejectionOf(o.submit({ type: 't', requires: ['x'], priority: 4 }));
    expect(refused).toBeInstanceOf(ResourcePressureError);
    expect(refused).toMatchObject({ level: 'critical', priority: 4, priorityFloor: 5 });
    await expect(o.submit({ type: 't', requires: ['x'], priority: 5, payload: 'five' })).resolves.toBe('a:five');
    await expect(o.submit({ type: 't', requires: ['x'], priority: 9, payload: 'nine' })).resolves.toBe('a:nine');
    await o.stop();
  });
});

describe('pools under pressure', () => {
  it('sheds spares and idle surplus members at once, creates nothing for demand, and refills once back to normal', async () => {
    const sampler = new FakeSampler();
    const calls: Call[] = [];
    let created = 0;
    const o = make(
      sampler,
      {},
      {
        pools: [
          {
            role: 'w',
            capabilities: ['w'],
            minAgents: 1,
            maxAgents: 4,
            warmSpares: 1,
            create: () => {
              created++;
              return manualAgent(calls);
            },
          },
        ],
        scaleIntervalMs: 10,
        retry: { baseDelayMs: 1, maxDelayMs: 5 },
      },
    );
    const scaled = record(o, 'pool:scaled');
    await o.start();
    expect(o.stats().pools[0]).toMatchObject({ members: 1, spares: 1 });
    expect(created).toBe(2);

    // Normal pressure: demand grows the pool (a spare is promoted, a member created, the spare refilled).
    const first = [1, 2, 3].map((n) => o.submit({ type: 't', requires: ['w'], payload: n }));
    await until(() => calls.length === 3);
    expect(scaled.filter((e) => e.reason === 'demand').length).toBeGreaterThanOrEqual(2);
    await settleAll(calls, 3);
    await expect(Promise.all(first)).resolves.toEqual([1, 2, 3]);
    await until(() => o.stats().pools[0]!.spares === 1 && o.stats().pools[0]!.members === 3);
    expect(o.stats().pools[0]).toMatchObject({ members: 3, available: 3, spares: 1 });

    // Elevated: the spare and the two idle members above the minimum go at once.
    scaled.length = 0;
    await load(o, sampler, 900);
    await until(() => scaled.length === 3);
    expect(scaled.every((e) => e.role === 'w' && e.reason === 'pressure')).toBe(true);
    expect(o.stats().pools[0]).toMatchObject({ members: 1, spares: 0, creating: 0 });
    expect(o.stats().agents).toMatchObject({ IDLE: 1, BUSY: 0 });
    const createdBefore = created;

    // Waiting demand creates nothing, not on submit and not on the scale ticks that follow.
    scaled.length = 0;
    const busy = o.submit({ type: 't', requires: ['w'], payload: 4 });
    const queued = o.submit({ type: 't', requires: ['w'], payload: 5 });
    await until(() => calls.length === 4);
    await wait(80);
    expect(created).toBe(createdBefore);
    expect(scaled).toEqual([]);
    expect(o.stats()).toMatchObject({ running: 1, waiting: 1 });
    expect(o.stats().pools[0]).toMatchObject({ members: 1, spares: 0, creating: 0 });

    // No spare to hand out: spawnAgent refuses to create one.
    const refused = await rejectionOf(o.spawnAgent('w'));
    expect(refused).toBeInstanceOf(ResourcePressureError);
    expect(refused).toMatchObject({
      code: 'RESOURCE_PRESSURE',
      level: 'elevated',
      priority: undefined,
      priorityFloor: undefined,
    });
    expect(created).toBe(createdBefore);

    // Back to normal: the spare is refilled and the waiting task gets an agent without the busy one finishing.
    await load(o, sampler, 100);
    expect(o.resources.pressure).toBe('normal');
    await until(() => calls.length === 5);
    expect(created).toBeGreaterThan(createdBefore);
    expect(scaled.some((e) => e.reason === 'demand' || e.reason === 'replace')).toBe(true);
    await settleAll(calls, 5);
    await expect(Promise.all([busy, queued])).resolves.toEqual([4, 5]);
    await until(() => o.stats().pools[0]!.spares === 1);
    await expect(o.spawnAgent('w')).resolves.toMatch(/^w-\d+$/);
    await o.stop();
  });

  it('a spare whose creation finishes under pressure is not kept as a spare', async () => {
    const sampler = new FakeSampler();
    let created = 0;
    let release: (() => void) | undefined;
    const o = make(
      sampler,
      {},
      {
        pools: [
          {
            role: 'w',
            capabilities: ['w'],
            minAgents: 1,
            maxAgents: 4,
            warmSpares: 1,
            create: async () => {
              // The third agent (the spare that replaces the one spawnAgent hands out) waits for the test.
              if (++created === 3) await new Promise<void>((resolve) => (release = resolve));
              return echoAgent();
            },
          },
        ],
        // No scale tick during the test: only the pressure handling itself may shed.
        scaleIntervalMs: 60_000,
      },
    );
    await o.start();
    await o.spawnAgent('w');
    await until(() => release !== undefined);
    await load(o, sampler, 900);
    expect(o.resources.pressure).toBe('elevated');
    release!();
    await until(() => o.stats().pools[0]!.creating === 0);
    await wait(20);
    expect(o.stats().pools[0]).toMatchObject({ spares: 0 });
    await o.stop();
  });

  it('a pool started under pressure pre-warms its minimum but no spares', async () => {
    const sampler = new FakeSampler();
    sampler.rssBytes = 900;
    let created = 0;
    const o = make(
      sampler,
      {},
      {
        pools: [
          {
            role: 'w',
            capabilities: ['w'],
            minAgents: 2,
            maxAgents: 4,
            warmSpares: 2,
            create: () => (created++, echoAgent()),
          },
        ],
      },
    );
    await o.start();
    expect(o.resources.pressure).toBe('elevated');
    expect(o.stats().pools[0]).toMatchObject({ members: 2, spares: 0 });
    expect(created).toBe(2);
    await expect(o.submit({ type: 't', requires: ['w'], payload: 'x' })).resolves.toMatch(/^w-\d+:x$/);

    await load(o, sampler, 100);
    await until(() => o.stats().pools[0]!.spares === 2);
    expect(created).toBe(4);
    await o.stop();
  });
});

describe('real pressure', () => {
  it('the default sampler sees real memory growth and critical pressure refuses background work', async () => {
    const MiB = 1024 * 1024;
    const o = new UnifiedOrchestrator({
      pools: [],
      // Headroom for what the worker allocates meanwhile (tests run in parallel); the ballast below is well past it.
      pressure: { memoryLimitBytes: process.memoryUsage().rss + 128 * MiB, sampleIntervalMs: 50 },
    });
    live.push(o);
    await o.start();
    o.registerAgent(echoAgent(), { id: 'a', capabilities: ['x'] });
    // start() waits for the first sample at most sampleIntervalMs (50 ms here): on a loaded machine it comes later.
    await until(() => o.stats().resources.pressure.rssBytes !== undefined, 2_500);
    expect(o.stats().resources.pressure.rssBytes).toBeGreaterThan(0);
    expect(o.resources.pressure).not.toBe('critical');

    let ballast: Buffer[] | undefined = [];
    try {
      // 320 MiB, filled (so every page is touched and counts in RSS), held until the end of the test.
      for (let i = 0; i < 20; i++) ballast.push(Buffer.alloc(16 * MiB, 1));
      await until(() => o.resources.pressure === 'critical', 2_500);
      expect(o.stats().resources.pressure.level).toBe('critical');
      const refused = await rejectionOf(o.submit({ type: 't', requires: ['x'], priority: -1 }));
      expect(refused).toBeInstanceOf(ResourcePressureError);
      expect(refused).toMatchObject({ level: 'critical', priority: -1, priorityFloor: 0 });
      await expect(o.submit({ type: 't', requires: ['x'], payload: 'must' })).resolves.toBe('a:must');
      expect(ballast.reduce((n, b) => n + b.length, 0)).toBe(320 * MiB);
    } finally {
      ballast = undefined;
      await o.stop();
    }
    expect(ballast).toBeUndefined();
  });
});
