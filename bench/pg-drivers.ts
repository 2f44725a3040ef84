/**
 * Which PostgreSQL driver the durable store should use, measured: node-postgres (`pg`, its Pool) and porsager's
 * `postgres` on one server of the bench's own (bench/postgres-server.ts), and PGlite in this process on a temporary
 * data directory, through the same operations the store will do:
 *
 * - a grouped insert of 1, 16 and 256 rows in one statement (`INSERT … SELECT * FROM unnest($1::text[], …)`),
 * - a single-row round trip (a primary-key lookup), alone and 32 at once through the pool,
 * - a claim of 16 rows (`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT 16) RETURNING id`),
 * - LISTEN/NOTIFY latency: `pg_notify` sent through the pool, until the listening connection hands the payload over.
 *
 *   npx tsx bench/pg-drivers.ts            # three rounds, two to three minutes on 2 cores
 *   npx tsx bench/pg-drivers.ts --quick    # shorter samples
 *
 * Prints a Markdown table on stdout (progress on stderr); bench/results/pg-drivers.md keeps a run with its reading.
 * Each driver keeps its defaults (pg: unnamed statements; postgres: prepared statements), with a pool of 4.
 */
import { PGlite } from '@electric-sql/pglite';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import postgres from 'postgres';
import { median, progress, sampleLatency, summarise, type LatencyStats } from './harness.js';
import { newDatabase, startPostgresServer } from './postgres-server.js';
import { installedVersion as installed, rotated } from './rounds.js';

const quick = process.argv.includes('--quick');
/** Rounds per subject; each figure is the median over rounds. */
const ROUNDS = quick ? 1 : 3;
const budget = { timeMs: quick ? 300 : 1_000, minSamples: quick ? 20 : 50, warmupMs: quick ? 50 : 200 };
const POOL = 4;
const CLAIM = 16;
const CONCURRENT = 32;
/** Rows the claim case starts with; claimed rows are put back (outside the sample) when fewer than CLAIM are left. */
const QUEUE_ROWS = 20_000;

