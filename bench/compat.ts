/**
 * Compat: what the legacy layer (OrchestratorsCompatibilityAdapter, TrafficRouter) adds on top of the orchestrator,
 * each figure beside its baseline measured in the same run.
 *
 * - Adapter round trip: `delegateTaskToAgent` + `waitForTask` through the adapter, beside `submit` on a bare
 *   orchestrator (same fleet, no adapter attached, so the baseline carries none of the adapter's event listeners).
 *   The adapter has finished more than `maxFinishedTasks` tasks before sampling starts: it is measured as it runs in
 *   service, keeping its full window of finished statuses (and forgetting the oldest on every task).
 * - Router passthrough at 0% (flags off): `router.delegateTaskToAgent(task)` to a trivial async legacy object,
 *   beside calling that object directly. The legacy object answers a new id per call, as a real one would, and the
 *   router remembers each (`maxOwnedIds`, 100,000 by default, oldest forgotten first). Two states:
 *   fresh: routers that have handed out fewer than half that many ids (each is replaced, outside the sample, before
 *   it gets there), with the documented setup (`orchestrator` given, so metrics go to its registry) and, for
 *   information, with `metrics: false`;
 *   steady: a router that has already handed out 110,000 ids, as one has after a few minutes in service.
 * - Router at 100%: delegate + `waitForTask` through a (fresh) router to the adapter, beside the adapter directly.
 * - Routing decision: `router.sideOf(key)` (and `bucketOf`) over 10,000 distinct UUID-shaped keys, in ns per call.
 *
 * The latency cases run in interleaved passes (alternating order), so machine noise falls on every case alike.
 * Every agent is a no-op: the figures are the library's own overhead.
 */
import {
  bucketOf,
  isLegacyError,
  OrchestratorsCompatibilityAdapter,
  TrafficRouter,
  UnifiedOrchestrator,
  type LegacyOrchestrator,
  type LegacyResult,
  type LegacyTask,
  type LegacyTaskStatus,
  type Task,
} from 'unified-orchestrator';
import { median, progress, sampleLatency, summarise, type LatencyStats } from './harness.js';
import { noop, runWindowed, seededRandom } from './load.js';
import { FLEET, type BenchSettings } from './settings.js';

export interface CompatResult {
  /** No-op agents in each fleet. */
  readonly agents: number;
  readonly passes: number;
  /** Baseline: `await orchestrator.submit(task)` on a bare orchestrator. */
  readonly submit: LatencyStats;
  readonly adapter: {
    /** `delegateTaskToAgent` + `waitForTask`. */
    readonly roundTrip: LatencyStats;
    /** p50 adapter round trip / p50 submit. */
    readonly ratio: number;
    readonly addedUs: number;
  };
  readonly passthrough: {
    /** The trivial legacy object called directly. */
    readonly direct: LatencyStats;
    /** Routers at 0% below half their id cap, set up with `orchestrator` (metrics on, the documented setup). */
    readonly fresh: PassthroughCase;
    /** The same with `metrics: false` (no orchestrator). */
    readonly freshNoMetrics: PassthroughCase;
    /** A router at 0% (documented setup) that had handed out `idsBefore` ids when sampling started. */
    readonly steady: PassthroughCase & { readonly idsBefore: number };
    /** Ids a router remembers (its `maxOwnedIds`, the default). */
    readonly maxOwnedIds: number;
    /** Delegations a fresh router answers before it is replaced (also for the 100% case). */
    readonly freshLimit: number;
  };
  readonly routed: {
    /** Router at 100% → adapter: delegate + `waitForTask`. */
    readonly roundTrip: LatencyStats;
    /** p50 routed / p50 adapter direct. */
    readonly ratio: number;
    /** p50 routed - p50 adapter direct, µs (two routed calls). */
    readonly addedUs: number;
  };
  /** Finished tasks the adapter keeps (its `maxFinishedTasks`, the default), and tasks it ran before sampling. */
  readonly adapterWindow: { readonly maxFinishedTasks: number; readonly tasksBefore: number };
  readonly routing: {
    readonly keys: number;
    readonly keyLength: number;
    readonly rounds: number;
    /** Median over rounds of ns per `sideOf` call (router at 50%). */
    readonly sideOfNs: number;
    readonly bucketOfNs: number;
    /** Share of keys on the unified side at 50%: a check that the hash spreads. */
    readonly unifiedShare: number;
  };
}

