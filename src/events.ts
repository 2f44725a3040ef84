/**
 * The typed event map and the emitter behind `orchestrator.on/off/once`.
 * Events report what happened; the library never drives its own state from them.
 */
import { EventEmitter } from 'eventemitter3';
import { ValidationError } from './errors.js';
import type { AgentState } from './pool/agent-state.js';
import type { BreakerState } from './resources/circuit-breakers.js';
import type { PressureLevel } from './resources/pressure.js';
import type { SlaFigures, SlaMetric } from './health/sla.js';

/** How a task ended. Every accepted task ends in exactly one of these. */
export type TaskOutcome = 'completed' | 'failed' | 'cancelled' | 'timed-out' | 'dead-lettered';

/** Terminal outcomes other than success. */
export type TaskFailureOutcome = Exclude<TaskOutcome, 'completed'>;

/** Every event the orchestrator emits, with its payload. */
export interface OrchestratorEvents {
  /** `start()` finished pre-warming every pool. */
  started: { readonly pools: number; readonly agents: number };
  /** `stop()` began; new work is refused from here on. */
  stopping: { readonly drain: boolean };
  /** `stop()` finished; nothing of the orchestrator is left running. Emitted last. */
  stopped: { readonly completedWhileDraining: number; readonly cancelled: number };
  /**
   * The orchestrator was halted (by `halt()` or a halt from the cluster): waiting work is held and running attempts
   * were aborted through their signal, their tasks waiting again. `from` is the node that sent a cluster halt.
   */
  halted: { readonly reason: string; readonly interrupted: number; readonly held: number; readonly from?: string };
  /** Held work is released (by `resume()` or a resume from the cluster). */
  resumed: { readonly released: number; readonly from?: string };
  /** An agent moved between lifecycle states. `from` is `undefined` when the agent first appears. */
  'agent:state': {
    readonly agentId: string;
    readonly role: string | undefined;
    readonly from: AgentState | undefined;
    readonly to: AgentState;
  };
  /** A pool grew or shrank. */
  'pool:scaled': {
    readonly role: string;
    readonly members: number;
    readonly spares: number;
    readonly reason: 'demand' | 'spawn' | 'idle' | 'replace' | 'pressure';
  };
  /** A pool's `create()` failed one attempt. `willRetry` is false when this was the last attempt. */
  'pool:create-failed': {
    readonly role: string;
    readonly attempt: number;
    readonly willRetry: boolean;
    readonly error: unknown;
  };
  /** An agent's own code failed outside a task: its health check at creation, or its `dispose()`. */
  'agent:error': {
    readonly agentId: string;
    readonly role: string | undefined;
    readonly phase: 'health-check' | 'dispose';
    readonly error: unknown;
  };
  /** No agent was free; the task waits in the queue of its requirement class. */
  'task:queued': {
    readonly taskId: string;
    readonly type: string;
    readonly priority: number;
    readonly tenantId: string | undefined;
    readonly waiting: number;
  };
  /** An attempt began on an agent. */
  'task:started': {
    readonly taskId: string;
    readonly type: string;
    readonly agentId: string;
    /** The agent's pool role, or the `role` label it was registered with. */
    readonly role: string | undefined;
    readonly attempt: number;
    /** How long it waited for an agent (since acceptance, or since its backoff ended). */
    readonly waitedMs: number;
  };
  /** An attempt failed and the task will try again after `delayMs`. */
  'task:retrying': {
    readonly taskId: string;
    readonly type: string;
    readonly attempt: number;
    readonly delayMs: number;
    readonly error: unknown;
  };
  /** Terminal: the task succeeded. */
  'task:completed': {
    readonly taskId: string;
    readonly type: string;
    readonly agentId: string;
    readonly role: string | undefined;
    readonly attempt: number;
    /** The successful attempt's duration. */
    readonly durationMs: number;
    /** From acceptance to now: waiting, every attempt and backoff included. */
    readonly latencyMs: number;
  };
  /** Terminal: the task ended without a result; `outcome` says how. */
  'task:failed': {
    readonly taskId: string;
    readonly type: string;
    readonly outcome: TaskFailureOutcome;
    readonly attempts: number;
    readonly error: unknown;
    /** From acceptance to now. */
    readonly latencyMs: number;
  };
  /**
   * A circuit breaker changed state. `breaker` is `agent:<id>` for an agent's (then `agentId` is set: open
   * quarantines the agent, half-open lets one probe task through, closed returns it) or a dependency's name.
   */
  'breaker:state': {
    readonly breaker: string;
    readonly agentId: string | undefined;
    readonly from: BreakerState;
    readonly to: BreakerState;
  };
  /** The memory/CPU pressure level changed; the figures are the sample that moved it. */
  'pressure:changed': {
    readonly from: PressureLevel;
    readonly to: PressureLevel;
    /** The higher of rss / memoryLimitBytes and cpu / cpuLimitPercent. */
    readonly ratio: number;
    readonly rssBytes: number;
    readonly heapUsedBytes: number;
    readonly cpuPercent: number;
  };
  /** The pressure sampler failed; the level stays as it was until a sample succeeds. */
  'pressure:sample-failed': { readonly error: unknown };
  /** A tenant's reported cost went over its budget; its new tasks are refused (and with `haltOnExceeded` its waiting ones cancelled). */
  'budget:exceeded': {
    readonly tenantId: string;
    readonly spent: number;
    readonly limit: number;
    readonly windowMs: number;
    /** Waiting tasks cancelled because of `haltOnExceeded`. */
    readonly halted: number;
  };
  /** A rate-limited capability or dependency got a retry-after and holds its work for `ms`. */
  'ratelimit:paused': { readonly name: string; readonly ms: number };
  /** The pause is over; held work starts again as the limit allows. */
  'ratelimit:resumed': { readonly name: string };
  /**
   * The HealthMonitor found an agent failing its `healthCheck()` or stuck (a given-up attempt that never returned).
   * A pool's agent is then replaced (`agent:replaced`); an outside agent is quarantined until a check passes again.
   */
  'agent:unhealthy': {
    readonly agentId: string;
    readonly role: string | undefined;
    readonly reason: 'health-check' | 'stuck';
    readonly error: unknown;
  };
  /**
   * An outside agent quarantined by a failed health check (or as stuck) passed again and is routable. (If its
   * breaker is open meanwhile, it returns with the breaker's `closed` or `half-open` instead, without this event.)
   */
  'agent:recovered': { readonly agentId: string; readonly role: string | undefined };
  /** A failed or stuck pool agent was taken out; its pool makes a replacement. */
  'agent:replaced': { readonly agentId: string; readonly role: string | undefined; readonly reason: 'health-check' | 'stuck' };
  /**
   * A pool used its recovery budget (replacements and failed creations per window): it stops recovering until the
   * window moves on (`resumeInMs`) and reports unhealthy meanwhile, instead of crash-looping.
   */
  'pool:recovery-exhausted': { readonly role: string; readonly replacements: number; readonly windowMs: number; readonly resumeInMs: number };
  /** A task type crossed an SLA threshold over its window; the figures are the window's. */
  'sla:violation': SlaEvent;
  /** A task type is back within that threshold (or has too few samples to judge). */
  'sla:recovered': SlaEvent;
  /**
   * A control message reached this node through its bridge (its own included), after the orchestrator applied it
   * (halt and resume hold and release work; traffic and rollback update `controlState().traffic`). `replayed` is set
   * for the cluster's standing halt and traffic setting, delivered once when the node joins.
   */
  'bridge:control': import('./bridge/bridge.js').ControlMessage;
  /** The bridge's connection state changed (degraded while Redis reconnects). */
  'bridge:state': import('./bridge/bridge.js').BridgeStatus;
  /** A critical operation, for the audit trail (also given to the `audit.sink` option). */
  audit: import('./health/audit.js').AuditEntry;
  /** The `audit.sink` threw or rejected for an entry; the operation itself went ahead. */
  'audit:sink-failed': { readonly entry: import('./health/audit.js').AuditEntry; readonly error: unknown };
  /** A listener threw. The orchestrator carried on; this reports it. */
  'listener:error': { readonly event: string; readonly error: unknown };
}

