/**
 * What the orchestrator knows of one agent: identity, capabilities, lifecycle state, slot usage and recent
 * performance. Owned by the AgentPoolManager; the engine reads it and takes and gives back slots.
 */
import type { AgentBreaker, BreakerState } from '../resources/circuit-breakers.js';
import type { Agent } from './agent.js';
import { assertTransition, isRoutableState, type AgentState } from './agent-state.js';

/** Weight of the newest sample in the latency and success-rate moving averages. */
const EWMA_ALPHA = 0.2;

export interface AgentRecordHooks {
  /** Called after every state change, with the old state. */
  onTransition(record: AgentRecord, from: AgentState): void;
  /** Called when a DRAINING agent's last attempt settled. */
  onDrained(record: AgentRecord): void;
}

/** A point-in-time view of an agent, as `stats()` and status calls return it. */
export interface AgentSnapshot {
  /** The agent's id. */
  readonly id: string;
  /** Its pool's role, or the `role` label it was registered with; `undefined` for an unlabelled outside agent. */
  readonly role: string | undefined;
  /** Its lifecycle state. */
  readonly state: AgentState;
  /** What it can do. */
  readonly capabilities: readonly string[];
  /** Tasks it runs at once. */
  readonly concurrency: number;
  /** Attempts holding one of its slots now, given-up ones (timed out, cancelled) that have not returned included. */
  readonly running: number;
  /** Attempts it finished successfully. */
  readonly completed: number;
  /** Attempts that failed or timed out on it (cancelled or halted ones not counted). */
  readonly failed: number;
  /** Moving average of attempt duration in ms; `undefined` before the first attempt. */
  readonly latencyMs: number | undefined;
  /** Moving average of attempt success, from 0 to 1. */
  readonly successRate: number;
  /** Its circuit breaker's state; `undefined` when agent breakers are off. */
  readonly breaker: BreakerState | undefined;
}

export class AgentRecord {
  readonly id: string;
  /** The pool's role, or `undefined` for an agent registered from outside a pool. */
  readonly role: string | undefined;
  readonly agent: Agent;
  readonly capabilities: ReadonlySet<string>;
  readonly capabilityList: readonly string[];
  readonly concurrency: number;

  #state: AgentState = 'INITIALIZING';
  /** Attempts running on this agent, including ones whose task already timed out but that have not returned. */
  active = 0;
  /** A warm spare: ready, but held outside routing until a pool promotes it. */
  parked = false;
  /** Handed out by `spawnAgent`: idle scale-down leaves it alone until it is unregistered. */
  pinned = false;
  /** Its circuit breaker (fed every attempt's outcome), or `undefined` when agent breakers are off. */
  breaker: AgentBreaker | undefined;
  /**
   * Half-open breaker: `ready` takes one probe task (when no attempt is running), `taken` while the probe runs.
   * `none` otherwise: the agent takes up to `concurrency` tasks.
   */
  probe: 'none' | 'ready' | 'taken' = 'none';
  /**
   * Attempts whose task moved on (timed out or cancelled) but whose `execute` has not returned: they still hold a
   * slot. `lateSince` is when the oldest of them was given up on; the HealthMonitor calls the agent stuck from it.
   */
  get late(): number {
    return this.#lateSince.length;
  }
  /** When the oldest late attempt was given up on (0 with none). */
  get lateSince(): number {
    return this.#lateSince[0] ?? 0;
  }
  /** When each late attempt was given up on, oldest first (the clock only moves forward). */
  readonly #lateSince: number[] = [];
  /** Failed its last health check: quarantined whatever its breaker says, until a check passes (outside agents). */
  unhealthy = false;
  /** Clock time at which the agent last became idle. */
  idleSince: number;
  completed = 0;
  failed = 0;
  latencyEwma = Number.NaN;
  successEwma = 1;

  readonly #hooks: AgentRecordHooks;

  constructor(init: {
    id: string;
    role: string | undefined;
    agent: Agent;
    capabilities: readonly string[];
    concurrency: number;
    hooks: AgentRecordHooks;
    now: number;
  }) {
    this.id = init.id;
    this.role = init.role;
    this.agent = init.agent;
    this.capabilityList = Object.freeze([...init.capabilities]);
    this.capabilities = new Set(init.capabilities);
    this.concurrency = init.concurrency;
    this.#hooks = init.hooks;
    this.idleSince = init.now;
  }

  get state(): AgentState {
    return this.#state;
  }

  /** Routable: may be handed new tasks (state IDLE or BUSY, not a parked spare). */
  get routable(): boolean {
    return !this.parked && isRoutableState(this.#state);
  }

  get hasFreeSlot(): boolean {
    return this.probe === 'none' ? this.active < this.concurrency : this.probe === 'ready' && this.active === 0;
  }

  holdsAll(capabilities: readonly string[]): boolean {
    for (const c of capabilities) if (!this.capabilities.has(c)) return false;
    return true;
  }

  /** Moves to `to`; throws IllegalStateTransitionError when the lifecycle forbids it. */
  transition(to: AgentState): void {
    const from = this.#state;
    if (from === to) return;
    assertTransition(this.id, from, to);
    this.#state = to;
    this.#hooks.onTransition(this, from);
  }

  /** Takes one slot for an attempt. The caller checked `routable` and `hasFreeSlot`. */
  acquire(): void {
    this.active++;
    if (this.probe === 'ready') this.probe = 'taken';
    if (this.#state === 'IDLE') this.transition('BUSY');
  }

  /** Gives a slot back when an attempt's `execute` settled (not merely when its task timed out). */
  release(now: number): void {
    this.active--;
    if (this.active === 0) {
      this.idleSince = now;
      if (this.#state === 'BUSY') this.transition('IDLE');
      else if (this.#state === 'DRAINING') this.#hooks.onDrained(this);
    }
  }

  /** An attempt was given up on (timeout, cancel) while `execute` still runs. */
  abandoned(now: number): void {
    this.#lateSince.push(now);
  }

  /**
   * A given-up attempt's `execute` returned after all (`abandonedAt`: when it was given up on). The others keep
   * their own times: one that returns must not make an older one that never will look young.
   */
  lateReturned(abandonedAt: number): void {
    const i = this.#lateSince.indexOf(abandonedAt);
    this.#lateSince.splice(i >= 0 ? i : 0, 1);
  }

  /** Folds one finished attempt into the moving averages. */
  recordOutcome(ok: boolean, durationMs: number): void {
    if (ok) this.completed++;
    else this.failed++;
    this.successEwma += EWMA_ALPHA * ((ok ? 1 : 0) - this.successEwma);
    this.latencyEwma = Number.isNaN(this.latencyEwma)
      ? durationMs
      : this.latencyEwma + EWMA_ALPHA * (durationMs - this.latencyEwma);
  }

  snapshot(): AgentSnapshot {
    return {
      id: this.id,
      role: this.role,
      state: this.#state,
      capabilities: this.capabilityList,
      concurrency: this.concurrency,
      running: this.active,
      completed: this.completed,
      failed: this.failed,
      latencyMs: Number.isNaN(this.latencyEwma) ? undefined : this.latencyEwma,
      successRate: this.successEwma,
      breaker: this.breaker?.state,
    };
  }
}
