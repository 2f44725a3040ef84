/**
 * One execution of a workflow run on this node: the `run` object its function is given, the replay of its
 * checkpointed steps, the guards checked before each new step, and the decision to park the run when all it can do
 * is wait.
 *
 * Steps are identified by their position (`seq`: the order of the calls). A call at a position with an ended record
 * returns that record's outcome at once (a replay); a record of another name or kind there ends the run with
 * WorkflowNonDeterminismError. A new step is admitted by the guards (halt, cancel, deadline, maxSteps, budget), runs,
 * and returns only once its checkpoint is committed.
 *
 * Parking. A run whose only steps in flight are waits (signals not sent yet, timers not due soon) parks: its waits'
 * records and wake conditions go to the store in one `park`, the owner lets go, and the function is unwound with a
 * WorkflowInterrupt. Nothing of it stays in memory; a node that claims it later replays it to the wait.
 */
import { describeError } from '../bridge/bridge.js';
import type { Task } from '../engine/task.js';
import {
  isInstance,
  OrchestratorStoppedError,
  SignalTimeoutError,
  StoreUnavailableError,
  TaskCancelledError,
  TaskTimeoutError,
  ValidationError,
  WorkflowLimitError,
  WorkflowNonDeterminismError,
  WorkflowStepError,
} from '../errors.js';
import type {
  ParkOutcome,
  WorkflowHistory,
  RunRecord,
  SignalRecord,
  StepInput,
  StepKind,
  StepRecord,
  StoredError,
} from '../store/store.js';
import type { CheckpointLane } from './checkpoints.js';
import {
  WorkflowInterrupt,
  type SignalWaitOptions,
  type StepContext,
  type StepOptions,
  type WorkflowContext,
  type WorkflowFunction,
} from './workflow.js';

/** A registered workflow version. */
export interface WorkflowDefinition {
  readonly name: string;
  readonly version: string;
  readonly maxSteps: number;
  readonly budget: number;
  readonly deadlineMs: number | undefined;
  readonly fn: WorkflowFunction<never, unknown>;
}

/** A `run.task` child as the host submitted it. */
export interface ChildHandle {
  /** Settles with the task's outcome. */
  readonly result: Promise<unknown>;
  /** Resolves with the child's run id once stored (the first run's, for a replay that finds it). */
  readonly id: Promise<string>;
  /** Cancels the child wherever it runs. */
  cancel(reason: unknown): void;
}

/** What a child task reported when it ended. */
export interface ChildInfo {
  readonly agentId: string | null;
  readonly attempts: number;
  readonly cost: number;
}

/** What an execution needs of its node. */
export interface ExecutionHost {
  readonly nodeId: string;
  readonly lane: CheckpointLane;
  /** Submits a `run.task` child under the idempotency key `key`; throws what a submit throws synchronously. */
  submitChild(task: Task, key: string): ChildHandle;
  /** What the child reported (agent, attempts, cost), from this node's events or the store. */
  childInfo(childId: string): Promise<ChildInfo>;
  /** Parks the run (one `park` call); rejects when the store fails. */
  park(input: {
    runId: string;
    notBefore: number | null;
    waitingFor: string[];
    steps: StepInput[];
  }): Promise<ParkOutcome>;
  /** The run's signals, read again from the store. */
  signals(runId: string): Promise<readonly SignalRecord[]>;
  /** Whether a halt holds this node's work. */
  halted(): boolean;
  /** Resolves when the halt is lifted. */
  whenResumed(): Promise<void>;
  /** Waits ending within this many ms are kept in memory rather than parked. */
  readonly holdWaitsMs: number;
  /** Told when a step ends (for metrics and events): replayed from its checkpoint, or run here. */
  stepEnded?(step: { seq: number; name: string; kind: StepKind; replayed: boolean; ms: number; ok: boolean }): void;
}

/** How an execution ended. */
export type ExecutionEnd =
  | { readonly kind: 'completed'; readonly value: unknown }
  | { readonly kind: 'failed' | 'cancelled' | 'timed-out'; readonly error: Error }
  | { readonly kind: 'parked' | 'lost' | 'stopping' };

