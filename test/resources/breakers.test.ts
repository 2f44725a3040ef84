/**
 * Circuit breakers: the one every agent gets (its attempts' outcomes feed it; open quarantines the agent, half-open
 * lets one probe task through, closed returns it) and the named ones guarding the host's own dependencies.
 */
import { describe, expect, it, vi } from 'vitest';
import {
  BreakerOpenError,
  BudgetExceededError,
  OrchestratorStoppedError,
  TaskTimeoutError,
  ValidationError,
  type Agent,
  type BreakerOptions,
  type OrchestratorEvents,
  type OrchestratorOptions,
  type UnifiedOrchestrator,
} from 'unified-orchestrator';
import { flush, manualAgent, rejectionOf, startEach, tick, until, type Call } from '../engine/helpers.js';
import { recordingAgent } from '../support/agents.js';

type BreakerEvent = OrchestratorEvents['breaker:state'];

const start = startEach();

/** An orchestrator with no pools and no pressure sampling, whose agents get the given breaker. */
function withBreaker(
  agentBreaker: BreakerOptions | false,
  extra: OrchestratorOptions = {},
): Promise<UnifiedOrchestrator> {
  return start({ pools: [], pressure: false, agentBreaker, ...extra });
}

/** Records every `breaker:state` event. */
function breakerEvents(o: UnifiedOrchestrator): BreakerEvent[] {
  const events: BreakerEvent[] = [];
  o.on('breaker:state', (e) => events.push(e));
  return events;
}

/** Records which agent started each attempt. */
function startedOn(o: UnifiedOrchestrator): string[] {
  const agents: string[] = [];
  o.on('task:started', (e) => agents.push(e.agentId));
  return agents;
}

/** An agent that counts its calls and always rejects. */
function countingFailer(calls: { n: number }, error: () => unknown = () => new Error('boom')): Agent {
  return {
    execute: () => {
      calls.n++;
      return Promise.reject(error());
    },
  };
}

/** Submits a task that must fail, and returns its error. */
function failOnce(
  o: UnifiedOrchestrator,
  requires: readonly string[] = ['x'],
  extra: { timeoutMs?: number } = {},
): Promise<unknown> {
  return rejectionOf(o.submit({ type: 't', requires, ...extra }));
}

/** Fails tasks on the (only) capable agent until its breaker is open. */
async function trip(
  o: UnifiedOrchestrator,
  events: BreakerEvent[],
  agentId: string,
  requires: readonly string[] = ['x'],
): Promise<void> {
  for (let i = 0; i < 20 && !events.some((e) => e.agentId === agentId && e.to === 'open'); i++) {
    await failOnce(o, requires);
    await flush();
  }
  expect(o.agent(agentId)?.breaker).toBe('open');
}

