/**
 * Durable runs: the orchestrator's side of a {@link RunStore}. A durable submit is stored first (grouped commits,
 * src/store/run-writer.ts) and accepted by the engine only once committed; each step of the run is written as the
 * engine takes it (this is the engine's RunObserver); the node renews its lease, takes over the runs of dead nodes
 * and runs nobody holds, and settles `attach()` handles when a run ends, here or on any node.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { describeError, RemoteTaskError } from '../bridge/bridge.js';
import type { TaskOutcome } from '../engine/events.js';
import type { RunObserver, TaskExecutionEngine } from '../engine/task-execution-engine.js';
import { validateTask, type Task, type TaskHandle, type TaskRecord, type TaskSpec } from '../engine/task.js';
import { ProgressFeed } from '../engine/progress.js';
import {
  isInstance,
  messageOf,
  NoCapableAgentError,
  OrchestratorStoppedError,
  TaskCancelledError,
  TaskNotFoundError,
  TaskTimeoutError,
  ValidationError,
} from '../errors.js';
import type { ResolvedDurabilityOptions } from './durability-options.js';
import { RunWriter, unavailable, type RunWriterStats } from './run-writer.js';
import {
  isTerminal,
  type InsertOutcome,
  type NewRun,
  type RunEventInput,
  type WorkflowHistory,
  type RunEvent,
  type RunPage,
  type RunQuery,
  type RunRecord,
  type RunStore,
  type StoredError,
  type StoredTask,
  type UnclaimedRuns,
} from './store.js';

/** A durable task's handle: `stored` settles once the task is committed to the store. */
export interface DurableTaskHandle<TResult = unknown> extends TaskHandle<TResult> {
  /**
   * Resolves with the id the task is stored under once its record is committed (its own id, or the first task's
   * for a duplicate `idempotencyKey`); rejects with StoreUnavailableError when it could not be stored (then it was
   * not accepted and `result` rejects with the same error). Await it before answering your own caller "accepted".
   */
  readonly stored: Promise<string>;
}

/** Counts of the durable layer, in `stats().durable`. */
export interface DurableStats extends RunWriterStats {
  /** The store's kind: `memory`, `pglite` or `postgres`. */
  readonly store: string;
  /** This node's name in the store. */
  readonly nodeId: string;
  /** Runs taken over from the store (dead nodes' and unowned ones). */
  readonly adopted: number;
  /** Runs dead-lettered at take-over (their node died with them too often). */
  readonly poisoned: number;
  /** Finished runs deleted by retention. */
  readonly pruned: number;
  /** Whether the store is answering (the last write or lease renewal worked). */
  readonly available: boolean;
  /**
   * Due runs no live node took for `durability.unclaimedAfterMs`, by type and requirements, as of the last look: they
   * wait for a node that can serve them.
   */
  readonly unclaimed: readonly UnclaimedRuns[];
  /** The last store error, or `null`. */
  readonly lastError: string | null;
}

/** Told of the durable layer's moments, for metrics. */
export interface DurableObserver {
  writeLatency(kind: 'insert' | 'append', size: number, ms: number): void;
  writeFailed(kind: 'insert' | 'append' | 'heartbeat' | 'claim' | 'prune'): void;
  adopted(count: number, recovered: number): void;
}

interface Waiter {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  readonly tenantId: string | undefined;
}

const noop = (): void => {};

/** How long a read waits for this node's queued writes (longer while the store is down: then it reads what it has). */
const READ_YOUR_WRITES_MS = 1_000;

/** Why a copy of a run is stopped here when the store says the run ended elsewhere. */
const ENDED_ELSEWHERE = 'the run ended elsewhere (cancelled from another node, or ended by another copy)';

/** At most this many of its previous process's runs a restarted node takes back at start (one claim). */
const RECLAIM_LIMIT = 100_000;

