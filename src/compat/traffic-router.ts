/**
 * TrafficRouter: splits legacy calls between the legacy implementation and the unified one by percentage, with the
 * same key always on the same side; shadow mode; rollback; traffic changes across the cluster through the bridge.
 */
import { isDeepStrictEqual } from 'node:util';
import { Counter, Gauge, Histogram } from 'prom-client';
import { isPercent, parseTraffic, type ControlMessage, type TrafficSetting } from '../bridge/bridge.js';
import { ValidationError } from '../errors.js';
import type { ActorOptions } from '../health/audit.js';
import { TypedEmitter } from '../util/typed-emitter.js';
import { COMPAT_METRIC_NAMES, DEFAULT_METRIC_PREFIX } from '../health/metric-names.js';
import {
  isLegacyError,
  legacyMethod,
  LegacyCalls,
  type LegacyAgentStatus,
  type LegacyImplementation,
  type LegacyMethod,
  type LegacyOrchestrator,
  type LegacyResult,
  type LegacyShutdown,
  type LegacyTask,
  type LegacyTaskStatus,
} from './legacy.js';
import { Fifo } from '../util/fifo.js';
import { resolveRouterOptions, type ResolvedRouterOptions, type TrafficRouterOptions } from './options.js';

/** Where a call goes. */
export type TrafficSide = 'legacy' | 'unified';

/** One side of a shadow comparison. */
export interface ShadowSide {
  /** `ok` / `error` for a call; for a delegated task its final status (`completed`, `failed`, ...); `threw` when the call threw; `unfinished` when it did not finish in time. */
  readonly outcome: string;
  /** The legacy error code, when it failed. */
  readonly code?: string;
  /** Ms from the call to its answer (for a delegated task: to its final status). */
  readonly latencyMs: number;
}

/** A shadow comparison: the same call answered by legacy and run on the unified side. */
export interface ShadowComparison {
  /** The call that was shadowed. */
  readonly method: 'spawnAgent' | 'delegateTaskToAgent';
  /** The split key of the call, when it had one. */
  readonly key: string | undefined;
  /** How legacy answered (the answer the caller got). */
  readonly legacy: ShadowSide;
  /** How the unified side answered the same call. */
  readonly unified: ShadowSide;
  /** What differed; empty when they matched. */
  readonly differences: ReadonlyArray<'outcome' | 'error_code' | 'result' | 'latency'>;
  /** `match`, `mismatch`, or `incomplete` when a side did not finish within `shadowTimeoutMs`. */
  readonly result: 'match' | 'mismatch' | 'incomplete';
}

/** Events of a TrafficRouter. */
export interface TrafficRouterEvents {
  /** The split or shadow mode changed (here, or on another node / by the CLI when `source` is `cluster`). */
  'traffic:changed': {
    /** The percent of calls for the unified side now, 0 to 100. */
    readonly percent: number;
    /** Whether shadow mode runs now. */
    readonly shadow: boolean;
    /** The setting before. */
    readonly previous: TrafficSetting;
    /** `local`: set on this router; `cluster`: a control message from the cluster. */
    readonly source: 'local' | 'cluster';
    /** The node (or operator tool) that sent it, for `cluster`. */
    readonly from?: string;
  };
  /**
   * A rollback: every call to legacy at once, shadow mode off (after the `traffic:changed` it causes, if any). One from
   * the cluster that changes nothing here (this router's own, heard back) is not reported.
   */
  'traffic:rollback': {
    /** Why, when the rollback gave a reason. */
    readonly reason?: string;
    /** `local`: this router's `rollback()`; `cluster`: a rollback from another node or the CLI. */
    readonly source: 'local' | 'cluster';
    /** The node (or operator tool) that sent it, for `cluster`. */
    readonly from?: string;
  };
  /** Every finished shadow comparison. */
  'shadow:compared': ShadowComparison;
  /** A shadow comparison that found a difference (also reported as `shadow:compared`). */
  'shadow:difference': ShadowComparison;
  /** A listener threw (without a listener for this event, a process warning says so instead). */
  'listener:error': {
    /** The event whose listener threw. */
    readonly event: string;
    /** What it threw. */
    readonly error: unknown;
  };
}

