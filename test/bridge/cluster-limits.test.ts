/**
 * Cluster-wide rate limits and tenant budgets, on a real redis-server: three orchestrators in this process, each with
 * its own RedisBridge and node id in one namespace. A rate limit holds across them under a burst, a tenant budget
 * holds across them, a retry-after seen by one node pauses the others, allowance leased by a node that stops goes
 * back (not lost, not doubled), and Redis killed and restarted mid-way makes nothing hang. Real timers throughout.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  BudgetExceededError,
  ClusterLimitsUnavailableError,
  RedisBridge,
  UnifiedOrchestrator,
  type Agent,
  type OrchestratorOptions,
} from 'unified-orchestrator';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { eventually, FAST, SECRET } from './helpers.js';

let redis: TestRedis;
let client: Redis;
beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  await client.connect();
}, 30_000);
afterAll(async () => {
  client.disconnect();
  if (redis.owned) await redis.stop();
});

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 2_000 })));
});

/** What an `llm` task does: report `cost`, throw a retry-after error when `tooManyMs` is set, else answer. */
interface Job {
  readonly cost?: number;
  readonly tooManyMs?: number;
}

/** Start times (Date.now()) of every attempt on every node, and which node ran it. */
const started: Array<{ node: string; at: number }> = [];
/** Tasks that threw their retry-after already: the vendor says "too many" once. */
const throttled = new Set<string>();

function agent(node: string): Agent {
  return {
    async execute(ctx) {
      started.push({ node, at: Date.now() });
      const job = (ctx.payload ?? {}) as Job;
      if (job.cost) ctx.reportCost(job.cost);
      if (job.tooManyMs !== undefined && !throttled.has(ctx.taskId)) {
        throttled.add(ctx.taskId);
        throw Object.assign(new Error('429'), { retryAfterMs: job.tooManyMs });
      }
      await new Promise((r) => setTimeout(r, 2));
      return node;
    },
  };
}

async function node(ns: string, id: string, options: Partial<OrchestratorOptions> = {}): Promise<UnifiedOrchestrator> {
  const o = new UnifiedOrchestrator({
    pressure: false,
    pools: [{ role: 'llm', capabilities: ['llm'], minAgents: 1, maxAgents: 4, warmSpares: 0, create: () => agent(id) }],
    bridge: new RedisBridge({ url: redis.url, namespace: ns, nodeId: id, secret: SECRET, ...FAST }),
    ...options,
  });
  live.push(o);
  await o.start();
  return o;
}

async function fleet(ns: string, options: Partial<OrchestratorOptions>): Promise<UnifiedOrchestrator[]> {
  return Promise.all(['a', 'b', 'c'].map((id) => node(ns, id, options)));
}

