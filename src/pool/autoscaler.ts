/**
 * Autoscaling of the pools between `minAgents` and `maxAgents`: scale-up from waiting demand (a spare promoted at
 * once, else a creation), never up under resource pressure; scale-down of idle agents above the minimum after
 * `idleTimeoutMs`; top-up to the minimum after an agent left; warm spares kept filled; spares and idle surplus shed
 * under pressure. One ticker runs every pool's scale pass.
 * The AgentPoolManager owns the agents; it reaches retirement and routing through {@link AutoscalerHost}.
 */
import type { TypedEmitter } from '../util/typed-emitter.js';
import type { PoolEvents } from './events.js';
import type { PressureLevel } from '../resources/pressure.js';
import type { TrackedTimer } from '../resources/disposables.js';
import type { ResourceManager } from '../resources/resource-manager.js';
import type { Clock } from '../util/timers.js';
import type { AgentRecord } from './agent-record.js';
import type { AgentCreator, CreationKind, CreationReason } from './creation.js';
import type { Pool, WaitingDemand } from './pool.js';

/** What the autoscaler needs of the AgentPoolManager. */
export interface AutoscalerHost {
  /** Whether the manager is running (started, not stopping). */
  isRunning(): boolean;
  /** Drains, disposes and removes an agent (idempotent per agent). */
  retire(record: AgentRecord): Promise<void>;
  /** A promoted spare became routable: tell the routing listener. */
  agentRoutable(record: AgentRecord): void;
  /** The routing listener's waiting demand, or `undefined` with no listener. */
  waitingDemand(): Iterable<WaitingDemand> | undefined;
}

export interface AutoscalerOptions {
  /** The declared pools by role, in declaration order. */
  readonly pools: ReadonlyMap<string, Pool>;
  /** The same pools ordered by how few capabilities they have: scale the most specialised pool first. */
  readonly poolsBySpecificity: readonly Pool[];
  readonly scaleIntervalMs: number;
  readonly clock: Clock;
  readonly events: TypedEmitter<PoolEvents>;
  /** Pressure and the scale ticker. */
  readonly resources: ResourceManager;
  readonly creator: AgentCreator;
  readonly host: AutoscalerHost;
}

type ScaledReason = PoolEvents['pool:scaled']['reason'];

const noop = (): void => {};

/** Decides when the pools grow and shrink; the AgentCreator makes the agents, the manager retires them. */
export class Autoscaler {
  readonly #pools: ReadonlyMap<string, Pool>;
  readonly #poolsBySpecificity: readonly Pool[];
  readonly #scaleIntervalMs: number;
  readonly #clock: Clock;
  readonly #events: TypedEmitter<PoolEvents>;
  readonly #resources: ResourceManager;
  readonly #creator: AgentCreator;
  readonly #host: AutoscalerHost;
  /** The one scale ticker of every pool (unref'd, tracked by the ResourceManager). */
  readonly #ticker: TrackedTimer;

  constructor(options: AutoscalerOptions) {
    this.#pools = options.pools;
    this.#poolsBySpecificity = options.poolsBySpecificity;
    this.#scaleIntervalMs = options.scaleIntervalMs;
    this.#clock = options.clock;
    this.#events = options.events;
    this.#resources = options.resources;
    this.#creator = options.creator;
    this.#host = options.host;
    this.#resources.onPressure((level) => this.#onPressure(level));
    this.#ticker = this.#resources.disposables.timer(() => this.#tick());
  }

