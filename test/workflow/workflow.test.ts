/**
 * Durable workflows through the orchestrator (src/workflow/): results and replay, fan-out, step failures and
 * retries, JSON results, signals, sleeps, cancel, the guards (maxSteps, budget, deadline, halt), versions,
 * non-determinism, starting twice, bad input, interrupts, and a clean exit. Nodes share one store per test (see
 * helpers.ts: every suite runs on each store of WORKFLOW_STORES); "a restart" is a node's stop() and another node on
 * the same store. Real timers throughout: the waits, sleeps and claims are what is under test.
 */
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  isWorkflowInterrupt,
  MemoryBridge,
  MemoryHub,
  RunNotFoundError,
  SignalTimeoutError,
  ValidationError,
  WorkflowInterrupt,
  WorkflowLimitError,
  WorkflowNonDeterminismError,
  WorkflowNotFoundError,
  WorkflowStepError,
  type TaskContext,
  type UnifiedOrchestrator,
  type WorkflowContext,
} from '../../src/index.js';
import { deferred, eventually, wait } from '../support/agents.js';
import { runToExit } from '../support/exit-child.js';
import { FlakyStore } from '../store/flaky-store.js';
import { ended, parked, rejection, thrown, WORKFLOW_STORES, workflowNodes } from './helpers.js';

/** Increments `counts[key]` and returns the new count. */
function bump(counts: Record<string, number>, key: string): number {
  counts[key] = (counts[key] ?? 0) + 1;
  return counts[key];
}

