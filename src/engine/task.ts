/**
 * The task as callers write it, its validation, and the engine's record of an accepted task.
 */
import {
  expectDuration,
  expectInteger,
  expectObject,
  describe,
  expectString,
  expectStringArray,
  unknownKeyError,
} from '../util/validate.js';
import { TASK_DEFAULTS } from './options.js';
import { checkFaithful } from '../bridge/codec.js';
import { ValidationError, type AttemptRecord } from '../errors.js';
import type { TaskContext } from '../pool/agent.js';
import type { AgentRecord } from '../pool/agent-record.js';
import type { HeapEntry } from './deadline-heap.js';
import type { DeadlineEntry } from './deadlines.js';
import { ProgressFeed, type ProgressStream, type ProgressUpdate } from './progress.js';

/**
 * A unit of work.
 *
 * @example
 * ```ts
 * await orchestrator.submit({ type: 'summarise', requires: ['text'], prefers: ['long-context'], payload: { doc } });
 * ```
 */
export interface Task<TPayload = unknown> {
  /** What kind of work this is; used in events, metrics and SLA windows. */
  type: string;
  /** Capabilities an agent must hold, all of them. @default [] (any agent) */
  requires?: readonly string[];
  /** Capabilities that raise an agent's routing score. @default [] */
  prefers?: readonly string[];
  /** Higher runs first among waiting tasks; an integer from -1_000_000 to 1_000_000. @default 0 */
  priority?: number;
  /** Handed to the agent as `ctx.payload`. */
  payload?: TPayload;
  /**
   * Per-attempt timeout in ms, or `Infinity`; honoured in full even above the 2^31-1 ms (about 24.8 days) a Node
   * timer holds. On timeout the attempt's `ctx.signal` aborts with TaskTimeoutError.
   * @default the orchestrator's `defaultTimeoutMs` (120_000)
   */
  timeoutMs?: number;
  /**
   * The whole task's time limit in ms, from acceptance: waiting for an agent (a burst, a halt), every attempt and
   * every backoff included. When it passes, the task ends `timed-out` with TaskTimeoutError (`scope: 'task'`), a
   * running attempt's `ctx.signal` aborts with it, and no retry follows. For a request handler whose caller will
   * not wait longer than that. A task handed to another node is timed here (the other node is not told to stop).
   * @default Infinity (none)
   */
  deadlineMs?: number;
  /**
   * Attempts the task may have, the first included (1 to 100); re-runs after a halt or a rate limit's retry-after do
   * not count. When the last one fails (or an error is not retryable), a task with `maxAttempts` above 1 is
   * dead-lettered: it rejects with TaskDeadLetteredError and is kept in `deadLetters()` with its history. With 1 it
   * rejects with the agent's error, or TaskTimeoutError, and is not dead-lettered.
   * @default the orchestrator's `defaultMaxAttempts` (1)
   */
  maxAttempts?: number;
  /** A second submit with this key while the first runs, or after it succeeded (within the TTL), gets the first's result. */
  idempotencyKey?: string;
  /** Whose task this is: waiting tasks of equal priority are served round-robin across tenants. */
  tenantId?: string;
  /** Tasks with the same key go to the same agent while it stays routable and has room. */
  affinityKey?: string;
  /** Aborting it cancels the task (waiting: at once; running: through `ctx.signal`). */
  signal?: AbortSignal;
  /**
   * Start no earlier than this many ms after acceptance (a delayed task). With a `store` the task waits in the store
   * and any node runs it when due; without one it waits on this node (it is not handed to another). Its `deadlineMs`
   * counts from acceptance, the delay included. Not with `runAt`. @default 0
   */
  delayMs?: number;
  /** Start no earlier than this time (epoch ms, or a Date): `delayMs` from now. Not with `delayMs`. */
  runAt?: number | Date;
}

