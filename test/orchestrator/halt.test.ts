/**
 * Halt and resume: the operator's emergency hold. Nothing is lost: running attempts are aborted through their signal
 * and wait again (their attempt not counted), waiting work is held, new work is accepted and waits, and resume()
 * releases everything. Locally, across a MemoryHub cluster, and across a real redis-server (standing state replayed
 * to nodes that join later).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  MemoryBridge,
  MemoryHub,
  OrchestratorHaltedError,
  RedisBridge,
  TaskCancelledError,
  UnifiedOrchestrator,
  type Agent,
  type ControlMessage,
  type OrchestratorEvents,
  type OrchestratorOptions,
  type PoolOptions,
  type TaskContext,
  type TaskHandle,
} from 'unified-orchestrator';
import { until, wait } from '../support/agents.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { FAST, SECRET } from '../bridge/helpers.js';

// --- Helpers ---------------------------------------------------------------------------------------

/** Every execute() call, in order. */
interface Run {
  readonly id: string;
  readonly agentId: string;
  readonly signal: AbortSignal;
  /** 1 for the first time this payload id ran, 2 for the second, ... */
  readonly nth: number;
}

class Runs {
  readonly all: Run[] = [];
  count(id: string): number {
    return this.all.filter((r) => r.id === id).length;
  }
  of(id: string): Run[] {
    return this.all.filter((r) => r.id === id);
  }
}

type Behaviour = (ctx: TaskContext, run: Run) => Promise<unknown>;

/** Waits `ms` (or the signal), then answers `done:<id>#<nth>`. */
const respectful =
  (ms: number): Behaviour =>
  async (ctx, run) => {
    await wait(ms, ctx.signal);
    return `done:${run.id}#${run.nth}`;
  };

function agentOf(runs: Runs, behave: Behaviour): Agent {
  return {
    async execute(ctx) {
      const id = (ctx.payload as { id: string }).id;
      const run: Run = { id, agentId: ctx.agentId, signal: ctx.signal, nth: runs.count(id) + 1 };
      runs.all.push(run);
      return behave(ctx, run);
    },
  };
}

/** Orchestrators made by a test; all stopped after it. */
const live: UnifiedOrchestrator[] = [];

function node(
  runs: Runs,
  behave: Behaviour,
  pool: Partial<PoolOptions> = {},
  options: OrchestratorOptions = {},
): UnifiedOrchestrator {
  const o = new UnifiedOrchestrator({
    pressure: false,
    ...options,
    pools: [
      {
        role: 'w',
        capabilities: ['x'],
        minAgents: 2,
        maxAgents: 2,
        concurrency: 1,
        warmSpares: 0,
        ...pool,
        create: () => agentOf(runs, behave),
      },
    ],
  });
  live.push(o);
  return o;
}

afterEach(async () => {
  const all = live.splice(0);
  await Promise.allSettled(all.map((o) => o.stop({ drain: false })));
});

/** What an orchestrator emitted. Attach before start() to see replayed control messages. */
function record(o: UnifiedOrchestrator) {
  const ev = {
    halted: [] as Array<OrchestratorEvents['halted']>,
    resumed: [] as Array<OrchestratorEvents['resumed']>,
    control: [] as ControlMessage[],
    started: [] as Array<OrchestratorEvents['task:started']>,
    completed: [] as Array<OrchestratorEvents['task:completed']>,
    failed: [] as Array<OrchestratorEvents['task:failed']>,
    retrying: [] as Array<OrchestratorEvents['task:retrying']>,
    scaled: [] as Array<OrchestratorEvents['pool:scaled']>,
    /** Terminal events for one task id (must be exactly 1 once it ended). */
    terminal(taskId: string): number {
      return (
        ev.completed.filter((e) => e.taskId === taskId).length + ev.failed.filter((e) => e.taskId === taskId).length
      );
    },
  };
  o.on('halted', (e) => ev.halted.push(e));
  o.on('resumed', (e) => ev.resumed.push(e));
  o.on('bridge:control', (m) => ev.control.push(m));
  o.on('task:started', (e) => ev.started.push(e));
  o.on('task:completed', (e) => ev.completed.push(e));
  o.on('task:failed', (e) => ev.failed.push(e));
  o.on('task:retrying', (e) => ev.retrying.push(e));
  o.on('pool:scaled', (e) => ev.scaled.push(e));
  return ev;
}

const task = (id: string, extra: Record<string, unknown> = {}) => ({
  type: 't',
  requires: ['x'],
  payload: { id },
  ...extra,
});

/** Settles to the rejection reason; fails the test when the promise resolves. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

/** Polls a sync or async predicate. */
async function eventually(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 2_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await wait(5);
  }
}

/** Whether a promise is still pending after the current turns of the event loop. */
async function pending(p: Promise<unknown>): Promise<boolean> {
  const marker = Symbol('pending');
  const winner = await Promise.race([
    p.then(
      () => 'settled',
      () => 'settled',
    ),
    new Promise((r) => setTimeout(() => r(marker), 0)),
  ]);
  return winner === marker;
}

