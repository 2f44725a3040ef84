/** The pool manager's events: agents changing state, pools scaling, creations failing. */
import type { AgentState } from './agent-state.js';

/** The events the pool manager emits, with their payloads (part of `OrchestratorEvents`). */
export interface PoolEvents {
  /** An agent moved between lifecycle states. `from` is `undefined` when the agent first appears. */
  'agent:state': {
    /** The agent's id. */
    readonly agentId: string;
    /** Its pool's role, or the `role` label it was registered with; `undefined` for an unlabelled outside agent. */
    readonly role: string | undefined;
    /** The state it left; `undefined` when it first appears (as INITIALIZING). */
    readonly from: AgentState | undefined;
    /** The state it entered. */
    readonly to: AgentState;
  };
  /** A pool grew or shrank. */
  'pool:scaled': {
    /** The pool's role. */
    readonly role: string;
    /** Members (agents in the fleet, spares excluded) after the change. */
    readonly members: number;
    /** Warm spares after the change. */
    readonly spares: number;
    /**
     * Why: `demand` (waiting tasks, or the pre-warm at start), `spawn` (`spawnAgent`), `idle` (an idle agent above
     * the minimum retired), `replace` (back to the minimum after an agent left), `pressure` (shed under pressure).
     */
    readonly reason: 'demand' | 'spawn' | 'idle' | 'replace' | 'pressure';
  };
  /** A pool's `create()` failed one attempt. `willRetry` is false when this was the last attempt. */
  'pool:create-failed': {
    /** The pool's role. */
    readonly role: string;
    /** The failed attempt's number, from 1 to the pool's `createAttempts`. */
    readonly attempt: number;
    /** Whether another attempt follows (after a backoff). */
    readonly willRetry: boolean;
    /** What `create()` threw or rejected with, its timeout, a value that is not an agent, or a failed health check. */
    readonly error: unknown;
  };
  /** An agent's own code failed outside a task: its health check at creation, or its `dispose()`. */
  'agent:error': {
    /** The agent's id. */
    readonly agentId: string;
    /** Its pool's role or registered label; `undefined` for an unlabelled outside agent. */
    readonly role: string | undefined;
    /** Which call failed: the first `healthCheck()` after creation, or `dispose()`. */
    readonly phase: 'health-check' | 'dispose';
    /** What it threw or rejected with (or the timeout's error). */
    readonly error: unknown;
  };
}
