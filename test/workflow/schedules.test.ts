/**
 * Schedules (src/workflow/scheduler.ts) and delayed tasks (`delayMs` / `runAt`), through the orchestrator: each tick
 * of a schedule starts its run once however many nodes share the store, missed ticks follow the schedule's policy,
 * and a delayed task starts no earlier than asked, here or (with a store) on any node.
 */
import { describe, expect, it } from 'vitest';
import {
  MemoryStore,
  TaskCancelledError,
  TaskTimeoutError,
  UnifiedOrchestrator,
  ValidationError,
  type TaskContext,
} from '../../src/index.js';
import { durableNodes } from '../store/durable-nodes.js';
import { eventually, wait } from '../support/agents.js';

const node = durableNodes({ metrics: false });

describe('schedules', () => {
  it('starts each tick once across two nodes sharing a store, under the tick run id', async () => {
    const store = new MemoryStore();
    const ran: string[] = [];
    const fired: string[] = [];
    const nodes = await Promise.all([node(store, () => 'ok'), node(store, () => 'ok')]);
    for (const o of nodes) {
      o.workflow('tick', {}, async (run) => {
        ran.push(run.id);
        return run.step('work', () => run.id);
      });
      o.on('schedule:fired', (e) => fired.push(e.runId));
      o.schedule('every-second', { everyMs: 1_000 }, { workflow: 'tick', input: { n: 1 } });
    }
    await eventually(() => new Set(ran).size >= 2, 6_000);
    const ids = [...new Set(ran)].sort();
    expect(ids.every((id) => /^schedule:every-second:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/.test(id))).toBe(true);
    // One run per tick, whichever node got there first (both report the tick as started: it is the same run).
    for (const id of ids) {
      await eventually(async () => (await store.get(id))?.status === 'completed');
      expect(ran.filter((r) => r === id)).toHaveLength(1);
    }
    const ticks = ids.map((id) => Date.parse(id.slice('schedule:every-second:'.length)));
    expect(ticks[1]! - ticks[0]!).toBe(1_000);
    expect(fired.length).toBeGreaterThanOrEqual(ids.length);
    expect(nodes[0].schedules()).toEqual([
      expect.objectContaining({ name: 'every-second', fired: expect.any(Number) }),
    ]);
  });

  it("fires only the latest missed tick with 'skip', and the latest n with catchUp, reporting the rest", async () => {
    const store = new MemoryStore();
    await store.open();
    const now = Date.now();
    await store.recordTick('skipper', now - 10_500);
    await store.recordTick('catcher', now - 10_500);
    const o = await node(store, () => 'ok');
    const skipped: Array<{ schedule: string; count: number }> = [];
    o.on('schedule:skipped', (e) => skipped.push({ schedule: e.schedule, count: e.count }));
    o.workflow('noop', {}, async () => 'done');
    o.schedule('skipper', { everyMs: 1_000, missed: 'skip' }, { workflow: 'noop' });
    o.schedule('catcher', { everyMs: 1_000, missed: { catchUp: 3 } }, { workflow: 'noop' });
    await eventually(() => skipped.length === 2);
    const runsOf = async (name: string): Promise<string[]> =>
      (await store.list({ type: 'workflow:noop', limit: 1000 })).runs
        .map((r) => r.id)
        .filter((id) => id.startsWith(`schedule:${name}:`));
    expect(await runsOf('skipper')).toHaveLength(1);
    expect(await runsOf('catcher')).toHaveLength(3);
    const counts = Object.fromEntries(skipped.map((s) => [s.schedule, s.count]));
    expect(counts['skipper']! + 1).toBe(counts['catcher']! + 3); // the same ticks were due to both
    expect(await store.lastTick('skipper')).toBeGreaterThan(now - 1_000);
  });

  it('submits a durable task at each tick, under the tick id', async () => {
    const store = new MemoryStore();
    const seen: string[] = [];
    const o = await node(store, (ctx: TaskContext) => {
      seen.push(ctx.taskId);
      return 'pong';
    });
    o.schedule('ping', { everyMs: 1_000 }, { task: { type: 'ping', requires: ['work'] } });
    await eventually(() => seen.length >= 1, 4_000);
    expect(seen[0]).toMatch(/^schedule:ping:/);
    await eventually(async () => (await store.get(seen[0]!))?.status === 'completed');
  });

  it('refuses bad schedules with ValidationError, and without a store only before start()', async () => {
    const o = new UnifiedOrchestrator({ metrics: false });
    o.workflow('w', {}, async () => 1);
    o.schedule('a', { everyMs: 1_000 }, { workflow: 'w' });
    expect(() => o.schedule('a', { everyMs: 1_000 }, { workflow: 'w' })).toThrow(ValidationError);
    expect(() => o.schedule('b', { everyMs: 10 }, { workflow: 'w' })).toThrow(ValidationError);
    expect(() => o.schedule('c', { cron: 'not a cron' }, { workflow: 'w' })).toThrow(ValidationError);
    expect(() => o.schedule('d', { everyMs: 1_000 }, {} as never)).toThrow(ValidationError);
    expect(() => o.schedule('', { everyMs: 1_000 }, { workflow: 'w' })).toThrow(ValidationError);
    await o.start();
    try {
      expect(o.unschedule('a')).toBe(true);
      expect(o.unschedule('a')).toBe(false);
    } finally {
      await o.stop();
    }
    const late = new UnifiedOrchestrator({ metrics: false });
    await late.start();
    try {
      expect(() => late.schedule('x', { everyMs: 1_000 }, { workflow: 'w' })).toThrow(ValidationError);
    } finally {
      await late.stop();
    }
  });
});

