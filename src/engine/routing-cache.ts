/**
 * Candidate sets per routing signature (requirements + preferences), with each candidate's static score
 * precomputed. An entry is valid only for the routing generation it was built at; any agent joining or leaving
 * routing bumps the generation, so a removed or quarantined agent is never served from the cache.
 */
import type { AgentRecord } from '../pool/agent-record.js';
import type { CapabilityIndex } from './capability-index.js';

/** Weights of the score; capability fit dominates, then the dynamic terms break the tie. */
export const SCORE_WEIGHTS = Object.freeze({ prefers: 4, specialisation: 2, load: 1, success: 1, latency: 0.5 });

/** The most the dynamic terms (load, success, latency) can add to a static score. */
export const MAX_DYNAMIC_SCORE = SCORE_WEIGHTS.load + SCORE_WEIGHTS.success + SCORE_WEIGHTS.latency;

/** Candidates that share one static score (usually one pool's agents). */
export interface Tier {
  readonly staticScore: number;
  readonly agents: readonly AgentRecord[];
  /** Rotates the scan start so that equal agents take turns. */
  cursor: number;
}

export interface CandidateSet {
  readonly generation: number;
  /** Every candidate, for round-robin. */
  readonly agents: readonly AgentRecord[];
  /** Candidates grouped by static score, best first. */
  readonly tiers: readonly Tier[];
  cursor: number;
}

/** Static part of the score: how well the agent's capabilities fit what the task asks for. */
export function staticScore(agent: AgentRecord, requires: readonly string[], prefers: readonly string[]): number {
  let preferred = 0;
  for (const p of prefers) if (agent.capabilities.has(p)) preferred++;
  const fit = prefers.length === 0 ? 0 : preferred / prefers.length;
  // Capabilities the task did not ask for: a specialist has none, a generalist many. Keep generalists free.
  const extra = agent.capabilities.size - requires.length - preferred;
  return SCORE_WEIGHTS.prefers * fit + SCORE_WEIGHTS.specialisation / (1 + Math.max(0, extra));
}

export class RoutingCache {
  readonly #entries = new Map<string, CandidateSet>();
  readonly #index: CapabilityIndex;
  readonly #maxEntries: number;
  #generation = 0;
  hits = 0;
  misses = 0;

  constructor(index: CapabilityIndex, maxEntries = 10_000) {
    this.#index = index;
    this.#maxEntries = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Call whenever an agent joins or leaves routing. */
  invalidate(): void {
    this.#generation++;
  }

  get(signature: string, requires: readonly string[], prefers: readonly string[]): CandidateSet {
    const entry = this.#entries.get(signature);
    if (entry && entry.generation === this.#generation) {
      this.hits++;
      return entry;
    }
    this.misses++;
    const agents = this.#index.holdersOfAll(requires);
    const byScore = new Map<number, AgentRecord[]>();
    for (const agent of agents) {
      const score = staticScore(agent, requires, prefers);
      const group = byScore.get(score);
      if (group) group.push(agent);
      else byScore.set(score, [agent]);
    }
    const tiers: Tier[] = [...byScore.entries()]
      .sort((a, b) => b[0] - a[0])
      .map(([score, group]) => ({ staticScore: score, agents: group, cursor: 0 }));
    const fresh: CandidateSet = { generation: this.#generation, agents, tiers, cursor: entry?.cursor ?? 0 };
    if (!entry && this.#entries.size >= this.#maxEntries) {
      // Bounded: forget the oldest signature rather than grow without end on ad-hoc requirement sets.
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(signature, fresh);
    return fresh;
  }
}
