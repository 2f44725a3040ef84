/**
 * The PostgreSQL drivers of the durable stores, loaded only when a store that needs one is made: node-postgres (`pg`)
 * for a PostgreSQL server, PGlite (`@electric-sql/pglite`) for the embedded store. Both are optional peer
 * dependencies: a host that never configures a durable store neither installs nor loads either (as with ioredis in
 * src/bridge/redis-connections.ts, the import is dynamic). Why `pg`: bench/results/pg-drivers.md.
 */
// Types only: the modules themselves are loaded by the functions below.
import type { PGlite } from '@electric-sql/pglite';
import type PgModule from 'pg';
import { ValidationError } from '../errors.js';

/** node-postgres as its ESM entry exports it (`Pool`, `Client`, `types`, …). */
export type Pg = typeof PgModule;

/** PGlite's class, from which the embedded store opens its data directory (`PGlite.create(dir)`). */
export type PGliteClass = typeof PGlite;

/** Whether `error` says that `name` itself could not be found (not a module it imports, nor a failure inside it). */
function isMissing(error: unknown, name: string): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  return (
    (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') &&
    typeof e.message === 'string' &&
    e.message.includes(`'${name}'`)
  );
}

/**
 * Imports the optional peer dependency `name` with `load` (a literal `import()`, so bundlers see it). When it is not
 * installed, rejects with a {@link ValidationError} on `field` that says what to install; any other failure (a broken
 * install, a version that throws on load) is rethrown as it is.
 */
export async function loadOptionalPeer<M>(
  name: string,
  field: string,
  purpose: string,
  load: () => Promise<M>,
): Promise<M> {
  try {
    return await load();
  } catch (error) {
    if (!isMissing(error, name)) throw error;
    throw new ValidationError(field, `${purpose} needs the package ${name}: install it (npm install ${name})`);
  }
}

/** Loads node-postgres for a store on a PostgreSQL server. */
export async function loadPg(): Promise<Pg> {
  const mod = await loadOptionalPeer('pg', 'store', 'A store on a PostgreSQL server', () => import('pg'));
  return mod.default;
}

/** Loads PGlite for the embedded store. */
export async function loadPGlite(): Promise<PGliteClass> {
  const mod = await loadOptionalPeer(
    '@electric-sql/pglite',
    'store',
    'The embedded store (PGlite)',
    () => import('@electric-sql/pglite'),
  );
  return mod.PGlite;
}
