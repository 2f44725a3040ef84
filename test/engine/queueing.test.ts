import { describe, expect, it, vi } from 'vitest';
import { NoCapableAgentError, QueueFullError, TaskDeadLetteredError, type TaskHandle } from 'unified-orchestrator';
import {
  accounted,
  echoAgent,
  manualAgent,
  recordEvents,
  rejectionOf,
  tick,
  until,
  type Call,
  startEach,
} from './helpers.js';

const start = startEach();

describe('late binding', () => {
  it('never queues a task behind a busy agent while another matching agent is idle', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'slow-specialist', capabilities: ['x'] });
    o.registerAgent(manualAgent(calls), { id: 'generalist', capabilities: ['x', 'y', 'z'] });
    const log = recordEvents(o);
    o.delegate({ type: 't', requires: ['x'] });
    expect(calls.map((c) => c.agentId)).toEqual(['slow-specialist']);
    o.delegate({ type: 't', requires: ['x'] });
    expect(calls.map((c) => c.agentId)).toEqual(['slow-specialist', 'generalist']);
    expect(log.queued).toHaveLength(0);
    expect(o.stats().waiting).toBe(0);
  });

  it('gives a waiting task to whichever matching agent frees first', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    o.registerAgent(manualAgent(calls), { id: 'b', capabilities: ['x'] });
    o.delegate({ type: 't', requires: ['x'] });
    o.delegate({ type: 't', requires: ['x'] });
    const waiting = o.delegate({ type: 't', requires: ['x'] });
    expect(o.stats().waiting).toBe(1);
    const onB = calls.find((c) => c.agentId === 'b')!;
    onB.resolve();
    await until(() => calls.length === 3);
    expect(calls[2]!.agentId).toBe('b');
    expect(calls[2]!.ctx.taskId).toBe(waiting.id);
    expect(o.stats().waiting).toBe(0);
  });

  it('lets a freed agent take the highest-priority waiting task it can serve, across requirement classes', async () => {
    for (const flip of [false, true]) {
      const o = await start();
      const calls: Call[] = [];
      o.registerAgent(manualAgent(calls), { id: 'xy', capabilities: ['x', 'y'] });
      o.delegate({ type: 'blocker', requires: ['x'] });
      const low = o.delegate({ type: 'low', requires: [flip ? 'y' : 'x'], priority: 1 });
      const high = o.delegate({ type: 'high', requires: [flip ? 'x' : 'y'], priority: 5 });
      const mid = o.delegate({ type: 'mid', requires: [flip ? 'y' : 'x'], priority: 3 });
      expect(o.stats().waiting).toBe(3);
      for (let i = 0; i < 3; i++) {
        calls.at(-1)!.resolve();
        await until(() => calls.length === i + 2);
      }
      expect(calls.slice(1).map((c) => c.ctx.taskId)).toEqual([high.id, mid.id, low.id]);
      await o.stop({ drain: false });
    }
  });

  it('takes the best task it can serve, not one blocked on a capability it lacks', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'xy', capabilities: ['x', 'y'] });
    o.registerAgent(manualAgent(calls), { id: 'z', capabilities: ['z'] });
    o.delegate({ type: 't', requires: ['x'] });
    o.delegate({ type: 't', requires: ['z'] });
    o.delegate({ type: 't', requires: ['z'], priority: 9 });
    const x = o.delegate({ type: 't', requires: ['x'], priority: 1 });
    calls.find((c) => c.agentId === 'xy')!.resolve();
    await until(() => calls.length === 3);
    expect(calls[2]!.agentId).toBe('xy');
    expect(calls[2]!.ctx.taskId).toBe(x.id);
  });

  it('hands waiting work to an agent the moment it is registered', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'busy', capabilities: ['x'] });
    o.delegate({ type: 't', requires: ['x'] });
    const waiting = [o.delegate({ type: 't', requires: ['x'] }), o.delegate({ type: 't', requires: ['x'] })];
    expect(o.stats().waiting).toBe(2);
    o.registerAgent(manualAgent(calls), { id: 'fresh', capabilities: ['x', 'y'], concurrency: 2 });
    expect(o.stats().waiting).toBe(0);
    expect(calls.slice(1).map((c) => [c.agentId, c.ctx.taskId])).toEqual(waiting.map((h) => ['fresh', h.id]));
  });
});

