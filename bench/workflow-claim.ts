/**
 * What the claim of the SQL stores costs once runs wait in the table (schema version 2): parked workflow runs (waiting
 * for a signal, half of them with a timer an hour ahead), delayed tasks an hour ahead, and tasks running on a live
 * node, all at a higher priority than the runs that can be claimed, so that a claim's ordered walk of the `runs_claim`
 * index meets every one of them before it reaches a run it may take. Measured against the same claim over the
 * claimable runs alone.
 *
 *   npx tsx bench/workflow-claim.ts            # 10,000 parked and 10,000 delayed runs, about a minute on 2 cores
 *   npx tsx bench/workflow-claim.ts --quick    # 2,000 of each, shorter samples
 *
 * PostgresStore on a server of the bench's own (bench/postgres-server.ts). Each sample is one `claim` of 16 runs
 * (tasks, or workflow runs with `workflows: true`); the claimed runs are given back (`leave`) outside the sample.
 * Prints the plan of the claim's candidate query (EXPLAIN ANALYZE, with the claim's parameters) and a Markdown table
 * on stdout; progress on stderr. bench/results/workflow-claim.md keeps a run with its reading.
 */
import { cpus, loadavg } from 'node:os';
import pg from 'pg';
import { PostgresStore } from '../src/store/postgres-store.js';
import type { NewRun, StoredTask } from '../src/store/store.js';
import { progress, sampleLatency, summarise } from './harness.js';
import { newDatabase, startPostgresServer } from './postgres-server.js';

const quick = process.argv.includes('--quick');
const WAITING = quick ? 2_000 : 10_000;
const RUNNING = 2_000;
const READY = 2_000;
const CLAIM = 16;
const budget = { timeMs: quick ? 500 : 2_000, minSamples: quick ? 30 : 100, warmupMs: quick ? 50 : 200 };
const CAPABILITY = 'workflow:review@1';
const HOUR = 3_600_000;

function task(priority: number): StoredTask {
  return {
    requires: [CAPABILITY],
    prefers: [],
    priority,
    payload: { n: 1 },
    timeoutMs: null,
    deadlineAt: null,
    maxAttempts: 3,
    affinityKey: null,
  };
}

function run(id: string, type: string, priority: number, extra: Partial<NewRun> = {}): NewRun {
  return { id, type, tenantId: null, idempotencyKey: null, task: task(priority), createdAt: 1_000, ...extra };
}

async function insertMany(store: PostgresStore, node: string, count: number, make: (i: number) => NewRun) {
  for (let i = 0; i < count; i += 500) {
    await store.insert(
      node,
      Array.from({ length: Math.min(500, count - i) }, (_, j) => make(i + j)),
    );
  }
}

/** The claimable runs: tasks and workflow runs at priority 0, owned by a node with no lease. */
async function fillReady(store: PostgresStore): Promise<void> {
  await insertMany(store, 'gone', READY, (i) => run(`ready-${i}`, 'summarise', 0, { createdAt: 10_000 + i }));
  await insertMany(store, 'gone', READY, (i) => run(`wready-${i}`, 'workflow:review', 0, { createdAt: 10_000 + i }));
}

/** The runs a claim must pass over, all at priority 5. */
async function fillWaiting(store: PostgresStore, now: number): Promise<void> {
  await store.heartbeat('parker', 600_000);
  await insertMany(store, 'parker', WAITING, (i) => run(`parked-${i}`, 'workflow:review', 5, { createdAt: i }));
  for (let i = 0; i < WAITING; i += 500) {
    await store.park(
      Array.from({ length: Math.min(500, WAITING - i) }, (_, j) => ({
        runId: `parked-${i + j}`,
        nodeId: 'parker',
        at: now,
        notBefore: (i + j) % 2 === 0 ? null : now + HOUR,
        waitingFor: ['approval'],
        steps: [],
      })),
    );
  }
  await insertMany(store, 'any', WAITING, (i) => run(`delayed-${i}`, 'summarise', 5, { notBefore: now + HOUR }));
  await store.heartbeat('live', 600_000);
  await insertMany(store, 'live', RUNNING, (i) => run(`running-${i}`, 'summarise', 5, { createdAt: i }));
}

