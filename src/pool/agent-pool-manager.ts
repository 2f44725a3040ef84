/**
 * AgentPoolManager: owns every agent. The registry (agents by id, the pools), pre-warming at start, `spawnAgent`
 * from a warm spare, outside agents (`registerAgent`), quarantine for the HealthMonitor, and retirement through
 * DRAINING (an agent still INITIALIZING is withdrawn by its creation instead). It composes the parts: making one
 * agent is in `creation.ts`, scaling up and down, spares and the scale ticker in `autoscaler.ts`.
 * It never imports the engine: the engine listens through {@link RoutingListener}.
 */
import type { Clock } from '../util/timers.js';
import { resolveRegisterAgentOptions, type RegisterAgentOptions, type ResolvedPoolOptions } from './options.js';
import { expectString } from '../util/validate.js';
import {
  AgentCreationError,
  AgentNotFoundError,
  DuplicateAgentError,
  OrchestratorNotStartedError,
  OrchestratorStoppedError,
  PoolAtCapacityError,
  ResourcePressureError,
  UnknownRoleError,
} from '../errors.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import type { PoolEvents } from './events.js';
import type { BreakerState } from '../resources/circuit-breakers.js';
import type { ResourceManager } from '../resources/resource-manager.js';
import type { Agent } from './agent.js';
import { AgentRecord, type AgentRecordHooks } from './agent-record.js';
import { isRoutableState, type AgentState } from './agent-state.js';
import { Autoscaler } from './autoscaler.js';
import { AgentCreator } from './creation.js';
import { Pool, type PoolSnapshot, type WaitingDemand } from './pool.js';

/** How the engine hears that an agent joined or left routing, and how the pools ask it for waiting demand. */
export interface RoutingListener {
  /**
   * An agent became routable (IDLE or BUSY, not a parked spare).
   * @internal
   */
  agentRoutable(record: AgentRecord): void;
  /**
   * An agent stopped being routable (quarantined, draining or gone).
   * @internal
   */
  agentUnroutable(record: AgentRecord): void;
  /** Requirement classes with tasks waiting, so a scale tick can ask again after a creation failed. */
  waitingDemand(): Iterable<WaitingDemand>;
}

/** What the orchestrator builds an AgentPoolManager with. */
export interface AgentPoolManagerOptions {
  readonly pools: readonly ResolvedPoolOptions[];
  readonly scaleIntervalMs: number;
  readonly clock: Clock;
  readonly events: TypedEmitter<PoolEvents>;
  /** Retry policy, agent breakers and pressure. */
  readonly resources: ResourceManager;
}

type ManagerState = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * Owns every agent: the pools' and those registered from outside. The orchestrator builds it and keeps it private;
 * its calls are reached through UnifiedOrchestrator (`spawnAgent`, `registerAgent`, `agents()`, `stats().pools`).
 */
export class AgentPoolManager {
  readonly #pools = new Map<string, Pool>();
  /** Pools ordered by how few capabilities they have: scale the most specialised pool first. */
  readonly #poolsBySpecificity: Pool[];
  /** Every agent not yet TERMINATED, spares included. */
  readonly #agents = new Map<string, AgentRecord>();
  /** Retirements under way, so that retiring an agent twice waits for the one retirement. */
  readonly #retiring = new Map<AgentRecord, Promise<void>>();
  /** DRAINING agents with attempts still running: woken when the last one settles (or by stop/force). */
  readonly #drainWaiters = new Map<AgentRecord, () => void>();
  readonly #options: AgentPoolManagerOptions;
  readonly #events: TypedEmitter<PoolEvents>;
  readonly #resources: ResourceManager;
  readonly #hooks: AgentRecordHooks;
  /** Makes the pools' agents: factory with its timeout, retries, first health check, withdrawal while INITIALIZING. */
  readonly #creator: AgentCreator;
  /** Scale-up from demand, idle scale-down, top-up to the minimum, warm spares, the scale ticker. */
  readonly #scaler: Autoscaler;
  #listener: RoutingListener | undefined;
  #state: ManagerState = 'idle';
  #externalSeq = 0;
  #generation = 0;