interface Wait {
  readonly seq: number;
  readonly name: string;
  readonly kind: 'signal' | 'sleep';
  readonly startedAt: number;
  /** When it ends by itself (a sleep's time, a signal's timeout), or `null`. */
  readonly wakeAt: number | null;
  readonly timeoutMs: number | null;
  /** Whether the store has its `waiting` record (with this `wakeAt`). */
  recorded: boolean;
  timer: NodeJS.Timeout | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

const MAX_BACKOFF_MS = 30_000;
const noop = (): void => {};

/** A value as JSON holds it (what a replay returns): a deep copy; `undefined` becomes `null`. */
function toJson(value: unknown, what: string): unknown {
  if (value === undefined || value === null) return null;
  // Values JSON keeps as they are: no copy to make.
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number' && Number.isFinite(value) && !Object.is(value, -0)) return value;
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new ValidationError(what, `must be JSON-serialisable to be checkpointed (${String(error)})`);
  }
  return text === undefined ? null : JSON.parse(text);
}

function storedErrorOf(error: unknown): StoredError {
  const e = describeError(error);
  return { name: e.name, message: e.message, code: e.code ?? null };
}

function isEnded(step: StepRecord | undefined): step is StepRecord {
  return step !== undefined && (step.status === 'completed' || step.status === 'failed');
}

export class WorkflowExecution {
  readonly runId: string;
  readonly #host: ExecutionHost;
  readonly #def: WorkflowDefinition;
  readonly #record: RunRecord;
  readonly #steps = new Map<number, StepRecord>();
  readonly #signals: SignalRecord[] = [];
  readonly #consumed = new Set<number>();
  readonly #waits = new Map<number, Wait>();
  readonly #children = new Set<ChildHandle>();
  readonly #abort = new AbortController();
  readonly #deadlineAt: number | null;
  #aborted: Promise<void>;
  #nextSeq = 0;
  #inflight = 0;
  #cost = 0;
  #final: { kind: 'failed' | 'cancelled' | 'timed-out'; error: Error } | undefined;
  #interrupt: WorkflowInterrupt | undefined;
  #parking = false;
  #parkCheck = false;
  #parkRetryMs = 0;
  #deadlineTimer: NodeJS.Timeout | undefined;
  #replayed = 0;

  constructor(host: ExecutionHost, def: WorkflowDefinition, record: RunRecord, history: WorkflowHistory) {
    this.runId = record.id;
    this.#host = host;
    this.#def = def;
    this.#record = record;
    for (const step of history.steps) {
      this.#steps.set(step.seq, step);
      this.#cost += step.cost;
    }
    for (const signal of history.signals) this.#addSignal(signal);
    // A run stored without a deadline (by the CLI, or a node without this version) gets the workflow's own.
    this.#deadlineAt =
      record.task.deadlineAt ?? (def.deadlineMs === undefined ? null : record.createdAt + def.deadlineMs);
    this.#aborted = new Promise<void>((resolve) =>
      this.#abort.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
  }

  /** The run's tenant, or `undefined`. */
  get tenantId(): string | undefined {
    return this.#record.tenantId ?? undefined;
  }

  /** Cost spent by the run so far. */
  get cost(): number {
    return this.#cost;
  }

  /**
   * Whether this execution is unwinding without having decided the run's end (it parked, lost the run, or its node is
   * stopping): the run is the store's again, even while the function still runs (a slow `finally`, say).
   */
  get unwinding(): boolean {
    return this.#interrupt !== undefined && this.#final === undefined;
  }

  /** Steps returned from their checkpoints in this execution. */
  get replayed(): number {
    return this.#replayed;
  }

