/**
 * Benchmarks of the orchestrator's fast paths, with bare p-queue as the yardstick.
 *
 *   npm run bench               # about 2 s per case
 *   npm run bench -- --quick    # about 0.3 s per case, whole run in a few seconds
 *
 * Prints a table and writes the same figures to bench/results/latest.json (gitignored).
 * Every case runs against no-op agents, so what is measured is the orchestrator's own overhead.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import PQueue from 'p-queue';
import { Bench, type Task as BenchTask } from 'tinybench';
import { UnifiedOrchestrator, type Agent, type Task } from 'unified-orchestrator';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const QUICK = args.quick;

/** Agents in the fleet, and p-queue's concurrency: the same number of slots on both sides. */
const AGENTS = 75;
/** Tasks per iteration of the throughput cases. */
const BATCH = 1_000;

const noop = async (): Promise<void> => {};
const noopAgent = (): Agent => ({ execute: noop });
const NOOP_TASK: Task = { type: 'noop', requires: ['noop'] };

// --- Subjects ---------------------------------------------------------------------------------------

/** A fleet of AGENTS no-op agents, all warm, none created or retired while the cases run. */
const fleet = new UnifiedOrchestrator({
  pools: [{ role: 'noop', capabilities: ['noop'], create: noopAgent, minAgents: AGENTS, maxAgents: AGENTS, warmSpares: 0 }],
});

/**
 * A pool for `spawnAgent`: one warm spare, and room for far more agents than the case ever holds at once.
 * Each iteration unregisters the agent it spawned and waits for the spare to be refilled, so every spawn is
 * a warm one and the pool never reaches `maxAgents` (PoolAtCapacityError).
 */
const spawner = new UnifiedOrchestrator({
  pools: [{ role: 'worker', capabilities: ['work'], create: noopAgent, minAgents: 1, maxAgents: 10_000, warmSpares: 1 }],
});

const queue = new PQueue({ concurrency: AGENTS });

await Promise.all([fleet.start(), spawner.start()]);

// --- Cases ------------------------------------------------------------------------------------------

const bench = new Bench({
  name: 'unified-orchestrator',
  time: QUICK ? 300 : 2_000,
  warmupTime: QUICK ? 50 : 250,
  iterations: QUICK ? 16 : 64,
  throws: true, // a case that throws (say PoolAtCapacityError) fails the run instead of leaving a hole in the table
});

/** Tasks done by one iteration of each case; cases without an entry do no tasks (spawnAgent). */
const tasksPerOp = new Map<string, number>();

function spareReady(): boolean {
  const pool = spawner.stats().pools[0];
  return pool !== undefined && pool.spares >= 1;
}

async function untilSpareReady(): Promise<void> {
  while (!spareReady()) await new Promise((resolve) => setImmediate(resolve));
}

bench.add('spawnAgent (warm spare)', async () => {
  const t0 = bench.now();
  const id = await spawner.spawnAgent('worker');
  const spawnedMs = bench.now() - t0;
  // Clean-up is outside the sample but inside the time budget, so the case still ends on time.
  await spawner.unregisterAgent(id);
  await untilSpareReady();
  return { overriddenDuration: spawnedMs, overriddenIterationCost: bench.now() - t0 };
});

addTaskCase('orchestrator: submit → result, 1 in flight', 1, () => fleet.submit(NOOP_TASK));
addTaskCase('p-queue: add → result, 1 in flight', 1, () => queue.add(noop));
addTaskCase(`orchestrator: ${BATCH} tasks over ${AGENTS} agents`, BATCH, () =>
  Promise.all(Array.from({ length: BATCH }, () => fleet.submit(NOOP_TASK))),
);
addTaskCase(`p-queue: ${BATCH} tasks at concurrency ${AGENTS}`, BATCH, () =>
  Promise.all(Array.from({ length: BATCH }, () => queue.add(noop))),
);

function addTaskCase(name: string, tasks: number, fn: () => Promise<unknown>): void {
  tasksPerOp.set(name, tasks);
  bench.add(name, fn);
}

// --- Run --------------------------------------------------------------------------------------------

console.log(`unified-orchestrator bench${QUICK ? ' (quick)' : ''}: node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}\n`);
bench.addEventListener('cycle', (event) => console.log(`  done: ${event.task.name}`));
try {
  await bench.run();
} finally {
  await Promise.all([fleet.stop(), spawner.stop()]);
  queue.clear();
}

// --- Report -----------------------------------------------------------------------------------------

interface CaseResult {
  name: string;
  /** Iterations per second. */
  opsPerSec: number;
  /** Tasks per second (iterations × tasks per iteration); `null` for cases that run no tasks. */
  tasksPerSec: number | null;
  meanMs: number;
  p99Ms: number;
  samples: number;
}

const results: CaseResult[] = bench.tasks.map(toResult);

function toResult(task: BenchTask): CaseResult {
  const r = task.result;
  if (r.state !== 'completed' && r.state !== 'aborted-with-statistics') {
    throw new Error(`Bench case "${task.name}" did not complete (state ${r.state})`);
  }
  const perOp = tasksPerOp.get(task.name);
  // Aggregate rate from total time; tinybench's throughput.mean averages per-sample rates, which overweights fast samples.
  const opsPerSec = 1_000 / r.latency.mean;
  return {
    name: task.name,
    opsPerSec,
    tasksPerSec: perOp === undefined ? null : opsPerSec * perOp,
    meanMs: r.latency.mean,
    p99Ms: r.latency.p99,
    samples: r.latency.samplesCount,
  };
}

function find(prefix: string, suffix: string): CaseResult {
  const found = results.find((r) => r.name.startsWith(prefix) && r.name.endsWith(suffix));
  if (!found) throw new Error(`No bench case ${prefix}…${suffix}`);
  return found;
}

const ratios = {
  /** Orchestrator throughput as a share of bare p-queue's, BATCH tasks over AGENTS slots. */
  throughput: find('orchestrator:', `${AGENTS} agents`).tasksPerSec! / find('p-queue:', `concurrency ${AGENTS}`).tasksPerSec!,
  /** The same for one task in flight at a time (latency-bound). */
  roundTrip: find('orchestrator:', '1 in flight').tasksPerSec! / find('p-queue:', '1 in flight').tasksPerSec!,
};

const number = (n: number): string => Math.round(n).toLocaleString('en-US');
const duration = (ms: number): string => (ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1_000).toFixed(1)} µs`);

console.log();
console.table(
  results.map((r) => ({
    case: r.name,
    'ops/s': number(r.opsPerSec),
    'tasks/s': r.tasksPerSec === null ? '—' : number(r.tasksPerSec),
    mean: duration(r.meanMs),
    p99: duration(r.p99Ms),
    samples: r.samples,
  })),
);
console.log(`orchestrator / p-queue throughput: ${ratios.throughput.toFixed(2)}× (${BATCH} tasks over ${AGENTS} slots)`);
console.log(`orchestrator / p-queue round trip: ${ratios.roundTrip.toFixed(2)}× (1 task in flight)`);

const report = {
  date: new Date().toISOString(),
  quick: QUICK,
  environment: { node: process.version, platform: process.platform, arch: process.arch, cpu: cpus()[0]?.model ?? null },
  settings: { agents: AGENTS, batch: BATCH, timeMs: bench.time, warmupTimeMs: bench.warmupTime },
  results,
  ratios,
};
const outDir = new URL('./results/', import.meta.url);
await mkdir(outDir, { recursive: true });
const outFile = new URL('latest.json', outDir);
await writeFile(outFile, `${JSON.stringify(report, null, 2)}\n`);
console.log(`\nwrote ${outFile.pathname}`);
