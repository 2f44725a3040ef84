/**
 * Durable workflows of ten no-op steps per second, per-step overhead and workflow latency of the peer the
 * orchestrator's durable workflows are compared with (issue 18): DBOS Transact, on one PostgreSQL server of the
 * bench's own (bench/postgres-server.ts, fsync off), one fresh system database per run, in rotating rounds
 * (bench/workflow-harness.ts), beside the orchestrator's own workflows (bench/workflow-ours.ts): on the same server
 * (PostgresStore), embedded (PGliteStore), and with `run.task` steps on no-op agents (server).
 *
 *   npx tsx bench/workflow-peers.ts            # three rounds
 *   npx tsx bench/workflow-peers.ts --quick    # one round, fewer workflows
 *   npx tsx bench/workflow-peers.ts --in-flight=32   # another concurrency for the throughput run (default 8)
 *   npx tsx bench/workflow-peers.ts --rounds=5 --only=embedded --no-writes
 *                                              # rounds; only subjects whose name has the text; no write counts
 *
 * Prints a Markdown table on stdout (progress on stderr), then what each server-backed subject writes per workflow;
 * bench/results/workflow-peers.md keeps a run with its reading.
 *
 * DBOS: the workflow is registered with `DBOS.registerWorkflow` and runs WORKFLOW_STEPS `DBOS.runStep` calls of a
 * no-op, each checkpointed in DBOS's system database (its `operation_outputs` table) before the next starts. One
 * workflow is started with `DBOS.startWorkflow` and awaited with the handle's `getResult()`, which resolves after
 * DBOS has recorded the workflow's output (status SUCCESS) in the system database. DBOS is one per process (its API
 * is static): runs are one after another, `DBOS.launch()` on the run's database, `DBOS.shutdown()` after.
 */
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { DBOS } from '@dbos-inc/dbos-sdk';
import pg from 'pg';
import { progress } from './harness.js';
import { newDatabase, startPostgresServer } from './postgres-server.js';
import { installedVersion } from './rounds.js';
import { orchestratorWorkflowSubject } from './workflow-ours.js';
import {
  measureWrites,
  renderWorkflows,
  WORKFLOW_STEPS,
  workflowRounds,
  type WorkflowOptions,
  type WorkflowSubject,
  type WriteCounts,
} from './workflow-harness.js';

/** Workflows in flight at once in the throughput run, for every subject, unless `--in-flight=N` says otherwise. */
export const IN_FLIGHT = 8;
/** Connections of DBOS's system database pool (its default). */
const DBOS_POOL = 10;

/** A step that does nothing. */
async function noop(): Promise<void> {}

/** The bench's workflow in DBOS: WORKFLOW_STEPS checkpointed no-op steps. */
async function tenSteps(): Promise<void> {
  for (let i = 0; i < WORKFLOW_STEPS; i++) await DBOS.runStep(noop, { name: `step${i}` });
}

/** The registered workflow, registered once (DBOS keeps its registry across `shutdown` and `launch`). */
let registered: (() => Promise<void>) | undefined;

/**
 * DBOS Transact on its system database at the run's URL, on its own pool; or, with `countStatements`, on a pool of
 * the bench's (the same size) whose connections count the statements DBOS sends (for `measureWrites` only).
 */
export function dbosSubject(countStatements = false): WorkflowSubject {
  const version = installedVersion('@dbos-inc/dbos-sdk');
  let launched = false;
  let pool: pg.Pool | undefined;
  let sent = 0;
  return {
    name: `DBOS Transact ${version}`,
    settings:
      `system database pool ${DBOS_POOL} (default), LISTEN/NOTIFY on (default), ` +
      `DBOS.startWorkflow + getResult per workflow, ${WORKFLOW_STEPS} DBOS.runStep per workflow`,
    async setup(url) {
      registered ??= DBOS.registerWorkflow(tenSteps, { name: 'tenSteps' });
      if (countStatements) {
        pool = new pg.Pool({ connectionString: url, max: DBOS_POOL });
        pool.on('error', (error) => progress(`DBOS system database pool: ${error.message}`));
        pool.on('connect', (client) => {
          const query = client.query.bind(client) as (...args: unknown[]) => unknown;
          (client as { query: unknown }).query = (...args: unknown[]) => {
            sent++;
            return query(...args);
          };
        });
      }
      DBOS.setConfig({
        name: 'workflow-bench',
        systemDatabaseUrl: url,
        systemDatabasePoolSize: DBOS_POOL,
        ...(pool === undefined ? {} : { systemDatabasePool: pool }),
        logLevel: 'error',
      });
      await DBOS.launch();
      launched = true;
    },
    async runOne() {
      const handle = await DBOS.startWorkflow(registered!)();
      await handle.getResult();
    },
    async teardown() {
      if (launched) await DBOS.shutdown();
      launched = false;
      // DBOS leaves a pool it was given open.
      await pool?.end();
      pool = undefined;
    },
    ...(countStatements ? { statementsSent: () => sent } : {}),
  };
}

/**
 * The subjects, in table order; with `counting`, each made to count its statements where it can (for the write
 * counts, not the timed runs).
 */
