/**
 * A task's deadlineMs: the whole task's time limit from acceptance, waiting, attempts and backoff included. When it
 * passes the task ends timed-out (TaskTimeoutError, scope 'task') wherever it is, and its running attempt is aborted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  MemoryBridge,
  MemoryHub,
  TaskTimeoutError,
  UnifiedOrchestrator,
  ValidationError,
  type OrchestratorEvents,
  type OrchestratorOptions,
} from 'unified-orchestrator';
import { manualAgent, rejectionOf, until, type Call } from './helpers.js';

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
});

async function start(options: OrchestratorOptions = {}): Promise<UnifiedOrchestrator> {
  const o = new UnifiedOrchestrator({ pools: [], pressure: false, defaultTimeoutMs: Infinity, ...options });
  live.push(o);
  await o.start();
  return o;
}

function failures(o: UnifiedOrchestrator): Array<OrchestratorEvents['task:failed']> {
  const out: Array<OrchestratorEvents['task:failed']> = [];
  o.on('task:failed', (e) => out.push(e));
  return out;
}

describe('task deadlineMs', () => {
  it('a task still waiting for an agent ends timed-out at its deadline, and leaves the queue', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const busy = o.delegate({ type: 'busy', requires: ['x'] });
    const failed = failures(o);
    const t0 = performance.now();
    const error = await rejectionOf(o.submit({ type: 'late', requires: ['x'], deadlineMs: 60 }));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(55);
    expect(error).toBeInstanceOf(TaskTimeoutError);
    expect(error).toMatchObject({ code: 'TASK_TIMEOUT', scope: 'task', timeoutMs: 60, attempt: 0 });
    expect((error as Error).message).toContain('deadline of 60 ms');
    expect(failed).toEqual([expect.objectContaining({ type: 'late', outcome: 'timed-out', attempts: 0 })]);
    expect(o.stats()).toMatchObject({ waiting: 0, timedOut: 1, running: 1 });
    calls[0]!.resolve('done');
    await expect(busy.result).resolves.toBe('done');
  });

  it('a running attempt is aborted through ctx.signal with the deadline error, and no retry follows', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const handle = o.delegate({ type: 't', requires: ['x'], deadlineMs: 50, maxAttempts: 3 });
    await until(() => calls.length === 1);
    const error = await rejectionOf(handle.result);
    expect(error).toMatchObject({ code: 'TASK_TIMEOUT', scope: 'task', attempt: 1 });
    expect(calls[0]!.ctx.signal.aborted).toBe(true);
    expect(calls[0]!.ctx.signal.reason).toBe(error);
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toHaveLength(1); // not retried
    expect(o.stats()).toMatchObject({ running: 0, timedOut: 1, deadLetters: 0 });
  });

  it('a task in a retry backoff ends at its deadline instead of running again', async () => {
    const o = await start({ retry: { baseDelayMs: 5_000, maxDelayMs: 5_000 }, random: () => 0.999 });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const handle = o.delegate({ type: 't', requires: ['x'], deadlineMs: 80, maxAttempts: 3 });
    await until(() => calls.length === 1);
    calls[0]!.reject(new Error('flaky'));
    await until(() => o.stats().backingOff === 1);
    await expect(handle.result).rejects.toMatchObject({ code: 'TASK_TIMEOUT', scope: 'task', attempt: 1 });
    expect(o.stats()).toMatchObject({ backingOff: 0, timedOut: 1 });
    expect(calls).toHaveLength(1);
  });

  it('ctx.deadline is the earlier of the attempt timeout and the task deadline, in epoch ms', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'], concurrency: 3 });
    const before = Date.now();
    o.delegate({ type: 't', requires: ['x'], deadlineMs: 5_000, timeoutMs: 60_000 }).result.catch(() => {});
    o.delegate({ type: 't', requires: ['x'], deadlineMs: 60_000, timeoutMs: 5_000 }).result.catch(() => {});
    o.delegate({ type: 't', requires: ['x'] }).result.catch(() => {});
    await until(() => calls.length === 3);
    const after = Date.now();
    for (const call of calls.slice(0, 2)) {
      expect(call.ctx.deadline).toBeGreaterThanOrEqual(before + 5_000 - 5);
      expect(call.ctx.deadline).toBeLessThanOrEqual(after + 5_000 + 5);
    }
    expect(calls[2]!.ctx.deadline).toBe(Infinity); // no timeout (defaultTimeoutMs: Infinity here), no deadline
  });

  it('a task that finishes in time is not touched by its deadline afterwards', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const failed = failures(o);
    const handle = o.delegate({ type: 't', requires: ['x'], deadlineMs: 40 });
    await until(() => calls.length === 1);
    calls[0]!.resolve('in time');
    await expect(handle.result).resolves.toBe('in time');
    await new Promise((r) => setTimeout(r, 80));
    expect(failed).toEqual([]);
    expect(o.stats()).toMatchObject({ completed: 1, timedOut: 0 });
  });

  it('a duplicate (same idempotencyKey) keeps its own deadline and signal: they end its wait, not the shared task', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const first = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'order-1' });
    await until(() => calls.length === 1);
    const impatient = o.submit({ type: 't', requires: ['x'], idempotencyKey: 'order-1', deadlineMs: 30 });
    const controller = new AbortController();
    const leaving = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'order-1', signal: controller.signal });
    const patient = o.submit({ type: 't', requires: ['x'], idempotencyKey: 'order-1' });
    expect(leaving.id).toBe(first.id);
    await expect(impatient).rejects.toMatchObject({ code: 'TASK_TIMEOUT', scope: 'task', taskId: first.id });
    controller.abort(new Error('client left'));
    await expect(leaving.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
    calls[0]!.resolve('done');
    await expect(first.result).resolves.toBe('done');
    await expect(patient).resolves.toBe('done');
    expect(o.stats()).toMatchObject({ completed: 1, deduplicated: 3, timedOut: 0, cancelled: 0 });
  });

  it('is validated: a number of ms > 0, or Infinity for none', async () => {
    const o = await start();
    o.registerAgent(manualAgent([]), { id: 'a', capabilities: ['x'] });
    for (const bad of [0, -5, Number.NaN, '100', null]) {
      expect(() => o.delegate({ type: 't', requires: ['x'], deadlineMs: bad as never })).toThrow(ValidationError);
      try {
        o.delegate({ type: 't', requires: ['x'], deadlineMs: bad as never });
      } catch (error) {
        expect((error as ValidationError).field).toBe('task.deadlineMs');
      }
    }
    expect(() => o.delegate({ type: 't', requires: ['x'], deadlineMs: Infinity }).cancel()).not.toThrow();
  });

  it('a task handed to another node is timed where it was submitted, and its deadline ends it on that node too', async () => {
    const hub = new MemoryHub();
    const calls: Call[] = [];
    const b = await start({
      bridge: new MemoryBridge({ hub, nodeId: 'B' }),
      pools: [{ role: 'w', capabilities: ['x'], minAgents: 1, create: () => manualAgent(calls) }],
    });
    const a = await start({ bridge: new MemoryBridge({ hub, nodeId: 'A' }) });
    const result = a.submit({ type: 't', requires: ['x'], deadlineMs: 60 });
    await until(() => calls.length === 1);
    await expect(result).rejects.toMatchObject({ code: 'TASK_TIMEOUT', scope: 'task' });
    // B ended it at the same deadline: the agent's late result is dropped there.
    await until(() => b.stats().running === 0);
    calls[0]!.resolve('too late');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(b.stats().completed).toBe(0);
  });
});
