/**
 * The submitter's supervision of remote tasks (src/orchestrator/remote-tasks.ts), against a bridge whose cluster view
 * the test sets: which nodes are live and whether any serves the task. Real timers, small bounds.
 */
import { describe, expect, it } from 'vitest';
import {
  NoCapableNodeError,
  RemoteTaskError,
  TaskCancelledError,
  TaskTimeoutError,
  type CommunicationBridge,
  type HandOffNotice,
} from 'unified-orchestrator';
import { RemoteTasks, SWEEP_MS, type RemoteTaskSpec } from '../../src/orchestrator/remote-tasks.js';
import type { HandOffOptions, WireTask } from '../../src/bridge/bridge.js';

/** A bridge whose view of the cluster the test sets, recording what the supervisor asks of it. */
function view() {
  const state = { live: new Set<string>(), serves: true, cancelled: [] as Array<[string, string]> };
  let notify!: (notice: HandOffNotice) => void;
  let resolve!: (v: unknown) => void;
  let reject!: (e: unknown) => void;
  const bridge = {
    canAnyServe: () => state.serves,
    isLive: (node: string) => state.live.has(node),
    cancel: (taskId: string, reason: string) => void state.cancelled.push([taskId, reason]),
    handOff: (_id: string, _wire: WireTask, options?: HandOffOptions) => {
      notify = options!.onNotice!;
      return new Promise((res, rej) => {
        resolve = res;
        reject = rej;
      });
    },
  } as unknown as CommunicationBridge;
  /** The hand-off of the last task supervised: the test settles and notices it, as a bridge would. */
  const r = {
    started: (node: string, delivery = 1, taskId = 't-1') => notify({ taskId, node, kind: 'started', delivery }),
    resolve: (v: unknown) => resolve(v),
    reject: (e: unknown) => reject(e),
  };
  return { state, bridge, r };
}

function tasks(bridge: CommunicationBridge, waitForNodeMs: number, backoffMs: number, graceMs: number) {
  return new RemoteTasks(
    bridge,
    { waitForNodeMs: () => waitForNodeMs, backoffMs: () => backoffMs, progress: () => {} },
    graceMs,
  );
}

function spec(extra: Partial<RemoteTaskSpec> & { id?: string } = {}): [string, RemoteTaskSpec] {
  const { id = 't-1', ...rest } = extra;
  return [
    id,
    {
      type: 't',
      requires: ['x'],
      timeoutMs: Infinity,
      maxAttempts: 1,
      deadlineMs: Infinity,
      signal: undefined,
      tenantId: undefined,
      ...rest,
    },
  ];
}

