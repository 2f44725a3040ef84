/**
 * The orchestrator's side of its bridge: what it tells the cluster about itself, how it runs a handed-off task,
 * and how a task of its own becomes a wire task.
 */
import type { RetryPolicy } from '../resources/retry-policy.js';
import { randomBytes } from 'node:crypto';
import { TaskTimeoutError } from '../errors.js';
import { checkFaithful } from '../bridge/codec.js';
import { validateTask, type Task, type TaskHandle, type TaskSpec } from '../engine/task.js';
import type { TaskExecutionEngine } from '../engine/task-execution-engine.js';
import type { ProgressUpdate } from '../engine/progress.js';
import type { TracePropagation } from '../health/tracing.js';
import type { AgentPoolManager } from '../pool/agent-pool-manager.js';
import {
  describeError,
  type BridgeHost,
  type BridgeStatus,
  type ControlMessage,
  type HandOff,
  type HandOffProgress,
  type HandOffResult,
  type NodeStatus,
  type WireTask,
} from '../bridge/bridge.js';

/** Refusals that say "not here, not now": the hand-off is left for another node instead of failing. */
const REFUSALS = new Set([
  'ORCHESTRATOR_STOPPED',
  'ORCHESTRATOR_NOT_STARTED',
  'QUEUE_FULL',
  'RESOURCE_PRESSURE',
  'NO_CAPABLE_AGENT',
]);

/** The BridgeHost an orchestrator gives its bridge, over its engine and pools. */
export function bridgeHost(parts: {
  nodeId: string;
  retry: RetryPolicy;
  engine: TaskExecutionEngine;
  pools: AgentPoolManager;
  control(message: ControlMessage): void;
  status(): NodeStatus;
  state(status: BridgeStatus): void;
  /** Trace context: the span of a hand-off's task here is a child of its `traceparent`. */
  traces?: TracePropagation;
}): BridgeHost {
  const { engine, pools } = parts;
  /** Hand-offs running here, by their task id (see abandon). */
  const running = new Map<string, TaskHandle>();
  /** Hand-offs the bridge lost to another node, cancelled here: what they settle with is not a result. */
  const abandoned = new Set<string>();
  return {
    retry: parts.retry,
    info() {
      const capabilities = new Set<string>();
      const serves = new Map<string, readonly string[]>();
      let freeSlots = 0;
      let slots = 0;
      const add = (set: readonly string[]): void => {
        for (const c of set) capabilities.add(c);
        const key = [...set].sort().join('\u0000');
        if (!serves.has(key)) serves.set(key, set);
      };
      for (const a of pools.agents()) {
        if (a.state !== 'DRAINING' && a.state !== 'FAILED' && a.state !== 'TERMINATED') add(a.capabilityList);
        if (a.routable) {
          slots += a.concurrency;
          freeSlots += Math.max(0, a.concurrency - a.active);
        }
      }
      for (const p of pools.pools()) add(p.capabilities);
      return {
        nodeId: parts.nodeId,
        roles: pools.roles,
        capabilities: [...capabilities],
        serves: [...serves.values()],
        freeSlots,
        slots,
      };
    },
    canServe: (requires) => pools.canEverServe(requires),
    async run(
      handOff: HandOff,
      progress?: (handOff: HandOff, update: HandOffProgress) => void,
    ): Promise<HandOffResult> {
      const { task } = handOff;
      let value: unknown;
      let handle: TaskHandle | undefined;
      // Earlier deliveries started an attempt each at least: this one is numbered after them. It runs one attempt
      // whatever they took (the engine checks `maxAttempts` only before a retry), and retries while they are left.
      const delivery = Math.max(1, Math.floor(Number(handOff.delivery) || 1));
      const attempts = delivery - 1;
      try {
        const deadlineMs = deadlineLeft(task.deadlineAt);
        if (deadlineMs !== undefined && deadlineMs <= 0) {
          // Past its deadline before it could start here (it waited in the cluster): it ends as the submitter's does.
          throw new TaskTimeoutError(handOff.taskId, 0, attempts, 'task');
        }
        const local: Task = {
          type: task.type,
          requires: task.requires,
          prefers: task.prefers,
          priority: task.priority,
          payload: task.payload,
          timeoutMs: task.timeoutMs ?? Infinity,
          maxAttempts: task.maxAttempts,
          // A redelivery of the same hand-off to this node shares the first run.
          idempotencyKey: task.idempotencyKey ?? `bridge:${handOff.taskId}`,
          ...(task.tenantId !== undefined ? { tenantId: task.tenantId } : {}),
          ...(task.affinityKey !== undefined ? { affinityKey: task.affinityKey } : {}),
          ...(deadlineMs !== undefined ? { deadlineMs } : {}),
        };
        const from = { id: handOff.taskId, attempts, recoveries: delivery - 1, submitted: true };
        const forward = progress
          ? (update: ProgressUpdate) =>
              progress(handOff, { attempt: update.attempt, value: update.value, at: update.at })
          : undefined;
        // Its span (opened while it is accepted) is a child of the submitter's, when the wire task carries one.
        handle =
          parts.traces && task.traceparent !== undefined
            ? parts.traces.within(task.traceparent, () => engine.delegateHandOff(local, from, forward))
            : engine.delegateHandOff(local, from, forward);
        // Kept while it runs, for abandon(): a Map entry, where a signal per task would cost a listener each.
        // A second delivery of a hand-off running here follows the first: the first's entry stays.
        if (!running.has(handOff.taskId)) running.set(handOff.taskId, handle);
        value = await handle.result;
      } catch (error) {
        // Cancelled because the bridge lost it: not a result (the node that holds it now reports one).
        if (abandoned.has(handOff.taskId)) throw error;
        const code = (error as { code?: unknown } | null)?.code;
        if (typeof code === 'string' && REFUSALS.has(code)) throw error;
        return { taskId: handOff.taskId, node: parts.nodeId, ok: false, error: describeError(error) };
      } finally {
        if (handle && running.get(handOff.taskId) === handle) running.delete(handOff.taskId);
        abandoned.delete(handOff.taskId);
      }
      try {
        checkFaithful(value, 'result'); // faithful or refused, as the payload was (bridge/codec.ts)
      } catch (error) {
        return { taskId: handOff.taskId, node: parts.nodeId, ok: false, error: describeError(error) };
      }
      return { taskId: handOff.taskId, node: parts.nodeId, ok: true, value };
    },
    abandon(taskId, reason) {
      const handle = running.get(taskId);
      if (!handle) return;
      abandoned.add(taskId);
      if (!engine.cancel(taskId, reason)) handle.cancel(reason);
    },
    cancel(taskId, reason) {
      // The task by its id first: a second delivery of it here follows the first run, and cancelling that follower
      // would leave the run going.
      if (!engine.cancel(taskId, reason)) running.get(taskId)?.cancel(reason);
    },
    attemptOf(taskId) {
      const task = engine.task(taskId);
      return task?.phase === 'running' ? task.attempts : 0;
    },
    control: (message) => parts.control(message),
    status: () => parts.status(),
    state: (status) => parts.state(status),
  };
}