describe('bounded queue', () => {
  it('rejects with QueueFullError at submit once maxQueueSize tasks wait, and accepts nothing of the refused task', async () => {
    const o = await start({ maxQueueSize: 2 });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'solo', capabilities: ['x'] });
    const log = recordEvents(o);
    const accepted: TaskHandle[] = [];
    for (let i = 0; i < 3; i++) accepted.push(o.delegate({ type: 't', requires: ['x'] }));
    const signal = new AbortController();
    let thrown: unknown;
    try {
      o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'refused', signal: signal.signal });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(QueueFullError);
    expect((thrown as QueueFullError).code).toBe('QUEUE_FULL');
    expect((thrown as QueueFullError).maxQueueSize).toBe(2);
    await expect(o.submit({ type: 't', requires: ['x'] })).rejects.toBeInstanceOf(QueueFullError);

    let s = o.stats();
    expect(s).toMatchObject({ submitted: 5, rejected: 2, running: 1, waiting: 2, cancelled: 0 });
    expect(accounted(s)).toBe(s.submitted);
    expect(log.queued).toHaveLength(2);
    expect(log.queued.at(-1)!.waiting).toBe(2);

    // The refused task left nothing behind: its signal is not listened to, its idempotency key not remembered.
    signal.abort('late');
    expect(o.stats().cancelled).toBe(0);
    for (let i = 0; i < 3; i++) {
      await until(() => calls.length === i + 1);
      calls[i]!.resolve('ok');
    }
    await Promise.all(accepted.map((h) => h.result));
    const again = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'refused' });
    expect(again.id).not.toBe(accepted[0]!.id);
    expect(o.stats().deduplicated).toBe(0);
    await until(() => calls.length === 4);
    calls[3]!.resolve('fresh');
    await expect(again.result).resolves.toBe('fresh');

    s = o.stats();
    expect(s).toMatchObject({ submitted: 6, rejected: 2, completed: 4, waiting: 0, running: 0 });
    expect(accounted(s)).toBe(s.submitted);
  });

  it('with maxQueueSize 0 runs what can run at once and refuses what would wait', async () => {
    const o = await start({ maxQueueSize: 0 });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'solo', capabilities: ['x'] });
    const first = o.delegate({ type: 't', requires: ['x'] });
    expect(() => o.delegate({ type: 't', requires: ['x'] })).toThrow(QueueFullError);
    calls[0]!.resolve(1);
    await expect(first.result).resolves.toBe(1);
    expect(o.stats()).toMatchObject({ submitted: 2, rejected: 1, completed: 1 });
  });
});

