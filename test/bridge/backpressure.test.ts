/**
 * Backpressure on hand-offs (issue 16): a node's hand-offs waiting for a result count against its `maxQueueSize`
 * with its own waiting tasks, and a task stream's backlog against RedisBridge's `maxStreamBacklog`; past either bound,
 * `submit` rejects with QUEUE_FULL and takes nothing, as it does for local work. A slow (gated) worker B and producers
 * on a real redis-server; every accepted task settles exactly once and runs exactly once.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  MemoryBridge,
  MemoryHub,
  QueueFullError,
  RedisBridge,
  UnifiedOrchestrator,
  type RedisBridgeOptions,
} from 'unified-orchestrator';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { eventually, FAST, Fleet, runLog, SECRET, servingAgent } from './helpers.js';

const fleet = new Fleet();
/** Fast beats, but no node drops out or has its entries reclaimed while a loaded machine runs a burst of submits. */
const TIMINGS = { ...FAST, nodeTtlMs: 5_000, reclaimIdleMs: 5_000 } as const;
afterEach(async () => {
  await fleet.stopAll();
});

/** Splits submitted ids into those refused at submit time (rejected within microtasks) and those accepted. */
async function classify(o: UnifiedOrchestrator, n: number, prefix: string) {
  const refused: unknown[] = [];
  const accepted: Array<{ id: string; result: Promise<unknown> }> = [];
  const pending: Array<{ id: string; result: Promise<unknown> }> = [];
  for (let i = 0; i < n; i++) {
    const id = `${prefix}-${i}`;
    pending.push({ id, result: o.submit({ type: 't', requires: ['x'], payload: { op: 'gate', id } }) });
  }
  const state = await Promise.all(
    pending.map(({ result }) =>
      Promise.race([
        result.then(
          () => 'resolved',
          (e: unknown) => e,
        ),
        Promise.resolve()
          .then(() => Promise.resolve())
          .then(() => 'pending'),
      ]),
    ),
  );
  state.forEach((s, i) => {
    if (s === 'pending') accepted.push(pending[i]!);
    else refused.push(s);
  });
  return { refused, accepted };
}

describe('backpressure in memory', () => {
  it('a node with maxQueueSize 3 hands off 3 tasks and refuses the next with QUEUE_FULL', async () => {
    const hub = new MemoryHub();
    const log = runLog();
    const b = fleet.server(new MemoryBridge({ hub, nodeId: 'B' }), 'B', log);
    const a = fleet.producer(new MemoryBridge({ hub, nodeId: 'A' }), { maxQueueSize: 3 });
    await b.start();
    await a.start();
    const { refused, accepted } = await classify(a, 5, 'm');
    expect(accepted).toHaveLength(3);
    expect(refused).toHaveLength(2);
    for (const e of refused) expect(e).toBeInstanceOf(QueueFullError);
    expect(() => a.delegate({ type: 't', requires: ['x'], payload: { op: 'gate', id: 'd' } })).toThrow(QueueFullError);
    log.open();
    await Promise.all(accepted.map((t) => t.result));
    expect(log.runs.sort()).toEqual(['m-0', 'm-1', 'm-2']);
  });
});

