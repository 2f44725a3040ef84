/**
 * PostgresStore: the {@link RunStore} on a PostgreSQL server, through node-postgres (`pg`, an optional peer
 * dependency loaded when the store opens). Its SQL and schema are the embedded store's (src/store/sql/sql-store.ts,
 * src/store/migrations.ts).
 */
import type { Pool } from 'pg';
import { ValidationError } from '../errors.js';
import { loadPg } from './drivers.js';
import type { SqlExecutor } from './sql/executor.js';
import { PgExecutor } from './sql/pg-executor.js';
import { SqlRunStore, type SqlStoreOptions } from './sql/sql-store.js';

/**
 * What the store needs to know of a host's `pg.Pool` (pass the pool itself). Typed here, not with `pg`'s own types,
 * so that this package's types do not need `pg` installed.
 */
export interface PgPoolLike {
  /** `pg.Pool#connect`. */
  connect(): Promise<unknown>;
  /** `pg.Pool#end`. */
  end(): Promise<void>;
}

/** Options of {@link PostgresStore}: where the server is (`connectionString` or `pool`, one of them) and the schema. */
export interface PostgresStoreOptions extends SqlStoreOptions {
  /** The server to connect to, as a `postgres://user:password@host:port/database` URL. */
  readonly connectionString?: string;
  /**
   * The host's own `pg.Pool`, to share its connections: the store uses it and never ends it (the host does, after
   * the store's `close()`). The store's listening connection (for `onFinished`) is made with the pool's settings.
   */
  readonly pool?: PgPoolLike;
  /**
   * Connections of the store's own pool (with `connectionString`); one more is held while something listens with
   * `onFinished`.
   * @default 10
   */
  readonly maxConnections?: number;
  /**
   * How long an operation waits for a connection before it fails with StoreUnavailableError (ms).
   * @default 5000
   */
  readonly connectTimeoutMs?: number;
}

/**
 * A {@link RunStore} on a PostgreSQL server: durable, shared by every node connected to the same database and
 * schema. `open()` applies the schema's pending migrations under an advisory lock, so nodes may start together.
 * Leases are on the server's clock; ended runs are announced with LISTEN/NOTIFY.
 *
 * @example
 * ```ts
 * const store = new PostgresStore({ connectionString: process.env.DATABASE_URL });
 * await store.open();
 * ```
 */
export class PostgresStore extends SqlRunStore {
  /** Always `postgres`. */
  readonly kind = 'postgres';
  readonly #options: PostgresStoreOptions;

  constructor(options: PostgresStoreOptions) {
    super(options);
    const given = [options.connectionString, options.pool].filter((value) => value !== undefined).length;
    if (given !== 1) {
      throw new ValidationError(
        'store',
        'PostgresStore needs where its server is: either `connectionString` (a postgres:// URL) or `pool` (your own pg.Pool), one of them',
      );
    }
    for (const field of ['maxConnections', 'connectTimeoutMs'] as const) {
      const value = options[field];
      if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
        throw new ValidationError(field, `${field} must be a positive integer (got ${value})`);
      }
    }
    this.#options = options;
  }

  protected override async connect(): Promise<SqlExecutor> {
    const pg = await loadPg();
    const connectionTimeoutMillis = this.#options.connectTimeoutMs ?? 5_000;
    if (this.#options.pool) {
      const pool = this.#options.pool as unknown as Pool;
      const config = (pool as unknown as { options?: Record<string, unknown> }).options ?? {};
      return new PgExecutor({ pg, pool, ownPool: false, clientConfig: { connectionTimeoutMillis, ...config } });
    }
    const clientConfig = { connectionString: this.#options.connectionString, connectionTimeoutMillis };
    const pool = new pg.Pool({
      ...clientConfig,
      max: this.#options.maxConnections ?? 10,
      idleTimeoutMillis: 10_000,
      // Idle connections never keep the process alive.
      allowExitOnIdle: true,
    });
    // An idle connection that the server drops emits 'error' on the pool; the next operation finds out for itself.
    pool.on('error', () => undefined);
    return new PgExecutor({ pg, pool, ownPool: true, clientConfig });
  }
}
