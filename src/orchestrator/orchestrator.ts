/**
 * UnifiedOrchestrator: the public entry point. It checks its inputs, builds and wires the parts
 * (pools → engine), and runs start and stop in order. The machinery lives in private fields.
 */
import type { RequestListener } from 'node:http';
import type { Registry } from 'prom-client';
import type { CommunicationBridge, ControlMessage, NodeInfo } from '../bridge/bridge.js';
import { MemoryBridge } from '../bridge/memory-bridge.js';
import { resolveOrchestratorOptions, type OrchestratorOptions, type ResolvedOrchestratorOptions } from '../config.js';
import type { DeadLetter } from '../engine/dead-letter.js';
import { TaskExecutionEngine, type EngineStats, type TaskSnapshot } from '../engine/task-execution-engine.js';
import type { Task, TaskHandle } from '../engine/task.js';
import {
  OrchestratorNotStartedError,
  OrchestratorStoppedError,
  TaskNotFoundError,
  ValidationError,
  WorkflowNotFoundError,
} from '../errors.js';
import type { OrchestratorEventName, OrchestratorEvents, OrchestratorListener } from '../events.js';
import { TypedEmitter } from '../util/typed-emitter.js';
import { AuditLog, type ActorOptions } from '../health/audit.js';
import { HealthMonitor, isReady, type HealthReport, type OrchestratorState } from '../health/health-monitor.js';
import { createHttpHandler } from '../health/http-handler.js';
import { OrchestratorMetrics } from '../health/metrics.js';
import { startTracing, TracePropagation } from '../health/tracing.js';
import { workflowMetrics } from '../health/workflow-metrics.js';
import type { Agent } from '../pool/agent.js';
import { AgentPoolManager } from '../pool/agent-pool-manager.js';
import type { AgentSnapshot } from '../pool/agent-record.js';
import type { AgentState } from '../pool/agent-state.js';
import type { RegisterAgentOptions } from '../pool/options.js';
import type { PoolSnapshot } from '../pool/pool.js';
import { ResourceManager, type ResourceStats } from '../resources/resource-manager.js';
import type { ClusterLimitsBackend } from '../resources/cluster-limits.js';
import { expectString } from '../util/validate.js';
import { checkFaithful } from '../bridge/codec.js';
import { DurableRuns, taskOfRun, type DurableStats, type DurableTaskHandle } from '../store/durable-runs.js';
import { MemoryStore } from '../store/memory-store.js';
import type { RunEvent, WorkflowHistory, RunPage, RunQuery, RunRecord, RunStore } from '../store/store.js';
import { WorkflowRunner, type WorkflowStats } from '../workflow/workflow-runner.js';
import type { ScheduleSpec } from '../workflow/schedule.js';
import { Scheduler, type ScheduleInfo, type ScheduleTarget } from '../workflow/scheduler.js';
import type {
  SendSignalOptions,
  StartWorkflowOptions,
  WorkflowFunction,
  WorkflowHandle,
  WorkflowOptions,
} from '../workflow/workflow.js';
import { ClusterLink, type ControlState } from './cluster-link.js';
import { resolveStopOptions, STOP_ABORT_GRACE_MS, type StopOptions } from './stop-options.js';

/** What `stats()` returns: task counters, queue depths, agents and pools. */
export interface OrchestratorStats extends EngineStats {
  /** The orchestrator's lifecycle state. */
  readonly state: OrchestratorState;
  /** The reason of the halt holding the work, or `null` while it runs. */
  readonly halted: string | null;
  /** Agents by lifecycle state (warm spares count as IDLE). */
  readonly agents: Readonly<Record<AgentState, number>>;
  /** One snapshot per declared pool, in declaration order. */
  readonly pools: readonly PoolSnapshot[];
  /** Waiting tasks per requirement class, keyed by the capabilities joined with `+` (`*` for none). */
  readonly queues: Readonly<Record<string, number>>;
  /** Breakers, pressure, rate limits and tracked handles. */
  readonly resources: ResourceStats;
  /** The durable layer's counts, when a `store` is configured. */
  readonly durable?: DurableStats;
  /** Workflow runs on this node, when workflows are registered or a `store` is configured. */
  readonly workflows?: WorkflowStats;
}

/**
 * The history of durable runs (`orchestrator.runs`), read from the store: from any node, and after restarts. Every
 * method takes a `tenantId` to scope it: another tenant's run then looks unknown.
 */
