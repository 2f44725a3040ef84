/** The bridge's events, emitted by the orchestrator's cluster link: control messages heard and connection state. */
import type { BridgeStatus, ControlMessage } from './bridge.js';

/** The bridge's events, with their payloads (part of `OrchestratorEvents`). */
export interface BridgeEvents {
  /**
   * A control message reached this node through its bridge (its own included), after the orchestrator applied it
   * (halt and resume hold and release work; traffic and rollback update `controlState().traffic`). `replayed` is set
   * for the cluster's standing halt and traffic setting, delivered once when the node joins.
   */
  'bridge:control': ControlMessage;
  /** The bridge's connection state changed (degraded while Redis reconnects). */
  'bridge:state': BridgeStatus;
}
