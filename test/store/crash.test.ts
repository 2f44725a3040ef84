/**
 * Durable runs survive their process: real child processes (test/fixtures/durable-node.ts) on a real PostgreSQL
 * server, killed with SIGKILL.
 * - A node with 1,000 durable tasks in flight is killed; a second process adopts its work. Every task ends exactly
 *   once (through attach() and in its timeline), none is lost, and only the attempts the kill interrupted run twice.
 * - A poison task that kills its process each time ends dead-lettered after maxRecoveries restarts. (A task running
 *   beside it when it kills the process is taken over as a recovery too: the count is per run, not per culprit.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnifiedOrchestrator } from '../../src/index.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { POSTGRES_SERVER, startPostgres, type TestPostgres } from '../support/postgres.js';
import { eventually } from '../support/agents.js';
import { readAttemptLog } from '../fixtures/durable-log.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixture = fileURLToPath(new URL('../fixtures/durable-node.ts', import.meta.url));

interface Node {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  /** Resolves when the child printed `ready` (every submit stored). */
  readonly ready: Promise<void>;
  /** Ids printed as stored, in order. */
  readonly stored: string[];
}

function startNode(settings: Record<string, unknown>): Node {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, JSON.stringify(settings)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stored: string[] = [];
  let out = '';
  let err = '';
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      if (line.startsWith('stored ')) stored.push(line.split(' ')[1]!);
      else if (line === 'ready') onReady();
    }
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code, signal) => {
      if (code !== 0 && signal === null && err) process.stderr.write(`durable-node stderr:\n${err}\n`);
      resolve(code);
    }),
  );
  return { child, exited, ready, stored };
}

