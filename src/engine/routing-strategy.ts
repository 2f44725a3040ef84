/**
 * Routing strategies: given the cached candidates of a task, pick one agent with a free slot.
 *
 * For `score`, cost does not grow with the fleet: within a tier of equal static score, only the first {@link SAMPLE_SIZE}
 * free agents from a rotating cursor are compared ("power of d choices", which keeps load balanced about as well
 * as a full scan), and lower tiers are skipped once even a perfect dynamic score could not lift them above the
 * best agent found. `least-loaded` compares every free candidate, as its name promises (O(candidates)).
 * The rotating cursor makes equal agents take turns (round-robin tie-break).
 */
import type { AgentRecord } from '../pool/agent-record.js';
import { MAX_DYNAMIC_SCORE, SCORE_WEIGHTS, type CandidateSet, type Tier } from './routing-cache.js';

/** The routing strategies. `score` weighs capability fit, specialisation, load, success rate and latency. */
export type RoutingStrategyName = 'score' | 'least-loaded' | 'round-robin';

/** Free agents compared per tier and route. */
export const SAMPLE_SIZE = 8;

export interface RoutingStrategy {
  /**
   * The agent to run the task on, or `undefined` when no candidate has a free slot.
   * Agents for which `avoid` returns true (already tried by this task) are chosen only when no other is free.
   */
  pick(candidates: CandidateSet, avoid: ((agent: AgentRecord) => boolean) | undefined): AgentRecord | undefined;
}

/** Scores an agent of a sample; `fastest` is the lowest latency in that sample. Higher wins. */
type Scorer = (agent: AgentRecord, staticScore: number, fastest: number) => number;

// One scratch sample, reused: routing runs synchronously, so it is never shared between two picks.
const sample: AgentRecord[] = [];

/** Fills `sample` with up to `limit` free agents of the tier from its cursor, and moves the cursor on by one. */
function sampleTier(tier: Tier, limit: number): void {
  sample.length = 0;
  const { agents } = tier;
  const n = agents.length;
  const start = tier.cursor % n;
  tier.cursor = start + 1;
  for (let k = 0; k < n && sample.length < limit; k++) {
    const agent = agents[(start + k) % n]!;
    if (agent.hasFreeSlot && agent.routable) sample.push(agent);
  }
}

function pickByScore(
  candidates: CandidateSet,
  avoid: ((agent: AgentRecord) => boolean) | undefined,
  scorer: Scorer,
  prune: boolean,
): AgentRecord | undefined {
  let best: AgentRecord | undefined;
  let bestScore = -Infinity;
  let fallback: AgentRecord | undefined;
  let fallbackScore = -Infinity;
  for (const tier of candidates.tiers) {
    if (prune && best !== undefined && tier.staticScore + MAX_DYNAMIC_SCORE <= bestScore) break;
    // `score` samples (its static tiers keep the choice good); `least-loaded` promises the least loaded, so it looks at all.
    sampleTier(tier, prune ? SAMPLE_SIZE : Infinity);
    let fastest = Infinity;
    for (const a of sample) if (a.latencyEwma < fastest) fastest = a.latencyEwma;
    for (const agent of sample) {
      const s = scorer(agent, tier.staticScore, fastest);
      if (avoid !== undefined && avoid(agent)) {
        if (s > fallbackScore) {
          fallback = agent;
          fallbackScore = s;
        }
      } else if (s > bestScore) {
        best = agent;
        bestScore = s;
      }
    }
  }
  sample.length = 0;
  return best ?? fallback;
}

const score: Scorer = (agent, staticScore, fastest) => {
  const load = 1 - agent.active / agent.concurrency;
  // Unknown latency (no attempt yet) counts as fastest: new agents get tried.
  const latency =
    Number.isNaN(agent.latencyEwma) || fastest === Infinity ? 1 : fastest / Math.max(agent.latencyEwma, 1e-6);
  return (
    staticScore +
    SCORE_WEIGHTS.load * load +
    SCORE_WEIGHTS.success * agent.successEwma +
    SCORE_WEIGHTS.latency * Math.min(1, latency)
  );
};

const leastLoaded: Scorer = (agent) => -agent.active / agent.concurrency;

function roundRobin(
  candidates: CandidateSet,
  avoid: ((agent: AgentRecord) => boolean) | undefined,
): AgentRecord | undefined {
  const { agents } = candidates;
  const n = agents.length;
  let fallback: number | undefined;
  for (let k = 0; k < n; k++) {
    const i = (candidates.cursor + k) % n;
    const agent = agents[i]!;
    if (!agent.hasFreeSlot || !agent.routable) continue;
    if (avoid !== undefined && avoid(agent)) {
      fallback ??= i;
      continue;
    }
    candidates.cursor = i + 1;
    return agent;
  }
  if (fallback === undefined) return undefined;
  candidates.cursor = fallback + 1;
  return agents[fallback];
}

export const ROUTING_STRATEGIES: Readonly<Record<RoutingStrategyName, RoutingStrategy>> = Object.freeze({
  score: { pick: (c, avoid) => pickByScore(c, avoid, score, true) },
  'least-loaded': { pick: (c, avoid) => pickByScore(c, avoid, leastLoaded, false) },
  'round-robin': { pick: roundRobin },
});
