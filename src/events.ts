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
  };
  /**
   * A circuit breaker changed state. `breaker` is `agent:<id>` for an agent's (then `agentId` is set: open
   * quarantines the agent, half-open lets one probe task through, closed returns it) or a dependency's name.
   */
  'breaker:state': {
    /** The breaker's name: `agent:<id>`, or the dependency's name. */
    readonly breaker: string;
    /** The agent of an agent breaker; `undefined` for a dependency's. */
    readonly agentId: string | undefined;
    /** The state it left. */
    readonly from: BreakerState;
    /** The state it entered. */
    readonly to: BreakerState;
  };
  /** The memory/CPU pressure level changed; the figures are the sample that moved it. */
  'pressure:changed': {
    /** The level it left. */
    readonly from: PressureLevel;
    /** The level it entered. */
    readonly to: PressureLevel;
    /**
     * The higher of rss / memoryLimitBytes and the CPU ratio (cpu / cpuLimitPercent, the lowest of the last
     * `cpuSustainedSamples` samples; 0 until there are that many).
     */
    readonly ratio: number;
    /** Resident set size of the process, in bytes. */
    readonly rssBytes: number;
    /** V8 heap in use, in bytes. */
    readonly heapUsedBytes: number;
    /** Process CPU in percent of one core since the previous sample; `NaN` when not known yet. */
    readonly cpuPercent: number;
  };
  /** The pressure sampler failed; the level stays as it was until a sample succeeds. */
  'pressure:sample-failed': {
    /** What the sampler threw or rejected with. */
    readonly error: unknown;
  };
  /** A tenant's reported cost went over its budget; its new tasks are refused (and with `haltOnExceeded` its waiting ones cancelled). */
  'budget:exceeded': {
    /** The tenant. */
    readonly tenantId: string;
    /** Units it spent in the current window. */
    readonly spent: number;
    /** Its limit per window, in units. */
    readonly limit: number;
    /** The budget window, in ms. */
    readonly windowMs: number;
    /** Waiting tasks cancelled because of `haltOnExceeded`. */
    readonly halted: number;
  };
  /** A rate-limited capability or dependency got a retry-after and holds its work for `ms`. */
  'ratelimit:paused': {
    /** The capability or dependency name of the limit. */
    readonly name: string;
    /** How long its work is held, in ms. */
    readonly ms: number;
  };
  /** The pause is over; held work starts again as the limit allows. */
  'ratelimit:resumed': {
    /** The capability or dependency name of the limit. */
    readonly name: string;
  };
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
  'audit:sink-failed': {
    /** The entry the sink was given. */
    readonly entry: import('./health/audit.js').AuditEntry;
    /** What the sink threw or rejected with. */
    readonly error: unknown;
  };
  /**
   * A listener threw. The orchestrator carried on; this reports it. (A `listener:error` listener that throws, or a
   * throw with nobody listening here, becomes a process warning with code `UNIFIED_ORCHESTRATOR_LISTENER`.)
   */
  'listener:error': {
    /** The name of the event whose listener threw. */
    readonly event: string;
    /** What it threw. */
    readonly error: unknown;
  };
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

/** The name of an orchestrator event: a key of {@link OrchestratorEvents}. */
export type OrchestratorEventName = keyof OrchestratorEvents;

/** A listener of event `E`: called with its payload; what it throws is reported as `listener:error`. */
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
      throw new ValidationError(
        'listener',
        `Expected the listener for "${event}" to be a function, got ${typeof listener}`,
      );
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
