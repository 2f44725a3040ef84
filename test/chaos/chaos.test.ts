/**
 * The chaos scenarios at CI scale, one test each (the full run is `npm run chaos`, test/chaos/run.ts).
 * Each must lose no task, end none twice, raise no unhandled rejection, keep stats() balanced, stop cleanly and
 * meet its own expectations. The one-line figures of each scenario are printed; CHAOS_SEED replays a run's faults.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { baseSeed, oneLine } from './harness.js';
import { scenarios } from './scenarios.js';

describe('chaos (CI scale)', () => {
  beforeAll(() => {
    console.log(`[chaos] seed ${baseSeed()} (replay with CHAOS_SEED=${baseSeed()})`);
  });

  for (const scenario of scenarios) {
    it(`${scenario.name}: every accepted task ends exactly once`, async () => {
      const r = await scenario.run('ci');
      console.log(oneLine(r));
      expect(r.crash, 'the scenario crashed').toBeUndefined();
      expect(r.lost, 'tasks lost').toBe(0);
      expect(r.duplicates, 'tasks ended twice').toBe(0);
      expect(r.unhandled, `unhandled rejections / exceptions (${String(r.figures['unhandled sample'] ?? '')})`).toBe(0);
      expect(r.violations, 'invariant violations').toEqual([]);
      expect(
        r.expectations.filter((e) => !e.ok),
        'unmet expectations',
      ).toEqual([]);
      expect(r.accepted).toBeGreaterThan(0);
    }, 120_000);
  }
});
