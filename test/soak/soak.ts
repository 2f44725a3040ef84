/**
 * Soak test: a sustained mixed workload on one UnifiedOrchestrator for minutes, with the heap read after full GCs
 * every few seconds, a least-squares fit of heapUsed after the warm-up, a flat/growing verdict, the task invariant
 * (every accepted task ends exactly once; the counts add up) and a check that the process exits on its own after
 * `stop()`. Not part of `npm test`.
 *
 *   node --expose-gc --import tsx test/soak/soak.ts [--minutes 10] [--warmup <minutes>] [--sample-seconds 5]
 *        [--rate <tasks/s>] [--window 2000] [--seed <n>] [--json] [--snapshots <dir>]
 *
 * --minutes         length of the workload (default 10)
 * --warmup          minutes excluded from the fit (default a fifth of the run, at least 30 s)
 * --sample-seconds  GC + reading interval (default 5)
 * --rate            target arrival rate in tasks/s (default: as fast as the in-flight window allows)
 * --window          most harness operations in flight at once (default 2,000)
 * --seed            PRNG seed (default: time-based; always printed)
 * --json            one JSON object on stdout (per-sample lines go to stderr)
 * --snapshots <dir> write a heap snapshot at the first post-warm-up sample and at the last sample, for
 *                   `node --import tsx test/soak/heap-diff.ts a.heapsnapshot b.heapsnapshot` (slow: seconds each)
 *
 * The bounded stores (idempotency keys, affinity keys, the adapter's finished statuses: 10,000 each by default; dead
 * letters: 2,000 here; SLA windows: 60 s; per-tenant spend: the 10 s budget window) fill at a share of the arrival
 * rate. At the default saturating rate (8-12k tasks/s on 2 shared cores) they are full well within the default
 * warm-up; with a low --rate give the warm-up time to fill them, or their filling reads as growth.
 *
 * Exit status 0 when the heap is flat, the invariant holds and nothing keeps the event loop alive after stop();
 * 1 otherwise (set through process.exitCode: the process is meant to end by itself). 2 for bad arguments.
 */
import { wait } from '../support/agents.js';
import { seededRandom } from '../support/random.js';
import { mkdirSync, writeSync } from 'node:fs';
import os from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import {
  isLegacyError,
  isOrchestratorError,
  OrchestratorsCompatibilityAdapter,
  UnifiedOrchestrator,
  type Agent,
  type AgentFactoryContext,
  type GuardedFunction,
  type LegacyPriority,
  type LegacyTaskStatus,
  type Task,
  type TaskContext,
  type TaskHandle,
  type TaskOutcome,
} from 'unified-orchestrator';
import {
  analyseHeap,
  DEFAULT_RULE,
  describeRule,
  MB,
  seriesSlopePerMin,
  type HeapAnalysis,
  type Sample,
} from './analysis.js';

// Resources Node itself holds before anything of ours runs (stdio pipes, say): not counted as leftovers after stop.
const BASELINE_RESOURCES = process.getActiveResourcesInfo();

// --- Options --------------------------------------------------------------------------------------

interface Options {
  readonly minutes: number;
  readonly warmupSeconds: number;
  readonly sampleSeconds: number;
  readonly rate: number | undefined;
  readonly window: number;
  readonly seed: number;
  readonly json: boolean;
  readonly snapshots: string | undefined;
}

function parseOptions(): Options | string {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        minutes: { type: 'string', default: '10' },
        warmup: { type: 'string' },
        'sample-seconds': { type: 'string', default: '5' },
        rate: { type: 'string' },
        window: { type: 'string', default: '2000' },
        seed: { type: 'string' },
        json: { type: 'boolean', default: false },
        snapshots: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  const num = (name: string, raw: string | undefined, min: number): number | string => {
    const v = Number(raw);
    return raw !== undefined && Number.isFinite(v) && v >= min
      ? v
      : `Expected --${name} to be a number >= ${min}, got ${JSON.stringify(raw)}`;
  };
  const minutes = num('minutes', values.minutes, 0.1);
  if (typeof minutes === 'string') return minutes;
  const sampleSeconds = num('sample-seconds', values['sample-seconds'], 0.5);
  if (typeof sampleSeconds === 'string') return sampleSeconds;
  let warmupSeconds = Math.max(30, (minutes * 60) / 5);
  if (values.warmup !== undefined) {
    const w = num('warmup', values.warmup, 0);
    if (typeof w === 'string') return w;
    warmupSeconds = w * 60;
  }
  if (warmupSeconds >= minutes * 60)
    return `--warmup (${warmupSeconds / 60} min) must be shorter than --minutes (${minutes})`;
  let rate: number | undefined;
  if (values.rate !== undefined) {
    const r = num('rate', values.rate, 1);
    if (typeof r === 'string') return r;
    rate = r;
  }
  const window = num('window', values.window, 1);
  if (typeof window === 'string') return window;
  let seed = (Date.now() ^ (process.pid << 16)) >>> 0;
  if (values.seed !== undefined) {
    const s = num('seed', values.seed, 0);
    if (typeof s === 'string') return s;
    seed = Math.floor(s) >>> 0;
  }
  return {
    minutes,
    warmupSeconds,
    sampleSeconds,
    rate,
    window: Math.floor(window),
    seed,
    json: values.json ?? false,
    snapshots: values.snapshots,
  };
}

// --- Small helpers ------------------------------------------------------------------------------

const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const mb = (bytes: number, digits = 2): string => `${(bytes / MB).toFixed(digits)} MB`;
const codeOf = (error: unknown): string => {
  if (isOrchestratorError(error)) return error.code;
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : 'unknown';
};
const bump = (m: Map<string, number>, k: string, by = 1): void => void m.set(k, (m.get(k) ?? 0) + by);

// --- The workload's shape -------------------------------------------------------------------------

/** What an agent does with a task; chosen at submit time from the seeded PRNG. */
type Mode = 'ok' | 'throw' | 'fatal' | 'flaky' | 'stall' | 'late' | 'retry-after';

interface Payload {
  readonly n: number;
  readonly mode: Mode;
  /** Work time (ms); for `stall` and `late`, well past the attempt's timeout. */
  readonly ms: number;
  /** Units reported with ctx.reportCost. */
  readonly cost: number;
  /** 1: call the search-api breaker (it has a fallback); 2: the vector-db breaker (no fallback). */
  readonly dep: 0 | 1 | 2;
}

interface Kind {
  readonly type: string;
  readonly requires: readonly string[];
  readonly prefers?: readonly string[];
  readonly weight: number;
  readonly cost: readonly [number, number];
  readonly dep?: 1 | 2;
  /** Retry-after errors (a vendor pacing us) are possible: only on the rate-limited capability. */
  readonly paced?: boolean;
}

