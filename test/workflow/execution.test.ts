/**
 * One workflow execution (src/workflow/execution.ts) on a host of our own making, for outcomes that depend on the
 * order in which timers of different clocks fire and so cannot be set up reliably through a whole orchestrator.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TaskTimeoutError } from '../../src/errors.js';
import type { Task } from '../../src/engine/task.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { NewRun, RunRecord } from '../../src/store/store.js';
import { CheckpointLane } from '../../src/workflow/checkpoints.js';
import { WorkflowExecution, type ExecutionHost, type WorkflowDefinition } from '../../src/workflow/execution.js';
import type { WorkflowContext } from '../../src/workflow/workflow.js';

const NODE = 'node-1';
const lanes: CheckpointLane[] = [];
afterEach(() => {
  for (const lane of lanes.splice(0)) lane.close();
});

/** A stored run owned by NODE, with a deadline `deadlineMs` from now. */
async function storedRun(store: MemoryStore, deadlineMs: number): Promise<RunRecord> {
  const createdAt = Date.now();
  const run: NewRun = {
    id: 'run-1',
    type: 'workflow:w',
    tenantId: null,
    idempotencyKey: null,
    task: {
      requires: ['workflow:w@1'],
      prefers: [],
      priority: 0,
      payload: null,
      timeoutMs: null,
      deadlineAt: createdAt + deadlineMs,
      maxAttempts: 1,
      affinityKey: null,
    },
    createdAt,
  };
  await store.insert(NODE, [run]);
  return (await store.get(run.id))!;
}

/** A host whose children time out `early` ms before the deadline they were given. */
function hostWithEarlyChildren(store: MemoryStore, early: number, submitted: Task[]): ExecutionHost {
  const lane = new CheckpointLane(store, NODE);
  lanes.push(lane);
  return {
    nodeId: NODE,
    lane,
    holdWaitsMs: 2_000,
    submitChild(task, key) {
      submitted.push(task);
      const deadlineMs = task.deadlineMs ?? Infinity;
      let timer: NodeJS.Timeout | undefined;
      const result = new Promise<unknown>((_, reject) => {
        timer = setTimeout(
          () => reject(new TaskTimeoutError(key, deadlineMs, 1, 'task')),
          Math.max(0, deadlineMs - early),
        );
      });
      result.catch(() => {});
      return { result, id: Promise.resolve(`child-of-${key}`), cancel: () => clearTimeout(timer) };
    },
    childInfo: async () => ({ agentId: 'agent-1', attempts: 1, cost: 0 }),
    park: async () => 'lost',
    signals: async () => [],
    halted: () => false,
    whenResumed: async () => {},
  };
}

function definition(fn: (run: WorkflowContext) => Promise<unknown>): WorkflowDefinition {
  return { name: 'w', version: '1', maxSteps: 100, budget: Infinity, deadlineMs: undefined, fn: fn };
}

describe('a run deadline and its task steps', () => {
  it('a task step that runs out of the time the run had left ends the run timed-out, not failed', async () => {
    // The task's deadline is what was left of the run's; its timer (the engine's monotonic clock, or another node's)
    // may fire a moment before the run's own wall-clock timer. The run timed out either way.
    const store = new MemoryStore();
    await store.open();
    const record = await storedRun(store, 150);
    const submitted: Task[] = [];
    let caught: unknown;
    const execution = new WorkflowExecution(
      hostWithEarlyChildren(store, 5, submitted),
      definition(async (run) => {
        try {
          await run.task('slow', { type: 'slow', requires: ['work'], deadlineMs: 60_000 });
        } catch (error) {
          caught = error;
        }
        return 'fallback after the deadline';
      }),
      record,
      { steps: [], signals: [] },
    );
    const end = await execution.run();
    expect(submitted[0]!.deadlineMs).toBeLessThanOrEqual(150);
    expect(end.kind).toBe('timed-out');
    expect(caught).toMatchObject({ code: 'TASK_TIMEOUT' });
    // The step is not checkpointed as a failure a replay would return.
    expect((await store.history(record.id)).steps.filter((s) => s.status === 'failed')).toEqual([]);
  });

  it('a task step whose own (shorter) deadline passes fails the step, and the run goes on', async () => {
    const store = new MemoryStore();
    await store.open();
    const record = await storedRun(store, 5_000);
    const execution = new WorkflowExecution(
      hostWithEarlyChildren(store, 0, []),
      definition(async (run) => {
        const error = await run
          .task('short', { type: 'short', requires: ['work'], deadlineMs: 30 })
          .catch((e: { code: string; reason: { code: string } }) => `${e.code}/${e.reason.code}`);
        return error;
      }),
      record,
      { steps: [], signals: [] },
    );
    expect(await execution.run()).toEqual({ kind: 'completed', value: 'WORKFLOW_STEP_FAILED/TASK_TIMEOUT' });
  });
});
