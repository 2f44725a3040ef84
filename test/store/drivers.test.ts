/**
 * The durable stores' drivers are loaded on demand (src/store/drivers.ts): node-postgres talks to a real PostgreSQL
 * server, PGlite's class loads, and a peer that is not installed gives a ValidationError saying what to install while
 * any other failure to load passes through unchanged.
 */
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { loadOptionalPeer, loadPg, loadPGlite } from '../../src/store/drivers.js';
import { POSTGRES_SERVER, startPostgres } from '../support/postgres.js';

describe('loadOptionalPeer', () => {
  it('says which package to install when it is missing', async () => {
    const missing = 'uo-test-no-such-package';
    const error = await loadOptionalPeer(missing, 'store', 'This store', () => import(/* @vite-ignore */ missing)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe('store');
    expect((error as ValidationError).message).toBe(
      `This store needs the package ${missing}: install it (npm install ${missing})`,
    );
  });

  it('rethrows any other failure as it is', async () => {
    const broken = new Error('the module threw while loading');
    await expect(loadOptionalPeer('pg', 'store', 'This store', () => Promise.reject(broken))).rejects.toBe(broken);
    // A module that the package itself imports is missing: a broken install, not a missing peer.
    const inner = Object.assign(new Error("Cannot find package 'pg-pool' imported from /app/node_modules/pg/x.js"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    await expect(loadOptionalPeer('pg', 'store', 'This store', () => Promise.reject(inner))).rejects.toBe(inner);
  });
});

describe('loadPGlite', () => {
  it('gives the PGlite class', async () => {
    const PGlite = await loadPGlite();
    expect(typeof PGlite.create).toBe('function');
  });
});

describe.skipIf(POSTGRES_SERVER.skip)('loadPg', () => {
  it('gives a Pool that queries a real PostgreSQL server', async () => {
    const server = await startPostgres();
    try {
      const pg = await loadPg();
      const pool = new pg.Pool({ connectionString: await server.createDatabase(), max: 2 });
      try {
        const { rows } = await pool.query<{ sum: number }>('SELECT $1::int + $2::int AS sum', [40, 2]);
        expect(rows).toEqual([{ sum: 42 }]);
      } finally {
        await pool.end();
      }
    } finally {
      await server.close();
    }
  }, 120_000);
});
