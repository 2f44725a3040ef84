/**
 * The cost of progress reporting (issue 19), with tinybench: batches of 1,000 no-op tasks through `submit` and
 * `delegate` with an agent that never reports (the path every existing agent takes: it must not get slower), one
 * that reports once per task with nobody reading, and one that reports once with a `task:progress` listener; then
 * the heap bytes of one `ctx.progress` call with nobody reading. Run against another checkout's source to compare:
 * `node --expose-gc --import tsx bench/progress-cost.ts [path/to/src/index.ts]`.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Bench } from 'tinybench';
import type * as Lib from '../src/index.js';

const entry = process.argv[2] ? pathToFileURL(resolve(process.argv[2])).href : '../src/index.js';
const lib = (await import(entry)) as typeof Lib;
const BATCH = 1_000;

type Mode = 'silent' | 'reports' | 'reports+listener';

async function fleet(mode: Mode): Promise<Lib.UnifiedOrchestrator> {
  const agent: Lib.Agent =
    mode === 'silent'
      ? { execute: () => 1 }
      : { execute: (ctx) => ((ctx as { progress: (v: unknown) => boolean }).progress(1), 1) };
  const o = new lib.UnifiedOrchestrator({
    metrics: false,
    tracing: false,
    pools: [{ role: 'w', capabilities: ['work'], create: () => agent, minAgents: 8, maxAgents: 8, warmSpares: 0 }],
  });
  await o.start();
  if (mode === 'reports+listener') o.on('task:progress' as never, () => {});
  return o;
}

const TASK = { type: 't', requires: ['work'] };
const hasProgress = 'ProgressFeed' in lib;
const modes: Mode[] =
  hasProgress && !process.env['SILENT_ONLY'] ? ['silent', 'reports', 'reports+listener'] : ['silent'];
const bench = new Bench({ time: 2_000, warmupTime: 500 });
const nodes: Lib.UnifiedOrchestrator[] = [];
for (const mode of modes) {
  const o = await fleet(mode);
  nodes.push(o);
  bench.add(`submit x${BATCH}, agent ${mode}`, async () => {
    const all: Promise<unknown>[] = [];
    for (let i = 0; i < BATCH; i++) all.push(o.submit(TASK));
    await Promise.all(all);
  });
  bench.add(`delegate x${BATCH}, agent ${mode}`, async () => {
    const all: Promise<unknown>[] = [];
    for (let i = 0; i < BATCH; i++) all.push(o.delegate(TASK).result);
    await Promise.all(all);
  });
}
await bench.run();
console.log(`source: ${process.argv[2] ?? 'this checkout'}`);
console.table(
  bench.tasks.map((t) => {
    const r = t.result as { throughput?: { mean: number }; latency?: { mean: number; rme: number } } | undefined;
    return {
      case: t.name,
      'tasks/s': Math.round((r?.throughput?.mean ?? 0) * BATCH),
      'ms per batch': r?.latency?.mean.toFixed(3),
      'rme %': r?.latency?.rme.toFixed(2),
    };
  }),
);

// Heap per ctx.progress call with nobody reading or listening: one task reports N times.
const gc = (globalThis as { gc?: () => void }).gc;
if (hasProgress && gc) {
  const N = 200_000;
  let report: ((v: unknown) => boolean) | undefined;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const o = new lib.UnifiedOrchestrator({ metrics: false, tracing: false });
  await o.start();
  o.registerAgent(
    {
      execute: async (ctx) => {
        report = (ctx as { progress: (v: unknown) => boolean }).progress;
        await held;
      },
    },
    { id: 'a', capabilities: ['work'] },
  );
  const h = o.delegate(TASK);
  report!(0); // the feed is made with the first report
  const value = { step: 1 };
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < N; i++) report!(value);
  const after = process.memoryUsage().heapUsed;
  console.log(
    `heap per ctx.progress call, nobody reading (no GC in between): ${((after - before) / N).toFixed(1)} bytes`,
  );
  release();
  await h.result;
  await o.stop();
}
for (const o of nodes) await o.stop();
