/**
 * The shape every durable-workflow subject takes in the workflow bench (bench/workflow-peers.ts), and the measurement
 * the bench makes of each, the same for all: DBOS Transact, and the orchestrator's own workflows on the embedded store
 * and on the server (bench/workflow-ours.ts, issue 18).
 *
 * The work is a workflow of WORKFLOW_STEPS no-op steps, each step's completion checkpointed in the subject's store
 * before the next step starts, the workflow's end written last. A subject knows how to start one such workflow and
 * wait until its end is durable; the harness owns the clock, the concurrency and the statistics, so every subject is
 * timed by the same code.
 */
import pg from 'pg';
import pidusage from 'pidusage';
import { median, summarise } from './harness.js';
import { rotated } from './rounds.js';

/** Steps in the bench's workflow, each a no-op whose completion the subject checkpoints. */
export const WORKFLOW_STEPS = 10;

/** One durable-workflow engine under test, with its knobs fixed. */
export interface WorkflowSubject {
  /** The column name in the table, with the package version and the store (say "DBOS Transact 5.3.0"). */
  readonly name: string;
  /** The knobs in plain words, for the notes under the table (pool sizes, store, notification). */
  readonly settings: string;
  /**
   * Prepares the subject on the (fresh, empty) database at `url`: installs its schema and starts its engine. A
   * subject on an embedded store keeps its data elsewhere (a temporary directory of its own) and may ignore `url`;
   * the write counts are then not measured for it (see `measureWrites`).
   */
  setup(url: string): Promise<void>;
  /**
   * Starts one workflow of WORKFLOW_STEPS no-op steps and resolves once it has completed and its completion is
   * durable (committed in the subject's store). Several calls may be in flight at once.
   */
  runOne(): Promise<void>;
  /**
   * Optional: starts `n` workflows with one call (the subject's batch start, when it has one) and resolves once all
   * of them have completed durably. The harness then also measures a burst of workflows started this way.
   */
  startMany?(n: number): Promise<void>;
  /** Stops the engine and closes every connection; nothing of the subject keeps the process alive after. */
  teardown(): Promise<void>;
  /**
   * Optional: how many SQL statements the subject has sent to its database since `setup`, when it can count them
   * (on a pool of the bench's, say). Only `measureWrites` uses it, for the statements per workflow.
   */
  statementsSent?(): number;
}

/** What one run of a subject measured. */
export interface WorkflowResult {
  readonly subject: string;
  /** Workflows in the throughput run. */
  readonly workflows: number;
  /** Workflows in flight at once during the throughput run. */
  readonly inFlight: number;
  /** Workflows completed per second in the throughput run. */
  readonly workflowsPerSecond: number;
  /**
   * CPU time of this process (user + system, all threads) per workflow in the throughput run, µs: the engine's own
   * cost, less dependent on what else the machine runs than the rates are. The database server's CPU is not in it.
   */
  readonly cpuUsPerWorkflow: number;
  /**
   * CPU time of the database server's processes per workflow in the throughput run, µs (the processes listed in
   * `pg_stat_activity`: the backends of every database and the background processes; 0 for a subject whose store
   * is embedded in this process, whose CPU is in `cpuUsPerWorkflow`).
   */
  readonly serverCpuUsPerWorkflow: number;
  /** Start-to-durable-end of the throughput run's workflows, ms (latency with `inFlight` running). */
  readonly loadedP50Ms: number;
  readonly loadedP99Ms: number;
  /** Start-to-durable-end of one workflow at a time on an idle engine, ms. */
  readonly idleP50Ms: number;
  readonly idleP99Ms: number;
  /** The idle latency over WORKFLOW_STEPS: what one checkpointed step costs, µs. */
  readonly stepP50Us: number;
  readonly stepP99Us: number;
  /** Workflows per second of one `startMany(workflows)` call, when the subject has `startMany`. */
  readonly burstPerSecond?: number;
}

