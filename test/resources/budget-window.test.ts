/**
 * TenantBudgets.msUntilUnder is exact: a tenant over its limit is still over 1 ms before the time it gives, and
 * under at that time (property-based over windows, limits, fractional costs and clocks near 0).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TenantBudgets } from '../../src/resources/budgets.js';

describe('budget window', () => {
  it('msUntilUnder is the first ms at which the tenant is under its limit again', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(7, 33, 999, 1_000, 1_001, 12_345, 60_000),
        fc.constantFrom(0.5, 1, 3, 10, 100),
        // Whole-ms times (a fractional clock makes `now + m - 1` itself round across a bucket edge); costs fractional.
        fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 1_000_000 })),
        fc.array(
          fc.record({ units: fc.constantFrom(0.1, 0.3, 1, 2, 5), after: fc.double({ min: 0, max: 0.3, noNaN: true }) }),
          { minLength: 1, maxLength: 12 },
        ),
        (windowMs, limit, start, charges) => {
          const budgets = new TenantBudgets({
            windowMs,
            haltOnExceeded: false,
            limits: new Map([['t', limit]]),
            defaultLimit: Infinity,
          });
          let now = start;
          for (const c of charges) {
            budgets.charge('t', c.units, now);
            now += Math.round(c.after * windowMs);
          }
          if (!budgets.exhausted('t', now)) {
            expect(budgets.msUntilUnder('t', now)).toBe(0);
            return;
          }
          const m = budgets.msUntilUnder('t', now)!;
          expect(m).toBeGreaterThanOrEqual(1);
          expect(m).toBeLessThanOrEqual(Math.ceil(windowMs) + 1);
          if (m > 1) expect(budgets.exhausted('t', now + m - 1), 'still over 1 ms before').toBe(true);
          expect(budgets.exhausted('t', now + m), 'under at the time given').toBe(false);
        },
      ),
      // Pinned: a bucket length (49.95 ms) whose product with the bucket index lands a hair off the division.
      { numRuns: 3_000, examples: [[999, 0.5, 800_200, [{ units: 1, after: 0 }]]] },
    );
  });

  it('a limit of 0 never clears by itself', () => {
    const budgets = new TenantBudgets({
      windowMs: 1_000,
      haltOnExceeded: false,
      limits: new Map([['t', 0]]),
      defaultLimit: Infinity,
    });
    expect(budgets.exhausted('t', 0)).toBe(true);
    expect(budgets.msUntilUnder('t', 0)).toBeUndefined();
  });
});