export interface PassthroughCase {
  readonly router: LatencyStats;
  /** p50 router - p50 direct, µs per call. */
  readonly addedUs: number;
  /** p50 router / p50 direct. */
  readonly ratio: number;
}

/** `TrafficRouterOptions.maxOwnedIds` and `CompatibilityAdapterOptions.maxFinishedTasks` defaults (not exported). */
const MAX_OWNED_IDS = 100_000;
const MAX_FINISHED_TASKS = 10_000;
/** A fresh router is replaced once it has answered this many delegations. */
const FRESH_LIMIT = MAX_OWNED_IDS / 2;
/** Ids a steady router has handed out before sampling. */
const STEADY_IDS = MAX_OWNED_IDS + 10_000;
/** Adapter round trips before sampling. */
const ADAPTER_PREFILL = MAX_FINISHED_TASKS + 5_000;

const SUBMIT: Task = { type: 'probe', requires: ['work'] };
const LEGACY_TASK: LegacyTask = { capabilities: ['work'], type: 'probe' };

function fleet(): UnifiedOrchestrator {
  return new UnifiedOrchestrator({
    pools: [
      {
        role: 'worker',
        capabilities: ['work'],
        create: () => ({ execute: noop }),
        minAgents: FLEET,
        maxAgents: FLEET,
        warmSpares: 0,
      },
    ],
  });
}

/** A legacy implementation that does nothing but answer: a new id per delegation, tasks always completed. */
function trivialLegacy(): LegacyOrchestrator {
  let n = 0;
  const now = new Date(0).toISOString();
  const status = (taskId: string): LegacyTaskStatus => ({
    task_id: taskId,
    status: 'completed',
    agent_id: 'legacy-agent',
    attempts: 1,
    created_at: now,
    updated_at: now,
  });
  return {
    async spawnAgent() {
      return `legacy-agent-${++n}`;
    },
    async delegateTaskToAgent() {
      return `legacy-task-${++n}`;
    },
    async getAgentStatus(agentId) {
      return {
        agent_id: agentId,
        role: null,
        status: 'idle',
        capabilities: [],
        active_tasks: 0,
        completed_tasks: 0,
        failed_tasks: 0,
      };
    },
    async getTaskStatus(taskId) {
      return status(taskId);
    },
    async shutdownAgent(agentId) {
      return { agent_id: agentId, status: 'terminated' };
    },
    async waitForTask(taskId) {
      return status(taskId);
    },
  };
}

function expectId(answer: LegacyResult<string>, label: string): string {
  if (isLegacyError(answer))
    throw new Error(`${label}: delegateTaskToAgent answered ${answer.error.code}: ${answer.error.message}`);
  return answer;
}

function expectCompleted(answer: LegacyResult<LegacyTaskStatus>, label: string): void {
  if (isLegacyError(answer))
    throw new Error(`${label}: waitForTask answered ${answer.error.code}: ${answer.error.message}`);
  if (answer.status !== 'completed') throw new Error(`${label}: task ended ${answer.status}`);
}

/**
 * Routers made by `make`, each replaced (by `next()`, outside the sample) once it has answered `limit` delegations,
 * so that every call is served by a router whose id map is below its cap.
 */
class Renewing {
  readonly #make: () => TrafficRouter;
  readonly #limit: number;
  #router: TrafficRouter;
  #served = 0;
  #closed = false;
  /** Calls answered by each side, over every router made. */
  readonly calls = { legacy: 0, unified: 0, shadow: 0 };
  constructor(make: () => TrafficRouter, limit: number) {
    this.#make = make;
    this.#limit = limit;
    this.#router = make();
  }
  async next(): Promise<TrafficRouter> {
    if (this.#served >= this.#limit) {
      await this.#retire();
      this.#router = this.#make();
      this.#served = 0;
    }
    this.#served++;
    return this.#router;
  }
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#retire();
  }
  async #retire(): Promise<void> {
    const { calls } = this.#router.stats();
    this.calls.legacy += calls.legacy;
    this.calls.unified += calls.unified;
    this.calls.shadow += calls.shadow;
    await this.#router.close();
  }
}