describe.each(WORKFLOW_STORES)('workflows on $name', (storeCase) => {
  const { node, store: sharedStore } = workflowNodes(storeCase);

  describe('results and replay', () => {
    it('returns the result; after a restart, completed steps return their checkpoints and never run again', async () => {
      const { shared, raw } = await sharedStore();
      const calls: Record<string, number> = {};
      const execute = (ctx: TaskContext): unknown => (bump(calls, `agent:${ctx.type}`), (ctx.payload as number) * 2);
      const setup = (o: UnifiedOrchestrator): void =>
        o.workflow('pipeline', {}, async (run: WorkflowContext<{ n: number }>, input: { n: number }) => {
          const doubled = await run.task<number>('double', { type: 'double', requires: ['work'], payload: input.n });
          const plus = await run.step('plus', () => (bump(calls, 'plus'), doubled + 1));
          const approval = await run.signal<{ ok: boolean }>('approval');
          const last = await run.step('last', () => (bump(calls, 'last'), `${plus}:${approval.ok}`));
          return { doubled, plus, last };
        });
      const a = await node(shared, setup, { execute });
      const handle = a.startWorkflow('pipeline', { n: 20 }, { id: 'run-1' });
      expect(handle.id).toBe('run-1');
      expect(await handle.stored).toBe('run-1');
      await parked(raw, 'run-1', (r) => r.waitingFor.includes('approval'));
      await a.stop({ drain: false });

      const b = await node(shared, setup, { execute });
      expect(await b.signal('run-1', 'approval', { ok: true }, { actor: 'alice' })).toBe(true);
      expect(await b.attach('run-1').result).toEqual({ doubled: 40, plus: 41, last: '41:true' });
      expect(calls).toEqual({ 'agent:double': 1, plus: 1, last: 1 });
      const { steps, signals } = await b.runs.steps('run-1');
      expect(steps.map((s) => [s.seq, s.kind, s.name, s.status])).toEqual([
        [0, 'task', 'double', 'completed'],
        [1, 'step', 'plus', 'completed'],
        [2, 'signal', 'approval', 'completed'],
        [3, 'step', 'last', 'completed'],
      ]);
      expect(steps[0]).toMatchObject({ result: 40, attempts: 1 });
      expect(steps[0]!.childId).toEqual(expect.any(String));
      expect(signals).toMatchObject([{ name: 'approval', actor: 'alice', consumedBy: 2, payload: { ok: true } }]);
      expect((await b.runs.get('run-1'))?.status).toBe('completed');
      expect(b.stats().workflows?.replayedSteps).toBeGreaterThanOrEqual(2);
    });

    it('a node stopped mid-step: the next node replays the checkpointed steps and runs the unfinished one again', async () => {
      const { shared } = await sharedStore();
      const calls: Record<string, number> = {};
      const gate = deferred();
      const inStep = deferred();
      const setup = (o: UnifiedOrchestrator): void =>
        o.workflow('mid', {}, async (run) => {
          const a = await run.step('a', () => (bump(calls, 'a'), 'A'));
          const b = await run.step('b', async ({ signal }) => {
            if (bump(calls, 'b') === 1) {
              inStep.resolve();
              await Promise.race([gate.promise, new Promise((_, reject) => signal.addEventListener('abort', reject))]);
            }
            return 'B';
          });
          return a + b;
        });
      const a = await node(shared, setup);
      const handle = a.startWorkflow('mid', null, { id: 'mid-1' });
      await inStep.promise;
      await a.stop({ drain: false });
      await expect(handle.result).rejects.toMatchObject({ code: 'ORCHESTRATOR_STOPPED' });
      const b = await node(shared, setup);
      expect(await b.attach('mid-1').result).toBe('AB');
      // `a` was checkpointed: exactly once. `b` had no checkpoint when its node stopped: at least once.
      expect(calls).toEqual({ a: 1, b: 2 });
    });

    it('Promise.all fans steps out: they run at once and are checkpointed in call order', async () => {
      const { shared } = await sharedStore();
      let arrived = 0;
      const all = deferred();
      const execute = async (ctx: TaskContext): Promise<unknown> => {
        if (++arrived === 3) all.resolve();
        await all.promise; // all three tasks must be running together to get past this
        return `t:${String(ctx.payload)}`;
      };
      const o = await node(
        shared,
        (o) =>
          o.workflow('fan', {}, async (run) => {
            const [x, y, z, s] = await Promise.all([
              run.task('x', { type: 'x', requires: ['work'], payload: 1 }),
              run.task('y', { type: 'y', requires: ['work'], payload: 2 }),
              run.task('z', { type: 'z', requires: ['work'], payload: 3 }),
              run.step('s', () => 'local'),
            ]);
            return [x, y, z, s];
          }),
        { execute, agents: 3 },
      );
      const handle = o.startWorkflow('fan', null);
      expect(await handle.result).toEqual(['t:1', 't:2', 't:3', 'local']);
      const { steps } = await o.runs.steps(handle.id);
      expect(steps.map((s) => `${s.seq}:${s.name}`)).toEqual(['0:x', '1:y', '2:z', '3:s']);
      expect(new Set(steps.map((s) => s.childId).filter(Boolean)).size).toBe(3);
    });
  });

  describe('step failures and retries', () => {
    it('a failed step throws the same WorkflowStepError on the first run and on a replay, and does not run again', async () => {
      const { shared, raw } = await sharedStore();
      const calls: Record<string, number> = {};
      const seen: Array<{ step: unknown; reason: unknown; message: string; code: unknown; first: boolean }> = [];
      const execute = (): never => {
        bump(calls, 'agent');
        throw Object.assign(new Error('model refused'), { code: 'MODEL_REFUSED' });
      };
      const setup = (o: UnifiedOrchestrator): void =>
        o.workflow('failing', {}, async (run) => {
          for (const name of ['local', 'remote']) {
            try {
              if (name === 'local') {
                await run.step('local', () => {
                  bump(calls, 'local');
                  throw new TypeError('bad row 7');
                });
              } else {
                await run.task('remote', { type: 'r', requires: ['work'], maxAttempts: 1 });
              }
            } catch (error) {
              if (isWorkflowInterrupt(error)) throw error;
              const e = error as WorkflowStepError;
              seen.push({
                step: e.step,
                reason: e.reason,
                message: e.message,
                code: e.code,
                first: e.cause !== undefined,
              });
            }
          }
          await run.signal('go');
          await run.step('local-again', () => {
            throw new RangeError('uncaught');
          });
        });
      const a = await node(shared, setup, { execute });
      const handle = a.startWorkflow('failing', null, { id: 'fail-1' });
      await parked(raw, 'fail-1');
      await a.signal('fail-1', 'go');
      const error = await rejection(handle.result);
      expect(error).toBeInstanceOf(WorkflowStepError);
      expect(error).toMatchObject({
        code: 'WORKFLOW_STEP_FAILED',
        step: 'local-again',
        reason: { name: 'RangeError' },
      });
      expect(calls).toEqual({ local: 1, agent: 1 });
      // The first run (with the cause) and the replay after the park (without it) saw the same errors.
      expect(seen).toHaveLength(4);
      expect(seen.map((s) => s.first)).toEqual([true, true, false, false]);
      const strip = ({ first: _first, ...rest }: (typeof seen)[number]): object => rest;
      expect(strip(seen[2]!)).toEqual(strip(seen[0]!));
      expect(strip(seen[3]!)).toEqual(strip(seen[1]!));
      expect(seen[0]).toMatchObject({ step: 'local', reason: { name: 'TypeError', message: 'bad row 7', code: null } });
      expect(seen[1]).toMatchObject({ step: 'remote', reason: { message: 'model refused', code: 'MODEL_REFUSED' } });
      const run = await ended(raw, 'fail-1');
      expect(run.status).toBe('failed');
      expect(run.error).toMatchObject({ name: 'WorkflowStepError', code: 'WORKFLOW_STEP_FAILED' });
    });

    it('when a step fails a run, its steps still running are stopped: a parallel task is cancelled', async () => {
      const { shared, raw } = await sharedStore();
      const running = deferred<TaskContext>();
      const localAborted = deferred<unknown>();
      const execute = (ctx: TaskContext): Promise<unknown> => (running.resolve(ctx), wait(60_000, ctx.signal));
      const o = await node(
        shared,
        (o) =>
          o.workflow('fail-fast', {}, async (run) => {
            await Promise.all([
              run.task('slow-task', { type: 'slow', requires: ['work'] }),
              run.step('slow-step', ({ signal }) =>
                wait(60_000, signal).catch((e: unknown) => (localAborted.resolve(e), Promise.reject(e))),
              ),
              run.step('bad', async () => {
                await running.promise;
                throw new Error('bad input');
              }),
            ]);
          }),
        { execute },
      );
      const handle = o.startWorkflow('fail-fast', null);
      await expect(handle.result).rejects.toMatchObject({ code: 'WORKFLOW_STEP_FAILED', step: 'bad' });
      const ctx = await running.promise;
      await eventually(() => ctx.signal.aborted, 2_000, "the parallel task's signal to abort");
      await localAborted.promise;
      expect((await ended(raw, ctx.taskId)).status).toBe('cancelled');
      expect((await ended(raw, handle.id)).status).toBe('failed');
    });

    it('steps the function did not await end with the run without an unhandled rejection', async () => {
      const { shared, raw } = await sharedStore();
      const aborted = deferred<unknown>();
      const o = await node(shared, (o) =>
        o.workflow('forgetful', {}, async (run) => {
          void run.signal('never'); // not awaited (a bug in the workflow, but not one that may crash the host)
          void run.sleep('later', 60_000);
          void run.step('slow', ({ signal }) =>
            wait(60_000, signal).catch((e: unknown) => (aborted.resolve(e), Promise.reject(e))),
          );
          await run.step('fails', () => {
            throw new Error('boom');
          });
        }),
      );
      const handle = o.startWorkflow('forgetful', null);
      await expect(handle.result).rejects.toMatchObject({ code: 'WORKFLOW_STEP_FAILED' });
      expect((await ended(raw, handle.id)).status).toBe('failed');
      expect(await aborted.promise).toMatchObject({ code: 'WORKFLOW_STEP_FAILED' }); // the run's end stopped it
      await wait(20); // an unhandled rejection would be reported by now (and fail this file)
    });

    it('run.step retries up to maxAttempts with backoff, then fails', async () => {
      const { shared } = await sharedStore();
      const attempts: Record<string, number[]> = { flaky: [], hopeless: [] };
      const o = await node(shared, (o) =>
        o.workflow('retries', {}, async (run) => {
          const flaky = await run.step(
            'flaky',
            ({ attempt, key }) => {
              attempts.flaky!.push(attempt);
              if (attempt < 3) throw new Error(`try ${attempt}`);
              return key;
            },
            { maxAttempts: 3, backoffMs: 5 },
          );
          const hopeless = await run
            .step(
              'hopeless',
              ({ attempt }) => {
                attempts.hopeless!.push(attempt);
                throw new Error('never');
              },
              { maxAttempts: 2, backoffMs: 5 },
            )
            .catch((e: WorkflowStepError) => e.reason.message);
          return { flaky, hopeless };
        }),
      );
      const handle = o.startWorkflow('retries', null);
      expect(await handle.result).toEqual({ flaky: `${handle.id}:0`, hopeless: 'never' });
      expect(attempts).toEqual({ flaky: [1, 2, 3], hopeless: [1, 2] });
      const { steps } = await o.runs.steps(handle.id);
      expect(steps.map((s) => [s.status, s.attempts])).toEqual([
        ['completed', 3],
        ['failed', 2],
      ]);
    });

    it('a step whose cost is not a number fails, checkpointed: a replay does not run it again', async () => {
      const { shared, raw } = await sharedStore();
      const calls: Record<string, number> = {};
      const o = await node(shared, (o) =>
        o.workflow('bad-cost', {}, async (run) => {
          const outcomes: unknown[] = [];
          for (const cost of [
            -1,
            () => Number.NaN,
            () => {
              throw new Error('pricing service down');
            },
          ]) {
            outcomes.push(
              await run
                .step(`charge`, () => bump(calls, 'charge'), { cost: cost as never })
                .catch((e: unknown) => (isWorkflowInterrupt(e) ? Promise.reject(e) : (e as WorkflowStepError).reason)),
            );
          }
          await run.signal('go');
          return outcomes;
        }),
      );
      const handle = o.startWorkflow('bad-cost', null);
      await parked(raw, handle.id);
      await o.signal(handle.id, 'go', null);
      expect(await handle.result).toEqual([
        { name: 'ValidationError', code: 'VALIDATION_ERROR', message: expect.stringMatching(/cost/) },
        { name: 'ValidationError', code: 'VALIDATION_ERROR', message: expect.stringMatching(/cost/) },
        { name: 'Error', code: null, message: 'pricing service down' },
      ]);
      expect(calls).toEqual({ charge: 3 }); // once each, not again on the replay after the signal
      expect((await raw.history(handle.id)).steps.map((s) => s.status)).toEqual([
        'failed',
        'failed',
        'failed',
        'completed',
      ]);
    });

    it('results are JSON from the first run: undefined is null, a Date a string; a result JSON cannot hold fails the step', async () => {
      const { shared } = await sharedStore();
      const when = new Date('2026-01-02T03:04:05.000Z');
      const o = await node(
        shared,
        (o) =>
          o.workflow('json', {}, async (run) => {
            const nothing = await run.step('nothing', () => undefined);
            const date = await run.step('date', () => when);
            const nested = await run.step('nested', () => ({ a: undefined, b: [undefined, when], c: 1 }));
            const fromTask = await run.task('task-date', { type: 'd', requires: ['work'] });
            const big = await run
              .step('bigint', () => 10n)
              .catch((e: WorkflowStepError) => ({ name: e.name, reason: e.reason }));
            const circular = await run
              .step('circular', () => {
                const x: Record<string, unknown> = {};
                x['self'] = x;
                return x;
              })
              .catch((e: WorkflowStepError) => e.reason.code);
            return { nothing, date, dateType: typeof date, nested, fromTask, big, circular };
          }),
        { execute: () => when },
      );
      const handle = o.startWorkflow('json', null);
      expect(await handle.result).toEqual({
        nothing: null,
        date: '2026-01-02T03:04:05.000Z',
        dateType: 'string',
        nested: { b: [null, '2026-01-02T03:04:05.000Z'], c: 1 },
        fromTask: '2026-01-02T03:04:05.000Z',
        big: {
          name: 'WorkflowStepError',
          reason: { name: 'ValidationError', message: expect.any(String), code: 'VALIDATION_ERROR' },
        },
        circular: 'VALIDATION_ERROR',
      });
      const { steps } = await o.runs.steps(handle.id);
      expect(steps.map((s) => s.status)).toEqual([
        'completed',
        'completed',
        'completed',
        'completed',
        'failed',
        'failed',
      ]);
    });
  });
  describe('signals', () => {
    const approvals = (o: UnifiedOrchestrator): void =>
      o.workflow('approve', {}, async (run, input: { before?: boolean }) => {
        const before = input?.before ? await run.step('before', () => run.key('before')) : null;
        const payload = await run.signal<{ by: string }>('approval');
        return { before, payload };
      });

    it('a signal sent before the wait is kept and taken by it', async () => {
      const { shared, raw } = await sharedStore();
      const gate = deferred();
      const o = await node(shared, (o) =>
        o.workflow('early', {}, async (run) => {
          await run.step('slow', () => gate.promise);
          return run.signal('approval');
        }),
      );
      const handle = o.startWorkflow('early', null);
      await handle.stored;
      expect(await o.signal(handle.id, 'approval', { by: 'early bird' })).toBe(true);
      expect((await raw.history(handle.id)).signals).toMatchObject([{ name: 'approval', consumedBy: null }]);
      gate.resolve();
      expect(await handle.result).toEqual({ by: 'early bird' });
      expect(o.stats().workflows?.parked).toBe(0); // it never had to wait
    });

    it('a signal sent during the wait wakes the parked run; one sent after it ended returns false', async () => {
      const { shared, raw } = await sharedStore();
      const o = await node(shared, approvals);
      const handle = o.startWorkflow('approve', {});
      const run = await parked(raw, handle.id);
      expect(run.waitingFor).toEqual(['approval']);
      expect(run.notBefore).toBeNull();
      expect((await raw.history(handle.id)).steps).toMatchObject([
        { kind: 'signal', name: 'approval', status: 'waiting' },
      ]);
      expect(await o.signal(handle.id, 'approval', { by: 'bob' }, { actor: 'bob' })).toBe(true);
      expect(await handle.result).toEqual({ before: null, payload: { by: 'bob' } });
      expect(await o.signal(handle.id, 'approval', { by: 'late' })).toBe(false);
      // The late signal was not stored.
      expect((await raw.history(handle.id)).signals.map((s) => s.payload)).toEqual([{ by: 'bob' }]);
      const kinds = (await raw.events(handle.id)).map((e) => e.kind);
      expect(kinds).toContain('parked');
      expect(kinds).toContain('signalled');
      expect(kinds.at(-1)).toBe('completed');
    });

    it('a signal sent after a wait timed out is kept for the next wait of its name', async () => {
      const { shared } = await sharedStore();
      const timedOut = deferred();
      const o = await node(shared, (o) =>
        o.workflow('twice', {}, async (run) => {
          const first = await run.signal('ping', { timeoutMs: 30 }).catch((e: unknown) => {
            if (!(e instanceof SignalTimeoutError)) throw e;
            timedOut.resolve();
            return `timed out: ${e.signal}`;
          });
          await run.step('between', () => wait(50));
          const second = await run.signal('ping');
          return { first, second };
        }),
      );
      const handle = o.startWorkflow('twice', null);
      await timedOut.promise;
      expect(await o.signal(handle.id, 'ping', 'pong')).toBe(true);
      expect(await handle.result).toEqual({ first: 'timed out: ping', second: 'pong' });
      const { steps, signals } = await o.runs.steps(handle.id);
      expect(steps.map((s) => s.status)).toEqual(['failed', 'completed', 'completed']);
      expect(steps[0]!.error).toMatchObject({ code: 'SIGNAL_TIMEOUT' });
      expect(signals).toMatchObject([{ payload: 'pong', consumedBy: 2 }]);
    });

    it("a signal to an unknown run or another tenant's run is RunNotFoundError; to a finished run, false", async () => {
      const { shared } = await sharedStore();
      const o = await node(shared, approvals);
      await expect(o.signal('no-such-run', 'approval', null)).rejects.toBeInstanceOf(RunNotFoundError);
      const handle = o.startWorkflow('approve', {}, { tenantId: 'acme' });
      await handle.stored;
      const error = await rejection(o.signal(handle.id, 'approval', { by: 'mallory' }, { tenantId: 'other' }));
      expect(error).toBeInstanceOf(RunNotFoundError);
      expect(error).toMatchObject({ code: 'RUN_NOT_FOUND', runId: handle.id });
      expect((await o.runs.steps(handle.id)).signals).toEqual([]); // nothing was stored
      expect(await o.signal(handle.id, 'approval', { by: 'alice' }, { tenantId: 'acme' })).toBe(true);
      expect(await handle.result).toEqual({ before: null, payload: { by: 'alice' } });
      expect(await o.signal(handle.id, 'approval', { by: 'again' }, { tenantId: 'acme' })).toBe(false);
      await expect(o.signal(handle.id, 'approval', null, { tenantId: 'other' })).rejects.toBeInstanceOf(
        RunNotFoundError,
      );
    });

    it('two signals of one name are taken by two waits in the order they were sent', async () => {
      const { shared, raw } = await sharedStore();
      const o = await node(shared, (o) =>
        o.workflow('votes', {}, async (run) => {
          const parallel = await Promise.all([run.signal('vote'), run.signal('vote')]);
          const one = await run.signal('vote');
          const two = await run.signal('vote');
          return { parallel, sequential: [one, two] };
        }),
      );
      const handle = o.startWorkflow('votes', null);
      await parked(raw, handle.id);
      expect(await o.signal(handle.id, 'vote', 'a')).toBe(true);
      expect(await o.signal(handle.id, 'vote', 'b')).toBe(true);
      // Both sent before the next waits are called: kept, and taken in order.
      await parked(raw, handle.id, (r) => r.waitingFor.includes('vote'));
      expect(await o.signal(handle.id, 'vote', 'c')).toBe(true);
      expect(await o.signal(handle.id, 'vote', 'd')).toBe(true);
      expect(await handle.result).toEqual({ parallel: ['a', 'b'], sequential: ['c', 'd'] });
      const { signals } = await o.runs.steps(handle.id);
      expect(signals.map((s) => [s.payload, s.consumedBy])).toEqual([
        ['a', 0],
        ['b', 1],
        ['c', 2],
        ['d', 3],
      ]);
    });

    it('a signal timeout is fixed at the first call and kept across a restart', async () => {
      const { shared, raw } = await sharedStore();
      const setup = (o: UnifiedOrchestrator): void =>
        o.workflow('deadline-signal', {}, async (run) => {
          try {
            return await run.signal('approval', { timeoutMs: 2_500 });
          } catch (error) {
            if (error instanceof SignalTimeoutError)
              return { timedOut: error.signal, code: error.code, at: Date.now() };
            throw error;
          }
        });
      const a = await node(shared, setup);
      const handle = a.startWorkflow('deadline-signal', null);
      const run = await parked(raw, handle.id);
      const [step] = (await raw.history(handle.id)).steps;
      expect(step).toMatchObject({ kind: 'signal', status: 'waiting' });
      expect(step!.wakeAt! - step!.startedAt).toBe(2_500);
      expect(run.notBefore).toBe(step!.wakeAt);
      await wait(800);
      await a.stop({ drain: false });
      const restartedAt = Date.now();
      const b = await node(shared, setup);
      const result = (await b.attach(handle.id).result) as { timedOut: string; code: string; at: number };
      expect(result).toMatchObject({ timedOut: 'approval', code: 'SIGNAL_TIMEOUT' });
      // On time: not before the first call's wakeAt, and not 2.5 s after the restart (a timer started again).
      expect(result.at).toBeGreaterThanOrEqual(step!.wakeAt!);
      expect(result.at).toBeLessThan(restartedAt + 2_500);
      expect((await b.runs.steps(handle.id)).steps[0]).toMatchObject({
        status: 'failed',
        wakeAt: step!.wakeAt,
        error: { code: 'SIGNAL_TIMEOUT' },
      });
    });
  });

  describe('sleeps', () => {
    it('a short sleep stays in memory: the run does not park', async () => {
      const { shared } = await sharedStore();
      const o = await node(shared, (o) =>
        o.workflow('nap', {}, async (run) => {
          const t0 = await run.step('t0', () => Date.now());
          await run.sleep('nap', 60);
          return (await run.step('t1', () => Date.now())) - t0;
        }),
      );
      const handle = o.startWorkflow('nap', null);
      expect(await handle.result).toBeGreaterThanOrEqual(60);
      expect(o.stats().workflows).toMatchObject({ parked: 0, executions: 1, completed: 1 });
      expect((await o.runs.steps(handle.id)).steps[1]).toMatchObject({ kind: 'sleep', status: 'completed' });
    });

    it('a long sleep parks the run in the store until its time, then the run finishes', async () => {
      const { shared, raw } = await sharedStore();
      const o = await node(shared, (o) =>
        o.workflow('long-nap', {}, async (run) => {
          await run.sleep('nap', 2_300);
          return run.step('woke', () => Date.now());
        }),
      );
      const handle = o.startWorkflow('long-nap', null);
      const run = await parked(raw, handle.id);
      const [step] = (await raw.history(handle.id)).steps;
      expect(step).toMatchObject({ kind: 'sleep', name: 'nap', status: 'waiting' });
      expect(step!.wakeAt! - step!.startedAt).toBe(2_300);
      expect(run).toMatchObject({ notBefore: step!.wakeAt, waitingFor: [], owner: null });
      expect(o.stats().workflows).toMatchObject({ parked: 1, active: 0 });
      const woke = (await handle.result) as number;
      expect(woke).toBeGreaterThanOrEqual(step!.wakeAt!);
      expect(o.stats().workflows).toMatchObject({ executions: 2, completed: 1 });
    });

    it('a long sleep survives a restart: another node finishes it on time, not from zero', async () => {
      const { shared, raw } = await sharedStore();
      const calls: Record<string, number> = {};
      const setup = (o: UnifiedOrchestrator): void =>
        o.workflow('restart-nap', {}, async (run) => {
          await run.step('before', () => bump(calls, 'before'));
          await run.sleep('nap', 2_300);
          return run.step('woke', () => (bump(calls, 'woke'), Date.now()));
        });
      const a = await node(shared, setup);
      const handle = a.startWorkflow('restart-nap', null);
      await parked(raw, handle.id);
      const wakeAt = (await raw.history(handle.id)).steps[1]!.wakeAt!;
      await wait(800);
      await a.stop({ drain: false });
      const restartedAt = Date.now();
      const b = await node(shared, setup);
      const woke = (await b.attach(handle.id).result) as number;
      expect(woke).toBeGreaterThanOrEqual(wakeAt);
      expect(woke).toBeLessThan(restartedAt + 2_300);
      expect(calls).toEqual({ before: 1, woke: 1 });
    });
  });

  describe('cancel', () => {
    it("during a task step: the child task's agent sees ctx.signal abort, and the run ends cancelled", async () => {
      const { shared, raw } = await sharedStore();
      const running = deferred<TaskContext>();
      const aborted = deferred<unknown>();
      const execute = (ctx: TaskContext): Promise<unknown> => {
        running.resolve(ctx);
        return new Promise((_, reject) =>
          ctx.signal.addEventListener('abort', () => {
            aborted.resolve(ctx.signal.reason);
            reject(ctx.signal.reason as Error);
          }),
        );
      };
      let after = 0;
      const o = await node(
        shared,
        (o) =>
          o.workflow('cancel-task', {}, async (run) => {
            await run.task('slow', { type: 'slow', requires: ['work'] });
            after++;
            await run.step('after', () => after++);
          }),
        { execute },
      );
      const handle = o.startWorkflow('cancel-task', null);
      const ctx = await running.promise;
      expect(await handle.cancel('operator said so')).toBe(true);
      expect(await aborted.promise).toMatchObject({ code: 'TASK_CANCELLED' });
      expect(ctx.signal.aborted).toBe(true);
      await expect(handle.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
      expect((await ended(raw, handle.id)).status).toBe('cancelled');
      expect((await ended(raw, ctx.taskId)).status).toBe('cancelled');
      expect(after).toBe(0);
      expect(await handle.cancel()).toBe(false);
    });

    it('through attach(id).cancel() on the node that runs it, at once', async () => {
      const { shared, raw } = await sharedStore();
      const running = deferred<TaskContext>();
      const execute = (ctx: TaskContext): Promise<unknown> => {
        running.resolve(ctx);
        return new Promise((_, reject) =>
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error)),
        );
      };
      const o = await node(
        shared,
        (o) => o.workflow('cancel-attached', {}, async (run) => run.task('slow', { type: 'slow', requires: ['work'] })),
        { execute },
      );
      const id = o.startWorkflow('cancel-attached', null, { tenantId: 'acme' }).id;
      const ctx = await running.promise;
      expect(o.attach(id, { tenantId: 'other' }).cancel()).toBe(false);
      const attached = o.attach(id, { tenantId: 'acme' });
      expect(attached.cancel('from a handle')).toBe(true);
      await expect(attached.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
      expect((await ended(raw, id)).status).toBe('cancelled');
      expect((await ended(raw, ctx.taskId)).status).toBe('cancelled');
    });

    it.each([
      ['a signal wait', (run: WorkflowContext) => run.signal('never')],
      ['a sleep', (run: WorkflowContext) => run.sleep('long', 3_600_000)],
    ])('during %s (parked): runs.cancel() ends it cancelled', async (_, waitFor) => {
      const { shared, raw } = await sharedStore();
      let after = 0;
      const o = await node(shared, (o) =>
        o.workflow('cancel-wait', {}, async (run) => {
          await waitFor(run);
          after++;
        }),
      );
      const handle = o.startWorkflow('cancel-wait', null);
      await parked(raw, handle.id);
      expect(await o.runs.cancel(handle.id, { tenantId: 'other' })).toBe(false);
      expect(await o.runs.cancel(handle.id)).toBe(true);
      await expect(handle.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
      expect((await ended(raw, handle.id)).status).toBe('cancelled');
      expect(await o.signal(handle.id, 'never', null)).toBe(false);
      expect(await o.runs.cancel(handle.id)).toBe(false);
      await wait(60); // claims come and go: nothing runs it again
      expect(after).toBe(0);
      expect(o.stats().workflows?.active).toBe(0);
    });

    it('during a wait held in memory: the wait ends and no later step runs', async () => {
      const { shared, raw } = await sharedStore();
      let after = 0;
      const o = await node(shared, (o) =>
        o.workflow('cancel-nap', {}, async (run) => {
          await run.sleep('nap', 1_000);
          after++;
        }),
      );
      const handle = o.startWorkflow('cancel-nap', null);
      await eventually(() => o.stats().workflows?.active === 1);
      await wait(30);
      expect(await handle.cancel()).toBe(true);
      await expect(handle.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
      expect((await ended(raw, handle.id)).status).toBe('cancelled');
      expect(after).toBe(0);
    });
  });
  describe('guards', () => {
    it('maxSteps ends a loop with WorkflowLimitError; catching it does not let the run go on', async () => {
      const { shared, raw } = await sharedStore();
      let rounds = 0;
      let caught: unknown;
      const o = await node(shared, (o) =>
        o.workflow('debate', { maxSteps: 5 }, async (run) => {
          try {
            for (;;) await run.step('round', () => ++rounds);
          } catch (error) {
            caught = error;
            await run.step('one-more', () => ++rounds).catch(() => {});
            return 'sneaky';
          }
        }),
      );
      const handle = o.startWorkflow('debate', null);
      const error = await rejection(handle.result);
      expect(error).toBeInstanceOf(WorkflowLimitError);
      expect(error).toMatchObject({ code: 'WORKFLOW_LIMIT', limit: 'steps', max: 5, reached: 6 });
      expect(caught).toBe(error);
      expect(rounds).toBe(5);
      const run = await ended(raw, handle.id);
      expect(run).toMatchObject({ status: 'failed', error: { code: 'WORKFLOW_LIMIT' } });
      expect((await raw.history(handle.id)).steps).toHaveLength(5);
    });

    it('budget: the cost reported by tasks and steps ends the run before its next step, across a restart too', async () => {
      const { shared, raw } = await sharedStore();
      const calls: Record<string, number> = {};
      const execute = (ctx: TaskContext): string => {
        bump(calls, 'agent');
        ctx.reportCost(4);
        return 'drafted';
      };
      const setup = (o: UnifiedOrchestrator): void =>
        o.workflow('spend', { budget: 10 }, async (run) => {
          await run.task('draft', { type: 'draft', requires: ['work'] }); // 4
          await run.step('tone', () => bump(calls, 'tone'), { cost: () => 3 }); // 7
          await run.signal('go');
          await run.task('revise', { type: 'revise', requires: ['work'] }); // 11: over
          await run.step('publish', () => bump(calls, 'publish'));
        });
      const a = await node(shared, setup, { execute });
      const handle = a.startWorkflow('spend', null);
      await parked(raw, handle.id);
      await a.stop({ drain: false });
      const b = await node(shared, setup, { execute });
      await b.signal(handle.id, 'go', null);
      const error = await rejection(b.attach(handle.id).result);
      expect(error).toMatchObject({ code: 'WORKFLOW_LIMIT', name: 'WorkflowLimitError' });
      expect(error.message).toMatch(/spent 11 cost units, over its budget of 10/);
      expect(calls).toEqual({ agent: 2, tone: 1 });
      const run = await ended(raw, handle.id);
      expect(run).toMatchObject({ status: 'failed', cost: 11 });
      expect((await raw.history(handle.id)).steps.map((s) => s.cost)).toEqual([4, 3, 0, 4]);
    });

    it('deadline: a run past its deadline ends timed-out, aborting its step', async () => {
      const { shared, raw } = await sharedStore();
      const aborted = deferred<unknown>();
      const o = await node(shared, (o) =>
        o.workflow('slow', {}, async (run) => {
          await run.step('stuck', ({ signal }) =>
            wait(10_000, signal).catch((e: unknown) => (aborted.resolve(e), Promise.reject(e))),
          );
        }),
      );
      const handle = o.startWorkflow('slow', null, { deadlineMs: 150 });
      await expect(handle.result).rejects.toMatchObject({ code: 'TASK_TIMEOUT' });
      expect(await aborted.promise).toMatchObject({ code: 'TASK_TIMEOUT' });
      expect((await ended(raw, handle.id)).status).toBe('timed-out');
    });

    it("deadline: a task step's deadline is what is left of the run's", async () => {
      const { shared, raw } = await sharedStore();
      const child = deferred<TaskContext>();
      const execute = (ctx: TaskContext): Promise<unknown> => (child.resolve(ctx), wait(10_000, ctx.signal));
      const o = await node(
        shared,
        (o) =>
          o.workflow('slow-task', { deadlineMs: 200 }, async (run) => {
            await run.task('stuck', { type: 'stuck', requires: ['work'], deadlineMs: 60_000 });
          }),
        { execute },
      );
      const handle = o.startWorkflow('slow-task', null);
      await expect(handle.result).rejects.toMatchObject({ code: 'TASK_TIMEOUT' });
      const ctx = await child.promise;
      expect((await ended(raw, ctx.taskId)).status).toMatch(/timed-out|cancelled/);
      expect(ctx.signal.aborted).toBe(true);
      expect((await ended(raw, handle.id)).status).toBe('timed-out');
    });

    it('deadline: a run parked on a signal is woken at its deadline and ends timed-out', async () => {
      const { shared, raw } = await sharedStore();
      const o = await node(shared, (o) =>
        o.workflow('await-approval', { deadlineMs: 300 }, async (run) => {
          await run.signal('approval');
        }),
      );
      const handle = o.startWorkflow('await-approval', null);
      const run = await parked(raw, handle.id);
      expect(run.notBefore).toBe(run.createdAt + 300);
      expect(run.waitingFor).toEqual(['approval']);
      await expect(handle.result).rejects.toMatchObject({ code: 'TASK_TIMEOUT' });
      expect((await ended(raw, handle.id)).status).toBe('timed-out');
      expect(await o.signal(handle.id, 'approval', null)).toBe(false);
    });

    it('halt pauses a run at its next step; resume lets it go on', async () => {
      const { shared } = await sharedStore();
      const gate = deferred();
      const inFirst = deferred();
      const order: string[] = [];
      const o = await node(shared, (o) =>
        o.workflow('haltable', {}, async (run) => {
          await run.step('first', async () => {
            order.push('first');
            inFirst.resolve();
            await gate.promise;
          });
          await run.step('second', () => order.push('second'));
          return order;
        }),
      );
      const handle = o.startWorkflow('haltable', null);
      await inFirst.promise;
      await o.halt('incident');
      gate.resolve();
      await wait(150);
      expect(order).toEqual(['first']); // the step under way finished; the next one waits
      expect((await o.runs.steps(handle.id)).steps.map((s) => s.status)).toEqual(['completed']);
      await o.resume();
      expect(await handle.result).toEqual(['first', 'second']);
    });

    it('a parked run woken during a halt waits at its signal (a transition too) until resume', async () => {
      const { shared, raw } = await sharedStore();
      const order: string[] = [];
      const o = await node(shared, (o) =>
        o.workflow('halted-wake', {}, async (run) => {
          const go = await run.signal<string>('go');
          await run.step('after', () => order.push(`after ${go}`));
          return order;
        }),
      );
      const handle = o.startWorkflow('halted-wake', null);
      await parked(raw, handle.id);
      await o.halt('incident');
      expect(await o.signal(handle.id, 'go', 'yes')).toBe(true);
      await eventually(() => o.stats().workflows?.active === 1, 2_000, 'the run to be claimed');
      await wait(100);
      expect(order).toEqual([]);
      expect((await raw.history(handle.id)).steps).toMatchObject([{ name: 'go', status: 'waiting' }]);
      await o.resume();
      expect(await handle.result).toEqual(['after yes']);
    });

    it('a run held by a halt can still be cancelled, time out, or be handed on by a stop', async () => {
      const { shared, raw } = await sharedStore();
      let ran = 0;
      const setup = (o: UnifiedOrchestrator): void =>
        o.workflow('held', {}, async (run) => run.step('work', () => ++ran));
      const a = await node(shared, setup);
      await a.halt('incident', { local: true });
      const cancelled = a.startWorkflow('held', null);
      const timedOut = a.startWorkflow('held', null, { deadlineMs: 150 });
      const handedOn = a.startWorkflow('held', null);
      await eventually(() => a.stats().workflows?.active === 3, 2_000, 'the runs to wait at their first step');
      expect(await cancelled.cancel()).toBe(true);
      await expect(cancelled.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
      await expect(timedOut.result).rejects.toMatchObject({ code: 'TASK_TIMEOUT' });
      expect(ran).toBe(0);
      await a.stop({ drain: false });
      const b = await node(shared, setup);
      expect(await b.attach(handedOn.id).result).toBe(1);
      expect((await ended(raw, cancelled.id)).status).toBe('cancelled');
      expect((await ended(raw, timedOut.id)).status).toBe('timed-out');
    });

    it('halt on a two-node cluster: a halt sent from one node pauses the run on the other', async () => {
      const { shared } = await sharedStore();
      const hub = new MemoryHub();
      const gate = deferred();
      const inFirst = deferred();
      const order: string[] = [];
      const front = await node(shared, () => {}, { bridge: new MemoryBridge({ hub, nodeId: 'front' }) });
      const worker = await node(
        shared,
        (o) =>
          o.workflow('haltable', {}, async (run) => {
            await run.step('first', async () => {
              order.push('first');
              inFirst.resolve();
              await gate.promise;
            });
            await run.step('second', () => order.push('second'));
            return order;
          }),
        { bridge: new MemoryBridge({ hub, nodeId: 'worker' }) },
      );
      // The front node has no code for it: it names the version, stores the run, and the worker claims it.
      expect(() => front.startWorkflow('haltable', null)).toThrow(WorkflowNotFoundError);
      const handle = front.startWorkflow('haltable', null, { version: '1' });
      await inFirst.promise;
      expect(worker.stats().workflows?.active).toBe(1);
      await front.halt('incident');
      await eventually(() => worker.controlState().halted !== null);
      gate.resolve();
      await wait(150);
      expect(order).toEqual(['first']);
      await front.resume();
      expect(await handle.result).toEqual(['first', 'second']);
    });
  });

  describe('versions', () => {
    it('a run is continued only by code of its version; v1 and v2 run side by side', async () => {
      const { shared, raw } = await sharedStore();
      const ran: string[] = [];
      const v1 = (o: UnifiedOrchestrator): void =>
        o.workflow('doc', { version: '1' }, async (run) => {
          ran.push(`v1:${run.version}`);
          return `v1:${String(await run.signal('go'))}`;
        });
      const v2 = (o: UnifiedOrchestrator): void =>
        o.workflow('doc', { version: '2' }, async (run) => {
          ran.push(`v2:${run.version}`);
          return `v2:${String(await run.signal('go'))}`;
        });
      const a = await node(shared, (o) => (v1(o), v2(o)));
      expect(a.stats().workflows?.registered).toEqual(['doc@1', 'doc@2']);
      const old = a.startWorkflow('doc', null, { version: '1' });
      const latest = a.startWorkflow('doc', null); // the version registered last
      await parked(raw, old.id);
      await parked(raw, latest.id);
      expect(ran.sort()).toEqual(['v1:1', 'v2:2']);
      expect((await raw.get(old.id))?.task.requires).toEqual(['workflow:doc@1']);
      await a.stop({ drain: false });

      const b = await node(shared, v2);
      expect(await b.signal(old.id, 'go', 'x')).toBe(true);
      expect(await b.signal(latest.id, 'go', 'y')).toBe(true);
      expect(await b.attach(latest.id).result).toBe('v2:y');
      await wait(150); // claims come and go: b has no code for the v1 run
      expect(await raw.get(old.id)).toMatchObject({ status: 'queued', owner: null });
      expect(ran.filter((r) => r.startsWith('v1'))).toHaveLength(1);
      // Starting a version no node here has stores the run for a node that has it, and runs nothing here.
      const v3 = b.startWorkflow('doc', null, { version: '3' });
      await v3.stored;
      await wait(60);
      expect(await raw.get(v3.id)).toMatchObject({ status: 'queued', owner: null });
      expect(() => b.startWorkflow('nope', null)).toThrow(WorkflowNotFoundError);

      const c = await node(shared, v1);
      expect(await c.attach(old.id).result).toBe('v1:x');
      expect(ran.filter((r) => r.startsWith('v1'))).toHaveLength(2);
    });
  });

  describe('non-determinism', () => {
    it('a step that differs from the history at its position fails the run, naming both', async () => {
      const { shared, raw } = await sharedStore();
      const a = await node(shared, (o) =>
        o.workflow('changing', {}, async (run) => {
          await run.step('research', () => 1);
          await run.signal('go');
          return 'old';
        }),
      );
      const handle = a.startWorkflow('changing', null);
      await parked(raw, handle.id);
      await a.stop({ drain: false });
      let ran = 0;
      const b = await node(shared, (o) =>
        o.workflow('changing', {}, async (run) => {
          await run.task('draft', { type: 'draft', requires: ['work'] }); // called where 'research' was
          ran++;
          return 'new';
        }),
      );
      await b.signal(handle.id, 'go', null);
      const error = await rejection(b.attach(handle.id).result);
      expect(error).toMatchObject({ code: 'WORKFLOW_NONDETERMINISM', name: 'WorkflowNonDeterminismError' });
      expect(error.message).toContain('step:research');
      expect(error.message).toContain('task:draft');
      expect(error.message).toMatch(/at step 0/);
      expect(ran).toBe(0);
      expect((await ended(raw, handle.id)).status).toBe('failed');
    });

    it('code that ends where its history goes on fails the run', async () => {
      const { shared, raw } = await sharedStore();
      const a = await node(shared, (o) =>
        o.workflow('shrinking', {}, async (run) => {
          await run.step('a', () => 1);
          await run.step('b', () => 2);
          await run.signal('go');
          return 'old';
        }),
      );
      const handle = a.startWorkflow('shrinking', null);
      await parked(raw, handle.id);
      await a.stop({ drain: false });
      const b = await node(shared, (o) =>
        o.workflow('shrinking', {}, async (run) => {
          await run.step('a', () => 1);
          return 'new';
        }),
      );
      await b.signal(handle.id, 'go', null);
      const error = await rejection(b.attach(handle.id).result);
      expect(error).toMatchObject({ code: 'WORKFLOW_NONDETERMINISM' });
      expect(error.message).toMatch(/at step 1: its history has step:b there but the code called nothing/);
    });

    it('the error object names both steps where it is thrown', async () => {
      const { shared, raw } = await sharedStore();
      const a = await node(shared, (o) =>
        o.workflow('typed', {}, async (run) => {
          await run.sleep('s', 0);
          await run.signal('go');
        }),
      );
      const handle = a.startWorkflow('typed', null);
      await parked(raw, handle.id);
      await a.stop({ drain: false });
      let seen: unknown;
      const b = await node(shared, (o) =>
        o.workflow('typed', {}, async (run) => {
          try {
            await run.signal('s');
          } catch (error) {
            seen = error;
            throw error;
          }
        }),
      );
      await b.signal(handle.id, 'go', null);
      await rejection(b.attach(handle.id).result);
      expect(seen).toBeInstanceOf(WorkflowNonDeterminismError);
      expect(seen).toMatchObject({ seq: 0, stored: 'sleep:s', called: 'signal:s' });
    });
  });

  describe('starting twice', () => {
    it('one id is one run: started twice at once, and again after it completed, on another node too', async () => {
      const { shared, raw } = await sharedStore();
      let runs = 0;
      const setup = (o: UnifiedOrchestrator): void =>
        o.workflow('once', {}, async (run, input: number) => {
          await run.step('count', () => ++runs);
          return `input ${String(await run.signal('go'))} ${input}`;
        });
      const a = await node(shared, setup);
      const first = a.startWorkflow('once', 1, { id: 'same' });
      const second = a.startWorkflow('once', 2, { id: 'same' });
      expect(await second.stored).toBe('same');
      await parked(raw, 'same');
      const b = await node(shared, setup);
      const third = b.startWorkflow('once', 3, { id: 'same' });
      await b.signal('same', 'go', 'x');
      expect(await first.result).toBe('input x 1');
      expect(await second.result).toBe('input x 1');
      expect(await third.result).toBe('input x 1');
      expect(await b.startWorkflow('once', 4, { id: 'same' }).result).toBe('input x 1');
      expect(runs).toBe(1);
      expect((await raw.list()).runs.filter((r) => r.type === 'workflow:once')).toHaveLength(1);
    });

    it('one id is one run after it failed, too; another tenant cannot take the id', async () => {
      const { shared } = await sharedStore();
      let runs = 0;
      const o = await node(shared, (o) =>
        o.workflow('fails', {}, async (run) => {
          await run.step('boom', () => {
            runs++;
            throw new Error('boom');
          });
        }),
      );
      const first = await rejection(o.startWorkflow('fails', null, { id: 'f1', tenantId: 't' }).result);
      expect(first).toMatchObject({ code: 'WORKFLOW_STEP_FAILED' });
      const again = await rejection(o.startWorkflow('fails', null, { id: 'f1', tenantId: 't' }).result);
      expect(again).toMatchObject({ code: 'WORKFLOW_STEP_FAILED', message: first.message });
      expect(runs).toBe(1);
      const other = await rejection(o.startWorkflow('fails', null, { id: 'f1', tenantId: 'u' }).result);
      expect(other).toBeInstanceOf(ValidationError);
      expect(other).toMatchObject({ field: 'id' });
      expect(runs).toBe(1);
    });
    it("another tenant's start with a taken id is refused and leaves the run's own followers alone", async () => {
      const { shared, raw } = await sharedStore();
      const o = await node(shared, (o) => o.workflow('owned', {}, async (run) => run.signal('go')));
      const mine = o.startWorkflow('owned', null, { id: 'taken', tenantId: 't' });
      await parked(raw, 'taken');
      const theirs = o.startWorkflow('owned', null, { id: 'taken', tenantId: 'u' });
      expect(await theirs.stored).toBe('taken');
      expect(await rejection(theirs.result)).toMatchObject({ code: 'VALIDATION_ERROR', field: 'id' });
      expect(await theirs.cancel()).toBe(false);
      expect(await o.signal('taken', 'go', 'mine', { tenantId: 't' })).toBe(true);
      expect(await mine.result).toBe('mine');
    });
  });

  describe('interrupts', () => {
    it('a function that swallows the WorkflowInterrupt runs no more steps, and what it returns is ignored', async () => {
      const { shared, raw } = await sharedStore();
      const swallowed: unknown[] = [];
      let after = 0;
      const o = await node(shared, (o) =>
        o.workflow('swallow', {}, async (run) => {
          let approval: unknown = 'none';
          try {
            approval = await run.signal('approval');
          } catch (error) {
            swallowed.push(error); // wrong: it must be rethrown
          }
          await run.step('after', () => ++after).catch((e: unknown) => swallowed.push(e));
          return { approval, after };
        }),
      );
      const handle = o.startWorkflow('swallow', null);
      await parked(raw, handle.id);
      await wait(30);
      expect(after).toBe(0);
      expect(swallowed).toHaveLength(2);
      expect(swallowed[0]).toBeInstanceOf(WorkflowInterrupt);
      expect(swallowed[0]).toMatchObject({ reason: 'parked' });
      expect(isWorkflowInterrupt(swallowed[1])).toBe(true);
      expect((await raw.get(handle.id))?.status).toBe('queued'); // not completed with { approval: 'none' }
      await o.signal(handle.id, 'approval', 'yes');
      expect(await handle.result).toEqual({ approval: 'yes', after: 1 });
      expect(after).toBe(1);
    });

    it('a parked run whose function is still unwinding (a slow finally) can be cancelled', async () => {
      const { shared, raw } = await sharedStore();
      const cleanup = deferred();
      const inFinally = deferred();
      let after = 0;
      const o = await node(shared, (o) =>
        o.workflow('slow-finally', {}, async (run) => {
          try {
            await run.signal('go');
          } finally {
            inFinally.resolve();
            await cleanup.promise; // e.g. closing a connection: not a step
          }
          after++;
        }),
      );
      const handle = o.startWorkflow('slow-finally', null);
      await inFinally.promise;
      await parked(raw, handle.id);
      expect(await o.runs.cancel(handle.id)).toBe(true);
      await expect(handle.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
      cleanup.resolve();
      expect((await ended(raw, handle.id)).status).toBe('cancelled');
      expect(after).toBe(0);
    });

    it('a run claimed again while its previous execution still unwinds is tracked (stats, cancel) by the new one', async () => {
      const { shared, raw } = await sharedStore();
      const cleanup = deferred();
      const inFinally = deferred();
      const running = deferred<TaskContext>();
      let first = true;
      const execute = (ctx: TaskContext): Promise<unknown> => (running.resolve(ctx), wait(60_000, ctx.signal));
      const o = await node(
        shared,
        (o) =>
          o.workflow('overlap', {}, async (run) => {
            try {
              await run.signal('go');
            } finally {
              if (first) {
                first = false;
                inFinally.resolve();
                await cleanup.promise;
              }
            }
            await run.task('slow', { type: 'slow', requires: ['work'] });
          }),
        { execute },
      );
      const handle = o.startWorkflow('overlap', null);
      await inFinally.promise;
      await parked(raw, handle.id);
      await o.signal(handle.id, 'go', null);
      const ctx = await running.promise; // the new execution runs the task step
      cleanup.resolve(); // the old one ends now (parked)
      await eventually(() => o.stats().workflows?.parked === 1, 2_000, 'the first execution to end');
      expect(o.stats().workflows?.active).toBe(1);
      expect(await o.runs.cancel(handle.id)).toBe(true);
      await eventually(() => ctx.signal.aborted, 2_000, "the running step's task to be cancelled");
      await expect(handle.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
      expect((await ended(raw, handle.id)).status).toBe('cancelled');
    });

    it('a function that swallows the interrupt of a stopping node calls no more steps there', async () => {
      const { shared } = await sharedStore();
      const inStep = deferred();
      const calls: Record<string, number> = {};
      const setup = (o: UnifiedOrchestrator): void =>
        o.workflow('swallow-stop', {}, async (run) => {
          try {
            await run.step('slow', ({ signal }) =>
              bump(calls, 'slow') === 1 ? (inStep.resolve(), wait(10_000, signal)) : null,
            );
          } catch {
            // swallowed
          }
          await run.step('after', () => bump(calls, 'after')).catch(() => {});
          return calls;
        });
      const a = await node(shared, setup);
      const handle = a.startWorkflow('swallow-stop', null);
      await inStep.promise;
      await a.stop({ drain: false });
      expect(calls).toEqual({ slow: 1 });
      const b = await node(shared, setup);
      expect(await b.attach(handle.id).result).toEqual({ slow: 2, after: 1 });
    });
  });
  describe('bad input', () => {
    /** Asserts that `error` is a ValidationError naming `field`, with a message saying what to fix. */
    function expectValidation(error: unknown, field: string): void {
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ code: 'VALIDATION_ERROR', field });
      expect((error as Error).message.length).toBeGreaterThan(10);
    }

    it('workflow(), startWorkflow() and signal() refuse bad arguments with a ValidationError naming the field', async () => {
      const { shared } = await sharedStore();
      const o = await node(shared, (o) => o.workflow('ok', {}, async (run) => run.signal('go')));
      const fn = async (): Promise<null> => null;
      const register: Array<[string, () => unknown]> = [
        ['name', () => o.workflow('', {}, fn)],
        ['name', () => o.workflow('a@b', {}, fn)],
        ['name', () => o.workflow(42 as never, {}, fn)],
        ['options', () => o.workflow('x', null as never, fn)],
        ['fn', () => o.workflow('x', {}, 'not a function' as never)],
        ['version', () => o.workflow('x', { version: '' }, fn)],
        // `null` is not "the default" (as for every option of the library): refused, not taken for '1', 1000, ∞.
        ['version', () => o.workflow('x', { version: null as never }, fn)],
        ['maxSteps', () => o.workflow('x', { maxSteps: null as never }, fn)],
        ['budget', () => o.workflow('x', { budget: null as never }, fn)],
        ['version', () => o.workflow('ok', {}, fn)], // version '1' is registered already
        ['maxSteps', () => o.workflow('x', { maxSteps: 0 }, fn)],
        ['maxSteps', () => o.workflow('x', { maxSteps: 1.5 }, fn)],
        ['budget', () => o.workflow('x', { budget: -1 }, fn)],
        ['budget', () => o.workflow('x', { budget: Number.NaN }, fn)],
        ['deadlineMs', () => o.workflow('x', { deadlineMs: 0 }, fn)],
        ['deadlineMs', () => o.workflow('x', { deadlineMs: Infinity }, fn)],
      ];
      for (const [field, call] of register) expectValidation(thrown(call), field);
      expect(o.stats().workflows?.registered).toEqual(['ok@1']);

      const circular: Record<string, unknown> = {};
      circular['self'] = circular;
      const start: Array<[string, () => unknown]> = [
        ['options', () => o.startWorkflow('ok', null, null as never)],
        ['id', () => o.startWorkflow('ok', null, { id: '' })],
        ['id', () => o.startWorkflow('ok', null, { id: 'x'.repeat(257) })],
        ['id', () => o.startWorkflow('ok', null, { id: 7 as never })],
        ['tenantId', () => o.startWorkflow('ok', null, { tenantId: 7 as never })],
        ['deadlineMs', () => o.startWorkflow('ok', null, { deadlineMs: -5 })],
        ['priority', () => o.startWorkflow('ok', null, { priority: 0.5 })],
        ['version', () => o.startWorkflow('ok', null, { version: '' })],
        ['delayMs', () => o.startWorkflow('ok', null, { delayMs: Number.NaN })],
        ['input', () => o.startWorkflow('ok', 10n)],
        ['input', () => o.startWorkflow('ok', circular)],
      ];
      for (const [field, call] of start) expectValidation(thrown(call), field);
      expect(thrown(() => o.startWorkflow('missing', null))).toBeInstanceOf(WorkflowNotFoundError);
      expect(o.stats().workflows?.started).toBe(0);

      const handle = o.startWorkflow('ok', null);
      await handle.stored;
      const signal: Array<[string, () => Promise<unknown>]> = [
        ['runId', () => o.signal('', 'go', null)],
        ['runId', () => o.signal(5 as never, 'go', null)],
        ['name', () => o.signal(handle.id, '', null)],
        ['name', () => o.signal(handle.id, null as never, null)],
        ['payload', () => o.signal(handle.id, 'go', circular)],
        ['actor', () => o.signal(handle.id, 'go', null, { actor: 5 as never })],
      ];
      for (const [field, call] of signal) expectValidation(await rejection(call()), field);
      expect((await o.runs.steps(handle.id)).signals).toEqual([]);
      // Nothing was harmed: the run still takes a good signal.
      expect(await o.signal(handle.id, 'go', 'fine')).toBe(true);
      expect(await handle.result).toBe('fine');
    });

    it("the run's methods refuse bad arguments with a ValidationError, and the run goes on", async () => {
      const { shared } = await sharedStore();
      const o = await node(shared, (o) =>
        o.workflow('inside', {}, async (run) => {
          const calls: Array<() => Promise<unknown>> = [
            () => run.step('', () => 1),
            () => run.step('no-fn', 'nope' as never),
            () => run.sleep('nap', -1),
            () => run.sleep('nap', Number.NaN),
            () => run.signal('sig', { timeoutMs: -1 }),
            () => run.task('task', null as never),
            () => run.step('cost', () => 1, { cost: -1 }),
          ];
          const fields: unknown[] = [];
          for (const call of calls) {
            fields.push(
              await call().then(
                () => 'no error',
                (e: unknown) => {
                  // A bad cost fails its step (after it ran): the ValidationError is the step's reason.
                  if (e instanceof WorkflowStepError) return `step:${e.reason.code}`;
                  return e instanceof ValidationError ? e.field : String(e);
                },
              ),
            );
          }
          return { fields, after: await run.step('after', () => 'fine') };
        }),
      );
      const result = await o.startWorkflow('inside', null).result;
      expect(result).toEqual({
        fields: ['name', 'fn', 'ms', 'ms', 'timeoutMs', 'task', 'step:VALIDATION_ERROR'],
        after: 'fine',
      });
    });

    it('fuzzed names, options and inputs: accepted, or a ValidationError naming the field; never anything else', async () => {
      const { shared } = await sharedStore();
      const o = await node(shared, (o) => o.workflow('echo', {}, async (_run, input: unknown) => input));
      const registered = new Set<string>();
      const anyValue = fc.oneof(
        fc.string({ maxLength: 8 }),
        fc.constant(''),
        fc.integer(),
        fc.double(),
        fc.boolean(),
        fc.constant(null),
        fc.constant(undefined),
        fc.constantFrom(Infinity, -1, 0, 1, 2.5, Number.NaN),
      );
      const validName = (v: unknown): boolean => typeof v === 'string' && v !== '' && !v.includes('@');
      fc.assert(
        fc.property(
          fc.oneof(
            anyValue,
            fc.string({ maxLength: 6 }).map((s) => `${s}@x`),
          ),
          fc.record(
            { version: anyValue, maxSteps: anyValue, budget: anyValue, deadlineMs: anyValue },
            { requiredKeys: [] },
          ),
          (name, options) => {
            let error: unknown;
            try {
              o.workflow(name as string, options as never, async () => null);
            } catch (e) {
              error = e;
            }
            const version = options.version === undefined ? '1' : options.version;
            const checks: Array<[string, boolean]> = [
              ['name', validName(name)],
              ['version', typeof version === 'string' && version !== ''],
              [
                'maxSteps',
                options.maxSteps === undefined ||
                  (Number.isInteger(options.maxSteps) && (options.maxSteps as number) >= 1),
              ],
              ['budget', options.budget === undefined || (typeof options.budget === 'number' && options.budget >= 0)],
              [
                'deadlineMs',
                options.deadlineMs === undefined ||
                  (Number.isFinite(options.deadlineMs) && (options.deadlineMs as number) > 0),
              ],
              ['version', !registered.has(`${String(name)}@${String(version)}`)],
            ];
            const wrong = checks.find(([, ok]) => !ok);
            // The model follows what the orchestrator did (shrinking replays cases on the same orchestrator).
            if (error === undefined) registered.add(`${String(name)}@${String(version)}`);
            if (wrong) expectValidation(error, wrong[0]);
            else expect(error).toBeUndefined();
          },
        ),
        { numRuns: 150 },
      );

      const starts: Promise<unknown>[] = [];
      fc.assert(
        fc.property(
          fc.record(
            { id: anyValue, tenantId: anyValue, deadlineMs: anyValue, priority: anyValue, delayMs: anyValue },
            { requiredKeys: [] },
          ),
          (options) => {
            let error: unknown;
            try {
              // Unstarted runs are fine to leave: each is one stored run with a delay or a deadline at most.
              const h = o.startWorkflow('echo', 1, { ...(options as object), version: '1' });
              starts.push(h.stored.catch(() => {}));
            } catch (e) {
              error = e;
            }
            if (error !== undefined) {
              expect(error).toBeInstanceOf(ValidationError);
              expect(['id', 'tenantId', 'deadlineMs', 'priority', 'delayMs']).toContain(
                (error as ValidationError).field,
              );
            }
          },
        ),
        { numRuns: 100 },
      );
      await Promise.all(starts);

      // Inputs: JSON values come back as their JSON copy; anything else is JSON's copy or ValidationError('input').
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(fc.jsonValue(), fc.anything({ withBigInt: true, withDate: true, withMap: true })),
          async (input) => {
            let handle;
            try {
              handle = o.startWorkflow('echo', input);
            } catch (e) {
              expectValidation(e, 'input');
              return;
            }
            const copy: unknown = JSON.parse(JSON.stringify(input ?? null) ?? 'null');
            expect(await handle.result).toEqual(copy);
          },
        ),
        { numRuns: 60 },
      );
      // Still working.
      expect(await o.startWorkflow('echo', { still: 'fine' }).result).toEqual({ still: 'fine' });
    });
  });
  // FlakyStore wraps the suite's store (it calls only RunStore methods, whatever its declared inner type).
  describe('store trouble and lost leases', () => {
    it('a node whose lease lapses mid-step loses the run: the other node finishes it, and it ends once', async () => {
      const { raw } = await sharedStore();
      const store = new FlakyStore(raw as never);
      const gate = deferred();
      const calls: Record<string, number> = {};
      const setup = (o: UnifiedOrchestrator): void =>
        o.workflow('zombie', {}, async (run) => {
          await run.step('before', () => bump(calls, 'before'));
          const mid = await run.step('mid', async () => {
            if (bump(calls, 'mid') === 1) await gate.promise; // the first node stalls here
            return calls['mid'];
          });
          return { mid };
        });
      const a = await node(store, setup, { durability: { nodeId: 'node-a' } });
      const handle = a.startWorkflow('zombie', null, { id: 'z1' });
      await eventually(() => calls['mid'] === 1);
      store.silenced.add('node-a'); // its heartbeats no longer reach the store: its lease lapses
      const b = await node(store, setup, { durability: { nodeId: 'node-b' } });
      expect(await b.attach('z1').result).toEqual({ mid: 2 });
      gate.resolve(); // the first node's step ends now: its checkpoint is refused, and it lets the run go
      await eventually(() => a.stats().workflows?.active === 0, 2_000, 'the first node to let go');
      expect(await handle.result).toEqual({ mid: 2 });
      expect(calls).toEqual({ before: 1, mid: 2 });
      const terminal = (await raw.events('z1')).filter((e) => e.kind === 'completed' || e.kind === 'failed');
      expect(terminal.map((e) => [e.kind, e.nodeId])).toEqual([['completed', 'node-b']]);
      expect(a.stats().workflows).toMatchObject({ completed: 0, failed: 0 });
      expect((await raw.history('z1')).steps[1]).toMatchObject({ result: 2 });
    });

    it('while the store refuses checkpoints the step waits (it is not run again), and goes on when it answers', async () => {
      const { raw } = await sharedStore();
      const store = new FlakyStore(raw as never);
      let runs = 0;
      const ran = deferred();
      const o = await node(store, (o) =>
        o.workflow('outage', {}, async (run) => {
          const value = await run.step('write', () => {
            runs++;
            store.failing.add('checkpoint');
            ran.resolve();
            return 'written';
          });
          return run.step('next', () => `${value} then next`);
        }),
      );
      const handle = o.startWorkflow('outage', null);
      await ran.promise;
      await eventually(() => (o.stats().workflows?.checkpoints.failures ?? 0) >= 2, 3_000, 'checkpoint retries');
      expect((await raw.history(handle.id)).steps).toEqual([]);
      store.failing.clear();
      expect(await handle.result).toBe('written then next');
      expect(runs).toBe(1);
    });

    it('while the store refuses parks the run stays in memory, still takes signals, and parks once it can', async () => {
      const { raw } = await sharedStore();
      const store = new FlakyStore(raw as never);
      store.failing.add('park');
      const o = await node(store, (o) =>
        o.workflow('no-park', {}, async (run) => {
          const first = await run.signal('one');
          const second = await run.signal('two');
          return [first, second];
        }),
      );
      const handle = o.startWorkflow('no-park', null);
      await handle.stored;
      await wait(150);
      expect(o.stats().workflows).toMatchObject({ active: 1, parked: 0 });
      expect(await o.signal(handle.id, 'one', 1)).toBe(true); // delivered to the run in memory
      await eventually(async () => (await raw.history(handle.id)).steps[0]?.status === 'completed');
      store.failing.clear();
      const run = await parked(raw, handle.id, (r) => r.waitingFor.includes('two'), 5_000);
      expect(run.owner).toBeNull();
      expect(await o.signal(handle.id, 'two', 2)).toBe(true);
      expect(await handle.result).toEqual([1, 2]);
    });
  });

  describe('across nodes', () => {
    it('a run held by one node is cancelled from another: its task step is aborted there', async () => {
      const { shared, raw } = await sharedStore();
      const running = deferred<TaskContext>();
      const execute = (ctx: TaskContext): Promise<unknown> => (running.resolve(ctx), wait(60_000, ctx.signal));
      const worker = await node(
        shared,
        (o) =>
          o.workflow('remote-cancel', {}, async (run) => {
            await run.task('slow', { type: 'slow', requires: ['work'] });
          }),
        { execute },
      );
      const front = await node(shared, () => {}, { pools: [] });
      const handle = front.startWorkflow('remote-cancel', null, { version: '1' });
      const ctx = await running.promise;
      expect(worker.stats().workflows?.active).toBe(1);
      expect(await front.runs.cancel(handle.id)).toBe(true);
      await expect(handle.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
      await eventually(() => ctx.signal.aborted, 2_000, "the child task's signal to abort");
      await eventually(() => worker.stats().workflows?.active === 0, 2_000, 'the worker to let the run go');
      expect((await ended(raw, handle.id)).status).toBe('cancelled');
      expect((await ended(raw, ctx.taskId)).status).toBe('cancelled');
    });

    it('a signal sent through another node while the run is mid-step is found when the run waits', async () => {
      const { shared } = await sharedStore();
      const gate = deferred();
      const inStep = deferred();
      const worker = await node(shared, (o) =>
        o.workflow('remote-signal', {}, async (run) => {
          await run.step('busy', async () => {
            inStep.resolve();
            await gate.promise;
          });
          return run.signal('go');
        }),
      );
      const front = await node(shared, () => {}, { pools: [] });
      const handle = front.startWorkflow('remote-signal', null, { version: '1' });
      await inStep.promise;
      expect(await front.signal(handle.id, 'go', 'from the front')).toBe(true);
      gate.resolve();
      expect(await handle.result).toBe('from the front');
      expect(worker.stats().workflows?.completed).toBe(1);
    });

    it('a signal sent through another node to a short wait held in memory is taken, not timed out', async () => {
      const { shared } = await sharedStore();
      const waiting = deferred();
      const worker = await node(shared, (o) =>
        o.workflow('short-wait', {}, async (run) => {
          await run.step('ready', () => waiting.resolve());
          // A wait with a short timeout is held in memory (not parked): only the store knows of signals sent elsewhere.
          return run.signal('go', { timeoutMs: 600 }).catch((e: unknown) => {
            if (e instanceof SignalTimeoutError) return 'timed out';
            throw e;
          });
        }),
      );
      const front = await node(shared, () => {}, { pools: [] });
      const handle = front.startWorkflow('short-wait', null, { version: '1' });
      await waiting.promise;
      await wait(50);
      expect(worker.stats().workflows).toMatchObject({ active: 1, parked: 0 });
      expect(await front.signal(handle.id, 'go', 'in time')).toBe(true);
      expect(await handle.result).toBe('in time');
    });

    it('a delayed start waits in the store, then any node with the code runs it', async () => {
      const { shared, raw } = await sharedStore();
      const worker = await node(shared, (o) =>
        o.workflow('later', {}, async (run) => run.step('at', () => Date.now())),
      );
      const handle = worker.startWorkflow('later', null, { delayMs: 150 });
      await handle.stored;
      const stored = (await raw.get(handle.id))!;
      expect(stored).toMatchObject({ owner: null, notBefore: stored.createdAt + 150 });
      expect((await handle.result) as number).toBeGreaterThanOrEqual(stored.createdAt + 150);
    });
  });
});

describe('without a store (in memory)', () => {
  const { node } = workflowNodes(WORKFLOW_STORES[0]!);

  it('runs the same API: tasks, steps, fan-out, signals, sleeps, cancel, runs.steps()', async () => {
    const o = await node(
      undefined,
      (o) => {
        o.workflow('local', {}, async (run, input: number) => {
          const [a, b] = await Promise.all([
            run.task<number>('a', { type: 'a', requires: ['work'], payload: input }),
            run.step('b', () => input + 1),
          ]);
          await run.sleep('nap', 20);
          const go = await run.signal<string>('go');
          return `${a}/${b}/${go}`;
        });
        o.workflow('forever', {}, async (run) => run.signal('never'));
      },
      { execute: (ctx) => (ctx.payload as number) * 10 },
    );
    const handle = o.startWorkflow('local', 4);
    await eventually(async () => (await o.runs.get(handle.id))?.waitingFor.includes('go') === true);
    expect(await o.signal(handle.id, 'go', 'yes')).toBe(true);
    expect(await handle.result).toBe('40/5/yes');
    expect((await o.runs.steps(handle.id)).steps.map((s) => s.name)).toEqual(['a', 'b', 'nap', 'go']);
    const forever = o.startWorkflow('forever', null);
    await forever.stored;
    expect(await forever.cancel()).toBe(true);
    await expect(forever.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
    // Without a store, a task no agent can run is refused at once: the step fails.
    o.workflow('no-agent', {}, async (run) =>
      run.task('nobody', { type: 'x', requires: ['nobody-has-this'] }).catch((e: WorkflowStepError) => e.reason.code),
    );
    expect(await o.startWorkflow('no-agent', null).result).toBe('NO_CAPABLE_AGENT');
    // Registered after start: fine once the in-memory store exists (a workflow was registered before start) ...
    o.workflow('late', {}, async () => 'late');
    expect(await o.startWorkflow('late', null).result).toBe('late');
    // ... refused, saying why, when none was.
    const bare = await node(undefined, () => {});
    const error = thrown(() => bare.workflow('late', {}, async () => null));
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.message).toMatch(/register workflows before start\(\)/);
  });
});

describe('clean exit', () => {
  const child = fileURLToPath(new URL('./exit-child.ts', import.meta.url));

  it.each(['store', 'memory', 'drain'])(
    'stop() (%s) leaves nothing keeping the process alive: runs parked, waits held in memory, runs mid-step',
    async (mode) => {
      const { code, out } = await runToExit(child, [mode], 20_000);
      expect(out).toMatch(/stopped parked=2 active=5 settled=7 state=stopped/);
      expect(code).toBe(0);
      // The held waits' timers (1.5 s) were cleared: the process ended as soon as it stopped.
      const after = Number(/exited (\d+) ms after stop/.exec(out)?.[1]);
      expect(after).toBeLessThan(1_000);
    },
    30_000,
  );
});