/** How a run goes; the same for every subject. */
export interface WorkflowOptions {
  /** Workflows in the throughput run. */
  readonly workflows: number;
  /** Workflows in flight at once in the throughput run (callers each awaiting `runOne` before the next). */
  readonly inFlight: number;
  /** Workflows run before the measurements, with `inFlight` at once, not measured. */
  readonly warmup: number;
  /** One-at-a-time workflows for the idle latency and the per-step overhead. */
  readonly idleSamples: number;
  /** A run, or one phase of it, that does not complete within this fails. */
  readonly timeoutMs: number;
}

/** `promise`, or a rejection naming `what` after `timeoutMs`. */
async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not complete in ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `count` workflows through `subject.runOne`, `inFlight` callers each awaiting one before starting the next;
 * gives each workflow's start-to-end time in ms and the whole span.
 */
async function closedLoop(
  subject: WorkflowSubject,
  count: number,
  inFlight: number,
): Promise<{ latencies: number[]; spanMs: number }> {
  const latencies: number[] = [];
  let next = 0;
  const caller = async (): Promise<void> => {
    while (next < count) {
      next++;
      const t = performance.now();
      await subject.runOne();
      latencies.push(performance.now() - t);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, caller));
  return { latencies, spanMs: performance.now() - t0 };
}

/** CPU time this process has used so far (user + system), µs. */
function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/**
 * CPU time (user + system, ms) so far of each process of the server at `url` listed in `pg_stat_activity` (the
 * backends of every database and the background processes), by process id.
 */
async function serverCpu(url: string): Promise<Map<number, number>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  let pids: number[];
  try {
    const rows = await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()');
    pids = rows.rows.map((r) => r.pid);
  } finally {
    await client.end();
  }
  const stats = await pidusage(pids);
  const cpu = new Map<number, number>();
  for (const pid of pids) {
    const stat = stats[pid];
    if (stat) cpu.set(pid, stat.ctime);
  }
  return cpu;
}

/**
 * CPU time (ms) the server's processes used from `before` to `after` (`serverCpu` readings): a process started in
 * between counts from zero; one that ended in between is not counted (a subject's pool connections live through a
 * run, so they are).
 */
function serverCpuUsed(before: Map<number, number>, after: Map<number, number>): number {
  let used = 0;
  for (const [pid, ms] of after) used += ms - (before.get(pid) ?? 0);
  return used;
}

/**
 * One run of `subject` on the fresh database at `url`: set up, warm up, throughput with `inFlight` at once, idle
 * latency one at a time, the burst when the subject has `startMany`, tear down.
 */
export async function runWorkflows(
  subject: WorkflowSubject,
  url: string,
  options: WorkflowOptions,
): Promise<WorkflowResult> {
  await subject.setup(url);
  try {
    const { timeoutMs, inFlight, workflows } = options;
    await within(closedLoop(subject, options.warmup, inFlight), timeoutMs, `${subject.name} warm-up`);

    const serverBefore = await serverCpu(url);
    const cpu = cpuMicros();
    const loaded = await within(closedLoop(subject, workflows, inFlight), timeoutMs, `${subject.name} throughput run`);
    const cpuUsed = cpuMicros() - cpu;
    const serverUsed = serverCpuUsed(serverBefore, await serverCpu(url));
    const loadedStats = summarise(loaded.latencies);

    const idle = await within(closedLoop(subject, options.idleSamples, 1), timeoutMs, `${subject.name} idle latency`);
    const idleStats = summarise(idle.latencies);

    let burstPerSecond: number | undefined;
    if (subject.startMany) {
      const t = performance.now();
      await within(subject.startMany(workflows), timeoutMs, `${subject.name} burst`);
      burstPerSecond = (workflows * 1_000) / (performance.now() - t);
    }

    return {
      subject: subject.name,
      workflows,
      inFlight,
      workflowsPerSecond: (workflows * 1_000) / loaded.spanMs,
      cpuUsPerWorkflow: cpuUsed / workflows,
      serverCpuUsPerWorkflow: (serverUsed * 1_000) / workflows,
      loadedP50Ms: loadedStats.p50Us / 1_000,
      loadedP99Ms: loadedStats.p99Us / 1_000,
      idleP50Ms: idleStats.p50Us / 1_000,
      idleP99Ms: idleStats.p99Us / 1_000,
      stepP50Us: idleStats.p50Us / WORKFLOW_STEPS,
      stepP99Us: idleStats.p99Us / WORKFLOW_STEPS,
      ...(burstPerSecond === undefined ? {} : { burstPerSecond }),
    };
  } finally {
    await subject.teardown();
  }
}

