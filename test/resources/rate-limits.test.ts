/**
 * Rate limits on capabilities and named dependencies: work over the limit waits (it is not failed), cost reported
 * after the fact puts the units bucket into debt, and a retry-after error pauses the limit and puts the work back
 * without spending an attempt.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  OrchestratorStoppedError,
  UnifiedOrchestrator,
  ValidationError,
  type Agent,
  type OrchestratorEvents,
  type OrchestratorOptions,
  type RateLimitOptions,
} from 'unified-orchestrator';
import { echoAgent, manualAgent, rejectionOf, until, type Call } from '../engine/helpers.js';

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
});

async function start(options: OrchestratorOptions): Promise<UnifiedOrchestrator> {
  const o = new UnifiedOrchestrator({ pools: [], pressure: false, ...options });
  live.push(o);
  await o.start();
  return o;
}

/** An event log of the kinds these tests care about, in the order they happened. */
type Entry =
  | { kind: 'started'; taskId: string; at: number }
  | { kind: 'queued'; taskId: string }
  | { kind: 'retrying'; taskId: string; delayMs: number; reason: string }
  | { kind: 'completed'; taskId: string }
  | { kind: 'failed'; taskId: string; outcome: string }
  | { kind: 'paused'; name: string; ms: number }
  | { kind: 'resumed'; name: string };

function log(o: UnifiedOrchestrator): Entry[] {
  const out: Entry[] = [];
  o.on('task:started', (e) => out.push({ kind: 'started', taskId: e.taskId, at: performance.now() }));
  o.on('task:queued', (e) => out.push({ kind: 'queued', taskId: e.taskId }));
  o.on('task:retrying', (e) => out.push({ kind: 'retrying', taskId: e.taskId, delayMs: e.delayMs, reason: e.reason }));
  o.on('task:completed', (e) => out.push({ kind: 'completed', taskId: e.taskId }));
  o.on('task:failed', (e) => out.push({ kind: 'failed', taskId: e.taskId, outcome: e.outcome }));
  o.on('ratelimit:paused', (e) => out.push({ kind: 'paused', name: e.name, ms: e.ms }));
  o.on('ratelimit:resumed', (e) => out.push({ kind: 'resumed', name: e.name }));
  return out;
}

function kinds(entries: Entry[], kind: Entry['kind']): Entry[] {
  return entries.filter((e) => e.kind === kind);
}

/** A rate-limit error, as a vendor SDK would throw it. */
function tooMany(retryAfterMs: number, message = '429'): Error {
  return Object.assign(new Error(message), { retryAfterMs });
}

/** Throws a retry-after error on the first `failures` calls of each task (by task id), then answers its payload. */
function pacedAgent(failures: number, retryAfterMs: number, calls: Map<string, number>): Agent {
  return {
    execute(ctx): unknown {
      const n = (calls.get(ctx.taskId) ?? 0) + 1;
      calls.set(ctx.taskId, n);
      if (n <= failures) throw tooMany(retryAfterMs);
      return ctx.payload;
    },
  };
}