// --- One node ----------------------------------------------------------------------------------------

describe('halt and resume on one node', () => {
  it('aborts running attempts with OrchestratorHaltedError, holds every task, accepts new ones, and resume runs each exactly once', async () => {
    const runs = new Runs();
    const o = node(runs, respectful(120));
    const ev = record(o);
    await o.start();
    const handles: TaskHandle[] = ['a', 'b', 'c', 'd', 'e'].map((id) => o.delegate(task(id)));
    await until(() => runs.all.length === 2, 2_000);
    const interrupted = [...runs.all];

    const halting = o.halt('vendor incident');
    // Applied synchronously, before the promise settles.
    expect(o.controlState().halted).toBe('vendor incident');
    expect(o.stats().halted).toBe('vendor incident');
    expect(o.stats()).toMatchObject({ running: 0, waiting: 5 });
    for (const r of interrupted) {
      expect(r.signal.aborted).toBe(true);
      expect(r.signal.reason).toBeInstanceOf(OrchestratorHaltedError);
      expect((r.signal.reason as OrchestratorHaltedError).code).toBe('ORCHESTRATOR_HALTED');
      expect((r.signal.reason as OrchestratorHaltedError).reason).toBe('vendor incident');
    }
    await halting;
    expect(ev.halted).toEqual([{ reason: 'vendor incident', interrupted: 2, held: 5 }]);

    // New work is accepted and waits; nothing starts meanwhile.
    handles.push(o.delegate(task('f')), o.delegate(task('g')));
    expect(o.stats().waiting).toBe(7);
    await wait(100);
    expect(runs.all).toHaveLength(2);
    expect(ev.started).toHaveLength(2);
    // Interrupted tasks wait: they are neither failed nor finished.
    expect(ev.failed).toEqual([]);
    expect(ev.completed).toEqual([]);
    for (const h of handles) expect(await pending(h.result)).toBe(true);
    expect(o.stats()).toMatchObject({ failed: 0, cancelled: 0, deadLettered: 0, timedOut: 0, completed: 0 });

    // A second halt changes nothing and emits nothing.
    await o.halt('another reason');
    expect(ev.halted).toHaveLength(1);
    expect(o.controlState().halted).toBe('vendor incident');

    await o.resume();
    expect(ev.resumed).toEqual([{ released: 7 }]);
    expect(o.controlState().halted).toBeNull();
    expect(o.stats().halted).toBeNull();
    const results = await Promise.all(handles.map((h) => h.result));
    expect(results).toHaveLength(7);
    // The interrupted ones ran again (second run), the others once.
    for (const r of interrupted) expect(runs.count(r.id)).toBe(2);
    for (const h of handles) expect(ev.terminal(h.id)).toBe(1);
    expect(ev.failed).toEqual([]);
    expect(o.stats()).toMatchObject({ completed: 7, failed: 0, waiting: 0, running: 0 });

    // A resume while not halted is a no-op without an event.
    await o.resume();
    expect(ev.resumed).toHaveLength(1);
  });

  it('an interrupted attempt does not count against maxAttempts: a task with maxAttempts 1 still completes after resume', async () => {
    const runs = new Runs();
    const o = node(
      runs,
      async (ctx, run) => {
        if (run.nth === 1) await wait(5_000, ctx.signal);
        return `ok#${run.nth}`;
      },
      { minAgents: 1, maxAgents: 1 },
    );
    const ev = record(o);
    await o.start();
    const h = o.delegate<string>(task('once', { maxAttempts: 1 }));
    await until(() => runs.all.length === 1, 2_000);
    await o.halt('hold');
    expect(ev.halted[0]).toMatchObject({ interrupted: 1, held: 1 });
    await o.resume();
    await expect(h.result).resolves.toBe('ok#2');
    expect(runs.count('once')).toBe(2);
    expect(ev.failed).toEqual([]);
    expect(ev.retrying).toEqual([]);
    expect(ev.terminal(h.id)).toBe(1);
    expect(o.stats()).toMatchObject({ completed: 1, failed: 0, deadLettered: 0 });
  });

  it('an interrupted attempt does not spend a retry: maxAttempts 2 still leaves one retry after the re-run fails', async () => {
    const runs = new Runs();
    const o = node(
      runs,
      async (ctx, run) => {
        if (run.nth === 1) await wait(5_000, ctx.signal); // interrupted by the halt
        if (run.nth === 2) throw Object.assign(new Error('flaky'), { retryAfterMs: 5 });
        return `ok#${run.nth}`;
      },
      { minAgents: 1, maxAgents: 1 },
    );
    const ev = record(o);
    await o.start();
    const h = o.delegate<string>(task('twice', { maxAttempts: 2 }));
    await until(() => runs.all.length === 1, 2_000);
    await o.halt('hold');
    await o.resume();
    await expect(h.result).resolves.toBe('ok#3');
    expect(ev.retrying).toHaveLength(1);
    expect(ev.terminal(h.id)).toBe(1);
  });

  it('nothing starts while halted and pools do not scale up for held work; resume starts it and the pool grows', async () => {
    const runs = new Runs();
    const o = node(runs, respectful(20), { minAgents: 1, maxAgents: 5, warmSpares: 1 }, { scaleIntervalMs: 10 });
    const ev = record(o);
    await o.start();
    const membersBefore = o.stats().pools[0]!.members;
    expect(membersBefore).toBe(1);
    ev.scaled.length = 0; // pre-warming's own
    await o.halt('hold');
    const handles = Array.from({ length: 20 }, (_, i) => o.delegate(task(`q${i}`)));
    expect(o.stats().waiting).toBe(20);
    // Several scale intervals pass.
    await wait(150);
    expect(runs.all).toHaveLength(0);
    expect(ev.started).toHaveLength(0);
    const pool = o.stats().pools[0]!;
    expect(pool.members).toBe(membersBefore);
    expect(pool.creating).toBe(0);
    expect(ev.scaled.filter((e) => e.reason === 'demand')).toEqual([]);
    expect(o.stats().waiting).toBe(20);

    await o.resume();
    expect(ev.resumed).toEqual([{ released: 20 }]);
    await Promise.all(handles.map((h) => h.result));
    // Released work is demand again: the pool grew for it.
    expect(ev.scaled.filter((e) => e.reason === 'demand').length).toBeGreaterThan(0);
    for (const h of handles) expect(ev.terminal(h.id)).toBe(1);
    expect(runs.all).toHaveLength(20);
  });

  it('stats, controlState, health and the halted metric report the halt, and clear on resume', async () => {
    const runs = new Runs();
    const o = node(runs, respectful(10));
    await o.start();
    const gauge = async () => /^unified_orchestrator_halted (\S+)$/m.exec((await o.metrics()!).body)?.[1];
    expect(o.health().status).toBe('healthy');
    expect(o.health().components.orchestrator.halted).toBeNull();
    expect(await gauge()).toBe('0');
    expect(o.controlState()).toEqual({ halted: null, traffic: null });

    await o.halt('incident 42');
    expect(o.stats().halted).toBe('incident 42');
    expect(o.controlState()).toEqual({ halted: 'incident 42', traffic: null });
    const health = o.health();
    expect(health.status).toBe('degraded');
    expect(health.components.orchestrator).toMatchObject({
      status: 'degraded',
      state: 'running',
      halted: 'incident 42',
    });
    expect(await gauge()).toBe('1');

    await o.resume();
    expect(o.stats().halted).toBeNull();
    expect(o.controlState()).toEqual({ halted: null, traffic: null });
    expect(o.health().status).toBe('healthy');
    expect(o.health().components.orchestrator.halted).toBeNull();
    expect(await gauge()).toBe('0');
  });

  it('halt() with the default reason, and a non-string reason rejects without halting', async () => {
    const runs = new Runs();
    const o = node(runs, respectful(10));
    await o.start();
    await expect(o.halt(42 as unknown as string)).rejects.toMatchObject({ code: 'VALIDATION_ERROR' });
    expect(o.controlState().halted).toBeNull();
    await o.halt();
    expect(typeof o.controlState().halted).toBe('string');
    expect(o.controlState().halted).not.toBe('');
  });

  it('an agent that ignores its signal keeps its slot until execute returns; the task re-runs after, and the late result is discarded', async () => {
    const runs = new Runs();
    let firstReturned = false;
    const o = node(
      runs,
      async (_ctx, run) => {
        if (run.nth === 1) {
          await wait(300); // ignores ctx.signal
          firstReturned = true;
          return 'late result of the interrupted attempt';
        }
        return `rerun#${run.nth}`;
      },
      { minAgents: 1, maxAgents: 1 },
    );
    const ev = record(o);
    await o.start();
    const h = o.delegate<string>(task('stubborn'));
    await until(() => runs.all.length === 1, 2_000);
    const agentId = runs.all[0]!.agentId;
    await o.halt('hold');
    expect(runs.all[0]!.signal.aborted).toBe(true);
    await o.resume();
    // The only agent is still inside execute(): its slot is taken, nothing starts.
    await wait(100);
    expect(firstReturned).toBe(false);
    expect(runs.all).toHaveLength(1);
    expect(o.agent(agentId)!.running).toBe(1);
    expect(o.stats()).toMatchObject({ waiting: 1, running: 0 });
    // Once it returns, the task runs again and completes with the second run's result.
    await expect(h.result).resolves.toBe('rerun#2');
    expect(firstReturned).toBe(true);
    expect(runs.count('stubborn')).toBe(2);
    expect(ev.completed).toHaveLength(1);
    expect(ev.terminal(h.id)).toBe(1);
  });

  it('an agent that ignores its signal: after resume the task re-runs at once on another free agent', async () => {
    const runs = new Runs();
    let release!: () => void;
    const stuck = new Promise<void>((r) => (release = r));
    const o = node(runs, async (_ctx, run) => {
      if (run.nth === 1) {
        await stuck; // ignores ctx.signal
        return 'late';
      }
      return `rerun#${run.nth}`;
    });
    const ev = record(o);
    await o.start();
    const h = o.delegate<string>(task('elsewhere'));
    await until(() => runs.all.length === 1, 2_000);
    const first = runs.all[0]!.agentId;
    await o.halt('hold');
    await o.resume();
    await expect(h.result).resolves.toBe('rerun#2');
    expect(runs.all[1]!.agentId).not.toBe(first);
    // The first agent is still busy with the abandoned attempt.
    expect(o.agent(first)!.running).toBe(1);
    release();
    await until(() => o.agent(first)!.running === 0, 2_000);
    expect(ev.completed).toHaveLength(1);
    expect(ev.terminal(h.id)).toBe(1);
  });

  it('cancel while halted rejects the held task with TaskCancelledError, exactly once; the others still run after resume', async () => {
    const runs = new Runs();
    const o = node(runs, respectful(50), { minAgents: 1, maxAgents: 1 });
    const ev = record(o);
    await o.start();
    const running = o.delegate(task('running'));
    await until(() => runs.all.length === 1, 2_000);
    await o.halt('hold');
    const waiting = o.delegate(task('waiting'));
    const kept = o.delegate(task('kept'));

    expect(o.cancel(waiting.id, 'not needed')).toBe(true);
    expect(o.cancel(running.id)).toBe(true); // interrupted by the halt, now held
    expect(o.cancel(waiting.id)).toBe(false);
    expect(running.cancel()).toBe(false);
    for (const h of [waiting, running]) {
      const error = await rejection(h.result);
      expect(error).toBeInstanceOf(TaskCancelledError);
      expect((error as TaskCancelledError).code).toBe('TASK_CANCELLED');
      expect(ev.failed.filter((e) => e.taskId === h.id)).toEqual([expect.objectContaining({ outcome: 'cancelled' })]);
    }
    expect(o.stats()).toMatchObject({ waiting: 1, cancelled: 2 });

    await o.resume();
    expect(ev.resumed).toEqual([{ released: 1 }]);
    await expect(kept.result).resolves.toBe('done:kept#1');
    expect(runs.count('waiting')).toBe(0);
    expect(runs.count('running')).toBe(1);
    for (const h of [waiting, running, kept]) expect(ev.terminal(h.id)).toBe(1);
  });

  it('stop({ drain: true }) while halted cancels held work at once instead of waiting out the drain timeout', async () => {
    const runs = new Runs();
    const o = node(runs, respectful(5_000), { minAgents: 1, maxAgents: 1 });
    const ev = record(o);
    let stopped: OrchestratorEvents['stopped'] | undefined;
    o.on('stopped', (e) => (stopped = e));
    await o.start();
    const handles = [o.delegate(task('r'))];
    await until(() => runs.all.length === 1, 2_000);
    await o.halt('hold');
    handles.push(o.delegate(task('w1')), o.delegate(task('w2')), o.delegate(task('w3')));
    const t0 = Date.now();
    await o.stop({ drain: true, timeoutMs: 10_000 });
    expect(Date.now() - t0).toBeLessThan(5_000);
    for (const h of handles) {
      const error = await rejection(h.result);
      expect((error as { code?: string }).code).toBe('TASK_CANCELLED');
      expect(ev.terminal(h.id)).toBe(1);
    }
    expect(stopped).toMatchObject({ cancelled: 4 });
    expect(runs.all).toHaveLength(1); // nothing started while halted
  });

  it('a halt during a drain: the held work cannot drain, so stop cancels it without waiting out the timeout', async () => {
    const runs = new Runs();
    const o = node(runs, respectful(200), { minAgents: 1, maxAgents: 1 });
    await o.start();
    const handles = ['d1', 'd2', 'd3', 'd4', 'd5'].map((id) => o.delegate(task(id)));
    await until(() => runs.all.length === 1, 2_000);
    const t0 = Date.now();
    const stopping = o.stop({ drain: true, timeoutMs: 3_000 });
    await wait(20);
    await o.halt('hold during drain');
    await stopping;
    // Without the halt the drain would take ~1 s; with it nothing can finish, so waiting 3 s gains nothing.
    expect(Date.now() - t0).toBeLessThan(1_500);
    for (const h of handles) expect(((await rejection(h.result)) as { code?: string }).code).toBe('TASK_CANCELLED');
  });

  it('a task in backoff when the halt comes waits after its backoff instead of starting, and completes after resume', async () => {
    const runs = new Runs();
    const o = node(
      runs,
      async (_ctx, run) => {
        if (run.nth === 1) throw Object.assign(new Error('try again soon'), { retryAfterMs: 80 });
        return `ok#${run.nth}`;
      },
      { minAgents: 1, maxAgents: 1 },
    );
    const ev = record(o);
    await o.start();
    const h = o.delegate<string>(task('backoff', { maxAttempts: 3 }));
    await until(() => ev.retrying.length === 1, 2_000);
    expect(ev.retrying[0]!.delayMs).toBe(80);
    expect(o.stats().backingOff).toBe(1);
    await o.halt('hold');
    expect(ev.halted[0]).toMatchObject({ interrupted: 0 });
    // The backoff ends while halted: the task waits instead of starting its second attempt.
    await wait(200);
    expect(runs.count('backoff')).toBe(1);
    expect(o.stats()).toMatchObject({ backingOff: 0, waiting: 1, running: 0 });
    expect(await pending(h.result)).toBe(true);
    await o.resume();
    await expect(h.result).resolves.toBe('ok#2');
    expect(ev.terminal(h.id)).toBe(1);
  });

  it('a duplicate submit (same idempotencyKey) of a held task follows it: one more run after resume, one result for both', async () => {
    const runs = new Runs();
    const o = node(runs, respectful(100), { minAgents: 1, maxAgents: 1 });
    const ev = record(o);
    await o.start();
    const first = o.submit<string>(task('idem', { idempotencyKey: 'order-1' }));
    await until(() => runs.all.length === 1, 2_000);
    await o.halt('hold');
    const second = o.submit<string>(task('idem', { idempotencyKey: 'order-1' }));
    expect(o.stats().deduplicated).toBe(1);
    await wait(50);
    expect(runs.count('idem')).toBe(1);
    await o.resume();
    const [a, b] = await Promise.all([first, second]);
    expect(a).toBe('done:idem#2');
    expect(b).toBe(a);
    expect(runs.count('idem')).toBe(2); // the interrupted run and one re-run, not one per submit
    expect(ev.completed).toHaveLength(1);
  });
});

