/**
 * Per-tenant cost budgets: units reported by agents (`ctx.reportCost`) summed per tenant over a sliding window,
 * kept as a ring of buckets so memory per tenant is fixed and old spend falls out on its own.
 */
import type { ResolvedBudgetOptions } from './options.js';
import type { ClusterLimits } from './cluster-limits.js';

/** Buckets per window: the window slides in steps of windowMs / BUCKETS. */
const BUCKETS = 20;
/** Tenants tracked before those with nothing in the window are forgotten. */
const SWEEP_AT = 10_000;

class TenantSpend {
  readonly tenantId: string;
  readonly buckets = new Float64Array(BUCKETS);
  /** The absolute bucket index that `buckets` was last advanced to. */
  head = 0;
  total = 0;
  /** Over the limit at the last charge: `exceeded` fires once per crossing, not on every charge after it. */
  over = false;

  constructor(tenantId: string, head: number) {
    this.tenantId = tenantId;
    this.head = head;
  }
}

export class TenantBudgets {
  readonly windowMs: number;
  readonly haltOnExceeded: boolean;
  readonly #limits: Map<string, number>;
  readonly #defaultLimit: number;
  readonly #bucketMs: number;
  readonly #tenants = new Map<string, TenantSpend>();
  /** Tracked tenants at which the next sweep runs: doubled past what a sweep leaves, so sweeps stay amortised O(1). */
  #sweepAt = SWEEP_AT;
  /** The cluster's budgets (a RedisBridge), or `undefined` when budgets are this process's own. */
  #cluster: ClusterLimits | undefined;

  constructor(options: ResolvedBudgetOptions) {
    this.windowMs = options.windowMs;
    this.haltOnExceeded = options.haltOnExceeded;
    this.#limits = new Map(options.limits);
    this.#defaultLimit = options.defaultLimit;
    this.#bucketMs = options.windowMs / BUCKETS;
  }

  /** Whether any tenant can ever be over budget: lets the submit path skip the lookup entirely. */
  get active(): boolean {
    return this.#defaultLimit !== Infinity || this.#limits.size > 0;
  }

  /** Makes budgets cluster-wide: charges of tenants with a limit go to the cluster, whose verdict counts too. */
  attachCluster(cluster: ClusterLimits): void {
    this.#cluster = cluster;
  }

  /** The cluster's budgets, when attached. */
  get cluster(): ClusterLimits | undefined {
    return this.#cluster;
  }

  limitOf(tenantId: string): number {
    return this.#limits.get(tenantId) ?? this.#defaultLimit;
  }

  setLimit(tenantId: string, limit: number | undefined): void {
    if (limit === undefined) this.#limits.delete(tenantId);
    else this.#limits.set(tenantId, limit);
    // The next charge over the new limit reports the crossing (and halts, with haltOnExceeded).
    const t = this.#tenants.get(tenantId);
    if (t) t.over = false;
  }

  /** Units spent by `tenantId` in the window ending now. */
  spent(tenantId: string, now: number): number {
    const t = this.#tenants.get(tenantId);
    let total = 0;
    if (t) {
      this.#advance(t, now);
      total = t.total;
    }
    // Cluster-wide, the cluster's spend as last heard when it is over the limit (else this node's own).
    const over = this.#cluster?.over(tenantId);
    return over === undefined ? total : Math.max(total, over.spent);
  }

  /** Whether the tenant has spent its whole limit in the window (new tasks are then refused). */
  exhausted(tenantId: string, now: number): boolean {
    const limit = this.limitOf(tenantId);
    return limit !== Infinity && this.spent(tenantId, now) >= limit;
  }