describe('agent breaker: opening', () => {
  it('opens once the failure rate crosses the threshold with enough volume, and quarantines the agent', async () => {
    const o = await withBreaker({
      errorThresholdPercentage: 50,
      volumeThreshold: 2,
      windowMs: 10_000,
      resetTimeoutMs: 10_000,
    });
    const events = breakerEvents(o);
    const calls = { n: 0 };
    o.registerAgent(countingFailer(calls), { id: 'a', capabilities: ['x'] });
    expect(o.agent('a')).toMatchObject({ state: 'IDLE', breaker: 'closed' });

    // One failure is below the volume threshold: still closed and routable.
    expect(await failOnce(o)).toMatchObject({ message: 'boom' });
    await flush();
    expect(events).toEqual([]);
    expect(o.agent('a')).toMatchObject({ state: 'IDLE', breaker: 'closed' });

    await failOnce(o);
    await until(() => events.length > 0);
    expect(events).toEqual([{ breaker: 'agent:a', agentId: 'a', from: 'closed', to: 'open' }]);
    expect(o.agent('a')).toMatchObject({ state: 'UNHEALTHY', breaker: 'open' });
    const stats = o.stats();
    expect(stats.resources.breakers.agents).toEqual({ closed: 0, open: 1, 'half-open': 0 });
    expect(stats.agents.UNHEALTHY).toBe(1);
    expect(calls.n).toBe(2);
  });

  it('weighs successes too: a failure rate at the threshold keeps it closed, one above it opens it', async () => {
    const o = await withBreaker({
      errorThresholdPercentage: 50,
      volumeThreshold: 4,
      windowMs: 10_000,
      resetTimeoutMs: 10_000,
    });
    const events = breakerEvents(o);
    const script = [true, true, false, false, false];
    o.registerAgent(
      { execute: () => (script.shift() ? 'ok' : Promise.reject(new Error('boom'))) },
      { id: 'a', capabilities: ['x'] },
    );
    await expect(o.submit({ type: 't', requires: ['x'] })).resolves.toBe('ok');
    await expect(o.submit({ type: 't', requires: ['x'] })).resolves.toBe('ok');
    await failOnce(o);
    await failOnce(o);
    await flush();
    // 2 failures of 4 attempts = 50%, not above 50%.
    expect(events).toEqual([]);
    expect(o.agent('a')?.breaker).toBe('closed');
    await failOnce(o); // 3 of 5 = 60%
    await until(() => events.length > 0);
    expect(events.map((e) => e.to)).toEqual(['open']);
    expect(o.agent('a')?.state).toBe('UNHEALTHY');
  });

  it('counts an engine timeout as a failure', async () => {
    const o = await withBreaker({
      errorThresholdPercentage: 50,
      volumeThreshold: 1,
      windowMs: 10_000,
      resetTimeoutMs: 10_000,
    });
    const events = breakerEvents(o);
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const error = await failOnce(o, ['x'], { timeoutMs: 20 });
    expect(error).toBeInstanceOf(TaskTimeoutError);
    await until(() => events.length > 0);
    expect(events).toEqual([{ breaker: 'agent:a', agentId: 'a', from: 'closed', to: 'open' }]);
    expect(o.agent('a')).toMatchObject({ state: 'UNHEALTHY', breaker: 'open' });
  });

  it('counts a cancellation as nothing', async () => {
    const o = await withBreaker({
      errorThresholdPercentage: 50,
      volumeThreshold: 1,
      windowMs: 10_000,
      resetTimeoutMs: 10_000,
    });
    const events = breakerEvents(o);
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    for (let i = 0; i < 3; i++) {
      const handle = o.delegate({ type: 't', requires: ['x'] });
      expect(calls).toHaveLength(i + 1);
      expect(handle.cancel('changed my mind')).toBe(true);
      await expect(handle.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
      await flush();
    }
    expect(events).toEqual([]);
    expect(o.agent('a')).toMatchObject({ state: 'IDLE', breaker: 'closed' });
    // The breaker is live: a single real failure opens it with these thresholds.
    const handle = o.delegate({ type: 't', requires: ['x'] });
    calls[3]!.reject(new Error('boom'));
    await expect(handle.result).rejects.toThrow('boom');
    await until(() => events.length > 0);
    expect(o.agent('a')?.breaker).toBe('open');
  });

  const hinted: Array<[string, () => unknown]> = [
    ['retryAfterMs', () => Object.assign(new Error('429'), { retryAfterMs: 100 })],
    ['retryAfter in seconds', () => Object.assign(new Error('429'), { retryAfter: 1 })],
    ['a retry-after header', () => Object.assign(new Error('429'), { headers: { 'retry-after': '1' } })],
  ];

  it.each(hinted)('does not count an error carrying a retry-after hint (%s)', async (_name, error) => {
    const o = await withBreaker({
      errorThresholdPercentage: 50,
      volumeThreshold: 1,
      windowMs: 10_000,
      resetTimeoutMs: 10_000,
    });
    const events = breakerEvents(o);
    let plain = false;
    const calls = { n: 0 };
    o.registerAgent(
      countingFailer(calls, () => (plain ? new Error('boom') : error())),
      { id: 'a', capabilities: ['x'] },
    );
    for (let i = 0; i < 3; i++) expect(await failOnce(o)).toMatchObject({ message: '429' });
    await flush();
    expect(events).toEqual([]);
    expect(o.agent('a')).toMatchObject({ state: 'IDLE', breaker: 'closed' });
    plain = true;
    await failOnce(o);
    await until(() => events.length > 0);
    expect(o.agent('a')?.breaker).toBe('open');
    expect(calls.n).toBe(4);
  });
});

describe('agent breaker: routing while open', () => {
  it('sends tasks that need the capability to another capable agent', async () => {
    const o = await withBreaker({
      errorThresholdPercentage: 50,
      volumeThreshold: 1,
      windowMs: 10_000,
      resetTimeoutMs: 10_000,
    });
    const events = breakerEvents(o);
    const calls = { n: 0 };
    o.registerAgent(countingFailer(calls), { id: 'a', capabilities: ['x'] });
    await trip(o, events, 'a');
    const failedCalls = calls.n;
    o.registerAgent(recordingAgent(), { id: 'b', capabilities: ['x'] });
    const started = startedOn(o);
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => o.submit<string>({ type: 't', requires: ['x'], payload: i })),
    );
    expect(results).toEqual([0, 1, 2, 3, 4, 5].map((i) => `b:${i}`));
    expect(new Set(started)).toEqual(new Set(['b']));
    expect(calls.n).toBe(failedCalls);
    expect(o.agent('a')).toMatchObject({ state: 'UNHEALTHY', breaker: 'open' });
    expect(o.stats().resources.breakers.agents).toEqual({ closed: 1, open: 1, 'half-open': 0 });
  });

  it('makes tasks wait when the open agent is the only one that could run them', async () => {
    const o = await withBreaker({
      errorThresholdPercentage: 50,
      volumeThreshold: 1,
      windowMs: 10_000,
      resetTimeoutMs: 10_000,
    });
    const events = breakerEvents(o);
    const calls = { n: 0 };
    o.registerAgent(countingFailer(calls), { id: 'a', capabilities: ['x'] });
    await trip(o, events, 'a');
    const failedCalls = calls.n;
    const handle = o.delegate({ type: 't', requires: ['x'] });
    await tick(20);
    expect(calls.n).toBe(failedCalls);
    expect(o.stats()).toMatchObject({ waiting: 1, running: 0, queues: { x: 1 } });
    // Other work is unaffected.
    o.registerAgent(recordingAgent(), { id: 'y', capabilities: ['y'] });
    await expect(o.submit({ type: 't', requires: ['y'], payload: 1 })).resolves.toBe('y:1');
    expect(o.stats().waiting).toBe(1);
    expect(handle.cancel()).toBe(true);
  });

  it('does not hand the agent a waiting task on the very failure that opens its breaker', async () => {
    const o = await withBreaker({
      errorThresholdPercentage: 50,
      volumeThreshold: 1,
      windowMs: 10_000,
      resetTimeoutMs: 10_000,
    });
    const events = breakerEvents(o);
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const first = o.delegate({ type: 't', requires: ['x'] });
    const second = o.delegate({ type: 't', requires: ['x'] });
    expect(calls).toHaveLength(1);
    expect(o.stats().waiting).toBe(1);
    calls[0]!.reject(new Error('boom'));
    await expect(first.result).rejects.toThrow('boom');
    await until(() => events.length > 0);
    await flush();
    expect(o.agent('a')).toMatchObject({ state: 'UNHEALTHY', breaker: 'open' });
    // The second task must not run on an agent whose breaker just opened: it waits.
    expect(calls).toHaveLength(1);
    expect(o.stats()).toMatchObject({ waiting: 1, running: 0 });
    expect(o.agent('a')?.running).toBe(0);
    second.cancel();
  });
});

