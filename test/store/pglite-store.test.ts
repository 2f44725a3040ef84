/**
 * The embedded store (PGliteStore) against the RunStore contract (test/store/contract.ts). PGlite's first open runs
 * `initdb` in WebAssembly (seconds), so the file opens one in-memory PGlite and each test takes a schema of its own in
 * it (the `schema` option); its peer is a second store on the same PGlite and schema. Then what only PGlite does: a
 * data directory that keeps the runs across a close and reopen.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { PGliteStore } from '../../src/store/pglite-store.js';
import { runStoreContract } from './contract.js';
import { runExitChild } from './fixtures/run-exit-child.js';

let db: PGlite;
let schemas = 0;

beforeAll(async () => {
  db = await PGlite.create('memory://');
}, 120_000);

afterAll(async () => {
  await db.close();
});

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

runStoreContract(
  'PGliteStore',
  async () => {
    const schema = `contract_${++schemas}`;
    const store = new PGliteStore({ pglite: db, schema });
    const peer = new PGliteStore({ pglite: db, schema });
    await store.open();
    await peer.open();
    return { store, peer, advance: sleep };
  },
  { leaseMs: 800, timeout: 60_000 },
);

describe('PGliteStore', () => {
  it('keeps its runs in a data directory across close and reopen, and leaves a host instance open', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uo-pglite-'));
    try {
      const store = new PGliteStore({ dataDir: dir });
      expect(store.kind).toBe('pglite');
      expect(store.durable).toBe(true);
      await store.open();
      const task = {
        requires: [],
        prefers: [],
        priority: 0,
        payload: { x: 1 },
        timeoutMs: null,
        deadlineAt: null,
        maxAttempts: 1,
        affinityKey: null,
      };
      await store.insert('n1', [{ id: 'kept', type: 't', tenantId: null, idempotencyKey: null, task, createdAt: 5 }]);
      await store.append([{ runId: 'kept', kind: 'completed', nodeId: 'n1', at: 6, result: 'done' }]);
      await store.close();
      const again = new PGliteStore({ dataDir: dir });
      await again.open();
      expect(await again.get('kept')).toMatchObject({ status: 'completed', result: 'done', finishedAt: 6 });
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // The shared instance of this file was never closed by the contract's stores.
    expect(db.closed).toBe(false);
  }, 120_000);

  it('lets the process exit on its own after close()', async () => {
    const { code, out } = await runExitChild(['pglite'], 110_000);
    expect({ code, out }).toEqual({ code: 0, out: expect.stringMatching(/finished exit-\d+\nclosed ok/) });
  }, 120_000);

  it('refuses a bad schema name and both dataDir and pglite', () => {
    expect(() => new PGliteStore({ schema: 'Bad-Name' })).toThrow(ValidationError);
    expect(() => new PGliteStore({ dataDir: '/tmp/x', pglite: db })).toThrow(ValidationError);
  });
});
