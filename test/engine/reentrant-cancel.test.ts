/**
 * User code that runs synchronously inside a transition — an event listener, or an agent's abort listener on
 * `ctx.signal` — may cancel the very task that is moving. Whatever it does, every accepted task ends exactly once
 * and stats() balances (property-based: random listeners, faults, deadlines, timeouts, retries and rate limits).
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { UnifiedOrchestrator, type Agent, type OrchestratorEventName, type TaskHandle } from 'unified-orchestrator';
import { accounted, until } from './helpers.js';

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
});

type Fate = 'ok' | 'fail' | 'hang' | 'rate-limited';
const CANCELLING_EVENTS = [
  'task:queued',
  'task:started',
  'task:retrying',
] as const satisfies readonly OrchestratorEventName[];

describe('re-entrant cancels', () => {
  it('a cancel from any listener, at any step, still ends every task exactly once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            fate: fc.constantFrom<Fate>('ok', 'fail', 'hang', 'rate-limited'),
            cancelOn: fc.option(fc.constantFrom(...CANCELLING_EVENTS, 'abort' as const), { nil: undefined }),
            deadlineMs: fc.option(fc.integer({ min: 5, max: 40 }), { nil: undefined }),
            timeoutMs: fc.constantFrom(15, 30, Infinity),
            maxAttempts: fc.integer({ min: 1, max: 3 }),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        async (specs) => {
          const o = new UnifiedOrchestrator({
            pools: [],
            pressure: false,
            metrics: false,
            agentBreaker: false,
            retry: { baseDelayMs: 2, maxDelayMs: 5 },
            rateLimits: { x: { intervalMs: 1_000, maxDeferrals: 1 } },
          });
          live.push(o);
          await o.start();
          const handles = new Map<string, TaskHandle>();
          const plan = new Map<string, (typeof specs)[number]>();
          const terminal = new Map<string, number>();
          o.on('task:completed', (e) => terminal.set(e.taskId, (terminal.get(e.taskId) ?? 0) + 1));
          o.on('task:failed', (e) => terminal.set(e.taskId, (terminal.get(e.taskId) ?? 0) + 1));
          for (const event of CANCELLING_EVENTS) {
            o.on(event, (e: { taskId: string }) => {
              if (plan.get(e.taskId)?.cancelOn === event) o.cancel(e.taskId, `cancelled on ${event}`);
            });
          }
          const agent: Agent<{ fate: Fate; cancelOnAbort: boolean }> = {
            execute(ctx) {
              const { fate, cancelOnAbort } = ctx.payload;
              // Synchronously cancels its own task when its attempt is aborted (a timeout, a deadline, a halt).
              if (cancelOnAbort)
                ctx.signal.addEventListener('abort', () => o.cancel(ctx.taskId, 'from the abort listener'));
              if (fate === 'ok') return 'ok';
              if (fate === 'fail') throw new Error('fail');
              if (fate === 'rate-limited') throw Object.assign(new Error('429'), { retryAfterMs: 3 });
              return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
            },
          };
          o.registerAgent(agent, { id: 'a', capabilities: ['x'], concurrency: 3 });
          for (const spec of specs) {
            const handle = o.delegate({
              type: 't',
              requires: ['x'],
              payload: { fate: spec.fate, cancelOnAbort: spec.cancelOn === 'abort' },
              timeoutMs: spec.timeoutMs,
              maxAttempts: spec.maxAttempts,
              ...(spec.deadlineMs !== undefined ? { deadlineMs: spec.deadlineMs } : {}),
            });
            handles.set(handle.id, handle);
            plan.set(handle.id, spec);
          }
          // Hanging tasks without a timeout or a deadline end at stop (cancelled).
          await Promise.race([
            Promise.allSettled([...handles.values()].map((h) => h.result)),
            new Promise((r) => setTimeout(r, 150)),
          ]);
          await o.stop({ drain: false, timeoutMs: 1_000 });
          await until(() => terminal.size === handles.size, 2_000).catch(() => {});
          for (const id of handles.keys())
            expect(terminal.get(id), `task ${id} (${JSON.stringify(plan.get(id))})`).toBe(1);
          const s = o.stats();
          expect(s).toMatchObject({ waiting: 0, running: 0, backingOff: 0 });
          expect(accounted(s)).toBe(s.submitted);
        },
      ),
      { numRuns: 40 },
    );
  }, 120_000);
});