/** What `delegate` returns: the task's id, its result, its progress, and a way to cancel it. */
export interface TaskHandle<TResult = unknown> {
  /** The task's id, for `cancel`, `task()` and events. A duplicate (same `idempotencyKey`) gets the first task's id. */
  readonly id: string;
  /**
   * Settles with the task's outcome. Already handled: not awaiting it never raises an unhandled rejection.
   */
  readonly result: Promise<TResult>;
  /** Cancels the task if it has not finished; returns whether it did. The result rejects with TaskCancelledError. */
  cancel(reason?: unknown): boolean;
  /**
   * With a durable `store` only: resolves with the id the task is stored under once its record is committed (its
   * own, or the first task's for a duplicate `idempotencyKey`), or rejects with StoreUnavailableError (then the task
   * was not accepted). `undefined` without a store. `enqueue()` awaits it for you.
   */
  readonly stored?: Promise<string>;
  /**
   * What the task's agent reports with `ctx.progress(value)`: `for await (const update of handle.progress)` yields
   * the latest update so far, then each later one, and ends when the task reaches its terminal state (see
   * {@link ProgressStream} for the bounded buffer of a slow reader). Made on first read: a caller who never reads it
   * pays nothing. A task handed to another node reports the updates that cross the bridge; a durable task
   * (`store`) reports only the attempts run on this node; a duplicate (same `idempotencyKey`) follows the first task's.
   */
  readonly progress: ProgressStream;
}

/** Where an accepted task is. */
export type TaskPhase = 'waiting' | 'running' | 'backoff' | 'done';

const TASK_KEYS: ReadonlySet<string> = new Set([
  'type',
  'requires',
  'prefers',
  'priority',
  'payload',
  'timeoutMs',
  'deadlineMs',
  'maxAttempts',
  'idempotencyKey',
  'tenantId',
  'affinityKey',
  'signal',
  'delayMs',
  'runAt',
]);

const NO_CAPABILITIES: readonly string[] = Object.freeze([]);

/** A validated task with every default applied; never the caller's object. */
export interface TaskSpec {
  readonly type: string;
  readonly requires: readonly string[];
  readonly prefers: readonly string[];
  readonly priority: number;
  readonly payload: unknown;
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly maxAttempts: number;
  readonly idempotencyKey: string | undefined;
  readonly tenantId: string | undefined;
  readonly affinityKey: string | undefined;
  readonly signal: AbortSignal | undefined;
  /** Ms from acceptance before it may start (0: at once). */
  readonly delayMs: number;
}

function optionalString(value: unknown, field: string): string | undefined {
  return value === undefined ? undefined : expectString(value, field);
}

function capabilityList(value: unknown, field: string): readonly string[] {
  if (value === undefined) return NO_CAPABILITIES;
  const list = expectStringArray(value, field);
  return list.length === 0 ? NO_CAPABILITIES : list;
}

/**
 * Validates a caller's task. Throws ValidationError naming the first wrong field. One pass over the task's own
 * keys: an unknown key is refused, and a value on a polluted prototype is never read. With `faithfulPayloads`, a
 * payload JSON would change is refused too (see `checkFaithful` in bridge/codec.ts), naming its path.
 */