const KINDS: readonly Kind[] = [
  { type: 'web-search', requires: ['search'], prefers: ['summarise'], weight: 13, cost: [1, 10] },
  { type: 'summarise', requires: ['summarise'], weight: 9, cost: [5, 30] },
  { type: 'implement', requires: ['code'], prefers: ['typescript'], weight: 13, cost: [1, 10], dep: 2 },
  { type: 'fix-bug', requires: ['code'], weight: 9, cost: [1, 10] },
  { type: 'port-to-ts', requires: ['code', 'typescript'], weight: 7, cost: [1, 10] },
  { type: 'review', requires: ['review'], weight: 6, cost: [1, 5] },
  { type: 'review-code', requires: ['review', 'code'], prefers: ['typescript'], weight: 6, cost: [1, 5] },
  { type: 'complete', requires: ['llm'], weight: 6, cost: [50, 500], paced: true },
  { type: 'scrape', requires: ['scrape'], weight: 4, cost: [1, 3] },
  { type: 'lookup', requires: ['search'], weight: 8, cost: [1, 5], dep: 1 },
  { type: 'anything', requires: [], weight: 4, cost: [0, 2] },
  { type: 'translate', requires: ['translate'], weight: 1, cost: [1, 5] },
];
const KIND_TOTAL = KINDS.reduce((a, k) => a + k.weight, 0);

const POOLS = [
  { role: 'researcher', capabilities: ['search', 'summarise'], minAgents: 4, maxAgents: 16, concurrency: 2 },
  { role: 'coder', capabilities: ['code', 'typescript'], minAgents: 4, maxAgents: 16, concurrency: 4 },
  { role: 'reviewer', capabilities: ['review', 'code'], minAgents: 2, maxAgents: 16, concurrency: 2 },
  { role: 'writer', capabilities: ['llm', 'summarise', 'text'], minAgents: 3, maxAgents: 10, concurrency: 4 },
  // Little demand of its own: the pool spawnAgent churn mostly works on (the busy pools sit at maxAgents).
  { role: 'translator', capabilities: ['translate'], minAgents: 1, maxAgents: 40, concurrency: 2 },
] as const;
const ROLES = POOLS.map((p) => p.role);
/** Roles the adapter's legacy tasks name. */
const LEGACY_ROLES = ['researcher', 'coder', 'reviewer', 'writer'] as const;

/** Named tenants (two with budgets, one whose budget changes at runtime), and many short-lived ones (`user-*`). */
const TENANTS: ReadonlyArray<readonly [string | undefined, number]> = [
  ['acme', 0.22],
  ['globex', 0.13],
  ['initech', 0.2],
  ['umbrella', 0.1],
  ['user-*', 0.05],
  [undefined, 0.3],
];
/** Distinct `user-*` tenants, cycled through: every per-tenant structure must stay bounded. */
const USER_TENANTS = 20_000;
const LEGACY_PRIORITY_NAMES: readonly LegacyPriority[] = ['low', 'normal', 'normal', 'high', 'critical'];

/** Shares of the traffic (fractions of launches, or of tasks). */
const SHARE = {
  adapter: 0.1,
  adhocType: 0.01, // one of 300 task types: past the metrics' and SLA windows' type bounds
  ghost: 0.01, // requires a capability no agent has: refused with NO_CAPABLE_AGENT (ad-hoc requirement classes)
  idempotent: 0.08,
  idempotentRepeat: 0.25, // of the idempotent ones: a resubmission of a recent key
  affinity: 0.1,
  cancelHandle: 0.012,
  cancelById: 0.005,
  cancelSignal: 0.005,
  modeThrow: 0.025,
  modeFatal: 0.004, // retryable: false → dead-lettered at once (with maxAttempts > 1)
  modeFlaky: 0.03,
  modeStall: 0.01,
  modeLate: 0.003,
  pacedRetryAfter: 0.005, // of `complete` tasks
} as const;

/** Schedules (seconds). */
const EVERY = {
  halt: 60,
  haltFor: 2,
  hang: 90, // one pool agent ignores its signal for HANG_MS: stuck detection disposes it
  searchOutage: 40,
  searchOutageFor: 6,
  vectorOutage: 55,
  vectorOutageFor: 5,
  scraperSick: 60,
  scraperSickFor: 20,
  budgetToggle: 30,
} as const;
const HANG_MS = 40_000;
/** The dead-letter list's bound (the default is 10,000): small enough to fill up within any warm-up. */
const MAX_DEAD_LETTERS = 2_000;
/** Distinct capabilities no agent holds, cycled through by the refused tasks. */
const GHOSTS = 3_000;
const FLAKY_FAILURE = 0.6;

/** Switches the schedule flips and the agents read. */
const control = { hangArmed: false, hangs: 0, searchOutage: false, vectorOutage: false, scraperSick: false };

/** Dependencies guarded by `resources.breaker`; set after start (agents made before then find them here). */
const deps: { search?: GuardedFunction<[number], number[]>; vector?: GuardedFunction<[number], number> } = {};

/** An agent of the soak: waits, fails, stalls or ignores its signal as its task's payload says. */
class SimAgent implements Agent<Payload, string> {
  readonly #kind: 'pool' | 'outside' | 'flaky';
  readonly #sickAfterMs: number;
  readonly #bornAt = performance.now();
  readonly #random: () => number;
  /** Waits that ignore the abort signal, released (rejected) by dispose(). */
  readonly #deaf = new Map<NodeJS.Timeout, (error: Error) => void>();
  #disposed = false;

  constructor(kind: 'pool' | 'outside' | 'flaky', random: () => number, sickAfterMs = Infinity) {
    this.#kind = kind;
    this.#random = random;
    this.#sickAfterMs = sickAfterMs;
  }

  async execute(ctx: TaskContext<Payload>): Promise<string> {
    const p = ctx.payload;
    if (this.#kind === 'pool' && control.hangArmed) {
      control.hangArmed = false;
      control.hangs++;
      await this.#deafWait(HANG_MS);
    }
    if (p.mode === 'late') await this.#deafWait(p.ms);
    else if (p.ms === 0) await immediate();
    else await wait(p.ms, ctx.signal);
    if (p.dep === 1 && deps.search) await deps.search(p.n);
    if (p.dep === 2 && deps.vector) await deps.vector(p.n);
    if (p.cost > 0) ctx.reportCost(p.cost);
    if (this.#kind === 'flaky' && this.#random() < FLAKY_FAILURE)
      throw new Error(`${ctx.agentId}: flaky outside agent failed`);
    switch (p.mode) {
      case 'throw':
        throw new Error(`${ctx.agentId}: simulated failure of task ${p.n}`);
      case 'fatal':
        throw Object.assign(new Error(`${ctx.agentId}: task ${p.n} can never succeed`), { retryable: false });
      case 'flaky':
        if (this.#random() < FLAKY_FAILURE) throw new Error(`${ctx.agentId}: flaky task ${p.n} failed`);
        break;
      case 'retry-after':
        if (ctx.attempt === 1)
          throw Object.assign(new Error('429 Too Many Requests'), { retryAfterMs: 20 + (p.n % 60) });
        break;
      default:
        break;
    }
    return 'ok';
  }

  healthCheck(): boolean {
    if (this.#kind === 'flaky') return !control.scraperSick;
    return performance.now() - this.#bornAt < this.#sickAfterMs;
  }

  dispose(): void {
    this.#disposed = true;
    for (const [timer, reject] of this.#deaf) {
      clearTimeout(timer);
      reject(new Error('agent disposed'));
    }
    this.#deaf.clear();
  }

  /** Waits `ms` whatever the signal says (an agent that does not honour its abort). */
  #deafWait(ms: number): Promise<void> {
    if (this.#disposed) return Promise.reject(new Error('agent disposed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#deaf.delete(timer);
        resolve();
      }, ms);
      this.#deaf.set(timer, reject);
    });
  }
}

// --- Run state ------------------------------------------------------------------------------------

type EntryKind = 'direct' | 'adapter' | 'dlq-retry';

