/**
 * The {@link SqlExecutor} on PGlite, in this process: its queries, its transactions and its in-process LISTEN.
 * PGlite runs one statement at a time on the caller's event loop; it queues concurrent callers itself.
 */
import type { PGlite, Transaction } from '@electric-sql/pglite';
import type { SqlExecutor, SqlQuery, SqlTransaction } from './executor.js';

function queryOn(db: Pick<Transaction, 'query'>): SqlQuery {
  return async <R>(text: string, params?: readonly unknown[]): Promise<R[]> =>
    (await db.query<R>(text, params as unknown[] | undefined)).rows;
}

export class PGliteExecutor implements SqlExecutor {
  readonly #db: PGlite;
  readonly #own: boolean;
  readonly query: SqlQuery;

  /** On `db`; `own` says whether `close()` closes it (false for a host's instance). */
  constructor(db: PGlite, own: boolean) {
    this.#db = db;
    this.#own = own;
    this.query = queryOn(db);
  }

  transaction<T>(fn: (tx: SqlTransaction) => Promise<T>): Promise<T> {
    return this.#db.transaction((tx) =>
      fn({
        query: queryOn(tx),
        script: async (text) => {
          await tx.exec(text);
        },
      }),
    );
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    const stop = await this.#db.listen(channel, onPayload);
    return async () => {
      if (!this.#db.closed) await stop();
    };
  }

  async close(): Promise<void> {
    if (this.#own && !this.#db.closed) await this.#db.close();
  }
}
