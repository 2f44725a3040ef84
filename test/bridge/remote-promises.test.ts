/**
 * Issue 19, with real processes and a real redis-server: a task handed to another node keeps the promises of a local
 * one. Worker nodes are child processes (test/fixtures/bridge-worker.ts); the producer is this process.
 * - No live node serves a task: it waits in the cluster, and runs on the node that starts within `waitForNodeMs`.
 * - The only node that serves it is SIGKILLed and none comes: every task ends (NoCapableNodeError), none pends.
 * - A task redelivered after its node was SIGKILLed keeps its id (`ctx.taskId` = the handle's id on the producer),
 *   and counts its attempts on (`ctx.attempt` 2, `ctx.recoveries` 1).
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NoCapableNodeError, RedisBridge, UnifiedOrchestrator } from 'unified-orchestrator';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { startWorkerProcess } from '../support/worker-process.js';

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
}, 30_000);
afterAll(async () => {
  if (redis.owned) await redis.stop();
});

const children: ChildProcess[] = [];
const orchestrators: UnifiedOrchestrator[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  await Promise.allSettled(orchestrators.splice(0).map((o) => o.stop({ timeoutMs: 2_000 })));
});

/** An attempt a worker started, as it printed it. */
interface Start {
  readonly n: number;
  readonly taskId: string;
  readonly attempt: number;
  readonly recoveries: number;
}

/** Starts a worker node; resolves once it serves. `starts` collects the attempts it starts. */
async function worker(ns: string, nodeId: string, starts: Start[] = []): Promise<ChildProcess> {
  const child = await startWorkerProcess(redis.url, ns, nodeId, (line) => {
    const m = /^start (\d+) (\S+) (\d+) (\d+)$/.exec(line);
    if (m) starts.push({ n: Number(m[1]), taskId: m[2]!, attempt: Number(m[3]), recoveries: Number(m[4]) });
  });
  children.push(child);
  return child;
}

/** A producer with the workers' secret and timings. */
async function producer(ns: string, waitForNodeMs: number): Promise<UnifiedOrchestrator> {
  const p = new UnifiedOrchestrator({
    pressure: false,
    waitForNodeMs,
    bridge: new RedisBridge({
      url: redis.url,
      namespace: ns,
      nodeId: 'producer',
      secret: 'bridge-fault-tests-shared-secret',
      heartbeatMs: 50,
      nodeTtlMs: 400,
      reclaimIdleMs: 400,
      blockMs: 100,
    }),
  });
  orchestrators.push(p);
  await p.start();
  return p;
}

async function until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** How each of `promises` settled: `{ ok, value }` or `{ ok: false, error }`, in order. */
function outcomes(
  promises: Array<Promise<unknown>>,
): Promise<Array<{ ok: boolean; value?: unknown; error?: unknown }>> {
  return Promise.all(
    promises.map((p) =>
      p.then(
        (value) => ({ ok: true, value }),
        (error: unknown) => ({ ok: false, error }),
      ),
    ),
  );
}

const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('a remote task keeps the promises of a local one (real processes)', () => {
  it('no node serves it for 10 s, then one starts: every task waited in the cluster and runs once there', async () => {
    const ns = namespace();
    const p = await producer(ns, 60_000);
    const N = 50;
    const submitted = Array.from({ length: N }, (_, n) =>
      p.submit<string>({ type: 'job', requires: ['work'], payload: { n, ms: 5 } }),
    );
    let settledEarly = 0;
    for (const s of submitted)
      s.then(
        () => settledEarly++,
        () => settledEarly++,
      );
    await new Promise((r) => setTimeout(r, 10_000));
    expect(settledEarly).toBe(0); // none refused at once, none lost: they wait
    const starts: Start[] = [];
    await worker(ns, 'late-worker', starts);
    const results = await outcomes(submitted);
    expect(results).toEqual(Array.from({ length: N }, (_, n) => ({ ok: true, value: `done:${n}` })));
    expect(starts.map((s) => s.n).sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, n) => n));
  }, 60_000);

  it('its only node is SIGKILLed and none comes: every task ends with NoCapableNodeError, none pending', async () => {
    const ns = namespace();
    const starts: Start[] = [];
    const only = await worker(ns, 'only-worker', starts);
    const p = await producer(ns, 1_500);
    await until(() => p.bridge.canAnyServe(['work']), 5_000, 'the producer sees the worker');
    const N = 40;
    // Each takes 3 s: four run on the worker when it dies, the rest wait in its stream.
    const submitted = Array.from({ length: N }, (_, n) =>
      p.submit<string>({ type: 'job', requires: ['work'], payload: { n, ms: 3_000 }, timeoutMs: 5_000 }),
    );
    await until(() => starts.length >= 4, 10_000, 'the worker runs some');
    await new Promise((r) => setTimeout(r, 150)); // their started notices are in
    const killedAt = performance.now();
    only.kill('SIGKILL');
    const results = await outcomes(submitted);
    const tookMs = performance.now() - killedAt;
    for (const r of results) {
      expect(r.ok).toBe(false);
      expect(r.error).toBeInstanceOf(NoCapableNodeError);
      expect(r.error).toMatchObject({ code: 'NO_CAPABLE_NODE', requires: ['work'] });
    }
    // Its lease (400 ms) ran out, then the wait (1.5 s): bounded, well before the 3 s jobs or 45 s.
    expect(tookMs).toBeLessThan(10_000);
    expect(p.stats()).toMatchObject({ running: 0 });
  }, 60_000);

  it('a task redelivered after its node was SIGKILLed keeps its id, and counts its attempts and recoveries on', async () => {
    const ns = namespace();
    const startsA: Start[] = [];
    const startsB: Start[] = [];
    const a = await worker(ns, 'worker-a', startsA);
    const p = await producer(ns, 30_000);
    await until(() => p.bridge.canAnyServe(['work']), 5_000, 'the producer sees worker A');
    const handle = p.delegate<string>({ type: 'job', requires: ['work'], payload: { n: 7, ms: 2_000 } });
    await until(() => startsA.length === 1, 10_000, 'worker A starts it');
    expect(startsA[0]).toEqual({ n: 7, taskId: handle.id, attempt: 1, recoveries: 0 });
    a.kill('SIGKILL');
    await worker(ns, 'worker-b', startsB);
    await expect(handle.result).resolves.toBe('done:7');
    expect(startsB).toEqual([{ n: 7, taskId: handle.id, attempt: 2, recoveries: 1 }]);
  }, 60_000);
});