export interface RunHistory {
  /** One run: its status, attempts, owner, result or error. `undefined` when unknown. */
  get(id: string, options?: TenantOptions): Promise<RunRecord | undefined>;
  /** A run's timeline, oldest first: queued, started on agent X, retrying with error E, adopted, completed, … */
  events(id: string, options?: TenantOptions): Promise<RunEvent[]>;
  /**
   * A workflow run's steps (by position: name, kind, status, result or error, agent, attempts, cost, times, a wait's
   * wake time) and the signals sent to it (with their actor, and the step that consumed each). Empty for a run that
   * is not a workflow's, or unknown.
   */
  steps(id: string, options?: TenantOptions): Promise<WorkflowHistory>;
  /** Runs by tenant, type, status and creation time, newest first, a page at a time (`cursor`). */
  list(query?: RunQuery): Promise<RunPage>;
  /** Dead-lettered runs, oldest first (at most `limit`, default 100). */
  deadLetters(options?: TenantOptions & { readonly limit?: number }): Promise<RunRecord[]>;
  /**
   * Cancels a stored run wherever it runs: on this node at once; on another, its end (`cancelled`) is written to the
   * store, and the node running it aborts its attempt through `ctx.signal` when the store tells it. Resolves with
   * whether the run was live and is now cancelled (false when unknown, another tenant's, or it ended first).
   */
  cancel(id: string, options?: TenantOptions & { readonly reason?: unknown }): Promise<boolean>;
  /**
   * Runs a dead-lettered (or otherwise failed) run again as a new durable task with the same task; resolves with its
   * handle once it is stored. Rejects with TaskNotFoundError when the run is unknown or still live.
   */
  retry<TResult = unknown>(id: string, options?: TenantOptions & ActorOptions): Promise<DurableTaskHandle<TResult>>;
}

/**
 * Tenant isolation for calls about a task by id: with `tenantId`, a task of another tenant is treated as unknown
 * (not cancelled, not reported, not retried), so one tenant cannot reach another's work by guessing ids.
 */
export interface TenantOptions {
  /** The caller's tenant: only tasks submitted with this `tenantId` are found. @default none (every task) */
  readonly tenantId?: string;
}

/** The error of a durable feature used without a store. */
function noStore(feature: string): ValidationError {
  return new ValidationError(
    'options.store',
    `${feature} reads durable runs: configure a \`store\` (PostgresStore, PGliteStore or MemoryStore) to use it`,
  );
}

function tenantOf(options: TenantOptions | null | undefined): string | undefined {
  if (options === undefined || options === null) return undefined;
  const tenantId = (options as { tenantId?: unknown }).tenantId;
  return tenantId === undefined ? undefined : expectString(tenantId, 'options.tenantId');
}

/** Options of `halt()` and `resume()`. */
export interface HaltOptions {
  /** Only this node; otherwise every node of the cluster (through the bridge) and this one. @default false */
  readonly local?: boolean;
  /** Who acts, for the audit trail. @default the `audit.actor` option */
  readonly actor?: string;
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
  readonly #audit: AuditLog;
  readonly #cluster: ClusterLink;
  readonly #durable: DurableRuns | undefined;
  /** Workflow runs: the durable layer's (with a store), or on a private MemoryStore made at the first registration. */
  #workflows: WorkflowRunner | undefined;
  /** The private durable layer holding workflow runs when no `store` is configured. */
  #workflowHost: DurableRuns | undefined;
  /** Schedules: made on first use, on the store workflows use. */
  #scheduler: Scheduler | undefined;
  /** `runs`, made on first read. */
  #runs: RunHistory | undefined;
  #tracing = false;
  /** W3C trace context of hand-offs: live while tracing is on. */
  readonly #traces = new TracePropagation();
  #state: OrchestratorState = 'created';
  #startPromise: Promise<void> | undefined;
  #stopPromise: Promise<void> | undefined;

