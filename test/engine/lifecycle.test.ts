import { describe, expect, it, vi } from 'vitest';
import {
  TaskCancelledError,
  TaskDeadLetteredError,
  TaskNotFoundError,
  TaskTimeoutError,
  UnifiedOrchestrator,
  type Agent,
  type OrchestratorOptions,
  type TaskContext,
} from 'unified-orchestrator';
import {
  accounted,
  echoAgent,
  flush,
  manualAgent,
  recordEvents,
  rejectionOf,
  until,
  type Call,
  startEach,
} from './helpers.js';

const start = startEach();

/** Fake timers, with the orchestrator's clock following them. */
async function startFake(options: OrchestratorOptions = {}): Promise<UnifiedOrchestrator> {
  vi.useFakeTimers();
  return start({ clock: { now: () => Date.now() }, ...options });
}

/** An agent that takes `ms` (on whatever timers are installed) and then fails or succeeds as `mode()` says. */
function timedAgent(ms: number, mode: () => 'fail' | 'ok', label: string): Agent {
  return {
    execute: (ctx: TaskContext) =>
      new Promise((resolve, reject) => {
        setTimeout(
          () =>
            mode() === 'fail' ? reject(new Error(`${label} failed attempt ${ctx.attempt}`)) : resolve(`${label}:ok`),
          ms,
        );
      }),
  };
}