describe('agent breaker: half-open probe', () => {
  const fast: BreakerOptions = {
    errorThresholdPercentage: 50,
    volumeThreshold: 1,
    windowMs: 10_000,
    resetTimeoutMs: 80,
  };

  /** One agent of concurrency 3 whose breaker is open, with three tasks waiting for it. */
  async function openWithWaiting(): Promise<{
    o: UnifiedOrchestrator;
    events: BreakerEvent[];
    calls: Call[];
    results: Promise<unknown>[];
  }> {
    const o = await withBreaker(fast);
    const events = breakerEvents(o);
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'], concurrency: 3 });
    const failing = o.submit({ type: 't', requires: ['x'] });
    calls[0]!.reject(new Error('boom'));
    await expect(failing).rejects.toThrow('boom');
    await until(() => events.length > 0);
    expect(o.agent('a')).toMatchObject({ state: 'UNHEALTHY', breaker: 'open' });
    const results = [1, 2, 3].map((payload) => o.submit({ type: 't', requires: ['x'], payload }));
    for (const r of results) r.catch(() => {});
    expect(calls).toHaveLength(1);
    expect(o.stats().waiting).toBe(3);
    return { o, events, calls, results };
  }

  it('after resetTimeoutMs lets exactly one probe task through; its success closes the breaker and restores full routing', async () => {
    const { o, events, calls, results } = await openWithWaiting();
    await until(() => events.length >= 2);
    expect(events[1]).toEqual({ breaker: 'agent:a', agentId: 'a', from: 'open', to: 'half-open' });
    await until(() => calls.length === 2);
    // Concurrency 3, yet only the probe runs until it settles.
    await tick(30);
    expect(calls).toHaveLength(2);
    expect(o.agent('a')).toMatchObject({ state: 'BUSY', breaker: 'half-open', running: 1 });
    expect(o.stats()).toMatchObject({ waiting: 2, running: 1 });
    expect(o.stats().resources.breakers.agents).toEqual({ closed: 0, open: 0, 'half-open': 1 });

    calls[1]!.resolve('probe ok');
    await until(() => events.length >= 3);
    expect(events[2]).toEqual({ breaker: 'agent:a', agentId: 'a', from: 'half-open', to: 'closed' });
    // Full routing again: both remaining tasks start at once on the concurrency-3 agent.
    await until(() => calls.length === 4);
    expect(o.agent('a')).toMatchObject({ state: 'BUSY', breaker: 'closed', running: 2 });
    calls[2]!.resolve('two');
    calls[3]!.resolve('three');
    await expect(Promise.all(results)).resolves.toEqual(['probe ok', 'two', 'three']);
    expect(o.agent('a')).toMatchObject({ state: 'IDLE', breaker: 'closed' });
    expect(o.stats().resources.breakers.agents).toEqual({ closed: 1, open: 0, 'half-open': 0 });
  });

  it('a failed probe opens the breaker again and quarantines the agent again', async () => {
    const { o, events, calls, results } = await openWithWaiting();
    await until(() => calls.length === 2);
    expect(events.map((e) => e.to)).toEqual(['open', 'half-open']);
    calls[1]!.reject(new Error('still broken'));
    await expect(results[0]).rejects.toThrow('still broken');
    await until(() => events.length >= 3);
    expect(events[2]).toEqual({ breaker: 'agent:a', agentId: 'a', from: 'half-open', to: 'open' });
    expect(o.agent('a')).toMatchObject({ state: 'UNHEALTHY', breaker: 'open', running: 0 });
    expect(calls).toHaveLength(2);
    expect(o.stats()).toMatchObject({ waiting: 2, running: 0 });
    expect(o.stats().resources.breakers.agents).toEqual({ closed: 0, open: 1, 'half-open': 0 });
    // And it probes again after another reset timeout, with one task only.
    await until(() => events.length >= 4);
    expect(events[3]).toMatchObject({ from: 'open', to: 'half-open' });
    await until(() => calls.length === 3);
    await tick(20);
    expect(calls).toHaveLength(3);
  });

  it('an attempt started before the breaker opened does not stand in for the probe', async () => {
    const o = await withBreaker(fast);
    const events = breakerEvents(o);
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'], concurrency: 2 });
    const failing = o.submit({ type: 't', requires: ['x'] });
    const stale = o.submit({ type: 't', requires: ['x'], payload: 'stale' });
    expect(calls).toHaveLength(2);
    calls[0]!.reject(new Error('boom'));
    await expect(failing).rejects.toThrow('boom');
    await until(() => events.length > 0);
    const waiting = o.submit({ type: 't', requires: ['x'], payload: 'probe' });
    await until(() => events.length >= 2);
    expect(events.map((e) => e.to)).toEqual(['open', 'half-open']);
    // The attempt that started while the breaker was still closed settles now: it is not the probe.
    calls[1]!.resolve('stale ok');
    await expect(stale).resolves.toBe('stale ok');
    await flush();
    expect(events.map((e) => e.to)).toEqual(['open', 'half-open']);
    expect(o.agent('a')?.breaker).toBe('half-open');
    // The waiting task is the probe, alone on the agent; its outcome decides.
    await until(() => calls.length === 3);
    expect(calls[2]!.ctx.payload).toBe('probe');
    calls[2]!.resolve('probe ok');
    await expect(waiting).resolves.toBe('probe ok');
    await until(() => events.length >= 3);
    expect(events[2]).toMatchObject({ from: 'half-open', to: 'closed' });
  });
});

