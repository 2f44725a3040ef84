/**
 * Affinity: tasks with the same `affinityKey` go to the same agent while it stays routable.
 *
 * The rules: a task with a key takes the key's agent first when that agent is routable, has a free slot and holds
 * every capability the task requires. Otherwise it routes as usual, and the key moves to the agent it got only when
 * it is unbound or its agent left routing (a busy agent keeps its key). Keys are kept least recently used first and
 * bounded by `maxAffinityKeys`: beyond it the least recently used key is forgotten; with 0 no key is kept.
 */
import type { AgentPoolManager } from '../pool/agent-pool-manager.js';
import type { AgentRecord } from '../pool/agent-record.js';

export class AffinityTable {
  /** affinityKey → agent id, least recently used first. */
  readonly #agentIds = new Map<string, string>();
  readonly #maxKeys: number;
  readonly #pools: Pick<AgentPoolManager, 'get'>;

  constructor(maxKeys: number, pools: Pick<AgentPoolManager, 'get'>) {
    this.#maxKeys = maxKeys;
    this.#pools = pools;
  }

  /** The key's agent when it can take a task that requires `requires` now (the key becomes the most recently used). */
  agentFor(key: string, requires: readonly string[]): AgentRecord | undefined {
    const id = this.#agentIds.get(key);
    const agent = id === undefined ? undefined : this.#pools.get(id);
    if (agent && agent.routable && agent.hasFreeSlot && agent.holdsAll(requires)) {
      this.#agentIds.delete(key);
      this.#agentIds.set(key, id!);
      return agent;
    }
    return undefined;
  }

  /** Binds a key to the agent a task got, unless it is still bound to another that is routable. */
  bind(key: string, agent: AgentRecord): void {
    const current = this.#agentIds.get(key);
    if (current !== undefined && current !== agent.id && this.#pools.get(current)?.routable) return;
    this.#agentIds.delete(key);
    if (this.#maxKeys === 0) return;
    if (this.#agentIds.size >= this.#maxKeys) {
      const oldest = this.#agentIds.keys().next().value;
      if (oldest !== undefined) this.#agentIds.delete(oldest);
    }
    this.#agentIds.set(key, agent.id);
  }
}
