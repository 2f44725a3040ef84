/**
 * MemoryStore against the RunStore contract (test/store/contract.ts), on a clock the tests move by hand: its leases
 * expire by that clock, not by real time.
 */
import { MemoryStore } from '../../src/store/memory-store.js';
import { runStoreContract } from './contract.js';

runStoreContract('MemoryStore', async () => {
  let now = 1_800_000_000_000;
  const clock = { now: () => now };
  const store = new MemoryStore({ clock });
  await store.open();
  return {
    store,
    // One process's memory has one instance: the peer is the same store.
    peer: store,
    async advance(ms) {
      now += ms;
    },
  };
});
