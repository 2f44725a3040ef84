/**
 * HealthMonitor: runs agents' `healthCheck()` on an interval with its own timeout, finds stuck agents (a given-up
 * attempt that never returned), replaces failing pool agents within a recovery budget, judges SLA windows, and
 * answers `health()`. It observes through events and the small surfaces of the pool manager and resources.
 */
import type { Clock } from '../util/timers.js';
import type { ResolvedHealthOptions } from './options.js';
import type { EngineEvents } from '../engine/events.js';
import type { PoolEvents } from '../pool/events.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import type { HealthEvents } from './events.js';

/** The events the health part hears and emits. */
type Events = EngineEvents & PoolEvents & HealthEvents;
import type { AgentPoolManager } from '../pool/agent-pool-manager.js';
import type { AgentRecord } from '../pool/agent-record.js';
import type { TrackedTimer } from '../resources/disposables.js';
import type { ResourceManager } from '../resources/resource-manager.js';
import { SlaWindows, type SlaBreach } from './sla.js';

/** Lifecycle of the orchestrator itself. It runs once: `stopped` is final. */
export type OrchestratorState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * `healthy`: all is well. `degraded`: working, with something to look at (a halt, a quarantined agent, an open
 * breaker, pressure, an SLA breach, a nearly full queue, a store that fails writes). `unhealthy`: it cannot recover by itself (stopping or
 * stopped, a pool below its minimum with its recovery budget spent, or a bridge that says so).
 */
export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy';

/** One pool's part of {@link HealthReport}. */
export interface PoolHealth {
  /**
   * `unhealthy` when below its minimum with its recovery budget spent; `degraded` when below its minimum, with a
   * quarantined agent, or while the orchestrator is not running; `healthy` otherwise.
   */
  readonly status: HealthStatus;
  /** The pool's `minAgents`, which `routable` is compared with. */
  readonly minAgents: number;
  /** Members that can be routed to now (IDLE or BUSY). */
  readonly routable: number;
  /** Members quarantined (UNHEALTHY). */
  readonly quarantined: number;
  /** Replacements and failed creations in the current recovery window. */
  readonly recoveries: number;
  /** Recovery budget spent: the pool makes no agents until then (ms from now); 0 when it may. */
  readonly suspendedForMs: number;
}

/** The store's part of {@link HealthReport}, present only when a `store` is configured. */
export interface StoreHealth {
  /**
   * `degraded` while the store fails writes, lease renewals or claims (durable submits are refused with
   * STORE_UNAVAILABLE, running tasks go on and their events are buffered), and while due runs wait that no node took
   * for `durability.unclaimedAfterMs` (no node that can serve them is up); `healthy` otherwise. Never `unhealthy`:
   * the node keeps running its tasks, and restarting it would not help.
   */
  readonly status: HealthStatus;
  /** The store's kind: `memory`, `pglite` or `postgres`. */
  readonly kind: string;
  /** Whether the store answers (the last write or lease renewal worked). */
  readonly available: boolean;
  /** The last store error (kept after the store is back, until the next one), or `null`. */
  readonly lastError: string | null;
  /** Events waiting to be written to the store. */
  readonly buffered: number;
  /** Progress events dropped since start because the buffer (`durability.maxBufferedEvents`) was full. */
  readonly eventsDropped: number;
  /** What the store's status comes to, in words. */
  readonly detail: string;
}

/**
 * The readiness rule of `/readyz` and `orchestrator.ready()`: traffic only while running (not before `start()`
 * resolved, not while stopping) and not unhealthy. Degraded (an SLA breach, a halt, a full queue) is still ready.
 */
export function isReady(report: HealthReport): boolean {
  return report.components.orchestrator.state === 'running' && report.status !== 'unhealthy';
}