/** A router's setting and counts since it was made. */
export interface TrafficRouterStats {
  /** The percent of calls for the unified side now, 0 to 100. */
  readonly percent: number;
  /** Whether shadow mode runs now. */
  readonly shadow: boolean;
  /**
   * Calls made to each side (a status call for an id this router did not hand out may ask both), and calls made on
   * the unified side for shadow runs.
   */
  readonly calls: Readonly<Record<TrafficSide | 'shadow', number>>;
  /** Shadow comparisons by result. */
  readonly shadowRuns: {
    /** Both sides agreed. */
    readonly match: number;
    /** They differed (see `shadow:difference`). */
    readonly mismatch: number;
    /** A side did not finish within `shadowTimeoutMs`. */
    readonly incomplete: number;
    /** Not run: `maxShadowInFlight` comparisons were already running. */
    readonly skipped: number;
    /** Running now. */
    readonly inFlight: number;
  };
}

/** Hash buckets: a percentage is honoured to 0.01. */
const BUCKETS = 10_000;

/**
 * The bucket of a key, 0 to 9,999: FNV-1a over its UTF-16 units, then a 32-bit avalanche so close keys spread. A
 * TrafficRouter sends a key to the unified side when its bucket is below `percent` × 100, so the same key lands on the
 * same side on every node and in every process, and raising the percentage only moves keys to the unified side.
 *
 * @example
 * ```ts
 * // Which tenants would a 5% split send to the unified orchestrator?
 * const early = tenants.filter((id) => bucketOf(id) < 5 * 100);
 * ```
 */
export function bucketOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) % BUCKETS;
}

/** The terminal legacy task states. */
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'timeout']);

interface Metrics {
  readonly calls: Counter<'method' | 'side'>;
  readonly duration: Histogram<'method' | 'side'>;
  readonly comparisons: Counter<'method' | 'result'>;
  readonly differences: Counter<'method' | 'kind'>;
}

/**
 * Routes legacy calls to a legacy implementation or to the unified orchestrator (through an
 * {@link OrchestratorsCompatibilityAdapter}) by percentage. It answers the legacy calls itself, in both spellings.
 * With every flag off (0%, no shadow) every call goes to legacy untouched: its answers and errors are legacy's own.
 *
 * @example
 * ```ts
 * const router = new TrafficRouter({ legacy, unified: new OrchestratorsCompatibilityAdapter(orchestrator), orchestrator });
 * await router.setPercent(10);   // every node of the cluster moves together
 * await router.rollback('p95 regression');
 * ```
 */
export class TrafficRouter extends LegacyCalls {
  readonly #o: ResolvedRouterOptions;
  readonly #events = new TypedEmitter<TrafficRouterEvents>();
  /** Each side's legacy methods, found once in whichever spelling it has. */
  readonly #methods: Readonly<
    Record<TrafficSide, Partial<Record<LegacyMethod, (...args: unknown[]) => Promise<unknown>>>>
  >;
  #percent: number;
  #shadow: boolean;
  /** Ids handed out by each side, so that status and shutdown calls go back to that side. */
  readonly #owner = new Map<string, TrafficSide>();
  /** The ids of `#owner`, oldest first, for eviction past `maxOwnedIds`. */
  readonly #ownedOrder = new Fifo<string>();
  /** Whether any call has gone to the unified side: until then an unknown id is legacy's alone. */
  #usedUnified = false;
  readonly #calls: Record<TrafficSide | 'shadow', number> = { legacy: 0, unified: 0, shadow: 0 };
  readonly #runs = { match: 0, mismatch: 0, incomplete: 0, skipped: 0 };
  readonly #inFlight = new Set<Promise<void>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #metrics: Metrics | undefined;
  readonly #onControl = (message: ControlMessage): void => this.#applyControl(message);
  #closed = false;

  /** Throws ValidationError for bad options (a side without the legacy calls, a percentage outside 0–100, ...). */
  constructor(options: TrafficRouterOptions) {
    super();
    this.#o = resolveRouterOptions(options, isDeepStrictEqual);
    const methods = (
      impl: LegacyImplementation,
    ): Partial<Record<LegacyMethod, (...args: unknown[]) => Promise<unknown>>> => {
      const out: Partial<Record<LegacyMethod, (...args: unknown[]) => Promise<unknown>>> = {};
      for (const m of [
        'spawnAgent',
        'delegateTaskToAgent',
        'getAgentStatus',
        'getTaskStatus',
        'shutdownAgent',
        'waitForTask',
      ] as const) {
        const fn = legacyMethod(impl, m);
        if (fn) out[m] = fn as (...args: unknown[]) => Promise<unknown>;
      }
      return out;
    };
    this.#methods = { legacy: methods(this.#o.legacy), unified: methods(this.#o.unified) };
    const standing = this.#o.orchestrator?.controlState().traffic;
    this.#percent = standing?.percent ?? this.#o.percent;
    this.#shadow = standing?.shadow ?? this.#o.shadow;
    this.#metrics = this.#newMetrics();
    this.#o.orchestrator?.on('bridge:control', this.#onControl);
  }

