/**
 * Durable workflows, the user's side: what `orchestrator.workflow()` registers and what its function is given.
 *
 * A workflow is a function of its input that calls steps through `run`: tasks on the fleet (`run.task`), local
 * functions (`run.step`), waits for signals (`run.signal`) and durable timers (`run.sleep`). Each step's outcome is
 * checkpointed in the run store; after a crash, a stop, or a wait, the function is called again from the top (a
 * replay) and every step with a checkpoint returns its stored outcome without running again. So the function itself
 * must be deterministic: the same steps, in the same order, with the same names, on every replay. Clocks,
 * randomness and reads of the outside world belong inside steps.
 */
import type { Task } from '../engine/task.js';

/** How a workflow is registered. */
export interface WorkflowOptions {
  /**
   * The version of this code. A run is only ever continued by code of the version it started with: register a
   * changed workflow under a new version, beside the old one while its runs finish. @default '1'
   */
  readonly version?: string;
  /** At most this many steps per run (bounded rounds: a loop of steps cannot run forever). @default 1000 */
  readonly maxSteps?: number;
  /**
   * Cost units a run may spend (the sum of its steps' cost: tasks' `ctx.reportCost`, `run.step`'s `cost`); past it
   * the run ends with WorkflowLimitError before its next step. @default Infinity
   */
  readonly budget?: number;
  /** A run must end within this many ms of its start (unless `startWorkflow` gives its own `deadlineMs`). @default none */
  readonly deadlineMs?: number;
}

/** What a `run.step` function is given. */
export interface StepContext {
  /** Aborted when the run is cancelled, reaches its deadline, or this node stops holding it. */
  readonly signal: AbortSignal;
  /** The step's idempotency key, `<runId>:<position>`: the same on every replay. Pass it to outside APIs. */
  readonly key: string;
  /** The attempt, from 1 (see `maxAttempts`). */
  readonly attempt: number;
}

/** Options of `run.step`. */
export interface StepOptions<TResult = unknown> {
  /** Cost units the step spends (counted against the workflow's `budget`), or a function of its result. @default 0 */
  readonly cost?: number | ((result: TResult) => number);
  /** Attempts before the step fails (in this process: a replay starts again at 1). @default 1 */
  readonly maxAttempts?: number;
  /** The wait before the second attempt, doubled for each next one (at most 30 s). @default 500 */
  readonly backoffMs?: number;
}

/** Options of `run.signal`. */
export interface SignalWaitOptions {
  /** Give up after this many ms (fixed at the first call: replays keep it): the wait throws SignalTimeoutError. */
  readonly timeoutMs?: number;
}

/**
 * What a workflow function is given as `run`. Call its step methods synchronously in a deterministic order (within
 * `Promise.all` too: the order of the calls is what counts); each returns a promise of the step's outcome.
 */
export interface WorkflowContext<TInput = unknown> {
  /** The run's id (given to `startWorkflow`, or made up). */
  readonly id: string;
  /** The workflow's name. */
  readonly workflow: string;
  /** The version of the code running it. */
  readonly version: string;
  /** The run's tenant, if any (its tasks belong to it too). */
  readonly tenantId: string | undefined;
  /** The run's input (as stored: JSON). */
  readonly input: TInput;
  /** Aborted when the run is cancelled, reaches its deadline, or this node stops holding it. */
  readonly abortSignal: AbortSignal;
  /** Cost spent so far (steps' cost). */
  readonly cost: number;
  /**
   * Runs `task` on a capable agent of the fleet (routing, retries, breakers, budgets and rate limits as for any task)
   * and checkpoints its result. Its tenant is the run's; its deadline is at most what is left of the run's. Throws
   * WorkflowStepError when the task fails.
   */
  task<TResult = unknown>(name: string, task: Task): Promise<TResult>;
  /**
   * Runs `fn` here and checkpoints its result (JSON: what replays return, so the first run returns the same JSON
   * copy). Throws WorkflowStepError when it fails.
   */
  step<TResult>(
    name: string,
    fn: (ctx: StepContext) => TResult | Promise<TResult>,
    options?: StepOptions<TResult>,
  ): Promise<TResult>;
  /**
   * Waits for `orchestrator.signal(runId, name, payload)` and returns its payload. A signal sent before the wait is
   * kept and consumed by the first wait of that name (each signal by one wait). While it waits, the run is parked in
   * the store and holds nothing in memory. Throws SignalTimeoutError after `timeoutMs`.
   */
  signal<TPayload = unknown>(name: string, options?: SignalWaitOptions): Promise<TPayload>;
  /** A durable timer: resolves `ms` after its first call, across restarts (long sleeps park the run). */
  sleep(name: string, ms: number): Promise<void>;
  /** An idempotency key for `name` in this run: `<runId>:<name>`, the same on every replay. */
  key(name: string): string;
}

