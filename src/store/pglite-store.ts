/**
 * PGliteStore: the embedded {@link RunStore}, PostgreSQL compiled to WebAssembly (PGlite, an optional peer
 * dependency loaded when the store opens) running in this process on a data directory. Same SQL and schema as
 * PostgresStore (src/store/sql/sql-store.ts, src/store/migrations.ts).
 */
import type { PGlite } from '@electric-sql/pglite';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ValidationError } from '../errors.js';
import { loadPGlite } from './drivers.js';
import type { SqlExecutor } from './sql/executor.js';
import { PGliteExecutor } from './sql/pglite-executor.js';
import { SqlRunStore, type SqlStoreOptions } from './sql/sql-store.js';

/**
 * What the store needs to know of a host's own PGlite instance (pass the instance itself). Typed here, not with
 * PGlite's own types, so that this package's types do not need `@electric-sql/pglite` installed.
 */
export interface PGliteLike {
  /** `PGlite#query`. */
  query(query: string, params?: unknown[]): Promise<unknown>;
  /** `PGlite#close`. */
  close(): Promise<void>;
}

/** Options of {@link PGliteStore}: the data directory (or the host's own PGlite) and the schema. */
export interface PGliteStoreOptions extends SqlStoreOptions {
  /**
   * Where PGlite keeps the database: a directory (made on first open, which runs `initdb` and takes seconds), or
   * `memory://` for a database that ends with the process.
   * @default 'memory://'
   */
  readonly dataDir?: string;
  /** The host's own PGlite instance, instead of `dataDir`: the store uses it and never closes it. */
  readonly pglite?: PGliteLike;
}

/**
 * The embedded durable {@link RunStore}: PostgreSQL in this process (PGlite), persisting to `dataDir`, with no
 * service to run. One process at a time may open a data directory. PGlite runs on the caller's event loop, so its
 * queries take the orchestrator's time too; for many nodes, use PostgresStore.
 *
 * @example
 * ```ts
 * const store = new PGliteStore({ dataDir: './data/runs' });
 * await store.open();
 * ```
 */
export class PGliteStore extends SqlRunStore {
  /** Always `pglite`. */
  readonly kind = 'pglite';
  readonly #options: PGliteStoreOptions;

  constructor(options: PGliteStoreOptions = {}) {
    super(options);
    if (options.dataDir !== undefined && options.pglite !== undefined) {
      throw new ValidationError(
        'store',
        'PGliteStore takes either `dataDir` or `pglite` (your own instance), not both',
      );
    }
    if (options.dataDir !== undefined && (typeof options.dataDir !== 'string' || options.dataDir === '')) {
      throw new ValidationError('dataDir', 'dataDir is a directory path, or memory:// for an in-memory database');
    }
    this.#options = options;
  }

  protected override async connect(): Promise<SqlExecutor> {
    if (this.#options.pglite) return new PGliteExecutor(this.#options.pglite as unknown as PGlite, false);
    const PGliteClass = await loadPGlite();
    const dataDir = this.#options.dataDir ?? 'memory://';
    // PGlite makes the directory itself, but not its parents.
    if (!dataDir.includes('://')) mkdirSync(dirname(resolve(dataDir)), { recursive: true });
    const db = await PGliteClass.create(dataDir);
    return new PGliteExecutor(db, true);
  }
}