  constructor(options: AgentPoolManagerOptions) {
    this.#options = options;
    this.#events = options.events;
    this.#resources = options.resources;
    for (const p of options.pools) this.#pools.set(p.role, new Pool(p));
    this.#poolsBySpecificity = [...this.#pools.values()].sort(
      (a, b) => a.options.capabilities.length - b.options.capabilities.length,
    );
    this.#creator = new AgentCreator(
      {
        isTaken: (agentId) => this.#agents.has(agentId),
        newRecord: (agentId, pool, agent) =>
          this.#newRecord(agentId, pool.role, agent, pool.options.capabilities, pool.options.concurrency, true),
        remove: (record, pool) => this.#remove(record, pool),
        dispose: (agent, agentId, role) => this.#disposeAgent(agent, agentId, role),
        created: (pool, kind, reason, record) => this.#scaler.created(pool, kind, reason, record),
      },
      this.#events,
      this.#resources,
    );
    this.#scaler = new Autoscaler({
      pools: this.#pools,
      poolsBySpecificity: this.#poolsBySpecificity,
      scaleIntervalMs: options.scaleIntervalMs,
      clock: options.clock,
      events: this.#events,
      resources: this.#resources,
      creator: this.#creator,
      host: {
        isRunning: () => this.#state === 'running',
        retire: (record) => this.#retire(record),
        agentRoutable: (record) => this.#listener?.agentRoutable(record),
        waitingDemand: () => this.#listener?.waitingDemand(),
      },
    });
    this.#hooks = {
      onTransition: (record, from) => this.#onTransition(record, from),
      onDrained: (record) => {
        const wake = this.#drainWaiters.get(record);
        this.#drainWaiters.delete(record);
        wake?.();
      },
    };
  }

  /** Changes whenever an agent is added, removed, or joins or leaves routing, so callers can cache "could anyone serve X". */
  get generation(): number {
    return this.#generation;
  }

  /** The roles of the declared pools, in declaration order. */
  get roles(): readonly string[] {
    return [...this.#pools.keys()];
  }

  /**
   * Sets the one listener of routing changes (the engine).
   * @internal
   */
  setRoutingListener(listener: RoutingListener): void {
    this.#listener = listener;
  }

  /**
   * The record of an agent not yet TERMINATED, spares included.
   * @internal
   */
  get(agentId: string): AgentRecord | undefined {
    return this.#agents.get(agentId);
  }

  /**
   * Every agent not yet TERMINATED, spares included.
   * @internal
   */
  agents(): IterableIterator<AgentRecord> {
    return this.#agents.values();
  }

  /** Pre-warms every pool to its minimum (and its spares). Rejects with AgentCreationError if a pool cannot reach its minimum. */
  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new OrchestratorStoppedError('The pool manager was already started');
    this.#state = 'starting';
    const warmups = [...this.#pools.values()].map(async (pool) => {
      const members = Array.from({ length: pool.options.minAgents }, () =>
        this.#creator.start(pool, 'member', 'demand'),
      );
      const spares = this.#scaler.fillSpares(pool);
      await Promise.all(members);
      await Promise.allSettled(spares);
    });
    const results = await Promise.allSettled(warmups);
    if (this.#creator.stopped) throw new OrchestratorStoppedError('The orchestrator was stopped while starting');
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    this.#state = 'running';
    this.#scaler.scheduleTick();
  }

  /** Hands back the id of a ready agent of `role` at once (a warm spare) and refills the spare in the background. */
  async spawnAgent(role: string): Promise<string> {
    const pool = this.#pools.get(expectString(role, 'role'));
    if (!pool) throw new UnknownRoleError(role, this.roles);
    if (this.#state === 'idle' || this.#state === 'starting') throw new OrchestratorNotStartedError();
    if (this.#state !== 'running') throw new OrchestratorStoppedError();
    const spare = this.#scaler.promoteSpare(pool, 'spawn');
    const pressure = this.#resources.pressure;
    if (!spare && pool.hasRoom && pressure !== 'normal') throw new ResourcePressureError(pressure, 'agent creation');
    if (!spare && pool.hasRoom && this.#scaler.suspended(pool)) {
      throw new AgentCreationError(
        role,
        0,
        new Error(
          `pool ${JSON.stringify(role)} spent its recovery budget; it makes no agents until the window moves on`,
        ),
      );
    }
    const record = spare ?? (pool.hasRoom ? await this.#creator.start(pool, 'member', 'spawn') : undefined);
    if (!record) throw new PoolAtCapacityError(role, pool.options.maxAgents);
    record.pinned = true;
    return record.id;
  }

  /** Adds an agent made outside any pool; it is routable at once. Returns its id. */
  registerAgent(agent: Agent, options: RegisterAgentOptions): string {
    if (this.#state === 'stopping' || this.#state === 'stopped') throw new OrchestratorStoppedError();
    const { capabilities, concurrency, role, id: givenId } = resolveRegisterAgentOptions(agent, options);
    let id: string;
    if (givenId === undefined) {
      do id = `agent-${++this.#externalSeq}`;
      while (this.#agents.has(id));
    } else {
      id = givenId;
      if (this.#agents.has(id)) throw new DuplicateAgentError(id);
    }
    const record = this.#newRecord(id, role, agent, capabilities, concurrency);
    record.transition('IDLE');
    return id;
  }

  /** Drains an agent (its running tasks finish, it takes no new ones), disposes it and removes it. */
  async unregisterAgent(agentId: string): Promise<void> {
    const record = this.#agents.get(expectString(agentId, 'agentId'));
    if (!record) throw new AgentNotFoundError(agentId);
    await this.#retire(record);
  }

  /**
   * Called by the engine when a task must wait: grows the most specialised pool that can serve `requires`,
   * promoting a spare at once or starting a creation. Returns whether more capacity is coming.
   */
  requestCapacity(requires: readonly string[], waiting: number): boolean {
    return this.#scaler.requestCapacity(requires, waiting);
  }

  // --- Used by the HealthMonitor -------------------------------------------------------------------

  /**
   * An agent failed its health check or is stuck: quarantined (UNHEALTHY) at once, whatever its breaker says.
   * @internal
   */
  markUnhealthy(record: AgentRecord): void {
    record.unhealthy = true;
    record.probe = 'none';
    if (record.state === 'IDLE' || record.state === 'BUSY') record.transition('UNHEALTHY');
  }

  /**
   * A quarantined agent passed its health check again: routable unless its breaker is still open. Returns whether
   * it changed.
   * @internal
   */
  markHealthy(record: AgentRecord): boolean {
    if (!record.unhealthy) return false;
    record.unhealthy = false;
    if (record.state !== 'UNHEALTHY' || record.breaker?.state === 'open') return true;
    record.probe = record.breaker?.state === 'half-open' ? 'ready' : 'none';
    record.transition(record.active > 0 ? 'BUSY' : 'IDLE');
    return true;
  }

  /**
   * Takes an agent out for good; its pool (if any) makes a replacement to keep its minimum. With `force`, running
   * attempts are not waited for (a stuck agent's never return): the agent is disposed at once.
   * @internal
   */
  replace(record: AgentRecord, force: boolean): Promise<void> {
    if (record.state === 'INITIALIZING' || record.state === 'TERMINATED' || record.state === 'FAILED')
      return Promise.resolve();
    if (record.state === 'IDLE' || record.state === 'BUSY') this.markUnhealthy(record);
    const done = this.#retire(record);
    if (force) this.#drainWaiters.get(record)?.();
    return done;
  }

  /** Stops (or, with 0, resumes) agent creation for a pool until clock time `until`: its recovery budget is spent. */
  suspend(role: string, until: number): void {
    const pool = this.#pools.get(role);
    if (!pool) return;
    pool.suspendedUntil = until;
    if (until === 0 && this.#state === 'running') this.#scaler.ensureMinimum(pool);
  }

  /** Members routable now (IDLE or BUSY): what a pool's health compares with its minimum. 0 for an unknown role. */
  healthyMembers(role: string): number {
    const pool = this.#pools.get(role);
    if (!pool) return 0;
    let n = 0;
    for (const m of pool.members) if (m.routable) n++;
    return n;
  }

  /**
   * Whether the agent is a member or spare of a pool (and so can be replaced by its factory).
   * @internal
   */
  isPoolAgent(record: AgentRecord): boolean {
    const pool = record.role === undefined ? undefined : this.#pools.get(record.role);
    return pool !== undefined && (pool.members.has(record) || pool.spares.includes(record));
  }

  /** Whether a pool is declared, or an agent is registered and not on its way out, that holds every capability of `requires`. */
  canEverServe(requires: readonly string[]): boolean {
    for (const pool of this.#poolsBySpecificity) if (pool.holdsAll(requires)) return true;
    for (const record of this.#agents.values()) {
      if (record.state !== 'DRAINING' && record.state !== 'FAILED' && record.holdsAll(requires)) return true;
    }
    return false;
  }

  /** Every capability a declared pool or a registered agent (not on its way out) holds, each once. */
  capabilities(): string[] {
    const all = new Set<string>();
    for (const pool of this.#poolsBySpecificity) for (const c of pool.options.capabilities) all.add(c);
    for (const record of this.#agents.values()) {
      if (record.state !== 'DRAINING' && record.state !== 'FAILED') for (const c of record.capabilityList) all.add(c);
    }
    return [...all];
  }

  /** A snapshot of each declared pool, in declaration order. */
  pools(): PoolSnapshot[] {
    return [...this.#pools.values()].map((p) => p.snapshot());
  }

  /** Agents by lifecycle state, spares counted as IDLE. */
  countByState(): Record<AgentState, number> {
    const counts: Record<AgentState, number> = {
      INITIALIZING: 0,
      IDLE: 0,
      BUSY: 0,
      DRAINING: 0,
      TERMINATED: 0,
      UNHEALTHY: 0,
      FAILED: 0,
    };
    for (const r of this.#agents.values()) counts[r.state]++;
    return counts;
  }

  /**
   * Stops scaling and creation, then drains and disposes every agent. Agents still running attempts after
   * `timeoutMs` (ones that ignored their abort signal) are disposed anyway.
   */
  async stop(timeoutMs: number): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    this.#state = 'stopping';
    this.#scaler.stop();
    // Queued creations reject at once; those in flight see the abort and clean up after themselves.
    await this.#creator.stop(new OrchestratorStoppedError('The orchestrator stopped while creating an agent'));
    const all = Promise.all([...this.#agents.values()].map((r) => this.#retire(r)));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      if (Number.isFinite(timeoutMs)) timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([all, deadline]);
    clearTimeout(timer);
    // Whatever is still draining now holds an attempt that never returned: stop waiting for it.
    for (const wake of [...this.#drainWaiters.values()]) wake();
    this.#drainWaiters.clear();
    await all;
    this.#state = 'stopped';
  }

  // ---------------------------------------------------------------------------------------------

  #newRecord(
    id: string,
    role: string | undefined,
    agent: Agent,
    capabilities: readonly string[],
    concurrency: number,
    owned = false,
  ): AgentRecord {
    // registerAgent may have taken a pool-chosen id while its factory ran: refuse (that creation retries with a new id).
    if (this.#agents.has(id)) throw new DuplicateAgentError(id);
    const record = new AgentRecord({
      id,
      role,
      agent,
      capabilities,
      concurrency,
      hooks: this.#hooks,
      now: this.#options.clock.now(),
    });
    record.breaker = this.#resources.agentBreaker(id, (from, to) => this.#onBreaker(record, from, to));
    this.#agents.set(id, record);
    // Owned by its creation from the first event on: a listener that unregisters it at once withdraws it.
    if (role !== undefined && this.#pools.has(role) && owned) this.#creator.own(record);
    this.#generation++;
    this.#events.emit('agent:state', { agentId: id, role, from: undefined, to: 'INITIALIZING' });
    return record;
  }

  #onTransition(record: AgentRecord, from: AgentState): void {
    if (this.#events.has('agent:state')) {
      this.#events.emit('agent:state', { agentId: record.id, role: record.role, from, to: record.state });
    }
    const was = !record.parked && isRoutableState(from);
    const now = record.routable;
    if (was !== now) {
      this.#generation++; // who could ever serve a requirement may have changed
      if (now) this.#listener?.agentRoutable(record);
      else this.#listener?.agentUnroutable(record);
    } else if (from === 'UNHEALTHY' && (record.state === 'DRAINING' || record.state === 'FAILED')) {
      // A quarantined agent leaving for good: it no longer counts as one that could serve its capabilities later.
      this.#generation++;
      this.#listener?.agentUnroutable(record);
    }
  }

  /**
   * DRAINING → (running attempts settle) → dispose → TERMINATED, then removed. Idempotent per agent. An agent still
   * INITIALIZING is withdrawn instead: its creation disposes and removes it. Always ends with the record removed.
   */
  #retire(record: AgentRecord): Promise<void> {
    const existing = this.#retiring.get(record);
    if (existing) return existing;
    const initializing = this.#creator.withdraw(record);
    if (initializing) return initializing;
    const pool = record.role === undefined ? undefined : this.#pools.get(record.role);
    const ownPool = pool && (pool.members.has(record) || pool.spares.includes(record)) ? pool : undefined;
    const done = (async () => {
      try {
        if (record.state === 'IDLE' || record.state === 'BUSY' || record.state === 'UNHEALTHY')
          record.transition('DRAINING');
        if (record.active > 0 && record.state === 'DRAINING') {
          await new Promise<void>((resolve) => this.#drainWaiters.set(record, resolve));
        }
        await this.#dispose(record);
        if (record.state !== 'TERMINATED') record.transition('TERMINATED');
      } finally {
        this.#remove(record, ownPool);
      }
      if (ownPool && this.#state === 'running') this.#scaler.ensureMinimum(ownPool);
    })();
    this.#retiring.set(record, done);
    return done;
  }

  #remove(record: AgentRecord, pool: Pool | undefined): void {
    this.#agents.delete(record.id);
    if (record.breaker) this.#resources.releaseAgentBreaker(record.breaker);
    record.probe = 'none';
    this.#retiring.delete(record);
    this.#generation++;
    if (pool) {
      pool.members.delete(record);
      const i = pool.spares.indexOf(record);
      if (i >= 0) pool.spares.splice(i, 1);
    }
  }

  #dispose(record: AgentRecord): Promise<void> {
    return this.#disposeAgent(record.agent, record.id, record.role);
  }

  async #disposeAgent(agent: Agent, agentId: string, role: string | undefined): Promise<void> {
    if (typeof agent.dispose !== 'function') return;
    try {
      await agent.dispose();
    } catch (error) {
      this.#events.emit('agent:error', { agentId, role, phase: 'dispose', error });
    }
  }

  /**
   * An agent's breaker moved. Open: quarantined (UNHEALTHY, not routed to; running attempts finish). Half-open:
   * routable again for one probe task. Closed: back to full routing.
   */
  #onBreaker(record: AgentRecord, from: BreakerState, to: BreakerState): void {
    const { state } = record;
    if (state === 'DRAINING' || state === 'TERMINATED' || state === 'FAILED' || state === 'INITIALIZING') return;
    if (to === 'open') {
      record.probe = 'none';
      if (state !== 'UNHEALTHY') record.transition('UNHEALTHY');
      return;
    }
    // A failed health check quarantines on its own account: the breaker recovering does not lift it.
    if (record.unhealthy) return;
    record.probe = to === 'half-open' ? 'ready' : 'none';
    if (state === 'UNHEALTHY') {
      record.transition(record.active > 0 ? 'BUSY' : 'IDLE');
    } else if (to === 'closed' && from === 'half-open' && record.routable) {
      // Routable all along (probing): its other slots opened up now.
      this.#listener?.agentRoutable(record);
    }
  }
}
