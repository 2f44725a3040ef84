/**
 * Which routable agents hold each capability, kept current on register, unregister and state change,
 * so that "who can do X" starts from the smallest matching set instead of scanning every agent.
 */
import type { AgentRecord } from '../pool/agent-record.js';

export class CapabilityIndex {
  readonly #byCapability = new Map<string, Set<AgentRecord>>();
  readonly #all = new Set<AgentRecord>();

  add(agent: AgentRecord): void {
    if (this.#all.has(agent)) return;
    this.#all.add(agent);
    for (const c of agent.capabilityList) {
      let set = this.#byCapability.get(c);
      if (!set) this.#byCapability.set(c, (set = new Set()));
      set.add(agent);
    }
  }

  delete(agent: AgentRecord): void {
    if (!this.#all.delete(agent)) return;
    for (const c of agent.capabilityList) {
      const set = this.#byCapability.get(c);
      if (!set) continue;
      set.delete(agent);
      if (set.size === 0) this.#byCapability.delete(c);
    }
  }

  /** Routable agents holding every capability in `requires`. */
  holdersOfAll(requires: readonly string[]): AgentRecord[] {
    if (requires.length === 0) return [...this.#all];
    let smallest: Set<AgentRecord> | undefined;
    for (const c of requires) {
      const set = this.#byCapability.get(c);
      if (!set) return [];
      if (!smallest || set.size < smallest.size) smallest = set;
    }
    const out: AgentRecord[] = [];
    for (const agent of smallest!) if (agent.holdsAll(requires)) out.push(agent);
    return out;
  }
}