/** Resolves with the value or the error, failing the test if it takes longer than `ms` (nothing may hang). */
async function settled(p: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.catch((error: unknown) => error),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('cluster-wide limits (RedisBridge)', () => {
  afterEach(() => {
    started.length = 0;
  });

  it('a rate limit of 5 per second holds across three nodes under a burst', async () => {
    const ns = namespace();
    const rateLimits = { llm: { requests: 5, intervalMs: 1_000 } };
    const nodes = await fleet(ns, { rateLimits });
    started.length = 0;
    const t0 = Date.now();
    // 15 tasks per node at once: per process, each node would start 5 at once (15 in the cluster).
    for (const o of nodes)
      for (let i = 0; i < 15; i++) void o.submit({ type: 'job', requires: ['llm'] }).catch(() => {});
    await new Promise((r) => setTimeout(r, 2_500));
    const times = started.map((s) => s.at).sort((x, y) => x - y);
    // A token bucket of 5 refilled at 5/s: in any span of T ms, at most 5 + 5T/1000 start (block 1: exact).
    for (let i = 0; i < times.length; i++) {
      for (const span of [200, 1_000]) {
        const within = times.filter((t) => t >= times[i]! && t < times[i]! + span).length;
        expect(within, `starts within ${span} ms of start ${i}`).toBeLessThanOrEqual(5 + Math.ceil((5 * span) / 1_000));
      }
    }
    // And it makes progress at the limit's pace, on more than one node.
    expect(times.length).toBeGreaterThanOrEqual(5 + Math.floor((5 * (Date.now() - t0 - 600)) / 1_000));
    expect(new Set(started.map((s) => s.node)).size).toBeGreaterThan(1);
  }, 30_000);

  it('a tenant budget of 10 holds across three nodes: every node refuses once the cluster spent it', async () => {
    const ns = namespace();
    const nodes = await fleet(ns, { budgets: { windowMs: 60_000, limits: { acme: 10 } } });
    let spent = 0;
    let refusedAt: number | undefined;
    for (let i = 0; i < 30 && refusedAt === undefined; i++) {
      const result = await settled(
        nodes[i % 3]!.submit({ type: 'job', requires: ['llm'], tenantId: 'acme', payload: { cost: 1 } }),
        5_000,
      );
      if (result instanceof BudgetExceededError) refusedAt = i;
      else spent++;
    }
    // Per process each node would take 10 (30 in all). Cluster-wide: the limit, plus at most one task per node
    // admitted before the crossing reached it (one event-loop turn and a round trip).
    expect(refusedAt).toBeDefined();
    expect(spent).toBeGreaterThanOrEqual(10);
    expect(spent).toBeLessThanOrEqual(10 + 3);
    await new Promise((r) => setTimeout(r, 50));
    for (const o of nodes) {
      const refusal = await settled(o.submit({ type: 'job', requires: ['llm'], tenantId: 'acme' }), 2_000);
      expect(refusal).toBeInstanceOf(BudgetExceededError);
      expect((refusal as BudgetExceededError).spent).toBeGreaterThanOrEqual(10);
    }
    // Another tenant is not held.
    expect(await nodes[0]!.submit({ type: 'job', requires: ['llm'], tenantId: 'other' })).toBe('a');
  }, 30_000);

  it('a retry-after received by one node pauses the limit on every node', async () => {
    const ns = namespace();
    const rateLimits = { llm: { requests: 1_000, intervalMs: 1_000 } };
    const [a, b, c] = await fleet(ns, { rateLimits });
    const paused: string[] = [];
    b!.on('ratelimit:paused', () => paused.push('b'));
    c!.on('ratelimit:paused', () => paused.push('c'));
    // A's agent hears 429 with retry-after 1.2 s; its task is deferred, and the pause is published.
    const deferred = a!.submit({ type: 'job', requires: ['llm'], payload: { tooManyMs: 1_200 }, maxAttempts: 1 });
    deferred.catch(() => {});
    await eventually(() => paused.length === 2, 3_000);
    const pausedAt = Date.now();
    started.length = 0;
    const t = await Promise.all([
      b!.submit({ type: 'job', requires: ['llm'] }),
      c!.submit({ type: 'job', requires: ['llm'] }),
    ]);
    expect(t).toEqual(['b', 'c']);
    // Per process, B and C would have started at once; paused cluster-wide, not before the pause ended.
    for (const s of started) expect(s.at - pausedAt).toBeGreaterThanOrEqual(1_000);
  }, 30_000);

  it('allowance a node leased and did not use goes back when it stops, and its charges reach Redis: not lost, not doubled', async () => {
    const ns = namespace();
    // 500 per 10 minutes: leases of 5; the refill (under 1 per second) is too slow to blur the counts.
    const rateLimits = { llm: { requests: 500, intervalMs: 600_000 } };
    const a = await node(ns, 'a', { rateLimits, budgets: { limits: { acme: 100 } } });
    const key = `${ns}:limit:llm`;
    expect(await a.submit({ type: 'job', requires: ['llm'], tenantId: 'acme', payload: { cost: 4 } })).toBe('a');
    const held = Number(await client.hget(key, 'r'));
    expect(held).toBeGreaterThanOrEqual(495);
    expect(held).toBeLessThan(496); // a block of 5 leased for one task
    await a.stop();
    const back = Number(await client.hget(key, 'r'));
    expect(back).toBeGreaterThanOrEqual(499); // the 4 unused came back
    expect(back).toBeLessThan(500); // the one spent did not
    // Its charge reached the tenant's spend in Redis, once.
    const spend = Object.values(await client.hgetall(`${ns}:budget:acme`)).reduce((sum, v) => sum + Number(v), 0);
    expect(spend).toBe(4);
    // Another node spends from the same bucket; stopping it gives back what it did not use, and never more.
    const b = await node(ns, 'b', { rateLimits });
    for (let i = 0; i < 7; i++) await b.submit({ type: 'job', requires: ['llm'] });
    await b.stop();
    const after = Number(await client.hget(key, 'r'));
    expect(after).toBeGreaterThanOrEqual(492);
    expect(after).toBeLessThan(493);
  }, 30_000);

  it('Redis killed and restarted mid-way: budgets refuse with a typed error, limits hold, nothing hangs', async () => {
    if (!redis.owned) throw new Error('this test restarts redis-server: run it without REDIS_URL');
    const ns = namespace();
    const options = {
      budgets: { windowMs: 60_000, limits: { acme: 1_000 } },
      rateLimits: { llm: { requests: 1_000, intervalMs: 1_000 } },
    };
    const [a] = await fleet(ns, options);
    expect(await a!.submit({ type: 'job', requires: ['llm'], tenantId: 'acme', payload: { cost: 1 } })).toBe('a');
    await redis.stop(true);
    try {
      // Every submit settles: the first ones run on the allowance already leased, then budgets fail closed.
      let refusal: unknown;
      const deadline = Date.now() + 8_000;
      while (refusal === undefined && Date.now() < deadline) {
        const r = await settled(
          a!.submit({ type: 'job', requires: ['llm'], tenantId: 'acme', payload: { cost: 1 }, deadlineMs: 3_000 }),
          5_000,
        );
        if (r instanceof ClusterLimitsUnavailableError) refusal = r;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(refusal).toBeInstanceOf(ClusterLimitsUnavailableError);
      expect(refusal).toMatchObject({ code: 'CLUSTER_LIMITS_UNAVAILABLE', tenantId: 'acme' });
      // A tenant without a budget is not refused; its task waits for the limit at most until its deadline.
      const unbudgeted = await settled(a!.submit({ type: 'job', requires: ['llm'], deadlineMs: 2_000 }), 4_000);
      expect(unbudgeted === 'a' || (unbudgeted as { code?: string }).code === 'TASK_TIMEOUT').toBe(true);
    } finally {
      await redis.restart();
    }
    // Back: budgeted tasks run again, on a fresh bucket (Redis lost its data).
    await eventually(async () => {
      const r = await settled(a!.submit({ type: 'job', requires: ['llm'], tenantId: 'acme' }), 5_000);
      return r === 'a';
    }, 30_000); // the bridge's reconnect backoff (the retry policy's, with jitter) comes first
  }, 90_000);
});
