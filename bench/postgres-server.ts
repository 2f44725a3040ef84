/**
 * A PostgreSQL server of the bench's own: a cluster made by `initdb` in a temporary directory, run by `pg_ctl` on a
 * free port of 127.0.0.1 with `fsync=off`, stopped and removed after. The same approach as test/support/postgres.ts
 * (as the `postgres` user through `runuser` when running as root, since initdb refuses root), kept here so bench code
 * does not import from test/. The programs are found as the tests find them (`POSTGRES_BIN`, PATH, then Debian's
 * `/usr/lib/postgresql/<ver>/bin`); fails with a clear message when there are none.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, chownSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import pg from 'pg';
import { freePort } from '../test/support/free-port.js';

export interface BenchPostgres {
  /** The `postgres` database of the server, as the `postgres` superuser (trust authentication). */
  readonly url: string;
  /** `postgres --version`, for the report. */
  readonly version: string;
  /** Stops the server (`fast`) and removes its directory; idempotent. */
  stop(): void;
}

function hasServerPrograms(dir: string): boolean {
  try {
    accessSync(join(dir, 'initdb'), constants.X_OK);
    accessSync(join(dir, 'pg_ctl'), constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function binDir(): string {
  const given = process.env['POSTGRES_BIN'];
  if (given) return given;
  const candidates = (process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== '');
  try {
    const versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v));
    versions.sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => `/usr/lib/postgresql/${v}/bin`));
  } catch {
    // No Debian PostgreSQL.
  }
  const found = candidates.find(hasServerPrograms);
  if (!found) {
    throw new Error(
      'The PostgreSQL bench needs initdb and pg_ctl to start its own server: install PostgreSQL (`apt-get install postgresql`) or set POSTGRES_BIN to their directory.',
    );
  }
  return found;
}

/** Makes a cluster and starts it on a free port. */
export async function startPostgresServer(): Promise<BenchPostgres> {
  const bin = binDir();
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'uo-bench-pg-'));
  const data = join(dir, 'data');
  if (root) {
    const fields = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((line) => line.startsWith('postgres:'))
      ?.split(':');
    if (!fields) throw new Error('running as root without a postgres user to run initdb and postgres as');
    chownSync(dir, Number(fields[2]), Number(fields[3]));
  }
  const run = (program: string, args: string[]): string => {
    const [file, argv] = root
      ? ['runuser', ['-u', 'postgres', '--', join(bin, program), ...args]]
      : [join(bin, program), args];
    return execFileSync(file, argv, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  };
  const version = execFileSync(join(bin, 'postgres'), ['--version'], { encoding: 'utf8' }).trim();
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`;
  run('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    try {
      run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  process.once('exit', stop);
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, version, stop };
}

/** Creates database `name` on the server at `url` (a server's `postgres` database) and gives the new database's URL. */
export async function newDatabase(url: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return url.replace(/\/postgres$/, `/${name}`);
}
