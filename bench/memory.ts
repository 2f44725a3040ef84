/**
 * Memory: base overhead of an orchestrator with 75 idle agents over a bare Node process, and heap growth after a
 * million completed tasks (quick: 100,000) and a GC. Measured in a child process (bench/memory-child.ts) with
 * `--expose-gc`, so that neither this process's own garbage nor its other suites blur the readings.
 *
 * The child imports the library the same way as the rest of the suite (src/ under tsx, or dist/ with --build, as
 * it inherits the environment). Both heap and RSS are reported; the seed's 50 MB is checked against RSS, the
 * project's 10 MB against heap.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { MemoryChildReport, MemoryReading } from './memory-child.js';
import type { BenchSettings } from './settings.js';

export interface MemoryResult {
  readonly agents: number;
  /** Orchestrator with its agents, started, over the bare process (library load included). */
  readonly baseOverhead: { readonly heapMB: number; readonly rssMB: number };
  /** Of which: importing the library. */
  readonly libraryLoad: { readonly heapMB: number; readonly rssMB: number };
  /** Heap after `tasks` more completed tasks and a GC, over the heap after the warm-up. */
  readonly heapGrowthMB: number;
  readonly tasks: number;
  readonly readings: MemoryChildReport;
}

const root = fileURLToPath(new URL('..', import.meta.url));
const child = fileURLToPath(new URL('./memory-child.ts', import.meta.url));

function runChild(tasks: number, warmup: number): Promise<MemoryChildReport> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', child, '--tasks', String(tasks), '--warmup', String(warmup)],
      {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`memory child exited with ${code}: ${err.trim() || out.trim()}`));
      try {
        resolve(JSON.parse(line) as MemoryChildReport);
      } catch {
        reject(new Error(`memory child printed no JSON: ${out.trim()} ${err.trim()}`));
      }
    });
  });
}

const delta = (a: MemoryReading, b: MemoryReading): { heapMB: number; rssMB: number } => ({
  heapMB: b.heapUsedMB - a.heapUsedMB,
  rssMB: b.rssMB - a.rssMB,
});

export async function benchMemory(settings: BenchSettings): Promise<MemoryResult> {
  const r = await runChild(settings.memory.tasks, settings.memory.warmupTasks);
  return {
    agents: r.agents,
    baseOverhead: delta(r.bare, r.started),
    libraryLoad: delta(r.bare, r.libraryLoaded),
    heapGrowthMB: r.afterTasks.heapUsedMB - r.warmedUp.heapUsedMB,
    tasks: r.tasks,
    readings: r,
  };
}