/**
 * `rounds` rounds of every subject, in a rotating order, each run on a database of its own from `newDatabase`.
 * `makers` make a fresh subject per run; `onResult` hears each result as it comes (for progress lines).
 */
export async function workflowRounds(
  makers: ReadonlyArray<() => WorkflowSubject>,
  rounds: number,
  newDatabase: () => Promise<string>,
  options: WorkflowOptions,
  onResult: (result: WorkflowResult) => void = () => {},
): Promise<WorkflowResult[]> {
  const results: WorkflowResult[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const make of rotated(makers, round)) {
      const result = await runWorkflows(make(), await newDatabase(), options);
      onResult(result);
      results.push(result);
    }
  }
  return results;
}

/** A Markdown table of the medians over rounds, one row per subject in the order of `subjects`. */
export function renderWorkflows(results: readonly WorkflowResult[], subjects: readonly string[]): string {
  const whole = (v: number): string => Math.round(v).toLocaleString('en');
  const lines = [
    '| subject | workflows × in flight | rounds | workflows/s | steps/s | CPU per workflow, Node / server (µs) | ' +
      'per-step overhead p50 / p99 (µs) | ' +
      'idle latency p50 / p99 (ms) | latency in flight p50 / p99 (ms) | burst workflows/s |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const name of subjects) {
    const of = results.filter((r) => r.subject === name);
    if (of.length === 0) continue;
    const m = (pick: (r: WorkflowResult) => number): number => median(of.map(pick));
    const bursts = of.flatMap((r) => (r.burstPerSecond === undefined ? [] : [r.burstPerSecond]));
    lines.push(
      `| ${name} | ${of[0]!.workflows} × ${of[0]!.inFlight} | ${of.length} | ${whole(m((r) => r.workflowsPerSecond))} | ` +
        `${whole(m((r) => r.workflowsPerSecond * WORKFLOW_STEPS))} | ${whole(m((r) => r.cpuUsPerWorkflow))} / ` +
        `${whole(m((r) => r.serverCpuUsPerWorkflow))} | ` +
        `${whole(m((r) => r.stepP50Us))} / ${whole(m((r) => r.stepP99Us))} | ` +
        `${m((r) => r.idleP50Ms).toFixed(1)} / ${m((r) => r.idleP99Ms).toFixed(1)} | ` +
        `${m((r) => r.loadedP50Ms).toFixed(1)} / ${m((r) => r.loadedP99Ms).toFixed(1)} | ` +
        `${bursts.length === 0 ? '—' : whole(median(bursts))} |`,
    );
  }
  return lines.join('\n');
}

/** What `measureWrites` counted for one subject. */
export interface WriteCounts {
  readonly subject: string;
  readonly workflows: number;
  /** Rows inserted, updated and deleted per workflow, by table (`schema.table`), tables with none left out. */
  readonly rowsPerWorkflow: ReadonlyArray<{ table: string; inserted: number; updated: number; deleted: number }>;
  /** Transactions that wrote (transaction ids consumed in the cluster) per workflow. */
  readonly writeTransactionsPerWorkflow: number;
  /** WAL generated per workflow, bytes. */
  readonly walBytesPerWorkflow: number;
  /** Statements sent per workflow (round trips, BEGIN and COMMIT included), when the subject counts them. */
  readonly statementsPerWorkflow?: number;
}

