/**
 * The cluster link: this node's side of the cluster. It hands tasks this node cannot (or should not) serve to another
 * node through the bridge and tracks their results; it runs the control plane (halt, resume, traffic and rollback
 * sent to and heard from every node, with this node's own messages applied at once and their echoes reconciled);
 * and it tells the cluster this node's status on each heartbeat.
 */
import type { CommunicationBridge, ControlMessage, NodeStatus, TrafficSetting } from '../bridge/bridge.js';
import { parseTraffic, stickySlots } from '../bridge/bridge.js';
import type { ResolvedOrchestratorOptions } from '../config.js';
import type { TaskExecutionEngine } from '../engine/task-execution-engine.js';
import type { Task, TaskHandle } from '../engine/task.js';
import {
  NoCapableAgentError,
  OrchestratorHaltedError,
  QueueFullError,
  TaskCancelledError,
  ValidationError,
} from '../errors.js';
import type { OrchestratorEvents } from '../events.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import type { AuditLog } from '../health/audit.js';
import type { HealthMonitor, OrchestratorState } from '../health/health-monitor.js';
import type { AgentPoolManager } from '../pool/agent-pool-manager.js';
import type { ResourceManager } from '../resources/resource-manager.js';
import { settleWithin } from '../util/timers.js';
import { RemoteTasks } from './remote-tasks.js';
import { bridgeHost, handOffId, toWire } from './bridge-host.js';
import type { TracePropagation } from '../health/tracing.js';

const noop = (): void => {};

/** Control messages an orchestrator applies itself (the others are for the host's listeners). */
const APPLIED: ReadonlySet<ControlMessage['kind']> = new Set(['halt', 'resume', 'traffic', 'rollback']);

/** The cluster's control settings as this node applied them (see `halt()` and TrafficRouter). */
export interface ControlState {
  /** The reason of the halt holding this node's work, or `null`. */
  readonly halted: string | null;
  /** The node that sent the halt (`undefined` for a local one). */
  readonly haltedBy?: string;
  /** The traffic split last set for the cluster (by a TrafficRouter, the CLI or a replay), or `null` when never set. */
  readonly traffic: TrafficSetting | null;
}

/** What the link works with: the orchestrator's parts and its lifecycle state. */
export interface ClusterLinkParts {
  readonly options: ResolvedOrchestratorOptions;
  readonly bridge: CommunicationBridge;
  readonly engine: TaskExecutionEngine;
  readonly pools: AgentPoolManager;
  readonly resources: ResourceManager;
  readonly health: HealthMonitor;
  readonly audit: AuditLog;
  readonly events: TypedEmitter<OrchestratorEvents>;
  readonly state: () => OrchestratorState;
  /** Trace context for hand-offs (W3C traceparent out, remote parent in). */
  readonly traces?: TracePropagation;
}

/** This node's side of the cluster: hand-off, the control plane and node status (see the file header). */
export class ClusterLink {
  readonly #parts: ClusterLinkParts;
  readonly #options: ResolvedOrchestratorOptions;
  readonly #bridge: CommunicationBridge;
  readonly #engine: TaskExecutionEngine;
  readonly #pools: AgentPoolManager;
  readonly #audit: AuditLog;
  readonly #events: TypedEmitter<OrchestratorEvents>;
  /** Whether the bridge started (and so is to be stopped, and can take hand-offs and control messages). */
  #started = false;
  #handOffSeq = 0;
  #halt: { readonly reason: string; readonly from?: string } | undefined;
  /** Own control messages sent and not yet heard back, per standing-state slot. */
  readonly #ownPending = new Map<string, number>();
  #traffic: TrafficSetting | undefined;
  /** This node's tasks out in the cluster, bounded and cancellable (see remote-tasks.ts). */
  readonly #remoteTasks: RemoteTasks;
  /** Whether a task no live node serves waits in the cluster for one (a bridge was given, `waitForNodeMs` > 0). */
  readonly #waitsForNode: boolean;

