/**
 * Cluster-wide rate limits and tenant budgets: what the ResourceManager uses when its orchestrator's bridge keeps them
 * for the whole cluster (a RedisBridge: src/bridge/redis-limits.ts). Without one, limits and budgets are per process,
 * as they always were (the local RateLimiter and TenantBudgets alone).
 *
 * How the per-task cost stays low:
 * - Requests of a rate limit are leased from the cluster's token bucket in blocks of {@link leaseBlock} (1 for a limit
 *   below 100 requests per interval, 1% of the limit above, at most 100): a node takes a block in one round trip and
 *   starts that many tasks locally. It asks only when a task waits for one, never ahead. What it holds unused goes back
 *   to the bucket after {@link LEASE_TTL_MS} or when the node stops (capped at the bucket's size, so never doubled).
 * - Reported costs (units of a rate limit, spend of a tenant with a budget) are summed per event-loop turn and sent in
 *   one script call for the whole turn.
 * - A retry-after pause is written to the limit in Redis (read by every lease) and published: every node pauses at once.
 *
 * Redis away: a call that does not answer within {@link CALL_TIMEOUT_MS} marks the cluster limits unavailable until a
 * probe (every {@link PROBE_MS}) answers. Meanwhile a rate limit spends what this node leased already and holds tasks
 * beyond (they wait, bounded by their deadline, as for any rate limit; its one lease in flight is answered when Redis
 * is back), and tenants with a finite budget are refused with ClusterLimitsUnavailableError (budgets fail closed).
 * Nothing waits on Redis in a submit.
 */
import type { ResolvedRateLimitOptions } from './options.js';

/** How long unused leased requests are kept before they go back to the cluster's bucket, in ms. */
export const LEASE_TTL_MS = 1_000;
/** The longest a call to the cluster's limits may take before they count as unavailable, in ms. */
export const CALL_TIMEOUT_MS = 1_000;
/** While unavailable, how often the node asks again, in ms. */
export const PROBE_MS = 1_000;

/** Requests leased at once for a limit of `requests` per interval: 1 below 100, 1% of the limit above, at most 100. */
export function leaseBlock(requests: number): number {
  if (requests === Infinity) return 100;
  return Math.max(1, Math.min(100, Math.floor(requests / 100)));
}

/** The reply to a call on one rate limit in the cluster. */
export interface LimitReply {
  /** Requests granted (a lease), else 0. */
  readonly granted: number;
  /** Ms the limit is still paused by a retry-after (0 when not). */
  readonly pausedMs: number;
  /** When fewer than asked were granted: ms until the bucket has one again (0 otherwise). */
  readonly retryMs: number;
}

/** A tenant's spend in the cluster after a charge. */
export interface BudgetReply {
  /** Units spent in the window, over every node. */
  readonly spent: number;
  /** Ms until the spend falls under the limit sent; 0 when under, -1 when never (a limit of 0). */
  readonly msUntilUnder: number;
}

/** One tenant's charge in a batch. */
export interface BudgetCharge {
  /** The tenant. */
  readonly tenantId: string;
  /** Units spent since the last batch (0 to read only). */
  readonly units: number;
  /** Its limit per window on this node. */
  readonly limit: number;
}

/**
 * What a bridge that keeps limits for the whole cluster provides (RedisBridge's `clusterLimits()`). Every call is
 * atomic in the store; the node bounds each with {@link CALL_TIMEOUT_MS}.
 */
export interface ClusterLimitsBackend {
  /**
   * One operation on the rate limit `name`: `lease` asks for `n` requests, `give` returns `n` unused ones, `units`
   * charges `n` units, `pause` pauses it for `n` ms on every node (and tells them).
   */
  limit(
    name: string,
    options: ResolvedRateLimitOptions,
    op: 'lease' | 'give' | 'units' | 'pause',
    n: number,
  ): Promise<LimitReply>;
  /** Adds each charge to its tenant's spend over `windowMs` and answers the spend of each, in order. */
  budgets(windowMs: number, charges: readonly BudgetCharge[]): Promise<BudgetReply[]>;
  /**
   * Listens for pauses set and budgets crossed by other nodes; resolves with a function that stops listening.
   */
  listen(
    onPause: (name: string, ms: number) => void,
    onBudget: (tenantId: string, reply: BudgetReply) => void,
  ): Promise<() => void>;
}