/** The task as stored. */
function storedTaskOf(spec: TaskSpec, acceptedAtEpoch: number): StoredTask {
  return {
    requires: spec.requires,
    prefers: spec.prefers,
    priority: spec.priority,
    payload: spec.payload === undefined ? null : spec.payload,
    timeoutMs: spec.timeoutMs === Infinity ? null : spec.timeoutMs,
    deadlineAt: spec.deadlineMs === Infinity ? null : acceptedAtEpoch + spec.deadlineMs,
    maxAttempts: spec.maxAttempts,
    affinityKey: spec.affinityKey ?? null,
  };
}

/**
 * The task a stored run was submitted as, to run it again (taken over, or retried): `deadlineMs` is what is left of
 * its deadline, or none.
 */
export function taskOfRun(run: RunRecord, deadlineMs?: number): Task {
  const t = run.task;
  return {
    type: run.type,
    requires: t.requires,
    prefers: t.prefers,
    priority: t.priority,
    payload: t.payload,
    maxAttempts: t.maxAttempts,
    timeoutMs: t.timeoutMs ?? Infinity,
    ...(deadlineMs === undefined ? {} : { deadlineMs }),
    ...(run.tenantId === null ? {} : { tenantId: run.tenantId }),
    ...(t.affinityKey === null ? {} : { affinityKey: t.affinityKey }),
  };
}

/** An error as stored: name, message and code, read defensively. */
function storedErrorOf(error: unknown): StoredError {
  const e = describeError(error);
  return { name: e.name, message: e.message, code: e.code ?? null };
}

/** The outcome of a finished run, as an `attach()` handle settles with it. */
function settleFromRecord(run: RunRecord, waiter: Waiter): void {
  if (run.status === 'completed') waiter.resolve(run.result);
  else {
    const error = run.error ?? { name: 'Error', message: `Run ${run.id} ended ${run.status}`, code: null };
    waiter.reject(
      new RemoteTaskError(
        { name: error.name, message: error.message, ...(error.code ? { code: error.code } : {}) },
        run.owner ?? 'store',
      ),
    );
  }
}

export interface DurableRunsParts {
  readonly store: RunStore;
  readonly options: ResolvedDurabilityOptions;
  readonly engine: TaskExecutionEngine;
  /** The capabilities of this node's agents now (what it may claim). */
  readonly capabilities: () => readonly string[];
  /** The engine's task defaults, to check a stored task again when it is taken over. */
  readonly taskDefaults: { timeoutMs: number; maxAttempts: number; maxPayloadBytes: number };
  /**
   * Whether the engine's tasks are durable here (the orchestrator has a `store`). False for the private MemoryStore
   * that holds workflow runs when there is none: then it only hosts workflow runs. @default true
   */
  readonly tasks?: boolean;
}

export class DurableRuns implements RunObserver {
  readonly #store: RunStore;
  readonly #options: ResolvedDurabilityOptions;
  readonly #engine: TaskExecutionEngine;
  readonly #capabilities: () => readonly string[];
  readonly #taskDefaults: DurableRunsParts['taskDefaults'];
  readonly nodeId: string;
  readonly #writer: RunWriter;
  readonly #waiters = new Map<string, Set<Waiter>>();
  /** Runs this node holds in its engine now. */
  readonly #held = new Set<string>();
  /** Held runs being stopped here because the store says they ended elsewhere. */
  readonly #endedElsewhere = new Set<string>();
  #observer: DurableObserver | undefined;
  #finishedListeners: ((ids: readonly string[]) => void)[] = [];
  #takeBacks: ((from: string) => Promise<void>)[] = [];
  readonly #tasks: boolean;
  #timers: NodeJS.Timeout[] = [];
  #unlisten: (() => Promise<void>) | undefined;
  #running = false;
  #claiming = false;
  #polling = false;
  #available = true;
  #lastError: string | null = null;
  #unclaimed: readonly UnclaimedRuns[] = [];
  #adopted = 0;
  #poisoned = 0;
  #pruned = 0;