  /** The share of calls (0–100) the unified side takes now. */
  get percent(): number {
    return this.#percent;
  }

  /** Whether shadow mode runs. */
  get shadow(): boolean {
    return this.#shadow;
  }

  /** The side a key goes to at the current percentage. */
  sideOf(key: string): TrafficSide {
    return bucketOf(key) < this.#percent * (BUCKETS / 100) ? 'unified' : 'legacy';
  }

  /**
   * Sets the share of calls for the unified side; the next call already follows it. With an orchestrator, every
   * node of the cluster moves too (the promise settles once the message is sent). Throws ValidationError (at once)
   * for a value outside 0–100.
   */
  setPercent(percent: number, options?: ActorOptions): Promise<void> {
    if (!isPercent(percent))
      throw new ValidationError(
        'percent',
        `Expected \`percent\` to be a number from 0 to 100, got ${typeof percent === 'number' ? percent : typeof percent}`,
      );
    this.#set({ percent, shadow: this.#shadow }, 'local');
    return this.#broadcast({ kind: 'traffic', value: { percent } }, options);
  }

  /** Turns shadow mode on or off (here and, with an orchestrator, on every node). */
  setShadow(on: boolean, options?: ActorOptions): Promise<void> {
    if (typeof on !== 'boolean')
      throw new ValidationError('shadow', `Expected \`shadow\` to be a boolean, got ${typeof on}`);
    this.#set({ percent: this.#percent, shadow: on }, 'local');
    return this.#broadcast({ kind: 'traffic', value: { shadow: on } }, options);
  }

  /** Sends every call back to legacy at once (0%, shadow off), here and on every node. */
  rollback(reason?: string, options?: ActorOptions): Promise<void> {
    let why: string | undefined;
    try {
      why = reason === undefined ? undefined : String(reason);
    } catch {
      why = 'rollback'; // a reason that cannot be turned into text must not stop the rollback
    }
    this.#rollback(why, 'local');
    return this.#broadcast({ kind: 'rollback', ...(why !== undefined ? { reason: why } : {}) }, options);
  }

  /** Adds a listener for a router event; a listener that throws is reported as `listener:error`, not to the caller. */
  on<E extends keyof TrafficRouterEvents>(event: E, listener: (payload: TrafficRouterEvents[E]) => void): this {
    this.#events.on(event, listener);
    return this;
  }

  /** Removes a listener added with `on`. */
  off<E extends keyof TrafficRouterEvents>(event: E, listener: (payload: TrafficRouterEvents[E]) => void): this {
    this.#events.off(event, listener);
    return this;
  }