/**
 * The plan of the claim's candidate query as claim_runs runs it (a cursor: planned for its first rows), by
 * auto_explain at notice level, in a claim that is rolled back.
 */
async function plan(url: string, schema: string, workflows: boolean): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const notices: string[] = [];
  client.on('notice', (notice) => notices.push(notice.message ?? ''));
  try {
    await client.query(
      `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
       SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; SET auto_explain.log_timing = off;
       SET auto_explain.log_level = notice; SET client_min_messages = notice`,
    );
    await client.query('BEGIN');
    await client.query(`SELECT count(*) FROM ${schema}.claim_runs('planner', $1, $2, 3, NULL, $3)`, [
      CLAIM,
      [CAPABILITY],
      workflows,
    ]);
    await client.query('ROLLBACK');
    const found = notices.find((n) => n.includes('ORDER BY x.priority'));
    return (found ?? 'no plan logged').replace(/^[\s\S]*?(?=LockRows|Limit|Sort|Index)/, '');
  } finally {
    await client.end();
  }
}

async function measureClaims(store: PostgresStore, label: string, workflows: boolean) {
  progress(`claim of ${CLAIM}, ${label}, workflows: ${workflows}`);
  const samples = await sampleLatency(
    `${label} ${workflows}`,
    async () => {
      const t0 = performance.now();
      const { runs } = await store.claim({
        nodeId: 'claimer',
        limit: CLAIM,
        capabilities: [CAPABILITY],
        maxRecoveries: 3,
        workflows,
      });
      const elapsed = performance.now() - t0;
      if (runs.length !== CLAIM) throw new Error(`claimed ${runs.length} runs, not ${CLAIM}`);
      await store.leave('claimer');
      return elapsed;
    },
    budget,
  );
  return summarise(samples);
}

const server = await startPostgresServer();
try {
  const rows: string[] = [];
  const plans: string[] = [];
  for (const background of ['claimable runs only', 'with the runs that wait'] as const) {
    const schema = background === 'claimable runs only' ? 'ready_only' : 'busy';
    const url = await newDatabase(server.url, schema);
    const store = new PostgresStore({ connectionString: url, schema, maxConnections: 2 });
    await store.open();
    progress(`filling ${schema}`);
    await fillReady(store);
    if (schema === 'busy') await fillWaiting(store, Date.now());
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`VACUUM ANALYZE ${schema}.runs`);
    const live = await admin.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${schema}.runs WHERE status IN ('queued', 'running')`,
    );
    await admin.end();
    for (const workflows of [false, true]) {
      const stats = await measureClaims(store, background, workflows);
      rows.push(
        `| ${workflows ? 'workflow runs' : 'tasks'}, ${background} (${live.rows[0]!.n} live rows) | ${(stats.p50Us / 1000).toFixed(2)} / ${(stats.p99Us / 1000).toFixed(2)} ms | ${stats.samples} |`,
      );
      if (schema === 'busy') plans.push(`workflows: ${workflows}\n${await plan(url, schema, workflows)}`);
    }
    await store.close();
  }
  console.log(`| claim of ${CLAIM} (p50 / p99) | latency | samples |\n| --- | --- | --- |\n${rows.join('\n')}\n`);
  console.log(
    `${server.version}; ${WAITING} parked workflow runs, ${WAITING} delayed tasks, ${RUNNING} running tasks, ` +
      `${READY} + ${READY} claimable; Node ${process.version}; ${cpus().length} cores, load average ` +
      `${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} at the end${quick ? '; quick run' : ''}.\n`,
  );
  console.log('```\n' + plans.join('\n\n') + '\n```');
} finally {
  server.stop();
}
