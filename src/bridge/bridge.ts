/**
 * The CommunicationBridge: everything that crosses a process. A node registers with heartbeats, hands tasks it
 * cannot serve to the nodes that can, gets their results back, and hears control messages. MemoryBridge links
 * orchestrators in one process; RedisBridge links processes and machines through Redis Streams.
 */

/** What a node tells the cluster about itself. */
export interface NodeInfo {
  readonly nodeId: string;
  /** Pool roles it runs. */
  readonly roles: readonly string[];
  /** Every capability it holds (pools and registered agents). */
  readonly capabilities: readonly string[];
  /**
   * The capability sets of its pools and registered agents, each held whole by one agent: a task is servable here
   * when one set covers its `requires` (the union above could hold `x` and `z` in two pools but no agent with both).
   */
  readonly serves: ReadonlyArray<readonly string[]>;
  /** Task slots free now. */
  readonly freeSlots: number;
  /** Task slots of its routable agents in all (free or not). */
  readonly slots: number;
  /** Epoch ms of its last heartbeat. */
  readonly heartbeatAt: number;
}

/** A task as it crosses the bridge: the caller's task, JSON-safe, without its signal. */
export interface WireTask {
  readonly type: string;
  readonly requires: readonly string[];
  readonly prefers: readonly string[];
  readonly priority: number;
  readonly payload: unknown;
  readonly timeoutMs: number | null;
  readonly maxAttempts: number;
  readonly idempotencyKey?: string;
  readonly tenantId?: string;
  readonly affinityKey?: string;
}

/** A task handed off by `origin`, to be run by a node that can serve `requires`. */
export interface HandOff {
  /** The id the submitter's handle carries; the same on every delivery. */
  readonly taskId: string;
  readonly origin: string;
  readonly task: WireTask;
}

/** The outcome of a handed-off task, sent back to its origin. */
export interface HandOffResult {
  readonly taskId: string;
  /** The node that ran it. */
  readonly node: string;
  readonly ok: boolean;
  readonly value?: unknown;
  /** When not ok: the error's class name, stable code (if any) and message. */
  readonly error?: { readonly name: string; readonly code?: string; readonly message: string };
}

/** A control message for every node: halt, resume, drain, traffic split, configuration. */
export interface ControlMessage {
  readonly kind: 'halt' | 'resume' | 'drain' | 'traffic' | 'config';
  readonly reason?: string;
  /** `traffic`: percentage of calls for the unified orchestrator; `config`: key/value pairs. */
  readonly value?: unknown;
  /** The node that sent it. */
  readonly from?: string;
}

/** What the orchestrator gives its bridge. */
export interface BridgeHost {
  /** The orchestrator's retry policy, for reconnects. */
  readonly retry?: import('../resources/retry-policy.js').RetryPolicy;
  /** This node's current registry entry (called on every heartbeat). */
  info(): Omit<NodeInfo, 'heartbeatAt'>;
  /** Whether this node can run tasks that require `requires`. */
  canServe(requires: readonly string[]): boolean;
  /**
   * Runs a handed-off task here. Resolves with the result to send back, or rejects with a refusal that another node
   * should take over instead (stopping, queue full): the bridge then leaves the task for reclaim.
   */
  run(handOff: HandOff): Promise<HandOffResult>;
  /** A control message arrived (also the node's own). */
  control(message: ControlMessage): void;
  /** The bridge's health changed (for `health()` and events). */
  state(status: BridgeStatus): void;
}

export type BridgeStatus = { readonly status: 'healthy' | 'degraded' | 'unhealthy'; readonly detail: string };

/** Counts a bridge keeps, for stats and metrics. */
export interface BridgeStats {
  readonly handedOff: number;
  readonly served: number;
  readonly reclaimed: number;
  readonly deadLettered: number;
  /** Messages dropped because their signature was missing, wrong, stale or replayed. */
  readonly rejected: number;
}

export interface CommunicationBridge {
  readonly kind: string;
  readonly nodeId: string;
  /** Joins the cluster: registers the node, starts heartbeats and consumers. */
  start(host: BridgeHost): Promise<void>;
  /** Leaves the cluster: stops consuming (in-flight served tasks finish first), removes the node, closes what it opened. */
  stop(): Promise<void>;
  /** The live nodes, this one included. */
  nodes(): Promise<NodeInfo[]>;
  /** Hands a task to the cluster; resolves (or rejects) with its result as the serving node reports it. */
  handOff(taskId: string, task: WireTask): Promise<unknown>;
  /** Whether a live node (other than this one) says it can serve `requires`. */
  canAnyServe(requires: readonly string[]): boolean;
  /** Sends a control message to every node. */
  control(message: ControlMessage): Promise<void>;
  status(): BridgeStatus;
  stats(): BridgeStats;
}

/** An error rebuilt from a remote result: same name, code and message as the one thrown on the serving node. */
export class RemoteTaskError extends Error {
  readonly code: string | undefined;
  readonly node: string;

  constructor(error: NonNullable<HandOffResult['error']>, node: string) {
    super(error.message);
    this.name = error.name;
    this.code = error.code;
    this.node = node;
  }
}

/** The requirement class key of a task: its capabilities sorted and joined (`*` for none). */
export function classKey(requires: readonly string[]): string {
  return requires.length === 0 ? '*' : [...requires].sort().join('+');
}

export function describeError(error: unknown): NonNullable<HandOffResult['error']> {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { name: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { name: 'Error', message: String(error) };
}
