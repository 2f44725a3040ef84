/**
 * Durable workflows of ten no-op steps per second, per-step overhead and workflow latency of the peer the
 * orchestrator's durable workflows are compared with (issue 18): DBOS Transact, on one PostgreSQL server of the
 * bench's own (bench/postgres-server.ts, fsync off), one fresh system database per run, in rotating rounds
 * (bench/workflow-harness.ts). The orchestrator's own subjects (embedded store, server) join the list in
 * `workflowSubjects` when its workflows exist.
 *
 *   npx tsx bench/workflow-peers.ts            # three rounds
 *   npx tsx bench/workflow-peers.ts --quick    # one round, fewer workflows
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
import { progress } from './harness.js';
import { newDatabase, startPostgresServer } from './postgres-server.js';
import { installedVersion } from './rounds.js';
import {
  measureWrites,
  renderWorkflows,
  WORKFLOW_STEPS,
  workflowRounds,
  type WorkflowOptions,
  type WorkflowSubject,
  type WriteCounts,
} from './workflow-harness.js';

/** Workflows in flight at once in the throughput run, for every subject. */
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

/** DBOS Transact on its system database at the run's URL. */
export function dbosSubject(): WorkflowSubject {
  const version = installedVersion('@dbos-inc/dbos-sdk');
  let launched = false;
  return {
    name: `DBOS Transact ${version}`,
    settings:
      `system database pool ${DBOS_POOL} (default), LISTEN/NOTIFY on (default), ` +
      `DBOS.startWorkflow + getResult per workflow, ${WORKFLOW_STEPS} DBOS.runStep per workflow`,
    async setup(url) {
      registered ??= DBOS.registerWorkflow(tenSteps, { name: 'tenSteps' });
      DBOS.setConfig({
        name: 'workflow-bench',
        systemDatabaseUrl: url,
        systemDatabasePoolSize: DBOS_POOL,
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
      if (!launched) return;
      launched = false;
      await DBOS.shutdown();
    },
  };
}

/** The subjects, in table order. */
export function workflowSubjects(): Array<() => WorkflowSubject> {
  return [dbosSubject];
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const rounds = quick ? 1 : 3;
  const options: WorkflowOptions = {
    workflows: quick ? 500 : 2_000,
    inFlight: IN_FLIGHT,
    warmup: 100,
    idleSamples: quick ? 30 : 200,
    timeoutMs: 300_000,
  };
  const makers = workflowSubjects();
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
          `${r.subject}: ${Math.round(r.workflowsPerSecond)} workflows/s, step p50 ${r.stepP50Us.toFixed(0)} µs, ` +
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
    for (const make of makers) {
      const url = await newDatabase(server.url, `writes_${++databases}`);
      writes.push(await measureWrites(make(), url, quick ? 200 : 1_000, IN_FLIGHT));
    }
    console.log('\n| subject | table | rows inserted / updated / deleted per workflow |\n| --- | --- | ---: |');
    for (const w of writes) {
      for (const t of w.rowsPerWorkflow) {
        console.log(
          `| ${w.subject} | ${t.table} | ${t.inserted.toFixed(2)} / ${t.updated.toFixed(2)} / ${t.deleted.toFixed(2)} |`,
        );
      }
    }
    console.log('\n| subject | workflows | writing transactions per workflow | WAL bytes per workflow |');
    console.log('| --- | ---: | ---: | ---: |');
    for (const w of writes) {
      console.log(
        `| ${w.subject} | ${w.workflows} | ${w.writeTransactionsPerWorkflow.toFixed(2)} | ` +
          `${Math.round(w.walBytesPerWorkflow).toLocaleString('en')} |`,
      );
    }
  } finally {
    server.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
