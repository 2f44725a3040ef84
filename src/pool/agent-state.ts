/**
 * The agent lifecycle as a state machine:
 *
 * ```
 * INITIALIZING → IDLE ⇄ BUSY → DRAINING → TERMINATED
 *                 ↘     ↙         ↑
 *                 UNHEALTHY ──────┘        INITIALIZING / UNHEALTHY / DRAINING → FAILED → TERMINATED
 *                                          INITIALIZING → TERMINATED (withdrawn or stopped before it was ready)
 * ```
 * IDLE and BUSY are routable; UNHEALTHY is quarantined (kept, not routed to); DRAINING finishes its tasks
 * and takes no new ones; FAILED could not be made or kept working; TERMINATED is disposed and gone.
 */
import { IllegalStateTransitionError } from '../errors.js';

export type AgentState = 'INITIALIZING' | 'IDLE' | 'BUSY' | 'DRAINING' | 'TERMINATED' | 'UNHEALTHY' | 'FAILED';

export const AGENT_STATES: readonly AgentState[] = ['INITIALIZING', 'IDLE', 'BUSY', 'DRAINING', 'TERMINATED', 'UNHEALTHY', 'FAILED'];

const TRANSITIONS: Readonly<Record<AgentState, ReadonlySet<AgentState>>> = {
  INITIALIZING: new Set(['IDLE', 'FAILED', 'TERMINATED']),
  IDLE: new Set(['BUSY', 'DRAINING', 'UNHEALTHY']),
  BUSY: new Set(['IDLE', 'DRAINING', 'UNHEALTHY']),
  DRAINING: new Set(['TERMINATED', 'FAILED']),
  UNHEALTHY: new Set(['IDLE', 'BUSY', 'DRAINING', 'FAILED']),
  FAILED: new Set(['TERMINATED']),
  TERMINATED: new Set(),
};

export function canTransition(from: AgentState, to: AgentState): boolean {
  return TRANSITIONS[from].has(to);
}

/** Throws IllegalStateTransitionError unless `from → to` is an edge of the lifecycle. */
export function assertTransition(agentId: string, from: AgentState, to: AgentState): void {
  if (!TRANSITIONS[from].has(to)) throw new IllegalStateTransitionError(agentId, from, to);
}

/** States in which an agent may be handed new tasks. */
export function isRoutableState(state: AgentState): boolean {
  return state === 'IDLE' || state === 'BUSY';
}
