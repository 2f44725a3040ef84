/**
 * A real PostgreSQL server for the tests: a cluster of its own, made by `initdb` in a temporary directory and run by
 * `pg_ctl` on a free port of 127.0.0.1 (its Unix socket in that directory too), or the server at DATABASE_URL when
 * set. No PostgreSQL mocks. Each test takes its own database (`createDatabase()`), so tests never share state.
 *
 * Unlike the Redis helper's, the data is on disk: `stop()` then `restart()` brings the same cluster back on the same
 * port with everything committed before the stop (even after `stop({ mode: 'immediate' })`, a crash: the server
 * replays its WAL). `fsync=off` makes it fast; it only loses data if the machine itself goes down.
 *
 * Running as root: `initdb` and `postgres` refuse to run as root, so the helper runs `initdb` and `pg_ctl` as the
 * `postgres` user (Debian's `postgresql` package makes it; `nobody` when it is missing) through `runuser -u`, after
 * giving that user the temporary directory. The temporary directory's parent (`os.tmpdir()`, `/tmp`) must be
 * traversable by that user.
 *
 * Suites on PostgreSQL are declared `describe.skipIf(POSTGRES_SERVER.skip)`: without the server programs (and without
 * DATABASE_URL) they skip, unless `CI` is set (test/support/binaries.ts). The programs are looked up on PATH, then in
 * Debian's `/usr/lib/postgresql/<ver>/bin` (`POSTGRES_BIN` names another directory).
 *
 * A server outlives the process that started it (`pg_ctl` daemonises it), so the helper leaves none behind: `close()`
 * stops it, an exit hook does when the process exits, and a watchdog shell does within a second when the process is
 * killed (a test worker killed by its runner, Ctrl-C), since a killed process runs no hook.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client as PgClient } from 'pg';
import { POSTGRES_SERVER, postgresBinDir } from './binaries.js';
import { freePort } from './free-port.js';
import { afterAll, beforeAll } from 'vitest';

export { POSTGRES_SERVER };

/** How `stop()` shuts the server down (`pg_ctl stop -m`). */
export type PostgresStopMode = 'immediate' | 'fast';

export interface TestPostgres {
  /** The server's own `postgres` database: for administration, not for a test's tables (see `createDatabase`). */
  readonly url: string;
  readonly port: number;
  /** Whether this helper owns the server (and so can stop and restart it). */
  readonly owned: boolean;
  /**
   * Stops the server. `immediate` (the default) aborts every process without a checkpoint, as a crash would; `fast`
   * disconnects the clients and shuts down cleanly. The data directory stays for `restart()`.
   */
  stop(options?: { mode?: PostgresStopMode }): Promise<void>;
  /** Starts the same cluster again on the same port (stopping it first, `immediate`, when it runs): data survives. */
  restart(): Promise<void>;
  /** A new, empty database no other test uses; returns its connection URL. Dropped by `close()`. */
  createDatabase(prefix?: string): Promise<string>;
  /** Stops the server (when owned) and removes its temporary directory, or drops the databases made on DATABASE_URL. */
  close(): Promise<void>;
}

/** The user the server programs run as: ourselves, or an unprivileged one when we are root (initdb refuses root). */
function serverUser(): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n');
  for (const name of ['postgres', 'nobody']) {
    const fields = passwd.find((line) => line.startsWith(`${name}:`))?.split(':');
    if (fields) return { name, uid: Number(fields[2]), gid: Number(fields[3]) };
  }
  throw new Error('running as root, and neither a postgres nor a nobody user exists to run initdb and postgres as');
}

/** `command args` as the server user (through `runuser -u` when we are root). */
function asServerUser(
  user: ReturnType<typeof serverUser>,
  command: string,
  args: string[],
): [file: string, args: string[]] {
  return user ? ['runuser', ['-u', user.name, '--', command, ...args]] : [command, args];
}

