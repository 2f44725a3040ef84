/**
 * MemoryBridge: the default bridge, for one process. Orchestrators that share a {@link MemoryHub} form a cluster in
 * memory (hand-off, results, control), which is what tests and single-process hosts with several orchestrators
 * need; an orchestrator with a private hub is a cluster of one, and hand-off then finds no other node.
 */
import { randomBytes } from 'node:crypto';
import { OrchestratorStoppedError } from '../errors.js';
import { BoundedSet } from '../util/fifo.js';
import {
  RemoteTaskError,
  replayOrder,
  stickySlots,
  type BridgeHost,
  type BridgeStats,
  type BridgeStatus,
  type CommunicationBridge,
  type ControlMessage,
  type HandOff,
  type HandOffNotice,
  type HandOffOptions,
  type HandOffProgress,
  type NodeInfo,
  type StandingEntry,
  type WireTask,
} from './bridge.js';

/**
 * The shared medium of MemoryBridges in one process: bridges made with the same hub are one cluster. It holds the
 * started nodes, the cluster's standing control state (replayed to a node that starts later) and which hand-offs
 * already have a result. Make one per cluster and pass it to each {@link MemoryBridge}; it needs no closing.
 *
 * @example
 * ```ts
 * const hub = new MemoryHub();
 * const front = new UnifiedOrchestrator({ bridge: new MemoryBridge({ hub, nodeId: 'front' }) });
 * const back = new UnifiedOrchestrator({ pools, bridge: new MemoryBridge({ hub, nodeId: 'back' }) });
 * ```
 */
export class MemoryHub {
  /**
   * The started bridges by node id.
   * @internal
   */
  readonly nodes = new Map<string, MemoryBridge>();
  /**
   * Tasks that have a result (the most recent 100,000): a second delivery is not run again.
   * @internal
   */
  readonly done = new BoundedSet<string>(100_000);
  /**
   * The cluster's standing control state: the latest message per slot (halt, percent, shadow).
   * @internal
   */
  readonly standing = new Map<string, StandingEntry>();
  /**
   * Hand-offs no started node could serve when they were sent, by task id: each waits for a node that can serve it
   * to start (its origin bounds the wait, and cancels it).
   * @internal
   */
  readonly waiting = new Map<
    string,
    { readonly origin: MemoryBridge; readonly requires: readonly string[]; readonly send: () => void }
  >();
  #controlSeq = 0;

  /**
   * Keeps a control message as standing state where it sets one.
   * @internal
   */
  remember(message: ControlMessage): void {
    const entry: StandingEntry = { message, ts: Date.now(), sender: '', seq: ++this.#controlSeq };
    for (const slot of stickySlots(message)) this.standing.set(slot, entry);
  }

  /**
   * Records that a task has a result, forgetting the oldest record past 100,000.
   * @internal
   */
  markDone(taskId: string): void {
    this.done.add(taskId);
  }
}

/** Options of {@link MemoryBridge}. */
export interface MemoryBridgeOptions {
  /** Bridges on the same hub are one cluster. @default a private hub (a cluster of one) */
  hub?: MemoryHub;
  /** This node's id, unique on its hub. @default `node-` and 8 random hex digits */
  nodeId?: string;
}

/**
 * The bridge for orchestrators in one process, and the default one (with a private hub, so a cluster of one).
 * Orchestrators whose bridges share a {@link MemoryHub} hand each other the tasks they cannot serve and hear each
 * other's control messages. A hand-off goes straight to a node that can serve it (round-robin across them, the next
 * one when a node refuses), with the task and its result passed through JSON as RedisBridge would send them; nothing
 * outlives the process.
 *
 * @example
 * ```ts
 * const hub = new MemoryHub();
 * const producer = new UnifiedOrchestrator({ bridge: new MemoryBridge({ hub, nodeId: 'producer' }) });
 * const worker = new UnifiedOrchestrator({
 *   pools: [{ role: 'writer', capabilities: ['text'], create: () => new WriterAgent() }],
 *   bridge: new MemoryBridge({ hub, nodeId: 'worker' }),
 * });
 * await Promise.all([producer.start(), worker.start()]);
 * // The producer has no agent with `text`: the task runs on the worker, its result comes back here.
 * const summary = await producer.submit<string>({ type: 'summarise', requires: ['text'], payload: doc });
 * ```
 */
export class MemoryBridge implements CommunicationBridge {
  /** Always `'memory'`. */
  readonly kind = 'memory';
  /** This node's id: the `nodeId` option, or a random one. */
  readonly nodeId: string;
  readonly #hub: MemoryHub;
  #host: BridgeHost | undefined;
  #running = false;
  readonly #inflight = new Set<Promise<unknown>>();
  #handedOff = 0;
  #served = 0;
  #next = 0;
  /** This node's hand-offs waiting in the hub for a node, with their rejection (see stop). */
  readonly #parked = new Map<string, (error: unknown) => void>();

