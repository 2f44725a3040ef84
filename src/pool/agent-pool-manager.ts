/**
 * AgentPoolManager: owns every agent. Pre-warms pools, keeps warm spares for instant `spawnAgent` and
 * scale-up, scales down idle agents, registers outside agents, and retires routable agents through DRAINING
 * (an agent still INITIALIZING is withdrawn by its creation instead).
 * It never imports the engine: the engine listens through {@link RoutingListener}.
 */
import { setMaxListeners } from 'node:events';
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
  ValidationError,
} from '../errors.js';
import type { OrchestratorEvents, TypedEmitter } from '../events.js';
import type { BreakerState } from '../resources/circuit-breakers.js';
import type { PressureLevel } from '../resources/pressure.js';
import type { TrackedTimer } from '../resources/disposables.js';
import type { ResourceManager } from '../resources/resource-manager.js';
import type { Agent } from './agent.js';
import { AgentRecord, type AgentRecordHooks } from './agent-record.js';
import { isRoutableState, type AgentState } from './agent-state.js';
import { Pool, type PoolSnapshot } from './pool.js';

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
  waitingDemand(): Iterable<{
    /** The capabilities the class requires. */
    readonly requires: readonly string[];
    /** Its tasks waiting. */
    readonly waiting: number;
  }>;
}

/** Options of `registerAgent` for an agent made outside any pool. */
export interface AgentPoolManagerOptions {
  readonly pools: readonly ResolvedPoolOptions[];
  readonly scaleIntervalMs: number;
  readonly clock: Clock;
  readonly events: TypedEmitter<OrchestratorEvents>;
  /** Retry policy, agent breakers and pressure. */
  readonly resources: ResourceManager;
}

type ManagerState = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped';

const noop = (): void => {};

/** The agent being created was unregistered before it was ready: not a failure to retry. */
class AgentWithdrawnError extends AgentNotFoundError {
  constructor(agentId: string) {
    super(agentId, `Agent ${JSON.stringify(agentId)} was unregistered while it was being created`);
  }
}