const WIRE = { type: 't', requires: ['x'], prefers: [], priority: 0, payload: null, timeoutMs: null, maxAttempts: 1 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('RemoteTasks', () => {
  it('settles with the result, cancels nothing, and stops its sweep once nothing waits', async () => {
    const { state, bridge, r } = view();
    const remote = tasks(bridge, 1_000, 0, 100);
    const { result } = remote.supervise(...spec(), WIRE);
    expect(remote.size).toBe(1);
    r.resolve('ok');
    await expect(result).resolves.toBe('ok');
    expect(remote.size).toBe(0);
    expect(state.cancelled).toEqual([]);
  });

  it('a delivery running past its attempts, backoff and grace ends with TaskTimeoutError and is cancelled in the cluster', async () => {
    const { state, bridge, r } = view();
    state.live.add('B');
    const remote = tasks(bridge, 60_000, 20, 100);
    const started = performance.now();
    const { result } = remote.supervise(...spec({ timeoutMs: 50, maxAttempts: 2 }), WIRE);
    r.started('B');
    const error = await result.catch((e: unknown) => e);
    // 2 x 50 ms + 1 backoff of 20 ms + 100 ms of grace, checked every SWEEP_MS.
    expect(performance.now() - started).toBeGreaterThanOrEqual(220);
    expect(performance.now() - started).toBeLessThan(220 + 3 * SWEEP_MS);
    expect(error).toBeInstanceOf(TaskTimeoutError);
    expect(error).toMatchObject({ scope: 'attempt', attempt: 1, taskId: 't-1' });
    expect(state.cancelled).toEqual([['t-1', (error as Error).message]]);
    r.resolve('too late'); // dropped
    await sleep(5);
    await expect(result).rejects.toBe(error);
  });

  it('without a started notice a running task is not timed here (the node bounds its attempts): only its deadline', async () => {
    const { state, bridge } = view();
    const remote = tasks(bridge, 60_000, 0, 10);
    const { result } = remote.supervise(...spec({ timeoutMs: 20, deadlineMs: 400 }), WIRE);
    let settled = false;
    result.catch(() => (settled = true));
    await sleep(300);
    expect(settled).toBe(false);
    await expect(result).rejects.toMatchObject({ code: 'TASK_TIMEOUT', scope: 'task', timeoutMs: 400 });
    expect(state.cancelled.map(([id]) => id)).toEqual(['t-1']);
  });

  it('its node dies: it waits for the next delivery while a node serves it, and times each delivery from its notice', async () => {
    const { state, bridge, r } = view();
    state.live.add('B');
    const remote = tasks(bridge, 200, 0, 150);
    const { result } = remote.supervise(...spec({ timeoutMs: 100 }), WIRE);
    r.started('B');
    state.live.delete('B'); // B died; C serves the class
    state.live.add('C');
    let settled = false;
    result.then(
      () => (settled = true),
      () => (settled = true),
    );
    await sleep(600); // longer than the first delivery's bound and than waitForNodeMs: still waiting (a node serves it)
    expect(settled).toBe(false);
    r.started('C', 2);
    r.resolve('done on C');
    await expect(result).resolves.toBe('done on C');
    expect(state.cancelled).toEqual([]);
  });

  it('after its node died, a delivery counted from 1 again (a hand-off sent again after a Redis restart) is timed', async () => {
    const { state, bridge, r } = view();
    state.live.add('B');
    const remote = tasks(bridge, 60_000, 0, 100);
    const [id, s] = spec({ timeoutMs: 50 });
    const { result } = remote.supervise(id, s, WIRE);
    r.started('B', 2);
    state.live.delete('B');
    state.live.add('C');
    await sleep(2 * SWEEP_MS); // B is seen gone: the task waits again
    r.started('C', 1);
    const error = await result.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskTimeoutError);
    expect(error).toMatchObject({ scope: 'attempt', attempt: 1 });
  });

  it('no live node serves it: it waits waitForNodeMs, then ends with NoCapableNodeError; a node that comes back resets the wait', async () => {
    const { state, bridge } = view();
    state.serves = false;
    const remote = tasks(bridge, 600, 0, 100);
    const started = performance.now();
    const { result } = remote.supervise(...spec(), WIRE);
    await sleep(400);
    state.serves = true; // a node came, then went again
    await sleep(2 * SWEEP_MS);
    state.serves = false;
    const error = await result.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoCapableNodeError);
    expect(error).toMatchObject({ code: 'NO_CAPABLE_NODE', taskId: 't-1', requires: ['x'] });
    // The wait started again when the node left: 400 + 500 + 600 ms at least.
    expect(performance.now() - started).toBeGreaterThanOrEqual(1_400);
    expect(state.cancelled.map(([id]) => id)).toEqual(['t-1']);
  });

  it('cancel() and the caller signal end it with TaskCancelledError at once, cancelled once in the cluster', async () => {
    const { state, bridge } = view();
    const remote = tasks(bridge, 60_000, 0, 100);
    const handle = remote.supervise(...spec(), WIRE);
    expect(handle.cancel('no longer needed')).toBe(true);
    await expect(handle.result).rejects.toBeInstanceOf(TaskCancelledError);
    expect(handle.cancel()).toBe(false);
    expect(state.cancelled).toHaveLength(1);

    const controller = new AbortController();
    const viaSignal = remote.supervise(...spec({ id: 't-2', signal: controller.signal }), WIRE);
    controller.abort(new Error('user left'));
    await expect(viaSignal.result).rejects.toMatchObject({ code: 'TASK_CANCELLED', message: /user left/ });
    expect(state.cancelled.map(([id]) => id)).toEqual(['t-1', 't-2']);
    expect(remote.size).toBe(0);
  });

  it("the serving node's own TASK_TIMEOUT at the deadline is the task's deadline; a remote failure otherwise stays remote", async () => {
    const { bridge, r } = view();
    const remote = tasks(bridge, 60_000, 0, 100);
    const { result } = remote.supervise(...spec({ deadlineMs: 10_000 }), WIRE);
    const remoteTimeout = new RemoteTaskError({ name: 'TaskTimeoutError', code: 'TASK_TIMEOUT', message: 'x' }, 'B');
    r.reject(remoteTimeout); // long before the deadline: an attempt timeout there, passed on as it is
    await expect(result).rejects.toBe(remoteTimeout);
  });
});
