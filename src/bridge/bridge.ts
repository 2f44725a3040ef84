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
  /** Its state for operators (absent from nodes of earlier versions). */
  readonly status?: NodeStatus;
}

/**
 * What a node reports on every heartbeat for operators (`status` in the CLI): its state, work and breakers, and the
 * control settings it applied.
 */
export interface NodeStatus {
  /** The orchestrator's lifecycle state. */
  readonly state: string;
  readonly health: 'healthy' | 'degraded' | 'unhealthy';
  /** The reason of the halt holding this node's work, or `null` when it runs. */
  readonly halted: string | null;
  /** The traffic split this node applies (legacy calls sent to the unified orchestrator), or `null` when never set. */
  readonly traffic: TrafficSetting | null;
  readonly running: number;
  readonly waiting: number;
  /** Waiting tasks per requirement class. */
  readonly queues: Readonly<Record<string, number>>;
  readonly pools: ReadonlyArray<{ readonly role: string; readonly members: number; readonly busy: number; readonly minAgents: number; readonly maxAgents: number }>;
  readonly breakers: { readonly open: number; readonly halfOpen: number; readonly dependenciesOpen: readonly string[] };
}

/** The share of legacy calls the unified orchestrator takes, and whether shadow mode runs it beside the legacy one. */
export interface TrafficSetting {
  /** 0 to 100. */
  readonly percent: number;
  readonly shadow: boolean;
}

/**
 * Reads the `value` of a `traffic` control message (`{ percent?, shadow? }` or a bare percent) over the current setting;
 * `undefined` when it is malformed or sets nothing.
 */
export function parseTraffic(value: unknown, current: TrafficSetting | undefined): TrafficSetting | undefined {
  try {
    return readTraffic(value, current);
  } catch {
    return undefined; // a value whose fields cannot be read (throwing getters) sets nothing
  }
}

function readTraffic(value: unknown, current: TrafficSetting | undefined): TrafficSetting | undefined {
  const base = current ?? { percent: 0, shadow: false };
  if (typeof value === 'number') return isPercent(value) ? { percent: value, shadow: base.shadow } : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  const { percent, shadow } = value as { percent?: unknown; shadow?: unknown };
  if (percent === undefined && shadow === undefined) return undefined;
  if (percent !== undefined && !isPercent(percent)) return undefined;
  if (shadow !== undefined && typeof shadow !== 'boolean') return undefined;
  return { percent: (percent as number | undefined) ?? base.percent, shadow: (shadow as boolean | undefined) ?? base.shadow };
}

/** A share from 0 to 100. */
export function isPercent(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 100;
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

/**
 * A control message for every node.
 * - `halt` (`reason`): hold waiting work and abort running attempts (they wait again); `resume` releases it.
 * - `traffic` (`value`: `{ percent?, shadow? }`, or a bare percent): the split of legacy calls (see TrafficRouter).
 * - `rollback`: every legacy call back to the legacy implementation at once (0%, shadow off).
 * - `drain`, `config`: delivered as `bridge:control` events for the host to act on.
 *
 * Halt/resume and the traffic setting are standing state: the bridge keeps the latest and replays it to a node that
 * joins later, so a node started during a halt starts halted.
 */
export interface ControlMessage {
  readonly kind: 'halt' | 'resume' | 'drain' | 'traffic' | 'rollback' | 'config';
  readonly reason?: string;
  /** `traffic`: `{ percent?, shadow? }` or a percentage; `config`: key/value pairs. */
  readonly value?: unknown;
  /** The node (or operator tool) that sent it. */
  readonly from?: string;
  /** Who sent it, for the audit trail (the CLI sends `cli:<user>@<host>`); the sending node's id when absent. */
  readonly actor?: string;
  /** Set on delivery when this is the cluster's standing state replayed to a node that joined after it was sent. */
  readonly replayed?: boolean;
}

/**
 * The standing-state slots a control message sets (the bridge keeps the latest message per slot): `halt` for halt and
 * resume, `percent` and `shadow` for the parts of the traffic setting it changes.
 */
export function stickySlots(message: ControlMessage): Array<'halt' | 'percent' | 'shadow'> {
  switch (message.kind) {
    case 'halt':
    case 'resume':
      return ['halt'];
    case 'rollback':
      return ['percent', 'shadow'];
    case 'traffic': {
      const v = message.value;
      // A malformed setting is ignored by every node: it must not displace the standing one either.
      if (parseTraffic(v, undefined) === undefined) return [];
      if (typeof v === 'number') return ['percent'];
      if (typeof v !== 'object' || v === null) return [];
      const slots: Array<'percent' | 'shadow'> = [];
      if ((v as { percent?: unknown }).percent !== undefined) slots.push('percent');
      if ((v as { shadow?: unknown }).shadow !== undefined) slots.push('shadow');
      return slots;
    }
    default:
      return [];
  }
}

/** A standing control message as a bridge keeps it: who sealed it (`sender`) and its place in that sender's sequence. */
export interface StandingEntry {
  readonly message: ControlMessage;
  /** When it was sent (ms since the epoch). */
  readonly ts: number;
  readonly sender: string;
  /** Increases with every message the sender seals: orders two messages sent in the same millisecond. */
  readonly seq: number;
}

/**
 * Replays standing control messages (one per slot, possibly the same message in two) oldest first, each once. Messages
 * from one sender replay in the order it sent them even within a millisecond; messages from two senders in the same
 * millisecond were concurrent and replay in an arbitrary but fixed order.
 */
export function replayOrder(entries: Iterable<StandingEntry>): ControlMessage[] {
  const unique = new Map<string, StandingEntry>();
  for (const e of entries) unique.set(`${e.sender}\n${e.seq}`, e);
  return [...unique.values()]
    .sort((a, b) => a.ts - b.ts || (a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : a.seq - b.seq))
    .map((e) => ({ ...e.message, replayed: true }));
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
  /** A control message arrived (also the node's own, and standing state replayed on joining). */
  control(message: ControlMessage): void;
  /** This node's state for operators (called on every heartbeat). */
  status(): NodeStatus;
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
  try {
    if (error instanceof Error) {
      const code = (error as { code?: unknown }).code;
      return { name: String(error.name), message: String(error.message), ...(typeof code === 'string' ? { code } : {}) };
    }
    return { name: 'Error', message: String(error) };
  } catch {
    return { name: 'Error', message: 'an error that could not be read' }; // hostile getters or traps
  }
}
