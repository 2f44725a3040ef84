/**
 * The agent lifecycle as a state machine:
 *
 * ```
 * INITIALIZING → IDLE ⇄ BUSY → DRAINING → TERMINATED
 *                 ↘     ↙         ↑
 *                 UNHEALTHY ──────┘        INITIALIZING / UNHEALTHY / DRAINING → FAILED → TERMINATED
 *                                          INITIALIZING → TERMINATED (withdrawn or stopped before it was ready)
 *                                          UNHEALTHY → IDLE / BUSY (its breaker or health check recovered)
 * ```
 * IDLE and BUSY are routable; UNHEALTHY is quarantined (kept, not routed to); DRAINING finishes its tasks
 * and takes no new ones; FAILED could not be made or kept working; TERMINATED is disposed and gone.
 */
import { IllegalStateTransitionError } from '../errors.js';

/**
 * An agent's lifecycle state. INITIALIZING: being made and first health-checked. IDLE and BUSY (a task running):
 * routable. UNHEALTHY: quarantined, kept but not routed to (open breaker, failed health check, or stuck).
 * DRAINING: finishes its tasks, takes no new ones. FAILED: could not be made or kept working. TERMINATED: disposed
 * and gone.
 *
 * The moves allowed ({@link canTransition}): INITIALIZING → IDLE, FAILED or TERMINATED; IDLE ⇄ BUSY; IDLE or BUSY →
 * DRAINING or UNHEALTHY; UNHEALTHY → IDLE, BUSY, DRAINING or FAILED; DRAINING → TERMINATED or FAILED; FAILED →
 * TERMINATED.
 */
export type AgentState = 'INITIALIZING' | 'IDLE' | 'BUSY' | 'DRAINING' | 'TERMINATED' | 'UNHEALTHY' | 'FAILED';

/** Every agent state, in lifecycle order (for iterating, such as a count per state). */
export const AGENT_STATES: readonly AgentState[] = [
  'INITIALIZING',
  'IDLE',
  'BUSY',
  'DRAINING',
  'TERMINATED',
  'UNHEALTHY',
  'FAILED',
];

const TRANSITIONS: Readonly<Record<AgentState, ReadonlySet<AgentState>>> = {
  INITIALIZING: new Set(['IDLE', 'FAILED', 'TERMINATED']),
  IDLE: new Set(['BUSY', 'DRAINING', 'UNHEALTHY']),
  BUSY: new Set(['IDLE', 'DRAINING', 'UNHEALTHY']),
  DRAINING: new Set(['TERMINATED', 'FAILED']),
  UNHEALTHY: new Set(['IDLE', 'BUSY', 'DRAINING', 'FAILED']),
  FAILED: new Set(['TERMINATED']),
  TERMINATED: new Set(),
};

/** Whether the lifecycle allows an agent to move from `from` to `to` (false for staying put). */
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