/** Reads the server's counters for the database at `url`, after waiting for closed sessions to report theirs. */
async function counters(url: string): Promise<{
  tables: Map<string, { ins: number; upd: number; del: number }>;
  xid: bigint;
  lsn: string;
}> {
  // A session reports its table counters when it ends; the subject's sessions have just been closed.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('SELECT pg_stat_clear_snapshot()');
    const rows = await client.query<{ name: string; ins: string; upd: string; del: string }>(
      `SELECT schemaname || '.' || relname AS name, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_del AS del
         FROM pg_stat_user_tables`,
    );
    // The next transaction id to be assigned (reading it assigns none, so the reads here do not count).
    const xid = await client.query<{ next: string }>(
      `SELECT (txid_snapshot_xmax(txid_current_snapshot()))::text AS next`,
    );
    const lsn = await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    return {
      tables: new Map(rows.rows.map((r) => [r.name, { ins: Number(r.ins), upd: Number(r.upd), del: Number(r.del) }])),
      xid: BigInt(xid.rows[0]!.next),
      lsn: lsn.rows[0]!.lsn,
    };
  } finally {
    await client.end();
  }
}

/** WAL bytes between two LSNs (`X/Y` in hex), as PostgreSQL's pg_wal_lsn_diff computes. */
function lsnBytes(from: string, to: string): number {
  const value = (lsn: string): bigint => {
    const [hi, lo] = lsn.split('/');
    return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
  };
  return Number(value(to) - value(from));
}

/**
 * What `subject` writes per workflow in the (fresh) database at `url` of an otherwise idle server: a first session
 * (setup, one workflow, teardown) installs the schema; the counters are read; a second session runs `workflows`
 * workflows `inFlight` at once and is torn down; the counters are read again. The difference, over `workflows`, is
 * the write cost of one workflow (the second session's own start-up writes, if any, spread over them: keep
 * `workflows` in the hundreds). Counts for the whole server (transactions, WAL) assume nothing else writes there.
 */
export async function measureWrites(
  subject: WorkflowSubject,
  url: string,
  workflows: number,
  inFlight: number,
): Promise<WriteCounts> {
  await subject.setup(url);
  try {
    await subject.runOne();
  } finally {
    await subject.teardown();
  }
  const before = await counters(url);
  await subject.setup(url);
  let statements: number | undefined;
  try {
    const sentBefore = subject.statementsSent?.() ?? 0;
    await closedLoop(subject, workflows, inFlight);
    const sentAfter = subject.statementsSent?.();
    if (sentAfter !== undefined) statements = sentAfter - sentBefore;
  } finally {
    await subject.teardown();
  }
  const after = await counters(url);
  const rowsPerWorkflow: Array<{ table: string; inserted: number; updated: number; deleted: number }> = [];
  for (const [table, end] of [...after.tables].sort(([a], [b]) => a.localeCompare(b))) {
    const start = before.tables.get(table) ?? { ins: 0, upd: 0, del: 0 };
    const row = {
      table,
      inserted: (end.ins - start.ins) / workflows,
      updated: (end.upd - start.upd) / workflows,
      deleted: (end.del - start.del) / workflows,
    };
    if (row.inserted + row.updated + row.deleted > 0) rowsPerWorkflow.push(row);
  }
  return {
    subject: subject.name,
    workflows,
    rowsPerWorkflow,
    writeTransactionsPerWorkflow: Number(after.xid - before.xid) / workflows,
    walBytesPerWorkflow: lsnBytes(before.lsn, after.lsn) / workflows,
    ...(statements === undefined ? {} : { statementsPerWorkflow: statements / workflows }),
  };
}
