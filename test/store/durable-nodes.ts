/**
 * Orchestrators on a store for the durable tests: each with one pool of `worker` agents holding `work`, short leases
 * and fast claims, stopped after each test.
 */
import { afterEach } from 'vitest';
import { UnifiedOrchestrator, type Agent, type OrchestratorOptions, type RunStore } from '../../src/index.js';

/** Makes a started orchestrator with `agents` agents running `execute` on `store` (`options` over the defaults). */
export type DurableNodeMaker = (
  store: RunStore,
  execute: Agent['execute'],
  options?: Partial<OrchestratorOptions>,
  agents?: number,
) => Promise<UnifiedOrchestrator>;

/** Registers an `afterEach` that stops every node made, and returns the maker; `base` goes under each node's options. */
export function durableNodes(base: Partial<OrchestratorOptions>): DurableNodeMaker {
  const started: UnifiedOrchestrator[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 2_000 })));
  });
  return async (store, execute, options = {}, agents = 2) => {
    const o = new UnifiedOrchestrator({
      pools: [
        { role: 'worker', capabilities: ['work'], minAgents: agents, maxAgents: agents, create: () => ({ execute }) },
      ],
      ...base,
      ...options,
      store,
      durability: { leaseMs: 600, heartbeatMs: 150, claimIntervalMs: 50, pollMs: 50, ...options.durability },
    });
    started.push(o);
    await o.start();
    return o;
  };
}
