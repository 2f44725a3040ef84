/**
 * The legacy orchestrator API that OrchestratorsCompatibilityAdapter and TrafficRouter speak: the calls, the task
 * shape, the status shapes and the error response. Legacy implementations answer with a value or with
 * `{ error: { code, message } }`; so does the adapter, with the unified errors mapped to the legacy codes below.
 */
import type { OrchestratorErrorCode } from '../errors.js';

/** A legacy priority: a number (higher runs first) or a named level. */
export type LegacyPriority = number | 'low' | 'normal' | 'high' | 'critical';

/**
 * A task as legacy callers send it to `delegateTaskToAgent`. `role` or `capabilities` (or both) say who may run it;
 * snake_case keys are the legacy spelling, camelCase ones are read too.
 */
export interface LegacyTask {
  /** The pool role that should run it: the task requires every capability of that pool. */
  readonly role?: string;
  /** Capabilities the agent must all hold (added to the role's). */
  readonly capabilities?: readonly string[];
  /** The task type (metrics and SLA group by it). @default 'legacy' */
  readonly type?: string;
  /** @default 'normal' */
  readonly priority?: LegacyPriority;
  readonly payload?: unknown;
  /** Seconds an attempt may run. @default the orchestrator's `defaultTimeoutMs` */
  readonly timeout?: number;
  /** Retries after the first attempt. @default the orchestrator's `defaultMaxAttempts` - 1 */
  readonly max_retries?: number;
  readonly maxRetries?: number;
  readonly tenant_id?: string;
  readonly tenantId?: string;
  /** The caller's id for the task: a second delegation with the same id is the same task (idempotency). */
  readonly task_id?: string;
  readonly taskId?: string;
}

/** A legacy error answer. */
export interface LegacyErrorResponse {
  readonly error: { readonly code: string; readonly message: string };
}

/** Either the call's value or a legacy error answer. */
export type LegacyResult<T> = T | LegacyErrorResponse;

export type LegacyTaskState = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled' | 'timeout';

/** What `getTaskStatus` answers. */
export interface LegacyTaskStatus {
  readonly task_id: string;
  readonly status: LegacyTaskState;
  /** The agent running it or that ran it last; `null` before its first attempt. */
  readonly agent_id: string | null;
  readonly attempts: number;
  /** Set once completed. */
  readonly result?: unknown;
  /** Set once failed, cancelled or timed out. */
  readonly error?: LegacyErrorResponse['error'];
  /** ISO 8601. */
  readonly created_at: string;
  readonly updated_at: string;
}

export type LegacyAgentState = 'starting' | 'idle' | 'busy' | 'draining' | 'terminated' | 'unhealthy' | 'failed';

/** What `getAgentStatus` answers. */
export interface LegacyAgentStatus {
  readonly agent_id: string;
  readonly role: string | null;
  readonly status: LegacyAgentState;
  readonly capabilities: readonly string[];
  readonly active_tasks: number;
  readonly completed_tasks: number;
  readonly failed_tasks: number;
}

/** What `shutdownAgent` answers. */
export interface LegacyShutdown {
  readonly agent_id: string;
  readonly status: 'terminated';
}

/** The legacy calls, camelCase. Every method answers with its value or a {@link LegacyErrorResponse}. */
export interface LegacyOrchestrator {
  spawnAgent(role: string): Promise<LegacyResult<string>>;
  delegateTaskToAgent(task: LegacyTask): Promise<LegacyResult<string>>;
  getAgentStatus(agentId: string): Promise<LegacyResult<LegacyAgentStatus>>;
  getTaskStatus(taskId: string): Promise<LegacyResult<LegacyTaskStatus>>;
  shutdownAgent(agentId: string): Promise<LegacyResult<LegacyShutdown>>;
  /** Optional in legacy implementations: waits until the task is terminal and answers its final status. */
  waitForTask?(taskId: string, timeoutSeconds?: number): Promise<LegacyResult<LegacyTaskStatus>>;
}

/** The same calls, snake_case, as many legacy implementations spell them. */
export interface LegacyOrchestratorSnake {
  spawn_agent(role: string): Promise<LegacyResult<string>>;
  delegate_task_to_agent(task: LegacyTask): Promise<LegacyResult<string>>;
  get_agent_status(agentId: string): Promise<LegacyResult<LegacyAgentStatus>>;
  get_task_status(taskId: string): Promise<LegacyResult<LegacyTaskStatus>>;
  shutdown_agent(agentId: string): Promise<LegacyResult<LegacyShutdown>>;
  wait_for_task?(taskId: string, timeoutSeconds?: number): Promise<LegacyResult<LegacyTaskStatus>>;
}

/** A legacy implementation: an object with the legacy calls in either spelling. */
export type LegacyImplementation = LegacyOrchestrator | LegacyOrchestratorSnake;

/** The legacy call names, camelCase. */
export type LegacyMethod = 'spawnAgent' | 'delegateTaskToAgent' | 'getAgentStatus' | 'getTaskStatus' | 'shutdownAgent' | 'waitForTask';

export const SNAKE_CASE: Readonly<Record<LegacyMethod, keyof LegacyOrchestratorSnake>> = Object.freeze({
  spawnAgent: 'spawn_agent',
  delegateTaskToAgent: 'delegate_task_to_agent',
  getAgentStatus: 'get_agent_status',
  getTaskStatus: 'get_task_status',
  shutdownAgent: 'shutdown_agent',
  waitForTask: 'wait_for_task',
});

