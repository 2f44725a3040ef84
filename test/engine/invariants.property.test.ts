/**
 * Property: whatever happens (random submits, cancels, agent failures, agents joining and leaving), every accepted
 * task settles exactly once, the counters add up, tasks only ever run on agents holding their requirements, no task
 * waits while a capable agent has a free slot, and nothing is left after `stop({ drain: true })`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UnifiedOrchestrator, type Agent, type TaskContext, type TaskHandle } from 'unified-orchestrator';
import { accounted, tick } from './helpers.js';

const CAPS = ['a', 'b', 'c'] as const;

type Mode = 'ok' | 'fail' | 'hang' | 'stubborn';

type Op =
  | {
      kind: 'submit';
      requires: string[];
      priority: number;
      maxAttempts: number;
      timeoutMs: number | undefined;
      mode: Mode;
      key: string | undefined;
      tenant: string | undefined;
      withSignal: boolean;
    }
  | { kind: 'cancel'; pick: number; via: 'handle' | 'signal' | 'id' }
  | { kind: 'toggleBroken'; pick: number }
  | { kind: 'register'; caps: string[]; concurrency: number }
  | { kind: 'unregister'; pick: number }
  | { kind: 'wait'; ms: number };

const capsArb = fc.subarray([...CAPS]);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('submit' as const),
      requires: capsArb,
      priority: fc.integer({ min: -2, max: 2 }),
      maxAttempts: fc.integer({ min: 1, max: 3 }),
      timeoutMs: fc.option(fc.integer({ min: 2, max: 25 }), { freq: 3 }).map((v) => v ?? undefined),
      mode: fc.constantFrom<Mode>('ok', 'ok', 'fail', 'hang', 'stubborn'),
      key: fc.option(fc.constantFrom('k1', 'k2'), { freq: 2 }).map((v) => v ?? undefined),
      tenant: fc.option(fc.constantFrom('t1', 't2'), { freq: 2 }).map((v) => v ?? undefined),
      withSignal: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('cancel' as const),
      pick: fc.nat(),
      via: fc.constantFrom('handle' as const, 'signal' as const, 'id' as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('toggleBroken' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('register' as const),
      caps: capsArb,
      concurrency: fc.integer({ min: 1, max: 2 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('unregister' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 6 }) }) },
);

const fleetArb = fc.array(fc.record({ caps: capsArb, concurrency: fc.integer({ min: 1, max: 2 }) }), {
  minLength: 1,
  maxLength: 3,
});

interface Payload {
  readonly mode: Mode;
}

/** Behaves as the task's payload says, unless the agent is broken (then every attempt fails at once). */
function fuzzAgent(state: { broken: boolean }): Agent<Payload> {
  return {
    execute(ctx: TaskContext<Payload>) {
      if (state.broken) return Promise.reject(new Error('agent broken'));
      const { mode } = ctx.payload;
      if (mode === 'stubborn') return tick(8).then(() => 'late'); // ignores its signal
      return new Promise((resolve, reject) => {
        const signal = ctx.signal;
        if (signal.aborted) return reject(signal.reason);
        const onAbort = (): void => {
          clearTimeout(timer);
          reject(signal.reason);
        };
        const timer =
          mode === 'hang'
            ? undefined
            : setTimeout(() => {
                signal.removeEventListener('abort', onAbort);
                if (mode === 'ok') resolve('done');
                else reject(new Error('task failed'));
              }, 1);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    },
  };
}

function holdsAll(caps: readonly string[], requires: readonly string[]): boolean {
  return requires.every((c) => caps.includes(c));
}

async function runScenario(
  fleet: Array<{ caps: string[]; concurrency: number }>,
  ops: Op[],
  checkStranded = false,
): Promise<void> {
  const o = new UnifiedOrchestrator({ retry: { baseDelayMs: 1, maxDelayMs: 4 }, agingIntervalMs: 20 });
  await o.start();
  const capsOf = new Map<string, readonly string[]>();
  const brokenOf = new Map<string, { broken: boolean }>();
  const live: string[] = [];
  let nextAgent = 0;
  const register = (caps: string[], concurrency: number): void => {
    const id = `ag${++nextAgent}`;
    const state = { broken: false };
    o.registerAgent(fuzzAgent(state), { id, capabilities: caps, concurrency });
    capsOf.set(id, caps);
    brokenOf.set(id, state);
    live.push(id);
  };

  const requiresOf = new Map<string, readonly string[]>();
  const terminal = new Map<string, number>();
  const outcomes = { completed: 0, failed: 0, cancelled: 0, 'timed-out': 0, 'dead-lettered': 0 };
  const completedIds = new Set<string>();
  const violations: string[] = [];
  // Checked at the end: the first attempt starts inside delegate(), before its id is known here.
  const starts: Array<{ taskId: string; agentId: string }> = [];
  o.on('task:started', (e) => starts.push({ taskId: e.taskId, agentId: e.agentId }));
  o.on('task:completed', (e) => {
    terminal.set(e.taskId, (terminal.get(e.taskId) ?? 0) + 1);
    completedIds.add(e.taskId);
    outcomes.completed++;
  });
  o.on('task:failed', (e) => {
    terminal.set(e.taskId, (terminal.get(e.taskId) ?? 0) + 1);
    outcomes[e.outcome]++;
  });

  const handles: Array<{ handle: TaskHandle; controller: AbortController | undefined }> = [];
  const acceptedIds = new Set<string>();
  const settledHow = new Map<string, 'resolved' | 'rejected'>();
  const allResults: Array<Promise<unknown>> = [];
  const leaving: Array<Promise<void>> = [];
  let calls = 0;
  let thrown = 0;
  let duplicates = 0;

  /**
   * No class of waiting tasks may have a capable agent with a free slot (late binding); with `checkStranded`, no class
   * may wait when no agent that could ever serve it is left (it must fail with NoCapableAgentError instead).
   */
  const checkNoIdleCapableAgent = (where: string): void => {
    const s = o.stats();
    expect(accounted(s), `counters add up (${where})`).toBe(s.submitted);
    for (const key of Object.keys(s.queues)) {
      const requires = key === '*' ? [] : key.split('+');
      if (
        checkStranded &&
        !o.agents().some((a) => a.state !== 'DRAINING' && a.state !== 'FAILED' && holdsAll(a.capabilities, requires))
      ) {
        violations.push(`${where}: class [${requires.join()}] waits though no agent that could serve it is left`);
      }
      for (const a of o.agents()) {
        if (
          (a.state === 'IDLE' || a.state === 'BUSY') &&
          a.running < a.concurrency &&
          holdsAll(a.capabilities, requires)
        ) {
          violations.push(
            `${where}: class [${requires.join()}] waits while ${a.id} [${a.capabilities.join()}] has a free slot`,
          );
        }
      }
    }
  };

  try {
    for (const f of fleet) register(f.caps, f.concurrency);
    for (const [i, op] of ops.entries()) {
      switch (op.kind) {
        case 'submit': {
          calls++;
          const controller = op.withSignal ? new AbortController() : undefined;
          let handle: TaskHandle;
          try {
            handle = o.delegate({
              type: op.mode,
              requires: op.requires,
              priority: op.priority,
              maxAttempts: op.maxAttempts,
              payload: { mode: op.mode } satisfies Payload,
              ...(op.timeoutMs === undefined ? {} : { timeoutMs: op.timeoutMs }),
              ...(op.key === undefined ? {} : { idempotencyKey: op.key }),
              ...(op.tenant === undefined ? {} : { tenantId: op.tenant }),
              ...(controller ? { signal: controller.signal } : {}),
            });
          } catch {
            thrown++;
            break;
          }
          if (acceptedIds.has(handle.id)) {
            duplicates++;
          } else {
            acceptedIds.add(handle.id);
            requiresOf.set(handle.id, op.requires);
            const id = handle.id;
            allResults.push(
              handle.result.then(
                () => settledHow.set(id, 'resolved'),
                () => settledHow.set(id, 'rejected'),
              ),
            );
          }
          handles.push({ handle, controller });
          break;
        }
        case 'cancel': {
          if (handles.length === 0) break;
          const { handle, controller } = handles[op.pick % handles.length]!;
          if (op.via === 'signal' && controller) controller.abort('fuzz');
          else if (op.via === 'id') o.cancel(handle.id);
          else handle.cancel('fuzz');
          break;
        }
        case 'toggleBroken': {
          if (live.length === 0) break;
          const state = brokenOf.get(live[op.pick % live.length]!)!;
          state.broken = !state.broken;
          break;
        }
        case 'register':
          register(op.caps, op.concurrency);
          break;
        case 'unregister': {
          if (live.length === 0) break;
          const [id] = live.splice(op.pick % live.length, 1);
          leaving.push(o.unregisterAgent(id!));
          break;
        }
        case 'wait':
          await tick(op.ms);
          break;
      }
      checkNoIdleCapableAgent(`after op ${i} (${op.kind})`);
    }
  } finally {
    const stopped = o.stop({ drain: true, timeoutMs: 150 });
    const outcome = await Promise.race([stopped.then(() => 'stopped'), tick(3_000).then(() => 'stop hung')]);
    expect(outcome).toBe('stopped');
  }

  const settled = await Promise.race([
    Promise.all(allResults).then(() => 'all settled'),
    tick(1_000).then(() => 'some never settled'),
  ]);
  expect(settled).toBe('all settled');
  await Promise.allSettled(leaving);

  for (const e of starts) {
    const requires = requiresOf.get(e.taskId);
    const caps = capsOf.get(e.agentId);
    if (!requires || !caps) violations.push(`started unknown task ${e.taskId} or agent ${e.agentId}`);
    else if (!holdsAll(caps, requires))
      violations.push(`task ${e.taskId} needing [${requires.join()}] ran on ${e.agentId} [${caps.join()}]`);
  }
  expect(violations).toEqual([]);
  // Exactly one terminal event per accepted task, and none for anything else.
  for (const id of acceptedIds) expect(terminal.get(id), `terminal events of ${id}`).toBe(1);
  for (const id of terminal.keys()) expect(acceptedIds.has(id), `terminal event for unknown task ${id}`).toBe(true);
  // Resolved exactly when it completed.
  for (const id of acceptedIds) expect(settledHow.get(id) === 'resolved', `result of ${id}`).toBe(completedIds.has(id));

  const s = o.stats();
  expect(s.submitted).toBe(calls);
  expect(s.rejected).toBe(thrown);
  expect(s.deduplicated).toBe(duplicates);
  expect({ waiting: s.waiting, running: s.running, backingOff: s.backingOff }).toEqual({
    waiting: 0,
    running: 0,
    backingOff: 0,
  });
  expect(s.queues).toEqual({});
  expect(s.completed).toBe(outcomes.completed);
  expect(s.failed).toBe(outcomes.failed);
  expect(s.cancelled).toBe(outcomes.cancelled);
  expect(s.timedOut).toBe(outcomes['timed-out']);
  expect(s.deadLettered).toBe(outcomes['dead-lettered']);
  expect(s.submitted).toBe(
    s.completed + s.failed + s.cancelled + s.timedOut + s.deadLettered + s.rejected + s.deduplicated,
  );
  expect(s.completed + s.failed + s.cancelled + s.timedOut + s.deadLettered).toBe(acceptedIds.size);
}

describe('engine invariants under random operation sequences', () => {
  it('settles every accepted task exactly once and keeps the counters consistent', async () => {
    await fc.assert(
      fc.asyncProperty(fleetArb, fc.array(opArb, { minLength: 8, maxLength: 40, size: 'max' }), (fleet, ops) =>
        runScenario(fleet, ops),
      ),
      { numRuns: 50, endOnFailure: true, interruptAfterTimeLimit: 25_000 },
    );
  }, 30_000);

  it('never leaves tasks waiting for a capability no remaining agent holds (they fail instead)', async () => {
    await fc.assert(
      fc.asyncProperty(fleetArb, fc.array(opArb, { minLength: 8, maxLength: 40, size: 'max' }), (fleet, ops) =>
        runScenario(fleet, ops, true),
      ),
      { numRuns: 60, endOnFailure: true, interruptAfterTimeLimit: 20_000 },
    );
  }, 30_000);
});
