/**
 * The chaos harness's own counts: a task is lost only when the orchestrator left it open, never because the ledger
 * had not looked at its handle yet.
 */
import { describe, expect, it } from 'vitest';
import { ProgressFeed, UnifiedOrchestrator, type Agent, type TaskHandle } from 'unified-orchestrator';
import { chaos } from './harness.js';

function orchestrator(): UnifiedOrchestrator {
  const agent: Agent = { execute: () => Promise.resolve('ok') };
  return new UnifiedOrchestrator({
    pressure: false,
    pools: [{ role: 'w', capabilities: ['work'], create: () => agent, minAgents: 1, maxAgents: 1 }],
  });
}

describe('chaos harness: the final count', () => {
  it('a task the stop cancels is not lost when its result handler is attached after the stop', async () => {
    // cancel-halt-storm leaves tasks held by a halt for the stop, and every 7th caller attaches its handler 30 ms
    // late: the count at the end came about 25 ms after the stop and read those handles as never settled.
    // 200 ms here makes that race certain.
    const r = await chaos('late-handler-at-stop', 'ci', async (c) => {
      const o = orchestrator();
      await o.start();
      const l = c.ledger(o);
      await l.flow({ total: 5, window: 5, make: () => ({ type: 'early', requires: ['work'] }) });
      l.lateHandlerEvery = 1;
      l.lateHandlerMs = 200;
      await c.conclude(l, {
        beforeStop: async () => {
          await o.halt('held for the stop');
          for (let i = 0; i < 3; i++) l.delegate({ type: 'held', requires: ['work'] });
        },
      });
    });
    expect(r.crash).toBeUndefined();
    expect(r.violations).toEqual([]);
    expect(r.accepted).toBe(8);
    expect(r.completed).toBe(5);
    expect(r.cancelled).toBe(3);
    expect(r.lost).toBe(0);
  });

  it('a handle that never settles is still lost, its handler late or not', async () => {
    const never: TaskHandle = {
      id: 'never-settles',
      result: new Promise<never>(() => {}),
      cancel: () => false,
      progress: ProgressFeed.none,
    };
    const r = await chaos('never-settles', 'ci', async (c) => {
      const o = orchestrator();
      await o.start();
      const l = c.ledger(o);
      l.lateHandlerEvery = 1;
      l.adopt(never);
      await c.conclude(l, { settleMs: 100 });
    });
    expect(r.crash).toBeUndefined();
    expect(r.lost).toBe(1);
    expect(r.violations).toContain('1 task(s) still unsettled 100 ms after the load ended');
  });
});