describe('timeouts', () => {
  it('aborts ctx.signal with a TaskTimeoutError carrying the task id, and rejects the task with it', async () => {
    const o = await startFake();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const log = recordEvents(o);
    const h = o.delegate({ type: 't', requires: ['x'], timeoutMs: 50 });
    const signal = calls[0]!.ctx.signal;
    await vi.advanceTimersByTimeAsync(49);
    expect(signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBeInstanceOf(TaskTimeoutError);
    expect((signal.reason as TaskTimeoutError).taskId).toBe(h.id);
    const error = await rejectionOf(h.result);
    expect(error).toBeInstanceOf(TaskTimeoutError);
    expect((error as TaskTimeoutError).code).toBe('TASK_TIMEOUT');
    expect((error as TaskTimeoutError).taskId).toBe(h.id);
    expect((error as TaskTimeoutError).timeoutMs).toBe(50);
    expect(log.failed).toEqual([expect.objectContaining({ taskId: h.id, outcome: 'timed-out' })]);
    const s = o.stats();
    expect(s).toMatchObject({ timedOut: 1, running: 0, failed: 0 });
    expect(accounted(s)).toBe(s.submitted);
  });

  it('gives an agent that reads ctx.signal only after the timeout an already-aborted signal', async () => {
    const o = await startFake();
    const seen: TaskContext[] = [];
    let release!: () => void;
    // Never looks at its signal while running; returns only when the test lets it.
    o.registerAgent(
      {
        execute: (ctx) => {
          seen.push(ctx);
          return new Promise<void>((r) => (release = r));
        },
      },
      { id: 'a', capabilities: ['x'] },
    );
    const h = o.delegate({ type: 't', requires: ['x'], timeoutMs: 20 });
    await vi.advanceTimersByTimeAsync(20);
    await expect(h.result).rejects.toBeInstanceOf(TaskTimeoutError);
    const late = seen[0]!.signal;
    expect(late.aborted).toBe(true);
    expect((late.reason as TaskTimeoutError).taskId).toBe(h.id);
    release();
  });

  it('keeps the slot of an agent that ignores its signal until execute returns', async () => {
    const o = await startFake();
    let release!: () => void;
    const stubborn: Agent = { execute: () => new Promise<void>((r) => (release = r)) };
    o.registerAgent(stubborn, { id: 'stubborn', capabilities: ['x'] });
    const first = o.delegate({ type: 't', requires: ['x'], timeoutMs: 10 });
    await vi.advanceTimersByTimeAsync(10);
    await expect(first.result).rejects.toBeInstanceOf(TaskTimeoutError);
    const second = o.delegate({ type: 't', requires: ['x'] });
    expect(o.stats().waiting).toBe(1);
    release();
    await vi.advanceTimersByTimeAsync(0);
    expect(o.stats().waiting).toBe(0);
    expect(o.stats().running).toBe(1);
    expect(second.id).not.toBe(first.id);
    release();
  });
  it('times out each attempt at its own deadline when many attempts with different timeouts run at once', async () => {
    const o = await startFake();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'], concurrency: 10 });
    const t0 = Date.now();
    const abortedAt = new Map<string, number>();
    const startTask = (timeoutMs: number): string => {
      const h = o.delegate({ type: 't', requires: ['x'], timeoutMs });
      const signal = calls.at(-1)!.ctx.signal;
      signal.addEventListener('abort', () => abortedAt.set(h.id, Date.now() - t0));
      return h.id;
    };
    const a = startTask(50); // due 50
    await vi.advanceTimersByTimeAsync(5);
    const b = startTask(10); // due 15, but finishes at 14
    await vi.advanceTimersByTimeAsync(5);
    const c = startTask(50); // due 60
    await vi.advanceTimersByTimeAsync(2);
    const d = startTask(10); // due 22
    const e = startTask(7); // due 19
    await vi.advanceTimersByTimeAsync(2);
    calls[1]!.resolve('b done');
    await vi.advanceTimersByTimeAsync(100);
    expect(Object.fromEntries(abortedAt)).toEqual({ [a]: 50, [c]: 60, [d]: 22, [e]: 19 });
    expect(abortedAt.has(b)).toBe(false);
    expect(o.stats()).toMatchObject({ timedOut: 4, completed: 1, running: 0 });
  });

  it('counts the timeout per attempt from when it starts, not from submit (time spent waiting does not count)', async () => {
    const o = await startFake();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    o.delegate({ type: 'blocker', requires: ['x'] });
    const h = o.delegate({ type: 't', requires: ['x'], timeoutMs: 50 });
    await vi.advanceTimersByTimeAsync(200); // waits far longer than its timeout
    calls[0]!.resolve();
    await vi.advanceTimersByTimeAsync(40);
    expect(calls[1]!.ctx.signal.aborted).toBe(false);
    calls[1]!.resolve('in time');
    await expect(h.result).resolves.toBe('in time');
    expect(o.stats().timedOut).toBe(0);
  });

  it('times out with the default (real) clock and timers too', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'], concurrency: 2 });
    const slow = o.delegate({ type: 't', requires: ['x'], timeoutMs: 40 });
    const fast = o.delegate({ type: 't', requires: ['x'], timeoutMs: 10 });
    const order: string[] = [];
    slow.result.catch(() => order.push('slow'));
    fast.result.catch(() => order.push('fast'));
    await expect(fast.result).rejects.toBeInstanceOf(TaskTimeoutError);
    await expect(slow.result).rejects.toBeInstanceOf(TaskTimeoutError);
    expect(order).toEqual(['fast', 'slow']);
  });

  it('does not fire a timeout longer than the 2^31-1 ms a Node timer can hold early (task and default timeouts)', async () => {
    const slow: Agent = { execute: () => new Promise((resolve) => setTimeout(() => resolve('finished'), 30)) };
    const o = await start({ defaultTimeoutMs: 30 * 24 * 3_600_000 }); // 30 days
    o.registerAgent(slow, { id: 'a', capabilities: ['x'], concurrency: 2 });
    const results = await Promise.allSettled([
      o.submit({ type: 't', requires: ['x'], timeoutMs: 2 ** 31 }), // about 24.9 days
      o.submit({ type: 't', requires: ['x'] }),
    ]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : String(r.reason)))).toEqual([
      'finished',
      'finished',
    ]);
    expect(o.stats().timedOut).toBe(0);
  });

  it('hands the agent a context whose data survives a spread, and whose signal is copied explicitly', async () => {
    const o = await start();
    let copy: Partial<TaskContext> | undefined;
    let explicit: AbortSignal | undefined;
    let own: AbortSignal | undefined;
    o.registerAgent(
      {
        execute: (ctx) => {
          copy = { ...ctx };
          explicit = { ...ctx, signal: ctx.signal }.signal;
          own = ctx.signal;
          return 'ok';
        },
      },
      { id: 'a', capabilities: ['x'] },
    );
    const before = Date.now();
    const handle = o.delegate({ type: 't', requires: ['x'], timeoutMs: 1_000, payload: 7 });
    await handle.result;
    // Data fields are plain own properties; the deadline is epoch ms one timeout after the start.
    expect(copy).toMatchObject({ taskId: handle.id, type: 't', payload: 7, attempt: 1, agentId: 'a' });
    expect(copy!.deadline).toBeGreaterThanOrEqual(before + 1_000);
    expect(copy!.deadline).toBeLessThanOrEqual(Date.now() + 1_000);
    // The signal is made on first read (documented on TaskContext.signal): copy it explicitly.
    expect(explicit).toBeInstanceOf(AbortSignal);
    expect(explicit).toBe(own);
  });
});