export function validateTask(
  input: unknown,
  defaults: { timeoutMs: number; maxAttempts: number; maxPayloadBytes?: number; faithfulPayloads?: boolean },
): TaskSpec {
  let o: Record<string, unknown>;
  try {
    o = expectObject(input, 'task');
  } catch (error) {
    throw error instanceof ValidationError ? error : unreadable('task', error); // a revoked Proxy throws on inspection
  }
  let type: unknown,
    requires: unknown,
    prefers: unknown,
    priority: unknown,
    payload: unknown,
    timeoutMs: unknown,
    deadlineMs: unknown;
  let maxAttempts: unknown, idempotencyKey: unknown, tenantId: unknown, affinityKey: unknown, signal: unknown;
  let delayMs: unknown, runAt: unknown;
  let keys: string[];
  try {
    keys = Object.keys(o);
  } catch (error) {
    throw unreadable('task', error);
  }
  for (const key of keys) {
    let v: unknown;
    try {
      v = o[key];
    } catch (error) {
      throw unreadable(`task.${key}`, error);
    }
    switch (key) {
      case 'type':
        type = v;
        break;
      case 'requires':
        requires = v;
        break;
      case 'prefers':
        prefers = v;
        break;
      case 'priority':
        priority = v;
        break;
      case 'payload':
        payload = v;
        break;
      case 'timeoutMs':
        timeoutMs = v;
        break;
      case 'deadlineMs':
        deadlineMs = v;
        break;
      case 'maxAttempts':
        maxAttempts = v;
        break;
      case 'idempotencyKey':
        idempotencyKey = v;
        break;
      case 'tenantId':
        tenantId = v;
        break;
      case 'affinityKey':
        affinityKey = v;
        break;
      case 'signal':
        signal = v;
        break;
      case 'delayMs':
        delayMs = v;
        break;
      case 'runAt':
        runAt = v;
        break;
      default:
        throw unknownKeyError(key, TASK_KEYS, 'task');
    }
  }
  if (signal !== undefined && !isRealSignal(signal)) {
    throw new ValidationError('task.signal', 'Expected `task.signal` to be an AbortSignal');
  }
  // Faithful or refused: with a bridge, a payload must cross processes unchanged wherever the task runs.
  if (defaults.faithfulPayloads) checkFaithful(payload, 'task.payload');
  if (defaults.maxPayloadBytes !== undefined && defaults.maxPayloadBytes !== Infinity && payload !== undefined)
    checkPayloadSize(payload, defaults.maxPayloadBytes);
  return {
    type: expectString(type, 'task.type'),
    requires: capabilityList(requires, 'task.requires'),
    prefers: capabilityList(prefers, 'task.prefers'),
    priority:
      priority === undefined ? TASK_DEFAULTS.priority : expectInteger(priority, 'task.priority', -1_000_000, 1_000_000),
    payload,
    timeoutMs: timeoutMs === undefined ? defaults.timeoutMs : expectDuration(timeoutMs, 'task.timeoutMs', true),
    deadlineMs:
      deadlineMs === undefined ? TASK_DEFAULTS.deadlineMs : expectDuration(deadlineMs, 'task.deadlineMs', true),
    maxAttempts:
      maxAttempts === undefined ? defaults.maxAttempts : expectInteger(maxAttempts, 'task.maxAttempts', 1, 100),
    idempotencyKey: optionalString(idempotencyKey, 'task.idempotencyKey'),
    tenantId: optionalString(tenantId, 'task.tenantId'),
    affinityKey: optionalString(affinityKey, 'task.affinityKey'),
    signal,
    delayMs: delayOf(delayMs, runAt),
  };
}

/** The delay of a task from its `delayMs` or `runAt` (0 for none). */
function delayOf(delayMs: unknown, runAt: unknown): number {
  if (delayMs !== undefined && runAt !== undefined) {
    throw new ValidationError('task.runAt', 'Give a task `delayMs` or `runAt`, not both');
  }
  if (delayMs !== undefined) {
    if (typeof delayMs !== 'number' || !Number.isFinite(delayMs) || delayMs < 0) {
      throw new ValidationError(
        'task.delayMs',
        `Expected \`task.delayMs\` to be a number of ms ≥ 0, got ${describe(delayMs)}`,
      );
    }
    return delayMs;
  }
  if (runAt !== undefined) {
    const at = runAt instanceof Date ? runAt.getTime() : runAt;
    if (typeof at !== 'number' || !Number.isFinite(at)) {
      throw new ValidationError('task.runAt', 'Expected `task.runAt` to be a time: epoch milliseconds or a valid Date');
    }
    return Math.max(0, at - Date.now());
  }
  return 0;
}

/** The key that groups tasks with the same requirements (order-insensitive). */
export function requirementSignature(requires: readonly string[]): string {
  if (requires.length === 0) return '';
  if (requires.length === 1) return requires[0]!;
  return [...requires].sort().join('\u0000');
}

/** The key of a routing decision: requirements plus preferences. */
export function routingSignature(requires: readonly string[], prefers: readonly string[], requireSig: string): string {
  return prefers.length === 0 ? requireSig : `${requireSig}\u0001${[...prefers].sort().join('\u0000')}`;
}

/** One attempt in progress. Abandoned once its task moved on (timeout, cancel) even if `execute` has not returned. */
export class Attempt implements DeadlineEntry {
  readonly task: TaskRecord;
  readonly agent: AgentRecord;
  readonly number: number;
  readonly startedAt: number;
  /** Made on first read of `ctx.signal`: most agents never look, and a controller per attempt is not free. */
  controller: AbortController | undefined;
  abandoned = false;
  /** The one probe task of its agent's half-open breaker: only its outcome decides whether the breaker closes. */
  probe = false;
  /** Why it was abandoned (timeout or cancel): the reason of a signal first read afterwards. */
  abandonReason: unknown;
  /** Clock time it was abandoned at: how long its agent has held the slot for nothing, if it never returns. */
  abandonedAt = 0;
  // Deadline-list links, owned by Deadlines.
  dueAt = Infinity;
  deadlinePrev: DeadlineEntry | undefined;
  deadlineNext: DeadlineEntry | undefined;
  deadlineList: unknown;

