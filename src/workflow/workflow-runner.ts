/**
 * The node's side of workflows: the registry of workflow versions, starting runs, claiming runs that are due (new
 * on another node, parked and woken, or left by a dead node) for the versions registered here, running them
 * (src/workflow/execution.ts), writing their ends, signals, and cancel.
 *
 * A workflow run is a run of the store: type `workflow:<name>`, payload its input, and `requires`
 * `['workflow:<name>@<version>']`. A node claims workflow runs with the capabilities of the versions it registered,
 * so a run is only continued by code of its version; a run whose version no node has stays queued.
 */
import { randomUUID } from 'node:crypto';
import { describeError } from '../bridge/bridge.js';
import { RunNotFoundError, ValidationError, WorkflowNotFoundError } from '../errors.js';
import type { ResolvedDurabilityOptions } from '../store/durability-options.js';
import type { DurableRuns } from '../store/durable-runs.js';
import type {
  InsertOutcome,
  NewRun,
  WorkflowHistory,
  RunRecord,
  RunStore,
  SignalRecord,
  StepKind,
} from '../store/store.js';
import type { Task } from '../engine/task.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import { CheckpointLane, type CheckpointStats } from './checkpoints.js';
import type { WorkflowEvents } from './events.js';
import {
  WorkflowExecution,
  type ChildHandle,
  type ChildInfo,
  type ExecutionEnd,
  type ExecutionHost,
  type WorkflowDefinition,
} from './execution.js';
import {
  workflowCapability,
  workflowType,
  type SendSignalOptions,
  type StartWorkflowOptions,
  type WorkflowFunction,
  type WorkflowHandle,
  type WorkflowOptions,
} from './workflow.js';

/** Counts of this node's workflow runs, in `stats().workflows`. */
export interface WorkflowStats {
  /** Workflow versions registered here (`name@version`). */
  readonly registered: readonly string[];
  /** Runs executing here now. */
  readonly active: number;
  /** Runs started through this node. */
  readonly started: number;
  /** Executions begun here (starts, and runs claimed: woken, or taken over). */
  readonly executions: number;
  /** Runs that completed here. */
  readonly completed: number;
  /** Runs that failed here (a step's error not caught, a limit, non-determinism). */
  readonly failed: number;
  /** Runs cancelled here. */
  readonly cancelled: number;
  /** Runs that ran past their deadline here. */
  readonly timedOut: number;
  /** Times a run parked here (waiting for a signal or a timer). */
  readonly parked: number;
  /** Steps returned from their checkpoints (replays). */
  readonly replayedSteps: number;
  /** Checkpoint writes. */
  readonly checkpoints: CheckpointStats;
}

/** Told of workflow moments, for metrics. */
export interface WorkflowObserver {
  /** A workflow was registered here (its series can start at 0). */
  registered(workflow: string): void;
  runEnded(workflow: string, outcome: ExecutionEnd['kind'], ms: number): void;
  stepEnded(workflow: string, kind: StepKind, replayed: boolean, ms: number, ok: boolean): void;
}

export interface WorkflowRunnerParts {
  /** The durable layer hosting the runs (the orchestrator's, or a private one on a MemoryStore). */
  readonly durable: DurableRuns;
  readonly store: RunStore;
  readonly options: ResolvedDurabilityOptions;
  /** Submits a `run.task` child with its idempotency key. */
  readonly submit: (task: Task) => { result: Promise<unknown>; id: string; stored?: Promise<string> };
  /** Cancels a child task wherever it runs. */
  readonly cancelTask: (id: string, reason: unknown) => void;
  /** Whether a halt holds this node. */
  readonly halted: () => boolean;
  /** Calls `listener` when a halt is lifted; returns a function that stops listening. */
  readonly onResumed: (listener: () => void) => () => void;
  /** Calls `listener` when a task of this node ends (for its agent, attempts and cost). */
  readonly onTaskEnded: (listener: (taskId: string, info: ChildInfo) => void) => void;
  /** Where workflow events go (the orchestrator's emitter). */
  readonly events: TypedEmitter<WorkflowEvents>;
  /** Records an audit entry. */
  readonly audit: (action: 'workflow.signal', detail: Record<string, unknown>, actor: string | undefined) => void;
}

