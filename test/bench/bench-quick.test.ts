/**
 * The benchmark suite runs in --quick mode and writes a complete, valid JSON report. This checks the shape and
 * that every figure is present and finite, never how fast anything was: speed is for `npm run bench` to show.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIGURE_IDS, type BenchReport } from '../../bench/report.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const entry = fileURLToPath(new URL('../../bench/index.ts', import.meta.url));

let dir: string;
let run: { code: number | null; stdout: string; stderr: string };
let report: BenchReport;

/** Runs the quick suite in its own Node process, writing the JSON into a temporary directory (not bench/results). */
function runQuick(out: string): Promise<typeof run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', entry, '--quick', '--out', out], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Every number anywhere in `value`, with its path. */
function numbers(value: unknown, path = '$'): Array<[string, number]> {
  if (typeof value === 'number') return [[path, value]];
  if (Array.isArray(value)) return value.flatMap((v, i) => numbers(v, `${path}[${i}]`));
  if (typeof value === 'object' && value !== null)
    return Object.entries(value).flatMap(([k, v]) => numbers(v, `${path}.${k}`));
  return [];
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'uo-bench-'));
  const out = join(dir, 'latest.json');
  run = await runQuick(out);
  if (run.code === 0) report = JSON.parse(await readFile(out, 'utf8')) as BenchReport;
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('npm run bench -- --quick', () => {
  it('exits 0 and prints the table', () => {
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^\| Figure \| Measured \| Seed target \| Project target \| Pass\/miss/m);
    for (const id of FIGURE_IDS) expect(report.figures.some((f) => f.id === id)).toBe(true);
  });

  it('writes every figure, each with its targets and a finite measured value', () => {
    expect(report.quick).toBe(true);
    expect(Number.isNaN(Date.parse(report.date))).toBe(false);
    expect(report.figures.map((f) => f.id)).toEqual([...FIGURE_IDS]);
    for (const f of report.figures) {
      expect(f.value, f.id).not.toBe('');
      expect(f.seed !== null || f.project !== null, `${f.id} has no target`).toBe(true);
      for (const v of [f.seed, f.project]) {
        if (v === null) continue;
        expect(v.target, f.id).not.toBe('');
        expect(Number.isFinite(v.measured), `${f.id}: ${v.target}`).toBe(true);
        expect(typeof v.pass, f.id).toBe('boolean');
      }
    }
  });

  it('reports every suite, with only finite numbers in the details', () => {
    for (const suite of ['registration', 'delegation', 'throughput', 'scale', 'stress', 'memory', 'bridge'] as const) {
      expect(report.results[suite], suite).toBeDefined();
    }
    const bad = numbers(report.results).filter(([, n]) => !Number.isFinite(n));
    expect(bad).toEqual([]);
    expect(report.results.scale?.fleets.map((f) => f.agents)).toEqual([75, 1_000, 10_000]);
    // The stress check is a correctness check, not a speed one: it must hold in any mode.
    expect(report.results.stress?.everyTaskTerminalOnce).toBe(true);
  });
});