describe('cancellation', () => {
  it('removes a waiting task at once on handle.cancel(), and rejects it with TaskCancelledError', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const log = recordEvents(o);
    o.delegate({ type: 't', requires: ['x'] });
    const waiting = o.delegate({ type: 't', requires: ['x'] });
    const behind = o.delegate({ type: 't', requires: ['x'] });
    expect(o.stats().waiting).toBe(2);
    expect(waiting.cancel('no longer needed')).toBe(true);
    expect(o.stats().waiting).toBe(1);
    expect(o.stats().queues).toEqual({ x: 1 });
    expect(waiting.cancel()).toBe(false);
    const error = await rejectionOf(waiting.result);
    expect(error).toBeInstanceOf(TaskCancelledError);
    expect((error as TaskCancelledError).taskId).toBe(waiting.id);
    expect(log.failed).toEqual([expect.objectContaining({ taskId: waiting.id, outcome: 'cancelled' })]);
    // The agent never sees the cancelled task: the next one in line runs instead.
    calls[0]!.resolve();
    await until(() => calls.length === 2);
    expect(calls[1]!.ctx.taskId).toBe(behind.id);
    expect(o.stats().cancelled).toBe(1);
  });

  it('removes a waiting task at once when its task.signal aborts', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    o.delegate({ type: 't', requires: ['x'] });
    const controller = new AbortController();
    const h = o.delegate({ type: 't', requires: ['x'], signal: controller.signal });
    expect(o.stats().waiting).toBe(1);
    controller.abort('caller gave up');
    expect(o.stats().waiting).toBe(0);
    const error = await rejectionOf(h.result);
    expect(error).toBeInstanceOf(TaskCancelledError);
    expect((error as TaskCancelledError).taskId).toBe(h.id);
    expect(o.stats().cancelled).toBe(1);
  });

  it("aborts a running task's ctx.signal with TaskCancelledError carrying the task id (handle.cancel)", async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const h = o.delegate({ type: 't', requires: ['x'] });
    const signal = calls[0]!.ctx.signal;
    expect(o.stats().running).toBe(1);
    expect(h.cancel('stop')).toBe(true);
    expect(o.stats().running).toBe(0);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBeInstanceOf(TaskCancelledError);
    expect((signal.reason as TaskCancelledError).taskId).toBe(h.id);
    const error = await rejectionOf(h.result);
    expect(error).toBeInstanceOf(TaskCancelledError);
    expect((error as TaskCancelledError).taskId).toBe(h.id);
    const s = o.stats();
    expect(s).toMatchObject({ cancelled: 1, running: 0 });
    expect(accounted(s)).toBe(s.submitted);
  });

  it("aborts a running task's ctx.signal when task.signal aborts, and by id through orchestrator.cancel", async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'], concurrency: 2 });
    const controller = new AbortController();
    const bySignal = o.delegate({ type: 't', requires: ['x'], signal: controller.signal });
    const byId = o.delegate({ type: 't', requires: ['x'] });
    controller.abort();
    expect(o.cancel(byId.id)).toBe(true);
    expect(o.cancel(byId.id)).toBe(false);
    for (const [i, h] of [bySignal, byId].entries()) {
      const reason = calls[i]!.ctx.signal.reason as TaskCancelledError;
      expect(reason).toBeInstanceOf(TaskCancelledError);
      expect(reason.taskId).toBe(h.id);
      await expect(h.result).rejects.toBeInstanceOf(TaskCancelledError);
    }
    expect(o.stats().cancelled).toBe(2);
  });

  it('refuses a task whose signal is already aborted, counting it as rejected', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'a', capabilities: ['x'] });
    const controller = new AbortController();
    controller.abort();
    expect(() => o.delegate({ type: 't', requires: ['x'], signal: controller.signal })).toThrow(TaskCancelledError);
    expect(o.stats()).toMatchObject({ submitted: 1, rejected: 1, cancelled: 0, running: 0 });
  });

  it('cancels a task waiting out its backoff, and it never runs again', async () => {
    const o = await startFake({ retry: { baseDelayMs: 1_000, maxDelayMs: 1_000 }, random: () => 0.5 });
    let runs = 0;
    o.registerAgent(
      {
        execute: () => {
          runs++;
          return Promise.reject(new Error('no'));
        },
      },
      { id: 'a', capabilities: ['x'] },
    );
    const h = o.delegate({ type: 't', requires: ['x'], maxAttempts: 3 });
    await vi.advanceTimersByTimeAsync(0);
    expect(o.stats().backingOff).toBe(1);
    expect(h.cancel()).toBe(true);
    expect(o.stats().backingOff).toBe(0);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(runs).toBe(1);
    await expect(h.result).rejects.toBeInstanceOf(TaskCancelledError);
    const s = o.stats();
    expect(s).toMatchObject({ cancelled: 1, deadLettered: 0 });
    expect(accounted(s)).toBe(s.submitted);
  });
});

