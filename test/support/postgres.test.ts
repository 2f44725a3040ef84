/**
 * The PostgreSQL test helper (test/support/postgres.ts) on a real server: it starts one, a query works, an immediate
 * stop refuses connections, a restart brings the same data back on the same port, two databases from
 * `createDatabase()` share nothing, and after `close()` neither a server, its directory nor a handle in this process is
 * left behind.
 */
import { existsSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
      .filter((r) => ['TCPWrap', 'PipeWrap', 'ProcessWrap', 'Timeout', 'TCPServerWrap'].includes(r))
      .sort();

  it('leaves no server, no directory and nothing that keeps the process alive', async () => {
    const baseline = handles();
    const server = await startPostgres();
    const db = await server.createDatabase();
    expect(await query(db, 'SELECT 2 AS two')).toEqual([{ two: 2 }]);
    const dir = external ? undefined : await dataDirectory(server.url);
    await server.close();

    if (dir !== undefined) {
      expect(existsSync(dir)).toBe(false);
      await expect(connect(server.url)).rejects.toThrow(/ECONNREFUSED/);
    }
    // Closed clients may take a tick to release their sockets.
    await new Promise((resolve) => setImmediate(resolve));
    // Nothing of any kind beyond what was there before the server started (fewer is fine: the runner's own come and go).
    const extra = [...handles()];
    for (const h of baseline) if (extra.includes(h)) extra.splice(extra.indexOf(h), 1);
    expect(extra).toEqual([]);
  }, 120_000);
});