describe('no capable agent', () => {
  it('rejects at once when neither a registered agent nor a declared pool could serve the task', async () => {
    const o = await start({
      pools: [{ role: 'w', capabilities: ['x'], minAgents: 1, maxAgents: 2, warmSpares: 0, create: () => echoAgent() }],
    });
    const log = recordEvents(o);
    expect(() => o.delegate({ type: 't', requires: ['x', 'gpu'] })).toThrow(NoCapableAgentError);
    expect(log.queued).toHaveLength(0);
    expect(o.stats()).toMatchObject({ submitted: 1, rejected: 1, waiting: 0 });
  });

  it('lets a task wait (not reject) while a pool can still scale up to serve it', async () => {
    const o = await start({
      pools: [{ role: 'w', capabilities: ['x'], minAgents: 0, maxAgents: 2, warmSpares: 0, create: () => echoAgent() }],
    });
    const log = recordEvents(o);
    expect(o.agents()).toHaveLength(0);
    const result = o.submit<string>({ type: 't', requires: ['x'], payload: 'p' });
    expect(log.queued).toHaveLength(1);
    await expect(result).resolves.toBe('w-1:p');
    expect(o.stats()).toMatchObject({ rejected: 0, completed: 1 });
  });

  it('rejects a task whose only capable agent is draining, even after such tasks were accepted earlier', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'solo', capabilities: ['x'] });
    o.delegate({ type: 't', requires: ['x'] });
    // Waits: 'solo' is busy but could serve it. This also warms the "could anyone ever serve [x]" answer.
    o.delegate({ type: 't', requires: ['x'] });
    void o.unregisterAgent('solo').catch(() => {});
    expect(o.agent('solo')!.state).toBe('DRAINING');
    // Nobody can ever serve [x] now: the same answer as for a cold cache is expected.
    let thrown: unknown;
    try {
      o.delegate({ type: 't', requires: ['x'] });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(NoCapableAgentError);
  });

  it('fails a waiting task with NoCapableAgentError when the last agent that could serve it leaves', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'solo', capabilities: ['x'] });
    o.registerAgent(echoAgent(), { id: 'other', capabilities: ['y'] });
    const running = o.delegate({ type: 't', requires: ['x'] });
    const stranded = o.delegate({ type: 't', requires: ['x'] });
    const leaving = o.unregisterAgent('solo');
    calls[0]!.resolve('done');
    await running.result;
    await leaving;
    const outcome = await Promise.race([rejectionOf(stranded.result), tick(200).then(() => 'still waiting')]);
    expect(outcome).toBeInstanceOf(NoCapableAgentError);
  });
  it('fails a task waiting out a retry backoff when its last capable agent leaves, instead of re-queueing it forever', async () => {
    const o = await start({ retry: { baseDelayMs: 20, maxDelayMs: 20 }, random: () => 0.99 });
    o.registerAgent({ execute: () => Promise.reject(new Error('flaky')) }, { id: 'solo', capabilities: ['x'] });
    const h = o.delegate({ type: 't', requires: ['x'], maxAttempts: 2 });
    await until(() => o.stats().backingOff === 1);
    await o.unregisterAgent('solo'); // nobody can serve [x] any more
    const outcome = await Promise.race([rejectionOf(h.result), tick(300).then(() => 'still waiting')]);
    // It had attempts and retries configured: dead-lettered with its history, NoCapableAgentError as the cause.
    expect(outcome).toBeInstanceOf(TaskDeadLetteredError);
    expect((outcome as TaskDeadLetteredError).cause).toBeInstanceOf(NoCapableAgentError);
    expect(o.deadLetters().map((d) => d.taskId)).toEqual([h.id]);
    expect(o.stats().waiting).toBe(0);
  });

  it('fails a retrying task whose attempt failed on its draining (last capable) agent, instead of stranding it', async () => {
    const o = await start({ retry: { baseDelayMs: 1, maxDelayMs: 1 } });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'solo', capabilities: ['x'] });
    o.registerAgent(echoAgent(), { id: 'other', capabilities: ['y'] });
    const h = o.delegate({ type: 't', requires: ['x'], maxAttempts: 3 });
    const leaving = o.unregisterAgent('solo');
    calls[0]!.reject(new Error('interrupted by shutdown'));
    await leaving;
    const outcome = await Promise.race([rejectionOf(h.result), tick(300).then(() => 'still waiting')]);
    // It had attempts and retries configured: dead-lettered with its history, NoCapableAgentError as the cause.
    expect(outcome).toBeInstanceOf(TaskDeadLetteredError);
    expect((outcome as TaskDeadLetteredError).cause).toBeInstanceOf(NoCapableAgentError);
    expect(o.deadLetters().map((d) => d.taskId)).toEqual([h.id]);
    expect(o.stats().waiting).toBe(0);
  });
});

