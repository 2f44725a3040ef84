/** Small agents and helpers shared by the tests. */
import type { Agent, TaskContext } from 'unified-orchestrator';

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function wait(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** An agent that records what it ran and answers `${agentId}:${payload}` after `delayMs`. */
export function recordingAgent(delayMs = 0, seen: Array<{ agentId: string; ctx: TaskContext }> = []): Agent {
  return {
    async execute(ctx) {
      seen.push({ agentId: ctx.agentId, ctx });
      if (delayMs > 0) await wait(delayMs, ctx.signal);
      return `${ctx.agentId}:${String(ctx.payload)}`;
    },
  };
}

/** Polls `predicate` on real timers until it holds or `timeoutMs` passes. */
export async function until(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await wait(2);
  }
}

/**
 * Polls `check` (which may be async, and may throw while a server comes back: that counts as not yet) on real timers
 * until it holds; rejects after `timeoutMs`, naming `what`.
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what = 'the condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await wait(10);
  }
}

/** A promise and the function that resolves it. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