describe('capability rate limits: requests', () => {
  it('holds tasks over the limit in the queue and starts them as the bucket refills; all complete', async () => {
    const o = await start({ rateLimits: { llm: { requests: 2, intervalMs: 200 } } });
    const entries = log(o);
    for (let i = 0; i < 6; i++) o.registerAgent(echoAgent(), { id: `a${i}`, capabilities: ['llm'] });

    const results = Array.from({ length: 6 }, (_, i) => o.submit({ type: 't', requires: ['llm'], payload: i }));
    // The bucket holds two: two start at once, four wait (queued, not failed), though four agents are free.
    expect(kinds(entries, 'started')).toHaveLength(2);
    expect(kinds(entries, 'queued')).toHaveLength(4);
    expect(o.stats()).toMatchObject({ running: 2, waiting: 4, failed: 0 });
    expect(o.stats().resources.rateLimits['llm']).toMatchObject({ name: 'llm', requestsAvailable: 0, paused: false });

    const values = await Promise.all(results);
    expect(values.map((v) => String(v).split(':')[1])).toEqual(['0', '1', '2', '3', '4', '5']);
    const starts = kinds(entries, 'started').map((e) => (e as { at: number }).at);
    expect(starts).toHaveLength(6);
    // Never three starts in less than the time the bucket takes to refill one request (100 ms; loose bound).
    for (let i = 0; i + 2 < starts.length; i++) expect(starts[i + 2]! - starts[i]!).toBeGreaterThan(50);
    expect(o.stats()).toMatchObject({ completed: 6, failed: 0, waiting: 0 });
    await o.stop();
  });

  it('tasks held only by a rate limit do not make a pool create agents', async () => {
    let created = 0;
    const o = await start({
      pools: [
        {
          role: 'w',
          capabilities: ['llm'],
          minAgents: 2,
          maxAgents: 10,
          warmSpares: 0,
          create: () => (created++, echoAgent()),
        },
      ],
      rateLimits: { llm: { requests: 1, intervalMs: 60 } },
      scaleIntervalMs: 10,
    });
    const scaled: Array<OrchestratorEvents['pool:scaled']> = [];
    o.on('pool:scaled', (e) => scaled.push(e));
    expect(created).toBe(2);
    const results = await Promise.all(
      Array.from({ length: 4 }, (_, i) => o.submit({ type: 't', requires: ['llm'], payload: i })),
    );
    expect(results).toHaveLength(4);
    expect(created).toBe(2);
    expect(scaled).toEqual([]);
    await o.stop();
  });

  it('limits only the capability it names', async () => {
    const o = await start({ rateLimits: { llm: { requests: 1, intervalMs: 10_000 } } });
    o.registerAgent(echoAgent(), { id: 'a', capabilities: ['llm', 'other'], concurrency: 10 });
    await o.submit({ type: 't', requires: ['llm'], payload: 'first' });
    const held = o.submit({ type: 't', requires: ['llm'], payload: 'held' });
    // Not held: other capabilities, and tasks with no requirement.
    await expect(o.submit({ type: 't', requires: ['other'], payload: 'o' })).resolves.toBe('a:o');
    await expect(o.submit({ type: 't', payload: 'none' })).resolves.toBe('a:none');
    expect(o.stats()).toMatchObject({ waiting: 1 });
    await o.stop({ drain: false });
    expect(await rejectionOf(held)).toMatchObject({ code: 'TASK_CANCELLED' });
  });
});

describe('capability rate limits: units', () => {
  it('reported cost charges the units bucket, into debt, and later tasks wait until it is paid back', async () => {
    const o = await start({ rateLimits: { llm: { units: 10, intervalMs: 100 } } });
    const entries = log(o);
    const unitsAtStart: number[] = [];
    o.on('task:started', () => unitsAtStart.push(o.stats().resources.rateLimits['llm']!.unitsAvailable));
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['llm'], concurrency: 5 });

    const big = o.submit({ type: 't', requires: ['llm'], payload: 'big' });
    expect(calls).toHaveLength(1);
    calls[0]!.ctx.reportCost(30);
    const snapshot = o.stats().resources.rateLimits['llm']!;
    expect(snapshot.unitsAvailable).toBeLessThan(0);
    expect(snapshot.requestsAvailable).toBe(Infinity);

    // A free slot, but no units: the next task waits.
    const next = o.submit({ type: 't', requires: ['llm'], payload: 'next' });
    expect(calls).toHaveLength(1);
    expect(o.stats().waiting).toBe(1);
    calls[0]!.resolve('big done');
    await expect(big).resolves.toBe('big done');
    expect(calls).toHaveLength(1); // finishing frees the agent, not the units

    await until(() => calls.length === 2);
    expect(unitsAtStart).toHaveLength(2);
    expect(unitsAtStart[1]).toBeGreaterThan(0);
    calls[1]!.resolve('next done');
    await expect(next).resolves.toBe('next done');
    expect(kinds(entries, 'failed')).toEqual([]);
    await o.stop();
  });
});