describe('agent breaker: a probe without a verdict', () => {
  const fast: BreakerOptions = {
    errorThresholdPercentage: 50,
    volumeThreshold: 1,
    windowMs: 10_000,
    resetTimeoutMs: 60,
  };

  it.each([
    ['cancelled', (call: Call, handle: { cancel(): boolean }) => void (handle.cancel(), call)],
    ['paced by a retry-after', (call: Call) => call.reject(Object.assign(new Error('429'), { retryAfterMs: 5 }))],
  ])('a probe %s leaves the agent half-open with a new probe, not stuck', async (_name, end) => {
    const o = await withBreaker(fast);
    const events = breakerEvents(o);
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const failing = o.submit({ type: 't', requires: ['x'] });
    calls[0]!.reject(new Error('boom'));
    await expect(failing).rejects.toThrow('boom');
    const probe = o.delegate({ type: 't', requires: ['x'], payload: 'probe' });
    probe.result.catch(() => {});
    await until(() => calls.length === 2);
    expect(o.agent('a')?.breaker).toBe('half-open');
    const next = o.submit({ type: 't', requires: ['x'], payload: 'next' });
    end(calls[1]!, probe);
    // The next task becomes the probe as soon as the first attempt is out of the agent's slot.
    await until(() => calls.some((c) => c.ctx.payload === 'next'));
    calls.find((c) => c.ctx.payload === 'next')!.resolve('next ok');
    await expect(next).resolves.toBe('next ok');
    await until(() => events.some((e) => e.to === 'closed'));
    expect(o.agent('a')).toMatchObject({ breaker: 'closed', state: 'IDLE' });
  });
});

