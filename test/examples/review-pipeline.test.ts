/**
 * examples/review-pipeline.ts, run as a user runs it: a child process, killed with SIGKILL and started again.
 *
 * - On a PostgreSQL server (test/support/postgres.ts): killed while a model call of the critique loop runs, the run
 *   goes on in the next process from its last checkpoint and ends once. The agents' call log, compared with the step
 *   records the store held at the kill, shows the rule of docs/workflows.md ("Exactly once, at least once"): a step
 *   whose checkpoint was committed never runs again; only a step without one may run twice (once per process).
 * - Killed just as a model call ended (its checkpoint committed or not, as the kill falls): the same rule holds.
 * - Killed while parked on its approval, started again, approved from another orchestrator on the same store: it
 *   publishes once, and no model call is made again.
 * - On the embedded store (PGlite, nothing to install), run plainly: it approves itself and prints the timeline; run
 *   again with the same data directory, it prints the finished run and calls no agent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PostgresStore, UnifiedOrchestrator } from '../../src/index.js';
import type { StepRecord } from '../../src/store/store.js';
import { eventually } from '../support/agents.js';
import { POSTGRES_SERVER, postgresForSuite } from '../support/postgres.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The steps of the pipeline, in order, as the example names them. */
const TIMELINE = [
  ['research', 'task'],
  ['draft', 'task'],
  ['critique 1', 'task'],
  ['revise 1', 'task'],
  ['critique 2', 'task'],
  ['revise 2', 'task'],
  ['approval', 'signal'],
  ['publish', 'step'],
] as const;
const TASK_STEPS = TIMELINE.filter(([, kind]) => kind === 'task').map(([name]) => name);

interface Example {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Settles when the process has exited: its code, or the signal that killed it, and its output. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>;
  /** Resolves once a line of its stdout matches `pattern`. */
  printed(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

/** One line of the example's call log. */
interface Call {
  readonly pid: number;
  readonly event: 'call' | 'done' | 'publish';
  readonly step?: string;
  readonly recoveries?: number;
  readonly key?: string;
}

const children: ChildProcess[] = [];

/** Starts the example with `args`; `databaseUrl` picks the server, else it runs on PGlite. */
function startExample(args: readonly string[], databaseUrl: string | undefined): Example {
  const env = { ...process.env };
  if (databaseUrl === undefined) delete env['DATABASE_URL'];
  else env['DATABASE_URL'] = databaseUrl;
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/review-pipeline.ts', ...args], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  const listeners = new Set<() => void>();
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    for (const listener of listeners) listener();
  });
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, out })),
  );
  const printed = (pattern: RegExp, timeoutMs = 60_000): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!out.split('\n').some((line) => pattern.test(line))) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`the example did not print ${String(pattern)} within ${timeoutMs} ms; its output:\n${out}`));
      }, timeoutMs);
      const gone = (): void => {
        cleanup();
        reject(new Error(`the example exited before printing ${String(pattern)}; its output:\n${out}`));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        listeners.delete(check);
        child.removeListener('exit', gone);
      };
      listeners.add(check);
      child.once('exit', gone);
      check();
    });
  return { child, pid: child.pid!, exited, printed };
}

/** Kills the example with SIGKILL, as an OOM kill or a crash would, and waits for it to be gone. */
async function kill(example: Example): Promise<void> {
  example.child.kill('SIGKILL');
  const { signal } = await example.exited;
  expect(signal).toBe('SIGKILL');
}

/** Waits for the example to end by itself; expects exit code 0 and returns its output. */
async function ends(example: Example): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    example.exited,
    new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), 60_000))),
  ]).finally(() => clearTimeout(timer));
  if (outcome === 'hung') throw new Error('the example did not end within 60 s');
  if (outcome.code !== 0) throw new Error(`the example exited with ${outcome.code ?? outcome.signal}:\n${outcome.out}`);
  return outcome.out;
}

function readCalls(file: string): Call[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Call);
}

