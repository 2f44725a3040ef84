import { describe, expect, it } from 'vitest';
import {
  OrchestratorNotStartedError,
  OrchestratorStoppedError,
  TaskCancelledError,
  UnifiedOrchestrator,
  type TaskContext,
} from 'unified-orchestrator';
import { recordingAgent, until, wait } from '../support/agents.js';

describe('UnifiedOrchestrator end to end', () => {
  it('sends each task only to agents holding every required capability, and resolves with their result', async () => {
    const seen: Array<{ agentId: string; ctx: TaskContext }> = [];
    const o = new UnifiedOrchestrator({
      pools: [
        { role: 'py', capabilities: ['code', 'python'], minAgents: 2, create: () => recordingAgent(1, seen) },
        { role: 'ts', capabilities: ['code', 'typescript'], minAgents: 2, create: () => recordingAgent(1, seen) },
        { role: 'doc', capabilities: ['text'], minAgents: 2, create: () => recordingAgent(1, seen) },
      ],
    });
    await o.start();
    const requirements = [['code'], ['code', 'python'], ['typescript'], ['text'], []];
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        o.submit<string>({ type: 't', requires: requirements[i % 5]!, payload: i, priority: i % 4 }),
      ),
    );
    expect(results).toHaveLength(200);
    results.forEach((r, i) => expect(r.endsWith(`:${i}`)).toBe(true));
    const roleOf = (id: string) => id.split('-')[0]!;
    for (const { agentId, ctx } of seen) {
      const i = ctx.payload as number;
      const role = roleOf(agentId);
      const req = requirements[i % 5]!;
      const caps = { py: ['code', 'python'], ts: ['code', 'typescript'], doc: ['text'] }[role as 'py' | 'ts' | 'doc'];
      for (const c of req) expect(caps, `task ${i} needs ${c}, ran on ${agentId}`).toContain(c);
    }
    expect(o.stats()).toMatchObject({ submitted: 200, completed: 200, rejected: 0 });
    await o.stop();
  });

  it("rejects with the agent's own error", async () => {
    const o = new UnifiedOrchestrator();
    const boom = new Error('agent exploded');
    o.registerAgent({ execute: () => Promise.reject(boom) }, { capabilities: [] });
    o.registerAgent(
      {
        execute: () => {
          throw boom;
        },
      },
      { capabilities: ['sync'] },
    );
    await o.start();
    await expect(o.submit({ type: 't', requires: [] })).rejects.toBe(boom);
    await expect(o.submit({ type: 't', requires: ['sync'] })).rejects.toBe(boom);
    expect(o.stats()).toMatchObject({ failed: 2, completed: 0 });
    await o.stop();
  });

  it('refuses work before start with OrchestratorNotStartedError', async () => {
    const o = new UnifiedOrchestrator();
    o.registerAgent(recordingAgent(), { capabilities: [] });
    await expect(o.submit({ type: 't' })).rejects.toBeInstanceOf(OrchestratorNotStartedError);
    await o.stop();
  });

  it('spawnAgent before start rejects with OrchestratorNotStartedError', async () => {
    const o = new UnifiedOrchestrator({
      pools: [{ role: 'a', capabilities: ['a'], minAgents: 1, create: () => recordingAgent() }],
    });
    await expect(o.spawnAgent('a')).rejects.toBeInstanceOf(OrchestratorNotStartedError);
    await o.stop();
  });

  it('cancelling a duplicate (same idempotencyKey) detaches only that caller; the first keeps its result', async () => {
    const o = new UnifiedOrchestrator();
    let runs = 0;
    o.registerAgent({ execute: async () => (runs++, await wait(20), 'once') }, { capabilities: [] });
    await o.start();
    const first = o.delegate({ type: 't', idempotencyKey: 'k' });
    const second = o.delegate({ type: 't', idempotencyKey: 'k' });
    expect(second.id).toBe(first.id);
    expect(second.cancel('not needed')).toBe(true);
    await expect(second.result).rejects.toBeInstanceOf(TaskCancelledError);
    await expect(first.result).resolves.toBe('once');
    expect(runs).toBe(1);
    expect(o.stats()).toMatchObject({ completed: 1, cancelled: 0, deduplicated: 1 });
    await o.stop();
  });

  it('hands agents a signal only when they read it, already aborted if their attempt was abandoned before', async () => {
    const o = new UnifiedOrchestrator();
    let late: AbortSignal | undefined;
    o.registerAgent(
      {
        execute: async (ctx) => {
          await wait(30);
          late = ctx.signal;
          return 1;
        },
      },
      { capabilities: [] },
    );
    await o.start();
    await expect(o.submit({ type: 't', timeoutMs: 5 })).rejects.toMatchObject({ code: 'TASK_TIMEOUT' });
    await until(() => late !== undefined);
    expect(late!.aborted).toBe(true);
    expect(late!.reason).toMatchObject({ code: 'TASK_TIMEOUT' });
    await o.stop();
  });

  it('refuses work after stop with OrchestratorStoppedError', async () => {
    const o = new UnifiedOrchestrator({
      pools: [{ role: 'a', capabilities: ['a'], minAgents: 1, create: () => recordingAgent() }],
    });
    await o.start();
    await o.stop();
    await expect(o.submit({ type: 't', requires: ['a'] })).rejects.toBeInstanceOf(OrchestratorStoppedError);
    expect(() => o.delegate({ type: 't' })).toThrow(OrchestratorStoppedError);
    expect(() => o.registerAgent(recordingAgent(), { capabilities: [] })).toThrow(OrchestratorStoppedError);
    await expect(o.spawnAgent('a')).rejects.toBeInstanceOf(OrchestratorStoppedError);
    expect(o.state).toBe('stopped');
  });

  it('ready() follows /readyz: not before start, yes while running (also halted, which is only degraded), not once stopping', async () => {
    const o = new UnifiedOrchestrator({
      pressure: false,
      pools: [{ role: 'a', capabilities: ['a'], minAgents: 1, create: () => recordingAgent() }],
    });
    expect(o.ready()).toBe(false);
    const starting = o.start();
    expect(o.ready()).toBe(false);
    await starting;
    expect(o.ready()).toBe(true);
    await o.halt('maintenance', { local: true });
    expect(o.health().status).toBe('degraded');
    expect(o.ready()).toBe(true);
    const handler = o.httpHandler();
    const readyz = await new Promise<number>((resolve) => {
      const res = {
        statusCode: 0,
        setHeader() {},
        end() {
          resolve(this.statusCode);
        },
        req: { method: 'GET' },
      };
      void handler({ method: 'GET', url: '/readyz' } as never, res as never);
    });
    expect(readyz).toBe(200);
    const stopping = o.stop();
    expect(o.ready()).toBe(false);
    await stopping;
    expect(o.ready()).toBe(false);
  });

  it('start() after stop() rejects with OrchestratorStoppedError instead of resolving into a stopped orchestrator', async () => {
    const o = new UnifiedOrchestrator({
      pools: [{ role: 'a', capabilities: ['a'], minAgents: 1, create: () => recordingAgent() }],
    });
    await o.start();
    await expect(o.start()).resolves.toBeUndefined(); // while running: the first start's promise
    await o.stop();
    await expect(o.start()).rejects.toBeInstanceOf(OrchestratorStoppedError);
    expect(o.state).toBe('stopped');
    const never = new UnifiedOrchestrator({ pools: [] });
    await never.stop();
    await expect(never.start()).rejects.toBeInstanceOf(OrchestratorStoppedError);
  });

  it('stop({ drain: true }) finishes running and waiting work, refuses new work meanwhile, and disposes every agent', async () => {
    const disposed: string[] = [];
    const o = new UnifiedOrchestrator({
      pools: [
        {
          role: 'a',
          capabilities: ['a'],
          minAgents: 2,
          maxAgents: 2,
          warmSpares: 0,
          create: ({ agentId }) => ({ ...recordingAgent(15), dispose: () => void disposed.push(agentId) }),
        },
      ],
    });
    await o.start();
    const results = Array.from({ length: 6 }, (_, i) => o.submit({ type: 't', requires: ['a'], payload: i }));
    expect(o.stats()).toMatchObject({ running: 2, waiting: 4 });
    const stopping = o.stop({ drain: true });
    await expect(o.submit({ type: 't', requires: ['a'] })).rejects.toBeInstanceOf(OrchestratorStoppedError);
    await stopping;
    const settled = await Promise.allSettled(results);
    expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
    expect(disposed.sort()).toEqual(['a-1', 'a-2']);
    expect(o.stats()).toMatchObject({ completed: 6, waiting: 0, running: 0, cancelled: 0 });
    expect(o.agents()).toEqual([]);
  });

  it("stop({ drain: false }) cancels waiting and running tasks, aborting the running ones' signals", async () => {
    const o = new UnifiedOrchestrator();
    const reasons: unknown[] = [];
    o.registerAgent(
      {
        execute: (ctx) =>
          new Promise((_, reject) =>
            ctx.signal.addEventListener('abort', () => (reasons.push(ctx.signal.reason), reject(ctx.signal.reason))),
          ),
      },
      { capabilities: [] },
    );
    await o.start();
    const running = o.submit({ type: 't' });
    const waiting = o.submit({ type: 't' });
    await o.stop({ drain: false });
    await expect(running).rejects.toBeInstanceOf(TaskCancelledError);
    await expect(waiting).rejects.toBeInstanceOf(TaskCancelledError);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toBeInstanceOf(TaskCancelledError);
    expect(o.stats()).toMatchObject({ cancelled: 2, waiting: 0, running: 0 });
  });

  it('stop with a drain timeout cancels what did not finish and still disposes the agent', async () => {
    const o = new UnifiedOrchestrator();
    let disposed = false;
    o.registerAgent(
      { execute: () => new Promise(() => {}), dispose: () => void (disposed = true) },
      { capabilities: [] },
    );
    await o.start();
    const hung = o.submit({ type: 't', timeoutMs: Infinity });
    await o.stop({ drain: true, timeoutMs: 30 });
    await expect(hung).rejects.toBeInstanceOf(TaskCancelledError);
    expect(disposed).toBe(true);
  });

  it('stop is idempotent and emits stopping, then stopped last', async () => {
    const o = new UnifiedOrchestrator();
    const events: string[] = [];
    o.on('stopping', () => events.push('stopping'));
    o.on('stopped', () => events.push('stopped'));
    o.on('agent:state', (e) => events.push(`agent:${e.to}`));
    o.registerAgent(recordingAgent(), { capabilities: [] });
    await o.start();
    const a = o.stop();
    const b = o.stop({ drain: false });
    expect(a).toBe(b);
    await a;
    expect(events.at(-1)).toBe('stopped');
    expect(events.filter((e) => e === 'stopped')).toHaveLength(1);
    expect(events).toContain('agent:TERMINATED');
  });

  it('delegate returns a handle whose cancel rejects the result, and an unawaited handle raises no unhandled rejection', async () => {
    const o = new UnifiedOrchestrator();
    o.registerAgent(recordingAgent(50), { capabilities: [] });
    await o.start();
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    const handle = o.delegate({ type: 't' });
    expect(typeof handle.id).toBe('string');
    expect(handle.cancel('changed my mind')).toBe(true);
    expect(handle.cancel()).toBe(false);
    const err = await handle.result.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskCancelledError);
    expect((err as TaskCancelledError).taskId).toBe(handle.id);
    expect((err as Error).message).toMatch(/changed my mind/);
    o.delegate({ type: 't' }).cancel(); // never awaited
    await wait(20);
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).toEqual([]);
    await o.stop();
  });

  it('a throwing listener does not break the orchestrator and is reported', async () => {
    const o = new UnifiedOrchestrator();
    const reported: unknown[] = [];
    const after: string[] = [];
    o.on('task:completed', () => {
      throw new Error('listener bug');
    });
    o.on('task:completed', (e) => after.push(e.taskId));
    o.on('listener:error', (e) => reported.push(e));
    o.registerAgent(recordingAgent(), { capabilities: [] });
    await o.start();
    await expect(o.submit({ type: 't', payload: 1 })).resolves.toMatch(/:1$/);
    expect(after).toHaveLength(1);
    expect(reported).toEqual([
      { event: 'task:completed', error: expect.objectContaining({ message: 'listener bug' }) },
    ]);
    await o.stop();
  });

  it('off removes a listener and once fires once', async () => {
    const o = new UnifiedOrchestrator();
    let on = 0;
    let once = 0;
    const listener = () => on++;
    o.on('task:completed', listener);
    o.once('task:completed', () => once++);
    o.registerAgent(recordingAgent(), { capabilities: [] });
    await o.start();
    await o.submit({ type: 't' });
    o.off('task:completed', listener);
    await o.submit({ type: 't' });
    expect([on, once]).toEqual([1, 1]);
    await o.stop();
  });

  it('emits task:queued, task:started and a terminal event in order for a task that waited', async () => {
    const o = new UnifiedOrchestrator();
    o.registerAgent(recordingAgent(5), { capabilities: [] });
    await o.start();
    const log: string[] = [];
    o.on('task:queued', (e) => log.push(`queued:${e.taskId}`));
    o.on('task:started', (e) => log.push(`started:${e.taskId}`));
    o.on('task:completed', (e) => log.push(`completed:${e.taskId}`));
    const first = o.delegate({ type: 't' });
    const second = o.delegate({ type: 't' });
    await Promise.all([first.result, second.result]);
    expect(log).toEqual([
      `started:${first.id}`,
      `queued:${second.id}`,
      `completed:${first.id}`,
      `started:${second.id}`,
      `completed:${second.id}`,
    ]);
    await o.stop();
  });

  it('fails waiting tasks with NoCapableAgentError when the last agent that could serve them leaves', async () => {
    const o = new UnifiedOrchestrator();
    o.registerAgent(recordingAgent(20), { capabilities: ['rare'], id: 'only' });
    o.registerAgent(recordingAgent(), { capabilities: ['common'] });
    await o.start();
    const running = o.submit({ type: 't', requires: ['rare'], payload: 'first' });
    const stranded = o.submit({ type: 't', requires: ['rare'], payload: 'second' });
    expect(o.stats().waiting).toBe(1);
    await o.unregisterAgent('only');
    await expect(running).resolves.toBe('only:first');
    await expect(stranded).rejects.toMatchObject({ code: 'NO_CAPABLE_AGENT', requires: ['rare'] });
    expect(o.stats()).toMatchObject({ waiting: 0, failed: 1, completed: 1 });
    await expect(o.submit({ type: 't', requires: ['common'] })).resolves.toBeDefined();
    await o.stop();
  });

  it('a slow agent keeps its slot after its task timed out, until execute returns', async () => {
    const o = new UnifiedOrchestrator();
    o.registerAgent({ execute: () => wait(60).then(() => 'late') }, { capabilities: [], id: 'stubborn' });
    await o.start();
    await expect(o.submit({ type: 't', timeoutMs: 10 })).rejects.toMatchObject({ code: 'TASK_TIMEOUT' });
    expect(o.agent('stubborn')).toMatchObject({ state: 'BUSY', running: 1 });
    await until(() => o.agent('stubborn')?.state === 'IDLE');
    await o.stop();
  });
});

describe('injected strategies that misbehave', () => {
  it('a random source that throws does not break a retry', async () => {
    const o = new UnifiedOrchestrator({
      random: () => {
        throw new Error('bad rng');
      },
      retry: { baseDelayMs: 1, maxDelayMs: 2 },
    });
    let n = 0;
    o.registerAgent(
      { execute: () => (++n === 1 ? Promise.reject(new Error('first')) : 'second') },
      { capabilities: [] },
    );
    await o.start();
    await expect(o.submit({ type: 't', maxAttempts: 2 })).resolves.toBe('second');
    expect(o.stats()).toMatchObject({ completed: 1, retries: 1, backingOff: 0, running: 0 });
    await o.stop();
  });
});