describe('retry-after on a rate-limited capability', () => {
  it('pauses the capability, puts the task back without spending an attempt, and runs it again', async () => {
    const o = await start({ rateLimits: { llm: { requests: 100, intervalMs: 1_000 } } });
    const entries = log(o);
    const calls = new Map<string, number>();
    o.registerAgent(pacedAgent(1, 150, calls), { id: 'a', capabilities: ['llm'], concurrency: 5 });

    // maxAttempts is 1 (the default): the deferral does not count against it.
    const handle = o.delegate<string>({ type: 't', requires: ['llm'], payload: 'done' });
    await until(() => entries.some((e) => e.kind === 'paused'));
    expect(o.stats().resources.rateLimits['llm']).toMatchObject({ paused: true });
    expect(kinds(entries, 'paused')).toEqual([{ kind: 'paused', name: 'llm', ms: 150 }]);
    expect(kinds(entries, 'retrying')).toEqual([
      { kind: 'retrying', taskId: handle.id, delayMs: 150, reason: 'rate-limit' },
    ]);

    // Work submitted during the pause is held too.
    const during = o.delegate<string>({ type: 't', requires: ['llm'], payload: 'during' });
    expect(o.stats()).toMatchObject({ running: 0, waiting: 2 });

    await expect(handle.result).resolves.toBe('done');
    // `during` fails its first call too (every task's first call is a 429), is put back, and completes.
    await expect(during.result).resolves.toBe('during');
    expect(calls.get(handle.id)).toBe(2);
    expect(calls.get(during.id)).toBe(2);

    const order = entries.map((e) =>
      e.kind === 'started' || e.kind === 'completed' ? `${e.kind}:${e.taskId === handle.id ? 'h' : 'd'}` : e.kind,
    );
    const resumed = order.indexOf('resumed');
    expect(order.indexOf('paused')).toBeLessThan(resumed);
    // After the first attempt, nothing started before the pause ended.
    expect(order.slice(order.indexOf('paused'), resumed)).not.toContain('started:h');
    expect(order.slice(order.indexOf('paused'), resumed)).not.toContain('started:d');
    expect(order.indexOf('started:d')).toBeGreaterThan(resumed);
    expect(kinds(entries, 'resumed').every((e) => (e as { name: string }).name === 'llm')).toBe(true);
    expect(o.stats()).toMatchObject({ completed: 2, failed: 0, deadLettered: 0, waiting: 0, running: 0 });
    expect(o.stats().resources.rateLimits['llm']).toMatchObject({ paused: false });
    await o.stop();
  });

  it('loses no task: every submitted task resolves when many are paced', async () => {
    const o = await start({ rateLimits: { llm: { requests: 50, intervalMs: 100 } } });
    const calls = new Map<string, number>();
    o.registerAgent(pacedAgent(2, 20, calls), { id: 'a', capabilities: ['llm'], concurrency: 3 });
    o.registerAgent(pacedAgent(1, 30, calls), { id: 'b', capabilities: ['llm'], concurrency: 3 });
    const results = Array.from({ length: 12 }, (_, i) => o.submit({ type: 't', requires: ['llm'], payload: i }));
    await expect(Promise.all(results)).resolves.toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(o.stats()).toMatchObject({
      submitted: 12,
      completed: 12,
      failed: 0,
      cancelled: 0,
      deadLettered: 0,
      waiting: 0,
      running: 0,
    });
    await o.stop();
  });

  it("a retry-after does not count against the agent's breaker", async () => {
    const o = await start({
      rateLimits: { llm: { requests: 100, intervalMs: 1_000 } },
      agentBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 },
    });
    const breakerEvents: Array<OrchestratorEvents['breaker:state']> = [];
    o.on('breaker:state', (e) => breakerEvents.push(e));
    const calls = new Map<string, number>();
    o.registerAgent(pacedAgent(1, 10, calls), { id: 'a', capabilities: ['llm'] });
    await Promise.all(Array.from({ length: 4 }, (_, i) => o.submit({ type: 't', requires: ['llm'], payload: i })));
    expect(breakerEvents).toEqual([]);
    expect(o.agent('a')).toMatchObject({ breaker: 'closed', state: 'IDLE' });
    await o.stop();
  });

  it('after maxDeferrals the retry-after error is final', async () => {
    const o = await start({
      rateLimits: { llm: { intervalMs: 1_000, maxDeferrals: 2 }, strict: { intervalMs: 1_000, maxDeferrals: 0 } },
    });
    const entries = log(o);
    const calls = new Map<string, number>();
    o.registerAgent(pacedAgent(Infinity, 5, calls), { id: 'a', capabilities: ['llm', 'strict'] });

    const handle = o.delegate({ type: 't', requires: ['llm'] });
    const error = await rejectionOf(handle.result);
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ message: '429', retryAfterMs: 5 });
    expect(calls.get(handle.id)).toBe(3); // the first call and two deferrals
    expect(kinds(entries, 'retrying')).toHaveLength(2);
    expect(kinds(entries, 'failed')).toEqual([{ kind: 'failed', taskId: handle.id, outcome: 'failed' }]);

    const strict = o.delegate({ type: 't', requires: ['strict'] });
    expect(await rejectionOf(strict.result)).toMatchObject({ message: '429' });
    expect(calls.get(strict.id)).toBe(1);
    await o.stop();
  });
});