/** The payload of `sla:violation` and `sla:recovered`. */
export interface SlaEvent extends SlaFigures {
  readonly metric: SlaMetric;
  readonly value: number;
  readonly threshold: number;
  readonly windowMs: number;
}

export type OrchestratorEventName = keyof OrchestratorEvents;
export type OrchestratorListener<E extends OrchestratorEventName> = (payload: OrchestratorEvents[E]) => void;

/**
 * eventemitter3 with typed names and payloads, where a throwing listener is isolated: the error is reported
 * as `listener:error` (or a process warning when nobody listens for that) and the other listeners still run.
 */
export class TypedEmitter<Events extends object = OrchestratorEvents> {
  readonly #ee = new EventEmitter();
  // listener → its guarded wrapper, per event, so `off` can find what `on` registered.
  readonly #wrappers = new Map<PropertyKey, Map<Function, Function[]>>();
  /** Listeners per event, kept alongside eventemitter3's so that `has` is one property read. */
  #counts: Record<string, number> = Object.create(null) as Record<string, number>;

  on<E extends keyof Events & string>(event: E, listener: (payload: Events[E]) => void): this {
    this.#ee.on(event, this.#wrap(event, listener, false));
    return this;
  }

  once<E extends keyof Events & string>(event: E, listener: (payload: Events[E]) => void): this {
    this.#ee.once(event, this.#wrap(event, listener, true));
    return this;
  }