// --- A MemoryHub cluster --------------------------------------------------------------------------

describe('halt and resume across a MemoryHub cluster', () => {
  function cluster() {
    const hub = new MemoryHub();
    const runs = new Runs();
    const make = (name: string, behave: Behaviour = respectful(30)) => {
      const bridge = new MemoryBridge({ hub, nodeId: `mem-${name}` });
      const o = node(runs, behave, {}, { bridge });
      return { o, ev: record(o), bridge };
    };
    return { hub, runs, make };
  }

  it('halt(reason, { local: true }) halts only that node', async () => {
    const { make, runs } = cluster();
    const a = make('a');
    const b = make('b');
    await a.o.start();
    await b.o.start();
    await a.o.halt('local only', { local: true });
    expect(a.o.controlState().halted).toBe('local only');
    expect(b.o.controlState().halted).toBeNull();
    expect(b.ev.halted).toEqual([]);
    expect(a.ev.control).toEqual([]);
    expect(b.ev.control).toEqual([]);
    // B still runs work; A holds its own.
    await expect(b.o.submit(task('on-b'))).resolves.toBe('done:on-b#1');
    const held = a.o.delegate(task('on-a'));
    await wait(80);
    expect(runs.count('on-a')).toBe(0);
    // A node joining now is not halted: a local halt is no standing state.
    const c = make('c');
    await c.o.start();
    expect(c.o.controlState().halted).toBeNull();
    expect(c.ev.halted).toEqual([]);
    await a.o.resume({ local: true });
    expect(b.ev.resumed).toEqual([]);
    await expect(held.result).resolves.toBe('done:on-a#1');
  });

  it('a halt on A halts B (from = A); resume on B releases both; a node that joins during the halt starts halted', async () => {
    const { make, runs } = cluster();
    const a = make('a', respectful(150));
    const b = make('b', respectful(150));
    await a.o.start();
    await b.o.start();
    const onB = [b.o.delegate(task('b1')), b.o.delegate(task('b2')), b.o.delegate(task('b3'))];
    await until(() => runs.all.length === 2, 2_000);
    const interruptedOnB = [...runs.all];

    await a.o.halt('cluster maintenance');
    for (const x of [a, b]) expect(x.o.controlState().halted).toBe('cluster maintenance');
    expect(a.o.controlState().haltedBy).toBeUndefined();
    expect(b.o.controlState().haltedBy).toBe(a.bridge.nodeId);
    expect(a.ev.halted).toEqual([{ reason: 'cluster maintenance', interrupted: 0, held: 0 }]);
    expect(b.ev.halted).toEqual([{ reason: 'cluster maintenance', interrupted: 2, held: 3, from: a.bridge.nodeId }]);
    for (const r of interruptedOnB)
      expect((r.signal.reason as OrchestratorHaltedError).code).toBe('ORCHESTRATOR_HALTED');
    expect(b.ev.control).toEqual([
      expect.objectContaining({ kind: 'halt', reason: 'cluster maintenance', from: a.bridge.nodeId }),
    ]);
    expect(b.ev.control[0]!.replayed).toBeUndefined();

    // C joins during the halt: it starts halted, through a replayed control message.
    const c = make('c', respectful(20));
    await c.o.start();
    expect(c.o.controlState()).toMatchObject({ halted: 'cluster maintenance', haltedBy: a.bridge.nodeId });
    expect(c.ev.halted).toEqual([expect.objectContaining({ reason: 'cluster maintenance', from: a.bridge.nodeId })]);
    expect(c.ev.control).toEqual([
      expect.objectContaining({ kind: 'halt', reason: 'cluster maintenance', replayed: true }),
    ]);
    const onC = c.o.delegate(task('c1'));
    const onA = a.o.delegate(task('a1'));
    await wait(80);
    expect(runs.all).toHaveLength(2);

    await b.o.resume();
    for (const x of [a, b, c]) {
      expect(x.o.controlState().halted).toBeNull();
      expect(x.ev.resumed).toHaveLength(1);
    }
    expect(b.ev.resumed[0]).toEqual({ released: 3 });
    expect(a.ev.resumed[0]).toEqual({ released: 1, from: b.bridge.nodeId });
    expect(c.ev.resumed[0]).toEqual({ released: 1, from: b.bridge.nodeId });
    await Promise.all([...onB, onC, onA].map((h) => h.result));
    for (const [x, hs] of [
      [b, onB],
      [c, [onC]],
      [a, [onA]],
    ] as const)
      for (const h of hs) expect(x.ev.terminal(h.id)).toBe(1);

    // A node joining after the resume starts running.
    const d = make('d');
    await d.o.start();
    expect(d.o.controlState().halted).toBeNull();
    expect(d.ev.halted).toEqual([]);
    await expect(d.o.submit(task('d1'))).resolves.toBe('done:d1#1');
  });

  it("cluster() reports each node's status: state, halted reason, pools, queues, breakers", async () => {
    const { make } = cluster();
    const a = make('a');
    const b = make('b');
    await a.o.start();
    await b.o.start();
    await a.o.halt('look at me', { local: true });
    a.o.delegate(task('queued'));
    const nodes = await b.o.cluster();
    const nodeA = nodes.find((n) => n.nodeId === a.bridge.nodeId)!;
    const nodeB = nodes.find((n) => n.nodeId === b.bridge.nodeId)!;
    expect(nodeA.status).toMatchObject({
      state: 'running',
      health: 'degraded',
      halted: 'look at me',
      waiting: 1,
      running: 0,
      queues: { x: 1 },
      pools: [{ role: 'w', members: 2, busy: 0, minAgents: 2, maxAgents: 2 }],
      breakers: { open: 0, halfOpen: 0, dependenciesOpen: [] },
    });
    expect(nodeB.status).toMatchObject({ state: 'running', halted: null, waiting: 0 });
  });

  it('traffic settings merge across messages, are replayed to a joining node, and rollback sets 0% without shadow', async () => {
    const { make } = cluster();
    const a = make('a');
    const b = make('b');
    await a.o.start();
    await b.o.start();
    await a.o.broadcast({ kind: 'traffic', value: { percent: 40 } });
    await b.o.broadcast({ kind: 'traffic', value: { shadow: true } });
    for (const x of [a, b]) expect(x.o.controlState().traffic).toEqual({ percent: 40, shadow: true });
    const c = make('c');
    await c.o.start();
    expect(c.o.controlState().traffic).toEqual({ percent: 40, shadow: true });
    expect(c.ev.control.every((m) => m.replayed === true)).toBe(true);
    await c.o.broadcast({ kind: 'rollback' });
    for (const x of [a, b, c]) expect(x.o.controlState().traffic).toEqual({ percent: 0, shadow: false });
    const d = make('d');
    await d.o.start();
    expect(d.o.controlState().traffic).toEqual({ percent: 0, shadow: false });
  });

  it('malformed traffic values are ignored: controlState unchanged and no bridge:control event', async () => {
    const { make } = cluster();
    const a = make('a');
    const b = make('b');
    await a.o.start();
    await b.o.start();
    await a.o.broadcast({ kind: 'traffic', value: { percent: 40, shadow: true } });
    const before = [a.ev.control.length, b.ev.control.length];
    for (const value of [{ percent: 150 }, { shadow: 'yes' }, { percent: -1 }, 'fifty', {}, null]) {
      await a.o.broadcast({ kind: 'traffic', value });
    }
    for (const x of [a, b]) expect(x.o.controlState().traffic).toEqual({ percent: 40, shadow: true });
    expect([a.ev.control.length, b.ev.control.length]).toEqual(before);
  });

  it('malformed traffic values do not overwrite the standing setting a joining node is given', async () => {
    const { make } = cluster();
    const a = make('a');
    await a.o.start();
    await a.o.broadcast({ kind: 'traffic', value: { percent: 40 } });
    await a.o.broadcast({ kind: 'traffic', value: { shadow: true } });
    await a.o.broadcast({ kind: 'traffic', value: { percent: 150 } });
    await a.o.broadcast({ kind: 'traffic', value: { shadow: 'yes' } });
    expect(a.o.controlState().traffic).toEqual({ percent: 40, shadow: true });
    const late = make('late');
    await late.o.start();
    // Every node of the cluster must apply the same setting, the ones that join later included.
    expect(late.o.controlState().traffic).toEqual({ percent: 40, shadow: true });
  });
});