/**
 * Ms left until `deadlineAt` (epoch ms, the submitter's clock), `undefined` without one (or a malformed one: the
 * submitter's own bound still holds). At least 1 while it has not passed, so that `deadlineMs` stays valid.
 */
function deadlineLeft(deadlineAt: unknown): number | undefined {
  if (typeof deadlineAt !== 'number' || !Number.isFinite(deadlineAt)) return undefined;
  const left = Math.ceil(deadlineAt - Date.now());
  return left <= 0 ? 0 : left;
}

/** A caller's task as it crosses the bridge; throws ValidationError when its payload would not cross unchanged. */
export function toWire(
  task: Task,
  defaults: { timeoutMs: number; maxAttempts: number; maxPayloadBytes?: number; traceparent?: string | undefined },
): { spec: TaskSpec; wire: WireTask } {
  // Faithful or refused: a payload JSON would change is refused here, naming its path (bridge/codec.ts).
  const spec = validateTask(task, { ...defaults, faithfulPayloads: true });
  const wire: WireTask = {
    type: spec.type,
    requires: spec.requires,
    prefers: spec.prefers,
    priority: spec.priority,
    payload: spec.payload,
    timeoutMs: spec.timeoutMs === Infinity ? null : spec.timeoutMs,
    maxAttempts: spec.maxAttempts,
    ...(spec.idempotencyKey !== undefined ? { idempotencyKey: spec.idempotencyKey } : {}),
    ...(spec.tenantId !== undefined ? { tenantId: spec.tenantId } : {}),
    ...(spec.affinityKey !== undefined ? { affinityKey: spec.affinityKey } : {}),
    ...(spec.deadlineMs !== Infinity ? { deadlineAt: Date.now() + spec.deadlineMs } : {}),
    ...(defaults.traceparent !== undefined ? { traceparent: defaults.traceparent } : {}),
  };
  return { spec, wire };
}

/** Unique across the cluster: node ids are, and a node restarted under the same id gets a new instance prefix. */
const INSTANCE = randomBytes(3).toString('hex');

/** The id of this process's `seq`-th hand-off from `nodeId`. */
export function handOffId(nodeId: string, seq: number): string {
  return `${nodeId}-${INSTANCE}-${seq.toString(36)}`;
}
