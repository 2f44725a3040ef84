/**
 * Idempotency keys: a task in flight answers a second submit with the same key, and a succeeded task's
 * result does so for `ttlMs` after it finished. Failed tasks forget their key so that a retry can run.
 * Bounded: beyond `maxEntries` the oldest finished entries are dropped first. A duplicate submit of a task in
 * flight gets a follower handle ({@link followerHandle}): the first task's outcome, with its own deadline and cancel.
 */
import { MAX_TIMER_MS } from '../util/timers.js';
import { TaskCancelledError, TaskTimeoutError } from '../errors.js';
import type { TaskHandle, TaskRecord, TaskSpec } from './task.js';

type Entry =
  | { readonly kind: 'running'; readonly task: TaskRecord }
  | { readonly kind: 'done'; readonly taskId: string; readonly value: unknown; readonly expiresAt: number };

export type IdempotencyHit =
  | { readonly kind: 'running'; readonly task: TaskRecord }
  | { readonly kind: 'done'; readonly taskId: string; readonly value: unknown };

export class IdempotencyCache {
  readonly #entries = new Map<string, Entry>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;

  constructor(ttlMs: number, maxEntries: number) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
  }

  lookup(key: string, now: number): IdempotencyHit | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.kind === 'done' && entry.expiresAt <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Remembers a task that was just accepted. Returns false (and remembers nothing) when full of running tasks. */
  begin(key: string, task: TaskRecord, now: number): boolean {
    if (this.#maxEntries === 0) return false;
    if (this.#entries.size >= this.#maxEntries) this.#evict(now);
    if (this.#entries.size >= this.#maxEntries) return false;
    this.#entries.set(key, { kind: 'running', task });
    return true;
  }

  succeeded(key: string, task: TaskRecord, value: unknown, now: number): void {
    const entry = this.#entries.get(key);
    if (entry?.kind !== 'running' || entry.task !== task) return;
    this.#entries.delete(key); // re-insert at the end: insertion order is finish order
    this.#entries.set(key, { kind: 'done', taskId: task.id, value, expiresAt: now + this.#ttlMs });
  }

  forget(key: string, task: TaskRecord): void {
    const entry = this.#entries.get(key);
    if (entry?.kind === 'running' && entry.task === task) this.#entries.delete(key);
  }

  #evict(now: number): void {
    let toDrop = Math.max(1, Math.ceil(this.#maxEntries / 10));
    for (const [key, entry] of this.#entries) {
      if (entry.kind !== 'done') continue;
      if (entry.expiresAt > now && toDrop <= 0) break;
      this.#entries.delete(key);
      toDrop--;
    }
  }
}

const noop = (): void => {};

/**
 * The handle of a duplicate submit: it follows the running task's outcome, and its `cancel` detaches only this
 * caller (its result rejects), leaving the task running for the caller who submitted it first.
 */
export function followerHandle(task: TaskRecord, spec: TaskSpec): TaskHandle {
  let settled = false;
  let rejectOwn!: (error: unknown) => void;
  const result = new Promise<unknown>((resolve, reject) => {
    rejectOwn = reject;
    task.promise.then(resolve, reject);
  });
  result.catch(noop);
  const detach = (error: unknown): boolean => {
    if (settled || task.phase === 'done') return false;
    settled = true;
    rejectOwn(error);
    return true;
  };
  // This caller's own deadline and signal end its wait, not the shared task (the first caller's, still running).
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const { signal } = spec;
  if (spec.deadlineMs !== Infinity && spec.deadlineMs <= MAX_TIMER_MS) {
    timer = setTimeout(
      () => detach(new TaskTimeoutError(task.id, spec.deadlineMs, task.attempts, 'task')),
      spec.deadlineMs,
    );
    timer.unref(); // the shared task holds the process while it runs
  }
  if (signal) {
    onAbort = () => detach(new TaskCancelledError(task.id, signal.reason));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  }
  result.then(noop, noop).finally(() => {
    settled = true;
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  });
  return {
    id: task.id,
    result,
    cancel: (reason?: unknown) => detach(new TaskCancelledError(task.id, reason)),
    // The first task's progress: the updates of the work this caller shares.
    get progress() {
      return task.progressFeed();
    },
  };
}
