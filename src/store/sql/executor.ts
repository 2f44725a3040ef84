/**
 * The little the SQL stores need of a PostgreSQL driver, so that their SQL is written once (src/store/sql/sql-store.ts,
 * src/store/migrations.ts) and runs on a server through `pg` (src/store/sql/pg-executor.ts) or in-process on PGlite
 * (src/store/sql/pglite-executor.ts). Drivers' own errors pass through unchanged: the store classifies them
 * (src/store/sql/errors.ts).
 */

/** Runs one statement with `$1`-style parameters and gives its rows. */
export type SqlQuery = <R>(text: string, params?: readonly unknown[]) => Promise<R[]>;

/** What runs inside a transaction: statements, and scripts of several statements without parameters. */
export interface SqlTransaction {
  readonly query: SqlQuery;
  /** Runs a script of several statements (no parameters), as migrations are written. */
  script(text: string): Promise<void>;
}

/** A connection (or pool of them) to one PostgreSQL database. */
export interface SqlExecutor {
  /** One statement in a transaction of its own (one round trip). */
  readonly query: SqlQuery;
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: SqlTransaction) => Promise<T>): Promise<T>;
  /**
   * Calls `onPayload` with each notification on `channel` (LISTEN), from any connection to the database. Resolves
   * once listening, to a function that stops. A server connection that drops is made again in the background (what
   * was notified meanwhile is missed).
   */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /** Ends what the executor opened (not a host's own pool or database). */
  close(): Promise<void>;
}
