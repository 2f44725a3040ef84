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
  /**
   * The pool role that should run it: the task requires every capability of that pool (or of the role's entry in the
   * adapter's `roles`).
   */
  readonly role?: string;
  /** Capabilities the agent must all hold (added to the role's). */
  readonly capabilities?: readonly string[];
  /** The task type (metrics and SLA group by it). @default the adapter's `defaultType` ('legacy') */
  readonly type?: string;
  /** A named level or an integer; higher runs first (see {@link LEGACY_PRIORITIES}). @default 'normal' (0) */
  readonly priority?: LegacyPriority;
  /** Handed to the agent as `ctx.payload`. */
  readonly payload?: unknown;
  /** Seconds an attempt may run (fractions allowed, at most 2147483). @default the orchestrator's `defaultTimeoutMs` */
  readonly timeout?: number;
  /** Retries after the first attempt, 0 to 99. @default the orchestrator's `defaultMaxAttempts` - 1 */
  readonly max_retries?: number;
  /** `max_retries` in camelCase; read when `max_retries` is absent. */
  readonly maxRetries?: number;
  /** Whose task this is (the unified `tenantId`): fair queueing and per-tenant budgets. */
  readonly tenant_id?: string;
  /** `tenant_id` in camelCase; read when `tenant_id` is absent. */
  readonly tenantId?: string;
  /**
   * The caller's id for the task, at most 256 characters: a second delegation with the same id is the same task
   * (idempotency), and `delegateTaskToAgent` answers this id.
   */
  readonly task_id?: string;
  /** `task_id` in camelCase; read when `task_id` is absent. */
  readonly taskId?: string;
}

/** A legacy error answer: legacy calls answer errors instead of throwing them. */
export interface LegacyErrorResponse {
  /** What went wrong. */
  readonly error: {
    /** A legacy error code (see {@link LEGACY_ERROR_CODES}), for callers to branch on. */
    readonly code: string;
    /** What went wrong, for people. */
    readonly message: string;
  };
}

/** Either the call's value or a legacy error answer. */
export type LegacyResult<T> = T | LegacyErrorResponse;

/**
 * A legacy task's state: `pending` (waiting for an agent, also between attempts), `running`, then one of the terminal
 * states `completed`, `failed`, `cancelled` or `timeout`. The adapter answers `timeout` and `cancelled` for tasks that
 * ended with TASK_TIMEOUT or TASK_CANCELLED; a task allowed more than one attempt that fails for good is dead-lettered
 * instead, and answers `failed`.
 */
export type LegacyTaskState = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled' | 'timeout';

/** What `getTaskStatus` answers. */
export interface LegacyTaskStatus {
  /** The task's id, as `delegateTaskToAgent` answered it. */
  readonly task_id: string;
  /** Where the task is. */
  readonly status: LegacyTaskState;
  /** The agent running it or that ran it last; `null` before its first attempt. */
  readonly agent_id: string | null;
  /** Attempts started so far; 0 before the first. */
  readonly attempts: number;
  /** Set once completed. */
  readonly result?: unknown;
  /**
   * Set once failed, cancelled or timed out: its legacy code (`TASK_FAILED` for the agent's own error) and message.
   */
  readonly error?: LegacyErrorResponse['error'];
  /** When it was delegated, ISO 8601. */
  readonly created_at: string;
  /** When its status last changed, ISO 8601. */
  readonly updated_at: string;
}

/** A legacy agent's state: the unified agent state in lower case, with `starting` for `INITIALIZING`. */
export type LegacyAgentState = 'starting' | 'idle' | 'busy' | 'draining' | 'terminated' | 'unhealthy' | 'failed';

/** What `getAgentStatus` answers. */
export interface LegacyAgentStatus {
  /** The agent's id. */
  readonly agent_id: string;
  /** The role of its pool; `null` for an agent registered outside any pool. */
  readonly role: string | null;
  /** Its lifecycle state. */
  readonly status: LegacyAgentState;
  /** What it can do. */
  readonly capabilities: readonly string[];
  /** Tasks it is running now. */
  readonly active_tasks: number;
  /** Attempts that succeeded on it. */
  readonly completed_tasks: number;
  /** Attempts that failed or timed out on it. */
  readonly failed_tasks: number;
}

/** What `shutdownAgent` answers. */
export interface LegacyShutdown {
  /** The agent's id. */
  readonly agent_id: string;
  /** Always `terminated`: the answer comes once the agent is gone. */
  readonly status: 'terminated';
}

