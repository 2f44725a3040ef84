/**
 * The CommunicationBridge: everything that crosses a process. A node registers with heartbeats, hands tasks it
 * cannot serve to the nodes that can, gets their results back, and hears control messages. MemoryBridge links
 * orchestrators in one process; RedisBridge links processes and machines through Redis Streams.
 */
import type { RetryPolicy } from '../resources/retry-policy.js';
import { isOrchestratorErrorCode, OrchestratorError } from '../errors.js';

/**
 * What a node tells the cluster about itself: its registry entry, rewritten on every heartbeat. A bridge builds it from
 * {@link BridgeHost.info} and {@link BridgeHost.status}, adding `nodeId` and `heartbeatAt`; `nodes()` answers a list
 * of them, and {@link CommunicationBridge.canAnyServe} reads their `serves`.
 */
export interface NodeInfo {
  /** The node's id: its bridge's `nodeId`, unique in the cluster. */
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
  /** The orchestrator's overall health, as `health()` reports it. */
  readonly health: 'healthy' | 'degraded' | 'unhealthy';
  /** The reason of the halt holding this node's work, or `null` when it runs. */
  readonly halted: string | null;
  /** The traffic split this node applies (legacy calls sent to the unified orchestrator), or `null` when never set. */
  readonly traffic: TrafficSetting | null;
  /** Attempts running now. */
  readonly running: number;
  /** Tasks waiting for an agent. */
  readonly waiting: number;
  /** Waiting tasks per requirement class. */
  readonly queues: Readonly<Record<string, number>>;
  /** One entry per pool. */
  readonly pools: ReadonlyArray<{
    /** The pool's role. */
    readonly role: string;
    /** Agents in the pool, whatever their state. */
    readonly members: number;
    /** Agents of the pool running a task. */
    readonly busy: number;
    /** The pool's `minAgents`. */
    readonly minAgents: number;
    /** The pool's `maxAgents`. */
    readonly maxAgents: number;
  }>;
  /** Circuit breakers that are not closed. */
  readonly breakers: {
    /** Agent breakers open. */
    readonly open: number;
    /** Agent breakers half-open (letting a probe through). */
    readonly halfOpen: number;
    /** Names of the dependency breakers that are open. */
    readonly dependenciesOpen: readonly string[];
  };
}

/** The share of legacy calls the unified orchestrator takes, and whether shadow mode runs it beside the legacy one. */
export interface TrafficSetting {
  /** Percent of legacy calls routed to the unified orchestrator, 0 to 100. */
  readonly percent: number;
  /** Whether shadow mode runs (calls answered by legacy also run on the unified side, to compare). */
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
  return {
    percent: percent ?? base.percent,
    shadow: shadow ?? base.shadow,
  };
}

/** A share from 0 to 100. */
export function isPercent(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 100;
}

/**
 * A task as it crosses the bridge: the caller's task after validation, with the origin's defaults filled in, JSON-safe
 * and without its signal (cancelling a handed-off task is not possible). The serving node submits it as its own task.
 */
export interface WireTask {
  /** The task's `type`. */
  readonly type: string;
  /** Capabilities the agent must all hold. */
  readonly requires: readonly string[];
  /** Capabilities that raise an agent's routing score. */
  readonly prefers: readonly string[];
  /** Higher runs first among waiting tasks. */
  readonly priority: number;
  /** The task's payload; JSON-serialisable (the origin checks it before handing off). */
  readonly payload: unknown;
  /** Per-attempt timeout in ms; `null` for none (`Infinity` does not survive JSON). */
  readonly timeoutMs: number | null;
  /** Attempts the task may have on the serving node, the first included. */
  readonly maxAttempts: number;
  /** The caller's idempotency key; without one, the serving node uses the hand-off's `taskId`. */
  readonly idempotencyKey?: string;
  /** The task's tenant, for fair queueing on the serving node. */
  readonly tenantId?: string;
  /** The task's affinity key, for routing on the serving node. */
  readonly affinityKey?: string;
  /**
   * When its `deadlineMs` passes, in ms since the epoch (the submitter's clock): the serving node ends it then, as the
   * submitter does. Absent for a task without a deadline.
   */
  readonly deadlineAt?: number;
  /**
   * The W3C `traceparent` of the submitter's active span when the task was handed off (with tracing on): the span of
   * the task on the serving node is its child. A malformed value is ignored.
   */
  readonly traceparent?: string;
}

