/**
 * A blip runs nothing twice: on a real redis-server, with executions counted on every worker.
 * - The producer's connections killed (CLIENT KILL) while its tasks run: nothing is sent again (Redis lost nothing).
 * - Redis stalled (CLIENT PAUSE, DEBUG SLEEP) for longer than a node TTL: no node is taken for gone, so nothing is
 *   refused with NO_CAPABLE_AGENT and nothing is reclaimed from a live node.
 * - A worker stopped (SIGSTOP) past its lease: another node reclaims and runs its task; when it comes back (SIGCONT) it
 *   aborts its own copy through ctx.signal and reports nothing; the submitter sees one result.
 * - Redis restarted without its data: the hand-offs are sent again and every task settles once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisBridge, UnifiedOrchestrator, type RedisBridgeOptions } from 'unified-orchestrator';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { eventually, FAST, Fleet, runLog, SECRET, type Op } from './helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis({ debugCommand: true });
}, 30_000);
afterAll(async () => {
  if (redis.owned) await redis.stop();
});

const fleet = new Fleet();
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    }
  }
  await fleet.stopAll();
}, 30_000);

function bridge(ns: string, nodeId: string, extra: Partial<RedisBridgeOptions> = {}): RedisBridge {
  return new RedisBridge({ url: redis.url, namespace: ns, nodeId, secret: SECRET, ...FAST, ...extra });
}

/** Runs `command` on a connection of its own (DEBUG SLEEP blocks it until Redis wakes). */
async function admin<T>(...command: [string, ...string[]]): Promise<T> {
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  try {
    return (await client.call(...command)) as T;
  } finally {
    client.disconnect();
  }
}

/** Submissions and how each settled; a second settlement of one id is counted, not recorded. */
class Submissions {
  readonly settled = new Map<string, { ok: boolean; value: unknown }>();
  readonly all: Promise<unknown>[] = [];
  twice = 0;

  constructor(private readonly producer: UnifiedOrchestrator) {}

  submit(op: Op): void {
    const record = (ok: boolean, value: unknown): void => {
      if (this.settled.has(op.id)) this.twice++;
      else this.settled.set(op.id, { ok, value });
    };
    this.all.push(
      this.producer.submit({ type: 't', requires: ['x'], payload: op }).then(
        (v) => record(true, v),
        (e: unknown) => record(false, e),
      ),
    );
  }

  /** The codes of the submissions that failed, counted. */
  failures(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const { ok, value } of this.settled.values()) {
      if (ok) continue;
      const { code, message } = value as { code?: unknown; message?: unknown };
      const key = typeof code === 'string' ? code : String(message);
      out[key] = (out[key] ?? 0) + 1;
    }
    return out;
  }
}

/** Ids that ran other than exactly once, with their counts (empty when each ran once). */
function notOnce(runs: readonly string[], ids: readonly string[]): Record<string, number> {
  const counts = new Map<string, number>();
  for (const r of runs) counts.set(r, (counts.get(r) ?? 0) + 1);
  const out: Record<string, number> = {};
  for (const id of ids) if (counts.get(id) !== 1) out[id] = counts.get(id) ?? 0;
  return out;
}

/** The secret of test/fixtures/bridge-lease-worker.ts. */
const LEASE_SECRET = 'bridge-lease-tests-shared-secret';

/** Starts test/fixtures/bridge-lease-worker.ts as `nodeId`; resolves once it serves. `lines` collects what it prints. */
async function leaseWorker(
  ns: string,
  nodeId: string,
  nodeTtlMs?: number,
): Promise<{ process: ChildProcess; lines: string[] }> {
  const args = ['--import', 'tsx', 'test/fixtures/bridge-lease-worker.ts', redis.url, ns, nodeId];
  if (nodeTtlMs !== undefined) args.push(String(nodeTtlMs));
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const lines: string[] = [];
  let buffer = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let i: number;
    while ((i = buffer.indexOf('\n')) >= 0) {
      lines.push(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
    }
  });
  await eventually(() => lines.includes('ready'), 20_000, `the child worker ${nodeId} serves`);
  return { process: child, lines };
}

/** A second worker for capability `work`, in this process, named `other`: it answers at once. Returns what it ran. */
async function otherWorker(ns: string, nodeTtlMs: number = FAST.nodeTtlMs): Promise<number[]> {
  const ranHere: number[] = [];
  const other = fleet.add(
    new UnifiedOrchestrator({
      pressure: false,
      bridge: bridge(ns, 'other', { secret: LEASE_SECRET, nodeTtlMs }),
      pools: [
        {
          role: 'w',
          capabilities: ['work'],
          minAgents: 1,
          create: () => ({
            execute(ctx) {
              const { n } = ctx.payload as { n: number };
              ranHere.push(n);
              return Promise.resolve(`other:${n}`);
            },
          }),
        },
      ],
    }),
  );
  await other.start();
  return ranHere;
}

