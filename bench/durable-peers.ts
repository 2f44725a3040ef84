/**
 * End-to-end durable no-op jobs per second, and enqueue-to-complete latency, of the peers the orchestrator's durable
 * runs on PostgreSQL are compared with (issue 17): graphile-worker 0.16 and pg-boss 10, on one server of the bench's
 * own (bench/postgres-server.ts, fsync off), one fresh database per run, in rotating rounds (bench/durable-harness.ts).
 *
 *   npx tsx bench/durable-peers.ts            # three rounds, about three minutes on 2 cores
 *   npx tsx bench/durable-peers.ts --quick    # one round, fewer jobs
 *   npx tsx bench/durable-peers.ts --ours     # only the orchestrator's own subjects
 *
 * Prints a Markdown table on stdout (progress on stderr); bench/results/durable-peers.md keeps a run with its reading.
 *
 * Every subject runs CONCURRENCY jobs at once in this process, enqueues from PRODUCERS callers in parallel through a
 * pool of its own, and counts a job complete when its completion is written back to the database:
 * - graphile-worker: `run()` with `concurrency`, a job is complete at its `job:complete` event (emitted after the
 *   row is deleted); enqueued with `addJob` (one job per call) or with the `graphile_worker.add_jobs` SQL function
 *   (0.16 has no `addJobs` in JavaScript; `add_jobs` is its documented bulk path, through `withPgClient`).
 * - pg-boss: CONCURRENCY `work()` workers on one queue, each fetching up to a batch of jobs per poll, polling every
 *   0.5 s (the least pg-boss allows; it has no LISTEN/NOTIFY, so a job waits for a poll); enqueued with `send` or
 *   `insert`. pg-boss completes a fetched batch without awaiting it, so it runs on a `db` adapter of ours over a
 *   `pg` Pool that reports a job complete when the completing UPDATE returns.
 */
import { cpus, loadavg } from 'node:os';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Logger, makeWorkerUtils, run, type Runner, type WorkerUtils } from 'graphile-worker';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { durableRounds, renderDurable, type DurableOptions, type DurableSubject } from './durable-harness.js';
import { progress } from './harness.js';
import { newDatabase, startPostgresServer } from './postgres-server.js';
import { durableCommit, orchestratorSubject, type CommitResult } from './durable-ours.js';
import { installedVersion } from './rounds.js';

/** Jobs running at once, for every subject. */
export const CONCURRENCY = 8;
/** Enqueue calls in flight at once, for every subject. */
export const PRODUCERS = 8;
/** Jobs per call on the batch enqueue paths. */
export const BATCH = 100;
/** pg-boss's per-worker fetch size on its main configurations (it also runs with 1 and with BATCH). */
export const PGBOSS_FETCH = 16;
/** Connections of each subject's producer pool (graphile-worker's worker pool keeps its default of 10). */
const POOL = 10;

/** A logger that drops everything (graphile-worker logs each job at `info`). */
const quiet = new Logger(() => () => {});

/** graphile-worker, enqueuing with `addJob` when `batch` is 1, else with the `add_jobs` SQL function. */
export function graphileWorker(batch: number): DurableSubject {
  let runner: Runner | undefined;
  let utils: WorkerUtils | undefined;
  const version = installedVersion('graphile-worker');
  return {
    name: `graphile-worker ${version}, ${batch === 1 ? 'addJob' : `add_jobs × ${batch}`}`,
    settings: `concurrency ${CONCURRENCY}, worker pool 10 (default), LISTEN/NOTIFY with pollInterval 2 s (default)`,
    batch,
    async setup(url, completed) {
      runner = await run({
        connectionString: url,
        concurrency: CONCURRENCY,
        noHandleSignals: true,
        logger: quiet,
        taskList: { noop: async () => {} },
      });
      runner.events.on('job:complete', ({ job, error }) => {
        const key = (job.payload as { k: number }).k;
        // An error thrown here would go to graphile-worker's (silenced) logger: say it, and let the run time out.
        if (error === null || error === undefined) completed(key);
        else
          progress(`graphile-worker: job ${key} failed: ${error instanceof Error ? error.message : 'unknown error'}`);
      });
      utils = await makeWorkerUtils({ connectionString: url, maxPoolSize: POOL, logger: quiet });
    },
    async enqueue(keys) {
      if (keys.length === 1) {
        await utils!.addJob('noop', { k: keys[0] });
        return;
      }
      const specs = JSON.stringify(keys.map((k) => ({ identifier: 'noop', payload: { k } })));
      await utils!.withPgClient((client) =>
        client.query(
          `SELECT 1 FROM graphile_worker.add_jobs(ARRAY(
             SELECT s FROM json_populate_recordset(NULL::graphile_worker.job_spec, $1::json) s))`,
          [specs],
        ),
      );
    },
    async teardown() {
      await utils?.release();
      await runner?.stop();
    },
  };
}

/**
 * pg-boss with CONCURRENCY workers fetching up to `fetch` jobs per poll, enqueuing with `send` when `batch` is 1, else
 * with `insert`. `jobs` overrides the run's job count (a fetch of 1 completes at most CONCURRENCY jobs per 0.5 s).
 */
