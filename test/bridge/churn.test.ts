/**
 * Bounded Redis under churn (issue 16): nodes join and leave again and again (some stop cleanly, some are killed as
 * child processes), each handing off and serving a few tasks. Afterwards the namespace holds the same keys as before
 * the churn (no results stream, `origins` listing or group consumer of a gone node, no `done` marker or refusal counter
 * past its TTL) and Redis's dataset memory is back where it was. Small timings make the sweeps run within seconds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { RedisBridge, UnifiedOrchestrator, type Agent } from 'unified-orchestrator';
import { fieldsOf, GROUP, refusalKey } from '../../src/bridge/redis-streams.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { eventually, FAST, Fleet } from './helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
/** The secret of test/fixtures/bridge-churn-child.ts. */
const SECRET = 'bridge-churn-tests-shared-secret';
/** As in the child: markers and refusal counters expire within seconds. */
// maxMessageAgeMs: the marks that make each task entry's XADD happen once live twice as long.
const TIMINGS = { ...FAST, doneTtlMs: 1_500, maxMessageAgeMs: 750 } as const;

const fleet = new Fleet();
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  await fleet.stopAll();
});

describe.skipIf(REDIS_SERVER.skip)('Redis stays bounded as nodes come and go', () => {
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

  const echo = (nodeId: string): Agent => ({
    execute: (ctx) => Promise.resolve({ node: nodeId, v: ctx.payload }),
  });

  /** An in-process node like the child: serves `x`, hands off every task another node can take. */
  function node(ns: string, nodeId: string, agent: Agent = echo(nodeId), extra = {}): UnifiedOrchestrator {
    return fleet.add(
      new UnifiedOrchestrator({
        pressure: false,
        handOffAbove: 0,
        ...extra,
        bridge: new RedisBridge({ url: redis.url, secret: SECRET, namespace: ns, nodeId, ...TIMINGS }),
        pools: [{ role: 'w', capabilities: ['x'], minAgents: 1, maxAgents: 1, concurrency: 8, create: () => agent }],
      }),
    );
  }

  /** A child node that hands off `count` tasks; resolves once they all have their result. */
  async function child(ns: string, nodeId: string, count: number): Promise<ChildProcess> {
    const c = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/fixtures/bridge-churn-child.ts', redis.url, ns, nodeId, String(count)],
      { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(c);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      c.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('done\n')) resolve();
      });
      c.once('exit', (code) => reject(new Error(`child ${nodeId} exited with ${code} before it was done`)));
    });
    return c;
  }

  /** The keys of namespace `ns`, sorted. */
  async function keys(ns: string): Promise<string[]> {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await admin.scan(cursor, 'MATCH', `${ns}:*`, 'COUNT', 1000);
      found.push(...batch);
      cursor = next;
    } while (cursor !== '0');
    return found.sort();
  }

  /** The memory the keys of `ns` take, by MEMORY USAGE (exact: SAMPLES 0). */
  async function usage(ns: string): Promise<number> {
    let total = 0;
    for (const key of await keys(ns)) total += Number(await admin.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
    return total;
  }

  const dataset = async (): Promise<number> => Number(/used_memory_dataset:(\d+)/.exec(await admin.info('memory'))![1]);

  /** The consumers of the group of `x`'s stream. */
  async function consumers(ns: string): Promise<string[]> {
    const reply = (await admin.call('XINFO', 'CONSUMERS', `${ns}:tasks:x`, GROUP)) as unknown[];
    return reply.map((c) => String(fieldsOf(c)['name'])).sort();
  }

  /** `o` hands off `n` tasks (to whichever other node takes them) and waits for their results. */
  async function exchange(o: UnifiedOrchestrator, n: number, tag: string): Promise<void> {
    await eventually(() => o.bridge.canAnyServe(['x']), 10_000, `${tag} sees another node`);
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => o.submit({ type: 't', requires: ['x'], payload: `${tag}-${i}` })),
    );
    expect(results).toHaveLength(n);
  }

  it('after nodes joined, worked and left (cleanly or killed), the keys and dataset memory are what they were', async () => {
    const ns = namespace();
    const w = node(ns, 'W');
    await w.start();
    // Warm-up: one node comes, exchanges work with W both ways and leaves; then the baseline, once all expired.
    const warm = node(ns, 'warm');
    await warm.start();
    await exchange(warm, 5, 'warm');
    await exchange(w, 5, 'w-warm');
    await warm.stop();
    const settledKeys = async (): Promise<string[]> => {
      const k = await keys(ns);
      const live = await admin.zrange(`${ns}:origins`, '0', '-1');
      return k.some((key) => /:(done|node|sent):|:refused:/.test(key) && !key.endsWith(':node:W')) || live.length > 1
        ? []
        : k;
    };
    await eventually(async () => (await settledKeys()).length > 0, 20_000, 'the warm-up expired');
    const baselineKeys = await keys(ns);
    const baselineMemory = await dataset();
    const baselineUsage = await usage(ns);
    expect(baselineKeys).toContain(`${ns}:results:W`);

    const gone: string[] = [];
    for (let round = 0; round < 6; round++) {
      const id = `n${round}`;
      gone.push(id);
      if (round % 2 === 0) {
        const n = node(ns, id);
        await n.start();
        await exchange(n, 8, id);
        await exchange(w, 8, `w-${id}`);
        await n.stop();
      } else {
        const c = await child(ns, id, 8);
        await exchange(w, 8, `w-${id}`);
        c.kill('SIGKILL');
        await new Promise((resolve) => c.once('exit', resolve));
      }
    }
    // Right after the churn, the gone nodes left things behind (the killed ones their streams and consumers).
    expect((await keys(ns)).length).toBeGreaterThan(baselineKeys.length);

    await eventually(
      async () => JSON.stringify(await keys(ns)) === JSON.stringify(baselineKeys),
      30_000,
      'the keys are back to the baseline',
    );
    for (const id of gone) expect(await admin.exists(`${ns}:results:${id}`)).toBe(0);
    await eventually(async () => (await consumers(ns)).join() === 'W', 10_000, 'only W consumes x');
    expect(await admin.zrange(`${ns}:origins`, '0', '-1')).toEqual(['W']);
    // Flat: the namespace's keys take what they took, and the dataset is where it was, give or take
    // the noise of clients coming and going (tens of KB): a leak per gone node would not hide in the first.
    // (MEMORY USAGE of the streams and the registry entry moves by a few hundred bytes with their contents.)
    expect(Math.abs((await usage(ns)) - baselineUsage)).toBeLessThan(1024);
    expect((await dataset()) - baselineMemory).toBeLessThan(256 * 1024);
  }, 90_000);

  it('keeps the results stream of a node listed in the registry (one back under the same id), however idle; deletes it once the node is gone', async () => {
    const ns = namespace();
    const w = node(ns, 'W');
    await w.start();
    // R: a node id with a results stream and an old listing, its stream idle from now on.
    await admin.xadd(`${ns}:results:R`, '*', 'm', 'left-over', 's', '');
    await admin.zadd(`${ns}:origins`, '1', 'R');
    await admin.set(`${ns}:node:R`, 'registered', 'PX', 60_000);
    // Past the idle bound (ten node TTLs: 5 s) and several sweeps (every 1 s), the stream stays: R is registered.
    await new Promise((resolve) => setTimeout(resolve, 7_000));
    expect(Number(await admin.object('IDLETIME', `${ns}:results:R`))).toBeGreaterThanOrEqual(5);
    expect(await admin.exists(`${ns}:results:R`)).toBe(1);
    // R gone: its stream (long idle) and its listing (last seen long ago) are removed on the next sweep.
    await admin.del(`${ns}:node:R`);
    await eventually(async () => (await admin.exists(`${ns}:results:R`)) === 0, 5_000, 'the stream of R deleted');
    await eventually(async () => (await admin.zscore(`${ns}:origins`, 'R')) === null, 5_000, 'R no longer listed');
    expect(await admin.zscore(`${ns}:origins`, 'W')).not.toBeNull();
  }, 30_000);

  it('a refusal counter expires with the done markers (doneTtlMs)', async () => {
    const ns = namespace();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const busy: Agent = {
      async execute() {
        await gate;
        return 'ok';
      },
    };
    // B runs one task at a time and queues none: of two tasks in one entry, it refuses the second (QUEUE_FULL).
    const b = fleet.add(
      new UnifiedOrchestrator({
        pressure: false,
        maxQueueSize: 0,
        bridge: new RedisBridge({ url: redis.url, secret: SECRET, namespace: ns, nodeId: 'B', ...TIMINGS }),
        pools: [{ role: 'w', capabilities: ['x'], minAgents: 1, maxAgents: 1, concurrency: 1, create: () => busy }],
      }),
    );
    const a = fleet.producer(
      new RedisBridge({ url: redis.url, secret: SECRET, namespace: ns, nodeId: 'A', ...TIMINGS }),
    );
    await b.start();
    await a.start();
    await eventually(() => a.bridge.canAnyServe(['x']), 5_000, 'A sees B');
    const results = [1, 2].map((i) => a.submit({ type: 't', requires: ['x'], payload: i }));
    const stream = `${ns}:tasks:x`;
    // The refusal is counted when the entry's flush is over, once the task B runs reported.
    await eventually(() => b.stats().running === 1, 5_000, 'B runs one task');
    release();
    let counter: string | undefined;
    await eventually(
      async () => {
        const found = (await keys(ns)).find((k) => k.startsWith(`${stream}:refused:`));
        counter = found;
        return found !== undefined;
      },
      10_000,
      'a refusal counted',
    );
    const [entry] = counter!.split(':refused:').slice(-1);
    expect(counter).toBe(refusalKey(stream, entry!));
    const ttl = await admin.pttl(counter!);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(TIMINGS.doneTtlMs);
    // The refused task is reclaimed and runs; the counter expires by itself.
    await Promise.all(results);
    await eventually(async () => (await admin.exists(counter!)) === 0, 10_000, 'the counter expired');
  }, 30_000);
});