describe('rate limit stats', () => {
  it('stats().resources.rateLimits has a snapshot per limit', async () => {
    const o = await start({
      rateLimits: { llm: { requests: 3, units: 100, intervalMs: 1_000 }, search: { requests: 5, intervalMs: 1_000 } },
    });
    expect(o.stats().resources.rateLimits).toEqual({
      llm: { name: 'llm', requestsAvailable: 3, unitsAvailable: 100, paused: false, waiting: 0 },
      search: { name: 'search', requestsAvailable: 5, unitsAvailable: Infinity, paused: false, waiting: 0 },
    });
    o.registerAgent(echoAgent(), { id: 'a', capabilities: ['llm'] });
    await o.submit({ type: 't', requires: ['llm'] });
    expect(o.stats().resources.rateLimits['llm']!.requestsAvailable).toBe(2);
    await o.stop();
  });

  it('validates rate limit options and names the field', () => {
    const cases: Array<[Record<string, RateLimitOptions>, string]> = [
      [{ llm: {} as RateLimitOptions }, 'options.rateLimits.llm.intervalMs'],
      [{ llm: { intervalMs: 0 } }, 'options.rateLimits.llm.intervalMs'],
      [{ llm: { requests: 0, intervalMs: 100 } }, 'options.rateLimits.llm.requests'],
      [{ llm: { units: -1, intervalMs: 100 } }, 'options.rateLimits.llm.units'],
      [{ llm: { intervalMs: 100, maxDeferrals: 1.5 } }, 'options.rateLimits.llm.maxDeferrals'],
      [{ llm: { intervalMs: 100, burst: 2 } as RateLimitOptions }, 'options.rateLimits.llm.burst'],
    ];
    for (const [rateLimits, field] of cases) {
      let error: unknown;
      try {
        new UnifiedOrchestrator({ pressure: false, rateLimits });
      } catch (e) {
        error = e;
      }
      expect(error, field).toBeInstanceOf(ValidationError);
      expect(error, field).toMatchObject({ field });
    }
  });
});