/**
 * A task handed off by `origin`, to be run by a node that can serve its `requires`. A bridge passes it to
 * {@link BridgeHost.run} on the serving node; it may deliver the same hand-off more than once (at least once), so
 * `taskId` is what tells a redelivery apart from a new task.
 */
export interface HandOff {
  /** The id the submitter's handle carries; the same on every delivery. */
  readonly taskId: string;
  /** The node id of the node that handed it off: where its result goes. */
  readonly origin: string;
  /** The task to run. */
  readonly task: WireTask;
  /**
   * Which delivery of the hand-off this is, from 1: above 1 after the node that had it died (or stalled past its lease)
   * and another took it over. The serving node numbers its attempts after those of earlier deliveries (one each at
   * least) and reports it as `ctx.recoveries` (`delivery - 1`). Absent: 1.
   */
  readonly delivery?: number;
}

/**
 * What a serving node tells a hand-off's origin while it runs the task: `started` (attempt `attempt` of a delivery of
 * the task runs on `node`; a RedisBridge sends it on the heartbeat after the attempt started, once per attempt and
 * only while it runs then: a task still queued there for an agent gets none), or `progress` (the agent called
 * `ctx.progress(value)`; sent at once, batched per turn of the event loop).
 */
export interface HandOffNotice {
  /** The hand-off's `taskId`. */
  readonly taskId: string;
  /** The node running it. */
  readonly node: string;
  /** What happened: `started` or `progress`. */
  readonly kind: 'started' | 'progress';
  /** The delivery running (see {@link HandOff.delivery}). */
  readonly delivery: number;
  /** The attempt that runs (`started`) or that reported it (`progress`). */
  readonly attempt?: number;
  /** `progress`: the value the agent reported (as JSON carries it). */
  readonly value?: unknown;
  /** `progress`: when the agent reported it, epoch ms on the serving node. */
  readonly at?: number;
}

/** A progress update of a handed-off task, as the serving node's host reports it (see {@link BridgeHost.run}). */
export interface HandOffProgress {
  /** The attempt that reported it. */
  readonly attempt: number;
  /** The value the agent passed to `ctx.progress`. */
  readonly value: unknown;
  /** When it reported it, epoch ms. */
  readonly at: number;
}

/** What the origin of a hand-off hears about it besides its result (see {@link CommunicationBridge.handOff}). */
export interface HandOffOptions {
  /** A serving node's notice about the task (see {@link HandOffNotice}); must not throw. */
  readonly onNotice?: (notice: HandOffNotice) => void;
}

/**
 * The outcome of a handed-off task, as {@link BridgeHost.run} resolves it on the serving node, sent back to its origin.
 * The origin's bridge settles the `handOff()` promise with the first result for a `taskId` (`value`, or a
 * {@link RemoteTaskError} built from `error`) and drops any later one.
 */