describe('retries and dead letters', () => {
  it('retries a failed attempt on a different agent when one is free', async () => {
    const o = await start({ retry: { baseDelayMs: 0, maxDelayMs: 0 } });
    const attempts: Array<[string, number]> = [];
    // The specialist is the first choice and keeps scoring higher even after failing once; only the
    // "another agent" rule sends the retry to the generalist.
    o.registerAgent(
      {
        execute: (ctx) => {
          attempts.push([ctx.agentId, ctx.attempt]);
          return Promise.reject(new Error('flaky'));
        },
      },
      { id: 'specialist', capabilities: ['x'] },
    );
    o.registerAgent(
      {
        execute: (ctx) => {
          attempts.push([ctx.agentId, ctx.attempt]);
          return 'ok';
        },
      },
      { id: 'generalist', capabilities: ['x', 'y', 'z'] },
    );
    await expect(o.submit({ type: 't', requires: ['x'], maxAttempts: 2 })).resolves.toBe('ok');
    expect(attempts).toEqual([
      ['specialist', 1],
      ['generalist', 2],
    ]);
    expect(o.stats()).toMatchObject({ completed: 1, retries: 1, deadLettered: 0 });
  });

  it('retries on the same agent when no other capable agent is free', async () => {
    const o = await start({ retry: { baseDelayMs: 0, maxDelayMs: 0 } });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'other', capabilities: ['x', 'y'] });
    let n = 0;
    o.registerAgent(
      { execute: () => (++n === 1 ? Promise.reject(new Error('once')) : `second try ${n}`) },
      { id: 'solo', capabilities: ['x'] },
    );
    o.delegate({ type: 't', requires: ['x', 'y'] }); // keeps 'other' busy
    await expect(o.submit({ type: 't', requires: ['x'], maxAttempts: 2 })).resolves.toBe('second try 2');
  });

  it('waits a full-jitter backoff: floor(random * min(maxDelayMs, baseDelayMs * 2^(n-1)))', async () => {
    const randoms = [0.5, 0.999, 0.25, 0.75, 0.1];
    let r = 0;
    const o = await startFake({
      retry: { baseDelayMs: 100, maxDelayMs: 300 },
      random: () => randoms[r++ % randoms.length]!,
    });
    const starts: number[] = [];
    o.registerAgent(
      {
        execute: () => {
          starts.push(Date.now());
          return Promise.reject(new Error('down'));
        },
      },
      { id: 'a', capabilities: ['x'] },
    );
    const log = recordEvents(o);
    const t0 = Date.now();
    const h = o.delegate({ type: 't', requires: ['x'], maxAttempts: 5 });
    await vi.advanceTimersByTimeAsync(10_000);
    await expect(h.result).rejects.toBeInstanceOf(TaskDeadLetteredError);
    const expected = [1, 2, 3, 4].map((n, i) => Math.floor(randoms[i]! * Math.min(300, 100 * 2 ** (n - 1))));
    expect(expected).toEqual([50, 199, 75, 225]);
    expect(log.retrying.map((e) => [e.attempt, e.delayMs, e.reason])).toEqual(
      expected.map((d, i) => [i + 1, d, 'backoff']),
    );
    // And each next attempt started exactly that long after the previous one failed (attempts fail at once).
    const gaps = starts.slice(1).map((s, i) => s - starts[i]!);
    expect(gaps).toEqual(expected);
    expect(starts[0]).toBe(t0);
  });

  it("dead-letters a task after maxAttempts with every attempt's agent, error and duration; retryDeadLetter resubmits it", async () => {
    let mode: 'fail' | 'ok' = 'fail';
    const o = await startFake({ retry: { baseDelayMs: 0, maxDelayMs: 0 } });
    o.registerAgent(
      timedAgent(30, () => mode, 'A'),
      { id: 'A', capabilities: ['x'] },
    );
    o.registerAgent(
      timedAgent(20, () => mode, 'B'),
      { id: 'B', capabilities: ['x', 'y'] },
    );
    const log = recordEvents(o);
    const h = o.delegate({ type: 'report', requires: ['x'], maxAttempts: 3, tenantId: 'acme', payload: { n: 1 } });
    await vi.advanceTimersByTimeAsync(1_000);
    const error = await rejectionOf(h.result);
    expect(error).toBeInstanceOf(TaskDeadLetteredError);
    const dle = error as TaskDeadLetteredError;
    expect(dle.code).toBe('TASK_DEAD_LETTERED');
    expect(dle.taskId).toBe(h.id);
    expect(dle.attempts).toHaveLength(3);
    expect(log.failed).toEqual([expect.objectContaining({ taskId: h.id, outcome: 'dead-lettered', attempts: 3 })]);

    const letters = o.deadLetters();
    expect(letters).toHaveLength(1);
    const letter = letters[0]!;
    expect(letter.taskId).toBe(h.id);
    expect(letter.type).toBe('report');
    expect(letter.tenantId).toBe('acme');
    expect(letter.task).toMatchObject({
      type: 'report',
      requires: ['x'],
      maxAttempts: 3,
      tenantId: 'acme',
      payload: { n: 1 },
    });
    expect(letter.attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(letter.attempts[0]!.agentId).toBe('A');
    expect(letter.attempts[1]!.agentId).toBe('B'); // a retry goes to an agent not yet tried
    for (const a of letter.attempts) {
      expect(['A', 'B']).toContain(a.agentId);
      expect(a.durationMs).toBe(a.agentId === 'A' ? 30 : 20);
      expect(a.error).toBeInstanceOf(Error);
      expect((a.error as Error).message).toBe(`${a.agentId} failed attempt ${a.attempt}`);
    }
    expect(o.deadLetters('acme')).toHaveLength(1);
    expect(o.deadLetters('other')).toHaveLength(0);
    expect(o.stats()).toMatchObject({ deadLettered: 1, deadLetters: 1, retries: 2 });

    mode = 'ok';
    const again = o.retryDeadLetter(h.id);
    expect(again.id).not.toBe(h.id);
    expect(o.deadLetters()).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(100);
    await expect(again.result).resolves.toMatch(/^[AB]:ok$/);
    const s = o.stats();
    expect(s).toMatchObject({ deadLetters: 0, completed: 1, deadLettered: 1 });
    expect(accounted(s)).toBe(s.submitted);
    expect(() => o.retryDeadLetter(h.id)).toThrow(TaskNotFoundError);
  });

  it('dead-letters timeouts too, each attempt recording its TaskTimeoutError', async () => {
    const o = await startFake({ retry: { baseDelayMs: 0, maxDelayMs: 0 } });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const h = o.delegate({ type: 't', requires: ['x'], maxAttempts: 2, timeoutMs: 15 });
    await vi.advanceTimersByTimeAsync(100);
    const error = (await rejectionOf(h.result)) as TaskDeadLetteredError;
    expect(error).toBeInstanceOf(TaskDeadLetteredError);
    expect(error.attempts.map((a) => a.error instanceof TaskTimeoutError)).toEqual([true, true]);
    expect(error.attempts.map((a) => a.durationMs)).toEqual([15, 15]);
    expect(o.stats()).toMatchObject({ deadLettered: 1, timedOut: 0 });
  });

  it("fails (not dead-letters) a single-attempt task with the agent's own error", async () => {
    const o = await start();
    const boom = new Error('boom');
    o.registerAgent({ execute: () => Promise.reject(boom) }, { id: 'a', capabilities: ['x'] });
    const log = recordEvents(o);
    await expect(o.submit({ type: 't', requires: ['x'] })).rejects.toBe(boom);
    expect(o.deadLetters()).toHaveLength(0);
    expect(log.failed.map((e) => e.outcome)).toEqual(['failed']);
    expect(o.stats()).toMatchObject({ failed: 1, deadLettered: 0, deadLetters: 0 });
  });
});