/** The cluster's share of one rate limiter: the requests this node leased, and the units it has yet to report. */
export class LimiterLease {
  readonly name: string;
  readonly options: ResolvedRateLimitOptions;
  readonly block: number;
  /** Neither requests nor units are limited: only pauses are shared. */
  readonly unlimited: boolean;
  readonly #owner: ClusterLimits;
  /** Requests leased and not yet taken. */
  tokens = 0;
  /** When the tokens were leased (real ms): they go back after LEASE_TTL_MS unused. */
  leasedAt = 0;
  /** A lease call is under way. */
  fetching = false;
  /** No lease call before this (real ms): the bucket said when it has room again. */
  nextFetchAt = 0;
  /** Units charged here, not yet sent. */
  pendingUnits = 0;
  /** Called when a lease came back (room, or a pause): the limiter wakes its waiters. */
  wake: () => void = () => {};
  /** Called when the cluster paused the limit: the limiter pauses for `ms` without telling the cluster again. */
  paused: (ms: number) => void = () => {};

  constructor(owner: ClusterLimits, name: string, options: ResolvedRateLimitOptions) {
    this.#owner = owner;
    this.name = name;
    this.options = options;
    this.block = leaseBlock(options.requests);
    this.unlimited = options.requests === Infinity && options.units === Infinity;
  }

  /** Whether a leased request is there to take; asks the cluster for a block when not (never blocks). */
  available(): boolean {
    // Unlimited (a dependency's limiter kept for its pauses): nothing to lease; a pause still reaches every node.
    if (this.unlimited) return true;
    const now = Date.now();
    if (this.tokens >= 1 && now - this.leasedAt > LEASE_TTL_MS) this.#owner.giveBack(this);
    if (this.tokens >= 1) return true;
    if (!this.fetching && now >= this.nextFetchAt && !this.#owner.closed) void this.#owner.lease(this);
    return false;
  }

  /** Ms until asking again makes sense (a lease under way wakes the limiter itself when it answers). */
  msUntilRetry(): number {
    if (this.unlimited || this.tokens >= 1) return 0;
    if (this.fetching) return PROBE_MS;
    return Math.max(0, this.nextFetchAt - Date.now());
  }

  /** One request started. */
  take(): void {
    this.tokens = Math.max(0, this.tokens - 1);
  }

  /** Units reported after the fact: sent with the turn's batch. */
  charge(units: number): void {
    if (this.options.units === Infinity) return;
    this.pendingUnits += units;
    this.#owner.schedule();
  }

  /** A retry-after seen here: pause the limit on every node. */
  pause(ms: number): void {
    this.tokens = 0; // the vendor said "too many": what is held is not really there
    this.#owner.pause(this, ms);
  }

  /** Another node paused it (or a lease found it paused). */
  pausedElsewhere(ms: number): void {
    this.tokens = 0;
    this.paused(ms);
  }
}

/** Per-tenant spend as the cluster last told this node, for the tenants it is over the limit. */
interface TenantOver {
  readonly spent: number;
  /** Real ms when the tenant is under again (Infinity: never, a limit of 0). */
  readonly until: number;
}

/**
 * The node's side of the cluster's limits: the leases of its limiters, the charges of the turn, the tenants the cluster
 * said are over budget, and whether Redis answers.
 */
export class ClusterLimits {
  readonly #backend: ClusterLimitsBackend;
  readonly #leases = new Map<string, LimiterLease>();
  /** Budget charges of this turn, by tenant: units and the limit. */
  #budgetCharges = new Map<string, { units: number; limit: number }>();
  #budgetWindowMs = 0;
  readonly #over = new Map<string, TenantOver>();
  #scheduled = false;
  #unlisten: (() => void) | undefined;
  /** Since when (real ms) Redis did not answer; `undefined` while it does. */
  #downSince: number | undefined;
  #downReason = '';
  #probe: NodeJS.Timeout | undefined;
  #closed = false;
  /** Calls under way: stop waits for them (bounded). */
  readonly #inflight = new Set<Promise<unknown>>();
  /** Round trips made, by kind: what the bench and the tests read. */
  readonly calls = { lease: 0, give: 0, units: 0, pause: 0, budgets: 0 };