/** What the bench needs of a driver. */
interface Subject {
  readonly name: string;
  query(sql: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>;
  /** Listens on `channel` on a connection of its own; resolves once listening, with a function to stop. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

function pgSubject(url: string): Subject {
  const pool = new pg.Pool({ connectionString: url, max: POOL });
  return {
    name: `pg ${pgVersion()}`,
    async query(sql, params) {
      return (await pool.query(sql, params)).rows as Array<Record<string, unknown>>;
    },
    async listen(channel, onPayload) {
      const client = await pool.connect();
      client.on('notification', (n) => onPayload(n.payload ?? ''));
      await client.query(`LISTEN ${channel}`);
      return async () => {
        await client.query(`UNLISTEN ${channel}`);
        client.release();
      };
    },
    close: () => pool.end(),
  };
}

function porsagerSubject(url: string): Subject {
  const sql = postgres(url, { max: POOL, onnotice: () => {} });
  return {
    name: `postgres ${porsagerVersion()}`,
    async query(text, params = []) {
      return [...(await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[]))];
    },
    async listen(channel, onPayload) {
      const listening = await sql.listen(channel, onPayload);
      return () => listening.unlisten();
    },
    close: () => sql.end({ timeout: 5 }),
  };
}

function pgliteSubject(db: PGlite, version: string): Subject {
  return {
    name: `PGlite ${version}`,
    async query(sql, params) {
      return (await db.query<Record<string, unknown>>(sql, params)).rows;
    },
    async listen(channel, onPayload) {
      return db.listen(channel, onPayload);
    },
    close: () => db.close(),
  };
}

const pgVersion = (): string => installed('pg');
const porsagerVersion = (): string => installed('postgres');

const SCHEMA = `
  CREATE TABLE bench_runs (id text PRIMARY KEY, type text NOT NULL, payload text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE bench_queue (id bigint PRIMARY KEY, status text NOT NULL, owner text);
  CREATE INDEX bench_queue_queued ON bench_queue (id) WHERE status = 'queued';
`;

/** One row of the table: a case on one subject. */
interface Row {
  readonly subject: string;
  readonly case: string;
  readonly stats: LatencyStats;
  /** Rows or operations per second, where the case has a throughput. */
  readonly perSecond?: number;
}

/** One round of every case on `subject`, on tables of its own (dropped after). */
async function measure(subject: Subject): Promise<Row[]> {
  for (const statement of SCHEMA.split(';')) if (statement.trim()) await subject.query(statement);
  try {
    return await measureCases(subject);
  } finally {
    await subject.query('DROP TABLE bench_runs, bench_queue');
  }
}

/** Table columns: pg, postgres, then PGlite. */
function order(subject: string): number {
  return subject.startsWith('pg ') ? 0 : subject.startsWith('postgres ') ? 1 : 2;
}

async function measureCases(subject: Subject): Promise<Row[]> {
  const rows: Row[] = [];
  const add = (name: string, samples: Float64Array, perSample = 1): void => {
    const stats = summarise(samples);
    rows.push({ subject: subject.name, case: name, stats, perSecond: (perSample * 1e6) / stats.meanUs });
    progress(`${subject.name}: ${name} p50 ${stats.p50Us.toFixed(0)} µs`);
  };
  let seq = 0;
  const payload = JSON.stringify({ prompt: 'x'.repeat(200), priority: 5 });
  for (const n of [1, 16, 256]) {
    const samples = await sampleLatency(
      `${subject.name} insert ${n}`,
      async () => {
        const ids = Array.from({ length: n }, () => `t${++seq}`);
        const types = ids.map(() => 'summarise');
        const payloads = ids.map(() => payload);
        const t0 = performance.now();
        await subject.query(
          'INSERT INTO bench_runs (id, type, payload) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])',
          [ids, types, payloads],
        );
        return performance.now() - t0;
      },
      budget,
    );
    add(`grouped insert, ${n} row${n === 1 ? '' : 's'}`, samples, n);
  }

  const known = seq;
  const lookup = (): Promise<unknown> =>
    subject.query('SELECT id, type, payload FROM bench_runs WHERE id = $1', [
      `t${1 + Math.floor(Math.random() * known)}`,
    ]);
  add(
    'single-row round trip',
    await sampleLatency(
      `${subject.name} lookup`,
      async () => {
        const t0 = performance.now();
        await lookup();
        return performance.now() - t0;
      },
      budget,
    ),
  );
  add(
    `${CONCURRENT} lookups at once`,
    await sampleLatency(
      `${subject.name} concurrent lookups`,
      async () => {
        const t0 = performance.now();
        await Promise.all(Array.from({ length: CONCURRENT }, lookup));
        return performance.now() - t0;
      },
      budget,
    ),
    CONCURRENT,
  );

  await subject.query(
    `INSERT INTO bench_queue (id, status) SELECT g, 'queued' FROM generate_series(1, ${QUEUE_ROWS}) g`,
  );
  add(
    `claim ${CLAIM} (SKIP LOCKED)`,
    await sampleLatency(
      `${subject.name} claim`,
      async () => {
        const t0 = performance.now();
        const claimed = await subject.query(
          `UPDATE bench_queue SET status = 'running', owner = $2 WHERE id IN (
             SELECT id FROM bench_queue WHERE status = 'queued' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
           ) RETURNING id`,
          [CLAIM, 'node-1'],
        );
        const took = performance.now() - t0;
        if (claimed.length < CLAIM) await subject.query(`UPDATE bench_queue SET status = 'queued', owner = NULL`);
        return took;
      },
      budget,
    ),
    CLAIM,
  );

  let waiting: ((payload: string) => void) | undefined;
  const unlisten = await subject.listen('bench_events', (p) => waiting?.(p));
  let notes = 0;
  add(
    'LISTEN/NOTIFY latency',
    await sampleLatency(
      `${subject.name} notify`,
      async () => {
        const expected = `n${++notes}`;
        const received = new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`${subject.name}: no notification in 5 s`)), 5_000);
          waiting = (p) => {
            if (p !== expected) return;
            clearTimeout(timer);
            resolve();
          };
        });
        const t0 = performance.now();
        await subject.query('SELECT pg_notify($1, $2)', ['bench_events', expected]);
        await received;
        return performance.now() - t0;
      },
      budget,
    ),
  );
  await unlisten();
  return rows;
}