const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('RedisBridge: a blip runs nothing twice', () => {
  it("the producer's connections killed while 40 tasks run on two workers: each runs once and settles once", async () => {
    const ns = namespace();
    const log = runLog();
    await fleet.server(bridge(ns, 'worker-a'), 'worker-a', log).start();
    await fleet.server(bridge(ns, 'worker-b'), 'worker-b', log).start();
    const p = fleet.producer(bridge(ns, 'producer', { redisOptions: { connectionName: 'once-producer' } }));
    await p.start();
    await eventually(() => p.bridge.canAnyServe(['x']), 5_000, 'the workers are known');
    const subs = new Submissions(p);
    const ids = Array.from({ length: 40 }, (_, k) => `kill-${k}`);
    for (const id of ids) subs.submit({ op: 'slow', id, ms: 1_500 });
    await eventually(() => log.runs.length === 40, 10_000, 'every task started');
    let degraded = false;
    p.on('bridge:state', (s) => (degraded ||= s.status === 'degraded'));
    // Every connection of the producer (commands, subscriber, both readers), and none of the workers'.
    const list = await admin<string>('CLIENT', 'LIST');
    const mine = list.split('\n').filter((line) => / name=once-producer /.test(line));
    expect(mine.length).toBe(4);
    for (const line of mine) await admin('CLIENT', 'KILL', 'ID', /\bid=(\d+)/.exec(line)![1]!);
    await eventually(() => degraded && p.health().components.bridge.status === 'healthy', 5_000, 'reconnected');
    await Promise.all(subs.all);
    expect(subs.twice).toBe(0);
    expect(subs.failures()).toEqual({});
    expect(subs.settled.size).toBe(40);
    expect(notOnce(log.runs, ids)).toEqual({});
  }, 30_000);

  it.each<[string, [string, ...string[]]]>([
    ['CLIENT PAUSE', ['CLIENT', 'PAUSE', '1500', 'ALL']],
    ['DEBUG SLEEP', ['DEBUG', 'SLEEP', '1.5']],
  ])(
    'Redis stalled by %s for three node TTLs: nothing is refused NO_CAPABLE_AGENT, each task runs once',
    async (_, command) => {
      const ns = namespace();
      const log = runLog();
      await fleet.server(bridge(ns, 'worker-a'), 'worker-a', log).start();
      await fleet.server(bridge(ns, 'worker-b'), 'worker-b', log).start();
      const p = fleet.producer(bridge(ns, 'producer'));
      await p.start();
      await eventually(() => p.bridge.canAnyServe(['x']), 5_000, 'the workers are known');
      const subs = new Submissions(p);
      const ids: string[] = [];
      // Running through the stall: after it, every one of them is idle far past reclaimIdleMs.
      for (let k = 0; k < 20; k++) {
        ids.push(`long-${k}`);
        subs.submit({ op: 'slow', id: `long-${k}`, ms: 2_500 });
      }
      await eventually(() => log.runs.length === 20, 10_000, 'the long tasks started');
      const stalled = admin(...command);
      // Submitted while Redis does not answer, and right after it does again (before any node wrote its entry again).
      for (let k = 0; k < 15; k++) {
        ids.push(`during-${k}`);
        subs.submit({ op: 'echo', id: `during-${k}` });
        await new Promise((r) => setTimeout(r, 100));
      }
      await stalled;
      for (let k = 0; k < 20; k++) {
        ids.push(`after-${k}`);
        subs.submit({ op: 'echo', id: `after-${k}` });
        await new Promise((r) => setTimeout(r, 10));
      }
      await Promise.all(subs.all);
      expect(subs.failures()).toEqual({});
      expect(subs.twice).toBe(0);
      expect(subs.settled.size).toBe(ids.length);
      expect(notOnce(log.runs, ids)).toEqual({});
    },
    30_000,
  );

  it('a worker stopped for less than its lease keeps its task: the other node leaves it alone, and it runs once', async () => {
    const ns = namespace();
    // A lease (nodeTtlMs) of 2 s, and entries reclaimable once idle for 300 ms: a stall of 1 s is within the lease.
    const child = await leaseWorker(ns, 'paused', 2_000);
    const p = fleet.producer(bridge(ns, 'producer', { secret: LEASE_SECRET, nodeTtlMs: 2_000 }));
    await p.start();
    await eventually(() => p.bridge.canAnyServe(['work']), 5_000, 'the child worker is known');
    const result = p.submit({ type: 't', requires: ['work'], payload: { n: 3, ms: 2_000 } });
    await eventually(() => child.lines.includes('start 3'), 10_000, 'the child runs the task');
    const ranHere = await otherWorker(ns, 2_000);
    child.process.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 1_000)); // its entry is idle far past reclaimIdleMs meanwhile
    child.process.kill('SIGCONT');
    await expect(result).resolves.toBe('paused:3');
    expect(ranHere).toEqual([]);
    expect(child.lines.filter((l) => l === 'start 3')).toHaveLength(1);
    expect(child.lines).not.toContain('aborted 3');
  }, 45_000);

  it('a worker stopped past its lease: another node runs its task, and it aborts its own copy through ctx.signal when it comes back', async () => {
    const ns = namespace();
    const child = await leaseWorker(ns, 'stopped');
    const p = fleet.producer(bridge(ns, 'producer', { secret: LEASE_SECRET }));
    await p.start();
    await eventually(() => p.bridge.canAnyServe(['work']), 5_000, 'the child worker is known');
    let settlements = 0;
    const result = p.submit({ type: 't', requires: ['work'], payload: { n: 7, ms: 30_000 } }).finally(() => {
      settlements++;
    });
    await eventually(() => child.lines.includes('start 7'), 10_000, 'the child runs the task');
    const ranHere = await otherWorker(ns);
    // The child is live and keeps its entry: the other node leaves it alone.
    await new Promise((r) => setTimeout(r, 600));
    expect(ranHere).toEqual([]);

    child.process.kill('SIGSTOP');
    // Its lease (nodeTtlMs) runs out, and the other node reclaims the entry and runs the task.
    await expect(result).resolves.toBe('other:7');
    expect(ranHere).toEqual([7]);
    child.process.kill('SIGCONT');
    await eventually(() => child.lines.includes('aborted 7'), 10_000, 'the child aborts its copy');
    // It reported nothing for it, and never finished it.
    child.process.stdin!.write('stats\n');
    await eventually(() => child.lines.some((l) => l.startsWith('stats ')), 5_000, 'the child reports its counts');
    const stats = JSON.parse(child.lines.find((l) => l.startsWith('stats '))!.slice(6)) as { served: number };
    expect(stats.served).toBe(0);
    expect(child.lines).not.toContain('ran 7');
    expect(child.lines.filter((l) => l === 'start 7')).toHaveLength(1);
    expect(settlements).toBe(1);
    expect(ranHere).toEqual([7]);
  }, 45_000);

  it('Redis restarted without its data: the hand-offs it lost are sent again, and every task settles once', async () => {
    if (!redis.owned) throw new Error('this test restarts redis-server: run it without REDIS_URL');
    const ns = namespace();
    const log = runLog();
    // One slot each: the two workers hold a few entries, the rest wait in the stream and are lost with it.
    const pool = (node: string) => ({
      role: 'w',
      capabilities: ['x'],
      minAgents: 1,
      maxAgents: 1,
      concurrency: 1,
      create: () => ({
        async execute(ctx: { payload: unknown }) {
          const op = ctx.payload as { id: string };
          log.runs.push(op.id);
          await new Promise((r) => setTimeout(r, 20));
          return `${node}:${op.id}`;
        },
      }),
    });
    for (const node of ['worker-a', 'worker-b'])
      await fleet
        .add(new UnifiedOrchestrator({ pressure: false, bridge: bridge(ns, node), pools: [pool(node)] }))
        .start();
    const p = fleet.producer(bridge(ns, 'producer'));
    await p.start();
    await eventually(() => p.bridge.canAnyServe(['x']), 5_000, 'the workers are known');
    const subs = new Submissions(p);
    const ids = Array.from({ length: 150 }, (_, k) => `restart-${k}`);
    for (const id of ids) subs.submit({ op: 'echo', id });
    await eventually(() => log.runs.length >= 5, 10_000, 'some tasks ran');
    await redis.restart();
    await Promise.all(subs.all);
    expect(subs.twice).toBe(0);
    expect(subs.failures()).toEqual({});
    expect(subs.settled.size).toBe(150);
    for (const id of ids) expect((subs.settled.get(id)!.value as string).endsWith(`:${id}`)).toBe(true);
    // Each ran at least once; a second run only for what was running when Redis restarted (one slot per worker).
    const twice = Object.entries(notOnce(log.runs, ids));
    expect(twice.filter(([, n]) => n === 0)).toEqual([]);
    expect(twice.length).toBeLessThanOrEqual(70);
  }, 45_000);
});