  constructor(task: TaskRecord, agent: AgentRecord, number: number, startedAt: number) {
    this.task = task;
    this.agent = agent;
    this.number = number;
    this.startedAt = startedAt;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abandoned) this.controller.abort(this.abandonReason);
    }
    return this.controller.signal;
  }

  /**
   * Marks the attempt abandoned (its agent counts it late until `execute` returns) and aborts its signal, if anyone
   * asked for it.
   */
  abandon(reason: unknown, now: number): void {
    this.abandoned = true;
    this.abandonReason = reason;
    this.abandonedAt = now;
    this.agent.abandoned(now);
    this.controller?.abort(reason);
  }
}

/**
 * Where `ctx.reportCost` and `ctx.progress` go: the engine, which sums cost per task, per tenant budget and per rate
 * limit, and passes progress to the task's readers and `task:progress` listeners.
 */
export interface CostSink {
  reportCost(task: TaskRecord, units: number): void;
  /** An update from `attempt`'s agent (its value checked); returns false when the attempt is over (it is dropped). */
  reportProgress(attempt: Attempt, value: unknown): boolean;
}

/**
 * What an agent receives. A class, not a literal, so that the per-attempt cost is one small object: the signal is
 * made on first read (most agents never look, and a controller per attempt halves throughput), and the engine's
 * internals stay private.
 */
export class AttemptContext implements TaskContext {
  readonly taskId: string;
  readonly type: string;
  readonly payload: unknown;
  readonly attempt: number;
  readonly deadline: number;
  readonly agentId: string;
  readonly tenantId: string | undefined;
  readonly recoveries: number;
  readonly #attempt: Attempt;
  readonly #sink: CostSink;

  constructor(attempt: Attempt, sink: CostSink) {
    const { spec } = attempt.task;
    this.taskId = attempt.task.id;
    this.type = spec.type;
    this.payload = spec.payload;
    this.attempt = attempt.number;
    const epochNow = Date.now();
    const attemptDue = spec.timeoutMs === Infinity ? Infinity : epochNow + spec.timeoutMs;
    // The task's own deadline (clock time) may come first: made at dispatch, so `startedAt` is the clock's now.
    const taskDue = attempt.task.deadlineEntry?.dueAt;
    this.deadline = taskDue === undefined ? attemptDue : Math.min(attemptDue, epochNow + (taskDue - attempt.startedAt));
    this.agentId = attempt.agent.id;
    this.tenantId = spec.tenantId;
    this.recoveries = attempt.task.recoveries;
    this.#attempt = attempt;
    this.#sink = sink;
  }

  /** Created on first read (an accessor, so `{ ...ctx }` does not carry it: read it from `ctx`). */
  get signal(): AbortSignal {
    return this.#attempt.signal;
  }

  /**
   * Made on first read and bound to this attempt, so that `execute({ payload, reportCost })` can destructure it (a
   * prototype method would lose its `this`); an agent that never reports costs nothing.
   */
  get reportCost(): (units: number) => void {
    return (units) => this.#report(units);
  }

  #report(units: number): void {
    if (typeof units !== 'number' || !Number.isFinite(units) || units < 0) {
      throw new ValidationError(
        'units',
        `Expected reportCost(units) to get a finite number >= 0, got ${String(units)}`,
      );
    }
    this.#sink.reportCost(this.#attempt.task, units);
  }

  /** Made on first read and bound to this attempt, like `reportCost`: an agent that never reports costs nothing. */
  get progress(): (value: unknown) => boolean {
    return (value) => this.#progress(value);
  }

  #progress(value: unknown): boolean {
    const kind = typeof value;
    if (kind === 'undefined' || kind === 'function' || kind === 'symbol' || kind === 'bigint') {
      throw new ValidationError(
        'value',
        `Expected ctx.progress(value) to get a value that can cross a bridge (an object, array, string, number, boolean or null), got ${kind}`,
      );
    }
    return this.#sink.reportProgress(this.#attempt, value);
  }
}