export function pgBoss(batch: number, fetch: number, jobs?: number): DurableSubject {
  const QUEUE = 'noop';
  let pool: pg.Pool | undefined;
  let boss: PgBoss | undefined;
  /** Job id → key, filled before the job is enqueued. */
  const keyOf = new Map<string, number>();
  const version = installedVersion('pg-boss');
  return {
    name: `pg-boss ${version}, ${batch === 1 ? 'send' : `insert × ${batch}`}, fetch ${fetch}`,
    settings: `${CONCURRENCY} work() workers × batchSize ${fetch}, pollingIntervalSeconds 0.5, pool ${POOL}`,
    batch,
    ...(jobs === undefined ? {} : { jobs }),
    async setup(url, completed) {
      pool = new pg.Pool({ connectionString: url, max: POOL });
      const db: PgBoss.Db = {
        async executeSql(text, values) {
          const result = await pool!.query(text, values);
          // The completing statement of pg-boss 10 (plans.js completeJobs): `SET completed_on = now(), …`, ids in $2.
          if (text.includes('SET completed_on = now()')) {
            for (const id of values[1] as string[]) {
              const key = keyOf.get(id);
              if (key === undefined) throw new Error(`pg-boss completed a job the bench did not send: ${id}`);
              completed(key);
            }
          }
          return result;
        },
      };
      boss = new PgBoss({ db, schedule: false });
      boss.on('error', (error) => progress(`pg-boss error: ${error.message}`));
      await boss.start();
      await boss.createQueue(QUEUE);
      for (let i = 0; i < CONCURRENCY; i++) {
        await boss.work(QUEUE, { batchSize: fetch, pollingIntervalSeconds: 0.5 }, async () => {});
      }
    },
    async enqueue(keys) {
      const ids = keys.map((k) => {
        const id = randomUUID();
        keyOf.set(id, k);
        return id;
      });
      if (keys.length === 1) {
        await boss!.send(QUEUE, { k: keys[0] }, { id: ids[0]! });
        return;
      }
      await boss!.insert(keys.map((k, i) => ({ name: QUEUE, id: ids[i]!, data: { k } })));
    },
    async teardown() {
      await boss?.stop({ graceful: true, wait: true, timeout: 10_000 });
      await pool?.end();
    },
  };
}

/** The peers' configurations, in table order. */
export function peerSubjects(quick: boolean): Array<() => DurableSubject> {
  return [
    () => orchestratorSubject(1, CONCURRENCY),
    () => orchestratorSubject(BATCH, CONCURRENCY),
    () => graphileWorker(1),
    () => graphileWorker(BATCH),
    () => pgBoss(1, PGBOSS_FETCH),
    () => pgBoss(BATCH, PGBOSS_FETCH),
    () => pgBoss(BATCH, BATCH),
    () => pgBoss(1, 1, quick ? 80 : 160),
  ];
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const rounds = quick ? 1 : 3;
  const options: DurableOptions = {
    jobs: quick ? 500 : 2_000,
    producers: PRODUCERS,
    warmup: 100,
    idleSamples: quick ? 10 : 30,
    timeoutMs: 120_000,
  };
  // `--ours`: only the orchestrator's own subjects (to compare two versions of it quickly).
  const makers = process.argv.includes('--ours') ? peerSubjects(quick).slice(0, 2) : peerSubjects(quick);
  const subjects = makers.map((make) => make());
  const server = await startPostgresServer();
  progress(`server: ${server.version} at ${server.url}`);
  let databases = 0;
  try {
    const results = await durableRounds(
      makers,
      rounds,
      () => newDatabase(server.url, `durable_${++databases}`),
      options,
      (r) =>
        progress(
          `${r.subject}: ${Math.round(r.jobsPerSecond)} jobs/s, enqueue ${Math.round(r.enqueuePerSecond)}/s, ` +
            `loaded p50 ${r.loadedP50Ms.toFixed(0)} ms, idle p50 ${r.idleP50Ms.toFixed(1)} ms`,
        ),
    );
    console.log(
      renderDurable(
        results,
        subjects.map((s) => s.name),
      ),
    );
    console.log(
      `\nMedians of ${rounds} round${rounds === 1 ? '' : 's'}; ${server.version}, fsync=off, 127.0.0.1; ` +
        `Node ${process.version}; pg ${installedVersion('pg')}; ${cpus().length} cores, load average ` +
        `${loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')} at the end; ${quick ? 'quick' : 'full'} run.`,
    );
    console.log(
      `Every subject: ${PRODUCERS} enqueue calls in flight, ${options.warmup} warm-up jobs, ` +
        `${options.idleSamples} idle-latency samples, a fresh database per run.`,
    );
    const seen = new Set<string>();
    for (const s of subjects) {
      const family = s.name.split(',')[0]!;
      const line = `${family}: ${s.settings}`;
      if (!seen.has(line)) console.log(`${line}.`);
      seen.add(line);
    }
    // Submit-to-commit of the orchestrator's own stores (no peer has the same step: their enqueue is an INSERT).
    const commits: CommitResult[] = [];
    const commitTasks = quick ? 1_000 : 5_000;
    commits.push(
      await durableCommit('postgres', await newDatabase(server.url, `commit_${++databases}`), commitTasks, PRODUCERS),
    );
    commits.push(await durableCommit('pglite', undefined, commitTasks, PRODUCERS));
    console.log('\n| store | tasks | stored per second | commit wait p50 / p99 (ms) |\n| --- | ---: | ---: | ---: |');
    for (const c of commits) {
      console.log(
        `| ${c.store} | ${c.tasks} | ${Math.round(c.storedPerSecond).toLocaleString('en-US')} | ${c.p50Ms.toFixed(2)} / ${c.p99Ms.toFixed(2)} |`,
      );
    }
    console.log(
      `\nSubmit-to-commit: ${PRODUCERS} callers each awaiting enqueue() (the task stored) before the next, ${CONCURRENCY} no-op agents running them meanwhile.`,
    );
  } finally {
    server.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
