/**
 * Programs some tests need from outside npm. Without one, the tests that need it skip and the run says once, in one
 * line, which Debian package provides it; with the `CI` environment variable set they run and fail instead, because
 * CI must have every tool (.ci/run installs them).
 *
 * Tests use `describe.skipIf(X.skip)` / `it.skipIf(X.skip)`; vitest.config.ts registers this file as a global setup
 * so that the line is printed once per run, not once per test file. No vitest import here: the chaos runner (plain
 * tsx) reaches this file through test/support/redis.ts.
 */
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** A program some tests need, and whether they can run here. */
export interface NeededBinary {
  /** The command as the tests run it: a name looked up on PATH, or a path. */
  readonly command: string;
  /** The Debian package that provides it. */
  readonly debianPackage: string;
  /** Whether it is there (or not needed: see `REDIS_SERVER`). */
  readonly present: boolean;
  /** Whether the tests that need it skip: it is missing and `CI` is not set. */
  readonly skip: boolean;
  /** One line saying what is missing and what to install. */
  readonly message: string;
}

/** Whether `CI` is set, as CI services set it (`true`, `1`); empty, `0` and `false` count as unset. */
export function isCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env['CI']?.trim().toLowerCase();
  return ci !== undefined && ci !== '' && ci !== '0' && ci !== 'false';
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Whether `command` runs: a path that is executable, or a name found executable in a PATH directory. */
export function onPath(command: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (command.includes('/')) return executable(command);
  return (env['PATH'] ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '')
    .some((dir) => executable(join(dir, command)));
}

/**
 * Looks `command` up and decides for the tests that need it (`purpose` completes "install … to run …").
 *
 * @example needsBinary('promtool', 'prometheus', 'these checks')
 */
export function needsBinary(
  command: string,
  debianPackage: string,
  purpose: string,
  env: NodeJS.ProcessEnv = process.env,
): NeededBinary {
  const present = onPath(command, env);
  const ci = isCi(env);
  const message = present
    ? `${command} found`
    : `${command} not found: install the Debian package ${debianPackage} to run ${purpose}` +
      (ci ? ' (CI is set, so they fail instead of skipping)' : '');
  return { command, debianPackage, present, skip: !present && !ci, message };
}

/** promtool, for the operations kit's checks in test/health/promtool.test.ts (PROMTOOL may name another binary). */
export const PROMTOOL = needsBinary(
  process.env['PROMTOOL'] ?? 'promtool',
  'prometheus',
  'the promtool checks (test/health/promtool.test.ts)',
);

/** redis-server, for the tests on a real Redis (test/support/redis.ts); not needed when REDIS_URL names a server. */
export const REDIS_SERVER: NeededBinary = process.env['REDIS_URL']
  ? { command: 'redis-server', debianPackage: 'redis-server', present: true, skip: false, message: 'REDIS_URL set' }
  : needsBinary('redis-server', 'redis-server', 'the Redis tests (or set REDIS_URL)');

/**
 * The directory holding PostgreSQL's server programs (`initdb`, `pg_ctl`, `postgres`), or undefined when there is none:
 * `POSTGRES_BIN` when set, else the directory of an `initdb` on PATH, else the newest `/usr/lib/postgresql/<ver>/bin`
 * (where Debian's `postgresql` package puts them, off PATH).
 */
export function postgresBinDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const given = env['POSTGRES_BIN'];
  if (given) return given;
  const onPathDir = (env['PATH'] ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '')
    .find((dir) => executable(join(dir, 'initdb')) && executable(join(dir, 'pg_ctl')));
  if (onPathDir) return onPathDir;
  let versions: string[];
  try {
    versions = readdirSync('/usr/lib/postgresql');
  } catch {
    return undefined;
  }
  return versions
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join('/usr/lib/postgresql', v, 'bin'))
    .find((dir) => executable(join(dir, 'initdb')) && executable(join(dir, 'pg_ctl')));
}

/**
 * PostgreSQL's server programs, for the tests on a real PostgreSQL (test/support/postgres.ts), found by
 * `postgresBinDir`; `command` is the path of `initdb`. Not needed when DATABASE_URL names a server.
 */
export const POSTGRES_SERVER: NeededBinary = ((): NeededBinary => {
  if (process.env['DATABASE_URL'])
    return { command: 'initdb', debianPackage: 'postgresql', present: true, skip: false, message: 'DATABASE_URL set' };
  const dir = postgresBinDir();
  return needsBinary(dir ? join(dir, 'initdb') : 'initdb', 'postgresql', 'the PostgreSQL tests (or set DATABASE_URL)');
})();

/** vitest global setup: one line per missing program, once per run. */
export function setup(): void {
  for (const binary of [PROMTOOL, REDIS_SERVER, POSTGRES_SERVER]) if (!binary.present) console.warn(binary.message);
}