  /** The current split and the counts of calls and shadow comparisons. */
  stats(): TrafficRouterStats {
    return {
      percent: this.#percent,
      shadow: this.#shadow,
      calls: { ...this.#calls },
      shadowRuns: { ...this.#runs, inFlight: this.#inFlight.size },
    };
  }

  /**
   * Stops following the cluster's traffic changes and waits for running shadow comparisons (each ends within
   * `shadowTimeoutMs`). Calls still work afterwards, at the last split; but a wait for a task that polls (a side
   * without `waitForTask`), which holds the process while the router is open, no longer does once it is closed.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#o.orchestrator?.off('bridge:control', this.#onControl);
      for (const timer of this.#timers) timer.unref(); // its waits go on, but no longer hold the process
    }
    await Promise.allSettled([...this.#inFlight]);
  }

  // --- The legacy calls --------------------------------------------------------------------------

  /**
   * Spawns an agent on the side the split picks (at random unless `key` gives spawnAgent a key); in shadow mode a call
   * answered by legacy also spawns one on the unified side, compares, and shuts that one down.
   */
  async spawnAgent(role: string): Promise<LegacyResult<string>> {
    const key = this.#o.key({ method: 'spawnAgent', role });
    const side = this.#route(key);
    const started = performance.now();
    const answer = this.#call(side, 'spawnAgent', [role]);
    if (side === 'legacy' && this.#shadow) this.#shadowSpawn(role, key, answer, started);
    const value = await answer;
    this.#own(value, side);
    return value;
  }

  /**
   * Delegates a task to the side its key picks; the id answered is remembered with that side, so status calls about it
   * go there. In shadow mode a task answered by legacy also runs on the unified side (without the caller's `task_id`)
   * and their final statuses are compared.
   */
  async delegateTaskToAgent(task: LegacyTask): Promise<LegacyResult<string>> {
    const key = this.#o.key({ method: 'delegateTaskToAgent', task });
    const side = this.#route(key);
    const started = performance.now();
    const answer = this.#call(side, 'delegateTaskToAgent', [task]);
    if (side === 'legacy' && this.#shadow) this.#shadowDelegate(task, key, answer, started);
    const value = await answer;
    this.#own(value, side);
    return value;
  }

  /** Asks the side that handed out `agentId` (see {@link getTaskStatus} for ids this router does not know). */
  getAgentStatus(agentId: string): Promise<LegacyResult<LegacyAgentStatus>> {
    return this.#byId('getAgentStatus', agentId, [agentId]);
  }

  /**
   * Asks the side that handed out `taskId`. An id this router does not know (handed out before it, or forgotten past
   * `maxOwnedIds`) goes to legacy, and to the unified side too when legacy answers one of `notFoundCodes` and a call
   * has gone to the unified side.
   */
  getTaskStatus(taskId: string): Promise<LegacyResult<LegacyTaskStatus>> {
    return this.#byId('getTaskStatus', taskId, [taskId]);
  }

  /** Asks the side that handed out `agentId` to shut it down (see {@link getTaskStatus} for ids it does not know). */
  shutdownAgent(agentId: string): Promise<LegacyResult<LegacyShutdown>> {
    return this.#byId('shutdownAgent', agentId, [agentId]);
  }

  /**
   * Waits for a task on the side that has it (polling `getTaskStatus` when that side has no `waitForTask`: the poll
   * keeps the process alive while the caller waits, until the wait ends or the router is closed).
   */
  waitForTask(taskId: string, timeoutSeconds?: number): Promise<LegacyResult<LegacyTaskStatus>> {
    return this.#byId('waitForTask', taskId, [taskId, timeoutSeconds]);
  }

  // --- Routing -----------------------------------------------------------------------------------

  #route(key: string | undefined): TrafficSide {
    if (this.#percent <= 0) return 'legacy';
    if (this.#percent >= 100) return 'unified';
    if (key === undefined) return Math.random() * 100 < this.#percent ? 'unified' : 'legacy';
    return this.sideOf(key);
  }

  /**
   * Calls `method` on a side, counted and timed (as `shadow` for a shadow run). A side that throws rethrows here:
   * legacy's errors pass untouched.
   */
  async #call<M extends LegacyMethod>(
    side: TrafficSide,
    method: M,
    args: unknown[],
    shadow = false,
  ): Promise<Awaited<ReturnType<NonNullable<LegacyOrchestrator[M]>>>> {
    const metricSide = shadow ? 'shadow' : side;
    this.#calls[metricSide]++;
    if (side === 'unified' && !shadow) this.#usedUnified = true;
    const started = performance.now();
    try {
      if (method === 'waitForTask')
        return (await this.#wait(side, args[0] as string, args[1] as number | undefined)) as never;
      return (await this.#methods[side][method]!(...args)) as never;
    } finally {
      if (this.#metrics) {
        this.#metrics.calls.inc({ method, side: metricSide });
        this.#metrics.duration.observe({ method, side: metricSide }, (performance.now() - started) / 1_000);
      }
    }
  }

  /** Remembers which side handed out an id (answered as a string). */
  #own(value: unknown, side: TrafficSide): void {
    if (typeof value !== 'string') return;
    if (!this.#owner.has(value)) this.#ownedOrder.push(value);
    this.#owner.set(value, side);
    while (this.#owner.size > this.#o.maxOwnedIds) this.#owner.delete(this.#ownedOrder.shift()!);
  }

  /**
   * A call about an id goes to the side that handed it out. An id this router does not know goes to legacy; when
   * legacy does not know it either and the unified side has been used, the unified side is asked too.
   */
  async #byId<M extends 'getAgentStatus' | 'getTaskStatus' | 'shutdownAgent' | 'waitForTask'>(
    method: M,
    id: string,
    args: unknown[],
  ): Promise<never> {
    const owner = typeof id === 'string' ? this.#owner.get(id) : undefined;
    if (owner) return (await this.#call(owner, method, args)) as never;
    const answer = await this.#call('legacy', method, args);
    if (!this.#usedUnified || !isLegacyError(answer) || !this.#o.notFoundCodes.has(answer.error.code))
      return answer as never;
    const unified = await this.#call('unified', method, args);
    return (isLegacyError(unified) ? answer : unified) as never;
  }

  /** `waitForTask` on a side, or a poll of its `getTaskStatus` until the task is terminal (or the timeout). */
  async #wait(
    side: TrafficSide,
    taskId: string,
    timeoutSeconds: number | undefined,
  ): Promise<LegacyResult<LegacyTaskStatus>> {
    const { waitForTask: wait, getTaskStatus: get } = this.#methods[side] as Pick<
      LegacyOrchestrator,
      'waitForTask' | 'getTaskStatus'
    >;
    if (wait) return timeoutSeconds === undefined ? wait(taskId) : wait(taskId, timeoutSeconds);
    // The router's own wait (polling): it checks what the side's own waitForTask would have.
    if (
      timeoutSeconds !== undefined &&
      !(typeof timeoutSeconds === 'number' && timeoutSeconds > 0 && Number.isFinite(timeoutSeconds))
    ) {
      return { error: { code: 'INVALID_REQUEST', message: 'Expected `timeout` to be a number of seconds > 0' } };
    }
    const deadline = timeoutSeconds === undefined ? Infinity : performance.now() + timeoutSeconds * 1_000;
    for (;;) {
      const status = await get(taskId);
      if (isLegacyError(status) || TERMINAL.has(status.status) || performance.now() >= deadline) return status;
      await this.#sleep(Math.min(this.#o.pollIntervalMs, Math.max(0, deadline - performance.now())));
    }
  }

  // --- Shadow mode -------------------------------------------------------------------------------

  #shadowSpawn(
    role: string,
    key: string | undefined,
    legacyAnswer: Promise<LegacyResult<string>>,
    started: number,
  ): void {
    this.#shadowRun('spawnAgent', key, async () => {
      const unifiedStarted = performance.now();
      const [legacy, unified] = await Promise.allSettled([
        legacyAnswer,
        this.#call('unified', 'spawnAgent', [role], true),
      ]);
      const legacyMs = performance.now() - started;
      const unifiedMs = performance.now() - unifiedStarted;
      // The shadow agent served nobody: give it back (part of the run, so that close() waits for it).
      if (unified.status === 'fulfilled' && typeof unified.value === 'string')
        await this.#call('unified', 'shutdownAgent', [unified.value], true).catch(() => {});
      return [callSide(legacy, legacyMs), callSide(unified, unifiedMs), undefined];
    });
  }

  #shadowDelegate(
    task: LegacyTask,
    key: string | undefined,
    legacyAnswer: Promise<LegacyResult<string>>,
    started: number,
  ): void {
    // The shadow copy goes without the caller's task id: it is not the caller's task on the unified side.
    const copy = typeof task === 'object' && task !== null ? withoutCallerId(task) : task;
    this.#shadowRun('delegateTaskToAgent', key, async (deadline) => {
      const unifiedStarted = performance.now();
      const [legacy, unified] = await Promise.all([
        this.#finalStatus('legacy', legacyAnswer, started, deadline),
        this.#finalStatus(
          'unified',
          this.#call('unified', 'delegateTaskToAgent', [copy], true),
          unifiedStarted,
          deadline,
        ),
      ]);
      return [legacy.side, unified.side, [legacy.result, unified.result]];
    });
  }

