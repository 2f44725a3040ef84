/**
 * TaskExecutionEngine: the state machine of an accepted task, from submit to its one terminal state.
 *
 * ```
 * submit ─ admission ─┬─ a free agent ───────────────────────────────────────→ running
 *                     └─ none free, or held (halt, rate limit) ──────────────→ waiting
 * waiting ─ a matching agent frees (late binding), a limit refills, resume ──→ running
 * running ─ execute resolves ────────────────────────────────────────────────→ done: completed
 * running ─ fails or times out, a retry left ────────────────────────────────→ backoff ─ delay ─→ running | waiting
 * running ─ a rate limit's retry-after, a halt (attempt not counted) ────────→ waiting
 * running ─ fails or times out, no retry left ───────────────────────────────→ done: failed | timed-out | dead-lettered
 * waiting | backoff ─ no agent or pool can serve it any more ────────────────→ done: failed | dead-lettered
 * waiting | running | backoff ─ cancel, stop, its deadlineMs ────────────────→ done: cancelled | timed-out
 * ```
 *
 * The engine owns the phase of each task (`TaskRecord.phase`) and every move between phases; its parts hold the
 * rest: the waiting room (where waiting tasks sit, and which one a freed agent takes), the capability index, routing
 * cache and strategy, affinity, attempt and task deadlines, admission, idempotency, dead letters and counters.
 *
 * Invariant: every accepted task ends in exactly one terminal state and emits exactly one terminal event. Every way
 * out (`#giveUp` when no attempt is left, `#abort` for a cancel or a deadline, a completed attempt) goes through
 * `#finish`, which does everything an ending does, once.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../util/timers.js';
import {
  NoCapableAgentError,
  OrchestratorNotStartedError,
  type OrchestratorHaltedError,
  OrchestratorStoppedError,
  QueueFullError,
  TaskCancelledError,
  TaskDeadLetteredError,
  TaskNotFoundError,
  TaskTimeoutError,
  ValidationError,
  isInstance,
  type AttemptRecord,
} from '../errors.js';
import type { ResourceEvents } from '../resources/events.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import type { EngineEvents, TaskOutcome } from './events.js';
import type { AgentPoolManager, RoutingListener } from '../pool/agent-pool-manager.js';
import type { WaitingDemand } from '../pool/pool.js';
import type { AgentRecord } from '../pool/agent-record.js';
import type { ResourceManager } from '../resources/resource-manager.js';
import { retryAfterMs } from '../resources/retry-after.js';
import { checkFaithful } from '../bridge/codec.js';
import { admissionRefusal, budgetExceededError } from './admission.js';
import { AffinityTable } from './affinity.js';
import { CapabilityIndex } from './capability-index.js';
import { DeadlineHeap, type HeapEntry } from './deadline-heap.js';
import { Deadlines } from './deadlines.js';
import { DeadLetterList, deadLetterOf, type DeadLetter } from './dead-letter.js';
import { EngineCounters, type EngineStats } from './engine-stats.js';
import { followerHandle, IdempotencyCache, type IdempotencyHit } from './idempotency.js';
import { RoutingCache } from './routing-cache.js';
import { ROUTING_STRATEGIES, type RoutingStrategy } from './routing-strategy.js';
import { ProgressFeed, type ProgressStream, type ProgressUpdate } from './progress.js';
import {
  Attempt,
  AttemptContext,
  type CostSink,
  requirementSignature,
  TaskRecord,
  validateTask,
  type Task,
  type TaskHandle,
  type TaskSpec,
} from './task.js';
import { WaitingRoom } from './waiting-room.js';
import type { ResolvedEngineOptions } from './options.js';

/** What the engine reads of the orchestrator's options: its own, and the clock. */
type EngineSettings = ResolvedEngineOptions & {
  readonly clock: Clock;
  /** The orchestrator's `bridge` option: given, payloads must cross processes unchanged (bridge/codec.ts). */
  readonly bridge?: unknown;
};

// The counters' type moved beside them; the orchestrator and the public API still take it from here.
export type { EngineStats } from './engine-stats.js';

/** A live task as `orchestrator.task(id)` reports it. */
export interface TaskSnapshot {
  /** The task's id. */
  readonly id: string;
  /** The task's `type`. */
  readonly type: string;
  /** The task's tenant, if it has one. */
  readonly tenantId: string | undefined;
  /** Its priority as submitted (aging in the queue does not change it). */
  readonly priority: number;
  /** Waiting for an agent (or held by a halt or a rate limit), running an attempt, or waiting out a retry's backoff. */
  readonly phase: 'waiting' | 'running' | 'backoff';
  /** Attempts started so far. */
  readonly attempts: number;
  /** The agent running it, while running. */
  readonly agentId: string | undefined;
  /** Clock time (the `clock` option's) it was accepted. */
  readonly acceptedAt: number;
}

/**
 * Told of every attempt start and terminal state, synchronously and without an event payload: the metrics use it, so
 * counting a task costs no allocation. Implementations must not throw (they are not isolated like listeners).
 */
export interface TaskObserver {
  /** An attempt of a task of `type` started after waiting `waitedMs` ms for an agent. */
  attemptStarted(type: string, waitedMs: number): void;
  /** A task of `type` reached `outcome`, `latencyMs` ms after it was accepted. */
  taskEnded(type: string, outcome: TaskOutcome, latencyMs: number): void;
}

/**
 * The one observer of durable runs (src/store/durable-runs.ts): told each step of a task accepted with
 * `acceptRun`, and of no other, so that a host without a store pays one boolean test per step. Implementations must
 * not throw.
 */
export interface RunObserver {
  /** An attempt started on `agentId`. */
  started(task: TaskRecord, attempt: number, agentId: string, at: number): void;
  /**
   * The task waits again: `retrying` (a backoff of `delayMs`), `deferred` (a rate limit's retry-after), or
   * `interrupted` (a halt aborted its attempt).
   */
  waiting(
    task: TaskRecord,
    kind: 'retrying' | 'deferred' | 'interrupted',
    attempt: number,
    error: unknown,
    delayMs: number | undefined,
    at: number,
  ): void;
  /**
   * The task left this engine: its terminal `outcome` with the result (for `completed`) or the error, or `released`
   * when stop() gave it back unfinished. `agentId` is the agent of the completing attempt.
   */
  ended(
    task: TaskRecord,
    outcome: TaskOutcome | 'released',
    value: unknown,
    agentId: string | undefined,
    at: number,
  ): void;
}