/** Most runs executing on one node at once (claims stop there). */
const MAX_ACTIVE = 10_000;
/** Waits that end within this many ms are kept in memory instead of parking the run. */
const HOLD_WAITS_MS = 2_000;
/** How long a child's end info is kept for its step to read. */
const CHILD_INFO_LIMIT = 100_000;

const noop = (): void => {};

export class WorkflowRunner {
  readonly #parts: WorkflowRunnerParts;
  readonly #definitions = new Map<string, Map<string, WorkflowDefinition>>();
  /** The version `startWorkflow` uses by default: the one registered last. */
  readonly #latest = new Map<string, string>();
  readonly #executions = new Map<string, { execution: WorkflowExecution; workflow: string; startedAt: number }>();
  /** Children whose end info a step waits for: id → info, filled by this node's task events. */
  readonly #childInfo = new Map<string, ChildInfo>();
  readonly #watched = new Set<string>();
  /** Runs taken back at a restart, executed at start. */
  #takenBack: RunRecord[] = [];
  /**
   * Inserts of runs started here and not answered yet, by run id. A start with an id already being inserted waits for
   * that insert (and then meets the run as a duplicate): the store refuses a batch that holds one id twice.
   */
  readonly #inserting = new Map<string, Promise<unknown>>();
  #lane: CheckpointLane | undefined;
  #observer: WorkflowObserver | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #claiming = false;
  #claimAgain = false;
  #resumeWaiters: (() => void)[] = [];
  #stopResumed: (() => void) | undefined;
  #stats = {
    started: 0,
    executions: 0,
    completed: 0,
    failed: 0,
    cancelled: 0,
    timedOut: 0,
    parked: 0,
    replayedSteps: 0,
  };

  constructor(parts: WorkflowRunnerParts) {
    this.#parts = parts;
    parts.durable.onRestart((from) => this.#takeBack(from));
  }

  /**
   * At a restart under a stable node name: claims the workflow runs the previous process held (as recoveries), to
   * execute them once started. Runs of versions not registered here are given back to the store.
   */
  async #takeBack(from: string): Promise<void> {
    const durable = this.#parts.durable;
    const { runs } = await this.#parts.store.claim({
      nodeId: durable.nodeId,
      limit: 100_000,
      capabilities: this.capabilities(),
      anyCapabilities: true,
      maxRecoveries: this.#parts.options.maxRecoveries,
      workflows: true,
      from,
    });
    for (const run of runs) {
      // A version no longer registered here goes back to the store, for a node that has it (#adopt releases it).
      if (this.#takenBack.length < MAX_ACTIVE) this.#takenBack.push(run);
      else durable.append({ runId: run.id, kind: 'released', at: Date.now(), nodeId: durable.nodeId });
    }
  }

  /** Listens to this node's task ends (once a workflow is registered: only then do steps need them). */
  #listenToTasks(): void {
    this.#parts.onTaskEnded((taskId, info) => {
      if (!this.#watched.has(taskId)) return;
      this.#watched.delete(taskId);
      if (this.#childInfo.size >= CHILD_INFO_LIMIT) this.#childInfo.clear();
      this.#childInfo.set(taskId, info);
    });
  }

  observe(observer: WorkflowObserver): void {
    this.#observer = observer;
    for (const name of this.#definitions.keys()) observer.registered(name);
  }

  /**
   * Registers a workflow version. Throws ValidationError for bad options (only `undefined` means "the default", as for
   * every other option of the library: `null` is refused), or a version registered twice.
   */
  register(name: string, options: WorkflowOptions, fn: WorkflowFunction<never, unknown>): void {
    if (typeof name !== 'string' || name === '' || name.includes('@')) {
      throw new ValidationError(
        'name',
        `A workflow needs a name (a non-empty string without '@'), got ${String(name)}`,
      );
    }
    if (typeof fn !== 'function') {
      throw new ValidationError('fn', `orchestrator.workflow('${name}', options, fn) needs the workflow's function`);
    }
    const version = options.version === undefined ? '1' : options.version;
    if (typeof version !== 'string' || version === '') {
      throw new ValidationError('version', `A workflow's version is a non-empty string, got ${String(version)}`);
    }
    const maxSteps = options.maxSteps === undefined ? 1_000 : options.maxSteps;
    if (!Number.isInteger(maxSteps) || maxSteps < 1) {
      throw new ValidationError('maxSteps', `maxSteps is an integer ≥ 1 (got ${String(maxSteps)})`);
    }
    const budget = options.budget === undefined ? Infinity : options.budget;
    if (typeof budget !== 'number' || Number.isNaN(budget) || budget < 0) {
      throw new ValidationError('budget', `budget is a number of cost units ≥ 0 (got ${String(budget)})`);
    }
    const deadlineMs = options.deadlineMs;
    if (deadlineMs !== undefined && !(Number.isFinite(deadlineMs) && deadlineMs > 0)) {
      throw new ValidationError('deadlineMs', `deadlineMs is a number of ms > 0 (got ${String(deadlineMs)})`);
    }
    let versions = this.#definitions.get(name);
    if (!versions) this.#definitions.set(name, (versions = new Map<string, WorkflowDefinition>()));
    if (versions.has(version)) {
      throw new ValidationError(
        'version',
        `Workflow '${name}' version '${version}' is registered already: register changed code under a new version`,
      );
    }
    if (this.#definitions.size === 1 && versions.size === 0) this.#listenToTasks();
    versions.set(version, { name, version, maxSteps, budget, deadlineMs, fn });
    this.#latest.set(name, version);
    if (versions.size === 1) this.#observer?.registered(name);
    if (this.#running) void this.claimNow();
  }

  /** The capabilities this node claims workflow runs with. */
  capabilities(): string[] {
    const caps: string[] = [];
    for (const [name, versions] of this.#definitions) {
      for (const version of versions.keys()) caps.push(workflowCapability(name, version));
    }
    return caps;
  }

  get size(): number {
    return this.#definitions.size;
  }

  /** Starts claiming due runs of the registered versions. Call after the durable layer started. */
  start(): void {
    this.#running = true;
    const lane = new CheckpointLane(this.#parts.store, this.#parts.durable.nodeId);
    this.#lane = lane;
    this.#stopResumed = this.#parts.onResumed(() => {
      const waiting = this.#resumeWaiters;
      this.#resumeWaiters = [];
      for (const wake of waiting) wake();
    });
    this.#parts.durable.onFinished((ids) => {
      if (this.#executions.size === 0) return; // every durable task's end passes here: nothing to look up
      for (const id of ids) {
        // Ended by another node (cancelled there, or by a copy that took it over): stop this copy and its tasks.
        this.#executions.get(id)?.execution.interrupt('lost', true);
      }
    });
    this.#timer = setInterval(() => void this.claimNow(), this.#parts.options.claimIntervalMs);
    this.#timer.unref();
    const takenBack = this.#takenBack;
    this.#takenBack = [];
    for (const run of takenBack) void this.#adopt(run);
    void this.claimNow();
  }

  /**
   * Stops: every run executing here is unwound where it is (its last checkpoint stands; the store's `leave` gives
   * the runs back, for another node or this one's next start). Child tasks are left to the engine's stop.
   */
  stop(): void {
    this.#running = false;
    clearInterval(this.#timer);
    this.#stopResumed?.();
    for (const { execution } of this.#executions.values()) execution.interrupt('stopping', false);
    this.#lane?.close();
    const waiting = this.#resumeWaiters;
    this.#resumeWaiters = [];
    for (const wake of waiting) wake();
  }

  // --- Starting ------------------------------------------------------------------------------------

  startRun(name: string, input: unknown, options: StartWorkflowOptions = {}): WorkflowHandle {
    const o = checkStartOptions(options);
    const versions = this.#definitions.get(name);
    const version = o.version ?? this.#latest.get(name);
    if (version === undefined || (o.version === undefined && !versions)) {
      throw new WorkflowNotFoundError(name, [...this.#definitions.keys()]);
    }
    const def = versions?.get(version);
    if (!this.#running) throw new ValidationError('orchestrator', 'Start the orchestrator before starting workflows');
    let payload: unknown;
    try {
      payload = JSON.parse(JSON.stringify(input === undefined ? null : input)) as unknown;
    } catch (error) {
      throw new ValidationError('input', `A workflow's input must be JSON-serialisable (${String(error)})`);
    }
    const id = o.id ?? randomUUID();
    const createdAt = Date.now();
    const deadlineMs = o.deadlineMs ?? def?.deadlineMs;
    const run: NewRun = {
      id,
      type: workflowType(name),
      tenantId: o.tenantId ?? null,
      idempotencyKey: null,
      task: {
        requires: [workflowCapability(name, version)],
        prefers: [],
        priority: o.priority ?? 0,
        payload,
        timeoutMs: null,
        deadlineAt: deadlineMs === undefined ? null : createdAt + deadlineMs,
        maxAttempts: 1,
        affinityKey: null,
      },
      createdAt,
      notBefore: o.delayMs === undefined || o.delayMs === 0 ? null : createdAt + o.delayMs,
    };
    const durable = this.#parts.durable;
    // The caller follows the run once its insert says it is theirs: a refusal (another tenant's run holds the id, or
    // the store failed) settles this caller only, not the run's own followers on this node.
    let settle!: { resolve: (value: unknown) => void; reject: (error: unknown) => void };
    const result = new Promise<unknown>((resolve, reject) => (settle = { resolve, reject }));
    result.catch(noop);
    const follow = (): void => void durable.follow(id, o.tenantId).then(settle.resolve, settle.reject);
    this.#stats.started++;
    const prior = this.#inserting.get(id);
    const insertNow = (): Promise<InsertOutcome> => durable.insert(run);
    const insert = prior ? prior.then(insertNow, insertNow) : insertNow();
    this.#inserting.set(id, insert);
    const forget = (): void => {
      if (this.#inserting.get(id) === insert) this.#inserting.delete(id);
    };
    insert.then(forget, forget);
    const stored = insert.then(
      (outcome) => {
        if (outcome.kind === 'duplicate') {
          if (outcome.existing.tenantId !== run.tenantId) {
            // Another tenant's run holds the id: not this caller's.
            settle.reject(new ValidationError('id', `Run id ${id} is taken: choose another id`));
            return id;
          }
          follow();
          durable.settleIfEnded(outcome.existing);
          return id;
        }
        follow();
        if (run.notBefore != null) return id; // stored unowned, for any node when due
        if (!def) {
          // Another node's version: leave it to them.
          durable.append({ runId: id, kind: 'released', at: Date.now(), nodeId: durable.nodeId });
          return id;
        }
        this.#launch(def, storedRecord(run, durable.nodeId), { steps: [], signals: [] });
        return id;
      },
      (error: unknown) => {
        settle.reject(error);
        throw error;
      },
    );
    stored.catch(noop);
    return {
      id,
      result,
      stored,
      cancel: async (reason?: unknown) => {
        await stored.catch(noop);
        return this.cancel(id, o.tenantId, reason);
      },
    };
  }

  // --- Signals and cancel ----------------------------------------------------------------------------

  /**
   * Delivers a signal; resolves true when delivered, false when the run already ended. Rejects with RunNotFoundError
   * for an unknown run (or another tenant's), ValidationError for a bad name or payload.
   */
  async signal(runId: string, name: string, payload: unknown, options: SendSignalOptions = {}): Promise<boolean> {
    if (typeof runId !== 'string' || runId === '') {
      throw new ValidationError('runId', 'signal() needs the run id (a non-empty string)');
    }
    if (typeof name !== 'string' || name === '') {
      throw new ValidationError('name', 'signal() needs the signal name the workflow waits for (a non-empty string)');
    }
    let json: unknown;
    try {
      json = JSON.parse(JSON.stringify(payload === undefined ? null : payload)) as unknown;
    } catch (error) {
      throw new ValidationError('payload', `A signal's payload must be JSON-serialisable (${String(error)})`);
    }
    const actor = options.actor ?? null;
    if (actor !== null && typeof actor !== 'string') throw new ValidationError('actor', 'actor is a string');
    const durable = this.#parts.durable;
    await durable.flush(1_000); // a run started here a moment ago is in the store
    const at = Date.now();
    const outcome = await this.#parts.store.signal({
      runId,
      ...(options.tenantId === undefined ? {} : { tenantId: options.tenantId }),
      name,
      payload: json,
      actor,
      at,
      nodeId: durable.nodeId,
    });
    if (outcome.kind === 'unknown') throw new RunNotFoundError(runId);
    this.#parts.audit(
      'workflow.signal',
      { runId, signal: name, delivered: outcome.kind === 'delivered' },
      actor ?? undefined,
    );
    if (outcome.kind === 'ended') return false;
    const record: SignalRecord = { id: outcome.id, runId, name, payload: json, actor, at, consumedBy: null };
    const held = this.#executions.get(runId);
    if (held && !held.execution.unwinding) held.execution.deliver(record);
    else if (this.#running && this.#definitions.size > 0) void this.claimNow(); // it may be ours to wake
    return true;
  }

  /**
   * Cancels a run: here, through its execution (its tasks are cancelled); elsewhere, through the store (the node
   * running it stops it when told). Resolves with whether it was live.
   */
  async cancel(runId: string, tenantId: string | undefined, reason: unknown): Promise<boolean> {
    const held = this.#executions.get(runId);
    if (held && !held.execution.unwinding && (tenantId === undefined || held.execution.tenantId === tenantId)) {
      return held.execution.cancel(reason ?? 'cancelled');
    }
    // Not here, or an execution that parked (or lost it) and is only unwinding: the store holds the run.
    return this.#parts.durable.cancel(runId, tenantId, reason ?? 'cancelled');
  }

  /** Whether this node runs `runId` now (and it is `tenantId`'s, when given). */
  holds(runId: string, tenantId?: string): boolean {
    const held = this.#executions.get(runId);
    return (
      held !== undefined &&
      !held.execution.unwinding &&
      (tenantId === undefined || held.execution.tenantId === tenantId)
    );
  }

  /** Cancels a run this node runs now (see `holds`); false otherwise. */
  cancelHeld(runId: string, reason: unknown): boolean {
    return this.#executions.get(runId)?.execution.cancel(reason) ?? false;
  }

  // --- Claiming and running ----------------------------------------------------------------------------

  /** Claims due workflow runs of the versions registered here, as room allows. Resolves with how many. */
  async claimNow(): Promise<number> {
    if (!this.#running || this.#definitions.size === 0) return 0;
    if (this.#claiming) {
      this.#claimAgain = true;
      return 0;
    }
    const room = Math.min(this.#parts.options.maxClaim, MAX_ACTIVE - this.#executions.size);
    if (room <= 0) return 0;
    this.#claiming = true;
    try {
      const { runs } = await this.#parts.store.claim({
        nodeId: this.#parts.durable.nodeId,
        limit: room,
        capabilities: this.capabilities(),
        maxRecoveries: this.#parts.options.maxRecoveries,
        workflows: true,
      });
      await Promise.all(runs.map((run) => this.#adopt(run)));
      return runs.length;
    } catch {
      return 0; // the durable layer reports the store's health; the next interval tries again
    } finally {
      this.#claiming = false;
      if (this.#claimAgain) {
        this.#claimAgain = false;
        setImmediate(() => void this.claimNow());
      }
    }
  }

  async #adopt(run: RunRecord): Promise<void> {
    const durable = this.#parts.durable;
    const def = this.#definitionOf(run);
    if (!def || !this.#running) {
      durable.append({ runId: run.id, kind: 'released', at: Date.now(), nodeId: durable.nodeId });
      return;
    }
    let history: WorkflowHistory;
    try {
      history = await this.#parts.store.history(run.id);
    } catch {
      durable.append({ runId: run.id, kind: 'released', at: Date.now(), nodeId: durable.nodeId });
      return;
    }
    this.#launch(def, run, history);
  }

  #definitionOf(run: RunRecord): WorkflowDefinition | undefined {
    const cap = run.task.requires[0] ?? '';
    const at = cap.lastIndexOf('@');
    const name = run.type.slice('workflow:'.length);
    return this.#definitions.get(name)?.get(cap.slice(at + 1));
  }

  #launch(def: WorkflowDefinition, run: RunRecord, history: WorkflowHistory): void {
    if (!this.#running || !this.#lane) return;
    const execution = new WorkflowExecution(this.#host(def, run.id), def, run, history);
    const startedAt = performance.now();
    this.#executions.set(run.id, { execution, workflow: def.name, startedAt });
    this.#stats.executions++;
    const events = this.#parts.events;
    if (events.has('workflow:started')) {
      const checkpointed = history.steps.filter((s) => s.status === 'completed' || s.status === 'failed').length;
      events.emit('workflow:started', { runId: run.id, workflow: def.name, version: def.version, checkpointed });
    }
    void execution.run().then((end) => this.#ended(run, def, execution, end, startedAt));
  }

  #ended(run: RunRecord, def: WorkflowDefinition, execution: WorkflowExecution, end: ExecutionEnd, t0: number): void {
    // Only its own entry: the run may have been claimed again (a new execution) while this one unwound.
    if (this.#executions.get(run.id)?.execution === execution) this.#executions.delete(run.id);
    this.#stats.replayedSteps += execution.replayed;
    const durable = this.#parts.durable;
    const base = { runId: run.id, at: Date.now(), nodeId: durable.nodeId, cost: execution.cost };
    switch (end.kind) {
      case 'completed':
        this.#stats.completed++;
        durable.append({ ...base, kind: 'completed', result: end.value });
        durable.settle(run.id, true, end.value);
        break;
      case 'failed':
      case 'cancelled':
      case 'timed-out': {
        if (end.kind === 'failed') this.#stats.failed++;
        else if (end.kind === 'cancelled') this.#stats.cancelled++;
        else this.#stats.timedOut++;
        const e = describeError(end.error);
        durable.append({ ...base, kind: end.kind, error: { name: e.name, message: e.message, code: e.code ?? null } });
        durable.settle(run.id, false, end.error);
        break;
      }
      case 'parked':
        this.#stats.parked++;
        break;
      case 'lost':
      case 'stopping':
        break;
    }
    const durationMs = performance.now() - t0;
    this.#observer?.runEnded(def.name, end.kind, durationMs);
    const events = this.#parts.events;
    if (end.kind === 'parked' || end.kind === 'lost' || end.kind === 'stopping') {
      events.emit('workflow:paused', { runId: run.id, workflow: def.name, reason: end.kind, durationMs });
    } else {
      events.emit('workflow:ended', {
        runId: run.id,
        workflow: def.name,
        outcome: end.kind,
        ...('error' in end ? { error: end.error } : {}),
        durationMs,
        cost: execution.cost,
      });
    }
    if (this.#running && this.#executions.size < MAX_ACTIVE) {
      // Room again; and a run that parked may be due at once (a signal came meanwhile).
      if (end.kind === 'parked') setImmediate(() => void this.claimNow());
    }
  }

  #host(def: WorkflowDefinition, runId: string): ExecutionHost {
    const parts = this.#parts;
    const durable = parts.durable;
    return {
      nodeId: durable.nodeId,
      lane: this.#lane!,
      holdWaitsMs: HOLD_WAITS_MS,
      submitChild: (task: Task, key: string): ChildHandle => {
        const handle = parts.submit({ ...task, idempotencyKey: key });
        const id = handle.stored ?? Promise.resolve(handle.id);
        if (this.#watched.size >= CHILD_INFO_LIMIT) this.#watched.clear(); // a bound: ids missed are read from the store
        this.#watched.add(handle.id);
        // A replay finds the task its key names (stored by the first run, perhaps running here now as a recovery):
        // `stored` gives that task's id, not `handle.id`. Watch that one instead.
        id.then((childId) => {
          if (childId === handle.id) return;
          this.#watched.delete(handle.id);
          this.#watched.add(childId);
        }, noop);
        return {
          result: handle.result,
          id,
          cancel: (reason: unknown) => {
            void id.then((childId) => parts.cancelTask(childId, reason), noop);
          },
        };
      },
      childInfo: async (childId: string): Promise<ChildInfo> => {
        this.#watched.delete(childId);
        const local = this.#childInfo.get(childId);
        if (local) {
          this.#childInfo.delete(childId);
          return local;
        }
        // Ended before it was watched, or on another node: its record, once this node's writes are in the store (a
        // task that ended here a moment ago has its end, and so its cost, still in the writer's buffer).
        const record = await durable.get(childId).catch(() => undefined);
        return { agentId: record?.agentId ?? null, attempts: record?.attempts ?? 0, cost: record?.cost ?? 0 };
      },
      park: async (input) => {
        const [outcome] = await parts.store.park([{ ...input, nodeId: durable.nodeId, at: Date.now() }]);
        return outcome ?? 'lost';
      },
      signals: async (runId) => (await parts.store.history(runId)).signals,
      halted: parts.halted,
      whenResumed: () =>
        new Promise<void>((resolve) => {
          if (!parts.halted() || !this.#running) resolve();
          else this.#resumeWaiters.push(resolve);
        }),
      stepEnded: (step) => {
        this.#observer?.stepEnded(def.name, step.kind, step.replayed, step.ms, step.ok);
        if (step.replayed || !this.#parts.events.has('workflow:step')) return;
        this.#parts.events.emit('workflow:step', {
          runId,
          workflow: def.name,
          seq: step.seq,
          name: step.name,
          kind: step.kind,
          ok: step.ok,
          durationMs: step.ms,
        });
      },
    };
  }

  stats(): WorkflowStats {
    const registered: string[] = [];
    for (const [name, versions] of this.#definitions) for (const v of versions.keys()) registered.push(`${name}@${v}`);
    return {
      registered,
      active: this.#executions.size,
      ...this.#stats,
      checkpoints: this.#lane?.stats() ?? { batches: 0, written: 0, failures: 0 },
    };
  }
}

/** The record of a run this node just inserted (so it runs it without reading it back). */
function storedRecord(run: NewRun, nodeId: string): RunRecord {
  return {
    id: run.id,
    type: run.type,
    tenantId: run.tenantId,
    idempotencyKey: run.idempotencyKey,
    status: 'queued',
    task: run.task,
    attempts: 0,
    recoveries: 0,
    owner: nodeId,
    result: null,
    error: null,
    createdAt: run.createdAt,
    updatedAt: run.createdAt,
    finishedAt: null,
    notBefore: null,
    waitingFor: [],
    cost: 0,
    agentId: null,
  };
}

interface CheckedStartOptions {
  readonly id: string | undefined;
  readonly tenantId: string | undefined;
  readonly deadlineMs: number | undefined;
  readonly priority: number | undefined;
  readonly version: string | undefined;
  readonly delayMs: number | undefined;
}

function checkStartOptions(options: StartWorkflowOptions): CheckedStartOptions {
  if (options === null || typeof options !== 'object') {
    throw new ValidationError('options', 'startWorkflow options are an object ({ id, tenantId, deadlineMs, … })');
  }
  const { id, tenantId, deadlineMs, priority, version, delayMs } = options;
  if (id !== undefined && (typeof id !== 'string' || id === '' || id.length > 256)) {
    throw new ValidationError('id', `A run id is a non-empty string of at most 256 characters (got ${String(id)})`);
  }
  if (tenantId !== undefined && typeof tenantId !== 'string') {
    throw new ValidationError('tenantId', 'tenantId is a string');
  }
  if (deadlineMs !== undefined && !(Number.isFinite(deadlineMs) && deadlineMs > 0)) {
    throw new ValidationError('deadlineMs', `deadlineMs is a number of ms > 0 (got ${String(deadlineMs)})`);
  }
  if (priority !== undefined && !Number.isInteger(priority)) {
    throw new ValidationError('priority', `priority is an integer (got ${String(priority)})`);
  }
  if (version !== undefined && (typeof version !== 'string' || version === '')) {
    throw new ValidationError('version', 'version is a non-empty string');
  }
  if (delayMs !== undefined && !(Number.isFinite(delayMs) && delayMs >= 0)) {
    throw new ValidationError('delayMs', `delayMs is a number of ms ≥ 0 (got ${String(delayMs)})`);
  }
  return { id, tenantId, deadlineMs, priority, version, delayMs };
}