/** Named legacy priorities as unified priorities (higher runs first; below 0 is shed first under pressure). */
export const LEGACY_PRIORITIES: Readonly<Record<Exclude<LegacyPriority, number>, number>> = Object.freeze({
  low: -10,
  normal: 0,
  high: 10,
  critical: 100,
});

/**
 * Unified error codes → legacy error codes. `TASK_FAILED` is also the code of an agent's own error (one without an
 * orchestrator code) in a task status; `INTERNAL_ERROR` that of anything else unexpected.
 */
export const LEGACY_ERROR_CODES: Readonly<Record<OrchestratorErrorCode, string>> = Object.freeze({
  VALIDATION_ERROR: 'INVALID_REQUEST',
  UNKNOWN_ROLE: 'UNKNOWN_ROLE',
  NO_CAPABLE_AGENT: 'NO_AGENT_AVAILABLE',
  POOL_AT_CAPACITY: 'CAPACITY_EXCEEDED',
  QUEUE_FULL: 'CAPACITY_EXCEEDED',
  RESOURCE_PRESSURE: 'SERVICE_OVERLOADED',
  BUDGET_EXCEEDED: 'BUDGET_EXCEEDED',
  BREAKER_OPEN: 'SERVICE_UNAVAILABLE',
  ORCHESTRATOR_STOPPED: 'SERVICE_UNAVAILABLE',
  ORCHESTRATOR_NOT_STARTED: 'SERVICE_UNAVAILABLE',
  ORCHESTRATOR_HALTED: 'SERVICE_UNAVAILABLE',
  AGENT_NOT_FOUND: 'AGENT_NOT_FOUND',
  TASK_NOT_FOUND: 'TASK_NOT_FOUND',
  TASK_TIMEOUT: 'TASK_TIMEOUT',
  TASK_CANCELLED: 'TASK_CANCELLED',
  TASK_DEAD_LETTERED: 'TASK_FAILED',
  AGENT_CREATION_FAILED: 'AGENT_SPAWN_FAILED',
  DUPLICATE_AGENT: 'INTERNAL_ERROR',
  ILLEGAL_STATE_TRANSITION: 'INTERNAL_ERROR',
});

/** The code of an agent's own error in a task status. */
export const LEGACY_TASK_FAILED = 'TASK_FAILED';
/** The code of an unexpected error from a call. */
export const LEGACY_INTERNAL_ERROR = 'INTERNAL_ERROR';

/**
 * Whether a legacy answer is an error response (a task status that carries its task's `error` is not: it has a
 * `status`).
 */
export function isLegacyError(value: unknown): value is LegacyErrorResponse {
  if (typeof value !== 'object' || value === null || !Object.hasOwn(value, 'error') || Object.hasOwn(value, 'status')) return false;
  const error = (value as { error: unknown }).error;
  return typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string';
}

/** The legacy method `method` of `impl`, in whichever spelling it has, bound to it; `undefined` when it has neither. */
export function legacyMethod<M extends LegacyMethod>(impl: LegacyImplementation, method: M): LegacyOrchestrator[M] | undefined {
  const camel = (impl as unknown as Record<string, unknown>)[method];
  const fn = typeof camel === 'function' ? camel : (impl as unknown as Record<string, unknown>)[SNAKE_CASE[method]];
  return typeof fn === 'function' ? (fn.bind(impl) as LegacyOrchestrator[M]) : undefined;
}

/**
 * The snake_case aliases of the legacy calls, for classes that implement the camelCase ones (the adapter and the
 * router answer to both spellings).
 */
export abstract class LegacyCalls implements LegacyOrchestrator, LegacyOrchestratorSnake {
  abstract spawnAgent(role: string): Promise<LegacyResult<string>>;
  abstract delegateTaskToAgent(task: LegacyTask): Promise<LegacyResult<string>>;
  abstract getAgentStatus(agentId: string): Promise<LegacyResult<LegacyAgentStatus>>;
  abstract getTaskStatus(taskId: string): Promise<LegacyResult<LegacyTaskStatus>>;
  abstract shutdownAgent(agentId: string): Promise<LegacyResult<LegacyShutdown>>;
  abstract waitForTask(taskId: string, timeoutSeconds?: number): Promise<LegacyResult<LegacyTaskStatus>>;

  /** Alias of `spawnAgent`. */
  spawn_agent(role: string): Promise<LegacyResult<string>> {
    return this.spawnAgent(role);
  }

  /** Alias of `delegateTaskToAgent`. */
  delegate_task_to_agent(task: LegacyTask): Promise<LegacyResult<string>> {
    return this.delegateTaskToAgent(task);
  }

  /** Alias of `getAgentStatus`. */
  get_agent_status(agentId: string): Promise<LegacyResult<LegacyAgentStatus>> {
    return this.getAgentStatus(agentId);
  }

  /** Alias of `getTaskStatus`. */
  get_task_status(taskId: string): Promise<LegacyResult<LegacyTaskStatus>> {
    return this.getTaskStatus(taskId);
  }

  /** Alias of `shutdownAgent`. */
  shutdown_agent(agentId: string): Promise<LegacyResult<LegacyShutdown>> {
    return this.shutdownAgent(agentId);
  }

  /** Alias of `waitForTask`. */
  wait_for_task(taskId: string, timeoutSeconds?: number): Promise<LegacyResult<LegacyTaskStatus>> {
    return this.waitForTask(taskId, timeoutSeconds);
  }
}
