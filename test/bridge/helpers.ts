/** Shared pieces of the bridge tests: the serving agent, its run log, a gate, and orchestrator bookkeeping. */
import {
  UnifiedOrchestrator,
  type Agent,
  type CommunicationBridge,
  type OrchestratorOptions,
} from 'unified-orchestrator';
import { wait } from '../support/agents.js';

export const SECRET = 'bridge-contract-tests-shared-secret';

/** Small timings so Redis tests are fast. */
export const FAST = { heartbeatMs: 50, blockMs: 100, nodeTtlMs: 500, reclaimIdleMs: 300 } as const;

/** What a test asks B's agent to do; `id` names the run in the log. */
export type Op =
  | { op: 'echo'; id: string; v?: unknown }
  | { op: 'fail'; id: string; name: string; code?: string; message: string }
  | { op: 'slow'; id: string; ms: number }
  | { op: 'gate'; id: string }
  | { op: 'ctx'; id: string }
  | { op: 'progress'; id: string; steps: number }
  | { op: 'progress-map'; id: string };

/** Every run of the serving agent, in order (one line per attempt). */
export interface RunLog {
  readonly runs: string[];
  /** Ids of `slow` runs whose `ctx.signal` aborted them, in order. */
  readonly aborted: string[];
  /** How many attempts ran the payload with this id. */
  count(id: string): number;
  /** Opens the gate that `gate` tasks wait on. */
  open(): void;
}

export function runLog(): RunLog & { gate: Promise<void> } {
  const runs: string[] = [];
  const aborted: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  return {
    runs,
    aborted,
    gate,
    count: (id) => runs.filter((r) => r === id).length,
    open,
  };
}

/** The agent every serving node runs: it records each run and answers `{ node, id, v }`. */
export function servingAgent(node: string, log: RunLog & { gate: Promise<void> }): Agent {
  return {
    async execute(ctx) {
      const p = ctx.payload as Op;
      log.runs.push(p.id);
      switch (p.op) {
        case 'echo':
          return { node, id: p.id, v: p.v };
        case 'fail': {
          const error = new Error(p.message) as Error & { code?: string };
          error.name = p.name;
          if (p.code !== undefined) error.code = p.code;
          throw error;
        }
        case 'slow':
          try {
            await wait(p.ms, ctx.signal);
          } catch (error) {
            if (ctx.signal.aborted) log.aborted.push(p.id);
            throw error;
          }
          return { node, id: p.id, v: 'slow' };
        case 'progress':
          for (let step = 1; step <= p.steps; step++) {
            ctx.progress({ step, of: p.steps });
            await wait(20);
          }
          return { node, id: p.id, v: 'reported' };
        case 'progress-map':
          // A Map would reach the submitter as {}: with a bridge, ctx.progress refuses it as submit refuses payloads.
          try {
            ctx.progress(new Map([['k', 1]]));
            return { node, id: p.id, v: 'accepted' };
          } catch (error) {
            return { node, id: p.id, v: [(error as { code?: string }).code, (error as { field?: string }).field] };
          }
        case 'ctx':
          return { node, id: p.id, v: { taskId: ctx.taskId, attempt: ctx.attempt, recoveries: ctx.recoveries } };
        case 'gate':
          await log.gate;
          return { node, id: p.id, v: 'gate' };
      }
    },
  };
}

/** Orchestrators a test made; `stopAll` stops every one of them (for afterEach). */
export class Fleet {
  readonly #live: UnifiedOrchestrator[] = [];

  /** A pure producer: no pools, no agents. */
  producer(bridge: CommunicationBridge, extra: OrchestratorOptions = {}): UnifiedOrchestrator {
    return this.#add(new UnifiedOrchestrator({ pressure: false, ...extra, bridge }));
  }

  /** A node with a pool holding capability `x` whose agents run {@link servingAgent}. */
  server(
    bridge: CommunicationBridge,
    node: string,
    log: RunLog & { gate: Promise<void> },
    extra: OrchestratorOptions = {},
  ): UnifiedOrchestrator {
    return this.#add(
      new UnifiedOrchestrator({
        pressure: false,
        retry: { baseDelayMs: 5, maxDelayMs: 10 },
        ...extra,
        bridge,
        pools: [
          {
            role: 'w',
            capabilities: ['x'],
            minAgents: 4,
            maxAgents: 8,
            concurrency: 16,
            create: () => servingAgent(node, log),
          },
        ],
      }),
    );
  }

  /** Any orchestrator, stopped with the rest. */
  add(o: UnifiedOrchestrator): UnifiedOrchestrator {
    return this.#add(o);
  }

  #add(o: UnifiedOrchestrator): UnifiedOrchestrator {
    this.#live.push(o);
    return o;
  }

  async stopAll(): Promise<void> {
    const all = this.#live.splice(0);
    await Promise.allSettled(all.map((o) => o.stop({ timeoutMs: 2_000 })));
  }
}

/** Polls `predicate` (sync or async) until it holds or `timeoutMs` passes. */
export async function eventually(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await wait(5);
  }
}

/** Settles to the rejection reason (or fails the test when it resolves). */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}