  constructor(parts: DurableRunsParts) {
    this.#store = parts.store;
    this.#options = parts.options;
    this.#engine = parts.engine;
    this.#capabilities = parts.capabilities;
    this.#taskDefaults = parts.taskDefaults;
    this.nodeId = parts.options.nodeId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.#writer = new RunWriter(parts.store, this.nodeId, parts.options.maxBatch, parts.options.maxBufferedEvents);
    this.#writer.observe({
      written: (kind, size, ms) => {
        this.#ok();
        this.#observer?.writeLatency(kind, size, ms);
      },
      failed: (kind, error) => {
        this.#trouble(error);
        this.#observer?.writeFailed(kind);
      },
    });
    this.#tasks = parts.tasks !== false;
    if (this.#tasks) parts.engine.observeRuns(this);
  }

  observe(observer: DurableObserver): void {
    this.#observer = observer;
  }

  /** The store, for reads. */
  get store(): RunStore {
    return this.#store;
  }

  /**
   * Opens the store (migrations), takes back this node's own unfinished runs when its name is stable, takes a lease,
   * and starts the heartbeat, the claims, the pruning and the wait for ends. Rejects when the store cannot be opened.
   */
  async start(): Promise<void> {
    await this.#store.open();
    this.#unlisten = await this.#store.onFinished((ids) => this.#finishedElsewhere(ids));
    this.#running = true;
    if (this.#options.nodeId !== undefined && this.#tasks) {
      // A restart under the same name: the runs the old process held are orphans. With its lease ended they are a
      // dead node's runs, taken over in one claim of only those (`from`) as recoveries (counted against
      // maxRecoveries, so a poison task cannot crash-loop us); those that do not fit here go back to the store. Only
      // then is the lease renewed: claimed again before, they would count a second recovery.
      await this.#store.heartbeat(this.nodeId, 0);
      await this.#claim(RECLAIM_LIMIT, true, this.nodeId);
      // Its workflow runs too (the workflow runner takes them, and executes them once it starts).
      for (const takeBack of this.#takeBacks) await takeBack(this.nodeId);
    }
    await this.#store.heartbeat(this.nodeId, this.#options.leaseMs);
    this.#every(this.#options.heartbeatMs, () => this.#heartbeat());
    if (this.#tasks) this.#every(this.#options.claimIntervalMs, () => this.claimNow());
    if (this.#options.pruneIntervalMs !== Infinity && this.#options.retentionMs !== Infinity)
      this.#every(this.#options.pruneIntervalMs, () => this.pruneNow());
    this.#every(this.#options.pollMs, () => this.#poll());
    if (this.#options.unclaimedAfterMs !== Infinity) {
      this.#every(Math.min(30_000, Math.max(1, Math.floor(this.#options.unclaimedAfterMs / 2))), () =>
        this.lookForUnclaimed(),
      );
    }
    if (this.#tasks) await this.claimNow();
  }

  /**
   * After the engine stopped (its unfinished durable tasks were released): writes what is left within `timeoutMs`,
   * gives this node's remaining runs back and ends its lease, stops listening and closes the store.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.#running = false;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    const startedAt = performance.now();
    await this.#writer.flush(Math.max(0, timeoutMs));
    this.#writer.close();
    const left = (): number => Math.max(1, timeoutMs - (performance.now() - startedAt));
    await withTimeout(this.#store.leave(this.nodeId), left()).catch(noop);
    await withTimeout(this.#unlisten?.() ?? Promise.resolve(), left()).catch(noop);
    const stopped = new OrchestratorStoppedError(
      'The orchestrator stopped before the run ended; attach(id) on a running orchestrator to follow it',
    );
    for (const [, waiters] of this.#waiters) for (const w of waiters) w.reject(stopped);
    this.#waiters.clear();
    await withTimeout(this.#store.close(), left()).catch(noop);
  }

  // --- Submitting --------------------------------------------------------------------------------

  /**
   * Stores a task (under `id`: a run with that id already stored is followed instead) and accepts it once committed.
   * Throws synchronously when it would be refused now (the errors of `delegate`); `stored` rejects with
   * StoreUnavailableError when the store did not take it.
   */
  delegate(input: Task, id: string = randomUUID()): DurableTaskHandle {
    // A task no agent here can serve is stored all the same, for a node that can (it claims it from the store).
    const spec = this.#engine.prepare(input, false);
    const createdAt = Date.now();
    const run: NewRun = {
      id,
      type: spec.type,
      tenantId: spec.tenantId ?? null,
      idempotencyKey: spec.idempotencyKey ?? null,
      task: storedTaskOf(spec, createdAt),
      createdAt,
      ...(spec.delayMs > 0 ? { notBefore: createdAt + spec.delayMs } : {}),
    };
    let cancelled: unknown;
    let delayed = false;
    let handle: TaskHandle | undefined;
    let settle!: { resolve: (v: unknown) => void; reject: (e: unknown) => void };
    const result = new Promise<unknown>((resolve, reject) => (settle = { resolve, reject }));
    result.catch(noop);
    /** The handle's progress, made on first read: the attempts run here, relayed from the engine once it has the run. */
    let relay: ProgressFeed | undefined;
    const stored = this.#writer.insert(run).then(
      (outcome) => {
        if (outcome.kind === 'duplicate') {
          this.#follow(outcome.existing, spec.tenantId, settle);
          return outcome.existing.id;
        }
        if (cancelled !== undefined) {
          this.#end(id, 'cancelled', new TaskCancelledError(id, cancelled), settle);
          return id;
        }
        if (spec.delayMs > 0) {
          // Stored with no owner until it is due: any node with an agent for it claims it then.
          if (cancelled !== undefined) {
            this.#end(id, 'cancelled', new TaskCancelledError(id, cancelled), settle);
            return id;
          }
          delayed = true;
          this.#wait(id, { ...settle, tenantId: spec.tenantId });
          return id;
        }
        if (!this.#engine.canServe(spec.requires)) {
          this.#notAccepted(id, spec, new NoCapableAgentError(spec.requires), settle);
          return id;
        }
        try {
          // The caller waits like any attacher: settled by this node's end of the run, or (if the run ends
          // elsewhere first) from the store.
          this.#wait(id, { ...settle, tenantId: spec.tenantId });
          handle = this.#engine.acceptRun(spec, { id, attempts: 0, recoveries: 0, submitted: true });
          relay?.follow(handle.progress);
          this.#held.add(id);
        } catch (error) {
          this.#waiters.delete(id); // nobody else knows this new id yet
          this.#notAccepted(id, spec, error, settle);
        }
        return id;
      },
      (error: unknown) => {
        const refused = unavailable('insert', error);
        settle.reject(refused);
        throw refused;
      },
    );
    stored.catch(noop);
    return {
      id,
      result,
      stored,
      get progress() {
        if (!relay) {
          relay = endedWith(result);
          if (handle) relay.follow(handle.progress);
        }
        return relay;
      },
      cancel: (reason?: unknown) => {
        if (handle) return handle.cancel(reason);
        if (delayed) {
          // Waiting in the store (or claimed by a node since): cancelled wherever it is.
          void this.cancel(id, spec.tenantId, reason ?? 'cancelled').catch(noop);
          return true;
        }
        if (cancelled !== undefined) return false;
        cancelled = reason ?? 'cancelled before it was stored';
        return true;
      },
    };
  }

  /** The engine could not take a stored run now: it ends (cancelled, or no retry possible) or goes back to the store. */
  #notAccepted(
    id: string,
    spec: TaskSpec,
    error: unknown,
    settle: { resolve: (v: unknown) => void; reject: (e: unknown) => void },
  ): void {
    if (isInstance(error, TaskCancelledError)) {
      this.#end(id, 'cancelled', new TaskCancelledError(id, spec.signal?.reason), settle);
      return;
    }
    // Queue full, stopping, no agent here for it: the run stays stored, for any node that can take it, and the caller
    // follows it.
    this.#writer.append({
      runId: id,
      kind: 'released',
      at: Date.now(),
      nodeId: this.nodeId,
      error: storedErrorOf(error),
    });
    this.#wait(id, { ...settle, tenantId: spec.tenantId });
  }

  /** Ends a stored run that never reached the engine. */
  #end(
    id: string,
    kind: 'cancelled' | 'timed-out' | 'failed',
    error: Error,
    settle?: { reject: (e: unknown) => void },
  ): void {
    this.#writer.append({ runId: id, kind, at: Date.now(), nodeId: this.nodeId, error: storedErrorOf(error) });
    settle?.reject(error);
    this.#settleLocal(id, false, error);
  }

  // --- Following a run ---------------------------------------------------------------------------

  /**
   * A handle on a stored run, from any node and after restarts: its result settles when the run ends wherever it
   * runs. Rejects with TaskNotFoundError when the store has no such run (or it is another tenant's).
   */
  attach(id: string, tenantId: string | undefined): TaskHandle {
    let settle!: { resolve: (v: unknown) => void; reject: (e: unknown) => void };
    const result = new Promise<unknown>((resolve, reject) => (settle = { resolve, reject }));
    result.catch(noop);
    const waiter: Waiter = { ...settle, tenantId };
    this.#wait(id, waiter);
    // The run may have ended already, or not exist: ask the store once now.
    this.#store.get(id, tenantId).then(
      (run) => {
        if (!this.#isWaiting(id, waiter)) return;
        if (!run) {
          this.#unwait(id, waiter);
          waiter.reject(new TaskNotFoundError(id, 'the store'));
        } else if (isTerminal(run.status)) {
          this.#unwait(id, waiter);
          settleFromRecord(run, waiter);
        }
      },
      (error: unknown) => {
        if (!this.#isWaiting(id, waiter)) return;
        this.#unwait(id, waiter);
        waiter.reject(unavailable('get', error));
      },
    );
    let relay: ProgressFeed | undefined;
    const engine = this.#engine;
    return {
      id,
      result,
      cancel: (reason?: unknown) => (this.#held.has(id) ? this.#engine.cancel(id, reason, tenantId) : false),
      // The attempts run on this node only, from when it is first read.
      get progress() {
        if (!relay) {
          relay = endedWith(result);
          const local = engine.progressOf(id, tenantId);
          if (local) relay.follow(local);
        }
        return relay;
      },
    };
  }

  /** A duplicate's caller follows the first run: at once when it ended, else until it does. */
  #follow(
    existing: RunRecord,
    tenantId: string | undefined,
    settle: { resolve: (v: unknown) => void; reject: (e: unknown) => void },
  ): void {
    const waiter: Waiter = { ...settle, tenantId };
    if (isTerminal(existing.status)) settleFromRecord(existing, waiter);
    else this.#wait(existing.id, waiter);
  }

  #wait(id: string, waiter: Waiter): void {
    let set = this.#waiters.get(id);
    if (!set) this.#waiters.set(id, (set = new Set()));
    set.add(waiter);
  }

  #isWaiting(id: string, waiter: Waiter): boolean {
    return this.#waiters.get(id)?.has(waiter) ?? false;
  }

  #unwait(id: string, waiter: Waiter): void {
    const set = this.#waiters.get(id);
    if (!set) return;
    set.delete(waiter);
    if (set.size === 0) this.#waiters.delete(id);
  }

  /** A run ended on this node: its waiters get the value itself (not its JSON copy). */
  #settleLocal(id: string, ok: boolean, value: unknown): void {
    const set = this.#waiters.get(id);
    if (!set) return;
    this.#waiters.delete(id);
    for (const w of set) (ok ? w.resolve : w.reject)(value);
  }

  /** The store says these runs ended (on any node): settle their waiters from the records. */
  #finishedElsewhere(ids: readonly string[]): void {
    // A run this node still runs ended in the store: cancelled from another node, or ended by another copy (this node
    // stalled past its lease). The store already has its end; this copy stops, through its `ctx.signal`.
    for (const id of ids) {
      if (!this.#held.has(id)) continue;
      this.#endedElsewhere.add(id);
      if (!this.#engine.cancel(id, ENDED_ELSEWHERE)) this.#endedElsewhere.delete(id);
    }
    for (const listener of this.#finishedListeners) listener(ids);
    const wanted = ids.filter((id) => this.#waiters.has(id));
    if (wanted.length > 0) this.#settleFromStore(wanted);
  }

  /**
   * Cancels a stored run wherever it runs: here, through the engine; elsewhere, by writing its end (`cancelled`) to
   * the store, whose notification makes the node running it abort its attempt. Resolves with whether the run was
   * live and is now cancelled (false when unknown, another tenant's, or it ended first).
   */
  async cancel(id: string, tenantId: string | undefined, reason: unknown): Promise<boolean> {
    if (this.#held.has(id)) return this.#engine.cancel(id, reason, tenantId);
    const run = await this.#store.get(id, tenantId);
    if (!run || isTerminal(run.status)) return false;
    const error = storedErrorOf(new TaskCancelledError(id, reason));
    await this.#store.append([{ runId: id, kind: 'cancelled', at: Date.now(), nodeId: this.nodeId, error }]);
    return (await this.#store.get(id, tenantId))?.status === 'cancelled';
  }

  #poll(): void {
    if (this.#polling || this.#waiters.size === 0) return;
    this.#settleFromStore([...this.#waiters.keys()].filter((id) => !this.#held.has(id)));
  }

  #settleFromStore(ids: string[]): void {
    if (ids.length === 0) return;
    this.#polling = true;
    this.#store.getMany(ids.slice(0, 1_000)).then(
      (runs) => {
        this.#polling = false;
        for (const run of runs) {
          if (isTerminal(run.status)) this.#settleWaiters(run);
        }
      },
      (error: unknown) => {
        this.#polling = false;
        this.#trouble(error);
      },
    );
  }

  // --- Leases and take-overs ---------------------------------------------------------------------

  async #heartbeat(): Promise<void> {
    try {
      await this.#store.heartbeat(this.nodeId, this.#options.leaseMs);
      this.#ok();
    } catch (error) {
      this.#trouble(error);
      this.#observer?.writeFailed('heartbeat');
    }
  }

  /** Takes runs from the store while this node has room for them. Resolves with how many it took. */
  claimNow(): Promise<number> {
    return this.#claim(this.#options.maxClaim - this.#engine.waiting, false);
  }

  /**
   * Claims up to `limit` runs (only `from`'s, when given); with `throwing`, a store error rejects (at start) instead
   * of being reported.
   */
  async #claim(limit: number, throwing: boolean, from?: string): Promise<number> {
    if (!this.#running || this.#claiming || limit <= 0) return 0;
    const capabilities = this.#capabilities();
    this.#claiming = true;
    try {
      const { runs, deadLettered } = await this.#store.claim({
        nodeId: this.nodeId,
        limit,
        capabilities,
        maxRecoveries: this.#options.maxRecoveries,
        // Taking back its own runs: all of them, the ones it cannot serve any more given back at once (#adopt).
        ...(from === undefined ? {} : { from, anyCapabilities: true }),
      });
      this.#ok();
      for (const run of deadLettered) {
        this.#poisoned++;
        this.#settleWaiters(run);
      }
      let recovered = 0;
      // A take-back at start may return more than this node keeps waiting: the rest go back to the store at once.
      let room = from === undefined ? Infinity : this.#options.maxClaim - this.#engine.waiting;
      for (const run of runs) {
        if (run.recoveries > 0) recovered++;
        if (room-- > 0) this.#adopt(run);
        else this.#writer.append({ runId: run.id, kind: 'released', at: Date.now(), nodeId: this.nodeId });
      }
      this.#adopted += runs.length;
      if (runs.length > 0 || deadLettered.length > 0) this.#observer?.adopted(runs.length, recovered);
      return runs.length + deadLettered.length;
    } catch (error) {
      if (throwing) throw error;
      this.#trouble(error);
      this.#observer?.writeFailed('claim');
      return 0;
    } finally {
      this.#claiming = false;
    }
  }

  /** A run that ended: its waiters here settle from its record. */
  #settleWaiters(run: RunRecord): void {
    const set = this.#waiters.get(run.id);
    if (!set) return;
    this.#waiters.delete(run.id);
    for (const w of set) settleFromRecord(run, w);
  }

  /** A run taken from the store: checked again, and queued here with its attempts and recoveries. */
  #adopt(run: RunRecord): void {
    if (!this.#running) {
      this.#writer.append({ runId: run.id, kind: 'released', at: Date.now(), nodeId: this.nodeId });
      return;
    }
    const t = run.task;
    let spec: TaskSpec;
    try {
      const deadlineMs = t.deadlineAt === null ? undefined : t.deadlineAt - Date.now();
      if (deadlineMs !== undefined && deadlineMs <= 0) {
        this.#end(run.id, 'timed-out', new TaskTimeoutError(run.id, 0, run.attempts, 'task'));
        return;
      }
      spec = validateTask(taskOfRun(run, deadlineMs), this.#taskDefaults);
    } catch (error) {
      // A record this version cannot run (edited by hand, or from a newer version): it fails, it does not loop.
      const why = isInstance(error, ValidationError) ? error : new ValidationError('store', String(error));
      this.#end(run.id, 'failed', why);
      return;
    }
    try {
      const handle = this.#engine.acceptRun(spec, {
        id: run.id,
        attempts: run.attempts,
        recoveries: run.recoveries,
        submitted: false,
      });
      this.#held.add(run.id);
      handle.result.catch(noop);
    } catch {
      // Full, or stopping: back to the store for a node with room.
      this.#writer.append({ runId: run.id, kind: 'released', at: Date.now(), nodeId: this.nodeId });
    }
  }

  /** Looks for due runs no node took for `unclaimedAfterMs` (kept for stats and health). Resolves with them. */
  async lookForUnclaimed(): Promise<readonly UnclaimedRuns[]> {
    try {
      this.#unclaimed = await this.#store.unclaimed(Date.now() - this.#options.unclaimedAfterMs, 20);
    } catch (error) {
      this.#trouble(error);
    }
    return this.#unclaimed;
  }

  /** Deletes finished runs past the retention, a batch at a time. Resolves with how many. */
  async pruneNow(): Promise<number> {
    if (this.#options.retentionMs === Infinity) return 0;
    try {
      let total = 0;
      for (let i = 0; i < 20; i++) {
        const n = await this.#store.prune(Date.now() - this.#options.retentionMs, 500);
        total += n;
        if (n < 500) break;
      }
      this.#pruned += total;
      return total;
    } catch (error) {
      this.#trouble(error);
      this.#observer?.writeFailed('prune');
      return 0;
    }
  }

  // --- The engine's RunObserver --------------------------------------------------------------------

  started(task: TaskRecord, attempt: number, agentId: string): void {
    this.#writer.append({ runId: task.id, kind: 'started', at: Date.now(), nodeId: this.nodeId, attempt, agentId });
  }

  waiting(
    task: TaskRecord,
    kind: 'retrying' | 'deferred' | 'interrupted',
    attempt: number,
    error: unknown,
    delayMs: number | undefined,
  ): void {
    this.#writer.append({
      runId: task.id,
      kind,
      at: Date.now(),
      nodeId: this.nodeId,
      attempt,
      error: storedErrorOf(error),
      detail: delayMs === undefined ? null : { delayMs },
    });
  }

  ended(task: TaskRecord, outcome: TaskOutcome | 'released', value: unknown, agentId: string | undefined): void {
    this.#held.delete(task.id);
    if (this.#endedElsewhere.delete(task.id)) {
      // Stopped here because the store has its end already: the waiters get that end, not this copy's cancel.
      this.#settleFromStore([task.id]);
      return;
    }
    const at = Date.now();
    if (outcome === 'released') {
      this.#writer.append({ runId: task.id, kind: 'released', at, nodeId: this.nodeId, attempt: task.attempts });
      return; // its waiters here wait on: they are told at stop, or when another node ends it
    }
    const ok = outcome === 'completed';
    this.#writer.append({
      runId: task.id,
      kind: outcome,
      at,
      nodeId: this.nodeId,
      attempt: task.attempts,
      agentId: agentId ?? null,
      cost: task.cost,
      ...(ok ? { result: value } : { error: storedErrorOf(value) }), // the store keeps its JSON copy
    });
    this.#settleLocal(task.id, ok, value);
  }

  // --- Hosting workflow runs (src/workflow/workflow-runner.ts) ---------------------------------------

  /** Inserts a run with the others of this turn (grouped commit). */
  insert(run: NewRun): Promise<InsertOutcome> {
    return this.#writer.insert(run);
  }

  /** Appends an event with the others of this turn. */
  append(event: RunEventInput): void {
    this.#writer.append(event);
  }

  /**
   * A promise of run `id`'s outcome: settled by `settle()` here, or (when it ends on another node) from the store.
   * Already handled: never an unhandled rejection.
   */
  follow(id: string, tenantId: string | undefined): Promise<unknown> {
    const result = new Promise<unknown>((resolve, reject) => this.#wait(id, { resolve, reject, tenantId }));
    result.catch(noop);
    return result;
  }

  /** Settles the followers of run `id` here: with its value (ended here), or its error. */
  settle(id: string, ok: boolean, value: unknown): void {
    this.#settleLocal(id, ok, value);
  }

  /** Settles the followers of a run the caller read from the store, if it ended. */
  settleIfEnded(run: RunRecord): void {
    if (isTerminal(run.status)) this.#settleWaiters(run);
  }

  /**
   * Calls `takeBack` at start when this node restarts under a stable name, after its previous process's lease ended
   * and before its own is renewed: the moment to claim the previous process's runs `from` itself as recoveries.
   */
  onRestart(takeBack: (from: string) => Promise<void>): void {
    this.#takeBacks.push(takeBack);
  }

  /** Calls `listener` with the ids of runs that ended, as the store announces them (any node, this one included). */
  onFinished(listener: (ids: readonly string[]) => void): void {
    this.#finishedListeners.push(listener);
  }

  // Reads first wait (briefly) for this node's own writes queued so far: a caller that saw a task end here reads
  // that end back, not the state before it.

  async get(id: string, tenantId?: string): Promise<RunRecord | undefined> {
    await this.#writer.flush(READ_YOUR_WRITES_MS);
    return this.#store.get(id, tenantId);
  }

  async events(id: string, tenantId?: string): Promise<RunEvent[]> {
    await this.#writer.flush(READ_YOUR_WRITES_MS);
    return this.#store.events(id, tenantId);
  }

  async steps(id: string, tenantId?: string): Promise<WorkflowHistory> {
    await this.#writer.flush(READ_YOUR_WRITES_MS);
    return this.#store.history(id, tenantId);
  }

  async list(query?: RunQuery): Promise<RunPage> {
    await this.#writer.flush(READ_YOUR_WRITES_MS);
    return this.#store.list(query);
  }

  async deadLetters(tenantId?: string, limit?: number): Promise<RunRecord[]> {
    await this.#writer.flush(READ_YOUR_WRITES_MS);
    return this.#store.deadLetters(tenantId, limit);
  }

  // --- State ---------------------------------------------------------------------------------------

  /** Whether the store answers, and its last error. */
  status(): { available: boolean; lastError: string | null; buffered: number } {
    return { available: this.#available, lastError: this.#lastError, buffered: this.#writer.stats().buffered };
  }

  stats(): DurableStats {
    return {
      ...this.#writer.stats(),
      store: this.#store.kind,
      nodeId: this.nodeId,
      adopted: this.#adopted,
      poisoned: this.#poisoned,
      pruned: this.#pruned,
      available: this.#available,
      lastError: this.#lastError,
      unclaimed: this.#unclaimed,
    };
  }

  /** Resolves once every write queued so far reached the store (or after `timeoutMs`: false). */
  flush(timeoutMs = 5_000): Promise<boolean> {
    return this.#writer.flush(timeoutMs);
  }

  #ok(): void {
    if (this.#writer.failing) return;
    this.#available = true;
  }

  #trouble(error: unknown): void {
    this.#available = false;
    this.#lastError = messageOf(error) ?? 'unknown error';
  }

  #every(ms: number, fn: () => unknown): void {
    const timer = setInterval(() => {
      if (this.#running) void fn();
    }, ms);
    timer.unref();
    this.#timers.push(timer);
  }
}

/** `promise`, or a rejection after `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A progress feed that ends when `result` settles (a durable handle's: the run may end on another node). */
function endedWith(result: Promise<unknown>): ProgressFeed {
  const feed = new ProgressFeed();
  const end = (): void => feed.end();
  result.then(end, end);
  return feed;
}
