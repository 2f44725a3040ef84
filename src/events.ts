/**
 * Every event the orchestrator emits: its own lifecycle events here, and each part's event map, composed. Events
 * report what happened; the library never drives its own state from them.
 */
import type { BridgeEvents } from './bridge/events.js';
import type { EngineEvents } from './engine/events.js';
import type { AuditEvents } from './health/audit.js';
import type { HealthEvents } from './health/events.js';
import type { PoolEvents } from './pool/events.js';
import type { ResourceEvents } from './resources/events.js';
import type { EmitterEvents } from './util/typed-emitter.js';
import type { WorkflowEvents } from './workflow/events.js';

/** The orchestrator's own lifecycle events. */
export interface LifecycleEvents {
  /** `start()` finished pre-warming every pool. */
  started: {
    /** Pools declared. */
    readonly pools: number;
    /** Pool members made by the pre-warm (warm spares and registered agents not counted). */
    readonly agents: number;
  };
  /** `stop()` began; new work is refused from here on. */
  stopping: {
    /** Whether accepted tasks are finished first (`true`) or cancelled at once. */
    readonly drain: boolean;
  };
  /** `stop()` finished; nothing of the orchestrator is left running. Emitted last. */
  stopped: {
    /** Tasks that completed between the `stop()` call and now. */
    readonly completedWhileDraining: number;
    /** Tasks the stop cancelled: those still live when draining ended (all of them, without drain). */
    readonly cancelled: number;
  };
  /**
   * The orchestrator was halted (by `halt()` or a halt from the cluster): waiting work is held and running attempts
   * were aborted through their signal, their tasks waiting again. `from` is the node that sent a cluster halt.
   */
  halted: {
    /** Why, as given to `halt()`. */
    readonly reason: string;
    /** Running attempts aborted; their tasks wait again, the attempt not counted. */
    readonly interrupted: number;
    /** Tasks waiting (and held) once the halt applied, the interrupted ones included. */
    readonly held: number;
    /** The node id of the sender of a cluster halt; absent for a halt made here. */
    readonly from?: string;
  };
  /** Held work is released (by `resume()` or a resume from the cluster). */
  resumed: {
    /** Tasks that were waiting when the halt was lifted. */
    readonly released: number;
    /** The node id of the sender of a cluster resume; absent for a resume made here. */
    readonly from?: string;
  };
}

/** Every event the orchestrator emits, with its payload. */
export interface OrchestratorEvents
  extends
    LifecycleEvents,
    PoolEvents,
    EngineEvents,
    ResourceEvents,
    HealthEvents,
    AuditEvents,
    BridgeEvents,
    WorkflowEvents,
    EmitterEvents {}

/** The name of an orchestrator event: a key of {@link OrchestratorEvents}. */
export type OrchestratorEventName = keyof OrchestratorEvents;

/** A listener of event `E`: called with its payload; what it throws is reported as `listener:error`. */
export type OrchestratorListener<E extends OrchestratorEventName> = (payload: OrchestratorEvents[E]) => void;