export function workflowSubjects(counting = false): Array<() => WorkflowSubject> {
  const ours: Array<() => WorkflowSubject> = [
    () => orchestratorWorkflowSubject('postgres'),
    () => orchestratorWorkflowSubject('pglite'),
    () => orchestratorWorkflowSubject('postgres', 'task'),
  ];
  // The write counts read the server's statistics: a subject on the embedded store writes none there.
  return [() => dbosSubject(counting), ...(counting ? ours.filter((_, i) => i !== 1) : ours)];
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const roundsFlag = process.argv.find((a) => a.startsWith('--rounds='));
  const rounds = roundsFlag === undefined ? (quick ? 1 : 3) : Number(roundsFlag.slice('--rounds='.length));
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds takes a whole number ≥ 1: ${roundsFlag}`);
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  const noWrites = process.argv.includes('--no-writes');
  const flag = process.argv.find((a) => a.startsWith('--in-flight='));
  const inFlight = flag === undefined ? IN_FLIGHT : Number(flag.slice('--in-flight='.length));
  if (!Number.isInteger(inFlight) || inFlight < 1) throw new Error(`--in-flight takes a whole number ≥ 1: ${flag}`);
  const options: WorkflowOptions = {
    workflows: quick ? 500 : 2_000,
    inFlight,
    warmup: 100,
    idleSamples: quick ? 30 : 200,
    timeoutMs: 300_000,
  };
  const keep = (makers: Array<() => WorkflowSubject>): Array<() => WorkflowSubject> =>
    only === undefined ? makers : makers.filter((make) => make().name.includes(only));
  const makers = keep(workflowSubjects());
  const subjects = makers.map((make) => make());
  const server = await startPostgresServer();
  progress(`server: ${server.version} at ${server.url}`);
  let databases = 0;
  try {
    const results = await workflowRounds(
      makers,
      rounds,
      () => newDatabase(server.url, `workflow_${++databases}`),
      options,
      (r) =>
        progress(
          `${r.subject}: ${Math.round(r.workflowsPerSecond)} workflows/s, ` +
            `CPU ${Math.round(r.cpuUsPerWorkflow)} + ${Math.round(r.serverCpuUsPerWorkflow)} µs/workflow, step p50 ${r.stepP50Us.toFixed(0)} µs, ` +
            `idle p50 ${r.idleP50Ms.toFixed(1)} ms, in flight p50 ${r.loadedP50Ms.toFixed(1)} ms`,
        ),
    );
    const load = loadavg();
    console.log(
      renderWorkflows(
        results,
        subjects.map((s) => s.name),
      ),
    );
    console.log(
      `\nMedians of ${rounds} round${rounds === 1 ? '' : 's'}; ${server.version}, fsync=off, 127.0.0.1; ` +
        `Node ${process.version}; ${cpus().length} cores, load average ` +
        `${load.map((l) => l.toFixed(1)).join(' ')} at the end of the runs; ${quick ? 'quick' : 'full'} run.`,
    );
    console.log(
      `Every subject: workflows of ${WORKFLOW_STEPS} no-op steps; ${options.warmup} warm-up workflows, ` +
        `${options.workflows} with ${options.inFlight} in flight, ${options.idleSamples} one at a time ` +
        `(per-step overhead = one-at-a-time latency / ${WORKFLOW_STEPS}); a fresh database per run.`,
    );
    for (const s of subjects) console.log(`${s.name}: ${s.settings}.`);

    const writes: WriteCounts[] = [];
    for (const make of noWrites ? [] : keep(workflowSubjects(true))) {
      const url = await newDatabase(server.url, `writes_${++databases}`);
      writes.push(await measureWrites(make(), url, quick ? 200 : 1_000, inFlight));
    }
    console.log('\n| subject | table | rows inserted / updated / deleted per workflow |\n| --- | --- | ---: |');
    for (const w of writes) {
      for (const t of w.rowsPerWorkflow) {
        console.log(
          `| ${w.subject} | ${t.table} | ${t.inserted.toFixed(2)} / ${t.updated.toFixed(2)} / ${t.deleted.toFixed(2)} |`,
        );
      }
    }
    console.log(
      '\n| subject | workflows | writing transactions per workflow | statements per workflow | WAL bytes per workflow |',
    );
    console.log('| --- | ---: | ---: | ---: | ---: |');
    for (const w of writes) {
      console.log(
        `| ${w.subject} | ${w.workflows} | ${w.writeTransactionsPerWorkflow.toFixed(2)} | ` +
          `${w.statementsPerWorkflow === undefined ? '—' : w.statementsPerWorkflow.toFixed(1)} | ` +
          `${Math.round(w.walBytesPerWorkflow).toLocaleString('en')} |`,
      );
    }
    console.log(
      `\nWrites: a fresh database per subject; after a first session (schema installed, one workflow), ` +
        `${writes[0]?.workflows ?? 0} workflows with ${inFlight} in flight in a second session, counted from the ` +
        `server's table statistics, transaction ids and WAL position (nothing else writes to the server meanwhile).`,
    );
  } finally {
    server.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
