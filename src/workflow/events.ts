/** The events of workflows and schedules (part of `OrchestratorEvents`). */
export interface WorkflowEvents {
  /** A workflow run began executing on this node: started here, or claimed (woken after a wait, or taken over). */
  'workflow:started': {
    /** The run's id. */
    readonly runId: string;
    /** The workflow's name. */
    readonly workflow: string;
    /** The version of the code running it. */
    readonly version: string;
    /** Steps it has checkpointed already (a replay returns them without running them). */
    readonly checkpointed: number;
  };
  /** A step of a workflow run ran on this node and its checkpoint was written (replayed steps are not reported). */
  'workflow:step': {
    /** The run's id. */
    readonly runId: string;
    /** The workflow's name. */
    readonly workflow: string;
    /** Its position in the run. */
    readonly seq: number;
    /** Its name. */
    readonly name: string;
    /** `task`, `step`, `signal` or `sleep`. */
    readonly kind: 'task' | 'step' | 'signal' | 'sleep';
    /** Whether it succeeded. */
    readonly ok: boolean;
    /** How long it took, in ms (a wait's included). */
    readonly durationMs: number;
  };
  /**
   * A run stopped executing here without ending: `parked` (it waits for a signal or a timer, in the store),
   * `lost` (another node holds it now, or it ended elsewhere), `stopping` (this node stopped: it goes on elsewhere).
   */
  'workflow:paused': {
    /** The run's id. */
    readonly runId: string;
    /** The workflow's name. */
    readonly workflow: string;
    /** Why it stopped executing here. */
    readonly reason: 'parked' | 'lost' | 'stopping';
    /** How long this execution lasted, in ms. */
    readonly durationMs: number;
  };
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
    /** How long its last execution lasted, in ms. */
    readonly durationMs: number;
    /** The cost its steps spent. */
    readonly cost: number;
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
    /** The first skipped tick (epoch ms). */
    readonly firstMs: number;
    /** The last skipped tick (epoch ms). */
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
