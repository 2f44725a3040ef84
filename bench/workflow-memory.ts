/**
 * Memory of parked workflow runs (issue 18): RUNS runs of a workflow that checkpoints one step and then waits for a
 * signal, all parked; then the heap of this process per parked run after a full GC, the timers this process holds,
 * and what the workflow runner keeps for them (`stats().workflows.active`); then every run is signalled and the time
 * until all have ended (their ends committed: the store's `onFinished`) is measured.
 *
 *   node --expose-gc --import tsx bench/workflow-memory.ts                       # memory, postgres, pglite
 *   node --expose-gc --import tsx bench/workflow-memory.ts --store=postgres --runs=10000
 *
 * Two ways to start the runs, because a node that starts a run follows its result (the handle's `result` is a
 * promise the node keeps until the run ends), and that follower is the caller's, not the parked run's:
 *
 * - `memory` (MemoryStore) and `pglite` (PGliteStore in a temporary directory): one node starts the runs and runs
 *   them (a store of either kind is one process's). The heap then holds the node's followers of the runs it started
 *   and whatever the runner keeps per parked run, and for `memory` the store's records too (the MemoryStore keeps
 *   them in this heap; PGlite's database is WebAssembly memory, counted under `external`, not the heap).
 * - `postgres` (PostgresStore on a server of the bench's own): an "API node" (no workflow registered) starts the
 *   runs and stops; then a worker node (the workflow registered) takes them from the store, runs each to its signal
 *   wait and parks it. The heap measured is then the worker's: what a node holds for runs parked on it.
 *
 * The baseline is taken on the worker before the runs come, after 100 runs of the same workflow have started,
 * parked, been signalled and ended (so code is compiled and pools are warm). The signals are sent by SIGNALLERS
 * callers at once, each awaiting its signal before sending the next. The bench's own list of run ids
 * (RUNS strings) is in the "after" heap; its size is given beside the figure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore, PGliteStore, PostgresStore, UnifiedOrchestrator, type RunStore } from 'unified-orchestrator';
import { progress } from './harness.js';
import { newDatabase, startPostgresServer, type BenchPostgres } from './postgres-server.js';

type StoreKind = 'memory' | 'postgres' | 'pglite';

const arg = (name: string): string | undefined =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const RUNS = Number(arg('runs') ?? 10_000);
const WARM = 100;
/** Callers sending the signals at once. */
const SIGNALLERS = 64;
/** With `--snapshots`, heap snapshots before the runs and while they are parked (to see what the heap holds). */
const SNAPSHOTS = process.argv.includes('--snapshots');
const kinds = (arg('store')?.split(',') ?? ['memory', 'postgres', 'pglite']) as StoreKind[];

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('Run with node --expose-gc (see the header of bench/workflow-memory.ts)');

/**
 * Timers set (setTimeout, setInterval) while `counting` and not yet cleared or fired, unref'd ones included (which
 * `getActiveResourcesInfo` does not list): the global functions are wrapped, which every timer of src/ goes through.
 */
const timers = new Set<unknown>();
let counting = false;
{
  const g = globalThis as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const [set, clear, repeats] of [
    ['setTimeout', 'clearTimeout', false],
    ['setInterval', 'clearInterval', true],
  ] as const) {
    const original = g[set]!;
    const originalClear = g[clear]!;
    g[set] = (callback: unknown, ...rest: unknown[]) => {
      if (!counting || typeof callback !== 'function') return original(callback, ...rest);
      const timer: unknown = original(
        (...args: unknown[]) => {
          if (!repeats) timers.delete(timer);
          return (callback as (...a: unknown[]) => unknown)(...args);
        },
        ...rest,
      );
      timers.add(timer);
      return timer;
    };
    g[clear] = (timer: unknown) => {
      timers.delete(timer);
      return originalClear(timer);
    };
  }
}

/** Heap after full collections, bytes. */
async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 4; i++) {
    gc!();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage();
}