describe('dependency rate limits', () => {
  it('concurrent calls wait their turn and all resolve, in order', async () => {
    const o = await start({});
    const calledAt: Array<{ arg: number; at: number }> = [];
    const vendor = o.resources.breaker(
      'vendor',
      async (n: number) => (calledAt.push({ arg: n, at: performance.now() }), n * 10),
      {
        rateLimit: { requests: 1, intervalMs: 100 },
      },
    );
    const results = [vendor(1), vendor(2), vendor(3)];
    expect(o.stats().resources.rateLimits['vendor']).toMatchObject({
      name: 'vendor',
      requestsAvailable: 0,
      waiting: 2,
    });
    await expect(Promise.all(results)).resolves.toEqual([10, 20, 30]);
    expect(calledAt.map((c) => c.arg)).toEqual([1, 2, 3]);
    // One request per 100 ms: the third call came well after the first (loose bound).
    expect(calledAt[2]!.at - calledAt[0]!.at).toBeGreaterThan(100);
    expect(o.stats().resources.rateLimits['vendor']).toMatchObject({ waiting: 0 });
    expect(o.stats().resources.breakers.dependencies).toEqual({ vendor: 'closed' });
    await o.stop();
  });

  it('a retry-after from the dependency pauses it and the call is made again transparently', async () => {
    const o = await start({});
    const entries = log(o);
    const breakerEvents: Array<OrchestratorEvents['breaker:state']> = [];
    o.on('breaker:state', (e) => breakerEvents.push(e));
    let n = 0;
    const vendor = o.resources.breaker(
      'vendor',
      async (prompt: string) => {
        n++;
        if (n === 1) throw tooMany(60);
        return `${prompt}: answer ${n}`;
      },
      { rateLimit: { requests: 10, intervalMs: 100 } },
    );
    await expect(vendor('q')).resolves.toBe('q: answer 2');
    expect(n).toBe(2);
    expect(entries).toEqual([
      { kind: 'paused', name: 'vendor', ms: 60 },
      { kind: 'resumed', name: 'vendor' },
    ]);
    expect(breakerEvents).toEqual([]);
    expect(vendor.state).toBe('closed');
    await o.stop();
  });

  it('a dependency without a rate limit can still be paused by a retry-after; after maxDeferrals the error is final', async () => {
    const o = await start({});
    const entries = log(o);
    let calls = 0;
    const unlimited = o.resources.breaker('plain', async () => {
      calls++;
      if (calls === 1) throw tooMany(20);
      return 'ok';
    });
    await expect(unlimited()).resolves.toBe('ok');
    expect(calls).toBe(2);
    expect(kinds(entries, 'paused')).toEqual([{ kind: 'paused', name: 'plain', ms: 20 }]);

    let stubborn = 0;
    const alwaysBusy = o.resources.breaker(
      'busy',
      async () => {
        stubborn++;
        throw tooMany(5, 'still busy');
      },
      { rateLimit: { requests: 100, intervalMs: 100, maxDeferrals: 2 } },
    );
    expect(await rejectionOf(alwaysBusy())).toMatchObject({ message: 'still busy' });
    expect(stubborn).toBe(3);
    await o.stop();
  });

  it('a capability limit and a dependency of the same name share one budget', async () => {
    const o = await start({ rateLimits: { llm: { requests: 1, intervalMs: 150 } } });
    o.registerAgent(echoAgent(), { id: 'a', capabilities: ['llm'] });
    expect(() => o.resources.breaker('llm', async () => 1, { rateLimit: { requests: 5, intervalMs: 100 } })).toThrow(
      ValidationError,
    );
    const client = o.resources.breaker('llm', async () => 'called');
    await o.submit({ type: 't', requires: ['llm'] });
    const call = client();
    expect(o.stats().resources.rateLimits['llm']).toMatchObject({ requestsAvailable: 0, waiting: 1 });
    await expect(call).resolves.toBe('called');
    await o.stop();
  });

  it('stop() rejects calls still waiting for their turn with OrchestratorStoppedError', async () => {
    const o = await start({});
    const vendor = o.resources.breaker('vendor', async () => 'ok', { rateLimit: { requests: 1, intervalMs: 60_000 } });
    await expect(vendor()).resolves.toBe('ok');
    const waiting = vendor();
    expect(o.stats().resources.rateLimits['vendor']).toMatchObject({ waiting: 1 });
    await o.stop();
    expect(await rejectionOf(waiting)).toBeInstanceOf(OrchestratorStoppedError);
    expect(await rejectionOf(vendor())).toBeInstanceOf(OrchestratorStoppedError);
  });
});
