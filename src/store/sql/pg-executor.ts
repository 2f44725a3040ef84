/**
 * The {@link SqlExecutor} on a PostgreSQL server through node-postgres: statements on a `pg.Pool` (the store's own,
 * or a host's, which it never ends), transactions on one client of it, and LISTEN on a dedicated `pg.Client` that
 * reconnects when its connection drops.
 */
import type { Client, Pool, PoolClient } from 'pg';
import type { Pg } from '../drivers.js';
import type { SqlExecutor, SqlQuery, SqlTransaction } from './executor.js';
import { isUnavailable } from './errors.js';

/** How long the listening connection waits before it tries again, first and at most (ms). */
const RECONNECT_FIRST_MS = 100;
const RECONNECT_MAX_MS = 2_000;

export interface PgExecutorOptions {
  readonly pg: Pg;
  readonly pool: Pool;
  /** Whether the pool is the store's own (then `close()` ends it). */
  readonly ownPool: boolean;
  /** How the listening connection connects (the pool's own settings). */
  readonly clientConfig: ConstructorParameters<Pg['Client']>[0];
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export class PgExecutor implements SqlExecutor {
  readonly #options: PgExecutorOptions;
  readonly #listeners = new Map<string, Set<(payload: string) => void>>();
  #listener: Listener | undefined;

  constructor(options: PgExecutorOptions) {
    this.#options = options;
  }

  readonly query: SqlQuery = async <R>(text: string, params?: readonly unknown[]): Promise<R[]> => {
    const result = await this.#options.pool.query(text, params as unknown[] | undefined);
    return result.rows as R[];
  };

  async transaction<T>(fn: (tx: SqlTransaction) => Promise<T>): Promise<T> {
    const client: PoolClient = await this.#options.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const value = await fn({
        query: async <R>(text: string, params?: readonly unknown[]) =>
          (await client.query(text, params as unknown[] | undefined)).rows as R[],
        script: async (text) => {
          await client.query(text);
        },
      });
      await client.query('COMMIT');
      return value;
    } catch (error) {
      if (isUnavailable(error)) broken = error as Error;
      else await client.query('ROLLBACK').catch((e: unknown) => (broken = e as Error));
      throw error;
    } finally {
      // A client whose connection failed is destroyed, not given back to the pool.
      client.release(broken);
    }
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    let set = this.#listeners.get(channel);
    if (!set) this.#listeners.set(channel, (set = new Set()));
    const own = (payload: string): void => onPayload(payload);
    set.add(own);
    this.#listener ??= new Listener(this.#options, (ch, payload) => {
      for (const fn of this.#listeners.get(ch) ?? []) fn(payload);
    });
    try {
      await this.#listener.add(channel);
    } catch (error) {
      set.delete(own);
      if (set.size === 0) this.#listeners.delete(channel);
      if (this.#listeners.size === 0) await this.#stopListener();
      throw error;
    }
    return async () => {
      set.delete(own);
      if (set.size > 0) return;
      this.#listeners.delete(channel);
      if (this.#listeners.size === 0) await this.#stopListener();
      else await this.#listener?.remove(channel);
    };
  }

  async #stopListener(): Promise<void> {
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.close();
  }

  async close(): Promise<void> {
    this.#listeners.clear();
    await this.#stopListener();
    if (this.#options.ownPool) await this.#options.pool.end();
  }
}

/** One connection that LISTENs on a set of channels, made again (with every channel) when it drops. */
class Listener {
  readonly #options: PgExecutorOptions;
  readonly #deliver: (channel: string, payload: string) => void;
  readonly #channels = new Set<string>();
  #client: Client | undefined;
  #connecting: Promise<Client> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #delay = RECONNECT_FIRST_MS;
  #closed = false;

  constructor(options: PgExecutorOptions, deliver: (channel: string, payload: string) => void) {
    this.#options = options;
    this.#deliver = deliver;
  }

  /** Listens on `channel`; the first connection's failure rejects (later drops reconnect in the background). */
  async add(channel: string): Promise<void> {
    const fresh = !this.#channels.has(channel);
    this.#channels.add(channel);
    const client = await this.#connection();
    if (fresh && this.#client === client) await client.query(`LISTEN ${quoteIdent(channel)}`);
  }

  async remove(channel: string): Promise<void> {
    if (!this.#channels.delete(channel)) return;
    await this.#client?.query(`UNLISTEN ${quoteIdent(channel)}`).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#connecting?.catch(() => undefined);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  #connection(): Promise<Client> {
    if (this.#client) return Promise.resolve(this.#client);
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<Client> {
    const client = new this.#options.pg.Client(this.#options.clientConfig);
    // A dropped connection emits 'error' (and then 'end'): both lead to one reconnect.
    let lost = false;
    const onLost = (): void => {
      if (lost) return;
      lost = true;
      if (this.#client === client) this.#client = undefined;
      client.end().catch(() => undefined);
      this.#schedule();
    };
    client.on('error', onLost);
    client.on('end', onLost);
    client.on('notification', (message) => {
      if (message.payload !== undefined) this.#deliver(message.channel, message.payload);
    });
    try {
      await client.connect();
      for (const channel of this.#channels) await client.query(`LISTEN ${quoteIdent(channel)}`);
    } catch (error) {
      lost = true;
      client.removeAllListeners('end');
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.#closed) {
      lost = true;
      await client.end().catch(() => undefined);
      throw new Error('Connection terminated: the store was closed');
    }
    this.#client = client;
    this.#delay = RECONNECT_FIRST_MS;
    return client;
  }

  /** Tries to connect again after a while (doubling up to a cap), for as long as there are channels. */
  #schedule(): void {
    if (this.#closed || this.#timer || this.#channels.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connection().catch(() => {
        this.#delay = Math.min(this.#delay * 2, RECONNECT_MAX_MS);
        this.#schedule();
      });
    }, this.#delay);
    // The reconnecting never keeps the process alive on its own.
    this.#timer.unref();
  }
}
