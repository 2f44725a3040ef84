/**
 * UnifiedOrchestrator: the public entry point. It checks its inputs, builds and wires the parts
 * (pools → engine), and runs start and stop in order. The machinery lives in private fields.
 */
import {
  expectString,
  resolveOrchestratorOptions,
  resolveStopOptions,
  STOP_ABORT_GRACE_MS,
  type OrchestratorOptions,
  type ResolvedOrchestratorOptions,
  type StopOptions,
} from './config.js';
import type { DeadLetter } from './engine/dead-letter.js';
import { TaskExecutionEngine, type EngineStats } from './engine/task-execution-engine.js';
import type { Task, TaskHandle } from './engine/task.js';
import { OrchestratorStoppedError } from './errors.js';
import { TypedEmitter, type OrchestratorEventName, type OrchestratorEvents, type OrchestratorListener } from './events.js';
import type { Agent } from './pool/agent.js';
import { AgentPoolManager, type RegisterAgentOptions } from './pool/agent-pool-manager.js';
import type { AgentSnapshot } from './pool/agent-record.js';
import type { AgentState } from './pool/agent-state.js';
import type { PoolSnapshot } from './pool/pool.js';
import { ResourceManager, type ResourceStats } from './resources/resource-manager.js';
import { HealthMonitor, type HealthReport } from './health/health-monitor.js';
import { createHttpHandler } from './health/http-handler.js';
import { OrchestratorMetrics } from './health/metrics.js';
import { startTracing } from './health/tracing.js';
import type { RequestListener } from 'node:http';
import type { CommunicationBridge, ControlMessage, NodeInfo } from './bridge/bridge.js';
import { bridgeHost, handOffId, toWire } from './bridge/bridge-host.js';
import { MemoryBridge } from './bridge/memory-bridge.js';
import { NoCapableAgentError } from './errors.js';

const noop = (): void => {};

/** Lifecycle of the orchestrator itself. */
export type OrchestratorState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

/** What `stats()` returns: task counters, queue depths, agents and pools. */
export interface OrchestratorStats extends EngineStats {
  readonly state: OrchestratorState;
  /** Agents by lifecycle state (warm spares count as IDLE). */
  readonly agents: Readonly<Record<AgentState, number>>;
  readonly pools: readonly PoolSnapshot[];
  /** Waiting tasks per requirement class, keyed by the capabilities joined with `+` (`*` for none). */
  readonly queues: Readonly<Record<string, number>>;
  /** Breakers, pressure, rate limits and tracked handles. */
  readonly resources: ResourceStats;
}

/**
 * Runs a fleet of agents in-process: warm pools per role, capability routing, priority queues, retries.
 *
 * @example
 * ```ts
 * const orchestrator = new UnifiedOrchestrator({
 *   pools: [{ role: 'writer', capabilities: ['text'], create: async () => new WriterAgent() }],
 * });
 * await orchestrator.start();
 * const summary = await orchestrator.submit<string>({ type: 'summarise', requires: ['text'], payload: doc });
 * await orchestrator.stop();
 * ```
 */
export class UnifiedOrchestrator {
  readonly #options: ResolvedOrchestratorOptions;
  readonly #events = new TypedEmitter<OrchestratorEvents>();
  readonly #pools: AgentPoolManager;
  readonly #engine: TaskExecutionEngine;
  readonly #resources: ResourceManager;
  readonly #health: HealthMonitor;
  readonly #metrics: OrchestratorMetrics | undefined;
  readonly #bridge: CommunicationBridge;
  #bridgeStarted = false;
  #handOffSeq = 0;
  /** Results of tasks this node handed to others, not yet settled. */
  readonly #remote = new Set<Promise<unknown>>();
  #tracing = false;
  #state: OrchestratorState = 'created';
  #startPromise: Promise<void> | undefined;
  #stopPromise: Promise<void> | undefined;

