/**
 * Fault tests with real processes and a real redis-server: worker nodes are child processes. A node killed with
 * SIGKILL mid-run, and redis-server killed and restarted mid-run: every accepted task still completes, and its
 * submitter sees it settle exactly once with the right result.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OrchestratorStoppedError, RedisBridge, UnifiedOrchestrator } from 'unified-orchestrator';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { startWorkerProcess } from '../support/worker-process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

const SECRET = 'bridge-fault-tests-shared-secret';

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
}, 30_000);
afterAll(async () => {
  if (redis.owned) await redis.stop();
});

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Starts a worker node; resolves once it serves. `ran` collects the task numbers it ran. */
async function worker(ns: string, nodeId: string, ran: number[]): Promise<ChildProcess> {
  const child = await startWorkerProcess(redis.url, ns, nodeId, (line) => {
    if (line.startsWith('ran ')) ran.push(Number(line.slice(4)));
  });
  children.push(child);
  return child;
}

function producer(ns: string): UnifiedOrchestrator {
  return new UnifiedOrchestrator({
    pressure: false,
    bridge: new RedisBridge({
      url: redis.url,
      namespace: ns,
      nodeId: 'producer',
      secret: SECRET,
      heartbeatMs: 50,
      nodeTtlMs: 400,
      reclaimIdleMs: 400,
      blockMs: 100,
    }),
  });
}

async function until(predicate: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Submits `n` jobs and records how each settles; counts any second settlement (there must be none). */
function submitAll(
  p: UnifiedOrchestrator,
  n: number,
  ms: number,
): { all: Promise<void[]>; settled: Map<number, unknown>; twice: () => number } {
  const settled = new Map<number, unknown>();
  let twice = 0;
  const record = (k: number, v: unknown): void => {
    if (settled.has(k)) twice++;
    settled.set(k, v);
  };
  const all = Promise.all(
    Array.from({ length: n }, (_, k) =>
      p.submit<string>({ type: 'job', requires: ['work'], payload: { n: k, ms } }).then(
        (v) => record(k, v),
        (e: unknown) => record(k, e),
      ),
    ),
  );
  return { all, settled, twice: () => twice };
}

/** Suites on a real Redis: skipped without redis-server (the run says so once), failing instead under CI. */
const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('RedisBridge under faults', () => {
  it('a worker node SIGKILLed mid-run: its tasks are reclaimed by the other, every task settles once with its result', async () => {
    const ns = namespace();
    const ranA: number[] = [];
    const ranB: number[] = [];
    const a = await worker(ns, 'worker-a', ranA);
    await worker(ns, 'worker-b', ranB);
    const p = producer(ns);
    await p.start();
    await until(() => p.bridge.canAnyServe(['work']), 5_000);
    const N = 120;
    const run = submitAll(p, N, 30);
    // Kill worker A once it has done some work and holds more.
    await until(() => ranA.length >= 5, 10_000);
    const ranBeforeKill = ranB.length;
    a.kill('SIGKILL');
    await run.all;
    expect(run.twice()).toBe(0);
    expect([...run.settled.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: N }, (_, k) => k));
    for (const [k, v] of run.settled) expect(v).toBe(`done:${k}`);
    // Worker B took over what A held.
    expect(ranB.length).toBeGreaterThan(ranBeforeKill);
    await p.stop();
  }, 60_000);

  it('redis-server killed and restarted mid-run: hand-offs are resent and every task settles once with its result', async () => {
    if (!redis.owned) throw new Error('this test restarts redis-server: run it without REDIS_URL');
    const ns = namespace();
    const ran: number[] = [];
    await worker(ns, 'worker-c', ran);
    const p = producer(ns);
    const states: string[] = [];
    const healthDuringOutage: string[] = [];
    p.on('bridge:state', (s) => {
      states.push(s.status);
      if (s.status === 'degraded') healthDuringOutage.push(p.health().components.bridge.status);
    });
    await p.start();
    await until(() => p.bridge.canAnyServe(['work']), 5_000);
    const N = 80;
    const run = submitAll(p, N, 20);
    await until(() => ran.length >= 5, 10_000);
    await redis.restart();
    await run.all;
    expect(run.twice()).toBe(0);
    expect(run.settled.size).toBe(N);
    for (const [k, v] of run.settled) expect(v).toBe(`done:${k}`);
    // health() showed the bridge degraded while Redis was away, and healthy again after.
    expect(healthDuringOutage).toContain('degraded');
    await until(() => p.health().components.bridge.status === 'healthy', 5_000);
    expect(states.at(-1)).toBe('healthy');
    await p.stop();
  }, 60_000);
});

