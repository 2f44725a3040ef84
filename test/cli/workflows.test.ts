/**
 * The CLI's workflow commands (src/cli/workflows.ts) and `runs show` of a workflow run, with a real orchestrator node
 * that has the workflows registered on the same store: `workflows start` stores a run the node claims and runs,
 * `signal` wakes a parked run (or is kept for a later wait), `runs show` prints the steps and signals, `--wait` ends
 * with the run's outcome; unknown, ended, other tenants' and non-workflow runs exit 1; bad input exits 2 before any
 * store is opened, without a stack trace or a password.
 *
 * Each scenario runs twice: on a PostgreSQL server the test helper starts (the CLI opens its own connection from
 * DATABASE_URL, as an operator's would), and on a MemoryStore the node shares with the CLI through `CliIo.store` (the
 * CLI's logic without a server). The CLI runs in this process through its `run()` entry, except one child process
 * through src/bin.ts.
 */
import { spawn } from 'node:child_process';
import { hostname, userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnifiedOrchestrator, type RunRecord, type RunStore } from '../../src/index.js';
import { run } from '../../src/cli/cli.js';
import type { CliIo } from '../../src/cli/io.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import type { SignalRecord, StepRecord } from '../../src/store/store.js';
import { eventually } from '../support/agents.js';
import { freePort } from '../support/free-port.js';
import { POSTGRES_SERVER, startPostgres, type TestPostgres } from '../support/postgres.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ACTOR = `cli:${userInfo().username}@${hostname()}`;

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Where the CLI finds the store: its environment, and (for a MemoryStore) the store itself. */
interface Target {
  readonly env: Record<string, string | undefined>;
  readonly store?: RunStore;
}

async function cli(args: readonly string[], target: Target): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    env: target.env,
    write: (t) => (stdout += t),
    error: (t) => (stderr += t),
    ...(target.store ? { store: target.store } : {}),
  };
  const code = await run(args, io);
  return { code, stdout, stderr };
}

/** `cli` with `--json`, expecting `code`: the parsed object. */
async function json<T = Record<string, unknown>>(args: readonly string[], target: Target, code = 0): Promise<T> {
  const r = await cli([...args, '--json'], target);
  expect(r.code, r.stderr || r.stdout).toBe(code);
  expect(r.stdout.trim().split('\n')).toHaveLength(1);
  return JSON.parse(r.stdout) as T;
}

interface Backend {
  readonly name: string;
  readonly skip: boolean;
  /** A fresh store for a suite, and how the CLI reaches it. */
  setup(): Promise<{ store: RunStore; target: Target; close: () => Promise<void> }>;
}

let pg: TestPostgres | undefined;

const backends: Backend[] = [
  {
    name: 'PostgreSQL server',
    skip: POSTGRES_SERVER.skip,
    async setup() {
      pg ??= await startPostgres();
      const url = await pg.createDatabase('uo_cli_wf');
      const store = new PostgresStore({ connectionString: url });
      return { store, target: { env: { DATABASE_URL: url } }, close: () => store.close() };
    },
  },
  {
    name: 'MemoryStore shared with the CLI',
    skip: false,
    async setup() {
      const store = new MemoryStore();
      // The flags are still checked: a URL no one serves, never opened.
      return {
        store,
        target: { env: { DATABASE_URL: 'postgres://unused@127.0.0.1:1/none' }, store },
        close: () => store.close(),
      };
    },
  },
];

afterAll(async () => {
  await pg?.close();
}, 60_000);

