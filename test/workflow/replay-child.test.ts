/**
 * A `run.task` step replayed on a node that finds its task by the step's idempotency key (stored by the first
 * execution, left unfinished when that node went away) records what that task reported, as a first execution does:
 * its agent, attempts and cost. The replay's handle carries a fresh id while the task it follows has the first one,
 * so the step must read the task's end under the stored id.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore, UnifiedOrchestrator, type TaskContext, type WorkflowContext } from '../../src/index.js';
import { eventually } from '../support/agents.js';

const made: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(made.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
});

function node(store: MemoryStore, execute: (ctx: TaskContext) => Promise<unknown>): UnifiedOrchestrator {
  const o = new UnifiedOrchestrator({
    pools: [{ role: 'worker', capabilities: ['work'], minAgents: 1, maxAgents: 1, create: () => ({ execute }) }],
    metrics: false,
    store,
    durability: { leaseMs: 600, heartbeatMs: 150, claimIntervalMs: 50, pollMs: 50 },
  });
  o.workflow('one-task', { version: '1' }, async (run: WorkflowContext) =>
    run.task<string>('work', { type: 'work', requires: ['work'] }),
  );
  made.push(o);
  return o;
}

describe('a replayed task step that follows the task its first execution stored', () => {
  it("records that task's cost and agent, and counts the cost in the run's", async () => {
    const store = new MemoryStore();
    let calls = 0;
    // The first call hangs until its node stops; the next one (on the second node) takes 300 ms and reports 7 units.
    const execute = async (ctx: TaskContext): Promise<unknown> => {
      calls++;
      if (calls === 1) {
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
        throw ctx.signal.reason;
      }
      // Long enough for the replay to find this task running and follow it.
      await new Promise((resolve) => setTimeout(resolve, 300));
      ctx.reportCost(7);
      return 'done';
    };
    const first = node(store, execute);
    await first.start();
    first.startWorkflow('one-task', null, { id: 'wf-1' });
    await eventually(() => calls === 1, 5_000, 'the first call');
    // It goes away: the task and the run go back to the store, unfinished, with no checkpoint of the step.
    await first.stop({ drain: false, timeoutMs: 1_000 });

    const second = node(store, execute);
    await second.start();
    expect(await second.attach('wf-1').result).toBe('done');
    expect(calls).toBe(2);
    const { steps } = await second.runs.steps('wf-1');
    expect(steps).toHaveLength(1);
    const [step] = steps;
    const child = await second.runs.get(step!.childId!);
    expect(child).toMatchObject({ status: 'completed', cost: 7 });
    expect(step).toMatchObject({ name: 'work', status: 'completed', cost: 7, agentId: child!.agentId });
    expect((await second.runs.get('wf-1'))?.cost).toBe(7);
  });
});