describe('idempotency', () => {
  it('answers a duplicate submitted while the first is in flight with the same result, running the agent once', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'], concurrency: 4 });
    const first = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'order-1' });
    const second = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'order-1' });
    expect(second.id).toBe(first.id);
    expect(calls).toHaveLength(1);
    calls[0]!.resolve({ total: 42 });
    const [a, b] = await Promise.all([first.result, second.result]);
    expect(a).toEqual({ total: 42 });
    expect(b).toBe(a);
    expect(calls).toHaveLength(1);
    const s = o.stats();
    expect(s).toMatchObject({ deduplicated: 1, completed: 1, submitted: 2 });
    expect(accounted(s)).toBe(s.submitted);
  });

  it('answers a duplicate submitted after the first succeeded from its result, without running the agent', async () => {
    const o = await start();
    let runs = 0;
    o.registerAgent({ execute: (ctx) => `run ${++runs} of ${String(ctx.payload)}` }, { id: 'a', capabilities: ['x'] });
    const first = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'k', payload: 'p' });
    await expect(first.result).resolves.toBe('run 1 of p');
    const second = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'k', payload: 'different' });
    expect(second.id).toBe(first.id);
    await expect(second.result).resolves.toBe('run 1 of p');
    await expect(o.submit({ type: 't', requires: ['x'], idempotencyKey: 'k' })).resolves.toBe('run 1 of p');
    expect(runs).toBe(1);
    // Another key runs.
    await expect(o.submit({ type: 't', requires: ['x'], idempotencyKey: 'other' })).resolves.toBe('run 2 of undefined');
    const s = o.stats();
    expect(s).toMatchObject({ deduplicated: 2, completed: 2, submitted: 4 });
    expect(accounted(s)).toBe(s.submitted);
  });

  it('answers from a succeeded task only within idempotencyTtlMs, then runs again', async () => {
    let now = 0;
    const o = await start({ clock: { now: () => now }, idempotencyTtlMs: 1_000 });
    let runs = 0;
    o.registerAgent({ execute: () => `run ${++runs}` }, { id: 'a', capabilities: ['x'] });
    await expect(o.submit({ type: 't', requires: ['x'], idempotencyKey: 'k' })).resolves.toBe('run 1');
    now = 999;
    await expect(o.submit({ type: 't', requires: ['x'], idempotencyKey: 'k' })).resolves.toBe('run 1');
    now = 1_000;
    await expect(o.submit({ type: 't', requires: ['x'], idempotencyKey: 'k' })).resolves.toBe('run 2');
    expect(o.stats()).toMatchObject({ deduplicated: 1, completed: 2 });
  });

  it('forgets the key after a failure, so a resubmission runs again', async () => {
    const o = await start();
    let runs = 0;
    o.registerAgent(
      { execute: () => (++runs === 1 ? Promise.reject(new Error('first fails')) : 'second works') },
      { id: 'a', capabilities: ['x'] },
    );
    await expect(o.submit({ type: 't', requires: ['x'], idempotencyKey: 'k' })).rejects.toThrow('first fails');
    await expect(o.submit({ type: 't', requires: ['x'], idempotencyKey: 'k' })).resolves.toBe('second works');
    expect(runs).toBe(2);
    expect(o.stats()).toMatchObject({ deduplicated: 0, failed: 1, completed: 1 });
  });

  it('shares a failure with a duplicate that was waiting on it, then forgets the key', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const first = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'k' });
    const dup = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'k' });
    const boom = new Error('boom');
    calls[0]!.reject(boom);
    await expect(first.result).rejects.toBe(boom);
    await expect(dup.result).rejects.toBe(boom);
    const third = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'k' });
    expect(third.id).not.toBe(first.id);
    await until(() => calls.length === 2);
    calls[1]!.resolve('ok');
    await expect(third.result).resolves.toBe('ok');
    expect(o.stats()).toMatchObject({ deduplicated: 1, failed: 1, completed: 1, submitted: 3 });
  });

  it("cancelling a duplicate's handle detaches only that caller; the task keeps running for the first", async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const first = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'k' });
    const dup = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'k' });
    expect(dup.cancel()).toBe(true);
    await expect(dup.result).rejects.toBeInstanceOf(TaskCancelledError);
    expect(calls[0]!.ctx.signal.aborted).toBe(false);
    calls[0]!.resolve('still done');
    await expect(first.result).resolves.toBe('still done');
    await flush();
    expect(o.stats()).toMatchObject({ completed: 1, cancelled: 0, deduplicated: 1 });
  });
});

