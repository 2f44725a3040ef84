/**
 * MemoryBridge: the default bridge, for one process. Orchestrators that share a {@link MemoryHub} form a cluster in
 * memory (hand-off, results, control), which is what tests and single-process hosts with several orchestrators
 * need; an orchestrator with a private hub is a cluster of one, and hand-off then finds no other node.
 */
import { randomBytes } from 'node:crypto';
import { NoCapableAgentError, OrchestratorStoppedError } from '../errors.js';
import {
  RemoteTaskError,
  replayOrder,
  stickySlots,
  type BridgeHost,
  type BridgeStats,
  type BridgeStatus,
  type CommunicationBridge,
  type ControlMessage,
  type NodeInfo,
  type StandingEntry,
  type WireTask,
} from './bridge.js';

/** The shared medium of MemoryBridges in one process. */
export class MemoryHub {
  readonly nodes = new Map<string, MemoryBridge>();
  /** Tasks that have a result (the most recent 100,000): a second delivery is not run again. */
  readonly done = new Set<string>();
  /** The cluster's standing control state: the latest message per slot (halt, percent, shadow). */
  readonly standing = new Map<string, StandingEntry>();
  #controlSeq = 0;

  /** Keeps a control message as standing state where it sets one. */
  remember(message: ControlMessage): void {
    const entry: StandingEntry = { message, ts: Date.now(), sender: '', seq: ++this.#controlSeq };
    for (const slot of stickySlots(message)) this.standing.set(slot, entry);
  }

  markDone(taskId: string): void {
    if (this.done.size >= 100_000) this.done.delete(this.done.values().next().value!);
    this.done.add(taskId);
  }
}

export interface MemoryBridgeOptions {
  /** Bridges on the same hub are one cluster. @default a private hub */
  hub?: MemoryHub;
  nodeId?: string;
}

export class MemoryBridge implements CommunicationBridge {
  readonly kind = 'memory';
  readonly nodeId: string;
  readonly #hub: MemoryHub;
  #host: BridgeHost | undefined;
  #running = false;
  readonly #inflight = new Set<Promise<unknown>>();
  #handedOff = 0;
  #served = 0;
  #next = 0;

  constructor(options: MemoryBridgeOptions = {}) {
    this.#hub = options.hub ?? new MemoryHub();
    this.nodeId = options.nodeId ?? `node-${randomBytes(4).toString('hex')}`;
  }

  async start(host: BridgeHost): Promise<void> {
    this.#host = host;
    this.#running = true;
    this.#hub.nodes.set(this.nodeId, this);
    for (const message of replayOrder(this.#hub.standing.values())) host.control(message);
  }

  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#hub.nodes.delete(this.nodeId);
    await Promise.allSettled([...this.#inflight]);
  }

  async nodes(): Promise<NodeInfo[]> {
    const now = Date.now();
    return [...this.#hub.nodes.values()].flatMap((b) => (b.#host ? [{ ...b.#host.info(), nodeId: b.nodeId, heartbeatAt: now, status: b.#host.status() }] : []));
  }

  canAnyServe(requires: readonly string[]): boolean {
    for (const b of this.#hub.nodes.values()) if (b !== this && b.#host?.canServe(requires)) return true;
    return false;
  }

  async handOff(taskId: string, task: WireTask): Promise<unknown> {
    if (!this.#running) throw new OrchestratorStoppedError();
    // What crosses a process must survive serialisation; the memory bridge checks it the same way.
    const wire = JSON.parse(JSON.stringify(task)) as WireTask;
    this.#handedOff++;
    const candidates = [...this.#hub.nodes.values()].filter((b) => b !== this && b.#running && b.#host?.canServe(wire.requires));
    if (candidates.length === 0) throw new NoCapableAgentError(wire.requires);
    let refusal: unknown;
    for (let i = 0; i < candidates.length; i++) {
      const node = candidates[(this.#next++ + i) % candidates.length]!;
      try {
        const result = await node.#serve({ taskId, origin: this.nodeId, task: wire });
        if (result.ok) return result.value;
        throw new RemoteTaskError(result.error ?? { name: 'Error', message: 'remote failure' }, result.node);
      } catch (error) {
        if (error instanceof RemoteTaskError) throw error;
        refusal = error; // refused there (stopping, queue full): try the next node
      }
    }
    throw refusal;
  }

  async control(message: ControlMessage): Promise<void> {
    this.#hub.remember({ ...message, from: this.nodeId });
    for (const b of this.#hub.nodes.values()) b.#host?.control({ ...message, from: this.nodeId });
  }

  status(): BridgeStatus {
    return { status: 'healthy', detail: this.#running ? `in memory as ${this.nodeId}` : 'not started' };
  }

  stats(): BridgeStats {
    return { handedOff: this.#handedOff, served: this.#served, reclaimed: 0, deadLettered: 0, rejected: 0 };
  }

  async #serve(handOff: { taskId: string; origin: string; task: WireTask }): ReturnType<BridgeHost['run']> {
    if (this.#hub.done.has(handOff.taskId)) throw new OrchestratorStoppedError('already served');
    const run = this.#host!.run(handOff);
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
