/**
 * Orchestrators running workflows for the tests of test/workflow/: nodes on one shared store (a database server's
 * stand-in), with fast claims and short leases, stopped after each test. The suites run once per entry of
 * {@link WORKFLOW_STORES}: add a store there (PGlite, PostgreSQL) to run them on it too.
 */
import { afterEach } from 'vitest';
import {
  MemoryStore,
  UnifiedOrchestrator,
  type Agent,
  type OrchestratorOptions,
  type RunRecord,
  type RunStore,
  type TaskContext,
} from '../../src/index.js';
import { eventually } from '../support/agents.js';

/** A store the workflow suites run on. */
export interface WorkflowStoreCase {
  readonly name: string;
  /** Makes an empty store (not opened). */
  readonly make: () => RunStore | Promise<RunStore>;
}

/** The stores the workflow suites run on. */
export const WORKFLOW_STORES: readonly WorkflowStoreCase[] = [{ name: 'MemoryStore', make: () => new MemoryStore() }];

/** Options of a test node: the orchestrator's, plus what its `work` agents run. */
export interface NodeOptions extends Partial<OrchestratorOptions> {
  /** What each agent of the `worker` pool (capability `work`) runs. @default it answers its payload */
  readonly execute?: Agent['execute'];
  /** Agents in the pool. @default 2 */
  readonly agents?: number;
}

/** Makes nodes and shared stores; everything made is stopped or closed after each test. */
export interface WorkflowNodes {
  /**
   * A started orchestrator on `store` (or in memory without one) after `setup` registered its workflows. Its leases
   * are short and it claims every 20 ms.
   */
  readonly node: (
    store: RunStore | undefined,
    setup: (o: UnifiedOrchestrator) => void,
    options?: NodeOptions,
  ) => Promise<UnifiedOrchestrator>;
  /**
   * An open store shared by the nodes of a test, like a database server: a node's `stop()` does not close it (the
   * suite does, after the test). `raw` is the store itself, for reads and for patching its methods.
   */
  readonly store: () => Promise<{ shared: RunStore; raw: RunStore }>;
}

export function workflowNodes(storeCase: WorkflowStoreCase): WorkflowNodes {
  const started: UnifiedOrchestrator[] = [];
  const stores: RunStore[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 2_000 }).catch(() => {})));
    await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
  });
  return {
    async node(store, setup, options = {}) {
      const { execute = (ctx: TaskContext) => ctx.payload, agents = 2, ...rest } = options;
      const o = new UnifiedOrchestrator({
        pools: [
          {
            role: 'worker',
            capabilities: ['work'],
            minAgents: agents,
            maxAgents: agents,
            create: () => ({ execute: (ctx) => execute(ctx) }),
          },
        ],
        metrics: false,
        ...rest,
        ...(store
          ? {
              store,
              durability: { leaseMs: 600, heartbeatMs: 150, claimIntervalMs: 20, pollMs: 20, ...rest.durability },
            }
          : {}),
      });
      setup(o);
      started.push(o);
      await o.start();
      return o;
    },
    async store() {
      const raw = await storeCase.make();
      await raw.open();
      stores.push(raw);
      const shared = new Proxy(raw, {
        get(target, prop) {
          if (prop === 'close') return async () => {};
          const value: unknown = Reflect.get(target, prop, target);
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
      return { shared, raw };
    },
  };
}

/** Resolves once run `id` is parked in `store` (no owner) and `check` holds for its record. */
export async function parked(
  store: RunStore,
  id: string,
  check: (run: RunRecord) => boolean = () => true,
  timeoutMs = 5_000,
): Promise<RunRecord> {
  let found: RunRecord | undefined;
  await eventually(
    async () => {
      const run = await store.get(id);
      const events = await store.events(id);
      found = run;
      return (
        run !== undefined &&
        run.owner === null &&
        run.status === 'queued' &&
        events.at(-1)?.kind === 'parked' &&
        check(run)
      );
    },
    timeoutMs,
    `run ${id} to park`,
  );
  return found!;
}

/** Resolves with run `id`'s record once it is terminal in `store`. */
export async function ended(store: RunStore, id: string, timeoutMs = 5_000): Promise<RunRecord> {
  let found: RunRecord | undefined;
  await eventually(
    async () => {
      found = await store.get(id);
      return found !== undefined && found.finishedAt !== null;
    },
    timeoutMs,
    `run ${id} to end`,
  );
  return found!;
}

/** The error `promise` rejects with (fails the test if it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    return error as Error & Record<string, unknown>;
  }
  throw new Error('expected a rejection');
}

/** The error `fn` throws (fails the test if it returns). */
export function thrown(fn: () => unknown): Error & Record<string, unknown> {
  try {
    fn();
  } catch (error) {
    return error as Error & Record<string, unknown>;
  }
  throw new Error('expected a throw');
}
