/**
 * Tasks that failed every attempt, with their history, in the order they were dead-lettered.
 * Bounded: the oldest is dropped when `maxEntries` is reached.
 */
import type { AttemptRecord } from '../errors.js';
import type { Task, TaskRecord, TaskSpec } from './task.js';

/** A dead-lettered task: what it was, and what happened on each attempt. */
export interface DeadLetter {
  /** The task's id, for `retryDeadLetter`. */
  readonly taskId: string;
  /** The task's `type`. */
  readonly type: string;
  /** The task's tenant, if it had one. */
  readonly tenantId: string | undefined;
  /**
   * The task as accepted, defaults applied (`timeoutMs`, `maxAttempts`, `priority`), without its `signal` and
   * `idempotencyKey`: what `retryDeadLetter` resubmits.
   */
  readonly task: Omit<Task, 'signal'>;
  /** Its failed attempts, oldest first. */
  readonly attempts: readonly AttemptRecord[];
  /** When it was dead-lettered, in epoch ms. */
  readonly deadLetteredAt: number;
}

export class DeadLetterList {
  readonly #entries = new Map<string, DeadLetter>();
  readonly #maxEntries: number;

  constructor(maxEntries: number) {
    this.#maxEntries = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  add(letter: DeadLetter): void {
    if (this.#maxEntries === 0) return;
    if (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(letter.taskId, letter);
  }

  /** Takes a letter out; with `tenantId`, only that tenant's (another tenant's stays, as if it did not exist). */
  take(taskId: string, tenantId?: string): DeadLetter | undefined {
    const letter = this.#entries.get(taskId);
    if (!letter || (tenantId !== undefined && letter.tenantId !== tenantId)) return undefined;
    this.#entries.delete(taskId);
    return letter;
  }

  list(tenantId?: string): DeadLetter[] {
    const all = [...this.#entries.values()];
    return tenantId === undefined ? all : all.filter((l) => l.tenantId === tenantId);
  }
}

/** The dead letter of a task that failed its last attempt, with its history. */
export function deadLetterOf(task: TaskRecord): DeadLetter {
  const { spec } = task;
  return {
    taskId: task.id,
    type: spec.type,
    tenantId: spec.tenantId,
    task: taskInput(spec),
    attempts: task.history ?? [],
    deadLetteredAt: Date.now(),
  };
}

/** The caller-facing task that a spec came from, without its signal: what a dead letter resubmits. */
function taskInput(spec: TaskSpec): Omit<Task, 'signal'> {
  const out: Omit<Task, 'signal'> = {
    type: spec.type,
    requires: spec.requires,
    prefers: spec.prefers,
    priority: spec.priority,
    payload: spec.payload,
    timeoutMs: spec.timeoutMs,
    maxAttempts: spec.maxAttempts,
  };
  if (spec.deadlineMs !== Infinity) out.deadlineMs = spec.deadlineMs;
  if (spec.tenantId !== undefined) out.tenantId = spec.tenantId;
  if (spec.affinityKey !== undefined) out.affinityKey = spec.affinityKey;
  return out;
}