  /**
   * Validates every option at once; throws ValidationError naming the first wrong field. Nothing runs until
   * `start()`; agents may be registered before it.
   *
   * @example
   * ```ts
   * const orchestrator = new UnifiedOrchestrator({
   *   pools: [{ role: 'researcher', capabilities: ['web', 'text'], maxAgents: 20, create: () => new ResearchAgent() }],
   *   defaultMaxAttempts: 3,
   *   rateLimits: { web: { requests: 60, intervalMs: 60_000 } },
   * });
   * ```
   */
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
        halted: () => this.#cluster.halted,
        queue: () => ({ waiting: this.#engine.stats().waiting, maxQueueSize: this.#options.maxQueueSize }),
        bridge: () => ({ kind: this.#bridge.kind, ...this.#bridge.status() }),
        store: () => this.#durable?.stats(),
      },
    });
    this.#bridge = this.#options.bridge ?? new MemoryBridge();
    this.#audit = new AuditLog(this.#events, this.#options.audit, () => this.#bridge.nodeId);
    this.#cluster = new ClusterLink({
      options: this.#options,
      bridge: this.#bridge,
      engine: this.#engine,
      pools: this.#pools,
      resources: this.#resources,
      health: this.#health,
      audit: this.#audit,
      events: this.#events,
      state: () => this.#state,
      traces: this.#traces,
    });
    this.#durable = this.#options.store
      ? new DurableRuns({
          store: this.#options.store,
          options: this.#options.durability,
          engine: this.#engine,
          capabilities: () => this.#pools.capabilities(),
          taskDefaults: {
            timeoutMs: this.#options.defaultTimeoutMs,
            maxAttempts: this.#options.defaultMaxAttempts,
            maxPayloadBytes: this.#options.maxPayloadBytes,
          },
        })
      : undefined;
    this.#metrics = this.#options.metrics === false ? undefined : this.#newMetrics(this.#options.metrics);
    if (this.#metrics) this.#engine.observe(this.#metrics);
    // With a store, any node can start, signal and cancel workflow runs (and run those it registers).
    if (this.#durable) this.#workflows = this.#newWorkflowRunner(this.#durable, this.#options.store!);
  }

  #newWorkflowRunner(durable: DurableRuns, store: RunStore): WorkflowRunner {
    const runner = new WorkflowRunner({
      durable,
      store,
      options: this.#options.durability,
      submit: (task) => (this.#durable ? this.#durable.delegate(task) : this.delegate(task)),
      cancelTask: (id, reason) => {
        if (this.#durable) void this.#durable.cancel(id, undefined, reason).catch(() => undefined);
        else this.#engine.cancel(id, reason);
      },
      halted: () => this.#cluster.halted !== null,
      onResumed: (listener) => {
        this.#events.on('resumed', listener);
        return () => this.#events.off('resumed', listener);
      },
      onTaskEnded: (listener) => {
        this.#events.on('task:completed', (e) =>
          listener(e.taskId, { agentId: e.agentId, attempts: e.attempt, cost: e.cost }),
        );
        this.#events.on('task:failed', (e) =>
          listener(e.taskId, { agentId: null, attempts: e.attempts, cost: e.cost }),
        );
      },
      events: this.#events,
      audit: (action, detail, actor) => this.#audit.record(action, detail, actor ?? this.#audit.actorOf(undefined)),
    });
    if (this.#metrics) {
      runner.observe(
        workflowMetrics(
          this.#metrics.registry,
          this.#options.metrics ? this.#options.metrics.prefix : '',
          () => runner.stats().active,
        ),
      );
    }
    return runner;
  }

  /** The workflow runner, made on first use: on the store's durable layer, or on a private MemoryStore. */
  #workflowRunner(): WorkflowRunner {
    if (this.#workflows) return this.#workflows;
    if (this.#state !== 'created') {
      throw new ValidationError(
        'workflow',
        'Without a `store`, register workflows before start(): the orchestrator sets up their in-memory store at start',
      );
    }
    const store = new MemoryStore();
    this.#workflowHost = new DurableRuns({
      store,
      options: this.#options.durability,
      engine: this.#engine,
      capabilities: () => [],
      taskDefaults: {
        timeoutMs: this.#options.defaultTimeoutMs,
        maxAttempts: this.#options.defaultMaxAttempts,
        maxPayloadBytes: this.#options.maxPayloadBytes,
      },
      tasks: false,
    });
    this.#workflows = this.#newWorkflowRunner(this.#workflowHost, store);
    return this.#workflows;
  }

  /**
   * Starts a workflow run, or submits a task, at every tick of a cron expression (in a timezone) or an interval:
   * exactly once per tick across every node sharing the store (each tick's run has the id
   * `schedule:<name>:<tick ISO>`), whichever nodes are up. Ticks missed while no node ran it are skipped (one run for
   * the latest) or caught up, as `spec.missed` says. Register the same schedules on every node that should fire them.
   * Without a `store`, register before `start()`.
   *
   * @example
   * ```ts
   * orchestrator.schedule('nightly-digest', { cron: '30 2 * * *', timezone: 'Europe/Berlin' }, {
   *   workflow: 'digest',
   *   input: { edition: 'daily' },
   * });
   * orchestrator.schedule('heartbeat', { everyMs: 60_000 }, { task: { type: 'ping', requires: ['net'] } });
   * ```
   */
  schedule(name: string, spec: ScheduleSpec, target: ScheduleTarget): void {
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      throw new OrchestratorStoppedError('The orchestrator is stopping: it takes no new schedules');
    }
    this.#workflowRunner();
    const host = this.#host!;
    const made = !this.#scheduler;
    this.#scheduler ??= new Scheduler({
      store: host.store,
      events: this.#events,
      startWorkflow: (workflow, input, options) => this.startWorkflow(workflow, input, options).stored,
      submitTask: async (task, id) => {
        if (this.#durable) return this.#durable.delegate(task, id).stored;
        return this.delegate(task).id;
      },
    });
    this.#scheduler.add(name, spec, target);
    if (made && this.#state === 'running') this.#scheduler.start();
  }

  /** Removes a schedule from this node (nodes that registered it too still fire it). Returns whether it was here. */
  unschedule(name: string): boolean {
    return this.#scheduler?.remove(name) ?? false;
  }

  /** This node's schedules: their next tick and how many ticks it fired or skipped. */
  schedules(): ScheduleInfo[] {
    return this.#scheduler?.list() ?? [];
  }

  /** The durable layer workflow runs and `runs` read from: the store's, or the private one of workflows. */
  get #host(): DurableRuns | undefined {
    return this.#durable ?? this.#workflowHost;
  }

  /**
   * Registers a workflow: a function of `run` and its input whose steps are checkpointed, so that a run survives
   * crashes, restarts and long waits (see docs/workflows.md). Register each changed version of a workflow's code
   * under a new `version`, beside the old ones while their runs finish. Without a `store`, register before `start()`:
   * the runs are kept in memory (the same API, without recovery).
   *
   * @example
   * ```ts
   * orchestrator.workflow('review', { version: '2', maxSteps: 20, budget: 5 }, async (run, input: { doc: string }) => {
   *   const draft = await run.task<string>('draft', { type: 'draft', requires: ['text'], payload: input });
   *   const review = await run.signal<{ approved: boolean }>('approval', { timeoutMs: 86_400_000 });
   *   return review.approved ? run.step('publish', () => publish(draft)) : null;
   * });
   * ```
   */
  workflow<TInput = unknown, TResult = unknown>(
    name: string,
    options: WorkflowOptions,
    fn: WorkflowFunction<TInput, TResult>,
  ): void {
    if (options === null || typeof options !== 'object') {
      throw new ValidationError('options', 'workflow(name, options, fn): options is an object ({ version, … })');
    }
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      throw new OrchestratorStoppedError('The orchestrator is stopping: it takes no new workflows');
    }
    this.#workflowRunner().register(name, options, fn);
  }

  /**
   * Starts a run of a registered workflow with `input` (JSON). Starting again with an `id` the store holds returns
   * that run. The handle's `result` settles when the run ends, wherever it runs; `stored` once it is committed.
   * Throws WorkflowNotFoundError for a workflow not registered here (unless `version` names one another node has),
   * ValidationError for bad options or input.
   *
   * @example
   * ```ts
   * const handle = orchestrator.startWorkflow('review', { doc }, { id: `review:${docId}`, tenantId });
   * const outcome = await handle.result;
   * ```
   */
  startWorkflow<TResult = unknown>(
    name: string,
    input?: unknown,
    options?: StartWorkflowOptions,
  ): WorkflowHandle<TResult> {
    const runner = this.#workflows;
    if (!runner) throw new WorkflowNotFoundError(expectString(name, 'name'), []);
    this.#checkRunning('startWorkflow()');
    return runner.startRun(name, input, options) as WorkflowHandle<TResult>;
  }

  /**
   * Sends a signal to a workflow run (a human approval, an outside event): the run's `run.signal(name)` returns
   * `payload`. A signal sent before the run waits for it is kept. Resolves true when delivered, false when the run
   * had already ended; rejects with RunNotFoundError for an unknown run (or another tenant's, with `tenantId`).
   * Audited with `actor`.
   *
   * @example
   * ```ts
   * await orchestrator.signal(runId, 'approval', { approved: true }, { actor: 'alice', tenantId });
   * ```
   */
  async signal(runId: string, name: string, payload?: unknown, options?: SendSignalOptions): Promise<boolean> {
    const runner = this.#workflows;
    if (!runner) throw noStore('signal()');
    this.#checkRunning('signal()');
    return runner.signal(runId, name, payload, options ?? {});
  }

  #checkRunning(what: string): void {
    if (this.#state === 'created' || this.#state === 'starting') {
      throw new OrchestratorNotStartedError(`${what} needs a started orchestrator: await start() first`);
    }
    if (this.#state !== 'running') throw new OrchestratorStoppedError(`The orchestrator is stopping: ${what} refused`);
  }

  /** Where it is in its lifecycle: `created`, `starting`, `running`, `stopping` or `stopped`. */
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
   * Pre-warms every pool to its minimum (plus its warm spares) and opens for work. Idempotent: later calls return
   * the first call's promise. Rejects with AgentCreationError when a pool cannot reach its minimum; the orchestrator
   * is then stopped.
   *
   * An orchestrator runs once and cannot be restarted: once `stop()` was called, `start()` rejects with
   * OrchestratorStoppedError (a start that was already under way settles as it would). Build a new orchestrator
   * instead.
   */
  start(): Promise<void> {
    if (this.#startPromise && (this.#state === 'stopping' || this.#state === 'stopped')) {
      return Promise.reject(
        new OrchestratorStoppedError('This orchestrator was stopped and cannot start again: make a new one'),
      );
    }
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
      const tracing = startTracing(
        this.#events,
        this.#resources.disposables,
        this.#options.tracing,
        this.#traces,
      ).catch(() => false);
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
      // Durable runs first: a node that restarted takes its own runs back before it takes new work from the cluster.
      await this.#durable?.start();
      await this.#workflowHost?.start();
      this.#workflows?.start();
      this.#scheduler?.start();
      await this.#cluster.start();
      // Cluster-wide limits and budgets when the bridge keeps them (a RedisBridge): see resources/cluster-limits.ts.
      const limits = (this.#bridge as { clusterLimits?: () => ClusterLimitsBackend }).clusterLimits?.();
      if (limits) await this.#resources.attachCluster(limits);
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
    let resolved: ReturnType<typeof resolveStopOptions>;
    try {
      resolved = resolveStopOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    // Only the first call's options count; later calls share its promise.
    if (!this.#stopPromise && this.#state !== 'created') {
      this.#audit.record(
        'orchestrator.stop',
        { drain: resolved.drain, timeoutMs: resolved.timeoutMs },
        this.#audit.actorOf(resolved),
      );
    }
    this.#stopPromise ??= this.#stop(resolved.drain, resolved.timeoutMs);
    return this.#stopPromise;
  }

  async #stop(drain: boolean, timeoutMs: number): Promise<void> {
    this.#state = 'stopping';
    this.#events.emit('stopping', { drain });
    // Real time, like the timers that bound the stop (the injected clock may be fake, or throw).
    const startedAt = performance.now();
    const before = this.#engine.stats().completed;
    // Workflow runs first: unwound at their last checkpoint (before their tasks end in the engine's stop, which
    // must not be taken for the steps' outcomes), they go on elsewhere or at the next start.
    this.#scheduler?.stop();
    this.#workflows?.stop();
    const cancelled = await this.#engine.stop(drain, timeoutMs);
    // Results of tasks handed to other nodes, within what is left of the timeout (the bridge rejects the rest).
    if (drain) await this.#cluster.settleHandOffs(Math.max(0, timeoutMs - (performance.now() - startedAt)));
    // The last charges sent and unused leases given back while the bridge's connection is still there.
    await this.#resources.detachCluster(Math.min(1_000, Math.max(0, timeoutMs - (performance.now() - startedAt))));
    // Handed-off tasks served here have finished (or been left for another node); leave the cluster, within what is
    // left of the timeout whatever the bridge's medium does (a Redis that is down must not hold the stop).
    await this.#cluster.leave(Math.max(0, timeoutMs - (performance.now() - startedAt)));
    // Durable runs not finished here were given back by the engine's stop: write that, and end this node's lease.
    await this.#durable?.stop(Math.max(0, timeoutMs - (performance.now() - startedAt)));
    await this.#workflowHost?.stop(Math.max(0, timeoutMs - (performance.now() - startedAt)));
    const left = Math.max(0, timeoutMs - (performance.now() - startedAt));
    await this.#pools.stop(drain ? left : Math.min(left, STOP_ABORT_GRACE_MS));
    this.#resources.stop();
    this.#state = 'stopped';
    this.#events.emit('stopped', { completedWhileDraining: this.#engine.stats().completed - before, cancelled });
  }

  /**
   * Runs a task on an agent holding every capability in `task.requires` and resolves with its result.
   * Rejects with the agent's error, TaskTimeoutError, TaskCancelledError, TaskDeadLetteredError, or — when the
   * task is refused — ValidationError, NoCapableAgentError, QueueFullError, OrchestratorNotStartedError,
   * OrchestratorStoppedError, ResourcePressureError or BudgetExceededError.
   * An accepted task's promise never raises an unhandled rejection, however late its handler is attached;
   * every failure is also a `task:failed` event.
   *
   * @example
   * ```ts
   * try {
   *   const summary = await orchestrator.submit<string>({
   *     type: 'summarise',
   *     requires: ['text'],
   *     payload: { url },
   *     priority: 5,
   *     maxAttempts: 3,
   *     idempotencyKey: `summary:${url}`,
   *   });
   * } catch (err) {
   *   if (err instanceof TaskDeadLetteredError) alertOnCall(err.taskId, err.attempts);
   *   else throw err;
   * }
   * ```
   */
  submit<TResult = unknown>(task: Task): Promise<TResult> {
    if (this.#durable) {
      try {
        return this.#faithfulResult(this.#durable.delegate(task).result as Promise<TResult>);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    try {
      const remote = this.#cluster.remoteOnly(task);
      if (remote) return remote.result as Promise<TResult>;
      return this.#faithfulResult(this.#engine.submit(task) as Promise<TResult>);
    } catch (error) {
      let remote: TaskHandle | undefined;
      try {
        remote = this.#cluster.handOff(task, error);
      } catch (refusal) {
        return Promise.reject(refusal); // QueueFullError: the hand-off bound is reached
      }
      if (remote) return remote.result as Promise<TResult>;
      return Promise.reject(error);
    }
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
    if (this.#durable) return this.#faithfulHandle(this.#durable.delegate(task) as DurableTaskHandle<TResult>);
    try {
      const remote = this.#cluster.remoteOnly(task);
      if (remote) return remote as TaskHandle<TResult>;
      return this.#faithfulHandle(this.#engine.delegate(task) as TaskHandle<TResult>);
    } catch (error) {
      const remote = this.#cluster.handOff(task, error);
      if (remote) return remote as TaskHandle<TResult>;
      throw error;
    }
  }

  /**
   * Faithful or refused, for results: with a `bridge` given, the result of a task run here must be one that would
   * cross processes unchanged too (as a handed-off task's result is checked on the node that runs it), so that a task
   * does not succeed or fail depending on where it ran. Otherwise the result rejects with ValidationError naming
   * `result.<path>`. The task itself completed (its agent is not run again); only its result is refused.
   */
  #faithfulResult<T>(result: Promise<T>): Promise<T> {
    if (this.#options.bridge === undefined) return result;
    return result.then((value) => {
      checkFaithful(value, 'result');
      return value;
    });
  }

  /**
   * {@link #faithfulResult} for a handle: the same handle (its `progress` read from it when asked, as it may be a
   * getter), with a result that stays handled, as every handle's is.
   */
  #faithfulHandle<H extends TaskHandle<unknown>>(handle: H): H {
    if (this.#options.bridge === undefined) return handle;
    const result = this.#faithfulResult(handle.result);
    result.catch(() => undefined);
    const wrapped: TaskHandle<unknown> = {
      id: handle.id,
      result,
      cancel: (reason?: unknown) => handle.cancel(reason),
      get progress() {
        return handle.progress;
      },
      ...(handle.stored !== undefined ? { stored: handle.stored } : {}),
    };
    return wrapped as H;
  }

  /** The nodes of the cluster (this one included) with their roles, capabilities and free slots. */
  cluster(): Promise<NodeInfo[]> {
    return this.#bridge.nodes();
  }

  /**
   * Sends a control message to every node; each applies it (`halt`, `resume`, `traffic`, `rollback`) and emits a
   * `bridge:control` event. This node applies it before the message leaves.
   */
  broadcast(message: ControlMessage): Promise<void> {
    return this.#cluster.broadcast(message);
  }

  /**
   * Halts work on every node of the cluster (or only here with `{ local: true }`): waiting tasks are held (new ones
   * are still accepted, and wait), running attempts are aborted through their `ctx.signal` with
   * OrchestratorHaltedError and their tasks wait again without spending an attempt. Nothing is lost; `resume()`
   * releases it. This node is halted when the call returns; the promise settles once the others were told. A node
   * that joins the cluster during a halt starts halted.
   *
   * @example
   * ```ts
   * await orchestrator.halt('vendor incident: stop spending');
   * // ... later
   * await orchestrator.resume();
   * ```
   */
  halt(reason = 'halted by an operator', options: HaltOptions | null = {}): Promise<void> {
    let actor: string;
    try {
      expectString(reason, 'reason');
      actor = this.#audit.actorOf(options ?? undefined);
    } catch (error) {
      return Promise.reject(error);
    }
    if (options?.local || !this.#cluster.started) {
      this.#cluster.applyHalt(reason, undefined, actor);
      return Promise.resolve();
    }
    return this.#cluster.broadcast({ kind: 'halt', reason, actor });
  }

  /** Releases the work a halt holds, on every node (or only here with `{ local: true }`). */
  resume(options: HaltOptions | null = {}): Promise<void> {
    let actor: string;
    try {
      actor = this.#audit.actorOf(options ?? undefined);
    } catch (error) {
      return Promise.reject(error);
    }
    if (options?.local || !this.#cluster.started) {
      this.#cluster.applyResume(undefined, actor);
      return Promise.resolve();
    }
    return this.#cluster.broadcast({ kind: 'resume', actor });
  }

  /** Whether a halt holds this node's work, and the traffic split it last heard of. */
  controlState(): ControlState {
    return this.#cluster.controlState();
  }

  /** The bridge this orchestrator uses (a private MemoryBridge unless `bridge` was given). */
  get bridge(): CommunicationBridge {
    return this.#bridge;
  }

  /**
   * Stores a task (with a `store`) and resolves with its handle once the record is committed: the moment to answer
   * your own caller "accepted" (an HTTP 202 that means stored). Rejects with StoreUnavailableError when the store did
   * not take it, or with the errors `submit` rejects with when the task is refused. Without a store, resolves with
   * the handle at once (nothing is stored).
   *
   * @example
   * ```ts
   * app.post('/jobs', async (req, reply) => {
   *   const handle = await orchestrator.enqueue({ type: 'report', requires: ['text'], payload: req.body });
   *   reply.code(202).send({ id: handle.id });
   * });
   * ```
   */
  async enqueue<TResult = unknown>(task: Task): Promise<TaskHandle<TResult>> {
    if (!this.#durable) return this.delegate<TResult>(task);
    const handle = this.#faithfulHandle(this.#durable.delegate(task) as DurableTaskHandle<TResult>);
    const id = await handle.stored;
    return id === handle.id ? handle : { ...handle, id };
  }

  /**
   * A handle on a durable task by id, from any node and after a restart: its `result` settles when the task ends,
   * wherever it runs (at once when it already ended). Rejects (through `result`) with TaskNotFoundError when the
   * store has no such task, or it is another tenant's. Needs a `store`; throws ValidationError without one.
   *
   * @example
   * ```ts
   * const report = await orchestrator.attach<Report>(req.params.id, { tenantId }).result;
   * ```
   */
  attach<TResult = unknown>(taskId: string, options?: TenantOptions): TaskHandle<TResult> {
    const id = expectString(taskId, 'taskId');
    const tenantId = tenantOf(options);
    const host = this.#host;
    if (!host) throw noStore('attach()');
    if (this.#state !== 'running') {
      throw new OrchestratorStoppedError('attach() needs a running orchestrator: start() it first');
    }
    const handle = host.attach(id, tenantId) as TaskHandle<TResult>;
    const runner = this.#workflows;
    if (!runner) return handle;
    // A workflow run this node executes is cancelled here at once; elsewhere, runs.cancel(id) reaches it.
    return {
      ...handle,
      cancel: (reason?: unknown) =>
        runner.holds(id, tenantId) ? runner.cancelHeld(id, reason ?? 'cancelled') : handle.cancel(reason),
    };
  }

  /**
   * The history of durable runs, read from the store (see {@link RunHistory}). Its methods reject with
   * ValidationError when no `store` is configured.
   */
  get runs(): RunHistory {
    return (this.#runs ??= this.#runHistory());
  }

  #runHistory(): RunHistory {
    const durable = (): DurableRuns => {
      const host = this.#host;
      if (!host) throw noStore('runs');
      return host;
    };
    return {
      get: async (id, options) => durable().get(expectString(id, 'id'), tenantOf(options)),
      events: async (id, options) => durable().events(expectString(id, 'id'), tenantOf(options)),
      steps: async (id, options) => durable().steps(expectString(id, 'id'), tenantOf(options)),
      list: async (query) => durable().list(query),
      deadLetters: async (options) => durable().deadLetters(tenantOf(options), options?.limit),
      cancel: async (id, options) => {
        const runId = expectString(id, 'id');
        const tenantId = tenantOf(options);
        const reason = options?.reason ?? 'cancelled through runs.cancel()';
        const host = durable();
        return this.#workflows ? this.#workflows.cancel(runId, tenantId, reason) : host.cancel(runId, tenantId, reason);
      },
      retry: async <TResult = unknown>(id: string, options?: TenantOptions & ActorOptions) => {
        const runs = durable();
        const actor = this.#audit.actorOf(options ?? undefined);
        const run = await runs.get(expectString(id, 'id'), tenantOf(options));
        if (!run || run.status === 'queued' || run.status === 'running' || run.status === 'completed') {
          throw new TaskNotFoundError(id, 'the store (as a run that ended without success)');
        }
        const handle = runs.delegate(taskOfRun(run)) as DurableTaskHandle<TResult>;
        await handle.stored;
        this.#audit.record('deadletter.retry', { taskId: id, newTaskId: handle.id }, actor);
        return handle;
      },
    };
  }

  /** Cancels a live task by id. Returns false when it already finished or is unknown. */
  cancel(taskId: string, reason?: unknown, options?: TenantOptions): boolean {
    const id = expectString(taskId, 'taskId');
    const tenant = tenantOf(options);
    // A task handed to another node is cancelled there too (see ClusterLink.cancelRemote).
    return this.#engine.cancel(id, reason, tenant) || this.#cluster.cancelRemote(id, reason, tenant);
  }

  /**
   * A live task's state (waiting, running or in backoff, its attempts and agent), or `undefined` once it is finished
   * or when unknown. With `{ tenantId }`, another tenant's task is `undefined` too.
   */
  task(taskId: string, options?: TenantOptions): TaskSnapshot | undefined {
    return this.#engine.task(expectString(taskId, 'taskId'), tenantOf(options));
  }

  /** Adds an agent made outside any pool; routable at once. Returns its id. */
  registerAgent(agent: Agent, options: RegisterAgentOptions, audit?: ActorOptions): string {
    const actor = this.#audit.actorOf(audit);
    const id = this.#pools.registerAgent(agent, options);
    this.#audit.record(
      'agent.register',
      { agentId: id, capabilities: this.#pools.get(id)?.capabilityList ?? [] },
      actor,
    );
    return id;
  }

  /** Drains an agent (its running tasks finish), disposes it and removes it from the fleet. */
  async unregisterAgent(agentId: string, options?: ActorOptions): Promise<void> {
    const actor = this.#audit.actorOf(options);
    const role = this.#pools.get(agentId)?.role;
    await this.#pools.unregisterAgent(agentId);
    this.#audit.record('agent.terminate', { agentId, role: role ?? null }, actor);
  }

  /**
   * Hands back the id of a ready agent of `role` at once (the pool's warm spare, now routable) and refills the
   * spare in the background. Without a spare it creates one; at `maxAgents` it rejects with PoolAtCapacityError,
   * under memory/CPU pressure with ResourcePressureError, and while the pool's recovery budget is spent with
   * AgentCreationError. A spawned agent is kept (not scaled down when idle) until it is unregistered.
   */
  async spawnAgent(role: string, options?: ActorOptions): Promise<string> {
    const actor = this.#audit.actorOf(options); // read first: a bad one must not cost an agent
    const agentId = await this.#pools.spawnAgent(role);
    this.#audit.record('agent.spawn', { agentId, role }, actor);
    return agentId;
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
  retryDeadLetter<TResult = unknown>(taskId: string, options?: TenantOptions & ActorOptions): TaskHandle<TResult> {
    const actor = this.#audit.actorOf(options ?? undefined);
    const handle = this.#faithfulHandle(
      this.#engine.retryDeadLetter(expectString(taskId, 'taskId'), tenantOf(options)) as TaskHandle<TResult>,
    );
    this.#audit.record('deadletter.retry', { taskId, newTaskId: handle.id }, actor);
    return handle;
  }

  /** Counters since the orchestrator was made, queue depths, agents by state, pools and resources, as of now. */
  stats(): OrchestratorStats {
    return {
      state: this.#state,
      halted: this.#cluster.halted,
      ...this.#engine.stats(),
      agents: this.#pools.countByState(),
      pools: this.#pools.pools(),
      queues: this.#engine.queueDepths(),
      resources: this.#resources.stats(),
      ...(this.#durable ? { durable: this.#durable.stats() } : {}),
      ...(this.#workflows ? { workflows: this.#workflows.stats() } : {}),
    };
  }

  /**
   * `healthy | degraded | unhealthy`, with the detail of each component: pools (below their minimum, quarantined
   * agents, recovery budget), queue, breakers, resource pressure, SLA breaches, bridge, and the store when one is
   * configured (degraded while it fails writes or lease renewals). Unhealthy means it cannot
   * recover by itself (stopped, or a pool below its minimum with its recovery budget spent).
   */
  health(): HealthReport {
    return this.#health.report();
  }

  /**
   * Whether to send this node traffic: running and not unhealthy (the rule `/readyz` answers by). For a framework's
   * own readiness route.
   *
   * @example
   * ```ts
   * app.get('/readyz', (_req, reply) => reply.code(orchestrator.ready() ? 200 : 503).send());
   * ```
   */
  ready(): boolean {
    return isReady(this.health());
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
  metrics():
    | Promise<{
        /** The `Content-Type` to serve it with (the registry's Prometheus text format). */
        readonly contentType: string;
        /** The exposition text. */
        readonly body: string;
      }>
    | undefined {
    const m = this.#metrics;
    if (!m) return undefined;
    return m.text().then((body) => ({ contentType: m.contentType, body }));
  }

  /** The prom-client registry the metrics are on (yours when you passed one). */
  get metricsRegistry(): Registry | undefined {
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
    const durable = this.#durable;
    const metrics = new OrchestratorMetrics(
      options,
      {
        counts: () => {
          const s = engine.stats();
          return {
            waiting: s.waiting,
            running: s.running,
            retries: s.retries,
            routingCacheHits: s.routingCache.hits,
            routingCacheMisses: s.routingCache.misses,
          };
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
        halted: () => this.#cluster.halted !== null,
        // Only with a store: without one no store metric is registered.
        ...(durable ? { store: () => durable.stats() } : {}),
      },
      this.#events,
      this.#resources.disposables,
    );
    if (durable && metrics.store) durable.observe(metrics.store);
    return metrics;
  }

  /**
   * Adds a listener for `event`; see {@link OrchestratorEvents} for every event and its payload. Listeners run
   * synchronously, in the order they were added. One that throws does not break the orchestrator or the other
   * listeners: its error is emitted as `listener:error` (or, with no listener for that, a process warning).
   * Throws ValidationError when `listener` is not a function.
   *
   * @example
   * ```ts
   * orchestrator
   *   .on('task:failed', ({ taskId, outcome, error }) => log.warn({ taskId, outcome, error }, 'task failed'))
   *   .on('pool:recovery-exhausted', ({ role, resumeInMs }) => page(`pool ${role} paused for ${resumeInMs} ms`));
   * ```
   */
  on<E extends OrchestratorEventName>(event: E, listener: OrchestratorListener<E>): this {
    this.#events.on(event, listener);
    return this;
  }

  /** Like {@link UnifiedOrchestrator.on}, but the listener is removed before its first call. */
  once<E extends OrchestratorEventName>(event: E, listener: OrchestratorListener<E>): this {
    this.#events.once(event, listener);
    return this;
  }

  /**
   * Removes a listener added with `on` or `once` (the same function; added twice, one call removes one). Unknown
   * listeners are ignored.
   */
  off<E extends OrchestratorEventName>(event: E, listener: OrchestratorListener<E>): this {
    this.#events.off(event, listener);
    return this;
  }
}
