/**
 * What cluster-wide rate limits and tenant budgets cost per task (for bench/results/cluster-limits.md):
 *
 *   npx tsx bench/cluster-limits.ts [--batch 300] [--time 3000]
 *
 * One redis-server of the bench's own; two fleets of three orchestrators in this process, each node with its own
 * RedisBridge and node id, every task requiring a rate-limited capability and reporting a cost for a budgeted tenant
 * (limits high enough never to hold a task: what is measured is the bookkeeping, not the waiting). The "cluster" fleet
 * keeps its limits in Redis (the default with a RedisBridge); the "local" fleet is the same but with the bridge's
 * cluster limits hidden, so that each process keeps its own, as before. Both run in the same process, their cases
 * interleaved, on tinybench:
 * - burst: `--batch` tasks submitted at once round-robin over the three nodes; the sample is the batch's time per task;
 * - sequential: one task at a time (submit → result), round-robin; the sample is one round trip. Also with a limit
 *   below 100 requests per interval (99 per ms: as fast), whose leases are of 1 request: a Redis round trip per task.
 * Also prints the Redis calls per task of the cluster fleet (leases, unit and budget batches) and the load average.
 */
import { randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { execSync } from 'node:child_process';
import { RedisBridge, UnifiedOrchestrator, type Task } from 'unified-orchestrator';
import { sampleLatency, summarise, progress, type LatencyStats } from './harness.js';
import { startRedisServer } from './redis-server.js';

const SECRET = 'unified-orchestrator-bench-cluster-limits';

const args = process.argv.slice(2);
function flag(name: string, fallback: number): number {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`cluster-limits: ${name} needs a positive integer`);
    process.exit(2);
  }
  return n;
}
const BATCH = flag('--batch', 300);
const TIME_MS = flag('--time', 3_000);

const TASK: Task = { type: 'call', requires: ['llm'], tenantId: 'acme' };

/** 1,000,000 requests per second: leases of 100. 99 per ms: as fast, but below 100 per interval, so leases of 1. */
const BIG = { requests: 1_000_000, units: 1e12, intervalMs: 1_000 };
const SMALL_BLOCK = { requests: 99, units: 1e12, intervalMs: 1 };

async function fleet(
  url: string,
  cluster: boolean,
  limit: { requests: number; units: number; intervalMs: number } = BIG,
): Promise<UnifiedOrchestrator[]> {
  const namespace = `bench-climits-${randomBytes(4).toString('hex')}`;
  return Promise.all(
    ['a', 'b', 'c'].map(async (id) => {
      const bridge = new RedisBridge({ url, namespace, nodeId: id, secret: SECRET });
      // The "local" fleet: the same bridge, its cluster limits hidden, so the orchestrator keeps per-process limits.
      if (!cluster) Object.defineProperty(bridge, 'clusterLimits', { value: undefined });
      const o = new UnifiedOrchestrator({
        pressure: false,
        pools: [
          {
            role: 'llm',
            capabilities: ['llm'],
            minAgents: 8,
            maxAgents: 8,
            warmSpares: 0,
            create: () => ({
              execute: (ctx) => {
                ctx.reportCost(1);
                return 'ok';
              },
            }),
          },
        ],
        rateLimits: { llm: limit },
        budgets: { windowMs: 3_600_000, limits: { acme: 1e12 } },
        bridge,
      });
      await o.start();
      return o;
    }),
  );
}

async function burst(nodes: UnifiedOrchestrator[]): Promise<number> {
  const t0 = performance.now();
  const all: Promise<unknown>[] = [];
  for (let i = 0; i < BATCH; i++) all.push(nodes[i % 3]!.submit(TASK));
  await Promise.all(all);
  return (performance.now() - t0) / BATCH;
}

let turn = 0;
async function sequential(nodes: UnifiedOrchestrator[]): Promise<number> {
  const t0 = performance.now();
  await nodes[turn++ % 3]!.submit(TASK);
  return performance.now() - t0;
}

