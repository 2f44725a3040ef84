/** Agents and helpers for the engine tests: agents the test settles by hand, and an event log. */
import { afterEach, vi } from 'vitest';
import {
  UnifiedOrchestrator,
  type Agent,
  type OrchestratorEvents,
  type OrchestratorOptions,
  type TaskContext,
} from 'unified-orchestrator';

/** One `execute` call that the test settles by hand. */
export interface Call {
  readonly agentId: string;
  readonly ctx: TaskContext;
  resolve(value?: unknown): void;
  reject(error: unknown): void;
  settled: boolean;
}

/**
 * An agent whose every `execute` call waits until the test settles it (through `calls`), or until
 * `ctx.signal` aborts, in which case it rejects with the signal's reason (so stop never waits on it).
 */
export function manualAgent(calls: Call[]): Agent {
  return {
    execute(ctx) {
      return new Promise((resolve, reject) => {
        const call: Call = {
          agentId: ctx.agentId,
          ctx,
          settled: false,
          resolve: (value?: unknown) => {
            if (call.settled) return;
            call.settled = true;
            ctx.signal.removeEventListener('abort', onAbort);
            resolve(value);
          },
          reject: (error: unknown) => {
            if (call.settled) return;
            call.settled = true;
            ctx.signal.removeEventListener('abort', onAbort);
            reject(error);
          },
        };
        const onAbort = (): void => call.reject(ctx.signal.reason);
        ctx.signal.addEventListener('abort', onAbort, { once: true });
        calls.push(call);
      });
    },
  };
}

/** An agent that answers `${agentId}:${payload}` at once (in a microtask). */
export function echoAgent(): Agent {
  return { execute: (ctx) => `${ctx.agentId}:${String(ctx.payload)}` };
}

/** An agent that always rejects with `new Error(message)`. */
export function failingAgent(message = 'boom'): Agent {
  return {
    execute: () => Promise.reject(new Error(message)),
  };
}

/** Lets pending microtasks and promise callbacks run (several hops deep). */
export async function flush(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

/** Resolves on the next macrotask turn (real timers only). */
export function tick(ms = 0): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `predicate` on real timers until it holds or `timeoutMs` passes. */
export async function until(predicate: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await tick(1);
  }
}

/** Records every task event of an orchestrator, in order. */
export interface EventLog {
  readonly started: Array<OrchestratorEvents['task:started']>;
  readonly queued: Array<OrchestratorEvents['task:queued']>;
  readonly retrying: Array<OrchestratorEvents['task:retrying']>;
  readonly completed: Array<OrchestratorEvents['task:completed']>;
  readonly failed: Array<OrchestratorEvents['task:failed']>;
}

export function recordEvents(orchestrator: UnifiedOrchestrator): EventLog {
  const log: EventLog = { started: [], queued: [], retrying: [], completed: [], failed: [] };
  orchestrator.on('task:started', (e) => log.started.push(e));
  orchestrator.on('task:queued', (e) => log.queued.push(e));
  orchestrator.on('task:retrying', (e) => log.retrying.push(e));
  orchestrator.on('task:completed', (e) => log.completed.push(e));
  orchestrator.on('task:failed', (e) => log.failed.push(e));
  return log;
}

/** Captures a promise's rejection (fails the test when it resolves instead). */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  let value: unknown;
  try {
    value = await promise;
  } catch (error) {
    return error;
  }
  throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
}

/** The sum that must equal `submitted` at every quiet point. */
export function accounted(s: {
  completed: number;
  failed: number;
  cancelled: number;
  timedOut: number;
  deadLettered: number;
  rejected: number;
  deduplicated: number;
  waiting: number;
  running: number;
  backingOff: number;
}): number {
  return (
    s.completed +
    s.failed +
    s.cancelled +
    s.timedOut +
    s.deadLettered +
    s.rejected +
    s.deduplicated +
    s.waiting +
    s.running +
    s.backingOff
  );
}

/**
 * Returns `start(options)`, which makes and starts an orchestrator; after each test the last one is stopped
 * (without draining) and real timers are restored.
 */
export function startEach(): (options?: OrchestratorOptions) => Promise<UnifiedOrchestrator> {
  let current: UnifiedOrchestrator | undefined;
  afterEach(async () => {
    vi.useRealTimers();
    await current?.stop({ drain: false, timeoutMs: 1_000 });
    current = undefined;
  });
  return async (options = {}) => {
    current = new UnifiedOrchestrator(options);
    await current.start();
    return current;
  };
}