/** A workflow's code. */
export type WorkflowFunction<TInput = unknown, TResult = unknown> = (
  run: WorkflowContext<TInput>,
  input: TInput,
) => Promise<TResult>;

/** Options of `startWorkflow`. */
export interface StartWorkflowOptions {
  /**
   * The run's id. Starting again with an id the store holds returns that run (whatever its state) instead of a new
   * one. @default a random UUID
   */
  readonly id?: string;
  /** The tenant the run (and its tasks) belong to. */
  readonly tenantId?: string;
  /** The run must end within this many ms, waits included, or it ends `timed-out`. */
  readonly deadlineMs?: number;
  /** Higher is claimed first. @default 0 */
  readonly priority?: number;
  /** Which registered version to start. @default the version registered last under this name */
  readonly version?: string;
  /** Start no earlier than this many ms from now (the run waits in the store, for any node). */
  readonly delayMs?: number;
}

/** A started workflow run. */
export interface WorkflowHandle<TResult = unknown> {
  /** The run's id. */
  readonly id: string;
  /** Settles with the run's result when it ends, wherever it runs. Already handled: never an unhandled rejection. */
  readonly result: Promise<TResult>;
  /** Resolves with the run's id once the run is committed to the store (or a run with this id was found there). */
  readonly stored: Promise<string>;
  /** Cancels the run wherever it runs (its running step's task too); resolves with whether it was live. */
  cancel(reason?: unknown): Promise<boolean>;
}

/** Options of `orchestrator.signal()`. */
export interface SendSignalOptions {
  /** Who sends it: recorded with the signal and in the audit log. */
  readonly actor?: string;
  /** The run must belong to this tenant (another tenant's run is treated as unknown). */
  readonly tenantId?: string;
}

/**
 * Thrown into a workflow's code to unwind it when the run parks (a wait), is taken over elsewhere, or this node
 * stops. It is not a failure: the run goes on later from its checkpoints. Code that catches errors around steps must
 * rethrow it (`if (isWorkflowInterrupt(e)) throw e`); a function that swallows it and goes on calls no more steps
 * (each throws it again), and what it returns is ignored.
 */
export class WorkflowInterrupt extends Error {
  /** Why the function is unwound. */
  readonly reason: 'parked' | 'lost' | 'stopping';

  constructor(reason: 'parked' | 'lost' | 'stopping') {
    super(
      reason === 'parked'
        ? 'The workflow run is parked until its wait ends (this is not an error: rethrow it)'
        : reason === 'lost'
          ? 'Another node holds this workflow run now (this is not an error: rethrow it)'
          : 'This node is stopping; the run goes on from its last checkpoint elsewhere (rethrow it)',
    );
    this.name = 'WorkflowInterrupt';
    this.reason = reason;
  }
}

/** Whether `error` is the library's workflow interrupt, which a workflow must rethrow. */
export function isWorkflowInterrupt(error: unknown): error is WorkflowInterrupt {
  return error instanceof WorkflowInterrupt;
}

/** The run type of a workflow's runs. */
export function workflowType(name: string): string {
  return `workflow:${name}`;
}

/** The capability a node claims a workflow version's runs with. */
export function workflowCapability(name: string, version: string): string {
  return `workflow:${name}@${version}`;
}