export async function benchCompat(settings: BenchSettings): Promise<CompatResult> {
  const { passes, latency, callLatency } = settings.compat;
  const bare = fleet();
  const served = fleet();
  await Promise.all([bare.start(), served.start()]);
  const adapter = new OrchestratorsCompatibilityAdapter(served);
  const legacy = trivialLegacy();
  const fresh = new Renewing(() => new TrafficRouter({ legacy, unified: adapter, orchestrator: served }), FRESH_LIMIT);
  const freshNoMetrics = new Renewing(
    () => new TrafficRouter({ legacy, unified: adapter, metrics: false }),
    FRESH_LIMIT,
  );
  const full = new Renewing(
    () => new TrafficRouter({ legacy, unified: adapter, orchestrator: served, percent: 100 }),
    FRESH_LIMIT,
  );
  const steady = new TrafficRouter({ legacy, unified: adapter, orchestrator: served });
  try {
    // The steady router hands out STEADY_IDS ids; the adapter finishes more than it keeps. Neither is sampled.
    for (let i = 0; i < STEADY_IDS; i++) await steady.delegateTaskToAgent(LEGACY_TASK);
    const prefill = await runWindowed(ADAPTER_PREFILL, 64, async () => {
      expectCompleted(
        await adapter.waitForTask(expectId(await adapter.delegateTaskToAgent(LEGACY_TASK), 'adapter')),
        'adapter',
      );
    });
    if (prefill.rejected > 0)
      throw new Error(`compat: ${prefill.rejected} adapter round trips failed while filling its window`);
    progress(
      `compat: steady router at ${STEADY_IDS.toLocaleString('en-US')} ids, adapter past ${MAX_FINISHED_TASKS.toLocaleString('en-US')} finished tasks`,
    );

    const cases = {
      submit: async () => {
        const t0 = performance.now();
        await bare.submit(SUBMIT);
        return performance.now() - t0;
      },
      adapter: async () => {
        const t0 = performance.now();
        const id = await adapter.delegateTaskToAgent(LEGACY_TASK);
        const status = await adapter.waitForTask(expectId(id, 'adapter'));
        const t1 = performance.now();
        expectCompleted(status, 'adapter');
        return t1 - t0;
      },
      routed: async () => {
        const router = await full.next();
        const t0 = performance.now();
        const id = await router.delegateTaskToAgent(LEGACY_TASK);
        const status = await router.waitForTask(expectId(id, 'router 100%'));
        const t1 = performance.now();
        expectCompleted(status, 'router 100%');
        return t1 - t0;
      },
      direct: async () => {
        const t0 = performance.now();
        await legacy.delegateTaskToAgent(LEGACY_TASK);
        return performance.now() - t0;
      },
      fresh: async () => {
        const router = await fresh.next();
        const t0 = performance.now();
        await router.delegateTaskToAgent(LEGACY_TASK);
        return performance.now() - t0;
      },
      freshNoMetrics: async () => {
        const router = await freshNoMetrics.next();
        const t0 = performance.now();
        await router.delegateTaskToAgent(LEGACY_TASK);
        return performance.now() - t0;
      },
      steady: async () => {
        const t0 = performance.now();
        await steady.delegateTaskToAgent(LEGACY_TASK);
        return performance.now() - t0;
      },
    } satisfies Record<string, () => Promise<number>>;
    type CaseName = keyof typeof cases;
    const names = Object.keys(cases) as CaseName[];
    const singleCalls: ReadonlySet<CaseName> = new Set(['direct', 'fresh', 'freshNoMetrics', 'steady']);
    const samples = Object.fromEntries(names.map((n) => [n, [] as Float64Array[]])) as Record<CaseName, Float64Array[]>;
    for (let pass = 0; pass < passes; pass++) {
      for (const name of pass % 2 === 0 ? names : [...names].reverse()) {
        samples[name].push(
          await sampleLatency(`compat: ${name}`, cases[name], singleCalls.has(name) ? callLatency : latency),
        );
      }
      progress(`compat: pass ${pass + 1}/${passes} done`);
    }
    const stats = Object.fromEntries(names.map((n) => [n, summarise(concat(samples[n]))])) as Record<
      CaseName,
      LatencyStats
    >;

    // Every routed call went where it should.
    await Promise.all([fresh.close(), freshNoMetrics.close(), full.close()]);
    const steadyCalls = steady.stats().calls;
    const wrong =
      [fresh.calls, freshNoMetrics.calls, steadyCalls].some((c) => c.unified !== 0 || c.shadow !== 0) ||
      full.calls.legacy !== 0 ||
      full.calls.shadow !== 0;
    if (wrong)
      throw new Error(
        `compat: calls went to the wrong side (${JSON.stringify({ fresh: fresh.calls, freshNoMetrics: freshNoMetrics.calls, steady: steadyCalls, full: full.calls })})`,
      );

    const routing = await routingCost(settings.compat.routingKeys, settings.compat.routingRounds);
    const p50 = (n: CaseName): number => stats[n].p50Us;
    const passthrough = (n: CaseName): PassthroughCase => ({
      router: stats[n],
      addedUs: p50(n) - p50('direct'),
      ratio: p50(n) / p50('direct'),
    });
    return {
      agents: FLEET,
      passes,
      submit: stats.submit,
      adapter: {
        roundTrip: stats.adapter,
        ratio: p50('adapter') / p50('submit'),
        addedUs: p50('adapter') - p50('submit'),
      },
      adapterWindow: { maxFinishedTasks: MAX_FINISHED_TASKS, tasksBefore: ADAPTER_PREFILL },
      passthrough: {
        direct: stats.direct,
        fresh: passthrough('fresh'),
        freshNoMetrics: passthrough('freshNoMetrics'),
        steady: { ...passthrough('steady'), idsBefore: STEADY_IDS },
        maxOwnedIds: MAX_OWNED_IDS,
        freshLimit: FRESH_LIMIT,
      },
      routed: {
        roundTrip: stats.routed,
        ratio: p50('routed') / p50('adapter'),
        addedUs: p50('routed') - p50('adapter'),
      },
      routing,
    };
  } finally {
    await Promise.all([fresh.close(), freshNoMetrics.close(), full.close(), steady.close()]);
    adapter.close();
    await Promise.all([bare.stop(), served.stop()]);
  }
}