describe('agent breaker: bookkeeping', () => {
  it('stats count agents by breaker state, and a removed agent leaves the count', async () => {
    const o = await withBreaker({
      errorThresholdPercentage: 50,
      volumeThreshold: 1,
      windowMs: 10_000,
      resetTimeoutMs: 10_000,
    });
    const events = breakerEvents(o);
    o.registerAgent(countingFailer({ n: 0 }), { id: 'a', capabilities: ['x'] });
    o.registerAgent(recordingAgent(), { id: 'b', capabilities: ['y'] });
    o.registerAgent(recordingAgent(), { id: 'c', capabilities: ['y'] });
    expect(o.stats().resources.breakers.agents).toEqual({ closed: 3, open: 0, 'half-open': 0 });
    await trip(o, events, 'a');
    expect(o.stats().resources.breakers.agents).toEqual({ closed: 2, open: 1, 'half-open': 0 });
    expect(o.agents().map((a) => [a.id, a.breaker])).toEqual([
      ['a', 'open'],
      ['b', 'closed'],
      ['c', 'closed'],
    ]);
    await o.unregisterAgent('a');
    expect(o.stats().resources.breakers.agents).toEqual({ closed: 2, open: 0, 'half-open': 0 });
  });

  it('agentBreaker: false gives agents no breaker: a failing agent keeps receiving tasks', async () => {
    const o = await withBreaker(false);
    const events = breakerEvents(o);
    const started = startedOn(o);
    const calls = { n: 0 };
    o.registerAgent(countingFailer(calls), { id: 'a', capabilities: ['x'] });
    expect(o.agent('a')?.breaker).toBeUndefined();
    for (let i = 0; i < 10; i++) expect(await failOnce(o)).toMatchObject({ message: 'boom' });
    await flush();
    expect(calls.n).toBe(10);
    expect(started).toEqual(Array(10).fill('a'));
    expect(events).toEqual([]);
    expect(o.agent('a')).toMatchObject({ state: 'IDLE', failed: 10 });
    expect(o.agent('a')?.breaker).toBeUndefined();
    expect(o.stats().resources.breakers.agents).toEqual({ closed: 0, open: 0, 'half-open': 0 });
  });

  it('uses the documented defaults (50% over a volume of 5) when agentBreaker is not set', async () => {
    const o = await start({ pools: [], pressure: false });
    const events = breakerEvents(o);
    o.registerAgent(countingFailer({ n: 0 }), { id: 'a', capabilities: ['x'] });
    expect(o.agent('a')?.breaker).toBe('closed');
    for (let i = 0; i < 4; i++) await failOnce(o);
    await flush();
    expect(events).toEqual([]);
    await failOnce(o);
    await until(() => events.length > 0);
    expect(events).toEqual([{ breaker: 'agent:a', agentId: 'a', from: 'closed', to: 'open' }]);
  });
});