  /** Follows a delegation to its final status (or until the deadline). */
  async #finalStatus(
    side: TrafficSide,
    answer: Promise<LegacyResult<string>>,
    started: number,
    deadline: number,
  ): Promise<{ side: ShadowSide; result?: unknown }> {
    let id: LegacyResult<string>;
    try {
      id = await answer;
    } catch {
      return { side: { outcome: 'threw', latencyMs: performance.now() - started } };
    }
    if (isLegacyError(id))
      return { side: { outcome: 'error', code: id.error.code, latencyMs: performance.now() - started } };
    const seconds = Math.max(0.001, (deadline - performance.now()) / 1_000);
    let status: LegacyResult<LegacyTaskStatus>;
    try {
      status = await this.#wait(side, id, seconds);
    } catch {
      return { side: { outcome: 'threw', latencyMs: performance.now() - started } };
    }
    const latencyMs = performance.now() - started;
    if (isLegacyError(status)) return { side: { outcome: 'error', code: status.error.code, latencyMs } };
    if (!TERMINAL.has(status.status)) return { side: { outcome: 'unfinished', latencyMs } };
    return {
      side: { outcome: status.status, ...(status.error ? { code: status.error.code } : {}), latencyMs },
      result: status.result,
    };
  }

  /** Runs one bounded shadow comparison in the background and records it. */
  #shadowRun(
    method: ShadowComparison['method'],
    key: string | undefined,
    run: (deadline: number) => Promise<[ShadowSide, ShadowSide, [unknown, unknown] | undefined]>,
  ): void {
    if (this.#inFlight.size >= this.#o.maxShadowInFlight) {
      this.#runs.skipped++;
      this.#metrics?.comparisons.inc({ method, result: 'skipped' });
      return;
    }
    const deadline = performance.now() + this.#o.shadowTimeoutMs;
    const done = run(deadline)
      .then(([legacy, unified, results]) => this.#record(method, key, legacy, unified, results))
      .catch(() => {}) // a shadow run never fails the caller's call
      .finally(() => this.#inFlight.delete(done));
    this.#inFlight.add(done);
  }

  #record(
    method: ShadowComparison['method'],
    key: string | undefined,
    legacy: ShadowSide,
    unified: ShadowSide,
    results: [unknown, unknown] | undefined,
  ): void {
    const differences: Array<ShadowComparison['differences'][number]> = [];
    const incomplete = legacy.outcome === 'unfinished' || unified.outcome === 'unfinished';
    if (!incomplete) {
      if (legacy.outcome !== unified.outcome) differences.push('outcome');
      else if (legacy.code !== unified.code) differences.push('error_code');
      else if (results && legacy.outcome === 'completed') {
        let equal: boolean;
        try {
          equal = this.#o.compare(results[0], results[1]) === true;
        } catch {
          equal = false; // a comparator that throws cannot vouch for equality
        }
        if (!equal) differences.push('result');
      }
      if (
        unified.latencyMs > legacy.latencyMs * this.#o.latencyRatio &&
        unified.latencyMs - legacy.latencyMs > this.#o.latencyMinMs
      )
        differences.push('latency');
    }
    const result = incomplete ? 'incomplete' : differences.length > 0 ? 'mismatch' : 'match';
    this.#runs[result]++;
    const comparison: ShadowComparison = { method, key, legacy, unified, differences, result };
    if (this.#metrics) {
      this.#metrics.comparisons.inc({ method, result });
      for (const kind of differences) this.#metrics.differences.inc({ method, kind });
    }
    this.#events.emit('shadow:compared', comparison);
    if (result === 'mismatch') this.#events.emit('shadow:difference', comparison);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        resolve();
      }, ms);
      // A caller awaits this poll (a wait for a task): it holds the process, as the side's own waitForTask would,
      // until the wait ends. A closed router holds nothing (close() lets go of the polls still running).
      if (this.#closed) timer.unref();
      this.#timers.add(timer);
    });
  }

  // --- Traffic changes ---------------------------------------------------------------------------

  #set(next: TrafficSetting, source: 'local' | 'cluster', from?: string): void {
    const previous = { percent: this.#percent, shadow: this.#shadow };
    if (previous.percent === next.percent && previous.shadow === next.shadow) return;
    this.#percent = next.percent;
    this.#shadow = next.shadow;
    this.#events.emit('traffic:changed', { ...next, previous, source, ...(from !== undefined ? { from } : {}) });
  }

  #rollback(reason: string | undefined, source: 'local' | 'cluster', from?: string): void {
    const changed = this.#percent !== 0 || this.#shadow;
    this.#set({ percent: 0, shadow: false }, source, from);
    // A rollback from the cluster that finds nothing to undo (this router's own, heard back) is not news.
    if (changed || source === 'local')
      this.#events.emit('traffic:rollback', {
        ...(reason !== undefined ? { reason } : {}),
        source,
        ...(from !== undefined ? { from } : {}),
      });
  }

  #applyControl(message: ControlMessage): void {
    if (message.kind === 'rollback') this.#rollback(message.reason, 'cluster', message.from);
    else if (message.kind === 'traffic') {
      const next = parseTraffic(message.value, { percent: this.#percent, shadow: this.#shadow });
      if (next) this.#set(next, 'cluster', message.from);
    }
  }

  /** Tells every node (and this one's audit trail) through the orchestrator, when there is one and it runs. */
  #broadcast(message: ControlMessage, options: ActorOptions | undefined): Promise<void> {
    const orchestrator = this.#o.orchestrator;
    if (!orchestrator || orchestrator.state !== 'running') return Promise.resolve();
    const actor = options?.actor;
    return orchestrator.broadcast(typeof actor === 'string' && actor !== '' ? { ...message, actor } : message);
  }

  #newMetrics(): Metrics | undefined {
    const m = this.#o.metrics;
    if (m === false) return undefined;
    const registry = m.registry ?? this.#o.orchestrator?.metricsRegistry;
    if (!registry) return undefined;
    const prefix = m.prefix ?? DEFAULT_METRIC_PREFIX;
    const name = (key: keyof typeof COMPAT_METRIC_NAMES): string => prefix + COMPAT_METRIC_NAMES[key];
    // A second router on the same registry shares the metrics (prom-client refuses a name twice).
    const existing = <T>(n: string, make: () => T): T => (registry.getSingleMetric(n) as T | undefined) ?? make();
    const registers = [registry];
    const gauge = (key: 'trafficPercent' | 'shadow', help: string, read: () => number): void => {
      const n = name(key);
      if (registry.getSingleMetric(n)) registry.removeSingleMetric(n); // the newest router reports the split
      new Gauge({
        name: n,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    };
    gauge('trafficPercent', 'Share of legacy calls routed to the unified orchestrator, 0 to 100.', () => this.#percent);
    gauge('shadow', '1 while shadow mode runs.', () => (this.#shadow ? 1 : 0));
    return {
      calls: existing(
        name('calls'),
        () =>
          new Counter({
            name: name('calls'),
            help: 'Legacy calls by method and the side that answered them (shadow runs as side shadow).',
            labelNames: ['method', 'side'],
            registers,
          }),
      ),
      duration: existing(
        name('callDuration'),
        () =>
          new Histogram({
            name: name('callDuration'),
            help: 'Seconds a legacy call took, by method and side.',
            labelNames: ['method', 'side'],
            buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
            registers,
          }),
      ),
      comparisons: existing(
        name('shadowComparisons'),
        () =>
          new Counter({
            name: name('shadowComparisons'),
            help: 'Shadow comparisons by method and result (match, mismatch, incomplete, skipped).',
            labelNames: ['method', 'result'],
            registers,
          }),
      ),
      differences: existing(
        name('shadowDifferences'),
        () =>
          new Counter({
            name: name('shadowDifferences'),
            help: 'Differences found in shadow mode, by method and kind (outcome, error_code, result, latency).',
            labelNames: ['method', 'kind'],
            registers,
          }),
      ),
    };
  }
}

function callSide(settled: PromiseSettledResult<LegacyResult<string>>, latencyMs: number): ShadowSide {
  if (settled.status === 'rejected') return { outcome: 'threw', latencyMs };
  const value = settled.value;
  return isLegacyError(value) ? { outcome: 'error', code: value.error.code, latencyMs } : { outcome: 'ok', latencyMs };
}

/** The task without the caller's id, own fields only (a copy the unified side validates like any other). */
function withoutCallerId(task: LegacyTask): LegacyTask {
  const copy: Record<string, unknown> = {};
  try {
    for (const key of Object.keys(task)) {
      // Defined, not assigned: an own `__proto__` key stays a plain field of the copy.
      if (key !== 'task_id' && key !== 'taskId')
        Object.defineProperty(copy, key, {
          value: (task as Record<string, unknown>)[key],
          enumerable: true,
          writable: true,
          configurable: true,
        });
    }
  } catch {
    return {}; // unreadable: the unified side refuses it as INVALID_REQUEST
  }
  return copy;
}