function run(file: string, args: string[], cwd: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Single-quotes `value` for sh. */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * Starts a shell, detached in a process group of its own and not holding this process open, that waits for this
 * process to end, then runs `stop` and removes `dir`; `close()` kills it first. Kept apart from this process's
 * `exit` event, which a test worker killed by its runner never emits.
 */
function startWatchdog(dir: string, [file, args]: [string, string[]]): ChildProcess {
  const stop = [file, ...args].map(shellQuote).join(' ');
  const script =
    `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ` +
    `${stop} >/dev/null 2>&1; rm -rf ${shellQuote(dir)}`;
  const child = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' });
  child.unref();
  return child;
}

/** A fresh `pg` client on `url`, connected. */
async function connectPg(url: string): Promise<PgClient> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  // A server stopped under an idle client emits 'error' on it; the helper's clients are short-lived, so ignore it.
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** Runs `sql` on a short-lived connection to `url`. */
async function adminQuery(url: string, sql: string): Promise<void> {
  const client = await connectPg(url);
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** A database on the server at DATABASE_URL: it cannot be stopped or restarted, its databases are dropped by close(). */
function externalPostgres(external: string): TestPostgres {
  const port = Number(new URL(external).port || 5432);
  const created: string[] = [];
  const refuse = async (): Promise<void> => {
    throw new Error('This test stops or restarts PostgreSQL: it needs a server of its own (unset DATABASE_URL)');
  };
  return {
    url: external,
    port,
    owned: false,
    stop: refuse,
    restart: refuse,
    async createDatabase(prefix = 'uo_test') {
      const name = `${prefix}_${randomBytes(6).toString('hex')}`;
      await adminQuery(external, `CREATE DATABASE "${name}"`);
      created.push(name);
      const url = new URL(external);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async close() {
      for (const name of created.splice(0))
        await adminQuery(external, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

/**
 * Starts a PostgreSQL server of the test's own (see the file header), or gives the one at DATABASE_URL. Call `close()`
 * after (an `afterAll`); should the process end first, an exit hook or, when it was killed, a watchdog stops the
 * server and removes its directory.
 */
export async function startPostgres(): Promise<TestPostgres> {
  const external = process.env['DATABASE_URL'];
  if (external) return externalPostgres(external);
  const bin = postgresBinDir();
  if (!bin || !POSTGRES_SERVER.present) throw new Error(POSTGRES_SERVER.message);
  const user = serverUser();
  const dir = mkdtempSync(join(tmpdir(), 'uo-pg-'));
  const data = join(dir, 'data');
  const as = (program: string, args: string[]): [string, string[]] => asServerUser(user, join(bin, program), args);
  // Should this process die without close() (a failed run, a test worker killed by its runner, Ctrl-C), a watchdog
  // of its own process group stops the server and removes the directory within a second.
  const watchdog = startWatchdog(dir, as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']));
  let running = false;
  let port = await freePort();
  const ctl = (args: string[]): Promise<string> => run(...as('pg_ctl', ['-D', data, ...args]), dir);
  const launch = async (): Promise<boolean> => {
    const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`;
    try {
      // -w: pg_ctl waits for this cluster's postmaster to accept connections, or fails when it exits (port taken).
      await ctl(['-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
      running = true;
      return true;
    } catch {
      return false;
    }
  };
  try {
    if (user) chownSync(dir, user.uid, user.gid);
    await run(
      ...as('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync']),
      dir,
    );
    // Another test file may take the same free port at the same moment: then draw another one.
    for (let tries = 1; !(await launch()); tries++) {
      if (tries === 5) {
        const log = readFileSync(join(dir, 'server.log'), 'utf8').split('\n').slice(-10).join('\n');
        throw new Error(`could not start a PostgreSQL server of our own on a free port in 5 tries; its log:\n${log}`);
      }
      port = await freePort();
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    watchdog.kill();
    throw error;
  }

  const onExit = (): void => {
    if (running) {
      const [file, args] = as('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      try {
        execFileSync(file, args, { cwd: '/', stdio: 'ignore', timeout: 10_000 });
      } catch {
        // Already gone.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const stop = async ({ mode = 'immediate' }: { mode?: PostgresStopMode } = {}): Promise<void> => {
    if (!running) return;
    await ctl(['-m', mode, '-w', '-t', '60', 'stop']);
    running = false;
  };
  return {
    url,
    port,
    owned: true,
    stop,
    async restart() {
      await stop();
      if (!(await launch())) throw new Error(`PostgreSQL could not take port ${port} again (see ${dir}/server.log)`);
    },
    async createDatabase(prefix = 'uo_test') {
      const name = `${prefix}_${randomBytes(6).toString('hex')}`;
      await adminQuery(url, `CREATE DATABASE "${name}"`);
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async close() {
      process.removeListener('exit', onExit);
      try {
        await stop({ mode: 'fast' }).catch(() => stop({ mode: 'immediate' }));
      } finally {
        rmSync(dir, { recursive: true, force: true });
        watchdog.kill();
      }
    },
  };
}

/**
 * A server for the enclosing `describe`: started before its tests (`beforeAll`) and closed after them (`afterAll`).
 * Returns a getter, to call inside the tests.
 *
 * @example
 * ```ts
 * describe.skipIf(POSTGRES_SERVER.skip)('on a server', () => {
 *   const pg = postgresForSuite();
 *   it('…', async () => { const url = await pg().createDatabase(); });
 * });
 * ```
 */
export function postgresForSuite(): () => TestPostgres {
  let server: TestPostgres | undefined;
  beforeAll(async () => {
    server = await startPostgres();
  }, 120_000);
  afterAll(async () => {
    await server?.close();
  }, 60_000);
  return () => {
    if (!server)
      throw new Error("the suite's PostgreSQL server is not started (call postgresForSuite() in a describe)");
    return server;
  };
}
