/**
 * The CLI's `runs` commands (src/cli/runs.ts) against a real PostgreSQL server that the test helper starts, filled by
 * an orchestrator on a PostgresStore: list with its filters, --json and cursor paging, show, events, retry (the new
 * run is claimed and run by the orchestrator on the same database), unknown ids, a missing or unreachable store, bad
 * flags; and `--pglite` on an embedded store's data directory. The CLI runs in this process through its `run()`
 * entry, except one child process through src/bin.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnifiedOrchestrator, type RunEvent, type RunRecord, type TaskContext } from '../../src/index.js';
import { run } from '../../src/cli/cli.js';
import { PGliteStore } from '../../src/store/pglite-store.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { freePort } from '../support/free-port.js';
import { POSTGRES_SERVER, startPostgres, type TestPostgres } from '../support/postgres.js';
import { eventually } from '../support/agents.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI in this process with `env` as its whole environment. */
async function cli(args: readonly string[], env: Record<string, string | undefined>): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await run(args, { env, write: (t) => (stdout += t), error: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

/** `cli` with `--json`, expecting exit 0: the parsed object. */
async function json<T>(args: readonly string[], env: Record<string, string | undefined>): Promise<T> {
  const r = await cli([...args, '--json'], env);
  expect(r.code, r.stderr || r.stdout).toBe(0);
  expect(r.stdout.trim().split('\n')).toHaveLength(1);
  return JSON.parse(r.stdout) as T;
}

describe.skipIf(POSTGRES_SERVER.skip)('unified-orchestrator runs (PostgreSQL server)', () => {
  let pg: TestPostgres;
  let url: string;
  let env: Record<string, string>;
  let orchestrator: UnifiedOrchestrator;
  let store: PostgresStore;
  /** While false, tasks with `flaky` fail. */
  let healed = false;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const ids: Record<string, string[]> = { acmeReport: [], globexMail: [] };
  let deadId: string;
  let liveId: string;
  let all: RunRecord[];

  beforeAll(async () => {
    pg = await startPostgres();
    url = await pg.createDatabase('uo_cli_runs');
    env = { DATABASE_URL: url };
    store = new PostgresStore({ connectionString: url });
    orchestrator = new UnifiedOrchestrator({
      pools: [
        {
          role: 'worker',
          capabilities: ['work'],
          minAgents: 2,
          maxAgents: 2,
          create: () => ({
            execute: async (ctx: TaskContext<{ n?: number; flaky?: boolean; hold?: boolean }>) => {
              if (ctx.payload.hold) await gate;
              if (ctx.payload.flaky && !healed) throw new Error('upstream said no');
              return { echo: ctx.payload.n ?? null };
            },
          }),
        },
      ],
      metrics: false,
      retry: { baseDelayMs: 1 },
      store,
      durability: { leaseMs: 2_000, heartbeatMs: 300, claimIntervalMs: 50, pollMs: 50 },
    });
    await orchestrator.start();
    // Created one after another, so that createdAt orders them.
    for (let n = 0; n < 5; n++) {
      const h = await orchestrator.enqueue({ type: 'report', requires: ['work'], payload: { n }, tenantId: 'acme' });
      ids.acmeReport!.push(h.id);
      await h.result;
      await new Promise((r) => setTimeout(r, 3));
    }
    for (let n = 0; n < 2; n++) {
      const h = await orchestrator.enqueue({ type: 'mail', requires: ['work'], payload: { n }, tenantId: 'globex' });
      ids.globexMail!.push(h.id);
      await h.result;
      await new Promise((r) => setTimeout(r, 3));
    }
    const dead = await orchestrator.enqueue({
      type: 'report',
      requires: ['work'],
      payload: { n: 99, flaky: true },
      tenantId: 'acme',
      maxAttempts: 2,
    });
    deadId = dead.id;
    await expect(dead.result).rejects.toThrow('upstream said no');
    const live = await orchestrator.enqueue({ type: 'slow', requires: ['work'], payload: { hold: true } });
    liveId = live.id;
    await eventually(async () => (await store.get(deadId))?.status === 'dead-lettered');
    await eventually(async () => (await store.get(liveId))?.status === 'running');
    await eventually(async () => (await store.list({ status: 'completed' })).runs.length === 7);
    all = [...(await store.list()).runs];
  }, 120_000);

  afterAll(async () => {
    release?.();
    await orchestrator?.stop({ drain: false, timeoutMs: 5_000 });
    await store?.close();
    await pg?.close();
  }, 60_000);

  it('runs list --json: every run newest first, and each filter', async () => {
    const list = (...args: string[]) =>
      json<{ ok: boolean; runs: RunRecord[]; cursor: string | null }>(['runs', 'list', ...args], env);
    const everything = await list();
    expect(everything.ok).toBe(true);
    expect(everything.cursor).toBeNull();
    expect(everything.runs.map((r) => r.id)).toEqual(all.map((r) => r.id));
    expect(everything.runs).toHaveLength(9);
    expect(everything.runs[0]!.id).toBe(liveId);

    expect((await list('--tenant', 'acme')).runs.map((r) => r.id).sort()).toEqual([...ids.acmeReport!, deadId].sort());
    expect((await list('--type', 'mail')).runs.map((r) => r.id).sort()).toEqual([...ids.globexMail!].sort());
    expect((await list('--status', 'dead-lettered')).runs.map((r) => r.id)).toEqual([deadId]);
    expect((await list('--status', 'running,dead-lettered')).runs.map((r) => r.id).sort()).toEqual(
      [deadId, liveId].sort(),
    );
    expect((await list('--tenant', 'acme', '--type', 'mail')).runs).toEqual([]);

    // Times: epoch ms and ISO 8601, `since` inclusive and `until` exclusive.
    const mails = all.filter((r) => r.type === 'mail').sort((a, b) => a.createdAt - b.createdAt);
    const from = mails[0]!.createdAt;
    const to = mails[1]!.createdAt;
    const between = await list('--since', String(from), '--until', new Date(to).toISOString());
    expect(between.runs.map((r) => r.id)).toEqual(
      all.filter((r) => r.createdAt >= from && r.createdAt < to).map((r) => r.id),
    );
    expect(between.runs.map((r) => r.id)).toContain(mails[0]!.id);
    expect(between.runs.map((r) => r.id)).not.toContain(mails[1]!.id);
  });

  it('runs list pages with --limit and --cursor: every run once, in order', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { runs: RunRecord[]; cursor: string | null } = await json(
        ['runs', 'list', '--limit', '4', ...(cursor === null ? [] : ['--cursor', cursor])],
        env,
      );
      expect(page.runs.length).toBeLessThanOrEqual(4);
      seen.push(...page.runs.map((r) => r.id));
      cursor = page.cursor;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(all.map((r) => r.id));

    // The readable table says how to get the next page.
    const r = await cli(['runs', 'list', '--limit', '4'], env);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+TYPE\s+TENANT\s+STATUS\s+ATTEMPTS\s+OWNER\s+CREATED\s+FINISHED$/);
    expect(lines.slice(1, 5).map((l) => l.split(/\s+/)[0])).toEqual(all.slice(0, 4).map((run) => run.id));
    expect(r.stdout).toMatch(/More runs: add --cursor \S+/);
    const none = await cli(['runs', 'list', '--type', 'nothing-of-this-type'], env);
    expect(none).toMatchObject({ code: 0, stdout: 'No runs match.\n' });
  });

  it('runs show: the run readable and as JSON; another tenant sees it as unknown', async () => {
    const id = ids.acmeReport![2]!;
    const shown = await json<{ ok: boolean; run: RunRecord }>(['runs', 'show', id], env);
    expect(shown.run).toEqual(await store.get(id));
    expect(shown.run).toMatchObject({ status: 'completed', result: { echo: 2 }, tenantId: 'acme', attempts: 1 });

    const r = await cli(['runs', 'show', id, '--tenant', 'acme'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Run:\\s+${id}$`, 'm'));
    expect(r.stdout).toMatch(/^Status:\s+completed$/m);
    expect(r.stdout).toMatch(/^Result:\s+\{"echo":2\}$/m);
    expect(r.stdout).toMatch(/^Requires:\s+work$/m);

    const dead = await cli(['runs', 'show', deadId], env);
    expect(dead.stdout).toMatch(/^Status:\s+dead-lettered$/m);
    expect(dead.stdout).toMatch(/^Error:\s+.*upstream said no$/m);

    const other = await cli(['runs', 'show', id, '--tenant', 'globex'], env);
    expect(other.code).toBe(1);
    expect(other.stderr).toBe(`unified-orchestrator: no run "${id}" in the store for tenant globex\n`);
  });

  it('runs events: the timeline readable and as JSON', async () => {
    const timeline = await json<{ ok: boolean; id: string; events: RunEvent[] }>(['runs', 'events', deadId], env);
    expect(timeline.events).toEqual(await store.events(deadId));
    const kinds = timeline.events.map((e) => e.kind);
    expect(kinds[0]).toBe('queued');
    expect(kinds).toContain('retrying');
    expect(kinds.at(-1)).toBe('dead-lettered');
    expect(kinds.filter((k) => k === 'started')).toHaveLength(2);

    const r = await cli(['runs', 'events', deadId], env);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(`Run ${deadId} (report, tenant acme): dead-lettered`);
    expect(lines[1]).toMatch(/^AT\s+SINCE\s+EVENT\s+DETAIL$/);
    expect(lines).toHaveLength(2 + timeline.events.length);
    expect(lines[2]).toMatch(/^\S+Z\s+\+0ms\s+queued\b/);
    const started = lines.find((l) => /\sstarted\s/.test(l))!;
    expect(started).toMatch(/attempt 1, on agent \S+, node \S+/);
    expect(lines.find((l) => /\sretrying\s/.test(l))).toContain('upstream said no');
  });

  it('runs retry: refused for live, completed and unknown runs; a dead-lettered one runs again on the node', async () => {
    const completed = await cli(['runs', 'retry', ids.globexMail![0]!], env);
    expect(completed.code).toBe(1);
    expect(completed.stderr).toContain(`run ${ids.globexMail![0]} is completed: only a run that ended without success`);
    const live = await cli(['runs', 'retry', liveId, '--json'], env);
    expect(live.code).toBe(1);
    expect(JSON.parse(live.stdout)).toMatchObject({ ok: false, id: liveId, status: 'running' });
    const unknown = await cli(['runs', 'retry', 'no-such-run'], env);
    expect(unknown).toMatchObject({
      code: 1,
      stdout: '',
      stderr: 'unified-orchestrator: no run "no-such-run" in the store\n',
    });
    const otherTenant = await cli(['runs', 'retry', deadId, '--tenant', 'globex'], env);
    expect(otherTenant.code).toBe(1);
    expect((await store.list()).runs).toHaveLength(9); // nothing was stored

    healed = true;
    const r = await cli(['runs', 'retry', deadId, '--tenant', 'acme'], env);
    expect(r.code, r.stderr).toBe(0);
    const newId = /as run (\S+):/.exec(r.stdout)?.[1];
    expect(newId).toMatch(/^[0-9a-f-]{36}$/);
    // The orchestrator on the same database claims it and runs it.
    await eventually(async () => (await store.get(newId!))?.status === 'completed');
    const again = (await store.get(newId!))!;
    // Claimed as a run nobody owns, not taken over as a dead node's (not a recovery).
    expect(again).toMatchObject({ type: 'report', tenantId: 'acme', result: { echo: 99 }, attempts: 1, recoveries: 0 });
    expect(again.task).toEqual({ ...(await store.get(deadId))!.task, deadlineAt: null });
    const kinds = (await store.events(newId!)).map((e) => e.kind);
    expect(kinds.slice(0, 3)).toEqual(['queued', 'released', 'adopted']);
    expect(kinds.at(-1)).toBe('completed');
    const released = (await store.events(newId!)).find((e) => e.kind === 'released')!;
    expect(released).toMatchObject({ nodeId: `cli-${process.pid}`, detail: { retryOf: deadId, by: 'cli' } });
    expect(await orchestrator.attach(newId!).result).toEqual({ echo: 99 });
    // The dead-lettered run is left as it was.
    expect((await store.get(deadId))!.status).toBe('dead-lettered');

    const asJson = await json<{ ok: boolean; id: string; newId: string }>(['runs', 'retry', deadId], env);
    expect(asJson).toMatchObject({ ok: true, id: deadId });
    expect(asJson.newId).not.toBe(newId);
    await eventually(async () => (await store.get(asJson.newId))?.status === 'completed');
  });

  it('show and events of an unknown id exit 1 (and answer ok: false with --json)', async () => {
    for (const verb of ['show', 'events']) {
      const r = await cli(['runs', verb, 'nope'], env);
      expect(r).toEqual({ code: 1, stdout: '', stderr: 'unified-orchestrator: no run "nope" in the store\n' });
      const j = await cli(['runs', verb, 'nope', '--json'], env);
      expect(j.code).toBe(1);
      expect(JSON.parse(j.stdout)).toEqual({ ok: false, error: 'no run "nope" in the store', id: 'nope' });
    }
  });

  it('--database-url wins over DATABASE_URL; --schema names another schema (empty here)', async () => {
    const viaFlag = await json<{ runs: RunRecord[] }>(['runs', 'list', '--database-url', url], {
      DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
    });
    expect(viaFlag.runs).toHaveLength((await store.list()).runs.length);
    const otherSchema = await json<{ runs: RunRecord[] }>(['runs', 'list', '--schema', 'cli_other'], env);
    expect(otherSchema.runs).toEqual([]);
  });

  it('an unreachable server: exit 1 naming it, its password never printed', async () => {
    const port = await freePort();
    const secretUrl = `postgres://app:s3cr3t-pw@127.0.0.1:${port}/runs`;
    for (const extra of [[], ['--json']]) {
      const r = await cli(['runs', 'list', '--timeout', '2000', ...extra], { DATABASE_URL: secretUrl });
      expect(r.code).toBe(1);
      const text = r.stdout + r.stderr;
      expect(text).toContain(`cannot open the store at postgres://app:***@127.0.0.1:${port}/runs`);
      expect(text).not.toContain('s3cr3t-pw');
    }
  });
});

describe('unified-orchestrator runs: usage', () => {
  const env = { DATABASE_URL: 'postgres://app:pw@127.0.0.1:1/db' };

  it('bad flags and commands exit 2 with one line and the usage text, before connecting', async () => {
    const cases: Array<[args: string[], message: string, env?: Record<string, string | undefined>]> = [
      [['runs'], 'Expected `runs list`, `runs show <id>`, `runs events <id>` or `runs retry <id>`'],
      [['runs', 'frob'], 'Unknown runs command: frob (list, show, events or retry)'],
      [['runs', 'show'], 'Expected `runs show <id>`: one run id'],
      [['runs', 'events', 'a', 'b'], 'Expected `runs events <id>`: one run id'],
      [['runs', 'list', 'extra'], 'runs list takes no arguments, got: extra'],
      [['runs', 'list', '--limit', '0'], '--limit must be a whole number from 1 to 1000, got 0'],
      [['runs', 'list', '--limit', '1001'], '--limit must be a whole number from 1 to 1000, got 1001'],
      [
        ['runs', 'list', '--status', 'done'],
        '--status takes queued, running, completed, failed, cancelled, timed-out, dead-lettered (comma-separated), got done',
      ],
      [
        ['runs', 'list', '--since', 'yesterday'],
        '--since must be an ISO 8601 time (2026-01-31T12:00:00Z) or epoch milliseconds, got yesterday',
      ],
      [['runs', 'list', '--cursor', 'garbage'], '--cursor: The cursor is not one `list` returned'],
      [['runs', 'show', 'x', '--status', 'failed'], '--status applies to `runs list` only'],
      [['runs', 'list', '--redis', 'redis://x'], '--redis does not apply to `runs`'],
      [['runs', 'list', '--strict'], '--strict does not apply to `runs`'],
      [['status', '--tenant', 'acme'], '--tenant does not apply to `status`'],
      [['runs', 'list', '--frobnicate'], "Unknown option '--frobnicate'"],
      [['runs', 'list', '--schema', 'Bad-Name'], '--schema must be a lower-case identifier'],
      [
        ['runs', 'list', '--pglite', '/tmp/x', '--database-url', 'postgres://h/db'],
        'Pass --database-url or --pglite, not both',
      ],
      [
        ['runs', 'list'],
        'No store to read: pass --database-url postgres://user:password@host:port/database or set DATABASE_URL',
        {},
      ],
      [
        ['runs', 'list'],
        'Expected a postgres:// or postgresql:// URL (--database-url or DATABASE_URL), got "mysql://root:***@db/app"',
        { DATABASE_URL: 'mysql://root:hunter2@db/app' },
      ],
    ];
    for (const [args, message, caseEnv] of cases) {
      const r = await cli(args, caseEnv ?? env);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.split('\n')[0]).toContain(`unified-orchestrator: ${message}`);
      expect(r.stderr).toContain('Usage: unified-orchestrator <command> [options]');
      expect(r.stderr).not.toContain('hunter2');
      expect(r.stdout).toBe('');
    }
    const help = await cli(['--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('runs retry <id>');
    expect(help.stdout).toContain('--database-url <url>');
  });

  it('the installed command: no DATABASE_URL exits 2 naming it, without a stack trace', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/bin.ts', 'runs', 'list'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: undefined },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(code, stderr).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.split('\n')[0]).toBe(
      'unified-orchestrator: No store to read: pass --database-url postgres://user:password@host:port/database or set DATABASE_URL (or --pglite <dir> for an embedded store)',
    );
    expect(stderr).not.toMatch(/\n\s+at /);
  }, 30_000);
});

describe('unified-orchestrator runs --pglite (embedded store)', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  it("reads an embedded store's data directory; refuses a directory that holds none", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uo-cli-pglite-'));
    dirs.push(dir);
    const store = new PGliteStore({ dataDir: dir });
    await store.open();
    const task = {
      requires: ['work'],
      prefers: [],
      priority: 0,
      payload: { n: 1 },
      timeoutMs: null,
      deadlineAt: null,
      maxAttempts: 1,
      affinityKey: null,
    };
    await store.insert('n1', [
      { id: 'embedded-1', type: 'e', tenantId: 't', idempotencyKey: null, task, createdAt: 1 },
    ]);
    await store.append([
      {
        runId: 'embedded-1',
        kind: 'failed',
        at: 2,
        nodeId: 'n1',
        error: { name: 'Error', message: 'boom', code: null },
      },
    ]);
    await store.close();

    const listed = await json<{ runs: RunRecord[] }>(['runs', 'list', '--pglite', dir], {});
    expect(listed.runs.map((r) => [r.id, r.status])).toEqual([['embedded-1', 'failed']]);
    const retried = await json<{ newId: string }>(['runs', 'retry', 'embedded-1', '--pglite', dir], {});
    const reopened = new PGliteStore({ dataDir: dir });
    await reopened.open();
    try {
      expect(await reopened.get(retried.newId)).toMatchObject({
        status: 'queued',
        owner: null,
        type: 'e',
        tenantId: 't',
      });
    } finally {
      await reopened.close();
    }

    const empty = mkdtempSync(join(tmpdir(), 'uo-cli-pglite-empty-'));
    dirs.push(empty);
    for (const where of [empty, join(empty, 'missing')]) {
      const r = await cli(['runs', 'list', '--pglite', where], {});
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `unified-orchestrator: no embedded store at ${where}: --pglite takes the dataDir of a PGliteStore that was opened before\n`,
      );
    }
  }, 120_000);
});