  constructor(parts: ClusterLinkParts) {
    this.#parts = parts;
    this.#options = parts.options;
    this.#bridge = parts.bridge;
    this.#waitsForNode = parts.options.bridge !== undefined && parts.options.waitForNodeMs > 0;
    this.#remoteTasks = new RemoteTasks(parts.bridge, {
      waitForNodeMs: () => this.#options.waitForNodeMs,
      backoffMs: () => parts.options.retry.maxDelayMs,
      progress: (update, type) => {
        if (this.#events.has('task:progress')) this.#events.emit('task:progress', { ...update, type });
      },
    });
    this.#engine = parts.engine;
    this.#pools = parts.pools;
    this.#audit = parts.audit;
    this.#events = parts.events;
  }

  /** Whether the bridge is up: hand-offs and cluster-wide control go through it. */
  get started(): boolean {
    return this.#started;
  }

  /** The reason of the halt holding this node's work, or `null` while it runs. */
  get halted(): string | null {
    return this.#halt?.reason ?? null;
  }

  /** Joins the cluster: starts the bridge with this node as its host. */
  async start(): Promise<void> {
    await this.#bridge.start(
      bridgeHost({
        nodeId: this.#bridge.nodeId,
        retry: this.#parts.resources.retry,
        engine: this.#engine,
        pools: this.#pools,
        control: (message) => this.#fromCluster(message),
        status: () => this.#nodeStatus(),
        state: (status) => this.#events.emit('bridge:state', status),
        ...(this.#parts.traces ? { traces: this.#parts.traces } : {}),
      }),
    );
    this.#started = true;
  }

  /** Waits, at most `ms` (real time), for the results of the tasks this node handed to others. */
  settleHandOffs(ms: number): Promise<void> {
    return this.#remoteTasks.settled(ms);
  }

  /**
   * Leaves the cluster: stops the bridge if it started, giving it `ms` (its failure to stop cleanly is not this node's
   * to report). A bridge that is not done by then is not waited for any longer: the stop stays bounded.
   */
  async leave(ms: number): Promise<void> {
    if (!this.#started) return;
    this.#remoteTasks.stop();
    const stopped = this.#bridge.stop(ms).catch(noop);
    if (Number.isFinite(ms)) await settleWithin(stopped, ms);
    else await stopped;
  }

  /**
   * The fast way to the bridge for a node that cannot serve a task at all (a pure producer, say): straight to a
   * hand-off, without the engine building a refusal first.
   */
  remoteOnly(task: Task): TaskHandle | undefined {
    if (!this.#started || this.#parts.state() !== 'running' || typeof task !== 'object' || task === null)
      return undefined;
    if (isDelayed(task)) return undefined; // its delay is held by this node's engine (or the store)
    let requires: readonly string[];
    try {
      requires = Object.hasOwn(task, 'requires') && Array.isArray(task.requires) ? task.requires : [];
    } catch {
      return undefined; // a task that cannot be read: the engine's validation refuses it with ValidationError
    }
    // Cheapest first: with no other node that could take it (always so for a lone node), nothing more to ask.
    if (!this.#bridge.canAnyServe(requires)) return undefined;
    const overflow =
      this.#options.handOffAbove !== Infinity && this.#engine.waitingFor(requires) >= this.#options.handOffAbove;
    if (!overflow && this.#pools.canEverServe(requires)) return undefined;
    return this.#send(task, requires);
  }

  /**
   * A task this node cannot serve goes to a node of the cluster that can (through the bridge), when there is one:
   * its result comes back as if it had run here. Returns `undefined` to keep the local refusal.
   */
  handOff(task: Task, refusal: unknown): TaskHandle | undefined {
    if (!(refusal instanceof NoCapableAgentError) || !this.#started || this.#parts.state() !== 'running')
      return undefined;
    if (isDelayed(task)) return undefined;
    const requires = Array.isArray(task.requires) ? task.requires : [];
    // No live node serves it now: it waits in the cluster for one (see waitForNodeMs), unless this node is alone for
    // good (the private bridge) or told to refuse at once.
    if (!this.#bridge.canAnyServe(requires) && !this.#waitsForNode) return undefined;
    return this.#send(task, requires);
  }

  /**
   * Hands a task to the cluster; its handle's result settles when the serving node reports back. Throws
   * QueueFullError, taking nothing, past a bound: this node's hand-offs waiting for a result and its own waiting tasks
   * together at `maxQueueSize`, or the bridge's own bound (see {@link CommunicationBridge.refusal}).
   */
  #send(task: Task, requires: readonly string[]): TaskHandle {
    const { maxQueueSize } = this.#options;
    const queued = this.#engine.waiting;
    if (this.#remoteTasks.size + queued >= maxQueueSize) {
      throw new QueueFullError(
        maxQueueSize,
        `This node holds ${this.#remoteTasks.size} hand-offs waiting for a result and ${queued} waiting tasks of its own, its bound (maxQueueSize ${maxQueueSize}); retry later, add nodes that serve [${requires.join(', ')}], or raise maxQueueSize`,
      );
    }
    const refusal = this.#bridge.refusal?.(requires);
    if (refusal) throw refusal;
    const { spec, wire } = toWire(task, {
      timeoutMs: this.#options.defaultTimeoutMs,
      maxAttempts: this.#options.defaultMaxAttempts,
      maxPayloadBytes: this.#options.maxPayloadBytes,
      traceparent: this.#parts.traces?.current(),
    });
    const id = handOffId(this.#bridge.nodeId, ++this.#handOffSeq);
    if (spec.signal?.aborted) throw new TaskCancelledError(id, spec.signal.reason);
    // Tracked there, so that stop({ drain }) waits for the results of what this node handed off, as for its own.
    return this.#remoteTasks.supervise(id, spec, wire);
  }

  /**
   * Cancels a task this node handed to the cluster and still waits for (see remote-tasks.ts); false when it holds
   * none with that id (or, with `tenantId`, it is another tenant's).
   */
  cancelRemote(id: string, reason: unknown, tenantId: string | undefined): boolean {
    return this.#remoteTasks.cancel(id, reason, tenantId);
  }

  /** Applies a control message here and sends it to every node (see `UnifiedOrchestrator.broadcast`). */
  broadcast(message: ControlMessage): Promise<void> {
    if (typeof message !== 'object' || message === null) {
      return Promise.reject(new ValidationError('message', 'Expected a control message object with a `kind`'));
    }
    try {
      // Own fields, read once: a hostile object (throwing getters) is refused here rather than half-applied.
      message = { ...message };
    } catch (error) {
      return Promise.reject(
        new ValidationError(
          'message',
          `Expected a readable control message: ${error instanceof Error ? error.message : 'reading it threw'}`,
        ),
      );
    }
    if (!APPLIED.has(message.kind)) return this.#bridge.control(message);
    const slots = stickySlots(message);
    this.#applyControl({ ...message, from: this.#bridge.nodeId }, true);
    for (const slot of slots) this.#ownPending.set(slot, (this.#ownPending.get(slot) ?? 0) + 1);
    return this.#bridge.control(message).catch((error: unknown) => {
      this.#echoed(slots); // never sent: no echo will come
      throw error;
    });
  }

  /** One own message per slot came back (or never will); whether another own message is still on its way. */
  #echoed(slots: readonly string[]): boolean {
    let later = false;
    for (const slot of slots) {
      const n = (this.#ownPending.get(slot) ?? 1) - 1;
      if (n > 0) later = true;
      if (n <= 0) this.#ownPending.delete(slot);
      else this.#ownPending.set(slot, n);
    }
    return later;
  }

  /** Whether a halt holds this node's work, and the traffic split it last heard of. */
  controlState(): ControlState {
    return {
      halted: this.#halt?.reason ?? null,
      ...(this.#halt?.from !== undefined ? { haltedBy: this.#halt.from } : {}),
      traffic: this.#traffic ?? null,
    };
  }

  applyHalt(reason: string, from: string | undefined, actor: string): void {
    if (this.#halt) return;
    this.#halt = from === undefined ? { reason } : { reason, from };
    const { interrupted, held } = this.#engine.halt(new OrchestratorHaltedError(reason));
    this.#audit.record('orchestrator.halt', { reason, interrupted, held }, actor);
    this.#events.emit('halted', { reason, interrupted, held, ...(from !== undefined ? { from } : {}) });
  }

  applyResume(from: string | undefined, actor: string): void {
    if (!this.#halt) return;
    this.#halt = undefined;
    const released = this.#engine.resume();
    this.#audit.record('orchestrator.resume', { released }, actor);
    this.#events.emit('resumed', { released, ...(from !== undefined ? { from } : {}) });
  }

  /**
   * A control message through the bridge. This node's own halt, resume and traffic messages were applied when sent:
   * their echo, which may arrive after a later change made here (a resume right after a halt), is dropped. An own
   * message read back from the standing state while its echo is awaited (the echo was lost with the connection) is
   * that echo. The cluster's standing state replayed at start is applied whoever sent it. A bridge passes each
   * message once (RedisBridge: once per standing entry, however often it reconciles); one with the effect of a message
   * applied before (a halt while halted, a resume while running, a traffic setting already applied) emits no `halted`
   * or `resumed` event and records no audit entry.
   */
  #fromCluster(message: ControlMessage): void {
    const own = message.from === this.#bridge.nodeId && APPLIED.has(message.kind);
    if (own && (!message.replayed || stickySlots(message).some((slot) => this.#ownPending.has(slot)))) {
      // Applied when sent. Its echo puts it in the cluster's order again (a message from elsewhere may have come in
      // between), unless a later message of ours for the same setting is on its way: that one will.
      if (this.#echoed(stickySlots(message))) return;
      this.#applyControl(message, true, true);
      return;
    }
    this.#applyControl(message, false);
  }

  /**
   * Applies a control message (`local`: sent from here), then tells listeners; an echo of this node's own message
   * is only reported when it changed something (a message from elsewhere had come in between).
   */
  #applyControl(message: ControlMessage, local: boolean, echo = false): void {
    const before = echo
      ? `${this.#halt?.reason ?? ''}|${this.#traffic?.percent ?? ''}|${this.#traffic?.shadow ?? ''}`
      : undefined;
    const from = local ? undefined : message.from;
    // Who sent it: the actor it names, else (from another node) that node, else this node's default.
    const actor =
      typeof message.actor === 'string' && message.actor !== ''
        ? message.actor
        : (from ?? this.#audit.actorOf(undefined));
    switch (message.kind) {
      case 'halt':
        this.applyHalt(
          typeof message.reason === 'string' && message.reason !== '' ? message.reason : 'halted by the cluster',
          from,
          actor,
        );
        break;
      case 'resume':
        this.applyResume(from, actor);
        break;
      case 'traffic': {
        const traffic = parseTraffic(message.value, this.#traffic);
        if (!traffic) return; // malformed (a sender of another version): nothing to apply or report
        // Recorded when it changes something (this node's own message heard back changes nothing).
        if (traffic.percent !== this.#traffic?.percent || traffic.shadow !== this.#traffic.shadow) {
          this.#audit.record('traffic.change', { ...traffic, previous: this.#traffic ?? null }, actor);
        }
        this.#traffic = traffic;
        break;
      }
      case 'rollback':
        if (this.#traffic?.percent !== 0 || this.#traffic.shadow) {
          this.#audit.record(
            'traffic.rollback',
            { reason: message.reason ?? null, previous: this.#traffic ?? null },
            actor,
          );
        }
        this.#traffic = { percent: 0, shadow: false };
        break;
      case 'drain':
        // The host acts on it (its bridge:control listener); the trail says who asked.
        this.#audit.record('orchestrator.drain', { reason: message.reason ?? null }, actor);
        break;
      case 'config':
        break; // for the host's listeners only: nothing here applies it
    }
    if (echo && before === `${this.#halt?.reason ?? ''}|${this.#traffic?.percent ?? ''}|${this.#traffic?.shadow ?? ''}`)
      return;
    this.#events.emit('bridge:control', message);
  }

  /** What this node reports on its heartbeat for operators. */
  #nodeStatus(): NodeStatus {
    const engine = this.#engine.stats();
    const breakers = this.#parts.resources.stats().breakers;
    return {
      state: this.#parts.state(),
      health: this.#parts.health.report().status,
      halted: this.#halt?.reason ?? null,
      traffic: this.#traffic ?? null,
      running: engine.running,
      waiting: engine.waiting,
      queues: this.#engine.queueDepths(),
      pools: this.#pools.pools().map((p) => ({
        role: p.role,
        members: p.members,
        busy: p.states['BUSY'] ?? 0,
        minAgents: p.minAgents,
        maxAgents: p.maxAgents,
      })),
      breakers: {
        open: breakers.agents.open,
        halfOpen: breakers.agents['half-open'],
        dependenciesOpen: Object.entries(breakers.dependencies)
          .filter(([, state]) => state === 'open')
          .map(([name]) => name),
      },
    };
  }
}

/** Whether a task asks for a delay (`delayMs` or `runAt`): such a task is not handed to another node. */
function isDelayed(task: Task): boolean {
  try {
    return (Object.hasOwn(task, 'delayMs') && task.delayMs !== 0) || Object.hasOwn(task, 'runAt');
  } catch {
    return false;
  }
}