// --- A real redis-server ---------------------------------------------------------------------------

/** Suites on a real Redis: skipped without redis-server (the run says so once), failing instead under CI. */
const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('halt and resume across a RedisBridge cluster', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  }, 20_000);
  afterAll(async () => {
    if (redis?.owned) await redis.stop();
  });

  function cluster() {
    const ns = namespace('uo-halt');
    const runs = new Runs();
    const make = (name: string, behave: Behaviour = respectful(30)) => {
      const bridge = new RedisBridge({
        url: redis.url,
        secret: SECRET,
        namespace: ns,
        nodeId: `redis-${name}`,
        ...FAST,
      });
      const o = node(runs, behave, {}, { bridge });
      return { o, ev: record(o), bridge };
    };
    return { runs, make };
  }

  it('a halt on A halts B (from = A), a node started during the halt starts halted, and a resume on B releases all three', async () => {
    const { make, runs } = cluster();
    const a = make('a', respectful(150));
    const b = make('b', respectful(150));
    await Promise.all([a.o.start(), b.o.start()]);
    const onB = [b.o.delegate(task('b1')), b.o.delegate(task('b2')), b.o.delegate(task('b3'))];
    await until(() => runs.all.length === 2, 2_000);

    await a.o.halt('redis incident');
    expect(a.o.controlState().halted).toBe('redis incident');
    await eventually(() => b.ev.halted.length === 1, 2_000, 'B halted');
    expect(b.ev.halted[0]).toEqual({ reason: 'redis incident', interrupted: 2, held: 3, from: a.bridge.nodeId });
    expect(b.o.controlState()).toMatchObject({ halted: 'redis incident', haltedBy: a.bridge.nodeId });
    expect(
      runs.all.every(
        (r) => r.signal.aborted && (r.signal.reason as OrchestratorHaltedError).code === 'ORCHESTRATOR_HALTED',
      ),
    ).toBe(true);

    const c = make('c', respectful(20));
    await c.o.start();
    expect(c.o.controlState()).toMatchObject({ halted: 'redis incident', haltedBy: a.bridge.nodeId });
    expect(c.ev.halted).toEqual([expect.objectContaining({ reason: 'redis incident', from: a.bridge.nodeId })]);
    expect(c.ev.control).toContainEqual(
      expect.objectContaining({ kind: 'halt', reason: 'redis incident', replayed: true }),
    );
    const onC = c.o.delegate(task('c1'));
    const onA = a.o.delegate(task('a1'));
    await wait(100);
    expect(runs.all).toHaveLength(2);

    await b.o.resume();
    expect(b.o.controlState().halted).toBeNull();
    await eventually(() => a.ev.resumed.length === 1 && c.ev.resumed.length === 1, 2_000, 'A and C resumed');
    expect(a.ev.resumed[0]).toEqual({ released: 1, from: b.bridge.nodeId });
    expect(c.ev.resumed[0]).toEqual({ released: 1, from: b.bridge.nodeId });
    await Promise.all([...onB, onC, onA].map((h) => h.result));
    for (const [x, hs] of [
      [b, onB],
      [c, [onC]],
      [a, [onA]],
    ] as const)
      for (const h of hs) expect(x.ev.terminal(h.id)).toBe(1);
    // Each node applied the halt and the resume once.
    await wait(100);
    for (const x of [a, b, c]) {
      expect(x.ev.halted).toHaveLength(1);
      expect(x.ev.resumed).toHaveLength(1);
      expect(x.o.controlState().halted).toBeNull();
    }
    // A node joining after the resume runs.
    const d = make('d');
    await d.o.start();
    expect(d.o.controlState().halted).toBeNull();
    await expect(d.o.submit(task('d1'))).resolves.toBe('done:d1#1');
  });

  it('halt then resume at once on one node: each applied once; the released work is not interrupted again by the echo of the halt', async () => {
    const { make, runs } = cluster();
    const a = make('a', respectful(200));
    const b = make('b');
    await Promise.all([a.o.start(), b.o.start()]);
    // halt() applies at once ("halted when the call returns"); the resume comes before Redis echoed the halt back.
    const halting = a.o.halt('blip');
    const held = [a.o.delegate(task('held-1')), a.o.delegate(task('held-2'))];
    expect(a.o.stats().waiting).toBe(2);
    await a.o.resume();
    await halting;
    // The node's own halt and resume come back through Redis; they must not halt it again (interrupting the released work).
    expect(runs.all.map((r) => r.id).sort()).toEqual(['held-1', 'held-2']);
    await Promise.all(held.map((h) => h.result));
    expect(a.o.controlState().halted).toBeNull();
    expect(runs.all.map((r) => r.id).sort()).toEqual(['held-1', 'held-2']);
    expect(runs.all.filter((r) => r.signal.aborted)).toEqual([]);
    expect(a.ev.halted).toHaveLength(1);
    expect(a.ev.resumed).toHaveLength(1);
  });

  it('a local halt stays local over Redis', async () => {
    const { make } = cluster();
    const a = make('a');
    const b = make('b');
    await Promise.all([a.o.start(), b.o.start()]);
    await a.o.halt('just me', { local: true });
    await wait(100);
    expect(b.o.controlState().halted).toBeNull();
    expect(b.ev.control).toEqual([]);
    const c = make('c');
    await c.o.start();
    expect(c.o.controlState().halted).toBeNull();
  });

  it('traffic messages merge on every node and on a node that joins later; rollback sets 0% without shadow', async () => {
    const { make } = cluster();
    const a = make('a');
    const b = make('b');
    await Promise.all([a.o.start(), b.o.start()]);
    await a.o.broadcast({ kind: 'traffic', value: { percent: 40 } });
    await a.o.broadcast({ kind: 'traffic', value: { shadow: true } });
    const want = { percent: 40, shadow: true };
    await eventually(
      () => [a, b].every((x) => JSON.stringify(x.o.controlState().traffic) === JSON.stringify(want)),
      2_000,
      'traffic applied',
    );
    const c = make('c');
    await c.o.start();
    expect(c.o.controlState().traffic).toEqual(want);
    expect(c.ev.control.filter((m) => m.kind === 'traffic').every((m) => m.replayed === true)).toBe(true);

    await b.o.broadcast({ kind: 'rollback' });
    const off = { percent: 0, shadow: false };
    await eventually(
      () => [a, b, c].every((x) => JSON.stringify(x.o.controlState().traffic) === JSON.stringify(off)),
      2_000,
      'rollback applied',
    );
    const d = make('d');
    await d.o.start();
    expect(d.o.controlState().traffic).toEqual(off);
  });

  it('malformed traffic values are ignored on every node: no change, no bridge:control event', async () => {
    const { make } = cluster();
    const a = make('a');
    const b = make('b');
    await Promise.all([a.o.start(), b.o.start()]);
    await a.o.broadcast({ kind: 'traffic', value: { percent: 40, shadow: true } });
    await eventually(() => b.ev.control.length === 1 && a.ev.control.length === 1, 2_000, 'traffic delivered');
    await a.o.broadcast({ kind: 'traffic', value: { percent: 150 } });
    await a.o.broadcast({ kind: 'traffic', value: { shadow: 'yes' } });
    // A message sent after them arrives after them: once it is seen, the malformed ones were handled.
    await a.o.broadcast({ kind: 'config', value: { marker: 1 } });
    await eventually(
      () => b.ev.control.some((m) => m.kind === 'config') && a.ev.control.some((m) => m.kind === 'config'),
      2_000,
      'marker delivered',
    );
    for (const x of [a, b]) {
      expect(x.o.controlState().traffic).toEqual({ percent: 40, shadow: true });
      expect(x.ev.control.map((m) => m.kind)).toEqual(['traffic', 'config']);
    }
  });

  it('malformed traffic values do not overwrite the standing setting replayed to a node that joins later', async () => {
    const { make } = cluster();
    const a = make('a');
    await a.o.start();
    await a.o.broadcast({ kind: 'traffic', value: { percent: 40 } });
    await a.o.broadcast({ kind: 'traffic', value: { shadow: true } });
    await a.o.broadcast({ kind: 'traffic', value: { percent: 150 } });
    await a.o.broadcast({ kind: 'traffic', value: { shadow: 'yes' } });
    await eventually(
      () => JSON.stringify(a.o.controlState().traffic) === JSON.stringify({ percent: 40, shadow: true }),
      2_000,
      'A applied',
    );
    const late = make('late');
    await late.o.start();
    expect(late.o.controlState().traffic).toEqual({ percent: 40, shadow: true });
  });

  it("cluster() returns each node's status after a heartbeat; a halt shows in the other node's view within 2 s", async () => {
    const { make } = cluster();
    const a = make('a');
    const b = make('b');
    await Promise.all([a.o.start(), b.o.start()]);
    const viewOfA = async () => (await b.o.cluster()).find((n) => n.nodeId === a.bridge.nodeId);
    await eventually(async () => (await viewOfA())?.status !== undefined, 2_000, "A in B's registry view");
    expect((await viewOfA())!.status).toMatchObject({
      state: 'running',
      halted: null,
      traffic: null,
      running: 0,
      waiting: 0,
      queues: {},
      pools: [{ role: 'w', members: 2, busy: 0, minAgents: 2, maxAgents: 2 }],
      breakers: { open: 0, halfOpen: 0, dependenciesOpen: [] },
    });

    await a.o.halt('visible to operators');
    a.o.delegate(task('held-on-a'));
    await eventually(
      async () => {
        const s = (await viewOfA())?.status;
        return s?.halted === 'visible to operators' && s.waiting === 1;
      },
      2_000,
      "the halt in B's view of A",
    );
    expect((await viewOfA())!.status).toMatchObject({ state: 'running', health: 'degraded', queues: { x: 1 } });
    // B's own entry too (B was halted by the cluster halt).
    await eventually(
      async () =>
        (await a.o.cluster()).find((n) => n.nodeId === b.bridge.nodeId)?.status?.halted === 'visible to operators',
      2_000,
      "the halt in A's view of B",
    );

    await a.o.resume();
    await eventually(async () => (await viewOfA())?.status?.halted === null, 2_000, "the resume in B's view of A");
  });
});