/** What `acceptRun` needs beyond the task: its id and what earlier nodes did with it. */
export interface RunAcceptance {
  /** The run's id, which the task keeps. */
  readonly id: string;
  /** Attempts already started (on this node or others); the next attempt is numbered after them. */
  readonly attempts: number;
  /** Times it was taken over from a dead node (`ctx.recoveries`). */
  readonly recoveries: number;
  /** Counted as submitted here (a submit), rather than adopted from the store. */
  readonly submitted: boolean;
}

type EngineState = 'idle' | 'running' | 'draining' | 'stopped';

/** The longest delay one Node timer holds. */
const MAX_TIMER_MS = 2_147_483_647;
const noop = (): void => {};
const identity = <T>(value: T): T => value;

/**
 * The engine behind `submit` and `delegate`: admission, routing, waiting, attempts, retries, dead letters and the
 * one terminal path. The orchestrator builds it and keeps it private; it is named here for the types of its results.
 */
export class TaskExecutionEngine implements RoutingListener {
  // What it was built with.
  readonly #options: EngineSettings;
  readonly #taskDefaults: {
    readonly timeoutMs: number;
    readonly maxAttempts: number;
    readonly maxPayloadBytes: number;
    readonly faithfulPayloads: boolean;
  };
  readonly #pools: AgentPoolManager;
  readonly #events: TypedEmitter<EngineEvents & ResourceEvents>;
  readonly #resources: ResourceManager;
  /** Whether any capability carries a rate limit: without, the limit checks are skipped entirely. */
  readonly #limited: boolean;
  /** The one observer of attempts and outcomes (the metrics). */
  #observer: TaskObserver | undefined;
  /** The one observer of durable runs (set when a store is configured). */
  #runs: RunObserver | undefined;

  // Its parts: routing, waiting, deadlines, and what outlives a task.
  readonly #capabilityIndex = new CapabilityIndex();
  readonly #routingCache: RoutingCache;
  readonly #routingStrategy: RoutingStrategy;
  readonly #affinity: AffinityTable;
  /** Where tasks with no free agent wait, by requirement class. */
  readonly #room: WaitingRoom;
  /** Attempt timeouts (`timeoutMs`). */
  readonly #deadlines: Deadlines<Attempt>;
  /** Whole-task deadlines (`deadlineMs`): nearly all different, so a heap rather than the attempts' duration lists. */
  readonly #taskDeadlines: DeadlineHeap<TaskDeadline>;
  readonly #idempotency: IdempotencyCache;
  readonly #deadLetters: DeadLetterList;
  readonly #counters = new EngineCounters();
  /** Where `ctx.reportCost` and `ctx.progress` go: one sink for every attempt. */
  readonly #costSink: CostSink = {
    reportCost: (task, units) => this.#reportCost(task, units),
    reportProgress: (attempt, value) => this.#reportProgress(attempt, value),
  };

  // Its state.
  #state: EngineState = 'idle';
  /** Set by `halt()`: waiting work is held (nothing starts) until `resume()`. */
  #halted: OrchestratorHaltedError | undefined;
  /** Set while `stop()` drains: called when the last live task ends, or by a halt (held work cannot drain). */
  #onIdle: (() => void) | undefined;
  /** Every accepted task not yet terminal, by id. */
  readonly #live = new Map<string, TaskRecord>();
  readonly #idPrefix = randomBytes(4).toString('hex');
  #seq = 0;

  constructor(
    options: EngineSettings,
    pools: AgentPoolManager,
    events: TypedEmitter<EngineEvents & ResourceEvents>,
    resources: ResourceManager,
  ) {
    this.#options = options;
    this.#taskDefaults = {
      timeoutMs: options.defaultTimeoutMs,
      maxAttempts: options.defaultMaxAttempts,
      maxPayloadBytes: options.maxPayloadBytes,
      // Faithful or refused: with a bridge given, a task must not change meaning with where it runs.
      faithfulPayloads: options.bridge !== undefined,
    };
    this.#pools = pools;
    this.#events = events;
    this.#resources = resources;
    this.#limited = resources.limitsCapabilities;
    resources.onLimiterReady(() => this.#kick());
    // Cleared by stop() already; registered too, so that the shared deadline timers are released whatever happens.
    resources.disposables.add(() => {
      this.#deadlines.clear();
      this.#taskDeadlines.clear();
    });
    this.#routingStrategy = ROUTING_STRATEGIES[options.routing];
    this.#routingCache = new RoutingCache(this.#capabilityIndex);
    this.#room = new WaitingRoom(options.agingIntervalMs, pools, resources);
    this.#affinity = new AffinityTable(options.maxAffinityKeys, pools);
    this.#idempotency = new IdempotencyCache(options.idempotencyTtlMs, options.maxIdempotencyKeys);
    this.#deadLetters = new DeadLetterList(options.maxDeadLetters);
    this.#deadlines = new Deadlines<Attempt>(options.clock, (attempt) => this.#attemptTimedOut(attempt));
    this.#taskDeadlines = new DeadlineHeap<TaskDeadline>(options.clock, (entry) => this.#expire(entry.task));
  }

  /** Sets the one observer of attempts and outcomes (the metrics). */
  observe(observer: TaskObserver): void {
    this.#observer = observer;
  }

  /**
   * Sets the one observer of durable runs.
   * @internal
   */
  observeRuns(observer: RunObserver): void {
    this.#runs = observer;
  }

  /** Opens the engine for work. */
  open(): void {
    if (this.#state === 'idle') this.#state = 'running';
  }

  // --- Submission -------------------------------------------------------------------------------

  /** Accepts a task and returns its handle; throws (synchronously) when the task is refused. */
  delegate(input: Task): TaskHandle {
    return this.#handleOf(this.#admit(input));
  }

  /**
   * Like `delegate`, for a task another node handed to this one: it keeps the hand-off's `id` (the same on every node
   * and delivery, as `ctx.taskId`) and numbers its attempts after the `attempts` that earlier deliveries started
   * (`ctx.recoveries` is `recoveries`). Throws when refused, as `delegate` does.
   * @internal
   */
  delegateHandOff(
    input: Task,
    from: RunAcceptance,
    onProgress: ((update: ProgressUpdate) => void) | undefined,
  ): TaskHandle {
    // Already running here (delivered again while its idempotency key could not be kept: the cache full, or off):
    // one run, which this delivery follows, never two records under one id.
    const live = this.#live.get(from.id);
    if (live) return followerHandle(live, live.spec);
    const accepted = this.#admit(input, from);
    if (onProgress && accepted instanceof TaskRecord) {
      accepted.onProgress = onProgress;
      // Reported already (its agent ran at once, within the accept): passed on now.
      const latest = accepted.progress?.latest;
      if (latest) onProgress(latest);
    }
    return this.#handleOf(accepted);
  }

  /** The handle of an admitted task, or of the task an idempotency key led to. */
  #handleOf(accepted: TaskRecord | (IdempotencyHit & { readonly spec: TaskSpec })): TaskHandle {
    if (accepted instanceof TaskRecord) return this.#handle(accepted);
    return accepted.kind === 'running'
      ? followerHandle(accepted.task, accepted.spec)
      : {
          id: accepted.taskId,
          result: Promise.resolve(accepted.value),
          cancel: () => false,
          progress: ProgressFeed.none,
        };
  }

  /** Like `delegate(input).result`, without building a handle: the result promise itself. Throws when refused. */
  submit(input: Task): Promise<unknown> {
    const accepted = this.#admit(input);
    if (accepted instanceof TaskRecord) return accepted.promise;
    // A duplicate: follow the first task's outcome (a promise of our own, so nothing handled twice).
    if (accepted.kind === 'done') return Promise.resolve(accepted.value);
    if (accepted.spec.deadlineMs !== Infinity || accepted.spec.signal)
      return followerHandle(accepted.task, accepted.spec).result;
    const follower = accepted.task.promise.then(identity);
    follower.catch(noop);
    return follower;
  }

  /**
   * Checks a task as `delegate` would (state, validation, pressure, budget, a capable agent), without accepting it:
   * the durable path stores it first, then accepts it with `acceptRun`. Throws when it would be refused; counts it
   * as submitted either way. With `local` false, a task no agent here can serve passes (another node may).
   * Whether an agent here could ever serve `requires` is `canServe`.
   * @internal
   */
  prepare(input: Task, local = true): TaskSpec {
    const spec = this.#validated(input);
    try {
      const refusal = admissionRefusal(this.#resources, spec, this.#options.clock.now());
      if (refusal) throw refusal;
      if (local && !this.#pools.canEverServe(spec.requires)) throw new NoCapableAgentError(spec.requires);
      if (spec.signal?.aborted) throw new TaskCancelledError('(not accepted)', spec.signal.reason);
      return spec;
    } catch (error) {
      this.#counters.rejected++;
      throw error;
    }
  }

  /**
   * Whether a pool or agent here could ever serve a task requiring `requires`.
   * @internal
   */
  canServe(requires: readonly string[]): boolean {
    return this.#pools.canEverServe(requires);
  }

  /**
   * Accepts a durable run under its own id: a task stored by `prepare`'s caller, or one taken over from the store.
   * Its idempotency key is the store's business (not this engine's cache). Throws as `delegate` does when it cannot
   * be accepted now (stopped, queue full, no capable agent); the run then stays in the store.
   * @internal
   */
  acceptRun(spec: TaskSpec, run: RunAcceptance): TaskHandle {
    if (this.#state !== 'running') throw new OrchestratorStoppedError();
    if (!run.submitted) this.#counters.submitted++;
    const plain: TaskSpec = spec.idempotencyKey === undefined ? spec : { ...spec, idempotencyKey: undefined };
    return this.#handle(this.#accept(plain, this.#options.clock.now(), run));
  }

  /** Counts a submit and validates it while the engine runs; throws (counted as rejected) otherwise. */
  #validated(input: Task): TaskSpec {
    this.#counters.submitted++;
    try {
      if (this.#state === 'idle') throw new OrchestratorNotStartedError();
      if (this.#state !== 'running') throw new OrchestratorStoppedError();
      return validateTask(input, this.#taskDefaults);
    } catch (error) {
      this.#counters.rejected++;
      throw error;
    }
  }

  /** Checks, validates and accepts a task, or answers it from its idempotency key. Throws when refused. */
  #admit(input: Task, adopted?: RunAcceptance): TaskRecord | (IdempotencyHit & { readonly spec: TaskSpec }) {
    const spec = this.#validated(input);
    const now = this.#options.clock.now();
    if (spec.idempotencyKey !== undefined) {
      const hit = this.#idempotency.lookup(spec.idempotencyKey, now);
      if (hit) {
        this.#counters.deduplicated++;
        return { ...hit, spec };
      }
    }
    const refusal = admissionRefusal(this.#resources, spec, now);
    if (refusal) {
      this.#counters.rejected++;
      throw refusal;
    }
    return this.#accept(spec, now, adopted, false);
  }

  /**
   * Accepts an admitted task: it starts on a free agent, or (none free, or work held) waits, once it is sure that an
   * agent could ever serve it and the waiting room has space. Throws when refused.
   */
  #accept(spec: TaskSpec, now: number, run?: RunAcceptance, durable = run !== undefined): TaskRecord {
    const sig = requirementSignature(spec.requires);
    const task = new TaskRecord(run ? run.id : `${this.#idPrefix}-${(++this.#seq).toString(36)}`, spec, sig);
    if (run) {
      task.durable = durable;
      task.attempts = run.attempts;
      task.recoveries = run.recoveries;
    }
    if (spec.signal?.aborted) {
      this.#counters.rejected++;
      throw new TaskCancelledError(task.id, spec.signal.reason);
    }
    // Tasks of this class already waiting mean no matching agent is free (a free one would have taken them):
    // skip the scan, and the newcomer queues behind them instead of overtaking.
    const agent =
      spec.delayMs > 0 ||
      this.#halted !== undefined ||
      this.#room.waitingIn(sig) > 0 ||
      (this.#limited && !this.#room.limitsAllow(this.#room.classFor(task), now))
        ? undefined
        : this.#route(task);
    if (!agent) {
      if (!this.#room.canEverServe(this.#room.classFor(task))) {
        this.#counters.rejected++;
        throw new NoCapableAgentError(spec.requires);
      }
      if (this.#room.waiting >= this.#options.maxQueueSize) {
        this.#counters.rejected++;
        throw new QueueFullError(this.#options.maxQueueSize);
      }
    }
    if (spec.signal) {
      // First, before the task is recorded anywhere: a signal that refuses a listener refuses the task.
      const signal = spec.signal;
      task.onCallerAbort = () => this.#cancel(task, new TaskCancelledError(task.id, signal.reason));
      try {
        signal.addEventListener('abort', task.onCallerAbort, { once: true });
      } catch {
        this.#counters.rejected++;
        throw new ValidationError(
          'task.signal',
          'Expected `task.signal` to be an AbortSignal that accepts an abort listener',
        );
      }
    }
    task.acceptedAt = now;
    task.readyAt = now;
    this.#live.set(task.id, task);
    if (spec.deadlineMs !== Infinity)
      this.#taskDeadlines.add((task.deadlineEntry = new TaskDeadline(task)), spec.deadlineMs, now);
    // Handled from the start: a caller who attaches their handler later (or a task cancelled by stop() while
    // the caller awaits something else) must never crash the host with an unhandled rejection.
    task.promise.catch(noop);
    if (spec.idempotencyKey !== undefined) this.#idempotency.begin(spec.idempotencyKey, task, now);
    if (agent) this.#dispatch(task, agent, now);
    else if (spec.delayMs > 0) this.#wait(task, spec.delayMs);
    else this.#enqueue(task, now);
    return task;
  }

  /** A delayed task waits out its delay (as a backoff: cancel and stop find it there), then is routed. */
  #wait(task: TaskRecord, ms: number): void {
    task.phase = 'backoff';
    this.#counters.backingOff++;
    const wake = (left: number): void => {
      // A Node timer holds at most 2^31-1 ms (about 24.8 days): longer delays are waited out in steps.
      task.backoffTimer = setTimeout(
        () => {
          if (left > MAX_TIMER_MS) return wake(left - MAX_TIMER_MS);
          task.backoffTimer = undefined;
          this.#counters.backingOff--;
          this.#reschedule(task);
        },
        Math.min(left, MAX_TIMER_MS),
      );
    };
    wake(ms);
  }

  /** The caller's handle on an accepted task: its `cancel` ends the task (false once it has ended). */
  #handle(task: TaskRecord): TaskHandle {
    return new EngineTaskHandle(task, (reason?: unknown) => {
      if (task.phase === 'done') return false;
      this.#cancel(task, new TaskCancelledError(task.id, reason));
      return true;
    });
  }

  // --- Queries and control ----------------------------------------------------------------------

  /** Cancels a task by id; returns whether it was still live (and, with `tenantId`, that tenant's). */
  cancel(taskId: string, reason?: unknown, tenantId?: string): boolean {
    const task = this.#live.get(taskId);
    if (!task || (tenantId !== undefined && task.spec.tenantId !== tenantId)) return false;
    this.#cancel(task, new TaskCancelledError(task.id, reason));
    return true;
  }

  /** A live task's state; `undefined` when it is finished, unknown, or (with `tenantId`) another tenant's. */
  task(taskId: string, tenantId?: string): TaskSnapshot | undefined {
    const task = this.#live.get(taskId);
    if (!task || (tenantId !== undefined && task.spec.tenantId !== tenantId)) return undefined;
    return {
      id: task.id,
      type: task.spec.type,
      tenantId: task.spec.tenantId,
      priority: task.spec.priority,
      phase: task.phase as TaskSnapshot['phase'],
      attempts: task.attempts,
      agentId: task.current?.agent.id,
      acceptedAt: task.acceptedAt,
    };
  }

  /**
   * A live task's progress (made now if nobody asked before), or `undefined` when it is not live here (or, with
   * `tenantId`, another tenant's).
   * @internal
   */
  progressOf(taskId: string, tenantId?: string): ProgressStream | undefined {
    const task = this.#live.get(taskId);
    if (!task || (tenantId !== undefined && task.spec.tenantId !== tenantId)) return undefined;
    return task.progressFeed();
  }

  /** Dead letters, oldest first; with `tenantId`, that tenant's only. */
  deadLetters(tenantId?: string): DeadLetter[] {
    return this.#deadLetters.list(tenantId);
  }

  /** Resubmits a dead-lettered task as a new task (new id); it leaves the dead-letter list. */
  retryDeadLetter(taskId: string, tenantId?: string): TaskHandle {
    const letter = this.#deadLetters.take(taskId, tenantId);
    if (!letter) throw new TaskNotFoundError(taskId);
    try {
      return this.delegate(letter.task);
    } catch (error) {
      this.#deadLetters.add(letter); // refused (stopped, queue full): keep it for later
      throw error;
    }
  }

  /** The task counters and what is in flight now. */
  stats(): EngineStats {
    return this.#counters.snapshot(this.#room.waiting, this.#routingCache, this.#deadLetters.size);
  }

  /** Tasks waiting, all classes (what `maxQueueSize` bounds); cheaper than `stats()`, for the hand-off bound. */
  get waiting(): number {
    return this.#room.waiting;
  }

  /** Tasks waiting in the class of `requires` (any order of the capabilities). */
  waitingFor(requires: readonly string[]): number {
    return this.#room.waitingFor(requires);
  }

  /** Waiting tasks per requirement class (signature `''` is "no requirement"). */
  queueDepths(): Record<string, number> {
    return this.#room.depths();
  }

  // --- Lifecycle: stop, halt, resume ------------------------------------------------------------

  /**
   * Refuses new work. With `drain`, waits until every accepted task is terminal or `timeoutMs` passed; then (or
   * at once without drain) cancels what is left with TaskCancelledError. Returns how many it cancelled.
   */
  async stop(drain: boolean, timeoutMs: number): Promise<number> {
    if (this.#state === 'stopped') return 0;
    this.#state = 'draining';
    // Held work cannot drain: a halted engine cancels it at once instead of waiting out the timeout.
    if (drain && this.#live.size > 0 && !this.#halted) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.#onIdle = resolve;
        if (Number.isFinite(timeoutMs)) timer = setTimeout(resolve, timeoutMs);
      });
      clearTimeout(timer);
      this.#onIdle = undefined;
    }
    const left = [...this.#live.values()];
    const reason = new OrchestratorStoppedError(
      drain
        ? 'The orchestrator stopped before the task finished draining'
        : 'The orchestrator stopped without draining',
    );
    for (const task of left) {
      if (!task.durable) this.#cancel(task, new TaskCancelledError(task.id, reason));
      else {
        task.released = true;
        this.#cancel(task, new TaskCancelledError(task.id, RELEASED));
      }
    }
    this.#state = 'stopped';
    this.#deadlines.clear();
    this.#taskDeadlines.clear();
    return left.length;
  }

  /** Whether `halt()` holds the work. */
  get halted(): boolean {
    return this.#halted !== undefined;
  }

  /**
   * Holds every waiting task (new ones are still accepted, and wait) and aborts every running attempt through its
   * signal with `reason`; the interrupted tasks wait again, their attempt not counted. Returns how many attempts it
   * interrupted and how many tasks are held. A second halt while halted changes nothing.
   */
  halt(reason: OrchestratorHaltedError): {
    /** Running attempts aborted. */
    interrupted: number;
    /** Tasks waiting once halted, the interrupted ones included. */
    held: number;
  } {
    if (this.#halted) return { interrupted: 0, held: this.#room.waiting };
    this.#halted = reason;
    const now = this.#options.clock.now();
    let interrupted = 0;
    for (const task of [...this.#live.values()]) {
      const attempt = task.current;
      if (task.phase !== 'running' || !attempt || attempt.abandoned) continue;
      this.#withdraw(attempt, reason, now);
      if (ended(task)) continue; // a listener on its signal cancelled it: it ended there
      task.current = undefined;
      task.interruptions++;
      task.readyAt = now;
      this.#enqueue(task, now);
      if (task.durable) this.#runs?.waiting(task, 'interrupted', attempt.number, reason, undefined, now);
      interrupted++;
    }
    // A drain in progress cannot finish held work: let stop() go on to cancel it instead of waiting out its timeout.
    this.#onIdle?.();
    return { interrupted, held: this.#room.waiting };
  }

  /** Releases held work: free agents take the best waiting tasks, and pools scale for the rest. Returns how many waited. */
  resume(): number {
    if (!this.#halted) return 0;
    this.#halted = undefined;
    const released = this.#room.waiting;
    if (this.#state !== 'running' && this.#state !== 'draining') return released;
    const now = this.#options.clock.now();
    for (const agent of this.#pools.agents()) if (agent.routable) this.#pull(agent, now);
    if (this.#limited) this.#kick();
    for (const demand of this.#room.demand(now)) this.#pools.requestCapacity(demand.requires, demand.waiting);
    return released;
  }

  // --- RoutingListener --------------------------------------------------------------------------

  /**
   * An agent joined routing: it takes the best waiting tasks it can serve.
   * @internal
   */
  agentRoutable(agent: AgentRecord): void {
    this.#capabilityIndex.add(agent);
    this.#routingCache.invalidate();
    this.#pull(agent, this.#options.clock.now());
  }

  /** Requirement classes with tasks that could start now if an agent were free (held work left out). */
  *waitingDemand(): Iterable<WaitingDemand> {
    // Held work is not demand: more agents would not start it sooner.
    if (this.#room.waiting === 0 || this.#halted) return;
    // A limit may have refilled before its wake-up timer ran (timers run late under load): start what it allows on
    // free agents first, so that only tasks with room to run and no agent count as demand.
    if (this.#limited) this.#kick();
    yield* this.#room.demand(this.#options.clock.now());
  }

  /**
   * An agent left routing: waiting tasks that no agent or pool can serve any more fail.
   * @internal
   */
  agentUnroutable(agent: AgentRecord): void {
    this.#capabilityIndex.delete(agent);
    this.#routingCache.invalidate();
    if (this.#room.waiting > 0) this.#failStranded();
  }

  /** Waiting tasks that no agent or pool can serve any more (their last capable agent left) fail now rather than wait forever. */
  #failStranded(): void {
    for (const klass of this.#room.classes()) {
      if (klass.queue.size === 0 || this.#room.canEverServe(klass)) continue;
      for (const task of this.#room.drain(klass)) this.#giveUp(task, new NoCapableAgentError(klass.requires));
    }
  }

  // --- Routing and waiting ----------------------------------------------------------------------

  /** Filter-then-score over the cached candidates; affinity first when its agent can take the task now. */
  #route(task: TaskRecord): AgentRecord | undefined {
    const { affinityKey, requires, prefers } = task.spec;
    if (affinityKey !== undefined) {
      const sticky = this.#affinity.agentFor(affinityKey, requires);
      if (sticky) return sticky;
    }
    const candidates = this.#routingCache.get(task.routeSig, requires, prefers);
    const avoid = task.history === undefined ? undefined : (a: AgentRecord) => task.triedAgent(a.id);
    const agent = this.#routingStrategy.pick(candidates, avoid);
    if (agent && affinityKey !== undefined) this.#affinity.bind(affinityKey, agent);
    return agent;
  }

  /** The task waits in its class: `task:queued`, and the pools are asked for an agent unless its work is held. */
  #enqueue(task: TaskRecord, now: number): void {
    task.phase = 'waiting';
    const klass = this.#room.add(task, now);
    if (this.#events.has('task:queued')) {
      this.#events.emit('task:queued', {
        taskId: task.id,
        type: task.spec.type,
        priority: task.spec.priority,
        tenantId: task.spec.tenantId,
        waiting: this.#room.waiting,
      });
    }
    // Tasks held back by a rate limit are not waiting for agents: more agents would not start them sooner.
    if (!this.#halted && !this.#room.heldByLimits(klass, now))
      this.#pools.requestCapacity(klass.requires, klass.queue.size);
  }

  /** Late binding: gives a freed agent the best waiting tasks it can serve, while it has free slots. */
  #pull(agent: AgentRecord, now: number): void {
    while (this.#room.waiting > 0 && this.#halted === undefined && agent.routable && agent.hasFreeSlot) {
      const task = this.#room.takeFor(agent, now);
      if (!task) return;
      this.#dispatch(task, agent, now);
    }
  }

  /** A rate limit has room again: start held tasks on free agents, best first, while the limits allow. */
  #kick(): void {
    if (this.#room.waiting === 0 || this.#state === 'stopped' || this.#halted) return;
    const now = this.#options.clock.now();
    for (const klass of this.#room.classes()) {
      while (klass.queue.size > 0 && klass.limiters.length > 0 && this.#room.limitsAllow(klass, now)) {
        const head = klass.queue.peek(now)!;
        const agent = this.#route(head);
        if (!agent) {
          // No free agent: the next one to free pulls the task (late binding); meanwhile this is real demand.
          this.#pools.requestCapacity(klass.requires, klass.queue.size);
          break;
        }
        this.#dispatch(this.#room.take(klass, now), agent, now);
      }
    }
  }

  // --- Attempts ---------------------------------------------------------------------------------

  /** Starts an attempt; `now` is the clock read by the caller (one read per event, not per step). */
  #dispatch(task: TaskRecord, agent: AgentRecord, startedAt: number): void {
    const { spec } = task;
    const number = ++task.attempts;
    if (number > 1) this.#counters.retries++;
    task.phase = 'running';
    this.#counters.running++;
    const probe = agent.probe === 'ready';
    agent.acquire();
    const attempt = new Attempt(task, agent, number, startedAt);
    if (probe) attempt.probe = true;
    task.current = attempt;
    if (this.#limited) for (const limiter of this.#room.classFor(task).limiters) limiter.take(startedAt);
    if (spec.timeoutMs !== Infinity) this.#deadlines.add(attempt, spec.timeoutMs, startedAt);
    this.#observer?.attemptStarted(spec.type, startedAt - task.readyAt);
    if (task.durable) this.#runs?.started(task, number, agent.id, startedAt);
    if (this.#events.has('task:started')) {
      this.#events.emit('task:started', {
        taskId: task.id,
        type: spec.type,
        agentId: agent.id,
        role: agent.role,
        attempt: number,
        waitedMs: startedAt - task.readyAt,
      });
    }
    let pending: Promise<unknown>;
    try {
      pending = Promise.resolve(agent.agent.execute(new AttemptContext(attempt, this.#costSink)));
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      (value) => this.#attemptReturned(attempt, true, value),
      (error: unknown) => this.#attemptReturned(attempt, false, error),
    );
  }

  /**
   * `execute` settled: the slot goes back and the agent pulls its next task; if the task still waited on this attempt,
   * it completes, or its failure is handled.
   */
  #attemptReturned(attempt: Attempt, ok: boolean, value: unknown): void {
    const { agent, task } = attempt;
    const now = this.#options.clock.now();
    if (attempt.abandoned) agent.lateReturned(attempt.abandonedAt);
    else {
      attempt.abandoned = true;
      this.#deadlines.remove(attempt);
      this.#counters.running--;
      agent.recordOutcome(ok, now - attempt.startedAt);
      // A retry-after is the vendor pacing us, not the agent failing: it does not count against its breaker.
      if (agent.breaker) {
        if (ok || retryAfterMs(value) === undefined) agent.breaker.record(ok, now, attempt.probe);
        else this.#probeUndecided(attempt);
      }
      if (ok) this.#finish(task, 'completed', value, now, attempt);
      else this.#attemptFailed(task, attempt, value, now);
    }
    agent.release(now);
    this.#pull(agent, now);
  }

  /** An attempt ran past its `timeoutMs`: it counts as failed (agent stats, breaker), its signal aborts. */
  #attemptTimedOut(attempt: Attempt): void {
    if (attempt.abandoned) return;
    const { task, agent } = attempt;
    const now = this.#options.clock.now();
    this.#counters.running--;
    agent.recordOutcome(false, now - attempt.startedAt);
    agent.breaker?.record(false, now, attempt.probe);
    const error = new TaskTimeoutError(task.id, task.spec.timeoutMs, attempt.number);
    attempt.abandon(error, now);
    if (ended(task)) return; // a listener on its signal cancelled it: it ended there
    // The slot stays taken until execute() returns: an agent that ignores its signal is still busy.
    this.#attemptFailed(task, attempt, error, now);
  }

  /**
   * A failed attempt joins the task's history; then the task waits again (a rate limit's retry-after), backs off
   * (a retry left), or gives up (none left, or the engine stopped).
   */
  #attemptFailed(task: TaskRecord, attempt: Attempt, error: unknown, now: number): void {
    (task.history ??= []).push({
      attempt: attempt.number,
      agentId: attempt.agent.id,
      startedAt: attempt.startedAt,
      durationMs: now - attempt.startedAt,
      error,
    } satisfies AttemptRecord);
    task.current = undefined;
    const { spec } = task;
    if (this.#state === 'stopped') return this.#giveUp(task, error);
    if (this.#defer(task, error, now)) return;
    const { retry } = this.#resources;
    if (task.attempts - task.deferrals - task.interruptions < spec.maxAttempts && retry.retryable(error)) {
      const delayMs = retry.delay(task.attempts, error);
      task.phase = 'backoff';
      this.#counters.backingOff++;
      task.backoffTimer = setTimeout(() => {
        task.backoffTimer = undefined;
        this.#counters.backingOff--;
        this.#reschedule(task);
      }, delayMs);
      if (task.durable) this.#runs?.waiting(task, 'retrying', task.attempts, error, delayMs, now);
      // Emitted once the backoff is in place: a listener that cancels the task finds it where it is.
      this.#events.emit('task:retrying', {
        taskId: task.id,
        type: spec.type,
        attempt: task.attempts,
        delayMs,
        error,
        reason: 'backoff',
      });
      return;
    }
    this.#giveUp(task, error);
  }

  /** After a backoff: route again (another agent first) or wait. */
  #reschedule(task: TaskRecord): void {
    const now = this.#options.clock.now();
    task.readyAt = now;
    const held =
      this.#halted !== undefined || (this.#limited && !this.#room.limitsAllow(this.#room.classFor(task), now));
    const agent = held ? undefined : this.#route(task);
    if (agent) this.#dispatch(task, agent, now);
    // Its last capable agent may have left during the backoff: give up now (dead letter, with its history) rather than wait forever.
    else if (!this.#room.canEverServe(this.#room.classFor(task)))
      this.#giveUp(task, new NoCapableAgentError(task.spec.requires));
    else this.#enqueue(task, now);
  }

  /**
   * A retry-after from a rate-limited capability: pause its limits for that long and put the task back in its queue
   * without spending one of its attempts (at most `maxDeferrals` times). Returns whether it did.
   */
  #defer(task: TaskRecord, error: unknown, now: number): boolean {
    if (!this.#limited) return false;
    const { limiters } = this.#room.classFor(task);
    if (limiters.length === 0) return false;
    const ms = this.#resources.retry.retryAfter(error);
    // Only a retryable error is a rate limit speaking (a BudgetExceededError an agent passes on carries a hint too).
    if (ms === undefined || !this.#resources.retry.retryable(error)) return false;
    let maxDeferrals = Infinity;
    for (const limiter of limiters) {
      limiter.pause(ms, now);
      maxDeferrals = Math.min(maxDeferrals, limiter.options.maxDeferrals);
    }
    if (task.deferrals >= maxDeferrals) return false;
    task.deferrals++;
    this.#enqueue(task, now);
    for (const limiter of limiters) limiter.want(now);
    if (task.durable) this.#runs?.waiting(task, 'deferred', task.attempts, error, ms, now);
    // Emitted once the task waits again: a listener that cancels it finds it in its queue.
    this.#events.emit('task:retrying', {
      taskId: task.id,
      type: task.spec.type,
      attempt: task.attempts,
      delayMs: ms,
      error,
      reason: 'rate-limit',
    });
    return true;
  }

  /**
   * Takes a running attempt away from its task (halt, cancel, deadline): its timeout unscheduled, no longer counted
   * as running, its signal aborted with `reason`. Its slot stays taken until execute() returns, as for a timeout, and
   * nothing counts for or against its agent's breaker.
   */
  #withdraw(attempt: Attempt, reason: unknown, now: number): void {
    this.#deadlines.remove(attempt);
    this.#counters.running--;
    attempt.abandon(reason, now);
    this.#probeUndecided(attempt);
  }

  /**
   * A half-open breaker's probe ended without a verdict (cancelled, or paced by a retry-after): the agent takes
   * another probe once this attempt has returned, instead of staying half-open with no way forward.
   */
  #probeUndecided(attempt: Attempt): void {
    const { agent } = attempt;
    if (attempt.probe && agent.probe === 'taken' && agent.breaker?.state === 'half-open') agent.probe = 'ready';
  }

  /** Cost reported by an agent: the task's sum, its tenant's budget, and the unit limits of its capabilities. */
  #reportCost(task: TaskRecord, units: number): void {
    task.cost += units;
    if (units === 0) return;
    const now = this.#options.clock.now();
    if (this.#limited) for (const limiter of this.#room.classFor(task).limiters) limiter.charge(units, now);
    const tenantId = task.spec.tenantId;
    const { budgets } = this.#resources;
    // Spend is kept even for a tenant with no limit (yet): a limit set later with setBudget() counts it.
    if (tenantId === undefined || !budgets.charge(tenantId, units, now)) return;
    const exceeded = budgetExceededError(budgets, tenantId, now);
    let halted = 0;
    if (budgets.haltOnExceeded) {
      for (const t of [...this.#live.values()]) {
        if (t.spec.tenantId === tenantId && (t.phase === 'waiting' || t.phase === 'backoff')) {
          this.#cancel(t, new TaskCancelledError(t.id, exceeded));
          halted++;
        }
      }
    }
    this.#events.emit('budget:exceeded', {
      tenantId,
      spent: exceeded.spent,
      limit: exceeded.limit,
      windowMs: exceeded.windowMs,
      halted,
    });
  }

  /**
   * Progress from an agent: dropped (false) once its attempt is over; else passed to the task's feed (made now, so a
   * later reader gets the latest) and to `task:progress` listeners.
   */
  #reportProgress(attempt: Attempt, value: unknown): boolean {
    // With a bridge, what may cross it is faithful or refused, progress as payloads and results (see codec.ts).
    if (this.#taskDefaults.faithfulPayloads) checkFaithful(value, 'value');
    const { task } = attempt;
    if (attempt.abandoned || task.phase === 'done') return false;
    const update = { taskId: task.id, attempt: attempt.number, value, at: Date.now() };
    task.progressFeed().push(update);
    if (task.onProgress) {
      try {
        task.onProgress(update);
      } catch {
        // the transport's failure never fails the task
      }
    }
    // A listener may cancel the task: it ends after every reader has the update.
    if (this.#events.has('task:progress')) {
      this.#events.emit('task:progress', { ...update, type: task.spec.type });
    }
    return true;
  }

  // --- Ending: every way out leads to #finish ---------------------------------------------------

  /**
   * No attempt is left (or none can run): with retries configured the task is dead-lettered with its history; with
   * one attempt it fails with the agent's error (or times out).
   */
  #giveUp(task: TaskRecord, error: unknown): void {
    const now = this.#options.clock.now();
    if (task.spec.maxAttempts > 1 && task.history !== undefined) {
      this.#finish(task, 'dead-lettered', new TaskDeadLetteredError(task.id, task.history, error), now);
    } else if (isInstance(error, TaskTimeoutError)) {
      this.#finish(task, 'timed-out', error, now);
    } else {
      this.#finish(task, 'failed', error, now);
    }
  }

  /** Cancelled (its caller, `cancel`, stop, a spent budget): it ends wherever it is, its running attempt aborted. */
  #cancel(task: TaskRecord, error: TaskCancelledError): void {
    this.#abort(task, error, 'cancelled');
  }

  /** The task ran past its `deadlineMs`: it ends timed-out wherever it is, its running attempt aborted. */
  #expire(task: TaskRecord): void {
    task.deadlineEntry = undefined; // the scheduler took it out already
    this.#abort(task, new TaskTimeoutError(task.id, task.spec.deadlineMs, task.attempts, 'task'), 'timed-out');
  }

  /** Ends a live task from outside its attempt (a cancel, its deadline): out of its queue or backoff, attempt aborted. */
  #abort(task: TaskRecord, error: TaskCancelledError | TaskTimeoutError, outcome: 'cancelled' | 'timed-out'): void {
    switch (task.phase) {
      case 'done':
        return;
      case 'waiting':
        this.#room.remove(task);
        break;
      case 'backoff':
        clearTimeout(task.backoffTimer);
        task.backoffTimer = undefined;
        this.#counters.backingOff--;
        break;
      case 'running': {
        const attempt = task.current;
        if (attempt && !attempt.abandoned) this.#withdraw(attempt, error, this.#options.clock.now());
        break;
      }
    }
    // Aborting the attempt ran the agent's abort listeners, and one of them may have ended the task already.
    if (ended(task)) return;
    this.#finish(task, outcome, error, this.#options.clock.now());
  }

  /**
   * The one way a task ends, whatever its outcome, exactly once: it leaves the live set and the task deadlines,
   * drops the caller's abort listener and is counted; its idempotency key answers duplicates with the result for the
   * TTL when it completed, and is forgotten otherwise (so a retry can run); a dead-lettered task joins the
   * dead-letter list; the observer is told, the one terminal event (`task:completed` or `task:failed`) is emitted,
   * and its promise settles. Last, a drain waiting for the live set to empty is woken.
   *
   * The caller has already taken the task out of its phase (queue, backoff, attempt). `result` is the value (for
   * `completed`) or the error; `attempt` is the attempt that completed it (for `completed` only); `now` is the
   * clock read for the end.
   */
  #finish(task: TaskRecord, outcome: TaskOutcome, result: unknown, now: number, attempt?: Attempt): void {
    const { spec } = task;
    task.phase = 'done';
    task.current = undefined;
    this.#live.delete(task.id);
    if (task.deadlineEntry) {
      this.#taskDeadlines.remove(task.deadlineEntry as TaskDeadline);
      task.deadlineEntry = undefined;
    }
    if (task.onCallerAbort) {
      spec.signal?.removeEventListener('abort', task.onCallerAbort);
      task.onCallerAbort = undefined;
    }
    this.#counters.ended(outcome);
    if (task.durable) this.#runs?.ended(task, task.released ? 'released' : outcome, result, attempt?.agent.id, now);
    const latencyMs = now - task.acceptedAt;
    if (outcome === 'completed') {
      if (spec.idempotencyKey !== undefined) this.#idempotency.succeeded(spec.idempotencyKey, task, result, now);
      this.#observer?.taskEnded(spec.type, outcome, latencyMs);
      if (this.#events.has('task:completed')) {
        const { agent, number, startedAt } = attempt!;
        this.#events.emit('task:completed', {
          taskId: task.id,
          type: spec.type,
          agentId: agent.id,
          role: agent.role,
          attempt: number,
          durationMs: now - startedAt,
          latencyMs,
          cost: task.cost,
        });
      }
      task.resolve(result);
    } else {
      if (outcome === 'dead-lettered') this.#deadLetters.add(deadLetterOf(task));
      if (spec.idempotencyKey !== undefined) this.#idempotency.forget(spec.idempotencyKey, task);
      this.#observer?.taskEnded(spec.type, outcome, latencyMs);
      if (this.#events.has('task:failed')) {
        this.#events.emit('task:failed', {
          taskId: task.id,
          type: spec.type,
          outcome,
          attempts: task.attempts,
          error: result,
          latencyMs,
          cost: task.cost,
        });
      }
      task.reject(result);
    }
    task.progress?.end();
    if (this.#onIdle && this.#live.size === 0) this.#onIdle();
  }
}