/** How many times each step's model was called, in all processes or in one. */
function callCounts(calls: readonly Call[], pid?: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (const c of calls) {
    if (c.event !== 'call' || (pid !== undefined && c.pid !== pid)) continue;
    counts.set(c.step!, (counts.get(c.step!) ?? 0) + 1);
  }
  return counts;
}

/** The result the example printed (a JSON line; the store may give the keys in another order). */
function printedResult(out: string): unknown {
  const line = out.split('\n').find((l) => l.startsWith('result: '));
  if (line === undefined) throw new Error(`the example printed no result; its output:\n${out}`);
  return JSON.parse(line.slice('result: '.length));
}

/**
 * The rule of docs/workflows.md ("Exactly once, at least once"), step by step: every model call of the pipeline
 * was made; a step whose checkpoint was committed at the kill was called once, in the first process; a step without
 * one may have been called in both processes, but at most once in each.
 */
function expectCheckpointRule(
  calls: readonly Call[],
  committedAtKill: ReadonlySet<string>,
  firstPid: number,
  secondPid: number,
): void {
  const all = callCounts(calls);
  const inFirst = callCounts(calls, firstPid);
  const inSecond = callCounts(calls, secondPid);
  for (const step of TASK_STEPS) {
    expect(all.get(step), step).toBeGreaterThanOrEqual(1);
    if (committedAtKill.has(step)) {
      expect(all.get(step), `${step} was checkpointed at the kill`).toBe(1);
      expect(inSecond.get(step), `${step} was checkpointed at the kill`).toBeUndefined();
    } else {
      expect(inFirst.get(step) ?? 0, step).toBeLessThanOrEqual(1);
      expect(inSecond.get(step) ?? 0, step).toBeLessThanOrEqual(1);
    }
  }
}

function ended(step: StepRecord): boolean {
  return step.status === 'completed' || step.status === 'failed';
}

