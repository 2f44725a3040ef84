/**
 * Progress and partial results: `ctx.progress(value)` on the agent's side, `handle.progress` (an async iterable
 * with a bounded buffer per iterator) and the `task:progress` event on the caller's side. Real timers throughout:
 * the ends by timeout and deadline are timing under test.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  MemoryBridge,
  MemoryHub,
  ProgressFeed,
  UnifiedOrchestrator,
  ValidationError,
  type ProgressUpdate,
  type TaskContext,
  type TaskHandle,
} from 'unified-orchestrator';
import { TypedEmitter } from '../../src/util/typed-emitter.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { manualAgent, rejectionOf, startEach, tick, until, type Call } from './helpers.js';

const start = startEach();

/** Every update of `handle.progress` until it ends (fails the test if it does not end within `ms`). */
async function collect(handle: TaskHandle, ms = 2_000): Promise<ProgressUpdate[]> {
  const seen: ProgressUpdate[] = [];
  const done = (async () => {
    for await (const update of handle.progress) seen.push(update);
  })();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    done,
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('progress did not end')), ms))),
  ]);
  clearTimeout(timer);
  return seen;
}

/** One agent `a` with capability `x` whose calls the test settles by hand. */
async function manual(): Promise<{ o: UnifiedOrchestrator; calls: Call[] }> {
  const o = await start();
  const calls: Call[] = [];
  o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
  return { o, calls };
}

