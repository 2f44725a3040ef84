/**
 * The task as callers write it, its validation, and the engine's record of an accepted task.
 */
import {
  expectDuration,
  expectInteger,
  expectObject,
  expectString,
  expectStringArray,
  own,
  rejectUnknownKeys,
  TASK_DEFAULTS,
} from '../config.js';
import { ValidationError, type AttemptRecord } from '../errors.js';
import type { AgentRecord } from '../pool/agent-record.js';

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
  /** Higher runs first among waiting tasks; a safe integer. @default 0 */
  priority?: number;
  /** Handed to the agent as `ctx.payload`. */
  payload?: TPayload;
  /** Per-attempt timeout in ms, or `Infinity`. @default the orchestrator's `defaultTimeoutMs` (120_000) */
  timeoutMs?: number;
  /** Attempts before the task is dead-lettered. @default the orchestrator's `defaultMaxAttempts` (1) */
  maxAttempts?: number;
  /** A second submit with this key while the first runs, or after it succeeded (within the TTL), gets the first's result. */
  idempotencyKey?: string;
  /** Whose task this is: waiting tasks of equal priority are served round-robin across tenants. */
  tenantId?: string;
  /** Tasks with the same key go to the same agent while it stays routable and has room. */
  affinityKey?: string;
  /** Aborting it cancels the task (waiting: at once; running: through `ctx.signal`). */
  signal?: AbortSignal;
}

/** What `delegate` returns: the task's id, its result, and a way to cancel it. */
export interface TaskHandle<TResult = unknown> {
  readonly id: string;
  /**
   * Settles with the task's outcome. Already handled: not awaiting it never raises an unhandled rejection.
   */
  readonly result: Promise<TResult>;
  /** Cancels the task if it has not finished; returns whether it did. The result rejects with TaskCancelledError. */
  cancel(reason?: unknown): boolean;
}

/** Where an accepted task is. */
export type TaskPhase = 'waiting' | 'running' | 'backoff' | 'done';

const TASK_KEYS: ReadonlySet<string> = new Set([
  'type', 'requires', 'prefers', 'priority', 'payload', 'timeoutMs', 'maxAttempts',
  'idempotencyKey', 'tenantId', 'affinityKey', 'signal',
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
  readonly maxAttempts: number;
  readonly idempotencyKey: string | undefined;
  readonly tenantId: string | undefined;
  readonly affinityKey: string | undefined;
  readonly signal: AbortSignal | undefined;
}

function optionalString(o: Record<string, unknown>, key: string): string | undefined {
  const v = own(o, key);
  return v === undefined ? undefined : expectString(v, `task.${key}`);
}

function capabilityList(o: Record<string, unknown>, key: string): readonly string[] {
  const v = own(o, key);
  if (v === undefined) return NO_CAPABILITIES;
  const list = expectStringArray(v, `task.${key}`);
  return list.length === 0 ? NO_CAPABILITIES : list;
}

/** Validates a caller's task. Throws ValidationError naming the first wrong field. */
export function validateTask(input: unknown, defaults: { timeoutMs: number; maxAttempts: number }): TaskSpec {
  const o = expectObject(input, 'task');
  rejectUnknownKeys(o, TASK_KEYS, 'task');
  const type = expectString(own(o, 'type'), 'task.type');
  const priorityRaw = own(o, 'priority');
  const priority =
    priorityRaw === undefined ? TASK_DEFAULTS.priority : expectInteger(priorityRaw, 'task.priority', -1_000_000, 1_000_000);
  const timeoutRaw = own(o, 'timeoutMs');
  const timeoutMs = timeoutRaw === undefined ? defaults.timeoutMs : expectDuration(timeoutRaw, 'task.timeoutMs', true);
  const attemptsRaw = own(o, 'maxAttempts');
  const maxAttempts = attemptsRaw === undefined ? defaults.maxAttempts : expectInteger(attemptsRaw, 'task.maxAttempts', 1, 100);
  const signal = own(o, 'signal');
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new ValidationError('task.signal', 'Expected `task.signal` to be an AbortSignal');
  }
  return {
    type,
    requires: capabilityList(o, 'requires'),
    prefers: capabilityList(o, 'prefers'),
    priority,
    payload: own(o, 'payload'),
    timeoutMs,
    maxAttempts,
    idempotencyKey: optionalString(o, 'idempotencyKey'),
    tenantId: optionalString(o, 'tenantId'),
    affinityKey: optionalString(o, 'affinityKey'),
    signal,
  };
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
export interface Attempt {
  readonly task: TaskRecord;
  readonly agent: AgentRecord;
  readonly number: number;
  readonly startedAt: number;
  /** Made on first read of `ctx.signal`: most agents never look, and a controller per attempt is not free. */
  controller: AbortController | undefined;
  timer: NodeJS.Timeout | undefined;
  abandoned: boolean;
}

/** Aborts the attempt's signal with `reason` (a no-op when the agent never asked for its signal). */
export function abortAttempt(attempt: Attempt, reason: unknown): void {
  attempt.controller?.abort(reason);
}

/** What an attempt's signal is: created lazily, already aborted when the attempt was abandoned before anyone looked. */
export function attemptSignal(attempt: Attempt, abandonReason: () => unknown): AbortSignal {
  if (!attempt.controller) {
    attempt.controller = new AbortController();
    if (attempt.abandoned) attempt.controller.abort(abandonReason());
  }
  return attempt.controller.signal;
}

/** The engine's record of an accepted task. Its queue links are intrusive, so waiting costs no extra allocation. */
export class TaskRecord {
  readonly id: string;
  readonly spec: TaskSpec;
  readonly requireSig: string;
  readonly routeSig: string;
  readonly submittedAt: number;
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
  /** Why the current attempt was abandoned (timeout or cancel): the reason of a signal first read afterwards. */
  abandonReason: unknown;
  cost = 0;

  // Waiting-queue links, owned by WaitQueue.
  queueLevel = 0;
  queuedAt = 0;
  seq = 0;
  prev: TaskRecord | undefined;
  next: TaskRecord | undefined;
  lane: unknown;

  constructor(id: string, spec: TaskSpec, requireSig: string, now: number) {
    this.id = id;
    this.spec = spec;
    this.requireSig = requireSig;
    this.routeSig = routingSignature(spec.requires, spec.prefers, requireSig);
    this.submittedAt = now;
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

  triedAgent(agentId: string): boolean {
    return this.history?.some((h) => h.agentId === agentId) ?? false;
  }
}