/** Active resources of this process by kind (`Timeout`, `TCPSocketWrap`, `Immediate`, …). */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

function node(store: RunStore, registered: boolean): UnifiedOrchestrator {
  const o = new UnifiedOrchestrator({
    pools: [],
    metrics: false,
    store,
    durability: { pruneIntervalMs: Infinity, claimIntervalMs: 100, maxClaim: 500 },
  });
  if (registered) {
    o.workflow('parked', { version: '1' }, async (run) => {
      await run.step('before', () => null);
      const go = await run.signal<{ n: number }>('go');
      return go.n;
    });
  }
  return o;
}

/** The node's workflow counts (present: the node has a store, or a workflow registered). */
function wf(o: UnifiedOrchestrator): NonNullable<ReturnType<UnifiedOrchestrator['stats']>['workflows']> {
  const stats = o.stats().workflows;
  if (!stats) throw new Error('the orchestrator reports no workflow stats');
  return stats;
}

async function until(what: string, test: () => boolean, timeoutMs = 600_000): Promise<void> {
  const t0 = Date.now();
  while (!test()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not done in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * An API node (no workflow registered) starts runs `ids` and stops: a worker takes them from the store. A function of
 * its own, so that nothing of the API node (its handles) stays referenced from the caller's suspended frame.
 */
async function startThroughApiNode(store: RunStore, ids: readonly string[]): Promise<void> {
  const api = node(store, false);
  await api.start();
  await Promise.all(ids.map((id) => api.startWorkflow('parked', null, { id, version: '1' }).stored));
  await api.stop();
}

interface MemoryResult {
  readonly store: StoreKind;
  readonly runs: number;
  readonly parkSeconds: number;
  readonly heapPerRunBytes: number;
  readonly externalPerRunBytes: number;
  readonly rssPerRunBytes: number;
  readonly idsBytesPerRun: number;
  readonly timeoutsBefore: number;
  readonly timeoutsAfter: number;
  /** Timers created since the baseline and still pending while the runs are parked, unref'd ones included. */
  readonly liveTimers: number;
  readonly active: number;
  readonly parked: number;
  readonly resourcesAfter: Record<string, number>;
  readonly signalSeconds: number;
}

async function measure(kind: StoreKind, server: BenchPostgres | undefined, db: number): Promise<MemoryResult> {
  const dir = kind === 'pglite' ? mkdtempSync(join(tmpdir(), 'uo-bench-wfmem-')) : undefined;
  const url = kind === 'postgres' ? await newDatabase(server!.url, `wfmem_${db}`) : undefined;
  const newStore = (): RunStore =>
    kind === 'memory'
      ? new MemoryStore()
      : kind === 'postgres'
        ? new PostgresStore({ connectionString: url! })
        : new PGliteStore({ dataDir: dir! });
  try {
    const workerStore = newStore();
    const worker = node(workerStore, true);
    await worker.start();
    let finished = 0;
    const stopListening = await workerStore.onFinished((ids) => {
      for (const id of ids) if (id.startsWith('m-')) finished++;
    });
    try {
      // Warm-up: the whole path once per run, 100 runs.
      const warm = Array.from({ length: WARM }, (_, i) => worker.startWorkflow('parked', null, { id: `w-${i}` }));
      await until('warm-up parks', () => wf(worker).parked >= WARM && wf(worker).active === 0);
      await Promise.all(warm.map((h, i) => worker.signal(h.id, 'go', { n: i })));
      await Promise.all(warm.map((h) => h.result));
      await until('warm-up ends', () => wf(worker).active === 0);

      timers.clear();
      counting = true;
      const before = await settledMemory();
      if (SNAPSHOTS) progress(`heap snapshot before: ${writeHeapSnapshot()}`);
      const timeoutsBefore = resources().Timeout ?? 0;
      const parkedBefore = wf(worker).parked;
      const ids = Array.from({ length: RUNS }, (_, i) => `m-${i}`);
      const t0 = performance.now();
      if (kind !== 'postgres') {
        // One node: a second MemoryStore would be another store, and a second PGliteStore on the same directory
        // another database (PGlite is one process's).
        for (const id of ids) worker.startWorkflow('parked', null, { id });
      } else {
        await startThroughApiNode(newStore(), ids);
      }
      await until('parks', () => wf(worker).parked - parkedBefore >= RUNS && wf(worker).active === 0);
      const parkSeconds = (performance.now() - t0) / 1_000;
      const after = await settledMemory();
      if (SNAPSHOTS) progress(`heap snapshot while parked: ${writeHeapSnapshot()}`);
      const resourcesAfter = resources();
      const liveTimers = timers.size;
      counting = false;
      const stats = wf(worker);
      const idsBytesPerRun = 40; // an array slot (8) and a short one-byte string (about 32)

      const t1 = performance.now();
      // SIGNALLERS callers at once, each sending one signal after another (as many API requests would): not
      // 10,000 at once, which would queue on the store's pool past its connection timeout.
      let next = 0;
      await Promise.all(
        Array.from({ length: SIGNALLERS }, async () => {
          while (next < ids.length) {
            const n = next++;
            await worker.signal(ids[n]!, 'go', { n });
          }
        }),
      );
      await until('ends', () => finished >= RUNS);
      const signalSeconds = (performance.now() - t1) / 1_000;
      return {
        store: kind,
        runs: RUNS,
        parkSeconds,
        heapPerRunBytes: (after.heapUsed - before.heapUsed) / RUNS,
        externalPerRunBytes: (after.external - before.external) / RUNS,
        rssPerRunBytes: (after.rss - before.rss) / RUNS,
        idsBytesPerRun,
        timeoutsBefore,
        timeoutsAfter: resourcesAfter.Timeout ?? 0,
        liveTimers,
        active: stats.active,
        parked: stats.parked - parkedBefore,
        resourcesAfter,
        signalSeconds,
      };
    } finally {
      await stopListening();
      await worker.stop();
    }
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

const server = kinds.some((k) => k === 'postgres') ? await startPostgresServer() : undefined;
try {
  const results: MemoryResult[] = [];
  let db = 0;
  for (const kind of kinds) {
    progress(`${kind}: ${RUNS} runs…`);
    const r = await measure(kind, server, ++db);
    progress(
      `${kind}: ${Math.round(r.heapPerRunBytes)} B heap per parked run, timers ${r.timeoutsBefore} → ${r.timeoutsAfter}, ` +
        `active ${r.active}, signalled all in ${r.signalSeconds.toFixed(2)} s`,
    );
    results.push(r);
  }
  console.log(
    '| store | parked runs | parked in (s) | heap per parked run (B) | external per run (B) | RSS per run (B) | ' +
      "ref'd timers before / after | timers created and pending | runner active | all signalled → all ended (s) | ends/s |",
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of results) {
    console.log(
      `| ${r.store} | ${r.parked.toLocaleString('en')} | ${r.parkSeconds.toFixed(1)} | ${Math.round(r.heapPerRunBytes)} | ` +
        `${Math.round(r.externalPerRunBytes)} | ${Math.round(r.rssPerRunBytes)} | ${r.timeoutsBefore} / ${r.timeoutsAfter} | ` +
        `${r.liveTimers} | ` +
        `${r.active} | ${r.signalSeconds.toFixed(2)} | ${Math.round(r.runs / r.signalSeconds).toLocaleString('en')} |`,
    );
  }
  console.log(
    `\n${RUNS.toLocaleString('en')} runs per store; Node ${process.version}; ${cpus().length} cores, load average ` +
      `${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} at the end; the bench's id list is about 40 B per run of the heap figure.`,
  );
  for (const r of results)
    console.log(`${r.store}: active resources while parked: ${JSON.stringify(r.resourcesAfter)}`);
} finally {
  server?.stop();
}