describe('delayed tasks', () => {
  const plain = async (execute: (ctx: TaskContext) => unknown): Promise<UnifiedOrchestrator> => {
    const o = new UnifiedOrchestrator({
      metrics: false,
      pools: [{ role: 'w', capabilities: ['work'], minAgents: 1, maxAgents: 1, create: () => ({ execute }) }],
    });
    await o.start();
    return o;
  };

  it('starts a task no earlier than its delayMs or runAt (in memory)', async () => {
    const started: number[] = [];
    const o = await plain(() => started.push(Date.now()));
    try {
      const t0 = Date.now();
      await o.submit({ type: 't', requires: ['work'], delayMs: 150 });
      expect(started[0]! - t0).toBeGreaterThanOrEqual(149);
      const at = Date.now() + 120;
      await o.submit({ type: 't', requires: ['work'], runAt: new Date(at) });
      expect(started[1]!).toBeGreaterThanOrEqual(at - 1);
      expect(o.stats().backingOff).toBe(0);
    } finally {
      await o.stop();
    }
  });

  it('cancels a delayed task before it starts, and times it out when its deadline comes first', async () => {
    let runs = 0;
    const o = await plain(() => runs++);
    try {
      const handle = o.delegate({ type: 't', requires: ['work'], delayMs: 5_000 });
      expect(handle.cancel('no longer needed')).toBe(true);
      await expect(handle.result).rejects.toBeInstanceOf(TaskCancelledError);
      await expect(o.submit({ type: 't', requires: ['work'], delayMs: 5_000, deadlineMs: 50 })).rejects.toBeInstanceOf(
        TaskTimeoutError,
      );
      await wait(20);
      expect(runs).toBe(0);
    } finally {
      await o.stop();
    }
  });

  it('refuses a bad delay with ValidationError', async () => {
    const o = await plain(() => 1);
    try {
      for (const bad of [
        { delayMs: -1 },
        { delayMs: Number.NaN },
        { delayMs: '5' },
        { runAt: 'tomorrow' },
        { runAt: new Date('nope') },
        { delayMs: 1, runAt: Date.now() },
      ]) {
        expect(() => o.delegate({ type: 't', requires: ['work'], ...(bad as object) })).toThrow(ValidationError);
      }
    } finally {
      await o.stop();
    }
  });

  it('with a store, waits unowned in the store and runs on any node when due; cancel reaches it there', async () => {
    const store = new MemoryStore();
    const ranOn: string[] = [];
    const a = await node(store, () => 'never', {}, 1);
    const t0 = Date.now();
    // `a` has no agent holding `other`: only `b` can run it, once due.
    const handle = a.delegate({ type: 't', requires: ['other'], delayMs: 300 });
    const id = await handle.stored!;
    const stored = await store.get(id);
    expect(stored).toMatchObject({ owner: null, status: 'queued' });
    expect(stored!.notBefore).toBeGreaterThanOrEqual(t0 + 300);
    await node(store, () => 'unused', {}, 1);
    const b = new UnifiedOrchestrator({
      metrics: false,
      store,
      durability: { claimIntervalMs: 30, leaseMs: 600, heartbeatMs: 150, pollMs: 30 },
      pools: [
        {
          role: 'o',
          capabilities: ['other'],
          minAgents: 1,
          maxAgents: 1,
          create: () => ({ execute: () => (ranOn.push('b'), `ran after ${Date.now() - t0}`) }),
        },
      ],
    });
    await b.start();
    try {
      const result = (await handle.result) as string;
      expect(Number(result.split(' ').pop())).toBeGreaterThanOrEqual(299);
      expect(ranOn).toEqual(['b']);
      const later = a.delegate({ type: 't', requires: ['other'], delayMs: 10_000 });
      const laterId = await later.stored!;
      expect(later.cancel('changed my mind')).toBe(true);
      await expect(later.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
      expect((await store.get(laterId))?.status).toBe('cancelled');
    } finally {
      await b.stop();
    }
  });
});