describe('dependency breaker', () => {
  const quick = { errorThresholdPercentage: 50, volumeThreshold: 2, windowMs: 10_000, resetTimeoutMs: 10_000 };

  it('passes calls through while closed, and exposes its name and state', async () => {
    const o = await withBreaker(false);
    const fn = vi.fn(async (a: number, b: number) => a + b);
    const add = o.resources.breaker('adder', fn, quick);
    expect(add.breakerName).toBe('adder');
    expect(add.state).toBe('closed');
    await expect(add(2, 3)).resolves.toBe(5);
    expect(fn).toHaveBeenCalledWith(2, 3);
    expect(o.stats().resources.breakers.dependencies).toEqual({ adder: 'closed' });
  });

  it('a non-retryable error with a retry-after hint (a BudgetExceededError passed on) fails the call at once and pauses nothing', async () => {
    const o = await withBreaker(false);
    const calls: string[] = [];
    const guarded = o.resources.breaker(
      'model',
      async (tenant: string): Promise<string> => {
        calls.push(tenant);
        if (tenant === 'greedy') throw new BudgetExceededError('greedy', 5, 1, 60_000, 30_000);
        return 'ok';
      },
      quick,
    );
    const error = await rejectionOf(guarded('greedy'));
    expect(error).toBeInstanceOf(BudgetExceededError);
    expect(calls).toEqual(['greedy']); // not deferred and called again
    expect(o.stats().resources.rateLimits['model']?.paused ?? false).toBe(false);
    const t0 = performance.now();
    await expect(guarded('polite')).resolves.toBe('ok');
    expect(performance.now() - t0).toBeLessThan(1_000); // not held behind a 30 s pause
  });

  it('opens after failures and then fails fast with BreakerOpenError without calling fn', async () => {
    const o = await withBreaker(false);
    const events = breakerEvents(o);
    const fn = vi.fn(async (_q: string): Promise<string> => {
      throw new Error('down');
    });
    const search = o.resources.breaker('search', fn, quick);
    await expect(search('a')).rejects.toThrow('down');
    expect(search.state).toBe('closed');
    await expect(search('b')).rejects.toThrow('down');
    await until(() => events.length > 0);
    expect(events).toEqual([{ breaker: 'search', agentId: undefined, from: 'closed', to: 'open' }]);
    expect(search.state).toBe('open');
    expect(o.stats().resources.breakers.dependencies).toEqual({ search: 'open' });

    const error = await rejectionOf(search('c'));
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect(error).toMatchObject({ code: 'BREAKER_OPEN', breaker: 'search' });
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('answers from the fallback: fn errors with the error, and while open with a BreakerOpenError', async () => {
    const o = await withBreaker(false);
    const failure = new Error('down');
    const fn = vi.fn(async (_q: string, _n: number): Promise<string> => {
      throw failure;
    });
    const fallback = vi.fn((q: string, n: number, error: unknown) => `cached:${q}:${n}:${(error as Error).name}`);
    const search = o.resources.breaker('search', fn, { ...quick, fallback });
    await expect(search('a', 1)).resolves.toBe('cached:a:1:Error');
    expect(fallback).toHaveBeenLastCalledWith('a', 1, failure);
    await expect(search('b', 2)).resolves.toBe('cached:b:2:Error');
    await until(() => search.state === 'open');
    await expect(search('c', 3)).resolves.toBe('cached:c:3:BreakerOpenError');
    const [q, n, error] = fallback.mock.calls[2]!;
    expect([q, n]).toEqual(['c', 3]);
    expect(error).toBeInstanceOf(BreakerOpenError);
    expect(error).toMatchObject({ code: 'BREAKER_OPEN', breaker: 'search' });
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('goes half-open after resetTimeoutMs and closes after a successful call', async () => {
    const o = await withBreaker(false);
    const events = breakerEvents(o);
    let healthy = false;
    const fn = vi.fn(async () => {
      if (!healthy) throw new Error('down');
      return 'up';
    });
    const ping = o.resources.breaker('ping', fn, { ...quick, volumeThreshold: 1, resetTimeoutMs: 60 });
    await expect(ping()).rejects.toThrow('down');
    await until(() => ping.state === 'open');
    await expect(ping()).rejects.toBeInstanceOf(BreakerOpenError);
    await until(() => ping.state === 'half-open');
    expect(o.stats().resources.breakers.dependencies).toEqual({ ping: 'half-open' });
    healthy = true;
    await expect(ping()).resolves.toBe('up');
    expect(ping.state).toBe('closed');
    expect(events.map((e) => [e.breaker, e.agentId, e.from, e.to])).toEqual([
      ['ping', undefined, 'closed', 'open'],
      ['ping', undefined, 'open', 'half-open'],
      ['ping', undefined, 'half-open', 'closed'],
    ]);
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('a failed call while half-open opens it again', async () => {
    const o = await withBreaker(false);
    const fn = vi.fn(async () => {
      throw new Error('down');
    });
    const ping = o.resources.breaker('ping', fn, { ...quick, volumeThreshold: 1, resetTimeoutMs: 60 });
    await expect(ping()).rejects.toThrow('down');
    await until(() => ping.state === 'half-open');
    await expect(ping()).rejects.toThrow('down');
    expect(ping.state).toBe('open');
    await expect(ping()).rejects.toBeInstanceOf(BreakerOpenError);
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('timeoutMs: a call that does not settle in time fails and counts against the breaker', async () => {
    const o = await withBreaker(false);
    const fn = vi.fn(() => new Promise<string>(() => {}));
    const slow = o.resources.breaker('slow', fn, { ...quick, volumeThreshold: 1, timeoutMs: 20 });
    await expect(slow()).rejects.toThrow(/timed out/i);
    await until(() => slow.state === 'open');
    await expect(slow()).rejects.toBeInstanceOf(BreakerOpenError);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('a retry-after error pauses the dependency and calls again, without counting against the breaker', async () => {
    const o = await withBreaker(false);
    const paused: Array<OrchestratorEvents['ratelimit:paused']> = [];
    const resumed: string[] = [];
    o.on('ratelimit:paused', (e) => paused.push(e));
    o.on('ratelimit:resumed', (e) => resumed.push(e.name));
    let throttled = 1;
    const fn = vi.fn(async (q: string) => {
      if (throttled-- > 0) throw Object.assign(new Error('429'), { retryAfterMs: 30 });
      return `answer:${q}`;
    });
    const llm = o.resources.breaker('llm', fn, { ...quick, volumeThreshold: 1 });
    await expect(llm('hi')).resolves.toBe('answer:hi');
    expect(fn).toHaveBeenCalledTimes(2);
    expect(paused).toEqual([{ name: 'llm', ms: 30 }]);
    expect(resumed).toEqual(['llm']);
    expect(llm.state).toBe('closed');
  });

  it('rateLimit holds calls over the limit until room comes back, first come first served', async () => {
    const o = await withBreaker(false);
    const order: number[] = [];
    const fn = vi.fn(async (n: number) => {
      order.push(n);
      return n;
    });
    const limited = o.resources.breaker('limited', fn, { rateLimit: { requests: 1, intervalMs: 60 } });
    const results = [1, 2, 3].map((n) => limited(n));
    await flush();
    expect(fn).toHaveBeenCalledTimes(1);
    expect(o.stats().resources.rateLimits['limited']).toMatchObject({ name: 'limited', waiting: 2 });
    await expect(Promise.all(results)).resolves.toEqual([1, 2, 3]);
    expect(order).toEqual([1, 2, 3]);
  });

  it('units(...args) spends against the rate limit units; a call waits while the bucket is spent', async () => {
    const o = await withBreaker(false);
    const fn = vi.fn(async (prompt: string) => prompt.length);
    const llm = o.resources.breaker('llm', fn, {
      rateLimit: { units: 10, intervalMs: 600_000 },
      units: (prompt) => prompt.length,
    });
    await expect(llm('123456789012')).resolves.toBe(12);
    const snapshot = o.stats().resources.rateLimits['llm']!;
    expect(snapshot.unitsAvailable).toBeLessThan(0); // 10 - 12, plus a negligible refill
    expect(snapshot.unitsAvailable).toBeGreaterThan(-2.01);
    const held = llm('a');
    await flush();
    expect(fn).toHaveBeenCalledTimes(1);
    expect(o.stats().resources.rateLimits['llm']).toMatchObject({ waiting: 1 });
    await o.stop();
    // Stopping releases the held call with OrchestratorStoppedError.
    await expect(held).rejects.toBeInstanceOf(OrchestratorStoppedError);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  describe('validation', () => {
    const fn = async (): Promise<number> => 1;
    const cases: Array<[string, () => unknown, string]> = [
      ['an unknown option', () => ({ retries: 3 }), 'options.retries'],
      ['errorThresholdPercentage 0', () => ({ errorThresholdPercentage: 0 }), 'options.errorThresholdPercentage'],
      ['errorThresholdPercentage 101', () => ({ errorThresholdPercentage: 101 }), 'options.errorThresholdPercentage'],
      ['a fallback that is not a function', () => ({ fallback: 'cached' }), 'options.fallback'],
      ['timeoutMs 0', () => ({ timeoutMs: 0 }), 'options.timeoutMs'],
      ['a rate limit without an interval', () => ({ rateLimit: { requests: 1 } }), 'options.rateLimit.intervalMs'],
    ];

    it.each(cases)('refuses %s with a ValidationError naming the field', async (_name, options, field) => {
      const o = await withBreaker(false);
      let error: unknown;
      try {
        o.resources.breaker('dep', fn, options() as never);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ code: 'VALIDATION_ERROR', field });
      expect((error as Error).message).toContain(field);
      // Nothing was registered under the name.
      expect(o.stats().resources.breakers.dependencies).toEqual({});
    });

    it('refuses a fn that is not a function', async () => {
      const o = await withBreaker(false);
      const error = catching(() => o.resources.breaker('dep', 'not a function' as unknown as () => number));
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ code: 'VALIDATION_ERROR', field: 'fn' });
      expect((error as Error).message).toContain('fn');
    });

    it('refuses a second breaker with the same name, and keeps the first working', async () => {
      const o = await withBreaker(false);
      const first = o.resources.breaker('dep', fn);
      const error = catching(() => o.resources.breaker('dep', async () => 2));
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ code: 'VALIDATION_ERROR', field: 'name' });
      expect((error as Error).message).toContain('dep');
      await expect(first()).resolves.toBe(1);
    });
  });

  it('after stop(), a guarded function rejects with OrchestratorStoppedError and breaker() throws it', async () => {
    const o = await withBreaker(false);
    const fn = vi.fn(async () => 'ok');
    const plain = o.resources.breaker('plain', fn);
    const withFallback = o.resources.breaker('fb', fn, { fallback: () => 'fallback' });
    await expect(plain()).resolves.toBe('ok');
    await o.stop();
    const error = await rejectionOf(plain());
    expect(error).toBeInstanceOf(OrchestratorStoppedError);
    expect(error).toMatchObject({ code: 'ORCHESTRATOR_STOPPED' });
    await expect(withFallback()).rejects.toMatchObject({ code: 'ORCHESTRATOR_STOPPED' });
    expect(fn).toHaveBeenCalledTimes(1);
    const thrown = catching(() => o.resources.breaker('later', fn));
    expect(thrown).toBeInstanceOf(OrchestratorStoppedError);
    expect(thrown).toMatchObject({ code: 'ORCHESTRATOR_STOPPED' });
  });
});

/** The error `fn` throws synchronously (fails the test when it does not throw). */
function catching(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}