describe.skipIf(POSTGRES_SERVER.skip)('durable runs across SIGKILL (PostgreSQL server, child processes)', () => {
  let pg: TestPostgres;
  let dir: string;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    pg = await startPostgres();
    dir = mkdtempSync(join(tmpdir(), 'uo-crash-'));
  }, 120_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await pg?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a node killed with 1,000 tasks in flight: another process adopts them, each ends once, none is lost', async () => {
    const url = await pg.createDatabase('uo_crash');
    const log = join(dir, 'crash.log');
    const common = { url, leaseMs: 1_500, workMs: 20, agents: 8, log };
    const first = startNode({ ...common, nodeId: 'first', submit: 1_000 });
    children.push(first.child);
    await first.ready;
    expect(first.stored).toHaveLength(1_000);
    // Kill it in the middle of the work.
    await eventually(
      () => readAttemptLog(log).filter((l) => l.kind === 'done').length >= 100,
      60_000,
      '100 tasks done',
    );
    first.child.kill('SIGKILL');
    const killedAt = Date.now();
    await first.exited;

    // What the store holds at the kill: completed runs must not run again.
    const observerStore = new PostgresStore({ connectionString: url });
    await observerStore.open();
    const before = await observerStore.getMany(first.stored);
    await observerStore.close();
    const completedAtKill = new Set(before.filter((r) => r.status === 'completed').map((r) => r.id));
    expect(before).toHaveLength(1_000);
    expect(completedAtKill.size).toBeLessThan(1_000);

    const second = startNode({ ...common, nodeId: 'second', submit: 0 });
    children.push(second.child);
    await second.ready;

    // A third orchestrator, with no agents, follows every task by id.
    const watcher = new UnifiedOrchestrator({
      metrics: false,
      store: new PostgresStore({ connectionString: url }),
      durability: { pollMs: 200 },
    });
    await watcher.start();
    try {
      const settled = new Map<string, number>();
      const all = Promise.all(
        first.stored.map((id) =>
          watcher.attach<{ n: number; doubled: number }>(id).result.then((value) => {
            settled.set(id, (settled.get(id) ?? 0) + 1);
            return value;
          }),
        ),
      );
      let timer: NodeJS.Timeout | undefined;
      const results = await Promise.race([
        all,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            // Say where the missing ones are, rather than time out blind.
            const missing = first.stored.filter((id) => !settled.has(id));
            void Promise.all([watcher.runs.get(missing[0]!), watcher.runs.events(missing[0]!)]).then(
              ([run, events]) =>
                reject(
                  new Error(
                    `${missing.length} task(s) never settled; the first: ${JSON.stringify(run)} ${JSON.stringify(events)}; second node exit code ${second.child.exitCode}`,
                  ),
                ),
              reject,
            );
          }, 60_000);
        }),
      ]).finally(() => clearTimeout(timer));
      const recoveredAfterMs = Date.now() - killedAt;
      for (const r of results) expect(r.doubled).toBe(r.n * 2);
      expect(new Set(results.map((r) => r.n)).size).toBe(1_000);
      expect([...settled.values()].every((n) => n === 1)).toBe(true);

      const lines = readAttemptLog(log);
      const starts = (pid: number | undefined) => {
        const counts = new Map<string, number>();
        for (const l of lines) if (l.kind === 'start' && l.pid === pid) counts.set(l.id, (counts.get(l.id) ?? 0) + 1);
        return counts;
      };
      const inFirst = starts(first.child.pid);
      const inSecond = starts(second.child.pid);
      // Nothing lost: every task ran somewhere. Nothing run twice in one process.
      for (const id of first.stored) expect((inFirst.get(id) ?? 0) + (inSecond.get(id) ?? 0)).toBeGreaterThan(0);
      expect([...inFirst.values(), ...inSecond.values()].every((n) => n === 1)).toBe(true);
      // Only the interrupted attempts ran twice: started by the first process and not completed in the store.
      const twice = first.stored.filter((id) => inFirst.has(id) && inSecond.has(id));
      for (const id of twice) expect(completedAtKill.has(id)).toBe(false);
      for (const id of completedAtKill) expect(inSecond.has(id)).toBe(false);
      // The agent sees a recovery where the dead node had started it.
      const recoveryOf = new Map(
        lines.filter((l) => l.kind === 'start' && l.pid === second.child.pid).map((l) => [l.id, l.recoveries]),
      );
      for (const id of twice) expect(recoveryOf.get(id)).toBe(1);
      // Every timeline has exactly one end.
      for (const id of first.stored.slice(0, 200)) {
        const kinds = (await watcher.runs.events(id)).map((e) => e.kind);
        expect(kinds.filter((k) => k === 'completed')).toHaveLength(1);
      }
      process.stdout.write(
        `crash test: ${completedAtKill.size} completed at the kill, ${twice.length} interrupted attempts ran again, all 1,000 ended ${recoveredAfterMs} ms after the kill (lease 1,500 ms)\n`,
      );
    } finally {
      await watcher.stop();
      second.child.kill('SIGTERM');
      await second.exited;
    }
  }, 180_000);

  it('a poison task that kills its process every time ends dead-lettered instead of crash-looping the node', async () => {
    const url = await pg.createDatabase('uo_poison');
    const log = join(dir, 'poison.log');
    // The same node name each time: a restart takes the old process's runs back as recoveries.
    const settings = { url, nodeId: 'poisoned', leaseMs: 1_000, workMs: 200, agents: 2, log, maxRecoveries: 3 };
    let node = startNode({ ...settings, submit: 0, poison: true });
    children.push(node.child);
    const deaths: (number | null)[] = [];
    for (let restart = 0; restart < 6; restart++) {
      const outcome = await Promise.race([node.exited.then((code) => ({ code })), node.ready.then(() => 'ready')]);
      if (typeof outcome !== 'string') {
        deaths.push(outcome.code);
        node = startNode({ ...settings, submit: 0 });
        children.push(node.child);
        continue;
      }
      // Alive and ready: it survived its start; did it stay up (no poison left to run)?
      const died = await Promise.race([
        node.exited.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 2_000)),
      ]);
      if (!died) break;
      deaths.push(null);
      node = startNode({ ...settings, submit: 0 });
      children.push(node.child);
    }
    const store = new PostgresStore({ connectionString: url });
    await store.open();
    try {
      const { runs } = await store.list({ type: 'poison' });
      expect(runs).toHaveLength(1);
      const poison = runs[0]!;
      await eventually(async () => (await store.get(poison.id))?.status === 'dead-lettered', 10_000, 'the dead letter');
      const runsOfPoison = readAttemptLog(log).filter((l) => l.kind === 'start' && l.id === poison.id);
      // Its first run and two recoveries; the third take-over dead-letters it instead of running it.
      expect(runsOfPoison.map((l) => l.recoveries)).toEqual([0, 1, 2]);
      expect(deaths).toHaveLength(3);
      expect((await store.get(poison.id))?.error?.message).toMatch(/died while holding it 3 time/);
    } finally {
      await store.close();
      node.child.kill('SIGTERM');
      await node.exited;
    }
  }, 120_000);
});
