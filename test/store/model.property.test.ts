/**
 * The RunStore model (test/store/model.ts) against MemoryStore; the SQL stores run it in their own files.
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { MemoryStore } from '../../src/store/memory-store.js';
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