  off<E extends keyof Events & string>(event: E, listener: (payload: Events[E]) => void): this {
    const wrappers = this.#wrappers.get(event)?.get(listener);
    const wrapper = wrappers?.pop();
    if (wrapper) {
      this.#counts[event] = (this.#counts[event] ?? 1) - 1;
      this.#ee.off(event, wrapper as (...args: unknown[]) => void);
      if (wrappers!.length === 0) this.#wrappers.get(event)!.delete(listener);
    }
    return this;
  }

  /** Whether anyone listens: check it before building a payload on a hot path, so an unheard event costs nothing. */
  has(event: keyof Events & string): boolean {
    return this.#counts[event] !== undefined && this.#counts[event] > 0;
  }

  listenerCount(event: keyof Events & string): number {
    return this.#ee.listenerCount(event);
  }

  /** Emits to every listener; returns false at once (no allocation) when there is none. */
  emit<E extends keyof Events & string>(event: E, payload: Events[E]): boolean {
    return this.#ee.emit(event, payload);
  }

  removeAllListeners(): void {
    this.#ee.removeAllListeners();
    this.#wrappers.clear();
    this.#counts = Object.create(null) as Record<string, number>;
  }

  #wrap(event: string, listener: Function, once: boolean): (payload: unknown) => void {
    if (typeof listener !== 'function') {
      throw new ValidationError('listener', `Expected the listener for "${event}" to be a function, got ${typeof listener}`);
    }
    let perEvent = this.#wrappers.get(event);
    if (!perEvent) this.#wrappers.set(event, (perEvent = new Map()));
    this.#counts[event] = (this.#counts[event] ?? 0) + 1;
    const wrapper = (payload: unknown): void => {
      if (once) this.#forget(event, listener, wrapper);
      try {
        listener(payload);
      } catch (error) {
        this.#report(event, error);
      }
    };
    const list = perEvent.get(listener);
    if (list) list.push(wrapper);
    else perEvent.set(listener, [wrapper]);
    return wrapper;
  }

  #forget(event: string, listener: Function, wrapper: Function): void {
    const list = this.#wrappers.get(event)?.get(listener);
    if (!list) return;
    const i = list.indexOf(wrapper);
    if (i >= 0) {
      list.splice(i, 1);
      this.#counts[event] = (this.#counts[event] ?? 1) - 1;
    }
    if (list.length === 0) this.#wrappers.get(event)!.delete(listener);
  }

  #report(event: string, error: unknown): void {
    if (event !== 'listener:error' && this.#ee.listenerCount('listener:error') > 0) {
      this.#ee.emit('listener:error', { event, error });
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.emitWarning(`A listener for "${event}" threw: ${message}`, { code: 'UNIFIED_ORCHESTRATOR_LISTENER' });
  }
}