/** What `orchestrator.health()` returns. */
export interface HealthReport {
  /** The worst status of the components. */
  readonly status: HealthStatus;
  /** Each component's status and the figures it was judged on. */
  readonly components: {
    /** `halted`: the reason of the halt holding its work (degraded meanwhile), or `null`. */
    readonly orchestrator: {
      /** `unhealthy` when stopping or stopped, `healthy` when running and not halted, `degraded` otherwise. */
      readonly status: HealthStatus;
      /** Its lifecycle state. */
      readonly state: OrchestratorState;
      /** The reason of the halt holding its work, or `null`. */
      readonly halted: string | null;
    };
    /** Each declared pool's health, by role. */
    readonly pools: Readonly<Record<string, PoolHealth>>;
    /** The waiting queue. */
    readonly queue: {
      /** `degraded` from 80% of `maxQueueSize` (where work is about to be refused), else `healthy`. */
      readonly status: HealthStatus;
      /** Tasks waiting now. */
      readonly waiting: number;
      /** The `maxQueueSize` option. */
      readonly maxQueueSize: number;
    };
    /** Circuit breakers of agents and dependencies. */
    readonly breakers: {
      /** `degraded` while any breaker is open, else `healthy`. */
      readonly status: HealthStatus;
      /** Agent breakers open now. */
      readonly agentsOpen: number;
      /** Names of the dependency breakers open now. */
      readonly dependenciesOpen: readonly string[];
    };
    /** Memory and CPU pressure. */
    readonly pressure: {
      /** `degraded` unless the level is `normal`. */
      readonly status: HealthStatus;
      /** The pressure level (a {@link PressureLevel}). */
      readonly level: string;
    };
    /** SLA windows. */
    readonly sla: {
      /** `degraded` while any threshold is breached, else `healthy`. */
      readonly status: HealthStatus;
      /** The breaches in force, as of the last evaluation. */
      readonly breaches: ReadonlyArray<Omit<SlaBreach, 'figures'>>;
    };
    /** The bridge to the other nodes. */
    readonly bridge: {
      /** The bridge's own status (`degraded` while Redis reconnects, for example). */
      readonly status: HealthStatus;
      /** The bridge's kind: `memory` or `redis`. */
      readonly kind: string;
      /** What the bridge says about its status. */
      readonly detail: string;
    };
    /** The store of durable runs; absent when no `store` is configured. */
    readonly store?: StoreHealth;
  };
}

/** What the monitor reads from the orchestrator itself. */
export interface HealthSource {
  state(): OrchestratorState;
  /** The reason of the halt holding the work, or `null`. */
  halted(): string | null;
  queue(): { readonly waiting: number; readonly maxQueueSize: number };
  bridge(): { readonly kind: string; readonly status: HealthStatus; readonly detail: string };
  /** The durable layer's state, or `undefined` without a store. */
  store?(): StoreState | undefined;
}

/** What the monitor reads from the durable layer (the fields of its `stats()` it judges). */
export interface StoreState {
  readonly store: string;
  readonly available: boolean;
  readonly lastError: string | null;
  readonly buffered: number;
  readonly eventsDropped: number;
  /** Due runs no node took for a while (see `durability.unclaimedAfterMs`), by type and requirements. */
  readonly unclaimed?: readonly {
    readonly type: string;
    readonly requires: readonly string[];
    readonly count: number;
  }[];
}

/** The store's component of the report, from its state. */
function storeHealth(s: StoreState): StoreHealth {
  const waiting = `${s.buffered} event${s.buffered === 1 ? '' : 's'} waiting to be written`;
  const dropped = s.eventsDropped > 0 ? `, ${s.eventsDropped} progress events dropped since start` : '';
  const unclaimed = s.unclaimed ?? [];
  const stuck =
    unclaimed.length === 0
      ? ''
      : `; runs no node took: ${unclaimed
          .slice(0, 5)
          .map((u) => `${u.count} × ${u.type} [${u.requires.join(', ')}]`)
          .join(', ')} (start a node that serves them: agents with those capabilities, or the workflow's version)`;
  const detail = s.available
    ? `${s.store} store answering; ${waiting}${dropped}${stuck}`
    : `${s.store} store failing: ${s.lastError ?? 'unknown error'}; durable submits are refused with ` +
      `STORE_UNAVAILABLE, running tasks go on; ${waiting}${dropped}${stuck}`;
  return {
    status: s.available && unclaimed.length === 0 ? 'healthy' : 'degraded',
    kind: s.store,
    available: s.available,
    lastError: s.lastError,
    buffered: s.buffered,
    eventsDropped: s.eventsDropped,
    detail,
  };
}