describe('stats add up', () => {
  it('accounts every submit once across a mix of outcomes', async () => {
    const o = await startFake({ retry: { baseDelayMs: 5, maxDelayMs: 5 }, random: () => 1 - Number.EPSILON });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    o.registerAgent(failingAgent(), { id: 'f', capabilities: ['f'] });
    const hs = [
      o.delegate({ type: 'ok', requires: ['x'] }),
      o.delegate({ type: 'timeout', requires: ['x'], timeoutMs: 10 }),
      o.delegate({ type: 'cancel', requires: ['x'] }),
      o.delegate({ type: 'dead', requires: ['f'], maxAttempts: 2 }),
      o.delegate({ type: 'fail', requires: ['f'] }),
      o.delegate({ type: 'dup', requires: ['x'], idempotencyKey: 'k' }),
    ];
    o.delegate({ type: 'dup', requires: ['x'], idempotencyKey: 'k' });
    expect(() => o.delegate({ type: 'nobody', requires: ['nobody'] })).toThrow();
    let mid = o.stats();
    expect(accounted(mid)).toBe(mid.submitted);
    hs[2]!.cancel();
    calls[0]!.resolve('ok');
    for (let i = 0; i < 10; i++) {
      await vi.advanceTimersByTimeAsync(10);
      for (const c of calls) if (c.ctx.taskId !== hs[1]!.id) c.resolve('ok');
      mid = o.stats();
      expect(accounted(mid)).toBe(mid.submitted);
    }
    await Promise.allSettled(hs.map((h) => h.result));
    const s = o.stats();
    expect(s).toMatchObject({
      submitted: 8,
      rejected: 1,
      deduplicated: 1,
      completed: 2,
      timedOut: 1,
      cancelled: 1,
      deadLettered: 1,
      failed: 1,
      waiting: 0,
      running: 0,
      backingOff: 0,
    });
  });
});

function failingAgent(): Agent {
  return { execute: () => Promise.reject(new Error('always')) };
}
