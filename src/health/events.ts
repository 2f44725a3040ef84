/** The health monitor's events: unhealthy, recovered and replaced agents, exhausted recovery, SLA breaches. */
import type { SlaFigures, SlaMetric } from './sla.js';

/** The events the health monitor emits, with their payloads (part of `OrchestratorEvents`). */
export interface HealthEvents {
  /**
   * The HealthMonitor found an agent failing its `healthCheck()` or stuck (a given-up attempt that never returned).
   * A pool's agent is then replaced (`agent:replaced`) while its pool has recovery budget left; otherwise, and always
   * for an outside agent, it is quarantined until a check passes again.
   */
  'agent:unhealthy': {
    /** The agent's id. */
    readonly agentId: string;
    /** Its pool's role or registered label; `undefined` for an unlabelled outside agent. */
    readonly role: string | undefined;
    /** A failed (thrown, rejected, `false` or timed-out) `healthCheck()`, or a given-up attempt that never returned. */
    readonly reason: 'health-check' | 'stuck';
    /** The health check's error, or an Error describing how long the agent has been stuck. */
    readonly error: unknown;
  };
  /**
   * An agent quarantined by a failed health check (or as stuck) passed again and is routable: an outside agent, or a
   * pool's agent that was not replaced because its pool's recovery budget was spent. (If its breaker is open
   * meanwhile, it returns with the breaker's `closed` or `half-open` instead, without this event.)
   */
  'agent:recovered': {
    /** The agent's id. */
    readonly agentId: string;
    /** Its pool's role or registered label; `undefined` for an unlabelled outside agent. */
    readonly role: string | undefined;
  };
  /** A failed or stuck pool agent was taken out; its pool makes a replacement. */
  'agent:replaced': {
    /** The id of the agent taken out. */
    readonly agentId: string;
    /** Its pool's role. */
    readonly role: string | undefined;
    /** Why, as in the `agent:unhealthy` before it. */
    readonly reason: 'health-check' | 'stuck';
  };
  /**
   * A pool used its recovery budget (replacements and failed creations per window): it stops recovering until the
   * window moves on (`resumeInMs`) and reports unhealthy meanwhile, instead of crash-looping.
   */
  'pool:recovery-exhausted': {
    /** The pool's role. */
    readonly role: string;
    /** Replacements and failed creations counted in the window. */
    readonly replacements: number;
    /** The recovery window, in ms. */
    readonly windowMs: number;
    /** In how many ms the pool recovers and makes agents again. */
    readonly resumeInMs: number;
  };
  /** A task type crossed an SLA threshold over its window; the figures are the window's. */
  'sla:violation': SlaEvent;
  /** A task type is back within that threshold (or has too few samples to judge). */
  'sla:recovered': SlaEvent;
}

/** The payload of `sla:violation` and `sla:recovered`: the threshold concerned and the type's figures. */
export interface SlaEvent extends SlaFigures {
  /** Which threshold: a latency percentile or the error rate. */
  readonly metric: SlaMetric;
  /** The metric's value over the window: ms for a percentile, 0 to 1 for `errorRate` (0 with no samples left). */
  readonly value: number;
  /** The threshold it is compared with, in the same unit. */
  readonly threshold: number;
  /** The SLA window the figures are taken over, in ms. */
  readonly windowMs: number;
}