  constructor(backend: ClusterLimitsBackend) {
    this.#backend = backend;
  }

  /** Stopped: nothing more is asked of the cluster. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Starts listening for other nodes' pauses and budget crossings. */
  async start(): Promise<void> {
    const unlisten = await this.#call(
      this.#backend.listen(
        (name, ms) => this.#leases.get(name)?.pausedElsewhere(ms),
        (tenantId, reply) => this.#heard(tenantId, reply),
      ),
    ).catch(() => undefined);
    if (this.#closed) unlisten?.();
    else this.#unlisten = unlisten;
  }

  /** The lease of a limiter, made on first use. */
  leaseFor(name: string, options: ResolvedRateLimitOptions): LimiterLease {
    let lease = this.#leases.get(name);
    if (!lease) {
      lease = new LimiterLease(this, name, options);
      this.#leases.set(name, lease);
    }
    return lease;
  }

  /** @internal Asks the cluster for a block of requests; wakes the limiter with what came back. */
  async lease(lease: LimiterLease): Promise<void> {
    lease.fetching = true;
    this.calls.lease++;
    // One lease per limit at a time, answered late or not: the client keeps a command while Redis is away and sends
    // it once back, so a lease waited for past the bound still brings its requests here (none is lost, none is asked
    // twice). The bound only marks the cluster's limits unavailable meanwhile.
    const work = this.#backend.limit(lease.name, lease.options, 'lease', lease.block);
    this.#call(work).catch(() => {});
    try {
      const reply = await work;
      if (this.#closed) {
        if (reply.granted > 0)
          void this.#backend.limit(lease.name, lease.options, 'give', reply.granted).catch(() => {});
        return;
      }
      if (reply.granted > 0) {
        lease.tokens += reply.granted;
        lease.leasedAt = Date.now();
      }
      if (reply.pausedMs > 0) lease.pausedElsewhere(reply.pausedMs);
      lease.nextFetchAt = reply.granted > 0 ? 0 : Date.now() + Math.max(1, reply.retryMs, reply.pausedMs);
    } catch {
      lease.nextFetchAt = Date.now() + PROBE_MS;
    } finally {
      lease.fetching = false;
    }
    lease.wake();
  }

  /** @internal Gives the unused requests of a lease back to the cluster's bucket. */
  giveBack(lease: LimiterLease): void {
    const n = Math.floor(lease.tokens);
    lease.tokens = 0;
    if (n <= 0) return;
    this.calls.give++;
    void this.#call(this.#backend.limit(lease.name, lease.options, 'give', n)).catch(() => {});
  }