export interface HandOffResult {
  /** The hand-off's `taskId`. */
  readonly taskId: string;
  /** The node that ran it. */
  readonly node: string;
  /** Whether the task succeeded: `value` is set when it did, `error` when it did not. */
  readonly ok: boolean;
  /** The task's result when `ok`; JSON-safe (the serving node checks it). */
  readonly value?: unknown;
  /** When not ok: the error's class name, stable code (if any) and message. */
  readonly error?: {
    /** The error's `name` (its class name, as `TaskTimeoutError`). */
    readonly name: string;
    /** The error's stable `code`, when it had one. */
    readonly code?: string;
    /** The error's message. */
    readonly message: string;
  };
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
  /** What to do; see above. A bridge drops messages of any other kind. */
  readonly kind: 'halt' | 'resume' | 'drain' | 'traffic' | 'rollback' | 'config';
  /** Why, for `halt`, `drain` and `rollback`: shown in events and the audit trail. */
  readonly reason?: string;
  /** `traffic`: `{ percent?, shadow? }` or a percentage; `config`: key/value pairs. */
  readonly value?: unknown;
  /** The node (or operator tool) that sent it. A bridge sets it to its own `nodeId` on sending. */
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

/**
 * A standing control message as a bridge keeps it: who sealed it (`sender`) and its place in that sender's sequence.
 * A bridge keeps the latest entry per slot (halt, percent, shadow) and, on `start()`, replays them to the host oldest
 * first, each once, with `replayed: true`. RedisBridge also replays, the same way, an entry a running node missed
 * (found when it reconciles), and never passes an entry older than the one it applied for the same slot.
 */
export interface StandingEntry {
  /** The control message as it was sent. */
  readonly message: ControlMessage;
  /** When it was sent (ms since the epoch). */
  readonly ts: number;
  /**
   * An opaque id of whoever sealed it (not a node id: RedisBridge uses its message signer's random id, MemoryHub an
   * empty string); with `seq`, it orders messages sent in the same millisecond.
   */
  readonly sender: string;
  /** Increases with every message the sender seals: orders two messages sent in the same millisecond. */
  readonly seq: number;
}

/**
 * Whether standing entry `a` comes after `b` in the cluster's order of control messages (`ts`, then `sender`, then
 * `seq`: the order {@link replayOrder} replays them in); false for the same message. A node applies a standing entry
 * only when it comes after the one it applied for the same slot, so an old entry written back is refused.
 */
export function standingAfter(
  a: Pick<StandingEntry, 'ts' | 'sender' | 'seq'>,
  b: Pick<StandingEntry, 'ts' | 'sender' | 'seq'>,
): boolean {
  if (a.ts !== b.ts) return a.ts > b.ts;
  if (a.sender !== b.sender) return a.sender > b.sender;
  return a.seq > b.seq;
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

/**
 * What the orchestrator gives its bridge in {@link CommunicationBridge.start}: the bridge calls it to describe this
 * node, to run the hand-offs delivered here, to apply control messages and to report its own health.
 */
export interface BridgeHost {
  /** The orchestrator's retry policy, for reconnects. */
  readonly retry?: RetryPolicy;
  /** This node's current registry entry (called on every heartbeat). */
  info(): Omit<NodeInfo, 'heartbeatAt'>;
  /** Whether this node can run tasks that require `requires`. */
  canServe(requires: readonly string[]): boolean;
  /**
   * Runs a handed-off task here. Resolves with the result to send back (a failed task resolves too, with `ok: false`),
   * or rejects with a refusal that another node should take over instead (stopping, queue full): the bridge then
   * leaves the task for another node (RedisBridge: for reclaim). A redelivery of a hand-off still running here shares
   * the first run. `progress`, when given, hears the agent's `ctx.progress` updates (with the hand-off they are of:
   * one function can serve every hand-off), for the bridge to send to the origin.
   */
  run(handOff: HandOff, progress?: (handOff: HandOff, update: HandOffProgress) => void): Promise<HandOffResult>;
  /**
   * Optional: the bridge lost the hand-off `taskId`, which {@link BridgeHost.run} is running, to another node
   * (RedisBridge: this node was stalled past its lease and another one reclaimed the entry). The run must stop (the
   * task is cancelled with `reason`, its `ctx.signal` aborts); the bridge reports nothing for it whatever it settles
   * with, since the node that holds the task now does.
   */
  abandon?(taskId: string, reason: string): void;
  /**
   * Optional: the origin of the hand-off `taskId` cancelled it (its caller cancelled, its deadline passed, or it gave
   * up on it). If it runs here, it is cancelled with `reason` (its `ctx.signal` aborts); what it reports then is
   * dropped by the origin.
   */
  cancel?(taskId: string, reason: string): void;
  /**
   * Optional: the number of the attempt of the hand-off `taskId` running here now, or 0 when none runs (it waits for
   * an agent or a retry, or is not here). A bridge sends `started` notices only for running attempts.
   */
  attemptOf?(taskId: string): number;
  /** A control message arrived (also the node's own, and standing state replayed on joining). */
  control(message: ControlMessage): void;
  /** This node's state for operators (called on every heartbeat). */
  status(): NodeStatus;
  /** The bridge's health changed (for `health()` and events). */
  state(status: BridgeStatus): void;
}

/** A bridge's health, as `health().components.bridge` and the `bridge:state` event report it. */
export type BridgeStatus = {
  /**
   * Counts in the orchestrator's overall health (the worst component wins). `degraded` while a RedisBridge
   * reconnects; neither built-in bridge reports `unhealthy`.
   */
  readonly status: 'healthy' | 'degraded' | 'unhealthy';
  /** What is going on, for people (`connected as node-1`, `reconnecting to Redis`). */
  readonly detail: string;
};

/** Counts a bridge keeps since it was made, for stats and metrics. */
export interface BridgeStats {
  /** Tasks this node handed to the cluster. */
  readonly handedOff: number;
  /** Handed-off tasks this node ran and reported a result for. */
  readonly served: number;
  /** Stream entries (up to 16 hand-offs each) this node claimed from another node or after a refusal; 0 in memory. */
  readonly reclaimed: number;
  /** Stream entries this node dead-lettered after too many deliveries; 0 in memory. */
  readonly deadLettered: number;
  /**
   * Messages dropped unread: unsigned, forged, stale, malformed or replayed, including deliveries of a task that
   * already has a result; 0 in memory.
   */
  readonly rejected: number;
}

/**
 * How an orchestrator talks to the other nodes of its cluster: the `bridge` option of `UnifiedOrchestrator`
 * (a private {@link MemoryBridge} by default, a {@link RedisBridge} across processes). Implement it to carry the
 * cluster over another medium.
 *
 * The orchestrator calls `start(host)` once it runs, `stop()` once while it stops (after its own tasks drained or were
 * cancelled, and only if `start` resolved), and the rest in between. A bridge must:
 * - deliver every hand-off at least once to a node that can serve it, and redeliver it elsewhere when the node that
 *   took it dies or refuses it ({@link BridgeHost.run} rejects); when a node learns that a hand-off it runs was
 *   taken over by another node, abort its copy through {@link BridgeHost.abandon} and report
 *   nothing for it;
 * - settle each `handOff()` promise once, with the first result reported for its task id;
 * - deliver every control message to every node, the sender included, and replay the standing state (the latest
 *   halt or resume and traffic setting) to a node as it starts, before `start` resolves;
 * - keep `canAnyServe` synchronous and cheap: it is called on every submit.
 */
export interface CommunicationBridge {
  /** A short name for the medium, reported by `health()` (`memory`, `redis`). */
  readonly kind: string;
  /** This node's id, unique in the cluster: the `origin` of its hand-offs and the `from` of its control messages. */
  readonly nodeId: string;
  /**
   * Joins the cluster: registers the node, starts heartbeats and consumers, and replays the standing control state to
   * `host.control`. When it rejects, the orchestrator's `start()` rejects and `stop()` is not called.
   */
  start(host: BridgeHost): Promise<void>;
  /**
   * Leaves the cluster: stops consuming (in-flight served tasks finish first), removes the node, closes what it opened.
   * Hand-offs of this node still waiting for a result reject with OrchestratorStoppedError (MemoryBridge lets them
   * finish instead: the node serving them is in the same process). `timeoutMs`, when given, is how long it may take
   * (what is left of the orchestrator's stop timeout): past it, it gives up on what it waits for and closes anyway.
   */
  stop(timeoutMs?: number): Promise<void>;
  /** The live nodes, this one included. */
  nodes(): Promise<NodeInfo[]>;
  /**
   * Hands a task to the cluster; resolves with its result as the serving node reports it, or rejects with a
   * {@link RemoteTaskError} (the task failed there), OrchestratorStoppedError (this bridge is not running), or the
   * refusal of every node that could take it. The orchestrator calls it only after `canAnyServe(task.requires)`.
   */
  handOff(taskId: string, task: WireTask, options?: HandOffOptions): Promise<unknown>;
  /**
   * Optional: the submitter stopped waiting for the hand-off `taskId` (its `deadlineMs` passed). Drop what is kept
   * for it, so that nothing waits for a result nobody wants (a result that still comes is ignored).
   */
  forget?(taskId: string): void;
  /**
   * Optional: the submitter gave up on the hand-off `taskId` (cancelled, deadline passed, bound reached). Forgets it
   * as `forget` does, makes sure that no node runs it from now on (a delivery still to come is dropped) and cancels it
   * where it runs ({@link BridgeHost.cancel}). Best effort: a node that cannot hear it now finishes the task, and its
   * result is dropped.
   */
  cancel?(taskId: string, reason: string): void;
  /**
   * Optional: whether the node `nodeId` is live (holds its lease). The origin of a hand-off running there asks it to
   * notice that node's death without waiting for the task's own bounds.
   */
  isLive?(nodeId: string): boolean;
  /** Whether a live node (other than this one) says it can serve `requires`. Synchronous: called on every submit. */
  canAnyServe(requires: readonly string[]): boolean;
  /**
   * Optional: why a hand-off of `requires` would be refused now (a bound of the bridge reached: RedisBridge's
   * `maxStreamBacklog`, as QueueFullError), or `undefined` to take it. Synchronous and cheap: the orchestrator asks
   * before each hand-off, so that `submit` refuses the task at once, as it refuses local work past `maxQueueSize`.
   */
  refusal?(requires: readonly string[]): Error | undefined;
  /** Sends a control message to every node, this one included, keeping it as standing state where it sets one. */
  control(message: ControlMessage): Promise<void>;
  /** The bridge's health now. */
  status(): BridgeStatus;
  /** The bridge's counts since it was made. */
  stats(): BridgeStats;
}

/**
 * An error rebuilt from a remote result: the task failed on another node (or in the store's record of it). It is an
 * OrchestratorError, so `isOrchestratorError()` is true for it: `code` is the remote error's own code when that is one
 * of the library's ({@link OrchestratorErrorCode}: `TASK_TIMEOUT`, `TASK_DEAD_LETTERED`, `VALIDATION_ERROR`, …), and
 * `REMOTE_TASK_FAILED` otherwise (an agent's own error, whose code, if any, is in `remoteCode`). `name` and `message`
 * are the remote error's, as thrown on the serving node.
 */
export class RemoteTaskError extends OrchestratorError {
  /** The remote error's code as reported (any string, as `E_CARD_DECLINED`), or `undefined` when it had none. */
  readonly remoteCode: string | undefined;
  /** The node that reported it: the one that ran the task, or that dead-lettered it. */
  readonly node: string;

  /** Rebuilds `error`, as reported by `node`. */
  constructor(error: NonNullable<HandOffResult['error']>, node: string) {
    super(isOrchestratorErrorCode(error.code) ? error.code : 'REMOTE_TASK_FAILED', error.message);
    this.name = error.name;
    this.remoteCode = error.code;
    this.node = node;
  }
}

/**
 * An error as a result carries it across the bridge: its name, code (if a string; a RemoteTaskError's `remoteCode`,
 * so that a remote error passed on again keeps its own code) and message; never throws.
 */
export function describeError(error: unknown): NonNullable<HandOffResult['error']> {
  try {
    if (error instanceof Error) {
      // A remote error passed on again keeps the code it was reported with (not REMOTE_TASK_FAILED).
      const code = error instanceof RemoteTaskError ? error.remoteCode : (error as { code?: unknown }).code;
      return {
        name: String(error.name),
        message: String(error.message),
        ...(typeof code === 'string' ? { code } : {}),
      };
    }
    return { name: 'Error', message: String(error) };
  } catch {
    return { name: 'Error', message: 'an error that could not be read' }; // hostile getters or traps
  }
}