  /** Cluster-wide, ms until the cluster said the tenant is under again (undefined: never; 0 when not over). */
  #clusterMsUntilUnder(tenantId: string): number | undefined {
    const over = this.#cluster?.over(tenantId);
    if (over === undefined) return 0;
    return over.until === Infinity ? undefined : Math.max(1, Math.ceil(over.until - Date.now()));
  }

  /**
   * Ms until the tenant's spend in the window falls below its limit again, as its oldest spend leaves the window
   * (at most `windowMs`); 0 when it is under already, `undefined` when it never will (a limit of 0).
   */
  msUntilUnder(tenantId: string, now: number): number | undefined {
    const limit = this.limitOf(tenantId);
    if (limit <= 0) return undefined;
    const cluster = this.#clusterMsUntilUnder(tenantId);
    if (cluster === undefined) return undefined;
    const local = this.#localMsUntilUnder(tenantId, limit, now);
    return local === undefined ? undefined : Math.max(local, cluster);
  }

  #localMsUntilUnder(tenantId: string, limit: number, now: number): number | undefined {
    const t = this.#tenants.get(tenantId);
    if (!t) return 0;
    this.#advance(t, now);
    let total = t.total;
    if (total < limit) return 0;
    // Oldest bucket first: the bucket of absolute index i leaves the window when the head reaches i + BUCKETS.
    for (let i = t.head - BUCKETS + 1; i <= t.head; i++) {
      total -= t.buckets[((i % BUCKETS) + BUCKETS) % BUCKETS]!;
      // The same rule as exhausted(): under means `total < limit`, float drift and all.
      if (total < limit) return this.#msUntilHead(i + BUCKETS, now);
    }
    return this.#msUntilHead(t.head + BUCKETS, now);
  }

  /**
   * Whole ms from `now` until the head bucket is `head`, by the very division #advance uses (a product of the bucket
   * length can land a hair either side of it in floating point).
   */
  #msUntilHead(head: number, now: number): number {
    const reached = (ms: number): boolean => Math.floor((now + ms) / this.#bucketMs) >= head;
    let ms = Math.max(1, Math.ceil(head * this.#bucketMs - now));
    while (!reached(ms)) ms++;
    while (ms > 1 && reached(ms - 1)) ms--;
    return ms;
  }

  /** Adds spend; returns true when this charge took the tenant over its limit (not on later charges while over). */
  charge(tenantId: string, units: number, now: number): boolean {
    if (units <= 0) return false;
    this.#cluster?.chargeBudget(tenantId, units, this.limitOf(tenantId), this.windowMs);
    let t = this.#tenants.get(tenantId);
    if (!t) {
      if (this.#tenants.size >= this.#sweepAt) this.#sweep(now);
      t = new TenantSpend(tenantId, Math.floor(now / this.#bucketMs));
      this.#tenants.set(tenantId, t);
    }
    this.#advance(t, now);
    t.buckets[t.head % BUCKETS]! += units;
    t.total += units;
    const over = t.total >= this.limitOf(tenantId);
    const crossed = over && !t.over;
    t.over = over;
    return crossed;
  }

  #advance(t: TenantSpend, now: number): void {
    const head = Math.floor(now / this.#bucketMs);
    if (head <= t.head) return;
    const steps = Math.min(BUCKETS, head - t.head);
    for (let i = 1; i <= steps; i++) {
      const slot = (t.head + i) % BUCKETS;
      t.total -= t.buckets[slot]!;
      t.buckets[slot] = 0;
    }
    t.head = head;
    if (t.total < 1e-9) t.total = 0; // float drift
    if (t.over && t.total < this.limitOf(t.tenantId)) t.over = false;
  }

  /**
   * Forgets tenants with nothing left in the window. When most still have spend (many active tenants), the next
   * sweep waits until the map has doubled: otherwise every new tenant would pay a scan that frees nothing.
   */
  #sweep(now: number): void {
    for (const [id, t] of this.#tenants) {
      this.#advance(t, now);
      if (t.total === 0) this.#tenants.delete(id);
    }
    this.#sweepAt = Math.max(SWEEP_AT, this.#tenants.size * 2);
  }
}
