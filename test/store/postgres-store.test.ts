/**
 * PostgresStore on a real PostgreSQL server that the test starts itself (test/support/postgres.ts): the RunStore
 * contract (test/store/contract.ts), each test in a schema of its own with a peer store (its own pool) on the same
 * schema, then what only a server shows: STORE_UNAVAILABLE while it is down and recovery when it is back (LISTEN
 * too), migrations applied once by stores opening together, schemas keeping stores apart, a host's pool left open,
 * and a process that exits on its own after close().
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError, ValidationError } from '../../src/errors.js';
import { migrate, MIGRATIONS, SCHEMA_VERSION, schemaNames } from '../../src/store/migrations.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { recoveryDeadLetterMessage } from '../../src/store/store-support.js';
import type { NewRun } from '../../src/store/store.js';
import { POSTGRES_SERVER, startPostgres, type TestPostgres } from '../support/postgres.js';
import { runStoreContract, waitFor } from './contract.js';
import { runExitChild } from './fixtures/run-exit-child.js';

const external = Boolean(process.env['DATABASE_URL']);
let server: TestPostgres;
let contractUrl: string;
let schemas = 0;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function run(id: string, overrides: Partial<NewRun> = {}): NewRun {
  return {
    id,
    type: 't',
    tenantId: null,
    idempotencyKey: null,
    createdAt: Date.now(),
    task: {
      requires: [],
      prefers: [],
      priority: 0,
      payload: { id },
      timeoutMs: null,
      deadlineAt: null,
      maxAttempts: 1,
      affinityKey: null,
    },
    ...overrides,
  };
}

async function rows<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe.skipIf(POSTGRES_SERVER.skip)('PostgresStore', () => {
  beforeAll(async () => {
    server = await startPostgres();
    contractUrl = await server.createDatabase('uo_store');
  }, 120_000);

  afterAll(async () => {
    await server?.close();
  }, 60_000);

  runStoreContract(
    'PostgresStore',
    async () => {
      const schema = `contract_${++schemas}`;
      const store = new PostgresStore({ connectionString: contractUrl, schema, maxConnections: 4 });
      const peer = new PostgresStore({ connectionString: contractUrl, schema, maxConnections: 4 });
      await store.open();
      await peer.open();
      return { store, peer, advance: sleep };
    },
    { leaseMs: 800, timeout: 30_000 },
  );

  describe('on a server', () => {
    it('is durable, of kind postgres, and refuses bad options', () => {
      const store = new PostgresStore({ connectionString: 'postgres://127.0.0.1:1/x' });
      expect([store.kind, store.durable, store.schema]).toEqual(['postgres', true, 'unified_orchestrator']);
      expect(() => new PostgresStore({})).toThrow(ValidationError);
      expect(() => new PostgresStore({ connectionString: 'postgres://x', pool: new pg.Pool() })).toThrow(
        ValidationError,
      );
      expect(() => new PostgresStore({ connectionString: 'postgres://x', schema: 'drop table;' })).toThrow(
        ValidationError,
      );
      expect(() => new PostgresStore({ connectionString: 'postgres://x', maxConnections: 0 })).toThrow(ValidationError);
    });

    it('fails to open with STORE_UNAVAILABLE when nothing listens there', async () => {
      const store = new PostgresStore({ connectionString: 'postgres://postgres@127.0.0.1:1/none' });
      const error = await store.open().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect((error as StoreUnavailableError).operation).toBe('open');
      await store.close();
    });

    it('applies the migrations once when several stores open together on a fresh database', async () => {
      const url = await server.createDatabase('uo_migrate');
      const stores = Array.from({ length: 4 }, () => new PostgresStore({ connectionString: url, maxConnections: 2 }));
      try {
        await Promise.all(stores.map((store) => store.open()));
        const applied = await rows<{ version: number }>(
          url,
          'SELECT version FROM unified_orchestrator.schema_migrations ORDER BY version',
        );
        expect(applied.map((row) => row.version)).toEqual(MIGRATIONS.map((m) => m.version));
        // And each store works on the one schema.
        await stores[0]!.insert('n1', [run('shared')]);
        expect((await stores[3]!.get('shared'))?.owner).toBe('n1');
      } finally {
        await Promise.all(stores.map((store) => store.close()));
      }
    }, 60_000);

    it('refuses to open a schema that a newer version migrated, saying to upgrade', async () => {
      const url = await server.createDatabase('uo_newer');
      const store = new PostgresStore({ connectionString: url });
      await store.open();
      await store.close();
      await rows(
        url,
        `INSERT INTO unified_orchestrator.schema_migrations (version, name) VALUES (${SCHEMA_VERSION + 1}, 'future')`,
      );
      const newer = new PostgresStore({ connectionString: url });
      const error = await newer.open().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).message).toMatch(
        new RegExp(
          `version ${SCHEMA_VERSION + 1}, newer than .* knows \\(${SCHEMA_VERSION}\\).*Upgrade unified-orchestrator`,
        ),
      );
      await newer.close();
    }, 60_000);

    it('migrates a version 1 schema with its runs to the current version; a version 1 claim still works', async () => {
      const url = await server.createDatabase('uo_upgrade');
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const tx = {
          query: async <R>(text: string, params?: readonly unknown[]) =>
            (await client.query(text, params as unknown[])).rows as R[],
          script: async (text: string) => {
            await client.query(text);
          },
        };
        const names = schemaNames('unified_orchestrator', recoveryDeadLetterMessage('%s'));
        await client.query('BEGIN');
        expect(await migrate(tx, 'unified_orchestrator', names, MIGRATIONS.slice(0, 1))).toEqual([1]);
        await client.query('COMMIT');
        const old = run('from-v1');
        await client.query(`SELECT unified_orchestrator.insert_runs('gone', $1::jsonb)`, [
          JSON.stringify([{ ord: 0, ...old }]),
        ]);
        const store = new PostgresStore({ connectionString: url });
        try {
          await store.open();
          const applied = await rows<{ version: number }>(
            url,
            'SELECT version FROM unified_orchestrator.schema_migrations ORDER BY version',
          );
          expect(applied.map((row) => row.version)).toEqual(MIGRATIONS.map((m) => m.version));
          expect(await store.get('from-v1')).toMatchObject({
            owner: 'gone',
            notBefore: null,
            waitingFor: [],
            cost: 0,
            agentId: null,
          });
          // A node of the previous release claims with the 5-argument function: the runs that are not workflows.
          await store.insert('gone', [run('workflow-run', { type: 'workflow:w' })]);
          const claimed = await client.query<{ id: string }>(
            `SELECT c.run ->> 'id' AS id FROM unified_orchestrator.claim_runs('old-node', 10, '{}', 3, NULL) c`,
          );
          expect(claimed.rows.map((r) => r.id)).toEqual(['from-v1']);
          expect((await store.get('workflow-run'))?.owner).toBe('gone');
        } finally {
          await store.close();
        }
      } finally {
        await client.end();
      }
    }, 60_000);

    it('gives one idempotency key to one run when nodes insert it at the same moment', async () => {
      const url = await server.createDatabase('uo_race');
      const stores = [0, 1, 2].map(() => new PostgresStore({ connectionString: url, maxConnections: 4 }));
      try {
        await Promise.all(stores.map((store) => store.open()));
        const attempts = Array.from({ length: 12 }, (_, i) =>
          stores[i % 3]!.insert(`n${i % 3}`, [run(`race-${i}`, { tenantId: 't', idempotencyKey: 'same' })]),
        );
        const outcomes = (await Promise.all(attempts)).flat();
        const inserted = outcomes.flatMap((o, i) => (o.kind === 'inserted' ? [`race-${i}`] : []));
        expect(inserted).toHaveLength(1);
        for (const outcome of outcomes) {
          if (outcome.kind === 'duplicate') expect(outcome.existing.id).toBe(inserted[0]);
        }
      } finally {
        await Promise.all(stores.map((store) => store.close()));
      }
    }, 60_000);

    it('keeps two stores apart by schema in one database', async () => {
      const url = await server.createDatabase('uo_schemas');
      const a = new PostgresStore({ connectionString: url, schema: 'app_a' });
      const b = new PostgresStore({ connectionString: url, schema: 'app_b' });
      try {
        await Promise.all([a.open(), b.open()]);
        const seenByB: string[] = [];
        await b.onFinished((ids) => seenByB.push(...ids));
        const seenByA: string[] = [];
        await a.onFinished((ids) => seenByA.push(...ids));
        await a.insert('n1', [run('same-id', { idempotencyKey: 'k' })]);
        expect(await b.get('same-id')).toBeUndefined();
        expect(await b.insert('n1', [run('same-id', { idempotencyKey: 'k' })])).toEqual([{ kind: 'inserted' }]);
        await a.append([{ runId: 'same-id', kind: 'completed', nodeId: 'n1', at: 1, result: 'a' }]);
        await waitFor(() => seenByA.length === 1);
        await sleep(100);
        expect(seenByB).toEqual([]);
        expect((await b.get('same-id'))?.status).toBe('queued');
        expect((await a.list()).runs.map((r) => r.status)).toEqual(['completed']);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    }, 60_000);

    it("uses a host's pool and leaves it open", async () => {
      const url = await server.createDatabase('uo_pool');
      const pool = new pg.Pool({ connectionString: url, max: 3 });
      try {
        const store = new PostgresStore({ pool });
        await store.open();
        const seen: string[] = [];
        await store.onFinished((ids) => seen.push(...ids));
        await store.insert('n1', [run('via-pool')]);
        await store.append([{ runId: 'via-pool', kind: 'failed', nodeId: 'n1', at: 1 }]);
        await waitFor(() => seen.includes('via-pool'));
        await store.close();
        const { rows: left } = await pool.query<{ status: string }>(
          "SELECT status FROM unified_orchestrator.runs WHERE id = 'via-pool'",
        );
        expect(left).toEqual([{ status: 'failed' }]);
      } finally {
        await pool.end();
      }
    }, 60_000);

    it('rejects with STORE_UNAVAILABLE when no connection of its pool frees up in time', async () => {
      const url = await server.createDatabase('uo_pooltimeout');
      const store = new PostgresStore({ connectionString: url, maxConnections: 1, connectTimeoutMs: 300 });
      const locker = new pg.Client({ connectionString: url });
      try {
        await store.open();
        await locker.connect();
        // Another session holds the table: the store's one connection waits on it.
        await locker.query('BEGIN; LOCK TABLE unified_orchestrator.runs IN ACCESS EXCLUSIVE MODE');
        const blocked = store.get('anything');
        const error = await store.get('other').then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect((error as StoreUnavailableError).operation).toBe('get');
        expect((error as Error).message).toMatch(/timeout exceeded when trying to connect/);
        await locker.query('COMMIT');
        expect(await blocked).toBeUndefined();
      } finally {
        await locker.end();
        await store.close();
      }
    }, 60_000);

    it('a SQL error is not disguised as unavailability', async () => {
      const url = await server.createDatabase('uo_sqlerr');
      const store = new PostgresStore({ connectionString: url });
      try {
        await store.open();
        // A table the store needs, dropped under it: an error of the database's content, not of reaching it.
        await rows(url, 'DROP TABLE unified_orchestrator.nodes');
        const error = await store.heartbeat('n1', 1_000).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(Error);
        expect(error).not.toBeInstanceOf(StoreUnavailableError);
        expect((error as { code?: string }).code).toBe('42P01');
      } finally {
        await store.close();
      }
    }, 60_000);

    it.skipIf(external)(
      'rejects with STORE_UNAVAILABLE while the server is down, and works again once it is back, LISTEN too',
      async () => {
        const url = await server.createDatabase('uo_outage');
        const store = new PostgresStore({ connectionString: url, connectTimeoutMs: 2_000 });
        const seen: string[] = [];
        try {
          await store.open();
          await store.onFinished((ids) => seen.push(...ids));
          await store.insert('n1', [run('before')]);
          await store.append([{ runId: 'before', kind: 'completed', nodeId: 'n1', at: 1 }]);
          await waitFor(() => seen.includes('before'));

          await server.stop({ mode: 'immediate' });
          const calls: [string, () => Promise<unknown>][] = [
            ['insert', () => store.insert('n1', [run('during')])],
            ['append', () => store.append([{ runId: 'before', kind: 'failed', nodeId: 'n1', at: 2 }])],
            ['get', () => store.get('before')],
            ['claim', () => store.claim({ nodeId: 'n1', limit: 1, capabilities: [], maxRecoveries: 3 })],
            ['heartbeat', () => store.heartbeat('n1', 1_000)],
          ];
          for (const [operation, call] of calls) {
            const error = await call().then(
              () => undefined,
              (e: unknown) => e,
            );
            expect(error, operation).toBeInstanceOf(StoreUnavailableError);
            expect((error as StoreUnavailableError).code).toBe('STORE_UNAVAILABLE');
            expect((error as StoreUnavailableError).operation).toBe(operation);
          }

          await server.restart();
          // The same store, not rebuilt: its pool connects again.
          await store.insert('n1', [run('after')]);
          expect(await store.get('during')).toBeUndefined();
          expect((await store.get('before'))?.status).toBe('completed');
          // Its listening connection comes back on its own: an end written after the restart is announced.
          let n = 0;
          for (const end = Date.now() + 20_000; !seen.some((id) => id.startsWith('after-')) && Date.now() < end;) {
            const id = `after-${++n}`;
            await store.insert('n1', [run(id)]);
            await store.append([{ runId: id, kind: 'completed', nodeId: 'n1', at: 3 }]);
            await sleep(250);
          }
          expect(seen.some((id) => id.startsWith('after-'))).toBe(true);
        } finally {
          await server.restart().catch(() => undefined);
          await store.close();
        }
      },
      90_000,
    );

    it('lets the process exit on its own after close()', async () => {
      const url = await server.createDatabase('uo_exit');
      const { code, out } = await runExitChild(['postgres', url]);
      expect({ code, out }).toEqual({ code: 0, out: expect.stringMatching(/finished exit-\d+\nclosed ok/) });
    }, 60_000);
  });
});