/** An accepted task the harness waits for: its terminal event, then its result (or the adapter's final status). */
interface Entry {
  readonly kind: EntryKind;
  outcome: TaskOutcome | undefined;
}

interface Counters {
  launched: number;
  refused: Map<string, number>;
  accepted: Record<EntryKind, number>;
  deduplicated: number;
  resultsFulfilled: number;
  resultsRejected: number;
  followersSettled: number;
  terminalEvents: Record<TaskOutcome, number>;
  legacyStatuses: Map<string, number>;
  cancelRequests: number;
  cancelAccepted: number;
  events: Map<string, number>;
  ops: Map<string, number>;
  opErrors: Map<string, number>;
  skippedByWindow: number;
}

const OUTCOMES: readonly TaskOutcome[] = ['completed', 'failed', 'timed-out', 'cancelled', 'dead-lettered'];

async function main(): Promise<number> {
  const parsed = parseOptions();
  if (typeof parsed === 'string') {
    process.stderr.write(`soak: ${parsed}\n`);
    return 2;
  }
  const opt = parsed;
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    process.stderr.write('soak: run with --expose-gc (node --expose-gc --import tsx test/soak/soak.ts)\n');
    return 2;
  }
  const out = (line: string): void => {
    if (opt.json) process.stderr.write(`${line}\n`);
    else process.stdout.write(`${line}\n`);
  };

  const rnd = seededRandom(opt.seed);
  const agentRnd = seededRandom(opt.seed ^ 0x9e3779b9);
  const randInt = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const loadAtStart = os.loadavg();

  out(
    `soak: seed ${opt.seed}, ${opt.minutes} min, warm-up ${opt.warmupSeconds} s, sample every ${opt.sampleSeconds} s, ` +
      `${opt.rate === undefined ? `as fast as ${fmt(opt.window)} in flight allow` : `${fmt(opt.rate)} tasks/s (at most ${fmt(opt.window)} in flight)`}; ` +
      `Node ${process.version}, ${os.cpus().length} cores, load ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}`,
  );

  // --- The orchestrator ---------------------------------------------------------------------------

  const c: Counters = {
    launched: 0,
    refused: new Map(),
    accepted: { direct: 0, adapter: 0, 'dlq-retry': 0 },
    deduplicated: 0,
    resultsFulfilled: 0,
    resultsRejected: 0,
    followersSettled: 0,
    terminalEvents: { completed: 0, failed: 0, 'timed-out': 0, cancelled: 0, 'dead-lettered': 0 },
    legacyStatuses: new Map(),
    cancelRequests: 0,
    cancelAccepted: 0,
    events: new Map(),
    ops: new Map(),
    opErrors: new Map(),
    skippedByWindow: 0,
  };
  const violations: string[] = [];
  let violationCount = 0;
  const violation = (message: string): void => {
    violationCount++;
    if (violations.length < 50) violations.push(message);
  };

  let poolAgentsMade = 0;
  const create = async ({ signal }: AgentFactoryContext): Promise<Agent> => {
    await wait(2 + Math.floor(agentRnd() * 8), signal);
    if (agentRnd() < 0.01) throw new Error('simulated factory failure');
    poolAgentsMade++;
    // A few agents turn sick after a while: their health check fails and the monitor replaces them.
    return new SimAgent('pool', agentRnd, agentRnd() < 0.03 ? 20_000 + agentRnd() * 20_000 : Infinity);
  };

  const orchestrator = new UnifiedOrchestrator({
    pools: POOLS.map((p) => ({ ...p, capabilities: [...p.capabilities], create, idleTimeoutMs: 15_000 })),
    defaultTimeoutMs: 250,
    retry: { baseDelayMs: 5, maxDelayMs: 100 },
    // Defaults on: agent breakers, metrics, health checks. Pressure sampling on, with limits no run here reaches.
    pressure: { memoryLimitBytes: 64 * 1024 ** 3, cpuLimitPercent: 100_000 },
    budgets: { windowMs: 10_000, limits: { acme: 1_000_000, globex: 150_000 } },
    rateLimits: { llm: { requests: 1_000, units: 250_000, intervalMs: 1_000 } },
    // Bounded stores sized so that they fill up within the warm-up: after it they must stay flat.
    maxDeadLetters: MAX_DEAD_LETTERS,
    health: { sla: { default: { p99Ms: 1_500, errorRate: 0.3 }, types: { complete: { p95Ms: 2_000 } } } },
  });
  const adapter = new OrchestratorsCompatibilityAdapter(orchestrator);

  const pending = new Map<string, Entry>();
  /** Terminal events for ids the harness had not registered yet (or twice): must be empty at the end. */
  const orphans = new Map<string, TaskOutcome>();

  const onTerminal = (taskId: string, outcome: TaskOutcome): void => {
    c.terminalEvents[outcome]++;
    const entry = pending.get(taskId);
    if (!entry) {
      if (orphans.has(taskId))
        violation(`task ${taskId}: a second terminal event (${orphans.get(taskId)} then ${outcome})`);
      orphans.set(taskId, outcome);
      return;
    }
    if (entry.outcome !== undefined) {
      violation(`task ${taskId}: a second terminal event (${entry.outcome} then ${outcome})`);
      return;
    }
    entry.outcome = outcome;
  };
  orchestrator.on('task:completed', (e) => onTerminal(e.taskId, 'completed'));
  orchestrator.on('task:failed', (e) => onTerminal(e.taskId, e.outcome));
  for (const name of [
    'task:retrying',
    'halted',
    'resumed',
    'pool:scaled',
    'pool:create-failed',
    'agent:error',
    'pressure:changed',
    'pressure:sample-failed',
    'budget:exceeded',
    'ratelimit:paused',
    'ratelimit:resumed',
    'agent:recovered',
    'pool:recovery-exhausted',
    'sla:violation',
    'sla:recovered',
    'listener:error',
  ] as const) {
    orchestrator.on(name, () => bump(c.events, name));
  }
  orchestrator.on('agent:replaced', (e) => bump(c.events, `agent:replaced(${e.reason})`));
  orchestrator.on('agent:unhealthy', (e) => bump(c.events, `agent:unhealthy(${e.reason})`));
  // Why a pressure sample failed (the level stays as it was): kept for the report, a few distinct messages at most.
  const sampleFailures = new Map<string, number>();
  orchestrator.on('pressure:sample-failed', (e) => {
    const message = e.error instanceof Error ? e.error.message : String(e.error);
    if (sampleFailures.size < 5 || sampleFailures.has(message)) bump(sampleFailures, message);
  });
  orchestrator.on('breaker:state', (e) =>
    bump(c.events, `breaker:${e.agentId === undefined ? e.breaker : 'agent'}->${e.to}`),
  );

  /** Registers an accepted task; a terminal event that came first is matched here. */
  const register = (id: string, kind: EntryKind): Entry => {
    if (pending.has(id)) violation(`task ${id}: the same id accepted twice`);
    const entry: Entry = { kind, outcome: orphans.get(id) };
    if (entry.outcome !== undefined) orphans.delete(id);
    pending.set(id, entry);
    c.accepted[kind]++;
    return entry;
  };
  /** The task's result settled (or the adapter answered its final status). */
  const settle = (id: string, ok: boolean, detail?: string): void => {
    const entry = pending.get(id);
    if (!entry) {
      violation(`task ${id}: settled but not pending`);
      return;
    }
    pending.delete(id);
    if (entry.outcome === undefined) violation(`task ${id} (${entry.kind}): result settled before any terminal event`);
    else if ((entry.outcome === 'completed') !== ok)
      violation(
        `task ${id} (${entry.kind}): result ${ok ? 'fulfilled' : 'rejected'} but the event said ${entry.outcome}${detail ? ` (${detail})` : ''}`,
      );
  };

  // --- In-flight window and launching -------------------------------------------------------------

  let inFlight = 0;
  let stopping = false;
  let pumpScheduled = false;
  const cancelTimers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void): void => {
    const timer = setTimeout(() => {
      cancelTimers.delete(timer);
      fn();
    }, ms);
    cancelTimers.add(timer);
  };
  const opDone = (): void => {
    inFlight--;
    if (opt.rate === undefined) schedulePump();
  }; /** Registers a direct task and checks its result against its terminal event when it settles. */
  const follow = (handle: TaskHandle<unknown>, kind: EntryKind): void => {
    const id = handle.id;
    register(id, kind);
    handle.result.then(
      () => {
        c.resultsFulfilled++;
        settle(id, true);
        opDone();
      },
      (error: unknown) => {
        c.resultsRejected++;
        settle(id, false, codeOf(error));
        opDone();
      },
    );
  };

  /** Recent idempotency keys with the id of the task first accepted under each: resubmissions must get that id. */
  const recentKeys: Array<{ readonly key: string; id: string } | undefined> = new Array(256);
  let keySeq = 0;
  let taskSeq = 0;
  let ghostSeq = 0;
  let userSeq = 0;

  const pickTenant = (): string | undefined => {
    let r = rnd();
    for (const [tenant, share] of TENANTS) {
      if ((r -= share) < 0) return tenant === 'user-*' ? `user-${userSeq++ % USER_TENANTS}` : tenant;
    }
    return undefined;
  };
  const pickKind = (): Kind => {
    let r = rnd() * KIND_TOTAL;
    for (const k of KINDS) if ((r -= k.weight) < 0) return k;
    return KINDS[0]!;
  };
  const payloadFor = (kind: Kind, timeoutMs: number): { payload: Payload; maxAttempts: number } => {
    const n = ++taskSeq;
    const r = rnd();
    let mode: Mode = 'ok';
    let edge = SHARE.modeThrow;
    if (r < edge) mode = 'throw';
    else if (r < (edge += SHARE.modeFatal)) mode = 'fatal';
    else if (r < (edge += SHARE.modeFlaky)) mode = 'flaky';
    else if (r < (edge += SHARE.modeStall)) mode = 'stall';
    else if (r < (edge += SHARE.modeLate)) mode = 'late';
    else if (kind.paced && r < edge + SHARE.pacedRetryAfter) mode = 'retry-after';
    const w = rnd();
    let ms = w < 0.4 ? 0 : w < 0.9 ? randInt(1, 3) : randInt(5, 20);
    if (mode === 'stall') ms = timeoutMs * 10;
    if (mode === 'late') ms = timeoutMs + randInt(50, 150);
    const cost = randInt(kind.cost[0], kind.cost[1]);
    const dep = kind.dep !== undefined && rnd() < 0.5 ? kind.dep : 0;
    const a = rnd();
    const maxAttempts = mode === 'flaky' ? 3 : a < 0.5 ? 1 : a < 0.7 ? 2 : 3;
    return { payload: { n, mode, ms, cost, dep }, maxAttempts };
  };

  /** Cancels some tasks a little later: by handle, by id, or through their caller's signal. */
  const maybeCancel = (id: string, handle: TaskHandle | undefined, controller: AbortController | undefined): void => {
    if (controller) {
      c.cancelRequests++;
      later(randInt(0, 30), () => controller.abort(new Error('soak: caller aborted')));
      return;
    }
    const r = rnd();
    if (handle && r < SHARE.cancelHandle) {
      c.cancelRequests++;
      later(randInt(0, 30), () => void (handle.cancel('soak: caller lost interest') && c.cancelAccepted++));
    } else if (r < SHARE.cancelHandle + SHARE.cancelById) {
      c.cancelRequests++;
      later(randInt(0, 30), () => void (orchestrator.cancel(id, 'soak: cancelled by id') && c.cancelAccepted++));
    }
  };

  const launchDirect = (): boolean => {
    const kind = rnd() < SHARE.ghost ? undefined : pickKind();
    const timeoutMs = randInt(100, 300);
    const base = kind ?? KINDS[0]!;
    const { payload, maxAttempts } = payloadFor(base, timeoutMs);
    const task: Task<Payload> = {
      type: kind === undefined ? 'ghost' : rnd() < SHARE.adhocType ? `adhoc-${randInt(0, 299)}` : base.type,
      // Names cycle through GHOSTS: past the engine's 1,024 requirement classes (swept), and all seen within the warm-up.
      requires: kind === undefined ? [`ghost-${ghostSeq++ % GHOSTS}`] : base.requires,
      priority: rnd() < 0.05 ? 50 : randInt(-5, 10),
      payload,
      timeoutMs,
      maxAttempts,
    };
    if (base.prefers) task.prefers = base.prefers;
    const tenant = pickTenant();
    if (tenant !== undefined) task.tenantId = tenant;
    if (rnd() < SHARE.affinity) task.affinityKey = `aff-${randInt(0, 49_999)}`;
    let repeatOf: { readonly key: string; id: string } | undefined;
    let newKeySlot = -1;
    if (rnd() < SHARE.idempotent) {
      if (rnd() < SHARE.idempotentRepeat) repeatOf = recentKeys[randInt(0, recentKeys.length - 1)];
      if (repeatOf) task.idempotencyKey = repeatOf.key;
      else {
        newKeySlot = keySeq % recentKeys.length;
        task.idempotencyKey = `idem-${opt.seed}-${keySeq++}`;
      }
    }
    let controller: AbortController | undefined;
    if (rnd() < SHARE.cancelSignal) {
      controller = new AbortController();
      task.signal = controller.signal;
    }
    c.launched++;
    let handle: TaskHandle<string>;
    try {
      handle = orchestrator.delegate<string>(task);
    } catch (error) {
      bump(c.refused, codeOf(error));
      return false;
    }
    inFlight++;
    if (repeatOf && (handle.id === repeatOf.id || pending.has(handle.id))) {
      // A duplicate: it follows the first task (running, or its result kept for the TTL); no new task.
      c.deduplicated++;
      handle.result.then(
        () => void (c.followersSettled++, opDone()),
        () => void (c.followersSettled++, opDone()),
      );
      return true;
    }
    if (newKeySlot >= 0) recentKeys[newKeySlot] = { key: task.idempotencyKey!, id: handle.id };
    else if (repeatOf) repeatOf.id = handle.id; // the first one failed (or was forgotten): this one now holds the key
    follow(handle, 'direct');
    maybeCancel(handle.id, handle, controller);
    return true;
  };

  const launchAdapter = (): boolean => {
    const role = LEGACY_ROLES[randInt(0, LEGACY_ROLES.length - 1)]!;
    const timeoutMs = randInt(100, 300);
    const kind =
      role === 'writer' ? KINDS.find((k) => k.type === 'complete')! : role === 'coder' ? KINDS[2]! : KINDS[0]!;
    const { payload, maxAttempts } = payloadFor(kind, timeoutMs);
    const tenant = pickTenant();
    c.launched++;
    inFlight++;
    const answer = adapter.delegateTaskToAgent({
      role,
      type: `legacy-${role}`,
      payload,
      priority: LEGACY_PRIORITY_NAMES[randInt(0, LEGACY_PRIORITY_NAMES.length - 1)]!,
      timeout: timeoutMs / 1_000,
      max_retries: maxAttempts - 1,
      ...(tenant !== undefined ? { tenant_id: tenant } : {}),
    });
    const wantsCancel = rnd() < SHARE.cancelById;
    answer.then(
      (idOrError) => {
        if (isLegacyError(idOrError)) {
          bump(c.refused, `legacy:${idOrError.error.code}`);
          opDone();
          return;
        }
        const id = idOrError;
        register(id, 'adapter');
        if (wantsCancel) maybeCancel(id, undefined, undefined);
        adapter.waitForTask(id).then(
          (status) => {
            if (isLegacyError(status)) {
              violation(`adapter task ${id}: waitForTask answered ${status.error.code}`);
              pending.delete(id);
            } else {
              checkLegacy(id, status);
            }
            opDone();
          },
          (error: unknown) => {
            violation(`adapter task ${id}: waitForTask threw ${String(error)}`);
            pending.delete(id);
            opDone();
          },
        );
      },
      (error: unknown) => {
        violation(`adapter delegateTaskToAgent threw ${String(error)}`);
        opDone();
      },
    );
    return true;
  };

  const LEGACY_FOR: Record<TaskOutcome, ReadonlyArray<LegacyTaskStatus['status']>> = {
    completed: ['completed'],
    failed: ['failed'],
    'dead-lettered': ['failed'],
    'timed-out': ['timeout'],
    cancelled: ['cancelled'],
  };
  const checkLegacy = (id: string, status: LegacyTaskStatus): void => {
    bump(c.legacyStatuses, status.status);
    const entry = pending.get(id);
    if (entry?.outcome !== undefined && !LEGACY_FOR[entry.outcome].includes(status.status)) {
      violation(`adapter task ${id}: legacy status ${status.status} but the event said ${entry.outcome}`);
    }
    settle(id, status.status === 'completed', `legacy ${status.status}`);
  };

  const launchOne = (): boolean => (rnd() < SHARE.adapter ? launchAdapter() : launchDirect());

  const schedulePump = (): void => {
    if (pumpScheduled || stopping) return;
    pumpScheduled = true;
    setImmediate(pump);
  };
  function pump(): void {
    pumpScheduled = false;
    let n = 0;
    while (!stopping && inFlight < opt.window && n < 256) {
      launchOne();
      n++;
    }
    if (!stopping && inFlight < opt.window) schedulePump();
  }
  // With --rate: arrivals on a clock; those that find the window full are skipped (and counted).
  let rateTimer: NodeJS.Timeout | undefined;
  const startRate = (rate: number): void => {
    let last = performance.now();
    let tokens = 0;
    rateTimer = setInterval(() => {
      const now = performance.now();
      // A loop stalled for long (a GC, a snapshot) does not release its backlog of arrivals in one burst.
      tokens = Math.min(tokens + ((now - last) / 1_000) * rate, Math.max(1, rate / 10));
      last = now;
      while (tokens >= 1 && !stopping) {
        tokens--;
        if (inFlight >= opt.window) c.skippedByWindow++;
        else launchOne();
      }
    }, 10);
  };

  // --- Background operations: churn, scrapes, halts, outages -----------------------------------------

  const ops = new Set<Promise<unknown>>();
  const op = (name: string, run: () => unknown): void => {
    bump(c.ops, name);
    let p: Promise<unknown>;
    try {
      p = Promise.resolve(run());
    } catch (error) {
      p = Promise.reject(error);
    }
    const tracked = p.then(
      () => {},
      (error: unknown) => bump(c.opErrors, `${name}:${codeOf(error)}`),
    );
    ops.add(tracked);
    void tracked.finally(() => ops.delete(tracked));
  };

  const spawned: string[] = [];
  const temps: string[] = [];
  let tempSeq = 0;
  let metricsBytes = 0;
  let haltedNow = false;
  const healthStatuses = new Map<string, number>();

  const tick = (second: number, remaining: number): void => {
    // spawnAgent / unregisterAgent churn, half of it through the adapter's legacy calls.
    if (rnd() < 0.7) {
      const role = rnd() < 0.7 ? 'translator' : ROLES[randInt(0, ROLES.length - 1)]!;
      if (rnd() < 0.5) {
        op('spawnAgent', async () => spawned.push(await orchestrator.spawnAgent(role)));
      } else {
        op('adapter.spawnAgent', async () => {
          const id = await adapter.spawnAgent(role);
          if (isLegacyError(id)) throw Object.assign(new Error(id.error.message), { code: `legacy:${id.error.code}` });
          spawned.push(id);
        });
      }
    }
    while (spawned.length > 4) {
      const id = spawned.shift()!;
      if (rnd() < 0.5) op('unregisterAgent', () => orchestrator.unregisterAgent(id));
      else {
        op('adapter.shutdownAgent', async () => {
          const r = await adapter.shutdownAgent(id);
          if (isLegacyError(r)) throw Object.assign(new Error(r.error.message), { code: `legacy:${r.error.code}` });
        });
      }
    }
    // Listeners come and go too (a `once` that fires, an `on` removed with `off`).
    const listener = (): void => {};
    orchestrator.once('task:completed', () => bump(c.ops, 'once fired'));
    orchestrator.on('task:retrying', listener);
    later(500, () => orchestrator.off('task:retrying', listener));
    // Outside agents with new ids come and go.
    if (second % 3 === 0) {
      op('registerAgent', () => {
        temps.push(
          orchestrator.registerAgent(new SimAgent('outside', agentRnd), {
            id: `temp-${++tempSeq}`,
            capabilities: ['search', 'scrape'],
            concurrency: 2,
          }),
        );
      });
      while (temps.length > 2) {
        const id = temps.shift()!;
        op('unregisterAgent(outside)', () => orchestrator.unregisterAgent(id));
      }
    }
    // Scrapes.
    if (second % 2 === 0) {
      op('metrics', async () => {
        metricsBytes = (await orchestrator.metrics())?.body.length ?? 0;
      });
      op('health', () => {
        const h = orchestrator.health();
        bump(healthStatuses, h.status);
        for (const [name, component] of Object.entries(h.components)) {
          if (name === 'pools') {
            for (const [role, p] of Object.entries(component as Record<string, { status: string }>))
              if (p.status !== 'healthy') bump(healthStatuses, `pool ${role} ${p.status}`);
          } else if ((component as { status: string }).status !== 'healthy')
            bump(healthStatuses, `${name} ${(component as { status: string }).status}`);
        }
      });
      const agents = orchestrator.agents();
      const someone = agents[randInt(0, Math.max(0, agents.length - 1))];
      if (someone) op('adapter.getAgentStatus', () => adapter.getAgentStatus(someone.id));
      // Dead letters: resubmit a few of the oldest.
      op('retryDeadLetter', () => {
        const letters = orchestrator.deadLetters();
        for (const letter of letters.slice(0, 5)) {
          let handle: TaskHandle;
          try {
            handle = orchestrator.retryDeadLetter(letter.taskId);
          } catch (error) {
            bump(c.refused, `dlq:${codeOf(error)}`);
            continue;
          }
          inFlight++;
          follow(handle, 'dlq-retry');
        }
      });
    }
    if (second % 10 === 0) {
      op('cluster', () => orchestrator.cluster());
      op('deadLetters(tenant)', () => orchestrator.deadLetters('acme').length);
    }
    if (second % 15 === 0) op('checkHealth', () => orchestrator.checkHealth());
    // Halt and resume, every minute or so.
    if (second % EVERY.halt === EVERY.halt / 2 && remaining > EVERY.haltFor + 5) {
      haltedNow = true;
      op('halt', () => orchestrator.halt('soak: periodic halt'));
    }
    if (haltedNow && second % EVERY.halt === EVERY.halt / 2 + EVERY.haltFor) {
      haltedNow = false;
      op('resume', () => orchestrator.resume());
    }
    // Outages of the guarded dependencies, a sick outside agent, a hung pool agent, a budget changed at runtime.
    control.searchOutage = second % EVERY.searchOutage >= EVERY.searchOutage - EVERY.searchOutageFor;
    control.vectorOutage = second % EVERY.vectorOutage >= EVERY.vectorOutage - EVERY.vectorOutageFor;
    control.scraperSick = second % EVERY.scraperSick >= EVERY.scraperSick - EVERY.scraperSickFor;
    if (second % EVERY.hang === 20 && remaining > HANG_MS / 1_000 + 10) control.hangArmed = true;
    if (second % EVERY.budgetToggle === 0) {
      op('setBudget', () =>
        orchestrator.resources.setBudget('umbrella', (second / EVERY.budgetToggle) % 2 === 0 ? 50_000 : undefined),
      );
      op('spend', () => orchestrator.resources.spend('globex'));
    }
  };

  // --- Sampling -----------------------------------------------------------------------------------

  const samples: Sample[] = [];
  const terminalSoFar = (): number => OUTCOMES.reduce((a, o) => a + c.terminalEvents[o], 0);
  let statsChecks = 0;
  const checkStats = (where: string): void => {
    const s = orchestrator.stats();
    const accounted =
      s.rejected +
      s.deduplicated +
      s.completed +
      s.failed +
      s.cancelled +
      s.timedOut +
      s.deadLettered +
      s.waiting +
      s.running +
      s.backingOff;
    statsChecks++;
    if (accounted !== s.submitted)
      violation(`${where}: stats() does not add up: submitted ${s.submitted} vs ${accounted} accounted for`);
  };
  const snapshots: string[] = [];
  const snapshot = (label: string): void => {
    if (!opt.snapshots) return;
    const dir = resolvePath(opt.snapshots);
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `soak-${opt.seed}-${label}.heapsnapshot`);
    const t = performance.now();
    v8.writeHeapSnapshot(file);
    snapshots.push(file);
    out(`           heap snapshot ${file} (${((performance.now() - t) / 1_000).toFixed(1)} s)`);
  };

  let t0 = 0;
  const takeSample = async (): Promise<Sample> => {
    const g0 = performance.now();
    // A few rounds: finalizers and weak references released by one GC free more in the next. The last GC and the
    // reading are one synchronous step, so the workload allocates nothing in between.
    for (let i = 0; i < 2; i++) {
      gc();
      await immediate();
    }
    gc();
    const m = process.memoryUsage();
    const gcMs = performance.now() - g0;
    const s = orchestrator.stats();
    const t = (g0 - t0) / 1_000;
    const prev = samples[samples.length - 1];
    const terminal = terminalSoFar();
    const sample: Sample = {
      t,
      warmup: t <= opt.warmupSeconds,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      rss: m.rss,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      terminal,
      completed: c.terminalEvents.completed,
      throughput: (terminal - (prev?.terminal ?? 0)) / (t - (prev?.t ?? 0)),
      inFlight,
      waiting: s.waiting,
      running: s.running,
      backingOff: s.backingOff,
      tracked: s.resources.tracked,
      deadLetters: s.deadLetters,
      routingCacheSize: s.routingCache.size,
      agents: Object.values(s.agents).reduce((a, b) => a + b, 0),
      halted: s.halted !== null,
      gcMs,
    };
    checkStats(`sample at ${t.toFixed(0)} s`);
    samples.push(sample);
    out(
      `[${t.toFixed(0).padStart(4)}s] heap ${mb(sample.heapUsed).padStart(9)}  rss ${mb(sample.rss, 1).padStart(8)}  ext ${mb(sample.external).padStart(8)} | ` +
        `done ${fmt(terminal).padStart(10)} (ok ${fmt(sample.completed)}) ${fmt(sample.throughput).padStart(6)}/s | ` +
        `inflight ${fmt(inFlight)} wait ${fmt(s.waiting)}${biggestQueue(s.queues)} run ${s.running} backoff ${s.backingOff} | ` +
        `tracked ${sample.tracked} dead ${fmt(sample.deadLetters)} agents ${sample.agents} | gc ${gcMs.toFixed(0)} ms` +
        `${sample.warmup ? '  (warm-up)' : ''}${sample.halted ? '  (halted)' : ''}`,
    );
    return sample;
  };

  // --- Run ----------------------------------------------------------------------------------------

  await orchestrator.start();
  deps.search = orchestrator.resources.breaker(
    'search-api',
    async (q: number): Promise<number[]> => {
      await immediate();
      if (control.searchOutage || agentRnd() < 0.01) throw new Error('search-api unavailable');
      return [q];
    },
    {
      fallback: () => [],
      timeoutMs: 100,
      errorThresholdPercentage: 50,
      volumeThreshold: 10,
      resetTimeoutMs: 2_000,
      windowMs: 5_000,
    },
  );
  deps.vector = orchestrator.resources.breaker(
    'vector-db',
    async (q: number): Promise<number> => {
      await immediate();
      if (control.vectorOutage || agentRnd() < 0.01) throw new Error('vector-db unavailable');
      return q;
    },
    { timeoutMs: 100, errorThresholdPercentage: 50, volumeThreshold: 10, resetTimeoutMs: 3_000 },
  );
  orchestrator.registerAgent(new SimAgent('outside', agentRnd), {
    id: 'scraper-1',
    capabilities: ['scrape', 'search'],
    concurrency: 8,
    role: 'outside',
  });
  orchestrator.registerAgent(new SimAgent('flaky', agentRnd), {
    id: 'scraper-flaky',
    capabilities: ['scrape'],
    concurrency: 2,
    role: 'outside',
  });

  const durationMs = opt.minutes * 60_000;
  const sampleMs = opt.sampleSeconds * 1_000;
  t0 = performance.now();
  let second = 0;
  const ticker = setInterval(() => {
    second++;
    tick(second, durationMs / 1_000 - second);
  }, 1_000);
  if (opt.rate === undefined) schedulePump();
  else startRate(opt.rate);

  let nextSampleAt = sampleMs;
  let snappedWarm = false;
  while (nextSampleAt <= durationMs + 1) {
    const untilNext = nextSampleAt - (performance.now() - t0);
    if (untilNext > 0) await new Promise((resolve) => setTimeout(resolve, untilNext));
    const sample = await takeSample();
    if (!sample.warmup && !snappedWarm) {
      snappedWarm = true;
      snapshot('1-after-warmup');
    }
    nextSampleAt += sampleMs;
  }
  snapshot('2-end');

  // --- Stop -----------------------------------------------------------------------------------------

  const runSeconds = (performance.now() - t0) / 1_000;
  stopping = true;
  clearInterval(ticker);
  clearInterval(rateTimer);
  if (haltedNow || orchestrator.stats().halted !== null) {
    haltedNow = false;
    await orchestrator.resume(); // let the held work drain rather than be cancelled by stop()
  }
  const stopStart = performance.now();
  await orchestrator.stop({ drain: true, timeoutMs: 30_000 });
  const stopMs = performance.now() - stopStart;
  // Harness operations still settling (adapter waits, churn calls refused by the stop).
  const settleDeadline = performance.now() + 10_000;
  while ((inFlight > 0 || ops.size > 0) && performance.now() < settleDeadline)
    await new Promise((resolve) => setTimeout(resolve, 10));
  for (const timer of cancelTimers) clearTimeout(timer);
  cancelTimers.clear();
  adapter.close();
  delete deps.search;
  delete deps.vector;

  // --- Invariant ----------------------------------------------------------------------------------

  const s = orchestrator.stats();
  checkStats('after stop');
  if (s.waiting !== 0 || s.running !== 0 || s.backingOff !== 0)
    violation(`after stop: waiting ${s.waiting}, running ${s.running}, backing off ${s.backingOff}`);
  const engineAccepted = s.submitted - s.rejected - s.deduplicated;
  const harnessAccepted = c.accepted.direct + c.accepted.adapter + c.accepted['dlq-retry'];
  const harnessRefused = [...c.refused.values()].reduce((a, b) => a + b, 0);
  const terminal = terminalSoFar();
  if (inFlight !== 0) violation(`${inFlight} harness operations never settled`);
  if (pending.size > 0)
    violation(`${pending.size} accepted tasks never settled (e.g. ${[...pending.keys()].slice(0, 3).join(', ')})`);
  if (orphans.size > 0)
    violation(
      `${orphans.size} terminal events for tasks never accepted or already ended (e.g. ${[...orphans.keys()].slice(0, 3).join(', ')})`,
    );
  if (engineAccepted !== harnessAccepted)
    violation(`accepted: stats() says ${engineAccepted}, the harness counted ${harnessAccepted}`);
  if (terminal !== engineAccepted) violation(`${terminal} terminal events for ${engineAccepted} accepted tasks`);
  if (s.deduplicated !== c.deduplicated)
    violation(`deduplicated: stats() ${s.deduplicated}, harness ${c.deduplicated}`);
  if (s.rejected !== harnessRefused) violation(`refused: stats() ${s.rejected}, harness ${harnessRefused}`);
  const byStats: Record<TaskOutcome, number> = {
    completed: s.completed,
    failed: s.failed,
    'timed-out': s.timedOut,
    cancelled: s.cancelled,
    'dead-lettered': s.deadLettered,
  };
  for (const o of OUTCOMES)
    if (byStats[o] !== c.terminalEvents[o]) violation(`${o}: stats() ${byStats[o]}, events ${c.terminalEvents[o]}`);

  // --- Does anything keep the loop alive? ------------------------------------------------------------

  for (let i = 0; i < 3; i++) await immediate();
  const leftovers = leftoverResources();
  const loadAtEnd = os.loadavg();

  // --- Report -------------------------------------------------------------------------------------

  const heap = analyseHeap(samples, DEFAULT_RULE);
  const consistent = violationCount === 0;
  const exitsOnItsOwn = leftovers.length === 0;
  const pass = heap.verdict === 'flat' && consistent && exitsOnItsOwn;
  const post = samples.filter((x) => !x.warmup);
  const firstPost = post[0];
  const lastPost = post[post.length - 1];
  const postThroughput =
    firstPost && lastPost && lastPost.t > firstPost.t
      ? (lastPost.terminal - firstPost.terminal) / (lastPost.t - firstPost.t)
      : Number.NaN;
  const attribution = {
    tracked: seriesSlopePerMin(samples, (x) => x.tracked),
    deadLetters: seriesSlopePerMin(samples, (x) => x.deadLetters),
    agents: seriesSlopePerMin(samples, (x) => x.agents),
    routingCacheSize: seriesSlopePerMin(samples, (x) => x.routingCacheSize),
    waiting: seriesSlopePerMin(samples, (x) => x.waiting),
  };

  const report = {
    seed: opt.seed,
    options: { ...opt, rule: DEFAULT_RULE },
    machine: { node: process.version, cores: os.cpus().length, loadAtStart, loadAtEnd },
    runSeconds,
    tasks: {
      launched: c.launched,
      accepted: { ...c.accepted, total: harnessAccepted },
      refused: Object.fromEntries(c.refused),
      deduplicated: c.deduplicated,
      outcomes: c.terminalEvents,
      retries: s.retries,
      legacyStatuses: Object.fromEntries(c.legacyStatuses),
      cancelRequests: c.cancelRequests,
      throughputAvg: terminal / runSeconds,
      throughputAfterWarmup: postThroughput,
      skippedByWindow: c.skippedByWindow,
    },
    stats: s,
    events: Object.fromEntries([...c.events].sort()),
    ops: Object.fromEntries([...c.ops].sort()),
    opErrors: Object.fromEntries([...c.opErrors].sort()),
    health: Object.fromEntries(healthStatuses),
    hangs: control.hangs,
    pressureSampleFailures: Object.fromEntries(sampleFailures),
    poolAgentsMade,
    metricsExpositionBytes: metricsBytes,
    heap,
    attribution,
    rule: describeRule(DEFAULT_RULE),
    invariant: { consistent, violations: violationCount, examples: violations, statsChecks },
    stop: { ms: stopMs, leftovers, exitsOnItsOwn },
    snapshots,
    pass,
    samples,
  };

  if (opt.json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    printSummary(report, heap);
  }
  armExitWatchdog(opt.json);
  return pass ? 0 : 1;
}

