/**
 * The chaos harness: what every scenario shares.
 *
 * - {@link Ledger} wraps `delegate()`: it counts every call, every refusal (by error code), every accepted task id
 *   and every handle, listens to `task:completed` / `task:failed`, and at the end checks the invariant: every accepted
 *   task reached exactly one terminal state (one terminal event per id, each handle settled once and in agreement
 *   with its event), and `stats()` balances against what the ledger saw.
 * - {@link processGuard} counts unhandled rejections and uncaught exceptions while a scenario runs.
 * - {@link stopAndCheck} stops an orchestrator and checks it stopped cleanly (bounded time, `stopped` once, no agent
 *   and no tracked timer left).
 * - {@link chaos} runs a scenario body with all of the above and turns it into a {@link ScenarioResult}; it never
 *   throws: a crash is recorded in the result.
 */
import { wait } from '../support/agents.js';
import { seededRandom } from '../support/random.js';
import { TaskCancelledError, TaskDeadLetteredError, TaskTimeoutError } from 'unified-orchestrator';
import type { OrchestratorEvents, Task, TaskHandle, TaskOutcome, UnifiedOrchestrator } from 'unified-orchestrator';

export type Scale = 'ci' | 'full';

/** One scenario-specific expectation and whether it held. */
export interface Expectation {
  readonly what: string;
  readonly ok: boolean;
  readonly detail?: string;
}

export interface ScenarioResult {
  readonly name: string;
  readonly scale: Scale;
  /** The PRNG seed of the run (replay with CHAOS_SEED=<seed>). */
  readonly seed: number;
  /** `delegate()` calls (and resubmissions) made. */
  readonly submitted: number;
  /** Distinct tasks accepted. */
  readonly accepted: number;
  readonly completed: number;
  readonly failed: number;
  readonly timedOut: number;
  readonly cancelled: number;
  readonly deadLettered: number;
  /** Refused at submit (never accepted). */
  readonly rejected: number;
  readonly rejectedBy: Readonly<Record<string, number>>;
  /** Answered from an idempotency key (a second handle on an accepted task). */
  readonly deduplicated: number;
  /** Accepted tasks with no terminal state (no terminal event, or a handle that never settled). Must be 0. */
  readonly lost: number;
  /** Second terminal events, terminal events for ids never handed out, handles settled twice. Must be 0. */
  readonly duplicates: number;
  /** Unhandled rejections and uncaught exceptions during the scenario. Must be 0. */
  readonly unhandled: number;
  /** Invariant checks that failed (stats that do not balance, a handle disagreeing with its event, a dirty stop...). */
  readonly violations: readonly string[];
  /** Per-scenario expectations. */
  readonly expectations: readonly Expectation[];
  /** Scenario-specific figures. */
  readonly figures: Readonly<Record<string, number | string>>;
  /** Set when the scenario itself threw (a crash of the harness or of the orchestrator). */
  readonly crash?: string;
  readonly durationMs: number;
  /** Accepted tasks per second of scenario time. */
  readonly tasksPerSec: number;
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  run(scale: Scale): Promise<ScenarioResult>;
}

// --- Small utilities -----------------------------------------------------------------------------

/** Resolves after `ms` (a plain timer: the caller awaits it). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether `p` settles within `ms` (the timer is cleared either way). */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return settled;
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export const sleepOr = (ms: number, signal: AbortSignal): Promise<void> => wait(ms, signal);

/** Polls `predicate` until it holds; false when `timeoutMs` passed first. */
export async function until(predicate: () => boolean, timeoutMs: number, stepMs = 5): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) return false;
    await sleep(stepMs);
  }
  return true;
}

/** mulberry32: a small seeded PRNG, so that the faults of a run can be replayed. */
export interface Rng {
  (): number;
  readonly seed: number;
  /** Integer in [min, max]. */
  int(min: number, max: number): number;
  /** True with probability p. */
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
}

export function rng(seed: number): Rng {
  const next = seededRandom(seed);
  const r = next as Rng & { seed: number };
  Object.defineProperty(r, 'seed', { value: seed >>> 0 });
  r.int = (min, max) => min + Math.floor(next() * (max - min + 1));
  r.chance = (p) => next() < p;
  r.pick = (items) => items[Math.floor(next() * items.length)]!;
  return r;
}

