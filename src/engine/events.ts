/** The engine's events: a task's way from queued to its one terminal event. */

/** How a task ended. Every accepted task ends in exactly one of these. */
export type TaskOutcome = 'completed' | 'failed' | 'cancelled' | 'timed-out' | 'dead-lettered';

/** Terminal outcomes other than success. */
export type TaskFailureOutcome = Exclude<TaskOutcome, 'completed'>;

/** The events the engine emits, with their payloads (part of `OrchestratorEvents`). */
export interface EngineEvents {
  /** No agent was free; the task waits in the queue of its requirement class. */
  'task:queued': {
    /** The task's id. */
    readonly taskId: string;
    /** The task's `type`. */
    readonly type: string;
    /** The task's priority as submitted (aging raises it in the queue, not here). */
    readonly priority: number;
    /** The task's tenant, if it has one. */
    readonly tenantId: string | undefined;
    /** Tasks waiting in every queue of this node, this one included. */
    readonly waiting: number;
  };
  /** An attempt began on an agent. */
  'task:started': {
    /** The task's id. */
    readonly taskId: string;
    /** The task's `type`. */
    readonly type: string;
    /** The agent running the attempt. */
    readonly agentId: string;
    /** The agent's pool role, or the `role` label it was registered with. */
    readonly role: string | undefined;
    /** The attempt's number, from 1; re-runs after a halt or a rate limit's retry-after are counted too. */
    readonly attempt: number;
    /** How long it waited for an agent, in ms (since acceptance, or since its backoff ended). */
    readonly waitedMs: number;
  };
  /**
   * An attempt failed and the task will try again after `delayMs`. Also emitted when a rate limit's retry-after puts
   * the task back in its queue, without spending one of its attempts.
   */
  'task:retrying': {
    /** The task's id. */
    readonly taskId: string;
    /** The task's `type`. */
    readonly type: string;
    /** The number of the attempt that failed. */
    readonly attempt: number;
    /** The wait before the task may run again, in ms: the backoff, or the error's retry-after hint. */
    readonly delayMs: number;
    /** The failed attempt's error. */
    readonly error: unknown;
    /**
     * `backoff`: the attempt failed and the task runs again after a backoff; this counts against `maxAttempts`.
     * `rate-limit`: the error carried a retry-after for a rate-limited capability; the limit pauses and the task waits
     * in its queue again without spending an attempt (up to the limit's `maxDeferrals`).
     */
    readonly reason: 'backoff' | 'rate-limit';
  };
  /**
   * An agent reported progress with `ctx.progress(value)` (emitted only while someone listens). For a task handed to
   * another node, the updates that cross the bridge.
   */
  'task:progress': {
    /** The task's id. */
    readonly taskId: string;
    /** The task's `type`. */
    readonly type: string;
    /** The number of the attempt that reported it, from 1. */
    readonly attempt: number;
    /** What the agent reported (by reference on the node that ran it: do not change it). */
    readonly value: unknown;
    /** When it was reported, epoch ms. */
    readonly at: number;
  };
  /** Terminal: the task succeeded. */
  'task:completed': {
    /** The task's id. */
    readonly taskId: string;
    /** The task's `type`. */
    readonly type: string;
    /** The agent that ran the successful attempt. */
    readonly agentId: string;
    /** That agent's pool role or registered label. */
    readonly role: string | undefined;
    /** The successful attempt's number, from 1. */
    readonly attempt: number;
    /** The successful attempt's duration, in ms. */
    readonly durationMs: number;
    /** From acceptance to now, in ms: waiting, every attempt and backoff included. */
    readonly latencyMs: number;
    /** Cost units its attempts reported (`ctx.reportCost`), summed. */
    readonly cost: number;
  };
  /** Terminal: the task ended without a result; `outcome` says how. */
  'task:failed': {
    /** The task's id. */
    readonly taskId: string;
    /** The task's `type`. */
    readonly type: string;
    /**
     * How it ended: `timed-out` when it ran past its `deadlineMs` (whatever its `maxAttempts`); `dead-lettered` when
     * its `maxAttempts` is above 1 and it gave up after running (attempts spent, or an error not retryable); otherwise
     * `timed-out` (its attempt timed out) or `failed`; or `cancelled`.
     */
    readonly outcome: TaskFailureOutcome;
    /** Attempts started, re-runs after a halt or a rate limit's retry-after included; 0 if it never ran. */
    readonly attempts: number;
    /**
     * What the task's promise rejected with: the agent's error, TaskTimeoutError, TaskDeadLetteredError,
     * TaskCancelledError, or NoCapableAgentError when its last capable agent left while it waited.
     */
    readonly error: unknown;
    /** From acceptance to now, in ms. */
    readonly latencyMs: number;
    /** Cost units its attempts reported (`ctx.reportCost`), summed. */
    readonly cost: number;
  };
}
