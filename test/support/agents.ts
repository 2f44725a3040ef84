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