afterEach(() => {
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

describe.skipIf(POSTGRES_SERVER.skip)('review-pipeline.ts killed with SIGKILL (PostgreSQL server)', () => {
  const pg = postgresForSuite();
  let dir: string;
  let watcher: UnifiedOrchestrator | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'uo-review-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await watcher?.stop();
    watcher = undefined;
  });

  /** An orchestrator with no agents and no workflows on the same database: it reads the store and sends signals. */
  async function watch(url: string): Promise<UnifiedOrchestrator> {
    watcher = new UnifiedOrchestrator({ metrics: false, store: new PostgresStore({ connectionString: url }) });
    await watcher.start();
    return watcher;
  }

  it('killed during a model call of the critique loop, it goes on from its last checkpoint; no committed step runs twice', async () => {
    const url = await pg().createDatabase('uo_review');
    const log = join(dir, 'mid-pipeline.log');
    const runId = 'review:killed-mid-pipeline';
    const args = ['--run-id', runId, '--call-log', log, '--work-ms', '400'];

    const first = startExample(args, url);
    await eventually(
      () => readCalls(log).some((c) => c.event === 'call' && c.step === 'critique 1'),
      60_000,
      'the first critique to start',
    );
    await kill(first);

    // At the kill: the first critique's model call had started and not ended, so its step has no checkpoint.
    const atKill = readCalls(log);
    const running = [...callCounts(atKill)].filter(
      ([step]) => !atKill.some((c) => c.event === 'done' && c.step === step),
    );
    expect(running).toEqual([['critique 1', 1]]);
    const observer = await watch(url);
    const committedAtKill = new Set((await observer.runs.steps(runId)).steps.filter(ended).map((s) => s.name));
    // A step returns only once its checkpoint is committed, and the critique started after the draft returned.
    expect([...committedAtKill]).toEqual(['research', 'draft']);

    const second = startExample(args, url);
    const out = await ends(second);
    expect(out).toMatch(/^run review:killed-mid-pipeline found in the store \(\w+, 2 steps done\)/m);

    const calls = readCalls(log);
    expectCheckpointRule(calls, committedAtKill, first.pid, second.pid);
    const all = callCounts(calls);
    // Here, precisely: the critique cut short by the kill ran again, as a recovery; every other call was made once.
    expect(Object.fromEntries(all)).toEqual({
      research: 1,
      draft: 1,
      'critique 1': 2,
      'revise 1': 1,
      'critique 2': 1,
      'revise 2': 1,
    });
    const again = calls.filter((c) => c.pid === second.pid && c.event === 'call' && c.step === 'critique 1');
    expect(again.map((c) => c.recoveries)).toEqual([1]);
    expect(calls.filter((c) => c.event === 'publish')).toEqual([
      { pid: second.pid, event: 'publish', key: `${runId}:7` },
    ]);

    // The run ended once, completed, with the whole timeline and each model call's cost counted once.
    const run = await observer.runs.get(runId);
    expect(run?.status).toBe('completed');
    expect(run?.result).toEqual({
      published: true,
      rounds: 2,
      text: expect.stringMatching(/\[revised: revise 1\] \[revised: revise 2\]$/) as unknown,
      approvedBy: 'editor@example.com',
      url: 'https://blog.example.com/Widget%202.0',
    });
    const { steps, signals } = await observer.runs.steps(runId);
    expect(steps.map((s) => [s.name, s.kind])).toEqual(TIMELINE);
    expect(steps.every((s) => s.status === 'completed')).toBe(true);
    expect(steps.map((s) => s.cost)).toEqual([4, 12, 3, 8, 3, 8, 0, 0]);
    expect(run?.cost).toBe(38);
    expect(signals).toMatchObject([{ name: 'approval', actor: 'editor', consumedBy: 6 }]);
    const events = (await observer.runs.events(runId)).map((e) => e.kind);
    expect(events.filter((k) => k === 'completed')).toHaveLength(1);
    // What the example prints: the timeline from runs.steps and the result.
    expect(out).toMatch(/^ {2}2\. critique 1 \(task on critic-\d+\): completed, \d+ ms, 3¢$/m);
    expect(out).toMatch(/^ {2}6\. approval \(signal\): completed/m);
    expect(printedResult(out)).toEqual(run?.result);
    expect(out).toContain('cost: 38¢ of a 60¢ budget');
  }, 180_000);

  it('killed just as a model call of the loop ended (its checkpoint committed or not), it still runs no committed step twice', async () => {
    const url = await pg().createDatabase('uo_review');
    const log = join(dir, 'call-ended.log');
    const runId = 'review:killed-as-a-call-ended';
    const args = ['--run-id', runId, '--call-log', log, '--work-ms', '200'];

    const first = startExample(args, url);
    await eventually(
      () => readCalls(log).some((c) => c.event === 'done' && c.step === 'revise 1'),
      60_000,
      'the first revision to end',
    );
    await kill(first);
    const observer = await watch(url);
    const committedAtKill = new Set((await observer.runs.steps(runId)).steps.filter(ended).map((s) => s.name));
    expect(committedAtKill).toContain('critique 1');

    const second = startExample(args, url);
    await ends(second);
    const calls = readCalls(log);
    expectCheckpointRule(calls, committedAtKill, first.pid, second.pid);
    expect(calls.filter((c) => c.event === 'publish')).toHaveLength(1);
    const run = await observer.runs.get(runId);
    expect(run).toMatchObject({ status: 'completed', result: { published: true, rounds: 2 } });
    const { steps } = await observer.runs.steps(runId);
    expect(steps.map((s) => [s.name, s.kind, s.status])).toEqual(TIMELINE.map(([n, k]) => [n, k, 'completed']));
    // Each step counts the cost of the call whose result it holds (a call cut short by the kill reported nothing).
    expect(steps.map((s) => s.cost)).toEqual([4, 12, 3, 8, 3, 8, 0, 0]);
  }, 180_000);

  it('killed while parked on its approval, started again and approved from another process, it publishes once', async () => {
    const url = await pg().createDatabase('uo_review');
    const log = join(dir, 'parked.log');
    const runId = 'review:killed-while-parked';
    const args = ['--run-id', runId, '--call-log', log, '--work-ms', '100', '--no-approve'];

    const first = startExample(args, url);
    await first.printed(/is waiting for approval/);
    const observer = await watch(url);
    // Parked: no node holds it, it waits for the approval, and its wait is a record of the store.
    const parked = await observer.runs.get(runId);
    expect(parked).toMatchObject({ status: 'queued', owner: null, waitingFor: ['approval'] });
    const history = await observer.runs.steps(runId);
    expect(history.steps.map((s) => [s.name, s.status])).toEqual([
      ...TASK_STEPS.map((name) => [name, 'completed']),
      ['approval', 'waiting'],
    ]);
    await kill(first);

    const second = startExample(args, url);
    await second.printed(/^run review:killed-while-parked found in the store \(queued, 6 steps done\)/);
    await second.printed(/is waiting for approval/);
    const delivered = await observer.signal(
      runId,
      'approval',
      { approved: true, by: 'reviewer@example.com' },
      { actor: 'reviewer' },
    );
    expect(delivered).toBe(true);
    const out = await ends(second);
    expect(printedResult(out)).toMatchObject({ published: true, rounds: 2, approvedBy: 'reviewer@example.com' });

    // Every model call was made once, all before the kill; the publish once, after the approval.
    const calls = readCalls(log);
    expect(Object.fromEntries(callCounts(calls))).toEqual(Object.fromEntries(TASK_STEPS.map((step) => [step, 1])));
    expect(callCounts(calls, second.pid).size).toBe(0);
    expect(calls.filter((c) => c.event === 'publish')).toEqual([
      { pid: second.pid, event: 'publish', key: `${runId}:7` },
    ]);
    const run = await observer.runs.get(runId);
    expect(run).toMatchObject({ status: 'completed', cost: 38 });
    const { steps, signals } = await observer.runs.steps(runId);
    expect(steps.map((s) => [s.name, s.kind, s.status])).toEqual(TIMELINE.map(([n, k]) => [n, k, 'completed']));
    expect(steps[6]?.result).toEqual({ approved: true, by: 'reviewer@example.com' });
    expect(signals).toMatchObject([{ name: 'approval', actor: 'reviewer', consumedBy: 6 }]);
  }, 180_000);
});