describeRedis('RedisBridge and stop', () => {
  it('stop({ drain: true }) on a producer waits for the results of the tasks it handed off', async () => {
    const ns = namespace();
    const ran: number[] = [];
    await worker(ns, 'worker-d', ran);
    const p = producer(ns);
    await p.start();
    await until(() => p.bridge.canAnyServe(['work']), 5_000);
    const run = submitAll(p, 20, 50);
    await until(() => ran.length >= 1, 10_000);
    await p.stop({ drain: true, timeoutMs: 10_000 });
    // Every result arrived before stop() resolved: none was rejected as "stopped".
    expect(run.settled.size).toBe(20);
    for (const [k, v] of run.settled) expect(v).toBe(`done:${k}`);
    await run.all;
  }, 60_000);

  it('right after a Redis restart, a producer hands work to the nodes it knew instead of refusing it before they register again', async () => {
    if (!redis.owned) throw new Error('this test restarts redis-server: run it without REDIS_URL');
    const ns = namespace();
    const bridge = (nodeId: string, heartbeatMs: number) =>
      new RedisBridge({
        url: redis.url,
        namespace: ns,
        nodeId,
        secret: SECRET,
        heartbeatMs,
        nodeTtlMs: 10_000,
        reclaimIdleMs: 10_000,
        blockMs: 100,
      });
    // The worker beats every 2 s, the producer every 50 ms: after the restart the producer reads an empty registry
    // long before the worker writes its entry again.
    const worker = new UnifiedOrchestrator({
      pressure: false,
      bridge: bridge('slow-worker', 2_000),
      pools: [
        {
          role: 'w',
          capabilities: ['work'],
          minAgents: 1,
          create: () => ({ execute: async ({ payload }) => `done:${String(payload)}` }),
        },
      ],
    });
    const p = new UnifiedOrchestrator({ pressure: false, bridge: bridge('fast-producer', 50) });
    try {
      await worker.start();
      await p.start();
      await until(() => p.bridge.canAnyServe(['work']), 5_000);
      await expect(p.submit({ type: 't', requires: ['work'], payload: 0 })).resolves.toBe('done:0');
      let degraded = false;
      p.on('bridge:state', (s) => (degraded ||= s.status === 'degraded'));
      await redis.restart();
      await until(() => degraded && p.health().components.bridge.status === 'healthy', 10_000);
      await new Promise((r) => setTimeout(r, 200)); // a few producer beats: its registry read is the emptied one
      await expect(p.submit({ type: 't', requires: ['work'], payload: 1 })).resolves.toBe('done:1');
    } finally {
      await Promise.allSettled([p.stop({ timeoutMs: 2_000 }), worker.stop({ timeoutMs: 2_000 })]);
    }
  }, 60_000);
});

