/**
 * The block a node leases from a cluster-wide rate limit (src/resources/cluster-limits.ts): 1 below 100 requests per
 * interval, so that the cluster's bound is exact for small limits; 1% of the limit above, at most 100. The cluster
 * behaviour itself is tested on a real Redis in test/bridge/cluster-limits.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { leaseBlock } from '../../src/resources/cluster-limits.js';

describe('leaseBlock', () => {
  it('is 1 below 100 requests per interval, 1% above, at most 100', () => {
    expect([1, 2, 60, 99, 100, 199].map(leaseBlock)).toEqual([1, 1, 1, 1, 1, 1]);
    expect([200, 500, 1_000, 9_999].map(leaseBlock)).toEqual([2, 5, 10, 99]);
    expect([10_000, 1_000_000, Infinity].map(leaseBlock)).toEqual([100, 100, 100]);
  });
});