/** The legacy calls, camelCase. Every method answers with its value or a {@link LegacyErrorResponse}. */
export interface LegacyOrchestrator {
  /** Makes (or takes) an agent of `role` and answers its id. */
  spawnAgent(role: string): Promise<LegacyResult<string>>;
  /** Accepts a task and answers its id; the task runs in the background. */
  delegateTaskToAgent(task: LegacyTask): Promise<LegacyResult<string>>;
  /** An agent's state and counts. */
  getAgentStatus(agentId: string): Promise<LegacyResult<LegacyAgentStatus>>;
  /** A delegated task's status, with its result or error once it is terminal. */
  getTaskStatus(taskId: string): Promise<LegacyResult<LegacyTaskStatus>>;
  /** Stops an agent and removes it. */
  shutdownAgent(agentId: string): Promise<LegacyResult<LegacyShutdown>>;
  /**
   * Optional in legacy implementations: waits until the task is terminal (or `timeoutSeconds` passed) and answers its
   * status then.
   */
  waitForTask?(taskId: string, timeoutSeconds?: number): Promise<LegacyResult<LegacyTaskStatus>>;
}

/** The same calls, snake_case, as many legacy implementations spell them. */
export interface LegacyOrchestratorSnake {
  /** {@link LegacyOrchestrator.spawnAgent}. */
  spawn_agent(role: string): Promise<LegacyResult<string>>;
  /** {@link LegacyOrchestrator.delegateTaskToAgent}. */
  delegate_task_to_agent(task: LegacyTask): Promise<LegacyResult<string>>;
  /** {@link LegacyOrchestrator.getAgentStatus}. */
  get_agent_status(agentId: string): Promise<LegacyResult<LegacyAgentStatus>>;
  /** {@link LegacyOrchestrator.getTaskStatus}. */
  get_task_status(taskId: string): Promise<LegacyResult<LegacyTaskStatus>>;
  /** {@link LegacyOrchestrator.shutdownAgent}. */
  shutdown_agent(agentId: string): Promise<LegacyResult<LegacyShutdown>>;
  /** {@link LegacyOrchestrator.waitForTask} (optional too). */
  wait_for_task?(taskId: string, timeoutSeconds?: number): Promise<LegacyResult<LegacyTaskStatus>>;
}

/** A legacy implementation: an object with the legacy calls in either spelling. */
export type LegacyImplementation = LegacyOrchestrator | LegacyOrchestratorSnake;

/** The legacy call names, camelCase. */
export type LegacyMethod =
  'spawnAgent' | 'delegateTaskToAgent' | 'getAgentStatus' | 'getTaskStatus' | 'shutdownAgent' | 'waitForTask';

/** Each legacy call's snake_case name. */
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
  NO_CAPABLE_NODE: 'NO_AGENT_AVAILABLE',
  POOL_AT_CAPACITY: 'CAPACITY_EXCEEDED',
  QUEUE_FULL: 'CAPACITY_EXCEEDED',
  RESOURCE_PRESSURE: 'SERVICE_OVERLOADED',
  BUDGET_EXCEEDED: 'BUDGET_EXCEEDED',
  BREAKER_OPEN: 'SERVICE_UNAVAILABLE',
  BRIDGE_WRITE_FAILED: 'SERVICE_UNAVAILABLE',
  STORE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
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
  WORKFLOW_NONDETERMINISM: 'TASK_FAILED',
  WORKFLOW_LIMIT: 'BUDGET_EXCEEDED',
  WORKFLOW_STEP_FAILED: 'TASK_FAILED',
  SIGNAL_TIMEOUT: 'TASK_TIMEOUT',
  WORKFLOW_NOT_FOUND: 'INVALID_REQUEST',
  RUN_NOT_FOUND: 'TASK_NOT_FOUND',
  CLUSTER_LIMITS_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  REMOTE_TASK_FAILED: 'TASK_FAILED',
  TASK_DELIVERY_STALE: 'TASK_FAILED',
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
  if (typeof value !== 'object' || value === null || !Object.hasOwn(value, 'error') || Object.hasOwn(value, 'status'))
    return false;
  const error = (value as { error: unknown }).error;
  return typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string';
}

/** The legacy method `method` of `impl`, in whichever spelling it has, bound to it; `undefined` when it has neither. */
export function legacyMethod<M extends LegacyMethod>(
  impl: LegacyImplementation,
  method: M,
): LegacyOrchestrator[M] | undefined {
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