/** The engine's record of an accepted task. Its queue links are intrusive, so waiting costs no extra allocation. */
export class TaskRecord {
  readonly id: string;
  readonly spec: TaskSpec;
  readonly requireSig: string;
  readonly routeSig: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  readonly promise: Promise<unknown>;
  phase: TaskPhase = 'waiting';
  /** Attempts started so far. */
  attempts = 0;
  history: AttemptRecord[] | undefined;
  current: Attempt | undefined;
  backoffTimer: NodeJS.Timeout | undefined;
  onCallerAbort: (() => void) | undefined;
  /** Its place among the task deadlines, while it has a `deadlineMs` and is live. */
  deadlineEntry: HeapEntry | undefined;
  /** Units reported through `ctx.reportCost`, summed over attempts. */
  cost = 0;
  /** Clock time of acceptance: a terminal event's `latencyMs` is measured from it. */
  acceptedAt = 0;
  /** Clock time it became ready to run (acceptance, or the end of a backoff): `task:started`'s `waitedMs` is from it. */
  readyAt = 0;
  /** Times put back after a rate limit's retry-after; these attempts do not count against `maxAttempts`. */
  deferrals = 0;
  /** Attempts aborted by a halt (the task waited again); these do not count against `maxAttempts` either. */
  interruptions = 0;
  /** Whether it is a durable run: its progress is written to the store (see RunObserver). */
  durable = false;
  /** For a durable run: times it was taken over from a node that died holding it (`ctx.recoveries`). */
  recoveries = 0;
  /** For a durable run: set when stop() gave it back to the store instead of ending it. */
  released = false;
  /** Its progress: made when its agent first reports or its handle's `progress` is first read. */
  progress: ProgressFeed | undefined;
  /** Told each progress update as well (a hand-off's, to send to its origin; see `delegateHandOff`). */
  onProgress: ((update: ProgressUpdate) => void) | undefined;

  // Waiting-queue links, owned by WaitQueue.
  queueLevel = 0;
  queuedAt = 0;
  seq = 0;
  prev: TaskRecord | undefined;
  next: TaskRecord | undefined;
  lane: unknown;

  constructor(id: string, spec: TaskSpec, requireSig: string) {
    this.id = id;
    this.spec = spec;
    this.requireSig = requireSig;
    this.routeSig = routingSignature(spec.requires, spec.prefers, requireSig);
    let resolve!: (value: unknown) => void;
    let reject!: (error: unknown) => void;
    this.promise = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.resolve = resolve;
    this.reject = reject;
  }

  get tenant(): string {
    return this.spec.tenantId ?? '';
  }

  /** Its progress feed, made now if nobody asked before (over already when the task is). */
  progressFeed(): ProgressFeed {
    return (this.progress ??= new ProgressFeed(this.phase === 'done'));
  }

  triedAgent(agentId: string): boolean {
    return this.history?.some((h) => h.agentId === agentId) ?? false;
  }
}

/** Throws ValidationError when the payload's JSON is over `max` bytes (or cannot be serialised to be measured). */
function checkPayloadSize(payload: unknown, max: number): void {
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new ValidationError(
      'task.payload',
      `Expected \`task.payload\` to be JSON-serialisable, to measure it against maxPayloadBytes (${max}): ${why}`,
    );
  }
  if (json === undefined) return;
  // UTF-8 takes 1 to 3 bytes per UTF-16 unit: count the bytes only when the length alone cannot tell.
  const bytes = json.length > max ? json.length : json.length * 3 <= max ? 0 : Buffer.byteLength(json, 'utf8');
  if (bytes > max) {
    throw new ValidationError(
      'task.payload',
      `\`task.payload\` is ${bytes} bytes as JSON, over maxPayloadBytes (${max}); pass a reference to the data (a URL, a key) instead, or raise the limit`,
    );
  }
}

/** A value that cannot even be read (a throwing getter or proxy trap) is bad input like any other. */
function unreadable(field: string, error: unknown): ValidationError {
  let why = 'it threw';
  try {
    why = error instanceof Error ? error.message : String(error);
  } catch {
    // an error that cannot be described either
  }
  return new ValidationError(field, `Expected \`${field}\` to be readable; reading it threw: ${why}`);
}

/** An AbortSignal that works (`instanceof` alone lets through `Object.create(AbortSignal.prototype)`). */
function isRealSignal(signal: unknown): signal is AbortSignal {
  if (!(signal instanceof AbortSignal)) return false;
  try {
    return typeof signal.aborted === 'boolean';
  } catch {
    return false;
  }
}