let runSeed: number | undefined;

/**
 * The run's seed: CHAOS_SEED when set, else one drawn once per process. Every scenario of a run uses it, so
 * `CHAOS_SEED=<seed> npm run chaos -- --only <name>` replays a scenario's faults (their order; timings still vary).
 */
export function baseSeed(): number {
  if (runSeed !== undefined) return runSeed;
  const env = process.env['CHAOS_SEED'];
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0)
      throw new Error(`CHAOS_SEED must be a non-negative integer, got ${JSON.stringify(env)}`);
    runSeed = n >>> 0;
  } else {
    runSeed = (Math.random() * 2 ** 32) >>> 0;
  }
  return runSeed;
}

/** A short description of any thrown value, safe against hostile getters. */
export function describe(value: unknown): string {
  try {
    if (isA(value, Error)) return `${(value as Error).name}: ${(value as Error).message}`;
    return typeof value === 'symbol' ? value.toString() : String(value);
  } catch {
    return '<undescribable value>';
  }
}

/** `value instanceof type`, false when asking throws (a Proxy whose getPrototypeOf trap throws). */
export function isA(value: unknown, type: abstract new (...args: never[]) => unknown): boolean {
  try {
    return value instanceof type;
  } catch {
    return false;
  }
}

/** An error's `code`, or undefined (never throws, whatever the value). */
export function codeOf(value: unknown): string | undefined {
  try {
    if (typeof value !== 'object' || value === null) return undefined;
    const code = (value as { code?: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

// --- Process guard -------------------------------------------------------------------------------

export interface ProcessGuard {
  readonly count: number;
  readonly samples: readonly string[];
  /** Waits for late reports (unhandled rejections are reported a tick after the fact), then stops counting. */
  dispose(): Promise<void>;
}

/** Counts `unhandledRejection` and `uncaughtException` until disposed. */
export function processGuard(): ProcessGuard {
  let count = 0;
  const samples: string[] = [];
  const onRejection = (reason: unknown): void => {
    count++;
    if (samples.length < 5) samples.push(`unhandledRejection: ${describe(reason)}`);
  };
  const onException = (error: unknown): void => {
    count++;
    if (samples.length < 5) samples.push(`uncaughtException: ${describe(error)}`);
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    get count() {
      return count;
    },
    samples,
    async dispose() {
      await sleep(20);
      await new Promise((resolve) => setImmediate(resolve));
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}

// --- The ledger ----------------------------------------------------------------------------------

type Settlement = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** One handle `delegate()` returned. */
export interface HandleEntry {
  readonly id: string;
  readonly handle: TaskHandle;
  /** The first handle of its task (not a deduplicated follower). */
  readonly primary: boolean;
  /** Whatever the scenario wants to remember about the task (its input, the level at submit...). */
  readonly meta: unknown;
  /** Times the result settled (a promise settles once: anything else is a broken promise). */
  settledTimes: number;
  settlement: Settlement | undefined;
}

interface TerminalRecord {
  count: number;
  outcome: TaskOutcome;
  error: unknown;
  latencyMs: number;
  attempts: number;
}

export type TaskFactory = (i: number) => Task;

/**
 * Every `delegate()` of a scenario goes through here. Terminal events are recorded by id whenever they arrive and
 * reconciled against the handles at the end, so the order of events and handles does not matter.
 */
export class Ledger {
  readonly o: UnifiedOrchestrator;
  /** `delegate()` calls (each counts in `stats().submitted`). */
  calls = 0;
  refused = 0;
  readonly refusedBy: Record<string, number> = {};
  deduplicated = 0;
  readonly handles: HandleEntry[] = [];
  /** Primary handle per accepted task id. */
  readonly tasks = new Map<string, HandleEntry>();
  readonly terminal = new Map<string, TerminalRecord>();
  readonly outcomes: Record<TaskOutcome, number> = {
    completed: 0,
    failed: 0,
    cancelled: 0,
    'timed-out': 0,
    'dead-lettered': 0,
  };
  /** Primary handles not settled yet. */
  inflight = 0;
  /** performance.now() of the last settlement of a primary handle. */
  lastSettledAt = performance.now();
  /** Loads that stopped because tasks in flight stopped settling (lost tasks fill the window). */
  readonly stalls: string[] = [];
  /**
   * Every n-th handle gets its result handler only `lateHandlerMs` after delegate() (0: none do). Until then its
   * entry reads as unsettled whatever its promise did: counts taken at the end wait for {@link Ledger.handlersAttached}.
   */
  lateHandlerEvery = 0;
  lateHandlerMs = 30;
  #waiters: Array<() => void> = [];
  /** Deferred result handlers not attached yet (see `lateHandlerEvery`), as promises that resolve once attached. */
  readonly #lateAttaches = new Set<Promise<void>>();

  constructor(o: UnifiedOrchestrator) {
    this.o = o;
    o.on('task:completed', (e) => this.#terminal(e.taskId, 'completed', undefined, e.latencyMs, e.attempt));
    o.on('task:failed', (e) => this.#terminal(e.taskId, e.outcome, e.error, e.latencyMs, e.attempts));
  }

  #terminal(id: string, outcome: TaskOutcome, error: unknown, latencyMs: number, attempts: number): void {
    this.outcomes[outcome]++;
    const seen = this.terminal.get(id);
    if (seen) seen.count++;
    else this.terminal.set(id, { count: 1, outcome, error, latencyMs, attempts });
  }

  /**
   * `delegate(task)`; returns the handle entry, or the refusal (the thrown error) when the task was refused.
   * `meta` is kept with the entry.
   */
  delegate(task: Task, meta?: unknown): HandleEntry | { refused: unknown } {
    this.calls++;
    let handle: TaskHandle;
    try {
      handle = this.o.delegate(task);
    } catch (error) {
      this.#refuse(error);
      return { refused: error };
    }
    return this.adopt(handle, meta);
  }

  /** Counts a refusal (a `delegate` or resubmission that threw). */
  #refuse(error: unknown): void {
    this.refused++;
    const code = codeOf(error) ?? 'OTHER';
    this.refusedBy[code] = (this.refusedBy[code] ?? 0) + 1;
  }

  /** `retryDeadLetter(id)`: a resubmission under a new id. TASK_NOT_FOUND is not a submission at all. */
  retryDeadLetter(taskId: string): HandleEntry | { refused: unknown } | undefined {
    let handle: TaskHandle;
    try {
      handle = this.o.retryDeadLetter(taskId);
    } catch (error) {
      if (codeOf(error) === 'TASK_NOT_FOUND' || codeOf(error) === 'VALIDATION_ERROR') return undefined;
      this.calls++;
      this.#refuse(error);
      return { refused: error };
    }
    this.calls++;
    return this.adopt(handle, { resubmitted: taskId });
  }

  /** Records a handle from `delegate()` (or a resubmission). */
  adopt(handle: TaskHandle, meta?: unknown): HandleEntry {
    const primary = !this.tasks.has(handle.id);
    const entry: HandleEntry = { id: handle.id, handle, primary, meta, settledTimes: 0, settlement: undefined };
    this.handles.push(entry);
    if (primary) {
      this.tasks.set(handle.id, entry);
      this.inflight++;
    } else {
      this.deduplicated++;
    }
    const settle = (s: Settlement): void => {
      entry.settledTimes++;
      if (entry.settledTimes > 1) return;
      entry.settlement = s;
      if (primary) {
        this.inflight--;
        this.lastSettledAt = performance.now();
        const waiters = this.#waiters;
        this.#waiters = [];
        for (const w of waiters) w();
      }
    };
    const attach = (): void =>
      void handle.result.then(
        (value) => settle({ ok: true, value }),
        (error: unknown) => settle({ ok: false, error }),
      );
    // Some callers look at their result late, after it settled: that must never raise an unhandled rejection.
    if (this.lateHandlerEvery > 0 && this.handles.length % this.lateHandlerEvery === 0) {
      const attached = new Promise<void>((resolve) =>
        setTimeout(() => {
          attach();
          resolve();
        }, this.lateHandlerMs),
      );
      this.#lateAttaches.add(attached);
      void attached.then(() => this.#lateAttaches.delete(attached));
    } else attach();
    return entry;
  }

  /**
   * Resolves once every deferred result handler (see `lateHandlerEvery`) is attached and has recorded the settlement
   * of a handle that had settled. A handle delegated less than `lateHandlerMs` before a count (the tasks a scenario
   * leaves for the stop) would otherwise count as lost though its promise settled. A handle that never settles is
   * still unsettled after this: it stays lost.
   */
  async handlersAttached(): Promise<void> {
    // attach() queues the settle reaction of a settled promise before resolve() queues ours: it has run by now.
    while (this.#lateAttaches.size > 0) await Promise.all([...this.#lateAttaches]);
  }

  /** Resolves at the next settlement of a primary handle, or after `ms`. */
  nextSettlement(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#waiters.push(done);
    });
  }

  /** Waits until every primary handle settled; false when `timeoutMs` passed first. */
  async settled(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.inflight > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.nextSettlement(Math.min(left, 50));
    }
    return true;
  }

  /**
   * Submits `total` tasks made by `make(i)`, keeping at most `window` accepted tasks in flight. `between(i)` runs
   * before each submission (random cancels, halts...). Yields to the event loop at least every `yieldEvery` submissions.
   */
  async flow(opts: {
    total: number;
    window: number;
    make: TaskFactory;
    meta?: (i: number) => unknown;
    before?: (i: number) => void;
    after?: (i: number, entry: HandleEntry | { refused: unknown }) => void;
    yieldEvery?: number;
    /** Stop submitting when this returns true (a time budget). */
    stop?: () => boolean;
    /** Give up when the window is full and nothing settled for this long (tasks are being lost). @default 10_000 */
    stallMs?: number;
    /** After a refusal, wait this long (or for a settlement) before the next submission: a client backing off. */
    refusalPauseMs?: number;
  }): Promise<number> {
    const yieldEvery = opts.yieldEvery ?? 64;
    const stallMs = opts.stallMs ?? 10_000;
    let i = 0;
    let sinceYield = 0;
    this.lastSettledAt = performance.now();
    while (i < opts.total && !opts.stop?.()) {
      if (this.inflight >= opts.window || sinceYield >= yieldEvery) {
        sinceYield = 0;
        if (this.inflight >= opts.window) {
          if (performance.now() - this.lastSettledAt > stallMs) {
            this.stalls.push(
              `the load stalled after ${i} of ${opts.total} submissions: ${this.inflight} tasks in flight, none settled for ${stallMs} ms`,
            );
            break;
          }
          await this.nextSettlement(5);
        } else await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      opts.before?.(i);
      const entry = this.delegate(opts.make(i), opts.meta?.(i));
      opts.after?.(i, entry);
      i++;
      sinceYield++;
      if ('refused' in entry && opts.refusalPauseMs !== undefined) {
        sinceYield = 0;
        await this.nextSettlement(opts.refusalPauseMs);
      }
    }
    return i;
  }

  /** Live primary handles (not settled), for random cancels. */
  livePrimaries(): HandleEntry[] {
    return this.handles.filter((h) => h.primary && h.settlement === undefined);
  }

  /** Accepted tasks with no terminal event or an unsettled primary handle. */
  lostIds(): string[] {
    const lost: string[] = [];
    for (const [id, entry] of this.tasks) {
      if (!this.terminal.has(id) || entry.settlement === undefined) lost.push(id);
    }
    return lost;
  }

  /** Second terminal events, terminal events for unknown ids, and handles settled more than once. */
  duplicates(): number {
    let n = 0;
    for (const [id, t] of this.terminal) {
      if (t.count > 1) n += t.count - 1;
      if (!this.tasks.has(id)) n += t.count;
    }
    for (const h of this.handles) if (h.settledTimes > 1) n += h.settledTimes - 1;
    return n;
  }

  /**
   * The invariant checks between the ledger, the handles, the events and `stats()`. With `idle`, nothing may be
   * waiting, running or backing off.
   */
  audit(idle: boolean): string[] {
    const v: string[] = [];
    const s = this.o.stats();
    if (s.submitted !== this.calls) v.push(`stats.submitted ${s.submitted} != delegate calls ${this.calls}`);
    if (s.rejected !== this.refused) v.push(`stats.rejected ${s.rejected} != refusals seen ${this.refused}`);
    if (s.deduplicated !== this.deduplicated)
      v.push(`stats.deduplicated ${s.deduplicated} != follower handles ${this.deduplicated}`);
    const terminal = s.completed + s.failed + s.cancelled + s.timedOut + s.deadLettered;
    const inFlight = s.waiting + s.running + s.backingOff;
    if (s.submitted !== s.rejected + s.deduplicated + terminal + inFlight) {
      v.push(
        `stats do not balance: submitted ${s.submitted} != rejected ${s.rejected} + deduplicated ${s.deduplicated} + terminal ${terminal} + in flight ${inFlight}`,
      );
    }
    if (idle) {
      if (inFlight !== 0)
        v.push(`not idle at the end: waiting ${s.waiting}, running ${s.running}, backingOff ${s.backingOff}`);
      if (terminal !== this.tasks.size)
        v.push(`terminal outcomes in stats ${terminal} != accepted tasks ${this.tasks.size}`);
    }
    const pairs: Array<[TaskOutcome, number]> = [
      ['completed', s.completed],
      ['failed', s.failed],
      ['cancelled', s.cancelled],
      ['timed-out', s.timedOut],
      ['dead-lettered', s.deadLettered],
    ];
    for (const [outcome, n] of pairs)
      if (this.outcomes[outcome] !== n) v.push(`${outcome}: ${this.outcomes[outcome]} events but stats says ${n}`);
    // Each primary handle against its terminal event: the same outcome, and a rejection with the event's own error.
    let mismatched = 0;
    const examples: string[] = [];
    for (const [id, entry] of this.tasks) {
      const t = this.terminal.get(id);
      const s2 = entry.settlement;
      if (!t || !s2) continue; // counted as lost
      const problem = disagreement(t, s2);
      if (problem) {
        mismatched++;
        if (examples.length < 3) examples.push(`${id}: ${problem}`);
      }
    }
    if (mismatched > 0) v.push(`${mismatched} handle(s) disagree with their terminal event (${examples.join('; ')})`);
    let halted = 0;
    for (const t of this.terminal.values()) {
      if (codeOf(t.error) === 'ORCHESTRATOR_HALTED' || codeOf(causeOf(t.error)) === 'ORCHESTRATOR_HALTED') halted++;
    }
    if (halted > 0) v.push(`${halted} task(s) ended with ORCHESTRATOR_HALTED (a halt must never be a task's outcome)`);
    return v;
  }
}

function causeOf(error: unknown): unknown {
  try {
    return typeof error === 'object' && error !== null ? (error as { cause?: unknown }).cause : undefined;
  } catch {
    return undefined;
  }
}

const FAILURE_CODES: Partial<Record<TaskOutcome, string>> = {
  'timed-out': 'TASK_TIMEOUT',
  cancelled: 'TASK_CANCELLED',
  'dead-lettered': 'TASK_DEAD_LETTERED',
};

function disagreement(t: TerminalRecord, s: Settlement): string | undefined {
  if (t.outcome === 'completed')
    return s.ok ? undefined : `completed event but the result rejected (${describe(s.error)})`;
  if (s.ok) return `${t.outcome} event but the result resolved`;
  if (s.error !== t.error) return `${t.outcome}: the result rejected with another error than the event's`;
  const code = FAILURE_CODES[t.outcome];
  if (code !== undefined && codeOf(s.error) !== code) return `${t.outcome} with code ${codeOf(s.error) ?? 'none'}`;
  if (t.outcome === 'failed') {
    // The agent's own error passes through (whatever its code); the orchestrator's terminal errors may not.
    if (isA(s.error, TaskTimeoutError) || isA(s.error, TaskCancelledError) || isA(s.error, TaskDeadLetteredError)) {
      return "failed with one of the orchestrator's own terminal errors";
    }
  }
  return undefined;
}

/** What the orchestrator looks like when tasks stopped settling: for the report. */
export function snapshot(o: UnifiedOrchestrator): string {
  try {
    const s = o.stats();
    const agents = Object.entries(s.agents)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k}:${n}`)
      .join(' ');
    const running = o.agents().reduce((a, x) => a + x.running, 0);
    const pools = s.pools
      .map((p) => `${p.role} members ${p.members} spares ${p.spares} creating ${p.creating}`)
      .join('; ');
    const health = Object.entries(o.health().components.pools)
      .map(([r, p]) => `${r} ${p.status} routable ${p.routable} suspended ${p.suspendedForMs} ms`)
      .join('; ');
    return `waiting ${s.waiting} running ${s.running} backingOff ${s.backingOff}; agents ${agents}; slots held ${running}; ${pools}; ${health}; breakers ${JSON.stringify(s.resources.breakers.agents)}`;
  } catch (error) {
    return `snapshot failed: ${describe(error)}`;
  }
}

// --- Stop ----------------------------------------------------------------------------------------

export interface StopReport {
  readonly violations: string[];
  readonly stopMs: number;
  /** Tasks the stop itself cancelled (from the `stopped` event). */
  readonly cancelledByStop: number;
}

/** Stops `o` (drain) and checks it stopped cleanly. */
export async function stopAndCheck(
  o: UnifiedOrchestrator,
  opts: { drain?: boolean; timeoutMs?: number; limitMs?: number } = {},
): Promise<StopReport> {
  const v: string[] = [];
  const stopped: Array<OrchestratorEvents['stopped']> = [];
  o.on('stopped', (e) => stopped.push(e));
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const limitMs = opts.limitMs ?? timeoutMs + 5_000;
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    o.stop({ drain: opts.drain ?? true, timeoutMs }).then(
      () => 'ok' as const,
      (error: unknown) => `stop() rejected: ${describe(error)}`,
    ),
    new Promise<string>(
      (resolve) => (timer = setTimeout(() => resolve(`stop() did not return within ${limitMs} ms`), limitMs)),
    ),
  ]);
  clearTimeout(timer);
  const stopMs = performance.now() - t0;
  if (outcome !== 'ok') v.push(outcome);
  if (o.state !== 'stopped') v.push(`state after stop is ${o.state}`);
  if (outcome === 'ok') {
    if (stopped.length !== 1) v.push(`'stopped' emitted ${stopped.length} times`);
    const left = o.agents().length;
    if (left > 0) v.push(`${left} agent(s) left after stop`);
    const tracked = o.stats().resources.tracked;
    if (tracked > 0) v.push(`${tracked} tracked timer(s)/listener(s) left after stop`);
  }
  return { violations: v, stopMs, cancelledByStop: stopped[0]?.cancelled ?? 0 };
}

// --- Running a scenario --------------------------------------------------------------------------

/** What a scenario body fills in; `chaos()` adds the ledger's figures and the checks. */
export interface ChaosContext {
  readonly scale: Scale;
  readonly rng: Rng;
  readonly figures: Record<string, number | string>;
  readonly violations: string[];
  readonly expectations: Expectation[];
  /** Records an expectation. */
  expect(what: string, ok: boolean, detail?: string | number): void;
  /**
   * Makes the scenario's ledger on an orchestrator (one per scenario; the result's task figures come from it).
   * Not for the bridge scenarios, which report through {@link ChaosContext.tally}.
   */
  ledger(o: UnifiedOrchestrator): Ledger;
  /** Registers an orchestrator to be stopped after the scenario whatever happens (the ledger's is registered). */
  own(o: UnifiedOrchestrator): UnifiedOrchestrator;
  /**
   * The usual end: wait for every task to settle (anything still open at `settleMs` is lost), audit, stop and
   * check the stop, audit again.
   */
  conclude(ledger: Ledger, opts?: ConcludeOptions): Promise<{ lostIds: string[] }>;
  /** For scenarios without a ledger (the bridge): the task figures directly. */
  tally(t: Partial<Tally>): void;
}

export interface ConcludeOptions {
  /** How long the load has to settle once submitted; whatever is open then is lost. @default 10_000 (ci), 30_000 (full) */
  settleMs?: number;
  /** The drain timeout given to stop(). @default 5_000 */
  stopTimeoutMs?: number;
  /** Runs after the settle and audit, before the stop (to leave work for the stop on purpose). */
  beforeStop?: () => Promise<void>;
}

export interface Tally {
  submitted: number;
  accepted: number;
  completed: number;
  failed: number;
  timedOut: number;
  cancelled: number;
  deadLettered: number;
  rejected: number;
  rejectedBy: Record<string, number>;
  deduplicated: number;
  lost: number;
  duplicates: number;
}

/** Runs `body` as scenario `name` at `scale`; never throws. */
export async function chaos(
  name: string,
  scale: Scale,
  body: (ctx: ChaosContext) => Promise<void>,
): Promise<ScenarioResult> {
  const seed = baseSeed();
  const guard = processGuard();
  const figures: Record<string, number | string> = {};
  const violations: string[] = [];
  const expectations: Expectation[] = [];
  let ledger: Ledger | undefined;
  const owned = new Set<UnifiedOrchestrator>();
  let lostAtSettle: number | undefined;
  const tally: Partial<Tally> = {};
  const ctx: ChaosContext = {
    scale,
    rng: rng(seed),
    figures,
    violations,
    expectations,
    expect(what, ok, detail) {
      expectations.push(detail === undefined ? { what, ok } : { what, ok, detail: String(detail) });
    },
    ledger(o) {
      if (ledger) throw new Error('one ledger per scenario');
      ledger = new Ledger(o);
      owned.add(o);
      return ledger;
    },
    own(o) {
      owned.add(o);
      return o;
    },
    async conclude(l, opts = {}) {
      const settleMs = opts.settleMs ?? (scale === 'ci' ? 10_000 : 30_000);
      const settled = await l.settled(settleMs);
      const lostIds = l.lostIds();
      lostAtSettle = lostIds.length;
      if (!settled) {
        violations.push(`${l.inflight} task(s) still unsettled ${settleMs} ms after the load ended`);
        figures['state when stuck'] = snapshot(l.o);
      }
      violations.push(...l.audit(settled));
      await opts.beforeStop?.();
      const stop = await stopAndCheck(l.o, { timeoutMs: opts.stopTimeoutMs ?? 5_000 });
      violations.push(...stop.violations);
      figures['stop ms'] = Math.round(stop.stopMs);
      if (stop.cancelledByStop > 0) figures['cancelled by stop'] = stop.cancelledByStop;
      // Whatever the stop cancelled must have settled too, and the counters must still balance. Handles whose result
      // handler is attached late are looked at once it is (the stop cancelled them before it was).
      await sleep(5);
      await l.handlersAttached();
      violations.push(...l.audit(true).map((x) => `after stop: ${x}`));
      return { lostIds };
    },
    tally(t) {
      Object.assign(tally, t);
    },
  };
  const t0 = performance.now();
  let crash: string | undefined;
  try {
    await body(ctx);
  } catch (error) {
    crash = error instanceof Error ? (error.stack ?? describe(error)) : describe(error);
  } finally {
    // Whatever happened, leave nothing running (a stopped orchestrator's stop() is a no-op).
    await Promise.allSettled([...owned].map((o) => within(o.stop({ drain: false, timeoutMs: 1_000 }), 5_000)));
  }
  const durationMs = performance.now() - t0;
  await guard.dispose();
  // The final count reads every handle's settlement: wait for the handlers attached late to have seen it.
  if (ledger) await ledger.handlersAttached();
  if (guard.samples.length > 0) figures['unhandled sample'] = guard.samples[0]!;

  const base: Tally = ledger
    ? {
        submitted: ledger.calls,
        accepted: ledger.tasks.size,
        completed: ledger.outcomes.completed,
        failed: ledger.outcomes.failed,
        timedOut: ledger.outcomes['timed-out'],
        cancelled: ledger.outcomes.cancelled,
        deadLettered: ledger.outcomes['dead-lettered'],
        rejected: ledger.refused,
        rejectedBy: { ...ledger.refusedBy },
        deduplicated: ledger.deduplicated,
        // Lost: open when the load had had its time to settle (a stop cancelling it afterwards does not excuse it),
        // or still without a terminal state after the stop.
        lost: Math.max(lostAtSettle ?? 0, ledger.lostIds().length),
        duplicates: ledger.duplicates(),
      }
    : {
        submitted: 0,
        accepted: 0,
        completed: 0,
        failed: 0,
        timedOut: 0,
        cancelled: 0,
        deadLettered: 0,
        rejected: 0,
        rejectedBy: {},
        deduplicated: 0,
        lost: 0,
        duplicates: 0,
      };
  if (ledger) violations.push(...ledger.stalls);
  const t = { ...base, ...tally };
  return {
    name,
    scale,
    seed,
    ...t,
    unhandled: guard.count,
    violations,
    expectations,
    figures,
    ...(crash !== undefined ? { crash } : {}),
    durationMs: Math.round(durationMs),
    tasksPerSec: durationMs > 0 ? Math.round((t.accepted / durationMs) * 1000) : 0,
  };
}

/** Whether a result passes: nothing lost or duplicated, nothing unhandled, no crash, no violation, every expectation met. */
export function passed(r: ScenarioResult): boolean {
  return (
    r.lost === 0 &&
    r.duplicates === 0 &&
    r.unhandled === 0 &&
    r.crash === undefined &&
    r.violations.length === 0 &&
    r.expectations.every((e) => e.ok)
  );
}

// --- Reporting -----------------------------------------------------------------------------------

function figuresText(r: ScenarioResult): string {
  return Object.entries(r.figures)
    .filter(([k]) => k !== 'unhandled sample')
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

/** One line of figures per scenario. */
export function oneLine(r: ScenarioResult): string {
  const rej = Object.entries(r.rejectedBy)
    .map(([k, v]) => `${k}:${v}`)
    .join(' ');
  return (
    `[chaos] ${r.name} (${r.scale}, seed ${r.seed}) ${passed(r) ? 'PASS' : 'FAIL'}: accepted ${r.accepted}/${r.submitted}, completed ${r.completed}, ` +
    `failed ${r.failed}, timed-out ${r.timedOut}, cancelled ${r.cancelled}, dead-lettered ${r.deadLettered}, rejected ${r.rejected}${rej ? ` (${rej})` : ''}, ` +
    `dedup ${r.deduplicated}, lost ${r.lost}, dup ${r.duplicates}, unhandled ${r.unhandled}, ${r.durationMs} ms, ${r.tasksPerSec} tasks/s` +
    (Object.keys(r.figures).length > 0 ? ` | ${figuresText(r)}` : '') +
    (r.violations.length > 0 ? ` | VIOLATIONS: ${r.violations.join(' / ')}` : '') +
    (r.expectations.some((e) => !e.ok)
      ? ` | UNMET: ${r.expectations
          .filter((e) => !e.ok)
          .map((e) => `${e.what}${e.detail ? ` (${e.detail})` : ''}`)
          .join(' / ')}`
      : '') +
    (r.crash ? ` | CRASH: ${r.crash.split('\n')[0]}` : '')
  );
}

/** The Markdown table of a run. */
export function table(results: readonly ScenarioResult[]): string {
  const head =
    '| Scenario | Tasks (accepted / submitted) | Completed | Failed / timed-out / cancelled / dead-lettered / rejected | Lost | Dup | Unhandled | Tasks/s | Notes |';
  const sep = '| --- | --- | --- | --- | --- | --- | --- | --- | --- |';
  const rows = results.map((r) => {
    const notes = [
      passed(r) ? '' : '**FAIL**',
      Object.keys(r.rejectedBy).length > 0
        ? `rejected ${Object.entries(r.rejectedBy)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}`
        : '',
      figuresText(r),
      r.deduplicated > 0 ? `deduplicated ${r.deduplicated}` : '',
      r.violations.length > 0 ? `violations: ${r.violations.join('; ')}` : '',
      r.expectations.some((e) => !e.ok)
        ? `unmet: ${r.expectations
            .filter((e) => !e.ok)
            .map((e) => e.what)
            .join('; ')}`
        : '',
      r.crash ? `crash: ${r.crash.split('\n')[0]}` : '',
    ]
      .filter((x) => x !== '')
      .join('; ')
      .replaceAll('|', '\\|');
    return `| ${r.name} | ${r.accepted} / ${r.submitted} | ${r.completed} | ${r.failed} / ${r.timedOut} / ${r.cancelled} / ${r.deadLettered} / ${r.rejected} | ${r.lost} | ${r.duplicates} | ${r.unhandled} | ${r.tasksPerSec} | ${notes} |`;
  });
  return [head, sep, ...rows].join('\n');
}