  /** Runs the function to its end, a park, or an interrupt. Never rejects. */
  async run(): Promise<ExecutionEnd> {
    if (this.#deadlineAt !== null) {
      const left = this.#deadlineAt - Date.now();
      this.#deadlineTimer = setTimeout(() => this.#timedOut(), Math.max(0, left));
    }
    let value: unknown;
    let thrown: unknown;
    let threw = false;
    try {
      value = await this.#def.fn(this.#context() as never, this.#record.task.payload as never);
    } catch (error) {
      threw = true;
      thrown = error;
    }
    this.#clearTimers();
    if (this.#final) return this.#final;
    if (this.#interrupt) return { kind: this.#interrupt.reason };
    // A failure ends the run through #decide, like the guards: steps still in flight (the others of a Promise.all
    // that rejected, say) are aborted and their tasks cancelled rather than left running for a run that ended.
    if (threw) {
      this.#decide('failed', thrown instanceof Error ? thrown : new Error(String(thrown)));
      return this.#final!;
    }
    // The code ended where its history goes on: it changed under the run.
    const beyond = [...this.#steps.values()].filter((s) => s.seq >= this.#nextSeq && isEnded(s));
    if (beyond.length > 0) {
      const first = beyond.reduce((a, b) => (a.seq <= b.seq ? a : b));
      this.#decide(
        'failed',
        new WorkflowNonDeterminismError(this.runId, first.seq, `${first.kind}:${first.name}`, null),
      );
      return this.#final!;
    }
    try {
      return { kind: 'completed', value: toJson(value, 'the workflow result') };
    } catch (error) {
      return { kind: 'failed', error: error as Error };
    }
  }

  /** Cancels the run here: its waits and running steps end, its child tasks are cancelled. */
  cancel(reason: unknown): boolean {
    if (this.#final || this.#interrupt) return false;
    this.#decide('cancelled', new TaskCancelledError(this.runId, reason));
    return true;
  }

  /** Unwinds the run without writing its end: this node stops, or the run ended or moved elsewhere. */
  interrupt(reason: 'lost' | 'stopping', cancelChildren: boolean): void {
    if (this.#final || this.#interrupt) return;
    this.#interrupt = new WorkflowInterrupt(reason);
    this.#abort.abort(this.#interrupt);
    if (cancelChildren) for (const child of this.#children) child.cancel(this.#interrupt);
    this.#rejectWaits(this.#interrupt);
    // Its deadline timer too: a function that never settles (a step awaiting something outside) must not keep the
    // process alive after stop().
    this.#clearTimers();
  }

  /** A signal for this run arrived (sent through this node, or found by a park): a wait of its name takes it. */
  deliver(signal: SignalRecord): void {
    if (!this.#addSignal(signal) || this.#final || this.#interrupt) return;
    this.#matchSignals();
  }

  // --- The `run` object -----------------------------------------------------------------------------

  #context(): WorkflowContext<unknown> {
    const record = this.#record;
    const requires = record.task.requires[0] ?? '';
    const cost = (): number => this.#cost;
    return {
      id: record.id,
      workflow: this.#def.name,
      version: requires.slice(requires.lastIndexOf('@') + 1) || this.#def.version,
      tenantId: record.tenantId ?? undefined,
      input: record.task.payload,
      abortSignal: this.#abort.signal,
      get cost(): number {
        return cost();
      },
      // Each step's promise is marked handled: one the function did not await rejects when the run ends (or parks)
      // without being an unhandled rejection of the host; the function's own awaits still see the rejection.
      task: <T>(name: string, task: Task) => handled(this.#task(name, task)) as Promise<T>,
      step: <T>(name: string, fn: (ctx: StepContext) => T | Promise<T>, options?: StepOptions<T>) =>
        handled(this.#step(name, fn, options as StepOptions)) as Promise<T>,
      signal: <T>(name: string, options?: SignalWaitOptions) => handled(this.#signal(name, options)) as Promise<T>,
      sleep: (name: string, ms: number) => handled(this.#sleep(name, ms)),
      key: (name: string) => `${record.id}:${name}`,
    };
  }

  /**
   * The position of a step call, and its record when it has ended (a replay). Throws when the run is over, or when
   * the record there is of another step.
   */
  #at(kind: StepKind, name: string): { seq: number; stored: StepRecord | undefined } {
    if (typeof name !== 'string' || name === '') {
      throw new ValidationError('name', `A workflow step needs a name (a non-empty string), got ${String(name)}`);
    }
    this.#throwIfOver();
    const seq = this.#nextSeq++;
    const stored = this.#steps.get(seq);
    if (stored && (stored.name !== name || stored.kind !== kind)) {
      throw this.#decide(
        'failed',
        new WorkflowNonDeterminismError(this.runId, seq, `${stored.kind}:${stored.name}`, `${kind}:${name}`),
      );
    }
    return { seq, stored };
  }

  /** The outcome of an ended step, as its first run gave it. */
  #replay(stored: StepRecord): unknown {
    this.#replayed++;
    this.#host.stepEnded?.({
      seq: stored.seq,
      name: stored.name,
      kind: stored.kind,
      replayed: true,
      ms: 0,
      ok: stored.status === 'completed',
    });
    if (stored.status === 'completed') return stored.kind === 'sleep' ? undefined : stored.result;
    const error = stored.error ?? { name: 'Error', message: 'failed', code: null };
    if (stored.kind === 'signal' && error.code === 'SIGNAL_TIMEOUT') {
      throw new SignalTimeoutError(stored.name, stored.wakeAt === null ? null : stored.wakeAt - stored.startedAt);
    }
    throw new WorkflowStepError(stored.name, error);
  }

  /** The guards, before a new step runs: halt (waits), cancel, deadline, maxSteps, budget. */
  async #admit(seq: number): Promise<void> {
    while (this.#host.halted()) {
      await Promise.race([this.#host.whenResumed(), this.#aborted]);
      this.#throwIfOver();
    }
    this.#throwIfOver();
    if (this.#deadlineAt !== null && Date.now() >= this.#deadlineAt) throw this.#timedOut();
    if (seq >= this.#def.maxSteps) {
      throw this.#decide('failed', new WorkflowLimitError(this.runId, 'steps', this.#def.maxSteps, seq + 1));
    }
    if (this.#cost > this.#def.budget) {
      throw this.#decide('failed', new WorkflowLimitError(this.runId, 'budget', this.#def.budget, this.#cost));
    }
  }

  async #step(name: string, fn: (ctx: StepContext) => unknown, options: StepOptions = {}): Promise<unknown> {
    if (typeof fn !== 'function') throw new ValidationError('fn', 'run.step(name, fn) needs a function to run');
    const { seq, stored } = this.#at('step', name);
    if (isEnded(stored)) return this.#replay(stored);
    const maxAttempts = options.maxAttempts ?? 1;
    const backoffMs = options.backoffMs ?? 500;
    this.#inflight++;
    try {
      await this.#admit(seq);
      const startedAt = Date.now();
      for (let attempt = 1; ; attempt++) {
        let value: unknown;
        try {
          value = toJson(
            await fn({ signal: this.#abort.signal, key: `${this.runId}:${seq}`, attempt }),
            'a step result',
          );
        } catch (error) {
          this.#throwIfOver(); // aborted: not the step's failure
          if (attempt < maxAttempts && !isInstance(error, ValidationError)) {
            await this.#delay(Math.min(MAX_BACKOFF_MS, backoffMs * 2 ** (attempt - 1)));
            continue;
          }
          await this.#fail(seq, name, 'step', error, startedAt, 0, { attempts: attempt });
          throw new WorkflowStepError(name, storedErrorOf(error), error);
        }
        this.#throwIfOver();
        let cost: number;
        try {
          cost = costOf(options.cost, value);
        } catch (error) {
          // The step ran but its cost is not a number (or its cost function threw): the step fails, and the failure is
          // checkpointed like any other, so that a replay does not run its side effects again.
          await this.#fail(seq, name, 'step', error, startedAt, 0, { attempts: attempt });
          throw new WorkflowStepError(name, storedErrorOf(error), error);
        }
        await this.#checkpoint({
          runId: this.runId,
          seq,
          name,
          kind: 'step',
          status: 'completed',
          result: value,
          cost,
          attempts: attempt,
          startedAt,
          endedAt: Date.now(),
        });
        this.#cost += cost;
        this.#ran(seq, name, 'step', startedAt, true);
        return value;
      }
    } finally {
      this.#inflight--;
      this.#settled();
    }
  }

  async #task(name: string, task: Task): Promise<unknown> {
    if (task === null || typeof task !== 'object') {
      throw new ValidationError('task', 'run.task(name, task) needs a task object ({ type, requires, payload, … })');
    }
    const { seq, stored } = this.#at('task', name);
    if (isEnded(stored)) return this.#replay(stored);
    this.#inflight++;
    try {
      await this.#admit(seq);
      const startedAt = Date.now();
      const key = `wf:${this.runId}:${seq}`;
      let deadlineMs = task.deadlineMs;
      // Whether the task's deadline is what is left of the run's: its timing out is then the run's timeout.
      let runsDeadline = false;
      if (this.#deadlineAt !== null) {
        const left = Math.max(1, this.#deadlineAt - Date.now());
        runsDeadline = deadlineMs === undefined || left <= deadlineMs;
        deadlineMs = deadlineMs === undefined ? left : Math.min(deadlineMs, left);
      }
      const spec: Task = {
        ...task,
        ...(this.#record.tenantId === null ? {} : { tenantId: this.#record.tenantId }),
        ...(deadlineMs === undefined ? {} : { deadlineMs }),
      };
      for (;;) {
        let child: ChildHandle;
        try {
          child = this.#host.submitChild(spec, key);
        } catch (error) {
          // Refused at once: bad input, or a refusal that replays would meet again.
          this.#throwIfOver();
          await this.#fail(seq, name, 'task', error, startedAt, 0, {});
          throw new WorkflowStepError(name, storedErrorOf(error), error);
        }
        this.#children.add(child);
        child.id.then((childId) => {
          if (this.#final || this.#interrupt) return;
          const record = { runId: this.runId, seq, name, kind: 'task' as const, status: 'running' as const };
          this.#host.lane.write({ ...record, childId, startedAt }).catch(noop);
        }, noop);
        let value: unknown;
        let failure: unknown;
        let failed = false;
        try {
          value = await child.result;
        } catch (error) {
          failed = true;
          failure = error;
        } finally {
          this.#children.delete(child);
        }
        this.#throwIfOver();
        if (failed && runsDeadline && isInstance(failure, TaskTimeoutError) && failure.scope === 'task') {
          // The task ran out of the run's time: the run timed out (the task's timer, on the engine's monotonic clock
          // or another node, may fire a moment before the run's own). Not a step failure to checkpoint and replay.
          throw this.#timedOut();
        }
        if (failed && isInstance(failure, StoreUnavailableError)) {
          // Not stored, so not run: submit it again once the store answers (the key keeps it one task).
          await this.#delay(1_000);
          continue;
        }
        if (failed && isInstance(failure, OrchestratorStoppedError)) throw this.#stopping();
        const childId = await child.id.catch(() => null);
        const info = childId === null ? { agentId: null, attempts: 0, cost: 0 } : await this.#host.childInfo(childId);
        this.#throwIfOver();
        const common = { childId, agentId: info.agentId, attempts: info.attempts };
        if (failed) {
          await this.#fail(seq, name, 'task', failure, startedAt, info.cost, common);
          this.#cost += info.cost;
          throw new WorkflowStepError(name, storedErrorOf(failure), failure);
        }
        let json: unknown;
        try {
          json = toJson(value, 'a task result');
        } catch (error) {
          await this.#fail(seq, name, 'task', error, startedAt, info.cost, common);
          this.#cost += info.cost;
          throw new WorkflowStepError(name, storedErrorOf(error), error);
        }
        await this.#checkpoint({
          runId: this.runId,
          seq,
          name,
          kind: 'task',
          status: 'completed',
          result: json,
          cost: info.cost,
          ...common,
          startedAt,
          endedAt: Date.now(),
        });
        this.#cost += info.cost;
        this.#ran(seq, name, 'task', startedAt, true);
        return json;
      }
    } finally {
      this.#inflight--;
      this.#settled();
    }
  }

  async #signal(name: string, options: SignalWaitOptions = {}): Promise<unknown> {
    const timeoutMs = options.timeoutMs;
    if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
      throw new ValidationError('timeoutMs', `run.signal's timeoutMs is a number of ms ≥ 0 (got ${String(timeoutMs)})`);
    }
    const { seq, stored } = this.#at('signal', name);
    if (isEnded(stored)) return this.#replay(stored);
    return this.#wait(seq, name, 'signal', stored, timeoutMs === undefined ? null : timeoutMs);
  }

  async #sleep(name: string, ms: number): Promise<void> {
    if (!(Number.isFinite(ms) && ms >= 0)) {
      throw new ValidationError('ms', `run.sleep(name, ms) needs a number of ms ≥ 0 (got ${String(ms)})`);
    }
    const { seq, stored } = this.#at('sleep', name);
    if (isEnded(stored)) {
      this.#replay(stored);
      return;
    }
    await this.#wait(seq, name, 'sleep', stored, ms);
  }

  /** A wait: admitted like any step, then satisfied now, kept in memory, or left for a park. */
  async #wait(
    seq: number,
    name: string,
    kind: 'signal' | 'sleep',
    stored: StepRecord | undefined,
    ms: number | null,
  ): Promise<unknown> {
    this.#inflight++;
    let wait: Wait;
    let promise: Promise<unknown>;
    try {
      await this.#admit(seq);
      // The wait's time is fixed by its first call: a replay keeps it.
      const startedAt = stored?.startedAt ?? Date.now();
      const wakeAt = stored ? stored.wakeAt : ms === null ? null : startedAt + ms;
      promise = new Promise<unknown>((resolve, reject) => {
        wait = {
          seq,
          name,
          kind,
          startedAt,
          wakeAt,
          timeoutMs: ms,
          recorded: stored?.status === 'waiting',
          timer: undefined,
          resolve,
          reject,
        };
      });
      this.#waits.set(seq, wait!);
    } finally {
      this.#inflight--;
    }
    if (kind === 'signal') this.#matchSignals();
    if (this.#waits.has(seq)) this.#arm(wait!);
    this.#settled();
    return promise;
  }

  /** Sets a wait's timer (while the run is here), or ends it now when its time has come. */
  #arm(wait: Wait): void {
    if (wait.wakeAt === null) return;
    const left = wait.wakeAt - Date.now();
    if (left <= 0) {
      void this.#wake(wait);
      return;
    }
    // Armed again on firing: a timer may fire a millisecond before the clock reaches its time (Node's loop time is
    // cached), and a sleep must never end early.
    wait.timer = setTimeout(() => {
      if (this.#waits.get(wait.seq) === wait) this.#arm(wait);
    }, left);
  }

  /** A wait's time came: a sleep ends, a signal wait times out (unless the store has its signal). */
  async #wake(wait: Wait): Promise<void> {
    if (!this.#waits.has(wait.seq)) return;
    if (wait.kind === 'signal') {
      // A wait held in memory (it ends soon: not parked) hears of signals sent through this node only; one sent
      // through another node is in the store. Look there before timing out: it arrived in time.
      try {
        for (const signal of await this.#host.signals(this.runId)) this.#addSignal(signal);
      } catch {
        // The store does not answer: time out on what this node knows.
      }
      if (this.#final || this.#interrupt) return;
      this.#matchSignals(); // may take this wait
    }
    if (!this.#waits.delete(wait.seq)) return;
    clearTimeout(wait.timer);
    this.#inflight++;
    try {
      if (wait.kind === 'sleep') {
        await this.#checkpoint({
          runId: this.runId,
          seq: wait.seq,
          name: wait.name,
          kind: 'sleep',
          status: 'completed',
          startedAt: wait.startedAt,
          wakeAt: wait.wakeAt,
          endedAt: Date.now(),
        });
        this.#ran(wait.seq, wait.name, 'sleep', wait.startedAt, true);
        wait.resolve(undefined);
      } else {
        const error = new SignalTimeoutError(wait.name, wait.timeoutMs);
        await this.#fail(wait.seq, wait.name, 'signal', error, wait.startedAt, 0, { wakeAt: wait.wakeAt });
        wait.reject(error);
      }
    } catch (error) {
      wait.reject(error);
    } finally {
      this.#inflight--;
      this.#settled();
    }
  }

  /** Gives unconsumed signals to the waits of their names, oldest signal to the earliest wait. */
  #matchSignals(): void {
    for (const signal of this.#signals) {
      if (this.#consumed.has(signal.id)) continue;
      let first: Wait | undefined;
      for (const wait of this.#waits.values()) {
        if (wait.kind === 'signal' && wait.name === signal.name && (!first || wait.seq < first.seq)) first = wait;
      }
      if (!first) continue;
      this.#consumed.add(signal.id);
      void this.#take(first, signal);
    }
  }

  async #take(wait: Wait, signal: SignalRecord): Promise<void> {
    this.#waits.delete(wait.seq);
    clearTimeout(wait.timer);
    this.#inflight++;
    try {
      await this.#checkpoint({
        runId: this.runId,
        seq: wait.seq,
        name: wait.name,
        kind: 'signal',
        status: 'completed',
        result: signal.payload,
        startedAt: wait.startedAt,
        wakeAt: wait.wakeAt,
        endedAt: Date.now(),
        signalId: signal.id,
      });
      this.#ran(wait.seq, wait.name, 'signal', wait.startedAt, true);
      wait.resolve(signal.payload);
    } catch (error) {
      wait.reject(error);
    } finally {
      this.#inflight--;
      this.#settled();
    }
  }

