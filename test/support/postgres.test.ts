/**
 * The PostgreSQL test helper (test/support/postgres.ts): it finds the server programs on PATH or in Debian's
 * directory; on a real server, a query works, an immediate stop refuses connections, a restart brings the same data
 * back on the same port, two databases from `createDatabase()` share nothing, the helper holds no connection while
 * idle, and after `close()` neither a server, its directory nor a handle in this process is left behind.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresBinDir } from './binaries.js';
import { POSTGRES_SERVER, startPostgres, type TestPostgres } from './postgres.js';

/** Stop and restart need a server of the helper's own, not the one at DATABASE_URL. */
const external = Boolean(process.env['DATABASE_URL']);

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  return client;
}

/** Runs `sql` on a connection of its own and gives the rows. */
async function query<R extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []): Promise<R[]> {
  const client = await connect(url);
  try {
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

/** The data directory of the server at `url`, as it reports it. */
async function dataDirectory(url: string): Promise<string> {
  const [row] = await query<{ dir: string }>(url, 'SELECT current_setting($1) AS dir', ['data_directory']);
  return row!.dir;
}

describe('postgresBinDir', () => {
  it("takes POSTGRES_BIN, then a PATH directory with both initdb and pg_ctl, then Debian's newest version", () => {
    const dir = mkdtempSync(join(tmpdir(), 'uo-pgbin-'));
    const programs = (name: string, names: string[]): string => {
      const d = join(dir, name);
      mkdirSync(d);
      for (const n of names) {
        writeFileSync(join(d, n), '#!/bin/sh\n');
        chmodSync(join(d, n), 0o755);
      }
      return d;
    };
    try {
      const onlyInitdb = programs('only-initdb', ['initdb']);
      const both = programs('both', ['initdb', 'pg_ctl']);
      expect(postgresBinDir({ POSTGRES_BIN: '/opt/pg/bin', PATH: both })).toBe('/opt/pg/bin');
      expect(postgresBinDir({ PATH: [onlyInitdb, both].join(delimiter) })).toBe(both);
      // Off PATH: Debian's /usr/lib/postgresql/<ver>/bin, the newest version, or none at all.
      const debian = existsSync('/usr/lib/postgresql')
        ? readdirSync('/usr/lib/postgresql')
            .filter((v) => existsSync(join('/usr/lib/postgresql', v, 'bin', 'pg_ctl')))
            .sort((x, y) => Number(y) - Number(x))
        : [];
      expect(postgresBinDir({ PATH: onlyInitdb })).toBe(
        debian.length > 0 ? join('/usr/lib/postgresql', debian[0]!, 'bin') : undefined,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(POSTGRES_SERVER.skip)('test PostgreSQL server', () => {
  let server: TestPostgres;
  beforeAll(async () => {
    server = await startPostgres();
  }, 120_000);
  afterAll(async () => {
    await server?.close();
  }, 60_000);

  it('answers a query on its url', async () => {
    const [row] = await query<{ one: number; version: string }>(server.url, 'SELECT 1 AS one, version() AS version');
    expect(row!.one).toBe(1);
    expect(row!.version).toMatch(/^PostgreSQL \d+/);
    expect(new URL(server.url).port).toBe(String(server.port));
  });

  it('gives each createDatabase() call a database of its own', async () => {
    const a = await server.createDatabase();
    const b = await server.createDatabase();
    expect(a).not.toBe(b);
    for (const [url, value] of [
      [a, 'in a'],
      [b, 'in b'],
    ] as const) {
      await query(url, 'CREATE TABLE t (v text)');
      await query(url, 'INSERT INTO t VALUES ($1)', [value]);
    }
    expect(await query(a, 'SELECT v FROM t')).toEqual([{ v: 'in a' }]);
    expect(await query(b, 'SELECT v FROM t')).toEqual([{ v: 'in b' }]);
    const [{ name }] = (await query<{ name: string }>(a, 'SELECT current_database() AS name')) as [{ name: string }];
    expect(a.endsWith(`/${name}`)).toBe(true);
    // A database made later starts empty: nothing of a or b in it.
    const c = await server.createDatabase();
    expect(await query(c, "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'")).toEqual([{ n: 0 }]);
  });

  it.skipIf(external)(
    'refuses connections after stop({ mode: "immediate" }) and has its data back after restart()',
    async () => {
      const db = await server.createDatabase();
      await query(db, 'CREATE TABLE kept (id int PRIMARY KEY, v text)');
      await query(db, "INSERT INTO kept SELECT g, 'row ' || g FROM generate_series(1, 100) g");
      const before = await dataDirectory(server.url);
      // A client connected through the crash loses its connection.
      const survivor = await connect(db);
      const lost = new Promise<Error>((resolve) => survivor.on('error', resolve));

      await server.stop({ mode: 'immediate' });
      await expect(lost).resolves.toBeInstanceOf(Error);
      await expect(connect(db)).rejects.toThrow(/ECONNREFUSED/);
      await survivor.end().catch(() => {});

      await server.restart();
      expect(await query(db, 'SELECT count(*)::int AS n, max(v) AS v FROM kept')).toEqual([{ n: 100, v: 'row 99' }]);
      expect(await dataDirectory(server.url)).toBe(before);
      // And it takes writes again.
      await query(db, "INSERT INTO kept VALUES (101, 'after')");
      expect(await query(db, 'SELECT v FROM kept WHERE id = 101')).toEqual([{ v: 'after' }]);
    },
    120_000,
  );

  it.skipIf(external)(
    'disconnects its clients on stop({ mode: "fast" }) and restarts from a clean shutdown',
    async () => {
      const db = await server.createDatabase();
      await query(db, 'CREATE TABLE t (v int)');
      await query(db, 'INSERT INTO t VALUES (7)');
      const client = await connect(db);
      const lost = new Promise<Error>((resolve) => client.on('error', resolve));
      await server.stop({ mode: 'fast' });
      expect((await lost).message).toMatch(/terminat/i);
      await client.end().catch(() => {});
      await expect(connect(db)).rejects.toThrow(/ECONNREFUSED/);
      await server.restart();
      expect(await query(db, 'SELECT v FROM t')).toEqual([{ v: 7 }]);
    },
    120_000,
  );
});

describe.skipIf(POSTGRES_SERVER.skip)('test PostgreSQL server, closed', () => {
  /** The handles that keep a Node process alive, by kind (sockets, child processes, ref'd timers). */
  const handles = (): string[] =>
    process
      .getActiveResourcesInfo()
      .filter((r) => ['TCPSocketWrap', 'TCPWrap', 'PipeWrap', 'ProcessWrap', 'Timeout', 'TCPServerWrap'].includes(r))
      .sort();

  /** The handles in `now` beyond those in `before` (fewer is fine: the runner's own come and go). */
  const extra = (now: string[], before: readonly string[]): string[] => {
    const left = [...now];
    for (const h of before) if (left.includes(h)) left.splice(left.indexOf(h), 1);
    return left;
  };
  /** Closed sockets and exited children are released on a later turn of the event loop. */
  const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 50));

  it('leaves no server, no directory and nothing that keeps the process alive', async () => {
    const baseline = handles();
    const exitHooks = process.listenerCount('exit');
    const server = await startPostgres();
    const db = await server.createDatabase();
    expect(await query(db, 'SELECT 2 AS two')).toEqual([{ two: 2 }]);
    const dir = external ? undefined : await dataDirectory(server.url);
    try {
      // While it runs, the helper holds no connection, child process or timer of its own.
      await settle();
      expect(extra(handles(), baseline)).toEqual([]);
    } finally {
      await server.close();
    }

    if (dir !== undefined) {
      expect(existsSync(dir)).toBe(false);
      await expect(connect(server.url)).rejects.toThrow(/ECONNREFUSED/);
    }
    await settle();
    expect(extra(handles(), baseline)).toEqual([]);
    expect(process.listenerCount('exit')).toBe(exitHooks);
  }, 120_000);

  it.skipIf(external)(
    'leaves no server or directory behind when its process is killed (SIGKILL)',
    async () => {
      const helper = fileURLToPath(new URL('./postgres.ts', import.meta.url));
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          '--input-type=module',
          '-e',
          `const { startPostgres } = await import(${JSON.stringify(helper)});
         const server = await startPostgres();
         const dir = await import('pg').then(async ({ default: pg }) => {
           const c = new pg.Client(server.url); await c.connect();
           const { rows } = await c.query("SELECT current_setting('data_directory') AS dir"); await c.end();
           return rows[0].dir;
         });
         console.log(JSON.stringify({ url: server.url, dir }));
         setInterval(() => {}, 60_000);`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      const started = await new Promise<{ url: string; dir: string }>((resolve, reject) => {
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
          out += chunk;
          if (out.includes('\n')) resolve(JSON.parse(out) as { url: string; dir: string });
        });
        child.once('exit', (code) => reject(new Error(`the child exited (${code}) before starting a server: ${out}`)));
      });
      expect(await query(started.url, 'SELECT 3 AS three')).toEqual([{ three: 3 }]);
      child.kill('SIGKILL');
      // The watchdog polls once a second, then stops the server (immediate) and removes the directory.
      const deadline = Date.now() + 15_000;
      while (existsSync(started.dir) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(existsSync(started.dir)).toBe(false);
      await expect(connect(started.url)).rejects.toThrow(/ECONNREFUSED/);
    },
    120_000,
  );
});