function concat(parts: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Distinct UUID-shaped keys (tenant or task ids), the same every run. */
function uuidKeys(count: number): string[] {
  const random = seededRandom(0xc0ffee);
  const hex = (digits: number): string => {
    let s = '';
    for (let i = 0; i < digits; i++) s += Math.floor(random() * 16).toString(16);
    return s;
  };
  const keys = new Set<string>();
  while (keys.size < count) keys.add(`${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`);
  // Flat strings, as ids parsed from a request are (the concatenations above are ropes until flattened).
  return JSON.parse(JSON.stringify([...keys])) as string[];
}

/**
 * ns per call of `sideOf` (a router at 50%, no orchestrator) and of `bucketOf`, each the median over `rounds` timed
 * passes over every key (one warm-up pass first). The running counts keep the calls from being optimised away.
 */
async function routingCost(keyCount: number, rounds: number): Promise<CompatResult['routing']> {
  const keys = uuidKeys(keyCount);
  const stub = trivialLegacy();
  const router = new TrafficRouter({ legacy: stub, unified: stub, percent: 50, metrics: false });
  let unified = 0;
  let sink = 0;
  const sideOfPass = (): void => {
    for (let i = 0; i < keys.length; i++) if (router.sideOf(keys[i]!) === 'unified') unified++;
  };
  const bucketOfPass = (): void => {
    for (let i = 0; i < keys.length; i++) sink += bucketOf(keys[i]!);
  };
  sideOfPass();
  bucketOfPass();
  const sideOfNs: number[] = [];
  const bucketOfNs: number[] = [];
  unified = 0;
  for (let r = 0; r < rounds; r++) {
    let t0 = performance.now();
    sideOfPass();
    sideOfNs.push(((performance.now() - t0) * 1e6) / keys.length);
    t0 = performance.now();
    bucketOfPass();
    bucketOfNs.push(((performance.now() - t0) * 1e6) / keys.length);
  }
  await router.close();
  if (sink < 0) throw new Error('unreachable'); // bucketOf is never negative: keeps `sink` live
  return {
    keys: keys.length,
    keyLength: keys[0]!.length,
    rounds,
    sideOfNs: median(sideOfNs),
    bucketOfNs: median(bucketOfNs),
    unifiedShare: unified / (rounds * keys.length),
  };
}
