/**
 * Routing strategies: given the cached candidates of a task, pick one agent with a free slot.
 * Each scans from a rotating start so that equal candidates take turns (round-robin tie-break).
 */
import type { RoutingStrategyName } from '../config.js';
import type { AgentRecord } from '../pool/agent-record.js';
import { SCORE_WEIGHTS, type CandidateSet } from './routing-cache.js';

export interface RoutingStrategy {
  /**
   * The agent to run the task on, or `undefined` when no candidate has a free slot.
   * Agents for which `avoid` returns true (already tried by this task) are chosen only when no other is free.
   */
  pick(candidates: CandidateSet, avoid: ((agent: AgentRecord) => boolean) | undefined): AgentRecord | undefined;
}

type Scorer = (agent: AgentRecord, staticScore: number, fastestLatency: number) => number;

function scan(candidates: CandidateSet, avoid: ((agent: AgentRecord) => boolean) | undefined, scorer: Scorer, needsLatency: boolean): AgentRecord | undefined {
  const { agents, staticScores } = candidates;
  const n = agents.length;
  if (n === 0) return undefined;
  let fastest = Infinity;
  if (needsLatency) {
    for (let i = 0; i < n; i++) {
      const a = agents[i]!;
      if (a.hasFreeSlot && a.latencyEwma < fastest) fastest = a.latencyEwma;
    }
  }
  const start = candidates.cursor++ % n;
  let best: AgentRecord | undefined;
  let bestScore = -Infinity;
  let fallback: AgentRecord | undefined;
  let fallbackScore = -Infinity;
  for (let k = 0; k < n; k++) {
    const i = (start + k) % n;
    const agent = agents[i]!;
    if (!agent.hasFreeSlot || !agent.routable) continue;
    const s = scorer(agent, staticScores[i]!, fastest);
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
  return best ?? fallback;
}

const scoreScorer: Scorer = (agent, staticScore, fastest) => {
  const load = 1 - agent.active / agent.concurrency;
  // Unknown latency (no attempt yet) counts as fastest: new agents get tried.
  const latency = Number.isNaN(agent.latencyEwma) || fastest === Infinity ? 1 : fastest / Math.max(agent.latencyEwma, 1e-6);
  return staticScore + SCORE_WEIGHTS.load * load + SCORE_WEIGHTS.success * agent.successEwma + SCORE_WEIGHTS.latency * Math.min(1, latency);
};

const leastLoadedScorer: Scorer = (agent) => -agent.active / agent.concurrency;
const roundRobinScorer: Scorer = () => 0;

export const ROUTING_STRATEGIES: Readonly<Record<RoutingStrategyName, RoutingStrategy>> = Object.freeze({
  score: { pick: (c, avoid) => scan(c, avoid, scoreScorer, true) },
  'least-loaded': { pick: (c, avoid) => scan(c, avoid, leastLoadedScorer, false) },
  'round-robin': { pick: (c, avoid) => scan(c, avoid, roundRobinScorer, false) },
});