  /** @internal Pauses a limit on every node. */
  pause(lease: LimiterLease, ms: number): void {
    if (this.#closed) return;
    this.calls.pause++;
    void this.#call(this.#backend.limit(lease.name, lease.options, 'pause', ms)).catch(() => {});
  }

  /** A tenant's charge: sent with the turn's batch. */
  chargeBudget(tenantId: string, units: number, limit: number, windowMs: number): void {
    if (limit === Infinity || units <= 0) return;
    this.#budgetWindowMs = windowMs;
    const c = this.#budgetCharges.get(tenantId);
    if (c) {
      c.units += units;
      c.limit = limit;
    } else this.#budgetCharges.set(tenantId, { units, limit });
    this.schedule();
  }

  /** The cluster's spend of a tenant it said is over its limit now, or `undefined` when not over (as last heard). */
  over(tenantId: string): TenantOver | undefined {
    const o = this.#over.get(tenantId);
    if (o === undefined) return undefined;
    if (Date.now() < o.until) return o;
    this.#over.delete(tenantId);
    return undefined;
  }

  /** Since when Redis has not answered (with why), or `undefined` while it answers. */
  get unavailable(): { readonly since: number; readonly reason: string; readonly retryMs: number } | undefined {
    if (this.#downSince === undefined) return undefined;
    return { since: this.#downSince, reason: this.#downReason, retryMs: PROBE_MS };
  }

  /** @internal Sends the turn's charges once the turn is over. */
  schedule(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.flush();
    });
  }

  /** Sends the charges made since the last flush: units of each limit, then the tenants' spend, one call each. */
  async flush(): Promise<void> {
    const work: Promise<unknown>[] = [];
    for (const lease of this.#leases.values()) {
      if (lease.pendingUnits <= 0) continue;
      const units = lease.pendingUnits;
      lease.pendingUnits = 0;
      this.calls.units++;
      work.push(this.#call(this.#backend.limit(lease.name, lease.options, 'units', units)).catch(() => {}));
    }
    if (this.#budgetCharges.size > 0) {
      const batch = this.#budgetCharges;
      this.#budgetCharges = new Map();
      const charges: BudgetCharge[] = [];
      for (const [tenantId, c] of batch) charges.push({ tenantId, units: c.units, limit: c.limit });
      this.calls.budgets++;
      work.push(
        this.#call(this.#backend.budgets(this.#budgetWindowMs, charges))
          .then((replies) => replies.forEach((r, i) => this.#heard(charges[i]!.tenantId, r)))
          // Not answered in time: the client keeps the command and sends it when Redis is back (no double charge).
          .catch(() => {}),
      );
    }
    await Promise.all(work);
  }

  /**
   * Stops: sends the last charges and gives back every unused lease, within `timeoutMs`; stops listening.
   */
  async close(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    const done = (async () => {
      await this.flush();
      for (const lease of this.#leases.values()) this.giveBack(lease);
      this.#closed = true;
      await Promise.allSettled([...this.#inflight]);
    })();
    await Promise.race([done, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    this.#closed = true;
    if (this.#probe) clearTimeout(this.#probe);
    this.#unlisten?.();
  }

  #heard(tenantId: string, reply: BudgetReply): void {
    if (reply.msUntilUnder === 0) this.#over.delete(tenantId);
    else
      this.#over.set(tenantId, {
        spent: reply.spent,
        until: reply.msUntilUnder < 0 ? Infinity : Date.now() + reply.msUntilUnder,
      });
  }

  /** A call bounded by CALL_TIMEOUT_MS; a failure or timeout marks Redis unavailable, a reply clears it. */
  #call<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const bounded = new Promise<T>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${CALL_TIMEOUT_MS} ms`)), CALL_TIMEOUT_MS);
      timer.unref();
      work.then(resolve, reject);
    }).then(
      (value) => {
        clearTimeout(timer);
        this.#downSince = undefined;
        return value;
      },
      (error: unknown) => {
        clearTimeout(timer);
        this.#down(error);
        throw error;
      },
    );
    work.catch(() => {}); // answered after the timeout: nobody waits for it any more
    this.#inflight.add(bounded);
    const forget = (): void => void this.#inflight.delete(bounded);
    bounded.then(forget, forget);
    return bounded;
  }

  #down(error: unknown): void {
    this.#downSince ??= Date.now();
    this.#downReason = error instanceof Error ? error.message : String(error);
    this.#armProbe();
  }

  /** While Redis does not answer, asks again every PROBE_MS (a read of no tenant: one script call). */
  #armProbe(): void {
    if (this.#probe || this.#closed) return;
    this.#probe = setTimeout(() => {
      void this.#call(this.#backend.budgets(1, []))
        .then(
          () => {
            for (const lease of this.#leases.values()) lease.wake();
          },
          () => {},
        )
        .finally(() => {
          this.#probe = undefined;
          if (this.#downSince !== undefined) this.#armProbe();
        });
    }, PROBE_MS).unref();
  }
}