function holdsAll(have: readonly string[], need: readonly string[]): boolean {
  for (const c of need) if (!have.includes(c)) return false;
  return true;
}

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
  readonly #retiring = new Map<AgentRecord, Promise<void>>();
  /** Records still INITIALIZING (owned by their #create), with a promise that settles when that creation is over. */
  readonly #initializing = new Map<AgentRecord, { readonly over: Promise<void>; readonly end: () => void }>();
  /** INITIALIZING records whose removal was asked for: their #create disposes and removes them instead of placing them. */
  readonly #withdrawn = new Set<AgentRecord>();
  /** Creations queued or running, awaited by stop() so none finishes after it. */
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #drainWaiters = new Map<AgentRecord, () => void>();
  readonly #options: AgentPoolManagerOptions;
  readonly #events: TypedEmitter<OrchestratorEvents>;
  readonly #resources: ResourceManager;
  readonly #abort = new AbortController();
  readonly #hooks: AgentRecordHooks;
  #listener: RoutingListener | undefined;
  #state: ManagerState = 'idle';
  /** The one scale ticker of every pool (unref'd, tracked by the ResourceManager). */
  readonly #ticker: TrackedTimer;
  #externalSeq = 0;
  #generation = 0;

  constructor(options: AgentPoolManagerOptions) {
    this.#options = options;
    this.#events = options.events;
    this.#resources = options.resources;
    this.#resources.onPressure((level) => this.#onPressure(level));
    this.#ticker = this.#resources.disposables.timer(() => this.#tick());
    // Every queued and running creation listens on this one stop signal; that is by design, not a leak.
    setMaxListeners(0, this.#abort.signal);
    for (const p of options.pools) this.#pools.set(p.role, new Pool(p));
    this.#poolsBySpecificity = [...this.#pools.values()].sort(
      (a, b) => a.options.capabilities.length - b.options.capabilities.length,
    );
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
        this.#startCreation(pool, 'member', 'demand'),
      );
      const spares = this.#fillSpares(pool);
      await Promise.all(members);
      await Promise.allSettled(spares);
    });
    const results = await Promise.allSettled(warmups);
    if (this.#abort.signal.aborted) throw new OrchestratorStoppedError('The orchestrator was stopped while starting');
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    this.#state = 'running';
    this.#scheduleTick();
  }

  /** Hands back the id of a ready agent of `role` at once (a warm spare) and refills the spare in the background. */
  async spawnAgent(role: string): Promise<string> {
    const pool = this.#pools.get(expectString(role, 'role'));
    if (!pool) throw new UnknownRoleError(role, this.roles);
    if (this.#state === 'idle' || this.#state === 'starting') throw new OrchestratorNotStartedError();
    if (this.#state !== 'running') throw new OrchestratorStoppedError();
    const spare = this.#promoteSpare(pool, 'spawn');
    const pressure = this.#resources.pressure;
    if (!spare && pool.hasRoom && pressure !== 'normal') throw new ResourcePressureError(pressure, 'agent creation');
    if (!spare && pool.hasRoom && this.#suspended(pool)) {
      throw new AgentCreationError(
        role,
        0,
        new Error(
          `pool ${JSON.stringify(role)} spent its recovery budget; it makes no agents until the window moves on`,
        ),
      );
    }
    const record = spare ?? (pool.hasRoom ? await this.#startCreation(pool, 'member', 'spawn') : undefined);
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
    if (this.#state !== 'running') return false;
    // Under pressure a spare (already made) may still be promoted, but nothing new is created.
    const mayCreate = this.#resources.pressure === 'normal';
    for (const pool of this.#poolsBySpecificity) {
      if (!holdsAll(pool.options.capabilities, requires)) continue;
      if (this.#promoteSpare(pool, 'demand')) return true;
      if (pool.creatingMembers * pool.options.concurrency >= waiting) return true;
      // Even under pressure a pool keeps one agent for the work it accepted: tasks must not wait forever on none.
      // (`liveMembers` walks the pool: only asked under pressure, never on the normal path.)
      const allowed = mayCreate || (pool.creatingMembers === 0 && pool.liveMembers === 0);
      if (allowed && pool.hasRoom && !this.#suspended(pool)) {
        this.#startCreation(pool, 'member', 'demand').catch(() => {}); // reported as pool:create-failed
        return true;
      }
    }
    return false;
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
    if (until === 0 && this.#state === 'running') this.#ensureMinimum(pool);
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

  #suspended(pool: Pool): boolean {
    return pool.suspendedUntil !== 0 && this.#options.clock.now() < pool.suspendedUntil;
  }

  /** Whether a pool is declared, or an agent is registered and not on its way out, that holds every capability of `requires`. */
  canEverServe(requires: readonly string[]): boolean {
    for (const pool of this.#poolsBySpecificity) if (holdsAll(pool.options.capabilities, requires)) return true;
    for (const record of this.#agents.values()) {
      if (record.state !== 'DRAINING' && record.state !== 'FAILED' && record.holdsAll(requires)) return true;
    }
    return false;
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
    this.#ticker.dispose();
    // Queued creations reject at once (p-queue removes an item whose signal aborts); running ones see the signal.
    this.#abort.abort(new OrchestratorStoppedError('The orchestrator stopped while creating an agent'));

    // Creations in flight see the abort (factory, health check and backoff all listen) and clean up after themselves.
    await Promise.allSettled([...this.#inflight]);
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
    if (role !== undefined && this.#pools.has(role) && owned) {
      // Owned by its creation from the first event on: a listener that unregisters it at once withdraws it.
      let end!: () => void;
      const over = new Promise<void>((resolve) => (end = resolve));
      this.#initializing.set(record, { over, end });
    }
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

  /** Queues one creation on the pool's create queue; resolves with the ready record. */
  #startCreation(pool: Pool, kind: 'member' | 'spare', reason: 'demand' | 'spawn' | 'replace'): Promise<AgentRecord> {
    if (kind === 'member') pool.creatingMembers++;
    else pool.creatingSpares++;
    // The count drops in the same step that places the agent (so `total` never counts it twice, and a spawn in
    // between sees the true spare count), or when the creation fails.
    let counted = true;
    const uncount = (): void => {
      if (!counted) return;
      counted = false;
      if (kind === 'member') pool.creatingMembers--;
      else pool.creatingSpares--;
    };
    const created = pool.createQueue.add(
      () => {
        // Tracked so that stop() waits for it: p-queue rejects `created` at once on abort, the creation runs on.
        const run = this.#create(pool, kind, uncount);
        this.#inflight.add(run);
        run.then(noop, noop).finally(() => this.#inflight.delete(run));
        return run;
      },
      { signal: this.#abort.signal },
    );
    return created
      .then((record) => {
        if (kind === 'member') this.#emitScaled(pool, reason);
        else if (this.#resources.pressure !== 'normal') this.#shedSpare(pool, record); // pressure came while it was made
        return record;
      })
      .finally(uncount);
  }

  #fillSpares(pool: Pool): Promise<AgentRecord>[] {
    const started: Promise<AgentRecord>[] = [];
    // Spares are a luxury: under pressure they are shed, not refilled.
    if (this.#resources.pressure !== 'normal' || this.#suspended(pool)) return started;
    while (pool.spares.length + pool.creatingSpares < pool.options.warmSpares && pool.hasRoom) {
      const p = this.#startCreation(pool, 'spare', 'demand');
      p.catch(() => {}); // reported as pool:create-failed; a missing spare only makes spawn slower
      started.push(p);
    }
    return started;
  }

  #promoteSpare(pool: Pool, reason: 'demand' | 'spawn' | 'replace'): AgentRecord | undefined {
    const record = pool.spares.shift();
    if (!record) return undefined;
    pool.members.add(record);
    record.parked = false;
    if (record.routable) this.#listener?.agentRoutable(record);
    this.#emitScaled(pool, reason);
    if (this.#state === 'running') this.#fillSpares(pool);
    return record;
  }

  #emitScaled(pool: Pool, reason: OrchestratorEvents['pool:scaled']['reason']): void {
    this.#events.emit('pool:scaled', {
      role: pool.role,
      members: pool.members.size,
      spares: pool.spares.length,
      reason,
    });
  }

  async #create(pool: Pool, kind: 'member' | 'spare', placed: () => void): Promise<AgentRecord> {
    const { options } = pool;
    let attempts = 0;
    try {
      return await this.#resources.retry.run(
        async () => {
          // A fresh id per attempt: a failed attempt's agent may have been seen (events) and must not be confused with its successor.
          const agentId = pool.nextAgentId((id) => this.#agents.has(id));
          const agent = await this.#callFactory(pool, agentId);
          const record = this.#newRecord(agentId, pool.role, agent, options.capabilities, options.concurrency, true);
          return await this.#initialize(pool, kind, placed, record);
        },
        {
          attempts: options.createAttempts,
          signal: this.#abort.signal,
          onFailure: (error, attempt, willRetry) => {
            attempts = attempt;
            // Unregistered while initialising: not a failure, so neither reported nor retried.
            if (!(error instanceof AgentWithdrawnError))
              this.#events.emit('pool:create-failed', { role: pool.role, attempt, willRetry, error });
          },
          retryable: (error) => !(error instanceof AgentWithdrawnError),
        },
      );
    } catch (error) {
      if (this.#abort.signal.aborted) throw this.#abort.signal.reason;
      if (error instanceof AgentWithdrawnError) throw error;
      throw new AgentCreationError(pool.role, attempts, error);
    }
  }

  /**
   * INITIALIZING → IDLE for a freshly made agent: its first health check, then placement. Until it is placed this
   * creation owns the record: a stop or an unregisterAgent meanwhile is honoured here, with one dispose.
   */
  async #initialize(
    pool: Pool,
    kind: 'member' | 'spare',
    placed: () => void,
    record: AgentRecord,
  ): Promise<AgentRecord> {
    try {
      const healthy = await this.#initialCheck(record, pool.options.createTimeoutMs);
      const withdrawn = this.#withdrawn.has(record);
      if (!healthy || withdrawn || this.#abort.signal.aborted) {
        record.transition(healthy ? 'TERMINATED' : 'FAILED');
        await this.#dispose(record);
        if (record.state === 'FAILED') record.transition('TERMINATED');
        this.#remove(record, pool);
        if (this.#abort.signal.aborted) throw this.#abort.signal.reason;
        if (withdrawn) throw new AgentWithdrawnError(record.id);
        throw new Error(`Agent ${record.id} failed its health check after creation`);
      }
      placed();
      if (kind === 'spare') {
        record.parked = true;
        pool.spares.push(record);
      } else {
        pool.members.add(record);
      }
      record.transition('IDLE');
      return record;
    } finally {
      const entry = this.#initializing.get(record);
      this.#initializing.delete(record);
      this.#withdrawn.delete(record);
      entry?.end();
    }
  }

  /** Runs the factory with a timeout and the stop signal; an agent that arrives too late is disposed. */
  #callFactory(pool: Pool, agentId: string): Promise<Agent> {
    const { create, createTimeoutMs } = pool.options;
    const role = pool.role;
    const stop = this.#abort.signal;
    const controller = new AbortController();
    return new Promise<Agent>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const onStop = (): void => fail(stop.reason);
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        stop.removeEventListener('abort', onStop);
        return true;
      };
      const fail = (error: unknown): void => {
        if (!finish()) return;
        controller.abort(error);
        reject(error);
      };
      if (Number.isFinite(createTimeoutMs)) {
        timer = setTimeout(
          () =>
            fail(new Error(`create() for role ${JSON.stringify(role)} did not settle within ${createTimeoutMs} ms`)),
          createTimeoutMs,
        );
      }
      stop.addEventListener('abort', onStop, { once: true });
      Promise.resolve()
        .then(() => create({ role, agentId, signal: controller.signal }))
        .then((agent) => {
          if (settled) {
            void this.#disposeAgent(agent, agentId, role);
            return;
          }
          if (typeof agent !== 'object' || agent === null || typeof (agent as Partial<Agent>).execute !== 'function') {
            fail(
              new ValidationError(
                `pools[${role}].create`,
                `Expected create() of role ${JSON.stringify(role)} to return an agent with an execute(ctx) function`,
              ),
            );
            return;
          }
          if (finish()) resolve(agent);
        }, fail);
    });
  }

  async #initialCheck(record: AgentRecord, timeoutMs: number): Promise<boolean> {
    const check = record.agent.healthCheck;
    if (typeof check !== 'function') return true;
    let timer: NodeJS.Timeout | undefined;
    let onStop: (() => void) | undefined;
    const stop = this.#abort.signal;
    try {
      // Settles on the check, its timeout, or stop(): a check that never returns cannot hold stop() or the process.
      const bounded = new Promise<never>((_, reject) => {
        if (Number.isFinite(timeoutMs))
          timer = setTimeout(() => reject(new Error(`healthCheck() did not settle within ${timeoutMs} ms`)), timeoutMs);
        onStop = () => reject(stop.reason);
        stop.addEventListener('abort', onStop, { once: true });
      });
      const healthy = await Promise.race([Promise.resolve().then(() => check.call(record.agent)), bounded]);
      return healthy !== false;
    } catch (error) {
      if (stop.aborted) return true; // not the agent's fault; #initialize sees the stop and cleans up
      this.#events.emit('agent:error', { agentId: record.id, role: record.role, phase: 'health-check', error });
      return false;
    } finally {
      clearTimeout(timer);
      if (onStop) stop.removeEventListener('abort', onStop);
    }
  }

  /**
   * DRAINING → (running attempts settle) → dispose → TERMINATED, then removed. Idempotent per agent. An agent still
   * INITIALIZING is withdrawn instead: its creation disposes and removes it. Always ends with the record removed.
   */
  #retire(record: AgentRecord): Promise<void> {
    const existing = this.#retiring.get(record);
    if (existing) return existing;
    const initializing = this.#initializing.get(record);
    if (initializing) {
      this.#withdrawn.add(record);
      return initializing.over;
    }
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
      if (ownPool && this.#state === 'running') this.#ensureMinimum(ownPool);
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

  #ensureMinimum(pool: Pool): void {
    if (this.#suspended(pool)) return;
    let deficit = pool.options.minAgents - pool.liveMembers - pool.creatingMembers;
    while (deficit-- > 0) {
      if (this.#promoteSpare(pool, 'replace')) continue;
      if (!pool.hasRoom) break;
      this.#startCreation(pool, 'member', 'replace').catch(() => {}); // reported as pool:create-failed
    }
    this.#fillSpares(pool);
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

  /** Under pressure: shed the warm spares and the idle members above the minimum at once. Back to normal: refill. */
  #onPressure(level: PressureLevel): void {
    if (this.#state !== 'running') return;
    for (const pool of this.#pools.values()) {
      if (level === 'normal') this.#ensureMinimum(pool);
      else this.#shed(pool);
    }
  }

  #shed(pool: Pool): void {
    for (const spare of [...pool.spares]) this.#shedSpare(pool, spare);
    let surplus = pool.liveMembers - pool.options.minAgents;
    for (const m of pool.members) {
      if (surplus <= 0) break;
      if (m.state === 'IDLE' && !m.pinned) {
        surplus--;
        this.#retire(m).then(() => this.#emitScaled(pool, 'pressure'), noop);
      }
    }
  }

  /** Retires a warm spare; out of the spare list first, so nothing promotes a spare that is on its way out. */
  #shedSpare(pool: Pool, spare: AgentRecord): void {
    const i = pool.spares.indexOf(spare);
    if (i < 0) return;
    pool.spares.splice(i, 1);
    this.#retire(spare).then(() => this.#emitScaled(pool, 'pressure'), noop);
  }

  #scheduleTick(): void {
    if (this.#state !== 'running' || this.#pools.size === 0) return;
    this.#ticker.arm(this.#options.scaleIntervalMs);
  }

  /** One pass over the pools: retire idle agents above the minimum, then top pools back up. */
  #tick(): void {
    const now = this.#options.clock.now();
    const underPressure = this.#resources.pressure !== 'normal';
    for (const pool of this.#pools.values()) {
      if (underPressure) this.#shed(pool);
      let surplus = pool.liveMembers - pool.options.minAgents;
      for (const m of pool.members) {
        if (surplus <= 0) break;
        if (m.state === 'IDLE' && !m.pinned && now - m.idleSince >= pool.options.idleTimeoutMs) {
          surplus--;
          // Background work: a failure here must not become an unhandled rejection in the host; the agent's own
          // dispose errors are already reported as agent:error.
          this.#retire(m).then(() => this.#emitScaled(pool, 'idle'), noop);
        }
      }
      this.#ensureMinimum(pool);
    }
    // Demand whose creation failed is not asked for again by a new task; ask on every tick instead.
    if (this.#listener) for (const d of this.#listener.waitingDemand()) this.requestCapacity(d.requires, d.waiting);
    this.#scheduleTick();
  }
}