describe('ctx.progress and handle.progress', () => {
  it('yields every update in order with its task id, attempt and time, then ends when the task completes', async () => {
    const { o, calls } = await manual();
    const h = o.delegate({ type: 'stream', requires: ['x'] });
    const reading = collect(h);
    const ctx = calls[0]!.ctx;
    const before = Date.now();
    for (let i = 0; i < 5; i++) {
      expect(ctx.progress({ tokens: i })).toBe(true);
      await tick(); // the reader keeps up: nothing is dropped
    }
    calls[0]!.resolve('done');
    const seen = await reading;
    expect(seen.map((u) => u.value)).toEqual([0, 1, 2, 3, 4].map((tokens) => ({ tokens })));
    for (const u of seen) {
      expect(u).toMatchObject({ taskId: h.id, attempt: 1 });
      expect(u.at).toBeGreaterThanOrEqual(before);
      expect(u.dropped).toBeUndefined();
    }
    expect(await h.result).toBe('done');
    expect(h.progress.ended).toBe(true);
    expect(h.progress.latest?.value).toEqual({ tokens: 4 });
  });

  it('may be destructured, and reports updates made synchronously inside execute to a reader that starts later', async () => {
    const o = await start();
    o.registerAgent(
      {
        execute: ({ progress }: TaskContext) => {
          progress('parsed');
          progress('planned');
          return new Promise((resolve) => setTimeout(() => resolve('ok'), 20));
        },
      },
      { id: 'a', capabilities: ['x'] },
    );
    const h = o.delegate({ type: 't', requires: ['x'] });
    // Both updates were reported inside delegate(): a reader starting now gets the latest, then the end.
    const seen = await collect(h);
    expect(seen.map((u) => u.value)).toEqual(['planned']);
  });

  it('ends the iteration at every terminal state: failed, cancelled, attempt timeout, deadline, dead-lettered', async () => {
    const o = await start({ retry: { baseDelayMs: 1, maxDelayMs: 1 } });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'], concurrency: 10 });
    const cases: Array<[string, () => TaskHandle, (call: Call, h: TaskHandle) => void, string]> = [
      ['failed', () => o.delegate({ type: 't', requires: ['x'] }), (c) => c.reject(new Error('no')), 'Error'],
      ['cancelled', () => o.delegate({ type: 't', requires: ['x'] }), (_, h) => h.cancel('stop'), 'TASK_CANCELLED'],
      ['attempt timeout', () => o.delegate({ type: 't', requires: ['x'], timeoutMs: 30 }), () => {}, 'TASK_TIMEOUT'],
      ['deadline', () => o.delegate({ type: 't', requires: ['x'], deadlineMs: 30 }), () => {}, 'TASK_TIMEOUT'],
      [
        'dead-lettered',
        () => o.delegate({ type: 't', requires: ['x'], maxAttempts: 2 }),
        (c) => c.reject(new Error('first')),
        'TASK_DEAD_LETTERED',
      ],
    ];
    for (const [name, make, end, code] of cases) {
      const h = make();
      const reading = collect(h);
      const call = calls.at(-1)!;
      call.ctx.progress(`${name}: started`);
      end(call, h);
      if (name === 'dead-lettered') {
        await until(() => calls.at(-1) !== call);
        expect(calls.at(-1)!.ctx.progress('second attempt')).toBe(true);
        calls.at(-1)!.reject(new Error('second'));
      }
      const seen = await reading;
      expect(seen[0]!.value, name).toBe(`${name}: started`);
      if (name === 'dead-lettered') expect(seen.map((u) => u.attempt)).toEqual([1, 2]);
      const error = (await rejectionOf(h.result)) as { code?: string; name: string };
      expect(error.code ?? error.name, name).toBe(code);
      expect(h.progress.ended, name).toBe(true);
    }
  });

  it('drops reports made after the attempt ended (returns false, no event), and after a timeout while a retry runs', async () => {
    const o = await start({ retry: { baseDelayMs: 1, maxDelayMs: 1 } });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'], concurrency: 2 });
    const events: unknown[] = [];
    o.on('task:progress', (e) => events.push(e.value));
    const h = o.delegate({ type: 't', requires: ['x'], timeoutMs: 30, maxAttempts: 2 });
    const first = calls[0]!.ctx;
    await until(() => calls.length === 2); // the first attempt timed out, the second runs
    expect(first.progress('late from attempt 1')).toBe(false);
    expect(calls[1]!.ctx.progress('from attempt 2')).toBe(true);
    calls[1]!.resolve('ok');
    await h.result;
    expect(calls[1]!.ctx.progress('after the end')).toBe(false);
    expect(events).toEqual(['from attempt 2']);
    expect(h.progress.latest).toMatchObject({ attempt: 2, value: 'from attempt 2' });
  });

  it('refuses a value that cannot cross a bridge with ValidationError; a hostile value never crashes the engine', async () => {
    const { o, calls } = await manual();
    const errors: unknown[] = [];
    o.on('listener:error', (e) => errors.push(e.error));
    o.on('task:progress', () => {
      throw new Error('listener fails');
    });
    const h = o.delegate({ type: 't', requires: ['x'] });
    const ctx = calls[0]!.ctx;
    for (const bad of [undefined, () => 1, Symbol('s'), 10n]) {
      let error: unknown;
      try {
        ctx.progress(bad);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ code: 'VALIDATION_ERROR', field: 'value' });
    }
    const hostile = new Proxy(
      {},
      {
        get: () => {
          throw new Error('trap');
        },
        ownKeys: () => {
          throw new Error('trap');
        },
      },
    );
    const unlisten = h.progress.listen(() => {
      throw new Error('a listener of the stream fails');
    });
    expect(ctx.progress(hostile)).toBe(true);
    expect(ctx.progress(null)).toBe(true);
    unlisten();
    expect(errors).toHaveLength(2); // the event listener, once per update; the stream's listener is ignored
    expect(h.progress.latest?.value).toBeNull();
    calls[0]!.resolve('fine');
    await expect(h.result).resolves.toBe('fine');
  });

  it('keeps a slow reader bounded: the newest `buffer` updates, the next one yielded says how many were dropped', async () => {
    const { o, calls } = await manual();
    const h = o.delegate({ type: 't', requires: ['x'] });
    const slow = h.progress.iterate({ buffer: 10 });
    const fast = h.progress[Symbol.asyncIterator]();
    const fastSeen: number[] = [];
    const fastReading = (async () => {
      for (let r = await fast.next(); !r.done; r = await fast.next()) fastSeen.push(r.value.value as number);
    })();
    const ctx = calls[0]!.ctx;
    for (let i = 0; i < 1_000; i++) {
      ctx.progress(i);
      if (i % 10 === 9) await tick(); // the fast reader keeps up with its default buffer of 64
    }
    calls[0]!.resolve('ok');
    const slowSeen: ProgressUpdate[] = [];
    for (let r = await slow.next(); !r.done; r = await slow.next()) slowSeen.push(r.value);
    await fastReading;
    // The slow reader took nothing while 1,000 came: it holds the newest 10, the first of them flagged.
    expect(slowSeen.map((u) => u.value)).toEqual(Array.from({ length: 10 }, (_, i) => 990 + i));
    expect(slowSeen[0]!.dropped).toBe(990);
    expect(slowSeen.slice(1).every((u) => u.dropped === undefined)).toBe(true);
    expect(slow.dropped).toBe(990);
    expect(fastSeen).toEqual(Array.from({ length: 1_000 }, (_, i) => i));
    expect(fast.dropped).toBe(0);
    expect(() => h.progress.iterate({ buffer: 0 })).toThrow(ValidationError);
  });

  it('gives several iterators every update after they started, and a late one the latest first; break releases', async () => {
    const { o, calls } = await manual();
    const h = o.delegate({ type: 't', requires: ['x'] });
    const ctx = calls[0]!.ctx;
    const a = collect(h);
    ctx.progress(1);
    await tick();
    ctx.progress(2);
    const b = collect(h); // starts after 2: gets 2, then 3
    await tick();
    const broke: number[] = [];
    const c = (async () => {
      for await (const u of h.progress) {
        broke.push(u.value as number);
        break;
      }
    })();
    await c;
    ctx.progress(3);
    calls[0]!.resolve('ok');
    expect((await a).map((u) => u.value)).toEqual([1, 2, 3]);
    expect((await b).map((u) => u.value)).toEqual([2, 3]);
    expect(broke).toEqual([2]);
    // After the end: the last update, then done.
    expect((await collect(h)).map((u) => u.value)).toEqual([3]);
  });

  it('emits task:progress with the task type, only while someone listens', async () => {
    const emit = vi.spyOn(TypedEmitter.prototype, 'emit');
    try {
      const { o, calls } = await manual();
      const progressEmits = (): number => emit.mock.calls.filter(([name]) => name === 'task:progress').length;
      const h = o.delegate({ type: 'summarise', requires: ['x'] });
      calls[0]!.ctx.progress('unheard');
      expect(progressEmits()).toBe(0); // nobody listens: no payload built, nothing emitted
      const heard: unknown[] = [];
      const listener = (e: unknown): number => heard.push(e);
      o.on('task:progress', listener);
      calls[0]!.ctx.progress('heard');
      o.off('task:progress', listener);
      calls[0]!.ctx.progress('unheard again');
      expect(progressEmits()).toBe(1);
      expect(heard).toEqual([{ taskId: h.id, type: 'summarise', attempt: 1, value: 'heard', at: expect.any(Number) }]);
      calls[0]!.resolve('ok');
      await h.result;
    } finally {
      emit.mockRestore();
    }
  });

  it('a task whose agent never reports: its progress ends with no update; submit() builds no feed', async () => {
    const o = await start();
    o.registerAgent({ execute: () => 'ok' }, { id: 'a', capabilities: ['x'] });
    const h = o.delegate({ type: 't', requires: ['x'] });
    expect(await h.result).toBe('ok');
    expect(h.progress.latest).toBeUndefined();
    expect(await collect(h)).toEqual([]);
    expect(await o.submit({ type: 't', requires: ['x'] })).toBe('ok');
  });

  it('a duplicate (same idempotencyKey) follows the first task’s progress; one answered from the cache has none', async () => {
    const { o, calls } = await manual();
    const first = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'k' });
    const dup = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'k' });
    expect(dup.id).toBe(first.id);
    const reading = collect(dup);
    calls[0]!.ctx.progress('shared');
    calls[0]!.resolve('ok');
    expect((await reading).map((u) => u.value)).toEqual(['shared']);
    const cached = o.delegate({ type: 't', requires: ['x'], idempotencyKey: 'k' });
    expect(await cached.result).toBe('ok');
    expect(await collect(cached)).toEqual([]);
  });

  it('a durable task reports the attempts run on this node, from delegate() and from attach()', async () => {
    const store = new MemoryStore();
    const calls: Call[] = [];
    const o = await start({
      pools: [{ role: 'w', capabilities: ['x'], minAgents: 1, maxAgents: 1, create: () => manualAgent(calls) }],
      store,
      durability: { leaseMs: 600, heartbeatMs: 150, claimIntervalMs: 50, pollMs: 50 },
    });
    const h = o.delegate({ type: 't', requires: ['x'] });
    const early = collect(h); // read before the run is stored and accepted
    await until(() => calls.length === 1);
    const attached = collect(o.attach(h.id));
    calls[0]!.ctx.progress('step 1');
    await tick();
    calls[0]!.ctx.progress('step 2');
    await tick();
    calls[0]!.resolve('ok');
    expect(await h.result).toBe('ok');
    expect((await early).map((u) => u.value)).toEqual(['step 1', 'step 2']);
    expect((await attached).map((u) => u.value)).toEqual(['step 1', 'step 2']);
  });

  it('a handed-off task has a progress that ends with its result (updates come from the bridge transport)', async () => {
    const hub = new MemoryHub();
    const b = new UnifiedOrchestrator({
      bridge: new MemoryBridge({ hub, nodeId: 'B' }),
      pools: [{ role: 'w', capabilities: ['x'], minAgents: 1, create: () => ({ execute: () => 'remote ok' }) }],
    });
    await b.start();
    try {
      const a = await start({ bridge: new MemoryBridge({ hub, nodeId: 'A' }) });
      const h = a.delegate({ type: 't', requires: ['x'] });
      const seen = collect(h);
      expect(await h.result).toBe('remote ok');
      expect(await seen).toEqual([]);
      expect(h.progress.ended).toBe(true);
    } finally {
      await b.stop({ drain: false, timeoutMs: 1_000 });
    }
  });
});

describe('ProgressFeed', () => {
  afterEach(() => vi.useRealTimers());

  it('pushes to iterators and listeners, refuses pushes after end, and ends waiting readers', async () => {
    const feed = new ProgressFeed();
    const heard: unknown[] = [];
    feed.listen((u) => heard.push(u.value));
    const it = feed.iterate({ buffer: 2 });
    const waiting = it.next();
    expect(feed.push({ taskId: 't', attempt: 1, value: 'a', at: 1 })).toBe(true);
    expect((await waiting).value).toMatchObject({ value: 'a' });
    const pending = it.next();
    feed.end();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(feed.push({ taskId: 't', attempt: 1, value: 'b', at: 2 })).toBe(false);
    expect(heard).toEqual(['a']);
    expect(feed.ended).toBe(true);
    expect(ProgressFeed.none.ended).toBe(true);
    expect(() => feed.listen(42 as never)).toThrow(ValidationError);
  });
});