describe.skipIf(REDIS_SERVER.skip)('backpressure on a real Redis', () => {
  let redis: TestRedis;
  let admin: Redis;
  beforeAll(async () => {
    redis = await startRedis();
    admin = new Redis(redis.url, { lazyConnect: true });
    await admin.connect();
  }, 30_000);
  afterAll(async () => {
    admin?.disconnect();
    if (redis?.owned) await redis.stop();
  });

  const bridge = (ns: string, nodeId: string, extra: Partial<RedisBridgeOptions> = {}): RedisBridge =>
    new RedisBridge({ url: redis.url, secret: SECRET, namespace: ns, nodeId, ...TIMINGS, ...extra });

  /** A gated worker B serving `x`, started, and seen by `producers`. */
  async function worker(ns: string, log: ReturnType<typeof runLog>, producers: UnifiedOrchestrator[]) {
    const b = fleet.server(bridge(ns, 'B'), 'B', log);
    await b.start();
    for (const p of producers) await p.start();
    for (const p of producers) await eventually(() => p.bridge.canAnyServe(['x']), 5_000, 'the producer sees B');
    return b;
  }

  /** Tasks in the stream of class `x`, whatever their state. */
  async function streamTasks(ns: string): Promise<number> {
    const entries = (await admin.xrange(`${ns}:tasks:x`, '-', '+')) as Array<[string, string[]]>;
    let tasks = 0;
    for (const [, fields] of entries) tasks += (fields[fields.indexOf('m') + 1] ?? '').split('"taskId":').length - 1;
    return tasks;
  }

  it('a producer with maxQueueSize 100 accepts 100 hand-offs while the worker is slow, refuses the rest with QUEUE_FULL, and each accepted one runs and settles once', async () => {
    const ns = namespace();
    const log = runLog();
    const a = fleet.producer(bridge(ns, 'A'), { maxQueueSize: 100 });
    await worker(ns, log, [a]);
    const { refused, accepted } = await classify(a, 1_000, 'n');
    expect(accepted).toHaveLength(100);
    expect(refused).toHaveLength(900);
    for (const e of refused) {
      expect(e).toBeInstanceOf(QueueFullError);
      expect((e as QueueFullError).code).toBe('QUEUE_FULL');
      expect((e as QueueFullError).limit).toBe('maxQueueSize');
      expect((e as Error).message).toMatch(/100 hand-offs waiting for a result.*raise maxQueueSize/);
    }
    let thrown: unknown;
    try {
      a.delegate({ type: 't', requires: ['x'], payload: { op: 'gate', id: 'd' } });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(QueueFullError);
    expect(a.bridge.stats().handedOff).toBe(100);
    // Nothing beyond the bound reached Redis either.
    await eventually(async () => (await streamTasks(ns)) === 100 || log.runs.length === 100, 5_000, '100 sent');
    expect(await streamTasks(ns)).toBeLessThanOrEqual(100);

    let settled = 0;
    const outcomes = accepted.map((t) => t.result.then(() => settled++));
    log.open();
    await Promise.all(outcomes);
    expect(settled).toBe(100);
    expect(new Set(log.runs).size).toBe(100);
    expect(log.runs).toHaveLength(100);
    expect(log.runs.every((id) => accepted.some((t) => t.id === id))).toBe(true);
    // The bound frees as results come back.
    await expect(a.submit({ type: 't', requires: ['x'], payload: { op: 'echo', id: 'after' } })).resolves.toMatchObject(
      {
        id: 'after',
      },
    );
  }, 30_000);

  it('with handOffAbove, hand-offs and the waiting tasks together stay within maxQueueSize', async () => {
    const ns = namespace();
    const log = runLog();
    const localLog = runLog();
    // A serves `x` itself on one agent of one slot, and hands off above 10 waiting tasks.
    const a = fleet.add(
      new UnifiedOrchestrator({
        pressure: false,
        maxQueueSize: 50,
        handOffAbove: 10,
        bridge: bridge(ns, 'A'),
        pools: [
          {
            role: 'w',
            capabilities: ['x'],
            minAgents: 1,
            maxAgents: 1,
            concurrency: 1,
            create: () => servingAgent('A', localLog),
          },
        ],
      }),
    );
    await worker(ns, log, [a]);
    const { refused, accepted } = await classify(a, 500, 'o');
    const waiting = a.stats().waiting;
    const handedOff = a.bridge.stats().handedOff;
    // One task runs on A, 10 wait there, then hand-offs until both together reach the bound.
    expect(waiting).toBe(10);
    expect(handedOff).toBe(40);
    expect(accepted).toHaveLength(51);
    expect(refused.length).toBe(500 - accepted.length);
    for (const e of refused) expect(e).toBeInstanceOf(QueueFullError);
    localLog.open();
    log.open();
    const settled = await Promise.allSettled(accepted.map((t) => t.result));
    expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
    expect(log.runs.length + localLog.runs.length).toBe(accepted.length);
    expect(new Set([...log.runs, ...localLog.runs]).size).toBe(accepted.length);
  }, 30_000);

  it('past maxStreamBacklog entries in the stream, every producer refuses with QUEUE_FULL; once it drains, they accept again', async () => {
    const ns = namespace();
    const log = runLog();
    const a = fleet.producer(bridge(ns, 'A', { maxStreamBacklog: 4 }));
    const c = fleet.producer(bridge(ns, 'C', { maxStreamBacklog: 4 }));
    await worker(ns, log, [a, c]);
    // One turn's hand-offs share entries of up to 16 tasks: 64 tasks in one turn are 4 entries, the bound.
    const first = await classify(a, 70, 'p');
    expect(first.accepted).toHaveLength(64);
    expect(first.refused).toHaveLength(6);
    for (const e of first.refused) {
      expect(e).toBeInstanceOf(QueueFullError);
      expect((e as QueueFullError).limit).toBe('maxStreamBacklog');
      expect((e as Error).message).toMatch(/raise maxStreamBacklog/);
    }
    // C added nothing: it learns of the backlog from the stream's length on its heartbeat.
    await eventually(async () => (await admin.xlen(`${ns}:tasks:x`)) === 4, 5_000, '4 entries in the stream');
    await eventually(() => c.bridge.refusal?.(['x']) !== undefined, 5_000, 'C sees the backlog');
    const second = await classify(c, 5, 'q');
    expect(second.accepted).toHaveLength(0);
    expect(second.refused).toHaveLength(5);
    // A's own count holds across turns until its next read: one task per turn is one entry each.
    expect(await admin.xlen(`${ns}:tasks:x`)).toBe(4);
    expect(a.bridge.stats().handedOff).toBe(64);

    log.open();
    const settled = await Promise.allSettled(first.accepted.map((t) => t.result));
    expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
    expect(log.runs).toHaveLength(64);
    expect(new Set(log.runs).size).toBe(64);
    await eventually(() => c.bridge.refusal?.(['x']) === undefined, 5_000, 'C sees the stream drained');
    await expect(c.submit({ type: 't', requires: ['x'], payload: { op: 'echo', id: 'r' } })).resolves.toMatchObject({
      id: 'r',
    });
  }, 30_000);

  it('counts one entry per turn for hand-offs in separate turns', async () => {
    const ns = namespace();
    const log = runLog();
    const a = fleet.producer(
      bridge(ns, 'A', { maxStreamBacklog: 3, heartbeatMs: 60_000, nodeTtlMs: 120_000, reclaimIdleMs: 120_000 }),
    );
    await worker(ns, log, [a]);
    const outcomes: Array<Promise<unknown>> = [];
    let refused = 0;
    for (let i = 0; i < 5; i++) {
      const r = await classify(a, 1, `s${i}`);
      refused += r.refused.length;
      outcomes.push(...r.accepted.map((t) => t.result));
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(outcomes).toHaveLength(3);
    expect(refused).toBe(2);
    log.open();
    await Promise.all(outcomes);
    expect(log.runs).toHaveLength(3);
  }, 30_000);
});