  /** Arms the next scale pass (while the manager runs and has pools). */
  scheduleTick(): void {
    if (!this.#host.isRunning() || this.#pools.size === 0) return;
    this.#ticker.arm(this.#scaleIntervalMs);
  }

  /** Stops the scale ticker for good. */
  stop(): void {
    this.#ticker.dispose();
  }

  /** Whether a pool's recovery budget is spent: it makes no agents until its suspension ends. */
  suspended(pool: Pool): boolean {
    return pool.suspendedUntil !== 0 && this.#clock.now() < pool.suspendedUntil;
  }

  /**
   * Grows the most specialised pool that can serve `requires`, promoting a spare at once or starting a creation.
   * Returns whether more capacity is coming.
   */
  requestCapacity(requires: readonly string[], waiting: number): boolean {
    if (!this.#host.isRunning()) return false;
    // Under pressure a spare (already made) may still be promoted, but nothing new is created.
    const mayCreate = this.#resources.pressure === 'normal';
    for (const pool of this.#poolsBySpecificity) {
      if (!pool.holdsAll(requires)) continue;
      if (this.promoteSpare(pool, 'demand')) return true;
      if (pool.creatingMembers * pool.options.concurrency >= waiting) return true;
      // Even under pressure a pool keeps one agent for the work it accepted: tasks must not wait forever on none.
      // (`liveMembers` walks the pool: only asked under pressure, never on the normal path.)
      const allowed = mayCreate || (pool.creatingMembers === 0 && pool.liveMembers === 0);
      if (allowed && pool.hasRoom && !this.suspended(pool)) {
        this.#creator.start(pool, 'member', 'demand').catch(() => {}); // reported as pool:create-failed
        return true;
      }
    }
    return false;
  }

  /** Moves a warm spare into routing (and refills the spares in the background); `undefined` with none. */
  promoteSpare(pool: Pool, reason: 'demand' | 'spawn' | 'replace'): AgentRecord | undefined {
    const record = pool.spares.shift();
    if (!record) return undefined;
    pool.members.add(record);
    record.parked = false;
    if (record.routable) this.#host.agentRoutable(record);
    this.#emitScaled(pool, reason);
    if (this.#host.isRunning()) void this.fillSpares(pool); // each creation reports its own failure
    return record;
  }

  /** Starts creations until the pool holds its warm spares (not under pressure, nor while suspended). */
  fillSpares(pool: Pool): Promise<AgentRecord>[] {
    const started: Promise<AgentRecord>[] = [];
    // Spares are a luxury: under pressure they are shed, not refilled.
    if (this.#resources.pressure !== 'normal' || this.suspended(pool)) return started;
    while (pool.spares.length + pool.creatingSpares < pool.options.warmSpares && pool.hasRoom) {
      const p = this.#creator.start(pool, 'spare', 'demand');
      p.catch(() => {}); // reported as pool:create-failed; a missing spare only makes spawn slower
      started.push(p);
    }
    return started;
  }

  /** Tops a pool back up to its minimum (spares first), then refills its spares. */
  ensureMinimum(pool: Pool): void {
    if (this.suspended(pool)) return;
    let deficit = pool.options.minAgents - pool.liveMembers - pool.creatingMembers;
    while (deficit-- > 0) {
      if (this.promoteSpare(pool, 'replace')) continue;
      if (!pool.hasRoom) break;
      this.#creator.start(pool, 'member', 'replace').catch(() => {}); // reported as pool:create-failed
    }
    void this.fillSpares(pool); // each creation reports its own failure
  }

  /** A creation placed its agent: a member is reported; a spare made while pressure came is shed at once. */
  created(pool: Pool, kind: CreationKind, reason: CreationReason, record: AgentRecord): void {
    if (kind === 'member') this.#emitScaled(pool, reason);
    else if (this.#resources.pressure !== 'normal') this.#shedSpare(pool, record); // pressure came while it was made
  }

  #emitScaled(pool: Pool, reason: ScaledReason): void {
    this.#events.emit('pool:scaled', {
      role: pool.role,
      members: pool.members.size,
      spares: pool.spares.length,
      reason,
    });
  }

  /** Under pressure: shed the warm spares and the idle members above the minimum at once. Back to normal: refill. */
  #onPressure(level: PressureLevel): void {
    if (!this.#host.isRunning()) return;
    for (const pool of this.#pools.values()) {
      if (level === 'normal') this.ensureMinimum(pool);
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
        this.#host.retire(m).then(() => this.#emitScaled(pool, 'pressure'), noop);
      }
    }
  }

  /** Retires a warm spare; out of the spare list first, so nothing promotes a spare that is on its way out. */
  #shedSpare(pool: Pool, spare: AgentRecord): void {
    const i = pool.spares.indexOf(spare);
    if (i < 0) return;
    pool.spares.splice(i, 1);
    this.#host.retire(spare).then(() => this.#emitScaled(pool, 'pressure'), noop);
  }

  /** One pass over the pools: retire idle agents above the minimum, then top pools back up. */
  #tick(): void {
    const now = this.#clock.now();
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
          this.#host.retire(m).then(() => this.#emitScaled(pool, 'idle'), noop);
        }
      }
      this.ensureMinimum(pool);
    }
    // Demand whose creation failed is not asked for again by a new task; ask on every tick instead.
    const demand = this.#host.waitingDemand();
    if (demand) for (const d of demand) this.requestCapacity(d.requires, d.waiting);
    this.scheduleTick();
  }
}
