/**
 * Idempotency keys: a task in flight answers a second submit with the same key, and a succeeded task's
 * result does so for `ttlMs` after it finished. Failed tasks forget their key so that a retry can run.
 * Bounded: beyond `maxEntries` the oldest finished entries are dropped first.
 */
import type { TaskRecord } from './task.js';

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
