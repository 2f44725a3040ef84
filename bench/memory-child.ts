/**
 * The memory case, in a process of its own (bench/memory.ts starts it):
 *
 *   node --expose-gc --import tsx bench/memory-child.ts --tasks 1000000 --warmup 20000
 *
 * Readings, each after a full GC: (0) the bare process; (1) the library imported; (2) an orchestrator started
 * with 75 idle agents; (3) after a warm-up of tasks; (4) after `--tasks` more completed tasks. Base overhead is
 * (2) − (0); heap growth is (4) − (3), which is where a leak shows. Prints one JSON line on stdout.
 *
 * Nothing but node:util and ./load.js (which imports nothing) is loaded before reading (0).
 */
import { parseArgs } from 'node:util';
import { nextTurn, noop, runWindowed } from './load.js';

export interface MemoryReading {
  readonly heapUsedMB: number;
  readonly rssMB: number;
  readonly externalMB: number;
}

export interface MemoryChildReport {
  readonly bare: MemoryReading;
  readonly libraryLoaded: MemoryReading;
  readonly started: MemoryReading;
  readonly warmedUp: MemoryReading;
  readonly afterTasks: MemoryReading;
  readonly agents: number;
  readonly tasks: number;
  readonly warmupTasks: number;
  readonly tasksElapsedMs: number;
}

const MB = 1024 * 1024;

async function settledReading(): Promise<MemoryReading> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('Run with --expose-gc');
  // A few rounds: finalizers and weak references released by one GC free more in the next.
  for (let i = 0; i < 4; i++) {
    gc();
    await nextTurn();
  }
  const m = process.memoryUsage();
  return { heapUsedMB: m.heapUsed / MB, rssMB: m.rss / MB, externalMB: m.external / MB };
}

const { values } = parseArgs({
  options: { tasks: { type: 'string', default: '100000' }, warmup: { type: 'string', default: '20000' } },
});
const tasks = Number(values.tasks);
const warmupTasks = Number(values.warmup);
const AGENTS = 75;
const WINDOW = 1_000;

const bare = await settledReading();
const { UnifiedOrchestrator } = await import('unified-orchestrator');
const libraryLoaded = await settledReading();

const orchestrator = new UnifiedOrchestrator({
  pools: [
    {
      role: 'worker',
      capabilities: ['work'],
      create: () => ({ execute: noop }),
      minAgents: AGENTS,
      maxAgents: AGENTS,
      warmSpares: 0,
    },
  ],
});
await orchestrator.start();
const started = await settledReading();

const task = { type: 'noop', requires: ['work'] };
const warm = await runWindowed(warmupTasks, WINDOW, () => orchestrator.submit(task));
const warmedUp = await settledReading();
const run = await runWindowed(tasks, WINDOW, () => orchestrator.submit(task));
const afterTasks = await settledReading();
await orchestrator.stop();

if (warm.rejected + run.rejected > 0) throw new Error(`${warm.rejected + run.rejected} no-op tasks failed`);
const report: MemoryChildReport = {
  bare,
  libraryLoaded,
  started,
  warmedUp,
  afterTasks,
  agents: AGENTS,
  tasks,
  warmupTasks,
  tasksElapsedMs: run.elapsedMs,
};
process.stdout.write(`${JSON.stringify(report)}\n`);
