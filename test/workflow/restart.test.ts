/**
 * A node restarted under a stable `durability.nodeId` takes back the workflow runs its previous process held (as
 * recoveries, at once, without waiting for a lease), and gives back to the store at once what it cannot run any more
 * (a version it no longer registers; a task it has no agent for), for a node that can.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore, UnifiedOrchestrator, type WorkflowContext } from '../../src/index.js';
import { deferred, eventually } from '../support/agents.js';
import { FlakyStore } from '../store/flaky-store.js';

/** Every store operation a node makes: failing them all is a node that is gone (killed) but still in memory. */
const ALL = ['insert', 'append', 'heartbeat', 'claim', 'leave', 'get', 'checkpoint', 'park', 'signal', 'history'];

/** The first process's view of the store, to cut it off as if it were killed. */
function killable(store: MemoryStore): FlakyStore {
  const flaky = new FlakyStore(store);
  flaky.close = async () => {};
  return flaky;
}

const made: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(made.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 }).catch(() => {})));
});

/** A store the nodes share that their stop does not close (a database server outlives its nodes). */
function shared(store: MemoryStore): MemoryStore {
  return new Proxy(store, {
    get(target, key) {
      if (key === 'close') return async () => {};
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

async function node(
  store: MemoryStore | FlakyStore,
  nodeId: string,
  register: (o: UnifiedOrchestrator) => void,
): Promise<UnifiedOrchestrator> {
  const o = new UnifiedOrchestrator({
    metrics: false,
    store: store instanceof MemoryStore ? shared(store) : store,
    pools: [{ role: 'w', capabilities: ['work'], minAgents: 1, maxAgents: 1, create: () => ({ execute: () => 'ok' }) }],
    // A lease far longer than the test: only the restart's take-back can move the runs.
    durability: { nodeId, leaseMs: 600_000, claimIntervalMs: 20, pollMs: 20 },
  });
  made.push(o);
  register(o);
  await o.start();
  return o;
}

describe('restart under a stable node id', () => {
  it('takes back its previous process’s workflow runs at once, as recoveries, from their last checkpoint', async () => {
    const store = new MemoryStore();
    const stuck = deferred<never>();
    const calls: string[] = [];
    const flow = (first: boolean) => async (run: WorkflowContext) => {
      await run.step('one', () => (calls.push('one'), 1));
      await run.step('two', () => (calls.push('two'), first ? stuck.promise : 2));
      return run.step('three', () => (calls.push('three'), 3));
    };
    // The first process: stuck in step two, never stopped (as if killed: its lease stays, its run stays owned).
    const gone = killable(store);
    const before = await node(gone, 'stable', (o) => o.workflow('flow', {}, flow(true)));
    const id = before.startWorkflow('flow', null).id;
    await eventually(() => calls.includes('two'));
    gone.failing = new Set(ALL);
    made.splice(made.indexOf(before), 1); // not stopped by the test's cleanup until the end
    try {
      const after = await node(store, 'stable', (o) => o.workflow('flow', {}, flow(false)));
      expect(await after.attach(id).result).toBe(3);
      expect(calls).toEqual(['one', 'two', 'two', 'three']);
      expect(await after.runs.get(id)).toMatchObject({ status: 'completed', recoveries: 1 });
    } finally {
      await before.stop({ drain: false, timeoutMs: 500 }).catch(() => {});
    }
  });

  it('gives back at once the runs of a version it no longer registers, for a node that has it', async () => {
    const store = new MemoryStore();
    const stuck = deferred<never>();
    const gone = killable(store);
    const before = await node(gone, 'stable', (o) =>
      o.workflow('legacy', { version: '1' }, async (run) => run.step('wait', () => stuck.promise)),
    );
    const id = await before.startWorkflow('legacy', null).stored;
    expect(await store.get(id)).toMatchObject({ owner: 'stable' });
    gone.failing = new Set(ALL);
    made.splice(made.indexOf(before), 1);
    try {
      // Restarted with version 2 only: version 1's run goes back to the store instead of staying under its name.
      await node(store, 'stable', (o) => o.workflow('legacy', { version: '2' }, async () => 'v2'));
      await eventually(async () => (await store.get(id))?.owner === null);
      const other = await node(store, 'other', (o) => o.workflow('legacy', { version: '1' }, async () => 'v1 again'));
      expect(await other.attach(id).result).toBe('v1 again');
    } finally {
      await before.stop({ drain: false, timeoutMs: 500 }).catch(() => {});
    }
  });
});