  /** Adds a signal if new; false when known already. */
  #addSignal(signal: SignalRecord): boolean {
    if (this.#signals.some((s) => s.id === signal.id)) return false;
    this.#signals.push(signal);
    this.#signals.sort((a, b) => a.id - b.id);
    if (signal.consumedBy !== null) this.#consumed.add(signal.id);
    return true;
  }

  // --- Parking --------------------------------------------------------------------------------------

  /**
   * After a step settles: once the function has had its turn, park if all that is left is waiting. With no wait
   * there is nothing to park (and a wait made later calls this itself), so no check is scheduled.
   */
  #settled(): void {
    if (this.#parkCheck || this.#waits.size === 0) return;
    this.#parkCheck = true;
    setImmediate(() => {
      this.#parkCheck = false;
      void this.#maybePark();
    });
  }

  async #maybePark(): Promise<void> {
    if (this.#final || this.#interrupt || this.#parking || this.#inflight > 0 || this.#waits.size === 0) return;
    const now = Date.now();
    const waits = [...this.#waits.values()];
    if (waits.some((w) => w.wakeAt !== null && w.wakeAt - now <= this.#host.holdWaitsMs)) return; // its timer ends it
    this.#parking = true;
    let outcome: ParkOutcome;
    try {
      const times = waits.flatMap((w) => (w.wakeAt === null ? [] : [w.wakeAt]));
      if (this.#deadlineAt !== null) times.push(this.#deadlineAt);
      outcome = await this.#host.park({
        runId: this.runId,
        notBefore: times.length === 0 ? null : Math.min(...times),
        waitingFor: [...new Set(waits.filter((w) => w.kind === 'signal').map((w) => w.name))],
        steps: waits
          .filter((w) => !w.recorded)
          .map((w) => ({
            runId: this.runId,
            seq: w.seq,
            name: w.name,
            kind: w.kind,
            status: 'waiting' as const,
            startedAt: w.startedAt,
            wakeAt: w.wakeAt,
          })),
      });
    } catch {
      // The store failed: try again (the run stays here meanwhile; its timers still run).
      this.#parking = false;
      this.#parkRetryMs = Math.min(2_000, this.#parkRetryMs === 0 ? 100 : this.#parkRetryMs * 2);
      setTimeout(() => void this.#maybePark(), this.#parkRetryMs).unref();
      return;
    }
    this.#parkRetryMs = 0;
    this.#parking = false;
    for (const w of waits) w.recorded = true;
    if (outcome === 'parked') {
      this.#interrupt ??= new WorkflowInterrupt('parked');
      this.#clearTimers();
      this.#rejectWaits(this.#interrupt);
    } else if (outcome === 'lost') {
      this.interrupt('lost', false);
    } else {
      // A signal it waits for is there: read them, and go on.
      try {
        for (const signal of await this.#host.signals(this.runId)) this.#addSignal(signal);
      } catch {
        // Read again at the next park.
      }
      this.#matchSignals();
      this.#settled();
    }
  }

  // --- Ends -----------------------------------------------------------------------------------------

  async #checkpoint(step: StepInput): Promise<void> {
    let written: boolean;
    try {
      written = await this.#host.lane.write(step);
    } catch {
      throw this.#stopping();
    }
    if (!written) {
      this.interrupt('lost', false);
      throw this.#interrupt!;
    }
  }

  async #fail(
    seq: number,
    name: string,
    kind: StepKind,
    error: unknown,
    startedAt: number,
    cost: number,
    extra: Partial<StepInput>,
  ): Promise<void> {
    this.#throwIfOver();
    await this.#checkpoint({
      runId: this.runId,
      seq,
      name,
      kind,
      status: 'failed',
      error: storedErrorOf(error),
      cost,
      startedAt,
      endedAt: Date.now(),
      ...extra,
    });
    this.#ran(seq, name, kind, startedAt, false);
  }

