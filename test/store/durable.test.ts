/**
 * Durable runs through the orchestrator (src/store/durable-runs.ts), on a MemoryStore shared by the nodes of one
 * test: a task is stored before it runs, its history is written, duplicates follow the first run, a failing store
 * refuses submits with STORE_UNAVAILABLE and nothing is half-written, a stopped node gives its runs back, a node
 * whose lease lapsed loses its runs to another, and a task that kills its node too often is dead-lettered.
 * The SQL stores run the same wiring in test/store/durable-postgres.test.ts and the crash tests.
 */
import { describe, expect, it } from 'vitest';
import {
  StoreUnavailableError,
  TaskNotFoundError,
  UnifiedOrchestrator,
  ValidationError,
  type TaskContext,
} from '../../src/index.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { durableNodes } from './durable-nodes.js';
import { FlakyStore } from './flaky-store.js';
import { deferred, eventually } from '../support/agents.js';

const node = durableNodes({ metrics: false });

describe('durable runs on a store', () => {
  it('stores a task before it runs, and keeps its outcome and its timeline', async () => {
    const store = new MemoryStore();
    let seenInStore: string | undefined;
    const o = await node(store, async (ctx: TaskContext<{ n: number }>) => {
      seenInStore = (await store.get(ctx.taskId))?.status;
      return { doubled: ctx.payload.n * 2 };
    });
    const handle = o.delegate({ type: 'double', requires: ['work'], payload: { n: 21 }, tenantId: 'acme' });
    expect(await handle.result).toEqual({ doubled: 42 });
    // Stored before it ran (its `started` event is written with the next batch).
    expect(['queued', 'running']).toContain(seenInStore);
    await eventually(async () => (await o.runs.get(handle.id))?.status === 'completed');
    const run = (await o.runs.get(handle.id))!;
    expect(run).toMatchObject({ type: 'double', tenantId: 'acme', attempts: 1, result: { doubled: 42 } });
    expect((await o.runs.events(handle.id)).map((e) => e.kind)).toEqual(['queued', 'started', 'completed']);
    // Another tenant sees nothing.
    expect(await o.runs.get(handle.id, { tenantId: 'other' })).toBeUndefined();
    expect((await o.runs.list({ tenantId: 'acme' })).runs.map((r) => r.id)).toEqual([handle.id]);
    expect(o.stats().durable).toMatchObject({ store: 'memory', inserted: 1, failures: 0, available: true });
  });

  it('groups the inserts of one turn into one statement', async () => {
    const store = new MemoryStore();
    const sizes: number[] = [];
    const insert = store.insert.bind(store);
    store.insert = async (n, runs) => (sizes.push(runs.length), insert(n, runs));
    const o = await node(store, () => 'ok');
    const results = Array.from({ length: 50 }, (_, i) => o.submit({ type: 't', requires: ['work'], payload: i }));
    expect(await Promise.all(results)).toHaveLength(50);
    expect(sizes[0]).toBe(50);
  });

  it('enqueue() resolves once stored; attach() follows the run from another node', async () => {
    const store = new MemoryStore();
    const gate = deferred();
    const a = await node(store, async () => {
      await gate.promise;
      return 'done';
    });
    const b = await node(store, () => 'never', { pools: [] });
    const handle = await a.enqueue({ type: 't', requires: ['work'] });
    expect((await store.get(handle.id))?.status).toMatch(/queued|running/);
    const attached = b.attach<string>(handle.id);
    gate.resolve();
    expect(await attached.result).toBe('done');
    // A finished run attaches at once; an unknown one rejects.
    expect(await b.attach(handle.id).result).toBe('done');
    await expect(b.attach('no-such-run').result).rejects.toBeInstanceOf(TaskNotFoundError);
    await expect(b.attach(handle.id, { tenantId: 'other' }).result).rejects.toBeInstanceOf(TaskNotFoundError);
  });

  it('a node with no agent for a task stores it for a node that has one (an API node and its workers)', async () => {
    const store = new MemoryStore();
    const api = await node(store, () => 'never', { pools: [] });
    const handle = await api.enqueue<string>({ type: 't', requires: ['work'], payload: 'x' });
    await eventually(async () => (await store.get(handle.id))?.owner === null); // given back: nobody here can run it
    const worker = await node(store, (ctx) => `ran ${String(ctx.payload)} with ${ctx.recoveries} recoveries`);
    expect(await handle.result).toBe('ran x with 0 recoveries');
    expect((await worker.runs.events(handle.id)).map((e) => e.kind)).toEqual([
      'queued',
      'released',
      'adopted',
      'started',
      'completed',
    ]);
  });

  it('a duplicate idempotency key follows the first run instead of running again', async () => {
    const store = new MemoryStore();
    let runs = 0;
    const gate = deferred();
    const o = await node(store, async () => {
      runs++;
      await gate.promise;
      return 'first';
    });
    const first = await o.enqueue({ type: 't', requires: ['work'], idempotencyKey: 'k1' });
    const second = await o.enqueue({ type: 't', requires: ['work'], idempotencyKey: 'k1' });
    expect(second.id).toBe(first.id);
    gate.resolve();
    expect(await second.result).toBe('first');
    expect(runs).toBe(1);
  });

  it('records retries and dead-letters; runs.retry() runs a dead letter again', async () => {
    const store = new MemoryStore();
    let fail = true;
    const o = await node(
      store,
      () => {
        if (fail) throw new Error('vendor down');
        return 'recovered';
      },
      { retry: { baseDelayMs: 1, maxDelayMs: 2 } },
    );
    const handle = o.delegate({ type: 't', requires: ['work'], maxAttempts: 2 });
    await expect(handle.result).rejects.toMatchObject({ code: 'TASK_DEAD_LETTERED' });
    await eventually(async () => (await o.runs.get(handle.id))?.status === 'dead-lettered');
    const kinds = (await o.runs.events(handle.id)).map((e) => e.kind);
    expect(kinds).toEqual(['queued', 'started', 'retrying', 'started', 'dead-lettered']);
    expect((await o.runs.deadLetters()).map((r) => r.id)).toEqual([handle.id]);
    fail = false;
    const again = await o.runs.retry(handle.id);
    expect(again.id).not.toBe(handle.id);
    expect(await again.result).toBe('recovered');
    await expect(o.runs.retry(again.id)).rejects.toBeInstanceOf(TaskNotFoundError); // it completed
  });

  it('while the store refuses inserts, submits reject with STORE_UNAVAILABLE and nothing is stored or run', async () => {
    const store = new FlakyStore();
    let runs = 0;
    const o = await node(store, () => ++runs);
    store.failing.add('insert');
    const handle = o.delegate({ type: 't', requires: ['work'] });
    await expect(handle.stored).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(handle.result).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(o.enqueue({ type: 't', requires: ['work'] })).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect(runs).toBe(0);
    expect((await store.list()).runs).toHaveLength(0);
    expect(o.stats().durable?.available).toBe(false);
    store.failing.clear();
    expect(await o.submit({ type: 't', requires: ['work'] })).toBe(1);
  });

  it('a node that stops without finishing gives its runs back, and another node runs them', async () => {
    const store = new MemoryStore();
    const a = await node(store, () => new Promise(() => {}), {}, 1); // never finishes
    const handles = [
      await a.enqueue({ type: 't', requires: ['work'] }),
      await a.enqueue({ type: 't', requires: ['work'] }),
    ];
    await eventually(async () => (await store.get(handles[0]!.id))?.status === 'running');
    await a.stop({ drain: false, timeoutMs: 1_000 });
    await store.open(); // the orchestrator closed the store it was given at stop
    for (const h of handles) {
      // Not cancelled: given back, and the caller here is told to follow it elsewhere.
      await expect(h.result).rejects.toMatchObject({ code: 'ORCHESTRATOR_STOPPED', message: /attach\(id\)/ });
      expect((await store.get(h.id))?.owner).toBeNull();
    }
    const seen: TaskContext[] = [];
    const b = await node(store, (ctx) => (seen.push(ctx), `ran ${ctx.taskId}`));
    for (const h of handles) expect(await b.attach(h.id).result).toBe(`ran ${h.id}`);
    // Given back by a clean stop: not a recovery.
    expect(seen.map((c) => c.recoveries)).toEqual([0, 0]);
    const kinds = (await b.runs.events(handles[0]!.id)).map((e) => e.kind);
    expect(kinds).toEqual(['queued', 'started', 'released', 'adopted', 'started', 'completed']);
  });

  it('a node whose lease lapses loses its runs to another node: the attempt there is a recovery', async () => {
    const store = new FlakyStore();
    const a = await node(store, () => new Promise(() => {}), { durability: { nodeId: 'node-a' } }, 1);
    const handle = await a.enqueue({ type: 't', requires: ['work'], maxAttempts: 3 });
    await eventually(async () => (await store.get(handle.id))?.status === 'running');
    const seen: TaskContext[] = [];
    const b = await node(store, (ctx) => (seen.push(ctx), 'taken over'), { durability: { nodeId: 'node-b' } });
    store.silenced.add('node-a'); // node A stalls: its lease is not renewed
    expect(await b.attach(handle.id).result).toBe('taken over');
    expect(seen[0]).toMatchObject({ recoveries: 1, attempt: 2 });
    expect((await store.get(handle.id))?.recoveries).toBe(1);
  });

  it('a task whose node keeps dying is dead-lettered after maxRecoveries, not run forever', async () => {
    const store = new FlakyStore();
    const nodes: UnifiedOrchestrator[] = [];
    const handle = await (
      await node(store, () => new Promise(() => {}), { durability: { nodeId: 'n0', maxRecoveries: 2 } }, 1)
    ).enqueue({ type: 'poison', requires: ['work'] });
    store.silenced.add('n0');
    for (let i = 1; i <= 3; i++) {
      // Each node takes the run over and then "dies" (its lease is never renewed again).
      const n = await node(
        store,
        () => new Promise(() => {}),
        { durability: { nodeId: `n${i}`, maxRecoveries: 2 } },
        1,
      );
      nodes.push(n);
      await eventually(async () => {
        const run = await store.get(handle.id);
        return run?.owner === `n${i}` || run?.status === 'dead-lettered';
      });
      store.silenced.add(`n${i}`);
      if ((await store.get(handle.id))?.status === 'dead-lettered') break;
    }
    const observer = await node(store, () => 'x', { pools: [] });
    await expect(observer.attach(handle.id).result).rejects.toMatchObject({ code: 'TASK_DEAD_LETTERED' });
    expect((await store.get(handle.id))?.recoveries).toBeLessThanOrEqual(2);
  });

  it('a node restarted under the same name takes back only its own runs, once, and not runs given back', async () => {
    const store = new MemoryStore();
    await store.open();
    const given = { id: 'given-back', type: 't', tenantId: null, idempotencyKey: null, createdAt: Date.now() };
    const task = {
      requires: ['work'],
      prefers: [],
      priority: 0,
      payload: null,
      timeoutMs: null,
      deadlineAt: null,
      maxAttempts: 1,
      affinityKey: null,
    };
    await store.insert('gone', [{ ...given, task }]);
    await store.leave('gone'); // unowned, as a clean stop leaves it
    await store.insert('stable', [{ ...given, id: 'orphan', task }]); // held by the previous process named `stable`
    await store.heartbeat('stable', 60_000); // whose lease has not even run out
    const seen: TaskContext[] = [];
    const o = await node(store, (ctx) => (seen.push(ctx), ctx.taskId), { durability: { nodeId: 'stable' } });
    expect(await o.attach('orphan').result).toBe('orphan');
    expect(await o.attach('given-back').result).toBe('given-back');
    expect(seen.map((c) => [c.taskId, c.recoveries]).sort()).toEqual([
      ['given-back', 0],
      ['orphan', 1],
    ]);
    expect((await store.get('orphan'))?.recoveries).toBe(1);
    expect((await store.get('given-back'))?.recoveries).toBe(0);
  });

  it('runs.cancel() from another node stops the attempt where it runs, and every waiter sees the cancel', async () => {
    const store = new MemoryStore();
    const aborted = deferred<unknown>();
    const a = await node(store, (ctx) => {
      ctx.signal.addEventListener('abort', () => aborted.resolve(ctx.signal.reason));
      return new Promise(() => {}); // runs until aborted
    });
    const handle = await a.enqueue({ type: 't', requires: ['work'] });
    await eventually(async () => (await store.get(handle.id))?.status === 'running');
    const b = await node(store, () => 'x', { pools: [] });
    const followed = b.attach(handle.id);
    expect(await b.runs.cancel(handle.id, { tenantId: 'other' })).toBe(false); // another tenant's: unknown
    expect(await b.runs.cancel(handle.id, { reason: 'the customer withdrew' })).toBe(true);
    expect(String((await aborted.promise) as Error)).toMatch(/ended elsewhere/);
    // The caller on A and the follower on B both get the store's end: cancelled, with the reason given on B.
    await expect(handle.result).rejects.toMatchObject({ code: 'TASK_CANCELLED', message: /customer withdrew/ });
    await expect(followed.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
    expect(await b.runs.cancel(handle.id)).toBe(false); // already ended
    const kinds = (await store.events(handle.id)).map((e) => e.kind);
    expect(kinds.filter((k) => k === 'cancelled')).toHaveLength(1);
  });

  it('without a store, attach() and runs say what to configure', async () => {
    const o = new UnifiedOrchestrator({ metrics: false });
    await o.start();
    try {
      expect(() => o.attach('x')).toThrow(ValidationError);
      await expect(o.runs.list()).rejects.toThrow(/configure a `store`/);
    } finally {
      await o.stop();
    }
  });
});