describe.each(backends)('unified-orchestrator workflows and signal ($name)', (backend) => {
  let store: RunStore;
  let target: Target;
  let close: () => Promise<void>;
  let node: UnifiedOrchestrator;
  /** Draft tasks the node's agent ran. */
  let drafts = 0;

  beforeAll(async () => {
    if (backend.skip) return;
    ({ store, target, close } = await backend.setup());
    node = new UnifiedOrchestrator({
      pools: [
        {
          role: 'writer',
          capabilities: ['text'],
          minAgents: 1,
          maxAgents: 1,
          create: () => ({
            execute: (ctx) => {
              drafts++;
              ctx.reportCost(3);
              return `draft of ${String(ctx.payload)}`;
            },
          }),
        },
      ],
      metrics: false,
      store,
      durability: { leaseMs: 2_000, heartbeatMs: 300, claimIntervalMs: 30, pollMs: 30 },
    });
    // Version 2 only: a run of another version is not this node's to run.
    node.workflow('review', { version: '2' }, async (wf, doc: string) => {
      const draft = await wf.task<string>('draft', { type: 'draft', requires: ['text'], payload: doc });
      const approval = await wf.signal<{ ok: boolean }>('approval');
      return wf.step('publish', () => ({ draft, published: approval.ok }));
    });
    node.workflow('echo', { version: '1' }, async (wf, input: unknown) => wf.step('echo', () => ({ echoed: input })));
    node.workflow('broken', { version: '1' }, async (wf) =>
      wf.step('explode', () => {
        throw new Error('the step gave up');
      }),
    );
    await node.start();
  }, 120_000);

  afterAll(async () => {
    await node?.stop({ drain: false, timeoutMs: 5_000 });
    await close?.();
  }, 60_000);

  it.skipIf(backend.skip)(
    'start → the node runs it and parks at the wait; runs show prints the wait and steps; signal wakes it',
    async () => {
      const started = await json(
        ['workflows', 'start', 'review', '--version', '2', '--input', '"doc-1"', '--tenant-id', 'acme'],
        target,
      );
      expect(started).toMatchObject({
        ok: true,
        workflow: 'review',
        version: '2',
        tenantId: 'acme',
        existing: false,
        status: 'queued',
      });
      const id = started['runId'] as string;
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      const stored = (await store.get(id))!;
      expect(stored).toMatchObject({ type: 'workflow:review', tenantId: 'acme' });
      expect(stored.task).toMatchObject({ requires: ['workflow:review@2'], payload: 'doc-1', maxAttempts: 1 });

      await eventually(
        async () => (await store.get(id))?.waitingFor.includes('approval') ?? false,
        10_000,
        'the run to park at its approval wait',
      );

      const shown = await cli(['runs', 'show', id, '--tenant-id', 'acme'], target);
      expect(shown.code, shown.stderr).toBe(0);
      expect(shown.stdout).toMatch(/^Workflow:\s+review@2$/m);
      expect(shown.stdout).toMatch(/^Status:\s+queued$/m);
      expect(shown.stdout).toMatch(/^Waiting for:\s+signal approval$/m);
      expect(shown.stdout).toMatch(/^Owner:\s+- \(queued for any node\)$/m);
      const { steps } = await store.history(id);
      const child = steps[0]!.childId!;
      const lines = shown.stdout.split('\n');
      const header = lines.findIndex((l) => l.startsWith('Steps (2)'));
      expect(header).toBeGreaterThan(0);
      expect(lines[header + 1]).toMatch(
        /^#\s+KIND\s+NAME\s+STATUS\s+DURATION\s+AGENT\s+ATTEMPTS\s+COST\s+CHILD RUN\s+WAKES AT$/,
      );
      expect(lines[header + 2]).toMatch(
        new RegExp(
          `^0\\s+task\\s+draft\\s+completed\\s+\\d+(\\.\\d)?m?s\\s+${steps[0]!.agentId}\\s+1\\s+3\\s+${child}\\s+-$`,
        ),
      );
      expect(lines[header + 3]).toMatch(/^1\s+signal\s+approval\s+waiting\s+\S+ so far\s+-\s+-\s+-\s+-\s+-$/);
      expect(shown.stdout).toContain('Signals: none');

      const signalled = await json(['signal', id, 'approval', '--payload', '{"ok":true}'], target);
      expect(signalled).toMatchObject({ ok: true, runId: id, signal: 'approval', actor: ACTOR, waiting: true });
      await eventually(async () => (await store.get(id))?.status === 'completed', 10_000, 'the run to complete');
      expect((await store.get(id))!.result).toEqual({ draft: 'draft of doc-1', published: true });

      const asJson = await json<{ run: RunRecord; steps: StepRecord[]; signals: SignalRecord[] }>(
        ['runs', 'show', id],
        target,
      );
      expect(asJson.run.status).toBe('completed');
      expect(asJson.steps.map((s) => [s.seq, s.kind, s.name, s.status])).toEqual([
        [0, 'task', 'draft', 'completed'],
        [1, 'signal', 'approval', 'completed'],
        [2, 'step', 'publish', 'completed'],
      ]);
      expect(asJson.steps[0]).toMatchObject({ childId: child, attempts: 1, cost: 3 });
      expect(asJson.signals).toEqual([
        expect.objectContaining({
          id: signalled['signalId'],
          name: 'approval',
          payload: { ok: true },
          actor: ACTOR,
          consumedBy: 1,
        }),
      ]);
      const text = (await cli(['runs', 'show', id], target)).stdout;
      expect(text).toMatch(/^Cost:\s+3$/m);
      expect(text).toMatch(/^Result:\s+\{"draft":"draft of doc-1","published":true\}$/m);
      expect(text).toMatch(
        new RegExp(
          `^${String(signalled['signalId'])}\\s+approval\\s+${ACTOR}\\s+\\S+Z\\s+step 1 \\(approval\\)\\s+\\{"ok":true\\}$`,
          'm',
        ),
      );
      expect(text).not.toContain('Waiting for');

      // Ended: a second signal is refused, and nothing is stored.
      const late = await cli(['signal', id, 'approval'], target);
      expect(late).toEqual({
        code: 1,
        stdout: '',
        stderr: `unified-orchestrator: run ${id} has ended (completed): the signal was not delivered\n`,
      });
      expect((await store.history(id)).signals).toHaveLength(1);
      expect(drafts).toBe(1); // the replay after the signal took the draft from its checkpoint
    },
    30_000,
  );

  it.skipIf(backend.skip)(
    'a signal sent before the wait is kept for it (a delayed start); --actor is recorded',
    async () => {
      const started = await json(
        ['workflows', 'start', 'review', '--version', '2', '--input', '"doc-2"', '--delay-ms', '400'],
        target,
      );
      const id = started['runId'] as string;
      const due = (await store.get(id))!.notBefore!;
      expect(due - (await store.get(id))!.createdAt).toBe(400);
      const r = await cli(['signal', id, 'approval', '--payload', '{"ok":false}', '--actor', 'alice'], target);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(
        new RegExp(`^Delivered signal approval to run ${id} \\(signal \\d+, from alice\\): kept`),
      );
      await eventually(async () => (await store.get(id))?.status === 'completed', 10_000, 'the run to complete');
      const run = (await store.get(id))!;
      expect(run.result).toEqual({ draft: 'draft of doc-2', published: false });
      // It was claimed when due, not before.
      const adopted = (await store.events(id)).find((e) => e.kind === 'adopted')!;
      expect(adopted.at).toBeGreaterThanOrEqual(due);
      const { signals } = await store.history(id);
      expect(signals).toEqual([expect.objectContaining({ actor: 'alice', consumedBy: 1 })]);
    },
    30_000,
  );

  it.skipIf(backend.skip)(
    '--wait prints the result, or exits 1 with the error of a run that failed',
    async () => {
      const ok = await cli(
        ['workflows', 'start', 'echo', '--version', '1', '--input', '{"n":[1,2]}', '--id', 'echo-1', '--wait'],
        target,
      );
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout).toBe('Run echo-1 completed: {"echoed":{"n":[1,2]}}\n');
      expect(ok.stderr).toMatch(/^Started echo@1 as run echo-1: queued .* Waiting for it to end…\n$/);

      const failed = await json(['workflows', 'start', 'broken', '--version', '1', '--wait'], target, 1);
      expect(failed).toMatchObject({ ok: false, status: 'failed', ended: true, result: null });
      expect((failed['error'] as { message: string }).message).toContain('the step gave up');
      const text = await cli(['workflows', 'start', 'broken', '--version', '1', '--wait'], target);
      expect(text.code).toBe(1);
      expect(text.stdout).toBe('');
      expect(text.stderr).toMatch(/unified-orchestrator: run \S+ ended failed: .*the step gave up\n$/);
    },
    30_000,
  );

  it.skipIf(backend.skip)(
    'the same --id again returns the run; another tenant cannot take it; a version no node has stays queued',
    async () => {
      const again = await json(['workflows', 'start', 'echo', '--version', '1', '--id', 'echo-1'], target);
      expect(again).toMatchObject({ ok: true, runId: 'echo-1', existing: true, status: 'completed' });
      const text = await cli(['workflows', 'start', 'echo', '--version', '1', '--id', 'echo-1'], target);
      expect(text.stdout).toBe('Run echo-1 (echo@1) is in the store already (completed): nothing new was stored.\n');
      const other = await json(
        ['workflows', 'start', 'echo', '--version', '1', '--id', 'echo-1', '--tenant-id', 'globex'],
        target,
        1,
      );
      expect(other).toEqual({
        ok: false,
        error: 'run id echo-1 is taken by another run: choose another --id',
        runId: 'echo-1',
      });
      const otherType = await cli(['workflows', 'start', 'review', '--version', '2', '--id', 'echo-1'], target);
      expect(otherType.stderr).toBe(
        'unified-orchestrator: run id echo-1 is taken by another run (of type workflow:echo): choose another --id\n',
      );

      // No node registered echo@9: the run waits, unowned, and --wait gives up after --wait-timeout.
      const waited = await json(
        ['workflows', 'start', 'echo', '--version', '9', '--wait', '--wait-timeout', '400'],
        target,
        1,
      );
      expect(waited).toMatchObject({ ok: false, version: '9', status: 'queued', ended: false });
      expect(waited['error']).toMatch(/is still queued after 400 ms: stopped waiting; it goes on$/);
      const left = (await store.get(waited['runId'] as string))!;
      expect(left).toMatchObject({ status: 'queued', owner: null, attempts: 0 });
      expect(left.task.requires).toEqual(['workflow:echo@9']);
    },
    30_000,
  );

  it.skipIf(backend.skip)(
    'signal: an unknown run, another tenant, and a task run exit 1, and nothing is stored',
    async () => {
      const unknown = await json(['signal', 'no-such-run', 'approval'], target, 1);
      expect(unknown).toEqual({ ok: false, error: 'no run "no-such-run" in the store', runId: 'no-such-run' });

      const started = await json(['workflows', 'start', 'review', '--version', '2', '--tenant-id', 'acme'], target);
      const id = started['runId'] as string;
      const otherTenant = await cli(['signal', id, 'approval', '--tenant-id', 'globex'], target);
      expect(otherTenant).toEqual({
        code: 1,
        stdout: '',
        stderr: `unified-orchestrator: no run "${id}" in the store for tenant globex\n`,
      });
      expect((await store.history(id)).signals).toEqual([]);
      const right = await cli(['signal', id, 'approval', '--tenant', 'acme', '--payload', '{"ok":true}'], target);
      expect(right.code, right.stderr).toBe(0);
      await eventually(async () => (await store.get(id))?.status === 'completed', 10_000, 'the run to complete');

      const task = await node.enqueue({ type: 'draft', requires: ['text'], payload: 'x' });
      await task.result;
      const notWorkflow = await cli(['signal', task.id, 'approval'], target);
      expect(notWorkflow.code).toBe(1);
      expect(notWorkflow.stderr).toBe(
        `unified-orchestrator: run ${task.id} is a task of type draft, not a workflow run: only workflow runs take signals\n`,
      );
      // runs show of a task run prints no workflow sections, and its JSON has no steps.
      const shown = await json<Record<string, unknown>>(['runs', 'show', task.id], target);
      expect(Object.keys(shown).sort()).toEqual(['ok', 'run']);
      expect((await cli(['runs', 'show', task.id], target)).stdout).not.toContain('Steps');
    },
    30_000,
  );
});