  #ran(seq: number, name: string, kind: StepKind, startedAt: number, ok: boolean): void {
    this.#host.stepEnded?.({ seq, name, kind, replayed: false, ms: Date.now() - startedAt, ok });
  }

  #stopping(): WorkflowInterrupt {
    this.interrupt('stopping', false);
    return this.#interrupt ?? new WorkflowInterrupt('stopping');
  }

  #timedOut(): Error {
    const deadlineMs = (this.#deadlineAt ?? Date.now()) - this.#record.createdAt;
    return this.#decide('timed-out', new TaskTimeoutError(this.runId, deadlineMs, this.#nextSeq, 'task'));
  }

  /** Ends the run with `error` (the first decision stands): aborts its steps, cancels its tasks, fails its waits. */
  #decide(kind: 'failed' | 'cancelled' | 'timed-out', error: Error): Error {
    if (this.#interrupt) return this.#interrupt;
    if (this.#final) return this.#final.error;
    this.#final = { kind, error };
    this.#abort.abort(error);
    for (const child of this.#children) child.cancel(error);
    this.#rejectWaits(error);
    this.#clearTimers();
    return error;
  }

  #throwIfOver(): void {
    if (this.#final) throw this.#final.error;
    if (this.#interrupt) throw this.#interrupt;
  }

  #rejectWaits(error: unknown): void {
    const waits = [...this.#waits.values()];
    this.#waits.clear();
    for (const w of waits) {
      clearTimeout(w.timer);
      w.reject(error);
    }
  }

  #clearTimers(): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    for (const w of this.#waits.values()) {
      clearTimeout(w.timer);
      w.timer = undefined;
    }
  }

  /** Waits `ms`, or until the run is over (then throws). */
  async #delay(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), this.#aborted]);
    clearTimeout(timer);
    this.#throwIfOver();
  }
}

/** `promise`, marked handled (a rejection nobody awaits is not reported as unhandled). */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(noop);
  return promise;
}

/** A step's cost from its options: a number, or a function of its result; checked. */
function costOf(cost: StepOptions['cost'], result: unknown): number {
  const value = typeof cost === 'function' ? cost(result) : (cost ?? 0);
  if (!(typeof value === 'number' && Number.isFinite(value) && value >= 0)) {
    throw new ValidationError('cost', `A step's cost is a finite number ≥ 0 (got ${String(value)})`);
  }
  return value;
}