/** Why stop() ends a durable task on this node: it is given back to the store, not lost. */
const RELEASED = new OrchestratorStoppedError(
  'The orchestrator stopped before the task finished; it stays in the durable store and runs again on another node or after a restart: attach(id) to follow it',
);

/**
 * Whether the task reached its terminal state. Asked again after user code ran synchronously (an abort listener on
 * `ctx.signal` may cancel the task), where the type checker still believes the phase it narrowed to before.
 */
function ended(task: TaskRecord): boolean {
  return task.phase === 'done';
}

/**
 * The handle `delegate` returns for a task accepted here. A class, so that `progress` is an accessor on the prototype
 * made on first read: a handle whose progress nobody reads costs what a plain `{ id, result, cancel }` does.
 */
class EngineTaskHandle implements TaskHandle {
  readonly id: string;
  readonly result: Promise<unknown>;
  readonly cancel: (reason?: unknown) => boolean;
  readonly #task: TaskRecord;

  constructor(task: TaskRecord, cancel: (reason?: unknown) => boolean) {
    this.id = task.id;
    this.result = task.promise;
    this.cancel = cancel;
    this.#task = task;
  }

  get progress(): ProgressStream {
    return this.#task.progressFeed();
  }
}

/** A task's place in the deadline heap (made only for a task with a `deadlineMs`). */
class TaskDeadline implements HeapEntry {
  readonly task: TaskRecord;
  dueAt = 0;
  heapIndex = -1;

  constructor(task: TaskRecord) {
    this.task = task;
  }
}