const RANK: Record<HealthStatus, number> = { healthy: 0, degraded: 1, unhealthy: 2 };
const worst = (...s: HealthStatus[]): HealthStatus => s.reduce((a, b) => (RANK[b] > RANK[a] ? b : a), 'healthy');

/** A queue this full is reported degraded: work is about to be refused. */
const QUEUE_DEGRADED_AT = 0.8;

/**
 * Runs agents' health checks, finds stuck agents, replaces failing pool agents within the recovery budget, judges
 * SLA windows and builds the health report. The orchestrator builds it and keeps it private; it is reached through
 * `orchestrator.health()` and `orchestrator.checkHealth()`.
 */
export class HealthMonitor {
  readonly #options: ResolvedHealthOptions;
  readonly #pools: AgentPoolManager;
  readonly #resources: ResourceManager;
  readonly #events: TypedEmitter<Events>;
  readonly #clock: Clock;
  readonly #source: HealthSource;
  readonly #sla: SlaWindows;
  readonly #timer: TrackedTimer;
  /** Per pool role, clock times of replacements and failed creations in the recovery window. */
  readonly #spent = new Map<string, number[]>();
  readonly #suspendedUntil = new Map<string, number>();
  #running = false;
  #pass: Promise<void> | undefined;

  constructor(
    options: ResolvedHealthOptions,
    deps: {
      pools: AgentPoolManager;
      resources: ResourceManager;
      events: TypedEmitter<Events>;
      clock: Clock;
      source: HealthSource;
    },
  ) {
    this.#options = options;
    this.#pools = deps.pools;
    this.#resources = deps.resources;
    this.#events = deps.events;
    this.#clock = deps.clock;
    this.#source = deps.source;
    this.#sla = new SlaWindows(options.sla);
    const { disposables } = deps.resources;
    this.#timer = disposables.timer(() => void this.check().finally(() => this.#schedule()));
    disposables.add(() => (this.#running = false));
    const listen = <E extends keyof Events>(event: E, fn: (p: Events[E]) => void): void =>
      void disposables.listen(this.#events, event, fn);
    if (options.sla.default !== undefined || options.sla.types.size > 0) {
      listen('task:completed', (e) => {
        if (this.#sla.judges(e.type)) this.#sla.record(e.type, e.latencyMs, true, this.#clock.now());
      });
      listen('task:failed', (e) => {
        if (e.outcome !== 'cancelled' && this.#sla.judges(e.type))
          this.#sla.record(e.type, e.latencyMs, false, this.#clock.now());
      });
    }
    // A factory that keeps failing spends the recovery budget too: that is what stops a crash loop.
    listen('pool:create-failed', (e) => {
      if (!e.willRetry && this.#running) this.#spend(e.role, this.#clock.now());
    });
  }

  /** Starts the periodic checks. */
  start(): void {
    this.#running = true;
    this.#schedule();
  }

  /**
   * One pass now: stuck agents, health checks, recovery, SLA windows. Passes never overlap: a call during a pass
   * returns that pass.
   */
  check(): Promise<void> {
    this.#pass ??= this.#checkAll().finally(() => (this.#pass = undefined));
    return this.#pass;
  }

  /** `healthy | degraded | unhealthy`, with the detail of each component. */
  report(): HealthReport {
    const now = this.#clock.now();
    const state = this.#source.state();
    const halted = this.#source.halted();
    const orchestrator = {
      status:
        state === 'stopping' || state === 'stopped'
          ? 'unhealthy'
          : state === 'running' && halted === null
            ? 'healthy'
            : 'degraded',
      state,
      halted,
    } as const;
    const pools: Record<string, PoolHealth> = {};
    for (const p of this.#pools.pools()) {
      const routable = this.#pools.healthyMembers(p.role);
      const quarantined = p.states['UNHEALTHY'] ?? 0;
      const until = this.#suspendedUntil.get(p.role) ?? 0;
      const suspendedForMs = until > now ? Math.ceil(until - now) : 0;
      const below = routable < p.minAgents;
      const status: HealthStatus =
        state !== 'running'
          ? 'degraded'
          : below && suspendedForMs > 0
            ? 'unhealthy'
            : below || quarantined > 0
              ? 'degraded'
              : 'healthy';
      pools[p.role] = {
        status,
        minAgents: p.minAgents,
        routable,
        quarantined,
        recoveries: this.#recent(p.role, now).length,
        suspendedForMs,
      };
    }
    const q = this.#source.queue();
    const queue = {
      status: q.waiting >= q.maxQueueSize * QUEUE_DEGRADED_AT && q.waiting > 0 ? 'degraded' : 'healthy',
      ...q,
    } as const;
    const r = this.#resources.stats();
    const dependenciesOpen = Object.entries(r.breakers.dependencies)
      .filter(([, s]) => s === 'open')
      .map(([n]) => n);
    const agentsOpen = r.breakers.agents.open;
    const breakers = {
      status: agentsOpen > 0 || dependenciesOpen.length > 0 ? 'degraded' : 'healthy',
      agentsOpen,
      dependenciesOpen,
    } as const;
    const pressure = {
      status: r.pressure.level === 'normal' ? 'healthy' : 'degraded',
      level: r.pressure.level,
    } as const;
    const breaches = this.#sla.breaches().map(({ figures: _figures, ...b }) => b);
    const sla = { status: breaches.length > 0 ? 'degraded' : 'healthy', breaches } as const;
    const bridge = this.#source.bridge();
    const stored = this.#source.store?.();
    const store = stored ? storeHealth(stored) : undefined;
    const status = worst(
      orchestrator.status,
      ...Object.values(pools).map((p) => p.status),
      queue.status,
      breakers.status,
      pressure.status,
      sla.status,
      bridge.status,
      store?.status ?? 'healthy',
    );
    return {
      status,
      components: { orchestrator, pools, queue, breakers, pressure, sla, bridge, ...(store ? { store } : {}) },
    };
  }

  #schedule(): void {
    if (this.#running) this.#timer.arm(this.#options.checkIntervalMs);
  }

  async #checkAll(): Promise<void> {
    const now = this.#clock.now();
    this.#resumePools(now);
    const agents = [...this.#pools.agents()];
    const checks: Promise<void>[] = [];
    for (const agent of agents) {
      const { state } = agent;
      const stuck = agent.late > 0 && now - agent.lateSince >= this.#options.stuckAfterMs;
      if (state === 'DRAINING' && stuck && this.#pools.isPoolAgent(agent)) {
        // Draining (already being replaced) and waiting on an attempt that will never return: it would hold its place
        // in the pool for ever. Its drain ends now; its replacement was paid for when the drain began.
        if (!agent.unhealthy)
          this.#events.emit('agent:unhealthy', {
            agentId: agent.id,
            role: agent.role,
            reason: 'stuck',
            error: new Error(
              `Agent ${agent.id} is draining and has had an attempt given up on for ${Math.round(now - agent.lateSince)} ms that never returned`,
            ),
          });
        this.#pools.replace(agent, true).catch(() => {});
        continue;
      }
      if (state === 'INITIALIZING' || state === 'DRAINING' || state === 'TERMINATED' || state === 'FAILED') continue;
      if (stuck) {
        const error = new Error(
          `Agent ${agent.id} has had an attempt given up on for ${Math.round(now - agent.lateSince)} ms that never returned`,
        );
        this.#failed(agent, 'stuck', error);
        continue;
      }
      checks.push(this.#checkOne(agent));
    }
    await Promise.all(checks);
    if (!this.#running) return;
    const { violations, recoveries } = this.#sla.evaluate(this.#clock.now());
    for (const v of violations) this.#events.emit('sla:violation', this.#slaEvent(v));
    for (const r of recoveries) this.#events.emit('sla:recovered', this.#slaEvent(r));
  }

  async #checkOne(agent: AgentRecord): Promise<void> {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- read once, called below as check.call(agent.agent)
    const check = agent.agent.healthCheck;
    if (typeof check !== 'function') {
      // Nothing to ask: an agent quarantined as stuck is healthy again once it is no longer stuck (this pass saw that).
      if (this.#pools.markHealthy(agent) && agent.routable)
        this.#events.emit('agent:recovered', { agentId: agent.id, role: agent.role });
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    let error: unknown;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`healthCheck() did not settle within ${this.#options.checkTimeoutMs} ms`)),
          this.#options.checkTimeoutMs,
        );
      });
      const healthy = await Promise.race([Promise.resolve().then(() => check.call(agent.agent)), timeout]);
      if (healthy === false) error = new Error(`healthCheck() of agent ${agent.id} returned false`);
    } catch (e) {
      error = e;
    } finally {
      clearTimeout(timer);
    }
    // The agent may have left (or the orchestrator stopped) while its check ran.
    if (!this.#running || this.#pools.get(agent.id) !== agent) return;
    if (error !== undefined) this.#failed(agent, 'health-check', error);
    else if (this.#pools.markHealthy(agent) && agent.routable)
      this.#events.emit('agent:recovered', { agentId: agent.id, role: agent.role });
  }

  /** A failing or stuck agent: replaced if it belongs to a pool with budget left, quarantined otherwise. */
  #failed(agent: AgentRecord, reason: 'health-check' | 'stuck', error: unknown): void {
    const fresh = !agent.unhealthy;
    if (fresh) this.#events.emit('agent:unhealthy', { agentId: agent.id, role: agent.role, reason, error });
    const pool = this.#pools.isPoolAgent(agent) ? agent.role : undefined;
    if (pool === undefined || !this.#spend(pool, this.#clock.now())) {
      this.#pools.markUnhealthy(agent);
      return;
    }
    this.#events.emit('agent:replaced', { agentId: agent.id, role: agent.role, reason });
    // Background work: the retirement's own failures (dispose) are reported as agent:error.
    this.#pools.replace(agent, reason === 'stuck').catch(() => {});
  }

  /** Spends one unit of a pool's recovery budget; false (and the pool suspended) when it is spent. */
  #spend(role: string, now: number): boolean {
    const recent = this.#recent(role, now);
    const { maxReplacements, windowMs } = this.#options.recovery;
    if (recent.length >= maxReplacements) {
      if (!this.#suspendedUntil.has(role)) {
        const until = (recent[0] ?? now) + windowMs;
        this.#suspendedUntil.set(role, until);
        this.#pools.suspend(role, until);
        this.#events.emit('pool:recovery-exhausted', {
          role,
          replacements: recent.length,
          windowMs,
          resumeInMs: Math.max(0, Math.ceil(until - now)),
        });
      }
      return false;
    }
    recent.push(now);
    return true;
  }

  #recent(role: string, now: number): number[] {
    let list = this.#spent.get(role);
    if (!list) this.#spent.set(role, (list = []));
    const from = now - this.#options.recovery.windowMs;
    while (list.length > 0 && list[0]! <= from) list.shift();
    return list;
  }

  #resumePools(now: number): void {
    for (const [role, until] of this.#suspendedUntil) {
      if (now < until) continue;
      this.#suspendedUntil.delete(role);
      this.#pools.suspend(role, 0);
    }
  }

  #slaEvent(b: SlaBreach): Events['sla:violation'] {
    const f = b.figures;
    return {
      type: b.type,
      metric: b.metric,
      value: b.value,
      threshold: b.threshold,
      count: f.count,
      errors: f.errors,
      errorRate: f.errorRate,
      p50Ms: f.p50Ms,
      p95Ms: f.p95Ms,
      p99Ms: f.p99Ms,
      windowMs: this.#options.sla.windowMs,
    };
  }
}