/** Redis calls the cluster fleet made so far, over its three nodes. */
function calls(nodes: UnifiedOrchestrator[]): number {
  let n = 0;
  for (const o of nodes) {
    const c = o.resources.cluster?.calls;
    if (c) n += c.lease + c.give + c.units + c.pause + c.budgets;
  }
  return n;
}

function completed(nodes: UnifiedOrchestrator[]): number {
  let n = 0;
  for (const o of nodes) n += o.stats().completed;
  return n;
}

function row(name: string, local: LatencyStats, cluster: LatencyStats): string {
  const f = (v: LatencyStats): string => `${v.p50Us.toFixed(1)} / ${v.p99Us.toFixed(1)} / ${v.meanUs.toFixed(1)}`;
  const ratio = (a: number, b: number): string => (a / b).toFixed(2);
  return `| ${name} | ${f(local)} | ${f(cluster)} | ${ratio(cluster.p50Us, local.p50Us)} / ${ratio(cluster.meanUs, local.meanUs)} | ${local.samples} / ${cluster.samples} |`;
}

const redis = await startRedisServer();
try {
  const local = await fleet(redis.url, false);
  const cluster = await fleet(redis.url, true);
  const small = await fleet(redis.url, true, SMALL_BLOCK);
  const budget = { timeMs: TIME_MS, minSamples: 20, warmupMs: 300 };
  const results: Record<string, { local?: LatencyStats; cluster?: LatencyStats }> = { burst: {}, sequential: {} };
  // Interleaved: local, cluster, local, cluster… so that the machine's other load hits both alike.
  const burstLocal: number[] = [];
  const burstCluster: number[] = [];
  const seqLocal: number[] = [];
  const seqCluster: number[] = [];
  const seqSmall: number[] = [];
  const add = (into: number[], samples: Float64Array): void => {
    for (const v of samples) into.push(v);
  };
  for (let round = 0; round < 3; round++) {
    progress(`round ${round + 1}/3`);
    add(burstLocal, await sampleLatency('burst local', () => burst(local), budget));
    add(burstCluster, await sampleLatency('burst cluster', () => burst(cluster), budget));
    add(seqLocal, await sampleLatency('sequential local', () => sequential(local), budget));
    add(seqCluster, await sampleLatency('sequential cluster', () => sequential(cluster), budget));
    add(seqSmall, await sampleLatency('sequential cluster, leases of 1', () => sequential(small), budget));
  }
  results.burst = { local: summarise(burstLocal), cluster: summarise(burstCluster) };
  results.sequential = { local: summarise(seqLocal), cluster: summarise(seqCluster) };
  const perTask = calls(cluster) / completed(cluster);
  const perTaskSmall = calls(small) / completed(small);
  console.log('| per task, µs (p50 / p99 / mean) | local limits | cluster limits | ratio (p50 / mean) | samples |');
  console.log('| --- | --- | --- | --- | --- |');
  console.log(row(`burst of ${BATCH}, time per task`, results.burst.local!, results.burst.cluster!));
  console.log(row('sequential, round trip', results.sequential.local!, results.sequential.cluster!));
  console.log(row('sequential, leases of 1 (limit < 100)', results.sequential.local!, summarise(seqSmall)));
  console.log('');
  console.log(
    `Redis calls of the cluster limits per task: ${perTask.toFixed(3)} (${calls(cluster)} calls, ${completed(cluster)} tasks); with leases of 1: ${perTaskSmall.toFixed(3)}.`,
  );
  console.log(
    `${redis.version}; Node ${process.version}; ${cpus().length} cores; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} at the end; uptime: ${execSync('uptime').toString().trim()}`,
  );
  await Promise.all([...local, ...cluster, ...small].map((o) => o.stop({ timeoutMs: 5_000 })));
} finally {
  await redis.stop();
}