describe('review-pipeline.ts on the embedded store (PGlite)', () => {
  it('runs to the end as a user runs it, and run again prints the finished run without calling an agent', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uo-review-pglite-'));
    try {
      const log = join(dir, 'calls.log');
      const args = ['--data-dir', join(dir, 'data'), '--call-log', log, '--work-ms', '50'];
      const out = await ends(startExample(args, undefined));
      expect(out).toMatch(/^run review:launch-notes started$/m);
      expect(out).toMatch(/^run review:launch-notes is waiting for approval$/m);
      expect(out).toMatch(/^approval sent$/m);
      const timeline = out.split('\n').filter((line) => /^ {2}\d\. /.test(line));
      expect(timeline.map((line) => line.replace(/^ {2}\d\. (.+?) \(.*$/, '$1'))).toEqual(TIMELINE.map(([n]) => n));
      const result = printedResult(out);
      expect(result).toMatchObject({ published: true, rounds: 2, approvedBy: 'editor@example.com' });
      expect(out).toContain('cost: 38¢ of a 60¢ budget');
      const calls = readCalls(log);
      expect(Object.fromEntries(callCounts(calls))).toEqual(Object.fromEntries(TASK_STEPS.map((step) => [step, 1])));

      const again = await ends(startExample(args, undefined));
      expect(again).toMatch(/^run review:launch-notes found in the store \(completed, 8 steps done\)/m);
      expect(again).not.toMatch(/waiting for approval/);
      expect(printedResult(again)).toEqual(result);
      expect(readCalls(log)).toHaveLength(calls.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