/** Settles with 'settled' once `promise` does, or 'pending' after `ms` (a net against a hang, not a timing check). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<'settled' | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), ms)));
  const settled = promise.then(
    () => 'settled' as const,
    () => 'settled' as const,
  );
  try {
    return await Promise.race([settled, pending]);
  } finally {
    clearTimeout(timer);
  }
}

describeRedis('RedisBridge and stop while Redis is down', () => {
  afterEach(async () => {
    if (redis.owned) await redis.restart(); // the next test gets a Redis again
  }, 30_000);

  /** Takes Redis away: killed (SIGKILL), or paused for longer than any test (every client's commands wait). */
  async function fault(kind: 'killed' | 'paused'): Promise<void> {
    if (kind === 'killed') return redis.stop(true);
    const admin = new Redis(redis.url);
    try {
      await admin.call('CLIENT', 'PAUSE', '60000', 'ALL');
    } finally {
      admin.disconnect();
    }
  }

  it.each(['killed', 'paused'] as const)(
    'a serving node with tasks in flight: stop({ drain: true, timeoutMs: 2000 }) settles when Redis was %s',
    async (kind) => {
      if (!redis.owned) throw new Error('this test kills redis-server: run it without REDIS_URL');
      const ns = namespace();
      let running = 0;
      const serving = new UnifiedOrchestrator({
        pressure: false,
        bridge: new RedisBridge({
          url: redis.url,
          namespace: ns,
          nodeId: 'serving',
          secret: SECRET,
          heartbeatMs: 50,
          nodeTtlMs: 400,
          reclaimIdleMs: 400,
          blockMs: 100,
        }),
        pools: [
          {
            role: 'w',
            capabilities: ['work'],
            minAgents: 2,
            maxAgents: 2,
            create: () => ({
              async execute() {
                running++;
                await new Promise((r) => setTimeout(r, 300));
                return 'done';
              },
            }),
          },
        ],
      });
      const p = producer(ns);
      await serving.start();
      await p.start();
      try {
        await until(() => p.bridge.canAnyServe(['work']), 5_000);
        const run = submitAll(p, 10, 0);
        await until(() => running >= 1, 10_000);
        await fault(kind);
        // Their results can no longer be written: the stop must still come back within its bound.
        expect(await settlesWithin(serving.stop({ drain: true, timeoutMs: 2_000 }), 10_000)).toBe('settled');
        expect(serving.state).toBe('stopped');
        expect(await settlesWithin(p.stop({ drain: false, timeoutMs: 2_000 }), 10_000)).toBe('settled');
        expect(await settlesWithin(run.all, 1_000)).toBe('settled');
      } finally {
        void serving.stop({ timeoutMs: 1 }).catch(() => {});
        void p.stop({ timeoutMs: 1 }).catch(() => {});
      }
    },
    30_000,
  );

  it('a producer with hand-offs outstanding: stop() settles when Redis was killed, and every submit rejects with OrchestratorStoppedError', async () => {
    if (!redis.owned) throw new Error('this test kills redis-server: run it without REDIS_URL');
    const ns = namespace();
    const ran: number[] = [];
    await worker(ns, 'worker-slow', ran);
    const p = producer(ns);
    await p.start();
    try {
      await until(() => p.bridge.canAnyServe(['work']), 5_000);
      const run = submitAll(p, 20, 20_000); // far longer than the stop's bound: all still out when it runs out
      await until(() => p.bridge.stats().handedOff === 20, 5_000);
      await new Promise((r) => setTimeout(r, 100)); // sent, and some taken by the worker
      await redis.stop(true);
      expect(await settlesWithin(p.stop({ drain: true, timeoutMs: 2_000 }), 10_000)).toBe('settled');
      expect(p.state).toBe('stopped');
      // None left pending, each rejected with the typed error.
      expect(await settlesWithin(run.all, 1_000)).toBe('settled');
      expect(run.settled.size).toBe(20);
      expect(run.twice()).toBe(0);
      for (const v of run.settled.values()) expect(v).toBeInstanceOf(OrchestratorStoppedError);
    } finally {
      void p.stop({ timeoutMs: 1 }).catch(() => {});
    }
  }, 30_000);

  it('a serving node stopped while Redis is down: its process exits on its own', async () => {
    if (!redis.owned) throw new Error('this test kills redis-server: run it without REDIS_URL');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/fixtures/bridge-stop-child.ts', redis.url, namespace()],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    let out = '';
    const ready = new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) resolve();
      });
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null | 'hung'>((resolve) => {
      const timer = setTimeout(() => resolve('hung'), 15_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
    await ready;
    await redis.stop(true);
    const code = await exited;
    expect(out).toMatch(/stopped in \d+ ms; state=stopped/);
    expect(code).toBe(0);
  }, 30_000);
});