describe('fairness across tenants', () => {
  it('gives two tenants a fair share of the first 20 served when one floods the queue first', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'solo', capabilities: ['x'] });
    const log = recordEvents(o);
    const tenantOf = new Map<string, string>();
    const results: Array<Promise<unknown>> = [];
    for (const tenantId of ['A', 'B']) {
      for (let i = 0; i < 50; i++) {
        const h = o.delegate({ type: 't', requires: ['x'], tenantId });
        tenantOf.set(h.id, tenantId);
        results.push(h.result);
      }
    }
    await Promise.all(results);
    const first20 = log.started.slice(0, 20).map((s) => tenantOf.get(s.taskId));
    const a = first20.filter((t) => t === 'A').length;
    const b = first20.filter((t) => t === 'B').length;
    expect(a + b).toBe(20);
    expect(Math.abs(a - b)).toBeLessThanOrEqual(2);
    // And each tenant's own tasks ran in the order they were submitted.
    for (const tenant of ['A', 'B']) {
      const order = log.started.filter((s) => tenantOf.get(s.taskId) === tenant).map((s) => s.taskId);
      const submitted = [...tenantOf].filter(([, t]) => t === tenant).map(([id]) => id);
      expect(order).toEqual(submitted);
    }
  });

  it('still serves higher priority first, whatever the tenant', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'solo', capabilities: ['x'] });
    const log = recordEvents(o);
    const urgent = new Set<string>();
    const results: Array<Promise<unknown>> = [];
    for (let i = 0; i < 10; i++) results.push(o.delegate({ type: 't', requires: ['x'], tenantId: 'A' }).result);
    for (let i = 0; i < 5; i++) {
      const h = o.delegate({ type: 't', requires: ['x'], tenantId: 'B', priority: 2 });
      urgent.add(h.id);
      results.push(h.result);
    }
    await Promise.all(results);
    // The first A task was already running; the 5 urgent B tasks come right after it.
    expect(log.started.slice(1, 6).every((s) => urgent.has(s.taskId))).toBe(true);
  });
});

describe('aging in the orchestrator', () => {
  it('lets a low-priority task through a continuous stream of high-priority tasks', async () => {
    vi.useFakeTimers();
    const o = await start({ clock: { now: () => Date.now() }, agingIntervalMs: 100 });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'solo', capabilities: ['x'] });
    o.delegate({ type: 'high', requires: ['x'], priority: 5 });
    const low = o.delegate({ type: 'low', requires: ['x'], priority: 0 });
    const t0 = Date.now();
    let lowStartedAt: number | undefined;
    let highServed = 0;
    for (let step = 0; step < 200 && lowStartedAt === undefined; step++) {
      o.delegate({ type: 'high', requires: ['x'], priority: 5 }); // the stream never runs dry
      await vi.advanceTimersByTimeAsync(10);
      calls.at(-1)!.resolve();
      await vi.advanceTimersByTimeAsync(0);
      const current = calls.at(-1)!;
      if (current.ctx.taskId === low.id) lowStartedAt = Date.now() - t0;
      else highServed++;
    }
    expect(lowStartedAt).toBeDefined();
    expect(highServed).toBeGreaterThan(10);
    expect(lowStartedAt!).toBeLessThanOrEqual(800);
  });

  it('counts every interval a task waited even when no agent freed in between (lazy aging is not read-dependent)', async () => {
    vi.useFakeTimers();
    const o = await start({ clock: { now: () => Date.now() }, agingIntervalMs: 100 });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'solo', capabilities: ['x'] });
    o.delegate({ type: 'blocker', requires: ['x'] });
    const old = o.delegate({ type: 'old', requires: ['x'], priority: 0 });
    await vi.advanceTimersByTimeAsync(700);
    const fresh = o.delegate({ type: 'fresh', requires: ['x'], priority: 5 });
    await vi.advanceTimersByTimeAsync(300);
    // At 1000 ms: `old` waited 10 intervals (effective 10), `fresh` 3 (effective 8).
    calls[0]!.resolve();
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toHaveLength(2);
    expect(calls[1]!.ctx.taskId).toBe(old.id);
    expect(fresh.id).not.toBe(old.id);
  });
});