function render(rows: readonly Row[], subjects: readonly string[]): string {
  const cases = [...new Set(rows.map((r) => r.case))];
  const cell = (c: string, s: string): string => {
    const of = rows.filter((r) => r.case === c && r.subject === s);
    if (of.length === 0) return '–';
    const p50 = median(of.map((r) => r.stats.p50Us)) / 1_000;
    const p99 = median(of.map((r) => r.stats.p99Us)) / 1_000;
    const perSecond = median(of.map((r) => r.perSecond ?? 0));
    const rate =
      c.includes('NOTIFY') || c.includes('round trip') ? '' : ` (${Math.round(perSecond).toLocaleString('en')}/s)`;
    return `${p50.toFixed(2)} / ${p99.toFixed(2)} ms${rate}`;
  };
  const lines = [
    `| case (p50 / p99, rows or ops per second; medians of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}) | ${subjects.join(' | ')} |`,
    `| --- | ${subjects.map(() => '---').join(' | ')} |`,
  ];
  for (const c of cases) {
    lines.push(`| ${c} | ${subjects.map((s) => cell(c, s)).join(' | ')} |`);
  }
  return lines.join('\n');
}

const rows: Row[] = [];
const notes: string[] = [];

// PGlite first: its first open runs initdb in WebAssembly, which takes seconds.
const dataDir = mkdtempSync(join(tmpdir(), 'uo-bench-pglite-'));
const server = await startPostgresServer();
progress(`server: ${server.version} at ${server.url}`);
let pglite: Subject | undefined;
const subjects: string[] = [];
try {
  let t0 = performance.now();
  let db = await PGlite.create(dataDir);
  const firstOpenMs = performance.now() - t0;
  await db.close();
  t0 = performance.now();
  db = await PGlite.create(dataDir);
  const reopenMs = performance.now() - t0;
  notes.push(
    `PGlite ${installed('@electric-sql/pglite')} on a data directory: first open (initdb) ${Math.round(firstOpenMs)} ms, ` +
      `reopen ${Math.round(reopenMs)} ms`,
  );
  pglite = pgliteSubject(db, installed('@electric-sql/pglite'));

  // Rounds, each subject in turn and in a rotating order, so that a busy moment of the machine does not fall on one.
  let databases = 0;
  const makers: Array<() => Promise<Subject>> = [
    async () => pgSubject(await newDatabase(server.url, `bench_${++databases}`)),
    async () => porsagerSubject(await newDatabase(server.url, `bench_${++databases}`)),
    async () => pglite!,
  ];
  for (let round = 0; round < ROUNDS; round++) {
    for (const make of rotated(makers, round)) {
      const subject = await make();
      if (!subjects.includes(subject.name)) subjects.push(subject.name);
      try {
        rows.push(...(await measure(subject)));
      } finally {
        if (subject !== pglite) await subject.close();
      }
    }
  }
} finally {
  await pglite?.close();
  server.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
subjects.sort((a, b) => order(a) - order(b));

console.log(render(rows, subjects));
console.log(
  `\n${server.version}, fsync=off, 127.0.0.1; pool of ${POOL}; Node ${process.version}; ` +
    `${cpus().length} cores, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} at the end; ${quick ? 'quick' : 'full'} run.`,
);
for (const note of notes) console.log(note + '.');
