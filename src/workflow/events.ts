/** The events of workflows and schedules (part of `OrchestratorEvents`). */
export interface WorkflowEvents {
  /** A workflow run ended on this node. */
  'workflow:ended': {
    /** The run's id. */
    readonly runId: string;
    /** The workflow's name. */
    readonly workflow: string;
    /** How it ended. */
    readonly outcome: 'completed' | 'failed' | 'cancelled' | 'timed-out';
    /** Its error, unless it completed. */
    readonly error?: unknown;
  };
  /** A schedule's tick started its run (on this node; another node may have started it first: then it is that run). */
  'schedule:fired': {
    /** The schedule's name. */
    readonly schedule: string;
    /** The tick (epoch ms). */
    readonly tick: number;
    /** The run it started, `schedule:<name>:<tick ISO>`. */
    readonly runId: string;
  };
  /** Ticks fell while no node ran the schedule and its `missed` policy left them unfired. */
  'schedule:skipped': {
    /** The schedule's name. */
    readonly schedule: string;
    /** How many ticks (a lower bound when `exact` is false). */
    readonly count: number;
    /** Whether `count` is exact. */
    readonly exact: boolean;
    /** The first and last skipped ticks (epoch ms). */
    readonly firstMs: number;
    readonly lastMs: number;
  };
  /** A schedule could not fire (the store failed, or its target refused the run); it tries again. */
  'schedule:failed': {
    /** The schedule's name. */
    readonly schedule: string;
    /** Why. */
    readonly error: unknown;
  };
}