  /** Makes a bridge; it joins its hub's cluster when the orchestrator starts. */
  constructor(options: MemoryBridgeOptions = {}) {
    this.#hub = options.hub ?? new MemoryHub();
    this.nodeId = options.nodeId ?? `node-${randomBytes(4).toString('hex')}`;
  }

  /** Joins the hub's cluster and replays its standing control state to `host`. Called by the orchestrator. */
  async start(host: BridgeHost): Promise<void> {
    this.#host = host;
    this.#running = true;
    this.#hub.nodes.set(this.nodeId, this);
    for (const message of replayOrder(this.#hub.standing.values())) host.control(message);
    this.#sendParked(); // hand-offs that waited for a node like this one go out now
  }

  /** Sends the hand-offs parked in the hub that a started node can serve now. */
  #sendParked(): void {
    for (const [taskId, waiting] of [...this.#hub.waiting]) {
      if (!waiting.origin.#servedElsewhere(waiting.requires, waiting.origin)) continue;
      this.#hub.waiting.delete(taskId);
      waiting.send();
    }
  }

  /** Whether a started node of the hub (other than `except`) can serve `requires`. */
  #servedElsewhere(requires: readonly string[], except: MemoryBridge | undefined): boolean {
    for (const b of this.#hub.nodes.values())
      if (b !== except && b.#running && b.#host?.canServe(requires)) return true;
    return false;
  }

  /** Leaves the hub's cluster, then waits for the hand-offs running here to finish. Called by the orchestrator. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#hub.nodes.delete(this.nodeId);
    for (const [taskId, reject] of this.#parked) {
      this.#hub.waiting.delete(taskId);
      reject(
        new OrchestratorStoppedError(`The orchestrator stopped before the handed-off task ${taskId} reported back`),
      );
    }
    this.#parked.clear();
    await Promise.allSettled([...this.#inflight]);
  }

  /** The started nodes of the hub, this one included; `heartbeatAt` is now (a node is live until it stops). */
  async nodes(): Promise<NodeInfo[]> {
    const now = Date.now();
    return [...this.#hub.nodes.values()].flatMap((b) =>
      b.#host ? [{ ...b.#host.info(), nodeId: b.nodeId, heartbeatAt: now, status: b.#host.status() }] : [],
    );
  }

  /** Whether another started node of the hub can serve `requires`. */
  canAnyServe(requires: readonly string[]): boolean {
    const served = this.#servedElsewhere(requires, this);
    // A node that gained an agent for a parked hand-off (registered at run time) takes it now: nodes start it
    // otherwise. Asked by the origin's sweep, so a parked hand-off goes out within one.
    if (served && this.#hub.waiting.size > 0) queueMicrotask(() => this.#sendParked());
    return served;
  }

  /**
   * Runs a task on another node of the hub that can serve it and resolves with its result. Rejects with
   * {@link RemoteTaskError} when it failed there, the last refusal when every such node refused it, and
   * OrchestratorStoppedError when this bridge is not started (or stops while the task waits). While no other node can
   * serve it, it waits in the hub for one to start (the orchestrator bounds that wait, see `waitForNodeMs`).
   */
  async handOff(taskId: string, task: WireTask, options?: HandOffOptions): Promise<unknown> {
    if (!this.#running) throw new OrchestratorStoppedError();
    // What crosses a process must survive serialisation; the memory bridge checks it the same way.
    const wire = JSON.parse(JSON.stringify(task)) as WireTask;
    this.#handedOff++;
    return this.#dispatch(taskId, wire, options?.onNotice);
  }

  /** Hands `wire` to a node that can serve it now, or parks it in the hub until one starts. */
  async #dispatch(
    taskId: string,
    wire: WireTask,
    onNotice: ((notice: HandOffNotice) => void) | undefined,
  ): Promise<unknown> {
    const candidates = [...this.#hub.nodes.values()].filter(
      (b) => b !== this && b.#running && b.#host?.canServe(wire.requires),
    );
    if (candidates.length === 0) {
      return new Promise<unknown>((resolve, reject) => {
        this.#parked.set(taskId, reject);
        this.#hub.waiting.set(taskId, {
          origin: this,
          requires: wire.requires,
          send: () => {
            this.#parked.delete(taskId);
            this.#dispatch(taskId, wire, onNotice).then(resolve, reject);
          },
        });
      });
    }
    let refusal: unknown;
    for (let i = 0; i < candidates.length; i++) {
      const node = candidates[(this.#next++ + i) % candidates.length]!;
      try {
        const result = await node.#serve({ taskId, origin: this.nodeId, task: wire }, (_handOff, update) => {
          let value: unknown;
          try {
            const json = JSON.stringify(update.value); // as RedisBridge carries it
            value = json === undefined ? null : (JSON.parse(json) as unknown);
          } catch {
            return; // a value JSON cannot carry is dropped, as RedisBridge drops it
          }
          const { attempt, at } = update;
          onNotice?.({ taskId, node: node.nodeId, kind: 'progress', delivery: 1, attempt, value, at });
        });
        if (result.ok) return result.value;
        throw new RemoteTaskError(result.error ?? { name: 'Error', message: 'remote failure' }, result.node);
      } catch (error) {
        if (error instanceof RemoteTaskError) throw error;
        refusal = error; // refused there (stopping, queue full): try the next node
      }
    }
    throw refusal;
  }

  /** Stops waiting for `taskId`: it no longer waits in the hub for a node. */
  forget(taskId: string): void {
    this.#hub.waiting.delete(taskId);
    this.#parked.delete(taskId);
  }

  /** Gives up on `taskId`: it no longer waits in the hub, and the node running it cancels it. */
  cancel(taskId: string, reason: string): void {
    this.forget(taskId);
    this.#hub.markDone(taskId);
    for (const b of this.#hub.nodes.values()) b.#host?.cancel?.(taskId, reason);
  }

  /** Whether the node `nodeId` is started on this hub. */
  isLive(nodeId: string): boolean {
    const node = this.#hub.nodes.get(nodeId);
    return node !== undefined && node.#running;
  }

  /** Delivers a control message to every started node of the hub, this one included, and keeps its standing state. */
  async control(message: ControlMessage): Promise<void> {
    this.#hub.remember({ ...message, from: this.nodeId });
    for (const b of this.#hub.nodes.values()) b.#host?.control({ ...message, from: this.nodeId });
  }

  /** Always healthy; the detail says whether it is started. */
  status(): BridgeStatus {
    return { status: 'healthy', detail: this.#running ? `in memory as ${this.nodeId}` : 'not started' };
  }

  /** Hand-offs sent and served; the other counts are always 0 in memory. */
  stats(): BridgeStats {
    return { handedOff: this.#handedOff, served: this.#served, reclaimed: 0, deadLettered: 0, rejected: 0 };
  }

  async #serve(
    handOff: { taskId: string; origin: string; task: WireTask },
    progress: (handOff: HandOff, update: HandOffProgress) => void,
  ): ReturnType<BridgeHost['run']> {
    if (this.#hub.done.has(handOff.taskId)) throw new OrchestratorStoppedError('already served');
    const run = this.#host!.run(handOff, progress);
    this.#inflight.add(run);
    try {
      const result = await run;
      this.#served++;
      this.#hub.markDone(handOff.taskId);
      return JSON.parse(JSON.stringify(result)) as Awaited<ReturnType<BridgeHost['run']>>;
    } finally {
      this.#inflight.delete(run);
    }
  }
}