describe('unified-orchestrator workflows and signal: usage', () => {
  const env = { DATABASE_URL: 'postgres://app:hunter2@127.0.0.1:1/db' };

  it('bad input exits 2 with what to fix and the command help, before connecting', async () => {
    const cases: Array<[args: string[], message: string | RegExp, help: 'workflows' | 'signal' | 'all']> = [
      [['workflows'], 'Expected `workflows start <name>`', 'workflows'],
      [['workflows', 'stop', 'x'], 'Unknown workflows command: stop (start)', 'workflows'],
      [['workflows', 'start', '--version', '1'], 'Expected `workflows start <name>`: one workflow name', 'workflows'],
      [
        ['workflows', 'start', 'a', '{"x":1}', '--version', '1'],
        'Expected `workflows start <name>`: one workflow name (got 2: pass the input with --input)',
        'workflows',
      ],
      [['workflows', 'start', 'review'], '--version is required: the version the nodes registered', 'workflows'],
      [
        ['workflows', 'start', 'review@2'],
        "A workflow name has no '@' (got review@2): pass the version with --version",
        'workflows',
      ],
      [['workflows', 'start', 'review', '--version', '1', '--input', '{bad'], '--input must be JSON (', 'workflows'],
      [
        ['workflows', 'start', 'review', '--version', '1', '--input', 'plain text'],
        /^unified-orchestrator: --input must be JSON \(.+\): quote it for the shell, e\.g\. --input '\{"ok":true\}' \(a string is '"text"'\)$/,
        'workflows',
      ],
      [
        ['workflows', 'start', 'review', '--version', '1', '--delay-ms=-5'],
        '--delay-ms must be a number of milliseconds ≥ 0, got -5',
        'workflows',
      ],
      [
        ['workflows', 'start', 'review', '--version', '1', '--deadline-ms', '0'],
        '--deadline-ms must be a number of milliseconds > 0, got 0',
        'workflows',
      ],
      [
        ['workflows', 'start', 'review', '--version', '1', '--priority', '1.5'],
        '--priority must be an integer, got 1.5',
        'workflows',
      ],
      [
        ['workflows', 'start', 'review', '--version', '1', '--wait-timeout', '100'],
        '--wait-timeout applies with --wait only',
        'workflows',
      ],
      [
        ['workflows', 'start', 'review', '--version', '1', '--tenant', 'a', '--tenant-id', 'b'],
        '--tenant and --tenant-id name one thing: pass one of them (got a and b)',
        'workflows',
      ],
      [
        ['workflows', 'start', 'review', '--version', '1', '--payload', '1'],
        '--payload does not apply to `workflows start`',
        'workflows',
      ],
      [
        ['workflows', 'start', 'review', '--version', '1', '--status', 'failed'],
        '--status does not apply to `workflows start`',
        'workflows',
      ],
      [
        ['workflows', 'start', 'review', '--version', '1', '--redis', 'redis://x'],
        '--redis does not apply to `workflows`',
        'workflows',
      ],
      [['signal', 'run-1'], "Expected `signal <runId> <name>`: the workflow run's id and the signal's name", 'signal'],
      [
        ['signal', 'run-1', 'approval', '{"ok":true}'],
        "Expected `signal <runId> <name>`: the workflow run's id and the signal's name (got 3 arguments: pass the payload with --payload)",
        'signal',
      ],
      [['signal', 'run-1', 'approval', '--payload', "{'ok':true}"], '--payload must be JSON (', 'signal'],
      [['signal', 'run-1', 'approval', '--actor', ' '], '--actor needs a name, got an empty one', 'signal'],
      [['signal', 'run-1', 'approval', '--input', '1'], '--input does not apply to `signal`', 'signal'],
      [['runs', 'show', 'x', '--input', '1'], '--input does not apply to `runs`', 'all'],
      [['status', '--version', '1'], '--version does not apply to `status`', 'all'],
    ];
    for (const [args, message, help] of cases) {
      const r = await cli(args, { env });
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      if (typeof message === 'string') expect(r.stderr.split('\n')[0]).toContain(`unified-orchestrator: ${message}`);
      else expect(r.stderr.split('\n')[0]).toMatch(message);
      expect(r.stderr).toContain(
        help === 'workflows'
          ? 'Usage: unified-orchestrator workflows start <name>'
          : help === 'signal'
            ? 'Usage: unified-orchestrator signal <runId> <name>'
            : 'Usage: unified-orchestrator <command> [options]',
      );
      expect(r.stderr).not.toContain('hunter2');
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    }
  });

  it('--help on each command, and the general help lists them', async () => {
    const workflows = await cli(['workflows', '--help'], { env: {} });
    expect(workflows.code).toBe(0);
    expect(workflows.stdout).toMatch(/^Usage: unified-orchestrator workflows start <name> --version <v>/);
    expect(workflows.stdout).toContain('the store does not know which versions the');
    expect(workflows.stdout).toContain('--wait-timeout <ms>');
    const start = await cli(['workflows', 'start', '--help'], { env: {} });
    expect(start.stdout).toBe(workflows.stdout);
    const signal = await cli(['signal', '--help'], { env: {} });
    expect(signal.stdout).toMatch(/^Usage: unified-orchestrator signal <runId> <name> \[--payload <json>\]/);
    expect(signal.stdout).toContain('[default: cli:<user>@<host>]');
    const all = await cli(['--help'], { env: {} });
    expect(all.stdout).toContain('workflows start <name>');
    expect(all.stdout).toContain('signal <runId> <name>');
    expect(all.stdout).toContain('--payload <json>');
  });

  it('an unreachable store: exit 1 naming it, its password never printed', async () => {
    const port = await freePort();
    const secretUrl = `postgres://app:s3cr3t-pw@127.0.0.1:${port}/runs`;
    for (const args of [
      ['signal', 'run-1', 'approval', '--timeout', '2000'],
      ['workflows', 'start', 'review', '--version', '1', '--timeout', '2000', '--json'],
    ]) {
      const r = await cli(args, { env: { DATABASE_URL: secretUrl } });
      expect(r.code).toBe(1);
      const text = r.stdout + r.stderr;
      expect(text).toContain(`cannot open the store at postgres://app:***@127.0.0.1:${port}/runs`);
      expect(text).not.toContain('s3cr3t-pw');
    }
  });

  it('the installed command: bad --input JSON exits 2 with one line, without a stack trace', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/bin.ts', 'workflows', 'start', 'review', '--version', '1', '--input', '{"a":'],
      {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: 'postgres://u:pw@127.0.0.1:1/db' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(code, stderr).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.split('\n')[0]).toMatch(/^unified-orchestrator: --input must be JSON \(.+\): quote it for the shell/);
    expect(stderr).not.toMatch(/\n\s+at /);
  }, 30_000);
});