/** The longest waiting queue, when it holds most of the waiting tasks: ` (llm 1,800)`. */
function biggestQueue(queues: Readonly<Record<string, number>>): string {
  let best: [string, number] | undefined;
  for (const entry of Object.entries(queues)) if (!best || entry[1] > best[1]) best = entry;
  return best && best[1] >= 100 ? ` (${best[0]} ${fmt(best[1])})` : '';
}

// --- Leftover handles -----------------------------------------------------------------------------

/** Active resources now, less those Node held before the run started. */
function leftoverResources(): string[] {
  const baseline = new Map<string, number>();
  for (const r of BASELINE_RESOURCES) bump(baseline, r);
  const left: string[] = [];
  for (const r of process.getActiveResourcesInfo()) {
    const n = baseline.get(r) ?? 0;
    if (n > 0) baseline.set(r, n - 1);
    else left.push(r);
  }
  return left;
}

/**
 * The process should now end by itself. If it is still alive in 10 s something keeps the event loop busy: a bug
 * (nothing of the harness is left running). This timer is unref'd, so it cannot keep the process alive itself.
 */
function armExitWatchdog(json: boolean): void {
  const startedAt = performance.now();
  process.on('exit', (code) => {
    if (!json)
      writeSync(
        1,
        `\nprocess exited on its own ${((performance.now() - startedAt) / 1_000).toFixed(2)} s after the report, exit code ${code}\n`,
      );
  });
  setTimeout(() => {
    const handles = ((process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? []).map(
      describeHandle,
    );
    writeSync(
      2,
      `\nBUG: the process is still alive 10 s after stop(): ${JSON.stringify(process.getActiveResourcesInfo())}\n` +
        `handles: ${handles.join('; ')}\nforcing exit code 1\n`,
    );
    // The only process.exit in the soak: without it a leaked handle would hang the run forever.
    process.exit(1);
  }, 10_000).unref();
}

function describeHandle(h: unknown): string {
  if (typeof h !== 'object' || h === null) return String(h);
  const o = h as {
    constructor?: { name?: string };
    _onTimeout?: { name?: string; toString(): string };
    _idleTimeout?: number;
  };
  if (o._onTimeout)
    return `Timeout(${o._idleTimeout} ms, ${o._onTimeout.name || o._onTimeout.toString().slice(0, 120)})`;
  return o.constructor?.name ?? 'object';
}

// --- Human-readable summary -------------------------------------------------------------------------

interface ReportShape {
  seed: number;
  options: Options;
  machine: { cores: number; loadAtStart: number[]; loadAtEnd: number[] };
  runSeconds: number;
  tasks: {
    launched: number;
    accepted: Record<EntryKind | 'total', number>;
    refused: Record<string, number>;
    deduplicated: number;
    outcomes: Record<TaskOutcome, number>;
    retries: number;
    legacyStatuses: Record<string, number>;
    cancelRequests: number;
    throughputAvg: number;
    throughputAfterWarmup: number;
    skippedByWindow: number;
  };
  stats: ReturnType<UnifiedOrchestrator['stats']>;
  events: Record<string, number>;
  ops: Record<string, number>;
  opErrors: Record<string, number>;
  health: Record<string, number>;
  hangs: number;
  pressureSampleFailures: Record<string, number>;
  poolAgentsMade: number;
  metricsExpositionBytes: number;
  attribution: Record<string, { slope: number; first: number; last: number }>;
  rule: string;
  invariant: { consistent: boolean; violations: number; examples: string[]; statsChecks: number };
  stop: { ms: number; leftovers: string[]; exitsOnItsOwn: boolean };
  snapshots: string[];
  pass: boolean;
}

function printSummary(r: ReportShape, heap: HeapAnalysis): void {
  const line = (label: string, value: string): void => void process.stdout.write(`  ${label.padEnd(22)} ${value}\n`);
  const kv = (o: Record<string, number>): string =>
    Object.entries(o)
      .map(([k, v]) => `${k} ${fmt(v)}`)
      .join(', ') || 'none';
  const t = r.tasks;
  process.stdout.write(
    `\n=== Soak summary: seed ${r.seed}, ${(r.runSeconds / 60).toFixed(1)} min, warm-up ${r.options.warmupSeconds} s ===\n`,
  );
  line(
    'machine',
    `${r.machine.cores} cores, load ${r.machine.loadAtStart.map((l) => l.toFixed(2)).join(' ')} at start, ${r.machine.loadAtEnd.map((l) => l.toFixed(2)).join(' ')} at end`,
  );
  line(
    'tasks accepted',
    `${fmt(t.accepted.total)} (direct ${fmt(t.accepted.direct)}, adapter ${fmt(t.accepted.adapter)}, dead-letter retries ${fmt(t.accepted['dlq-retry'])}); deduplicated ${fmt(t.deduplicated)}`,
  );
  line('outcomes', kv(t.outcomes));
  line('refused', kv(t.refused));
  line(
    'retries',
    `${fmt(t.retries)}; cancel requests ${fmt(t.cancelRequests)}; legacy statuses: ${kv(t.legacyStatuses)}`,
  );
  line(
    'throughput',
    `${fmt(t.throughputAvg)} tasks/s overall, ${fmt(t.throughputAfterWarmup)} tasks/s after the warm-up${t.skippedByWindow ? `; ${fmt(t.skippedByWindow)} arrivals skipped (window full)` : ''}`,
  );
  line('events', kv(r.events));
  line('operations', kv(r.ops));
  line('operation errors', kv(r.opErrors));
  line('health() answers', kv(r.health));
  line(
    'agents',
    `pool agents made ${fmt(r.poolAgentsMade)}; hung attempts provoked ${r.hangs} (each ignores its signal for ${HANG_MS / 1_000} s), agents found stuck ${r.events['agent:unhealthy(stuck)'] ?? 0}`,
  );
  if (Object.keys(r.pressureSampleFailures).length) line('pressure sample failed', kv(r.pressureSampleFailures));
  line(
    'at the end',
    `dead letters ${r.stats.deadLetters} (bound ${fmt(MAX_DEAD_LETTERS)}), tracked ${r.stats.resources.tracked}, routing cache ${r.stats.routingCache.size}, metrics exposition ${fmt(r.metricsExpositionBytes)} bytes`,
  );
  process.stdout.write('\n');
  line(
    'heapUsed after warm-up',
    `${heap.samples} samples over ${heap.windowSeconds.toFixed(0)} s: min ${heap.minMB.toFixed(2)} MB, max ${heap.maxMB.toFixed(2)} MB`,
  );
  line(
    'thirds',
    `first-third mean ${heap.firstThirdMeanMB.toFixed(2)} MB, last-third mean ${heap.lastThirdMeanMB.toFixed(2)} MB (drift ${heap.thirdsDriftMB >= 0 ? '+' : ''}${heap.thirdsDriftMB.toFixed(2)} MB, allowed ${heap.allowedDriftMB.toFixed(2)} MB)`,
  );
  line(
    'slope',
    `${heap.slopeMBPerMin >= 0 ? '+' : ''}${heap.slopeMBPerMin.toFixed(3)} MB/min (R² ${heap.r2.toFixed(3)}); ${heap.bytesPer1000Tasks >= 0 ? '+' : ''}${fmt(heap.bytesPer1000Tasks)} bytes per 1,000 tasks (R² ${heap.r2PerTask.toFixed(3)})`,
  );
  line(
    'rss / external slope',
    `${heap.rssSlopeMBPerMin.toFixed(3)} / ${heap.externalSlopeMBPerMin.toFixed(3)} MB/min (information only)`,
  );
  const a = r.attribution;
  line(
    'series after warm-up',
    Object.entries(a)
      .map(([k, v]) => `${k} ${fmt(v.first)}→${fmt(v.last)} (${v.slope >= 0 ? '+' : ''}${v.slope.toFixed(2)}/min)`)
      .join(', '),
  );
  line('rule', r.rule);
  line('verdict', `${heap.verdict.toUpperCase()}${heap.reasons.length ? ` (${heap.reasons.join('; ')})` : ''}`);
  line(
    'invariant',
    r.invariant.consistent
      ? `ok: every accepted task ended exactly once, results and legacy statuses agree with the events, stats() adds up (${r.invariant.statsChecks} checks)`
      : `VIOLATED ${r.invariant.violations} times`,
  );
  for (const v of r.invariant.examples) line('', v);
  line(
    'stop()',
    `${fmt(r.stop.ms)} ms; resources left after stop: ${r.stop.leftovers.length ? r.stop.leftovers.join(', ') + ' (BUG: keeps the process alive)' : 'none'}`,
  );
  if (r.snapshots.length) line('heap snapshots', r.snapshots.join(' '));
  line('result', r.pass ? 'PASS (exit code 0)' : 'FAIL (exit code 1)');
}

process.exitCode = await main().catch((error: unknown) => {
  process.stderr.write(`soak: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  armExitWatchdog(true);
  return 1;
});