  /** Validates every option at once; throws ValidationError naming the first wrong field. */
  constructor(options: OrchestratorOptions = {}) {
    this.#options = resolveOrchestratorOptions(options);
    this.#resources = new ResourceManager(this.#options, this.#events);
    this.#pools = new AgentPoolManager({
      pools: this.#options.pools,
      scaleIntervalMs: this.#options.scaleIntervalMs,
      clock: this.#options.clock,
      events: this.#events,
      resources: this.#resources,
    });
    this.#engine = new TaskExecutionEngine(this.#options, this.#pools, this.#events, this.#resources);
    this.#pools.setRoutingListener(this.#engine);
    this.#health = new HealthMonitor(this.#options.health, {
      pools: this.#pools,
      resources: this.#resources,
      events: this.#events,
      clock: this.#options.clock,
      source: {
        state: () => this.#state,
        queue: () => ({ waiting: this.#engine.stats().waiting, maxQueueSize: this.#options.maxQueueSize }),
        bridge: () => ({ kind: this.#bridge.kind, ...this.#bridge.status() }),
      },
    });
    this.#bridge = this.#options.bridge ?? new MemoryBridge();
    this.#metrics = this.#options.metrics === false ? undefined : this.#newMetrics(this.#options.metrics);
    if (this.#metrics) this.#engine.observe(this.#metrics);
  }

  get state(): OrchestratorState {
    return this.#state;
  }

  /**
   * Circuit breakers for the host's own dependencies (`resources.breaker(name, fn)`), memory/CPU pressure,
   * tenant budgets and rate limits.
   */
  get resources(): ResourceManager {
    return this.#resources;
  }

  /**
   * Pre-warms every pool to its minimum (plus its warm spares) and opens for work. Idempotent.
   * Rejects with AgentCreationError when a pool cannot reach its minimum; the orchestrator is then stopped.
   */
  start(): Promise<void> {
    this.#startPromise ??= this.#start();
    return this.#startPromise;
  }

  async #start(): Promise<void> {
    if (this.#state !== 'created') throw new OrchestratorStoppedError('The orchestrator was stopped before it started');
    this.#state = 'starting';
    try {
      // The first pressure sample comes before pre-warming: a host already short of memory should not grow pools.
      await this.#resources.start();
      // Loading @opentelemetry/api (if installed) overlaps pre-warming; tracing is on before the first task.
      const tracing = startTracing(this.#events, this.#resources.disposables, this.#options.tracing).catch(() => false);
      await Promise.all([this.#pools.start(), tracing]);
      this.#tracing = await tracing;
    } catch (error) {
      await this.stop({ drain: false });
      throw error;
    }
    if (this.#state !== 'starting') throw new OrchestratorStoppedError('The orchestrator was stopped while starting');
    this.#state = 'running';
    this.#engine.open();
    try {
      await this.#bridge.start(
        bridgeHost({
          nodeId: this.#bridge.nodeId,
          retry: this.#resources.retry,
          engine: this.#engine,
          pools: this.#pools,
          control: (message) => this.#events.emit('bridge:control', message),
          state: (status) => this.#events.emit('bridge:state', status),
        }),
      );
      this.#bridgeStarted = true;
    } catch (error) {
      await this.stop({ drain: false });
      throw error;
    }
    this.#health.start();
    let agents = 0;
    for (const p of this.#pools.pools()) agents += p.members;
    this.#events.emit('started', { pools: this.#pools.roles.length, agents });
  }

  /**
   * Stops: refuses new work at once, drains (or cancels) accepted tasks, disposes every agent and releases every
   * timer, so the process can exit on its own. Idempotent: later calls return the first call's promise (their
   * options are ignored). Bad options reject with ValidationError.
   */
  stop(options?: StopOptions): Promise<void> {
    let resolved: { drain: boolean; timeoutMs: number };
    try {
      resolved = resolveStopOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    // Only the first call's options count; later calls share its promise.
    this.#stopPromise ??= this.#stop(resolved.drain, resolved.timeoutMs);
    return this.#stopPromise;
  }

  async #stop(drain: boolean, timeoutMs: number): Promise<void> {
    this.#state = 'stopping';
    this.#events.emit('stopping', { drain });
    const { clock } = this.#options;
    const startedAt = clock.now();
    const before = this.#engine.stats().completed;
    const cancelled = await this.#engine.stop(drain, timeoutMs);
    if (drain && this.#remote.size > 0) {
      // Results of tasks handed to other nodes, within what is left of the timeout (the bridge rejects the rest).
      let timer: NodeJS.Timeout | undefined;
      const left = Math.max(0, timeoutMs - (clock.now() - startedAt));
      await Promise.race([
        Promise.allSettled([...this.#remote]),
        new Promise<void>((resolve) => {
          if (Number.isFinite(left)) timer = setTimeout(resolve, left);
        }),
      ]);
      clearTimeout(timer);
    }
    // Handed-off tasks served here have finished (or been left for another node); leave the cluster.
    if (this.#bridgeStarted) await this.#bridge.stop().catch(() => {});
    const left = Math.max(0, timeoutMs - (clock.now() - startedAt));
    await this.#pools.stop(drain ? left : Math.min(left, STOP_ABORT_GRACE_MS));
    this.#resources.stop();
    this.#state = 'stopped';
    this.#events.emit('stopped', { completedWhileDraining: this.#engine.stats().completed - before, cancelled });
  }

  /**
   * Runs a task on an agent holding every capability in `task.requires` and resolves with its result.
   * Rejects with the agent's error, TaskTimeoutError, TaskCancelledError, TaskDeadLetteredError, or — when the
   * task is refused — ValidationError, NoCapableAgentError, QueueFullError or OrchestratorStoppedError.
   * An accepted task's promise never raises an unhandled rejection, however late its handler is attached;
   * every failure is also a `task:failed` event.
   */
  submit<TResult = unknown>(task: Task): Promise<TResult> {
    try {
      const remote = this.#remoteOnly(task);
      if (remote) return remote.result as Promise<TResult>;
      return this.#engine.submit(task) as Promise<TResult>;
    } catch (error) {
      const remote = this.#handOff(task, error);
      if (remote) return remote.result as Promise<TResult>;
      return Promise.reject(error);
    }
  }

  /**
   * The fast way to the bridge for a node that cannot serve a task at all (a pure producer, say): straight to a
   * hand-off, without the engine building a refusal first.
   */
  #remoteOnly(task: Task): TaskHandle | undefined {
    if (!this.#bridgeStarted || this.#state !== 'running' || typeof task !== 'object' || task === null) return undefined;
    const requires = Object.hasOwn(task, 'requires') && Array.isArray(task.requires) ? task.requires : [];
    // Cheapest first: with no other node that could take it (always so for a lone node), nothing more to ask.
    if (!this.#bridge.canAnyServe(requires)) return undefined;
    const overflow = this.#options.handOffAbove !== Infinity && this.#engine.waitingFor(requires) >= this.#options.handOffAbove;
    if (!overflow && this.#pools.canEverServe(requires)) return undefined;
    return this.#send(task);
  }

  /**
   * A task this node cannot serve goes to a node of the cluster that can (through the bridge), when there is one:
   * its result comes back as if it had run here. Returns `undefined` to keep the local refusal.
   */
  #handOff(task: Task, refusal: unknown): TaskHandle | undefined {
    if (!(refusal instanceof NoCapableAgentError) || !this.#bridgeStarted || this.#state !== 'running') return undefined;
    const requires = Array.isArray(task.requires) ? task.requires : [];
    if (!this.#bridge.canAnyServe(requires)) return undefined;
    return this.#send(task);
  }

  /** Hands a task to the cluster; its handle's result settles when the serving node reports back. */
  #send(task: Task): TaskHandle {
    const { wire } = toWire(task, { timeoutMs: this.#options.defaultTimeoutMs, maxAttempts: this.#options.defaultMaxAttempts });
    const id = handOffId(this.#bridge.nodeId, ++this.#handOffSeq);
    const result = this.#bridge.handOff(id, wire);
    result.catch(() => {}); // handled like local results: a late handler never meets an unhandled rejection
    // Tracked so that stop({ drain }) waits for the results of what this node handed off, like for its own tasks.
    this.#remote.add(result);
    result.then(noop, noop).finally(() => this.#remote.delete(result));
    return { id, result, cancel: () => false };
  }

  /**
   * Accepts a task and returns its handle at once. Throws synchronously when the task is refused (the same
   * errors `submit` rejects with at submit time).
   *
   * @example
   * ```ts
   * const handle = orchestrator.delegate({ type: 'crawl', requires: ['web'], payload: url });
   * setTimeout(() => handle.cancel('too slow'), 5_000);
   * const page = await handle.result;
   * ```
   */
  delegate<TResult = unknown>(task: Task): TaskHandle<TResult> {
    try {
      const remote = this.#remoteOnly(task);
      if (remote) return remote as TaskHandle<TResult>;
      return this.#engine.delegate(task) as TaskHandle<TResult>;
    } catch (error) {
      const remote = this.#handOff(task, error);
      if (remote) return remote as TaskHandle<TResult>;
      throw error;
    }
  }

  /** The nodes of the cluster (this one included) with their roles, capabilities and free slots. */
  cluster(): Promise<NodeInfo[]> {
    return this.#bridge.nodes();
  }

  /** Sends a control message (halt, resume, drain, traffic, config) to every node; each gets a `bridge:control` event. */
  broadcast(message: ControlMessage): Promise<void> {
    return this.#bridge.control(message);
  }

  /** The bridge this orchestrator uses (a private MemoryBridge unless `bridge` was given). */
  get bridge(): CommunicationBridge {
    return this.#bridge;
  }

  /** Cancels a live task by id. Returns false when it already finished or is unknown. */
  cancel(taskId: string, reason?: unknown): boolean {
    return this.#engine.cancel(expectString(taskId, 'taskId'), reason);
  }

  /** Adds an agent made outside any pool; routable at once. Returns its id. */
  registerAgent(agent: Agent, options: RegisterAgentOptions): string {
    return this.#pools.registerAgent(agent, options);
  }

  /** Drains an agent (its running tasks finish), disposes it and removes it from the fleet. */
  unregisterAgent(agentId: string): Promise<void> {
    return this.#pools.unregisterAgent(agentId);
  }

  /**
   * Hands back the id of a ready agent of `role` at once (the pool's warm spare, now routable) and refills the
   * spare in the background. Without a spare it creates one; at `maxAgents` it rejects with PoolAtCapacityError.
   * A spawned agent is kept (not scaled down when idle) until it is unregistered.
   */
  spawnAgent(role: string): Promise<string> {
    return this.#pools.spawnAgent(role);
  }

  /** A snapshot of one agent, or `undefined` when no such agent is registered. */
  agent(agentId: string): AgentSnapshot | undefined {
    return this.#pools.get(agentId)?.snapshot();
  }

  /** Snapshots of every agent, warm spares included. */
  agents(): AgentSnapshot[] {
    return [...this.#pools.agents()].map((a) => a.snapshot());
  }

  /** Dead-lettered tasks with their attempt history, oldest first; optionally one tenant's only. */
  deadLetters(tenantId?: string): DeadLetter[] {
    return this.#engine.deadLetters(tenantId);
  }

  /** Resubmits a dead-lettered task under a new id and returns its handle. */
  retryDeadLetter<TResult = unknown>(taskId: string): TaskHandle<TResult> {
    return this.#engine.retryDeadLetter(expectString(taskId, 'taskId')) as TaskHandle<TResult>;
  }

  stats(): OrchestratorStats {
    return {
      state: this.#state,
      ...this.#engine.stats(),
      agents: this.#pools.countByState(),
      pools: this.#pools.pools(),
      queues: this.#engine.queueDepths(),
      resources: this.#resources.stats(),
    };
  }

  /**
   * `healthy | degraded | unhealthy`, with the detail of each component: pools (below their minimum, quarantined
   * agents, recovery budget), queue, breakers, resource pressure, SLA breaches, bridge. Unhealthy means it cannot
   * recover by itself (stopped, or a pool below its minimum with its recovery budget spent).
   */
  health(): HealthReport {
    return this.#health.report();
  }

  /** Whether tasks are traced as OpenTelemetry spans (decided at `start()`; see the `tracing` option). */
  get tracing(): boolean {
    return this.#tracing;
  }

  /** Runs the health checks, stuck detection, recovery and SLA evaluation now instead of at the next interval. */
  checkHealth(): Promise<void> {
    return this.#health.check();
  }

  /**
   * The Prometheus exposition of the orchestrator's metrics (and whatever else is on the registry), or `undefined`
   * when `metrics: false`. The registry itself is `metricsRegistry`.
   */
  metrics(): Promise<{ readonly contentType: string; readonly body: string }> | undefined {
    const m = this.#metrics;
    if (!m) return undefined;
    return m.text().then((body) => ({ contentType: m.contentType, body }));
  }

  /** The prom-client registry the metrics are on (yours when you passed one). */
  get metricsRegistry(): import('prom-client').Registry | undefined {
    return this.#metrics?.registry;
  }

  /**
   * An `http.RequestListener` serving `GET /metrics` (Prometheus text), `/healthz` (200 healthy or degraded, 503
   * unhealthy) and `/readyz` (200 once running and not unhealthy).
   *
   * @example
   * ```ts
   * import { createServer } from 'node:http';
   * createServer(orchestrator.httpHandler()).listen(9464);
   * ```
   */
  httpHandler(): RequestListener {
    return createHttpHandler({ health: () => this.health(), metrics: () => this.metrics() });
  }

  #newMetrics(options: Exclude<ResolvedOrchestratorOptions['metrics'], false>): OrchestratorMetrics {
    const engine = this.#engine;
    const pools = this.#pools;
    const resources = this.#resources;
    return new OrchestratorMetrics(
      options,
      {
        counts: () => {
          const s = engine.stats();
          return { waiting: s.waiting, running: s.running, retries: s.retries, routingCacheHits: s.routingCache.hits, routingCacheMisses: s.routingCache.misses };
        },
        agents: function* () {
          const counts = new Map<string, number>();
          for (const a of pools.agents()) {
            const key = `${a.role ?? 'none'}\u0000${a.state}`;
            counts.set(key, (counts.get(key) ?? 0) + 1);
          }
          for (const [key, count] of counts) {
            const [role, state] = key.split('\u0000') as [string, string];
            yield { role, state, count };
          }
        },
        // Healthy for the metric: at its minimum and able to recover; quarantined agents above the minimum are not an outage.
        pools: () =>
          Object.entries(this.#health.report().components.pools).map(([role, p]) => ({
            role,
            healthy: p.status !== 'unhealthy' && p.routable >= p.minAgents,
          })),
        agentBreakers: () => resources.stats().breakers.agents,
        dependencyBreakers: () => resources.stats().breakers.dependencies,
        pressure: () => resources.pressure,
        health: () => this.#health.report().status,
      },
      this.#events,
      this.#resources.disposables,
    );
  }

  on<E extends OrchestratorEventName>(event: E, listener: OrchestratorListener<E>): this {
    this.#events.on(event, listener);
    return this;
  }

  once<E extends OrchestratorEventName>(event: E, listener: OrchestratorListener<E>): this {
    this.#events.once(event, listener);
    return this;
  }

  off<E extends OrchestratorEventName>(event: E, listener: OrchestratorListener<E>): this {
    this.#events.off(event, listener);
    return this;
  }
}
