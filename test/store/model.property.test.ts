/**
 * The RunStore model (test/store/model.ts) against MemoryStore, and against a PostgresStore on a real server (the
 * embedded store is compared with MemoryStore step by step in test/store/model.test.ts).
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { MemoryStore } from '../../src/store/memory-store.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { POSTGRES_SERVER, postgresForSuite } from '../support/postgres.js';
import { commandArb, runModel } from './model.js';

describe('RunStore model: MemoryStore', () => {
  it('holds what the model holds after any sequence of steps', async () => {
    const store = new MemoryStore();
    await store.open();
    await fc.assert(
      fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 60 }), (commands) => runModel(store, commands)),
      { numRuns: 200 },
    );
    await store.close();
  });
});

describe.skipIf(POSTGRES_SERVER.skip)('RunStore model: PostgresStore', () => {
  const server = postgresForSuite();

  it('holds what the model holds after any sequence of steps', async () => {
    const store = new PostgresStore({ connectionString: await server().createDatabase('uo_model') });
    await store.open();
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 40 }), (commands) =>
          runModel(store, commands),
        ),
        { numRuns: 40 },
      );
    } finally {
      await store.close();
    }
  }, 120_000);
});
