/**
 * Every error the orchestrator raises is an {@link OrchestratorError} with a stable `code`.
 * Branch on `code` (or `instanceof`), never on the message text.
 *
 * @example
 * ```ts
 * try {
 *   await orchestrator.submit(task);
 * } catch (err) {
 *   if (isOrchestratorError(err) && err.code === 'QUEUE_FULL') retryLater();
 *   else throw err;
 * }
 * ```
 */

/** The stable codes of every error class, for exhaustive `switch` statements. */
export type OrchestratorErrorCode =
  | 'VALIDATION_ERROR'
  | 'NO_CAPABLE_AGENT'
  | 'NO_CAPABLE_NODE'
  | 'QUEUE_FULL'
  | 'ORCHESTRATOR_STOPPED'
  | 'ORCHESTRATOR_NOT_STARTED'
  | 'ORCHESTRATOR_HALTED'
  | 'TASK_TIMEOUT'
  | 'TASK_CANCELLED'
  | 'TASK_DEAD_LETTERED'
  | 'TASK_NOT_FOUND'
  | 'ILLEGAL_STATE_TRANSITION'
  | 'AGENT_NOT_FOUND'
  | 'DUPLICATE_AGENT'
  | 'UNKNOWN_ROLE'
  | 'POOL_AT_CAPACITY'
  | 'AGENT_CREATION_FAILED'
  | 'RESOURCE_PRESSURE'
  | 'BUDGET_EXCEEDED'
  | 'BREAKER_OPEN'
  | 'BRIDGE_WRITE_FAILED'
  | 'STORE_UNAVAILABLE'
  | 'WORKFLOW_NONDETERMINISM'
  | 'WORKFLOW_LIMIT'
  | 'WORKFLOW_STEP_FAILED'
  | 'SIGNAL_TIMEOUT'
  | 'WORKFLOW_NOT_FOUND'
  | 'RUN_NOT_FOUND'
  | 'CLUSTER_LIMITS_UNAVAILABLE'
  | 'REMOTE_TASK_FAILED'
  | 'TASK_DELIVERY_STALE';

/** Every {@link OrchestratorErrorCode}, as a set (the record makes the compiler check that none is missing). */
const ERROR_CODES: ReadonlySet<string> = new Set(
  Object.keys({
    VALIDATION_ERROR: true,
    NO_CAPABLE_AGENT: true,
    NO_CAPABLE_NODE: true,
    QUEUE_FULL: true,
    ORCHESTRATOR_STOPPED: true,
    ORCHESTRATOR_NOT_STARTED: true,
    ORCHESTRATOR_HALTED: true,
    TASK_TIMEOUT: true,
    TASK_CANCELLED: true,
    TASK_DEAD_LETTERED: true,
    TASK_NOT_FOUND: true,
    ILLEGAL_STATE_TRANSITION: true,
    AGENT_NOT_FOUND: true,
    DUPLICATE_AGENT: true,
    UNKNOWN_ROLE: true,
    POOL_AT_CAPACITY: true,
    AGENT_CREATION_FAILED: true,
    RESOURCE_PRESSURE: true,
    BUDGET_EXCEEDED: true,
    BREAKER_OPEN: true,
    BRIDGE_WRITE_FAILED: true,
    STORE_UNAVAILABLE: true,
    WORKFLOW_NONDETERMINISM: true,
    WORKFLOW_LIMIT: true,
    WORKFLOW_STEP_FAILED: true,
    SIGNAL_TIMEOUT: true,
    WORKFLOW_NOT_FOUND: true,
    RUN_NOT_FOUND: true,
    REMOTE_TASK_FAILED: true,
    TASK_DELIVERY_STALE: true,
    CLUSTER_LIMITS_UNAVAILABLE: true,
  } satisfies Record<OrchestratorErrorCode, true>),
);

/** Whether `value` is one of the library's stable error codes (an {@link OrchestratorErrorCode}). */
export function isOrchestratorErrorCode(value: unknown): value is OrchestratorErrorCode {
  return typeof value === 'string' && ERROR_CODES.has(value);
}

/** Base class of every error the library raises. */
export class OrchestratorError extends Error {
  /** Stable machine-readable code; never changes between versions. */
  readonly code: OrchestratorErrorCode;

  constructor(code: OrchestratorErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * True when `value` is an error raised by this library; narrows it to {@link OrchestratorError}, so `code` can be
 * switched on. For the fields of one class, test it with `instanceof`.
 *
 * @example
 * ```ts
 * orchestrator.submit(task).catch((err: unknown) => {
 *   if (!isOrchestratorError(err)) throw err; // the agent's own error
 *   switch (err.code) {
 *     case 'QUEUE_FULL':
 *     case 'RESOURCE_PRESSURE':
 *       return retryLater(task);
 *     case 'BUDGET_EXCEEDED':
 *       if (err instanceof BudgetExceededError) notifyTenant(err.tenantId, err.spent, err.limit);
 *       return;
 *     default:
 *       throw err;
 *   }
 * });
 * ```
 */
export function isOrchestratorError(value: unknown): value is OrchestratorError {
  return value instanceof OrchestratorError;
}

/** Input of the wrong shape: a task, an option or an argument. `field` names what to fix. */
export class ValidationError extends OrchestratorError {
  /** Dotted path of the offending field, for example `pools[1].maxAgents` or `task.requires[0]`. */
  readonly field: string;

  constructor(field: string, message: string) {
    super('VALIDATION_ERROR', message);
    this.field = field;
  }
}

/** No registered agent and no declared pool holds every capability the task requires. */
export class NoCapableAgentError extends OrchestratorError {
  /** The capabilities the task required. */
  readonly requires: readonly string[];

  constructor(requires: readonly string[]) {
    super(
      'NO_CAPABLE_AGENT',
      `No agent or pool holds every required capability [${requires.join(', ')}]; ` +
        'declare a pool or register an agent with these capabilities, or relax `requires`',
    );
    this.requires = requires;
  }
}

/**
 * A task handed to the cluster waited `waitedMs` for a live node that serves `requires` and none came (the cluster's
 * `waitForNodeMs`): no node served it, and none will. Start a node with an agent or pool that holds these capabilities
 * (or check the spelling of `requires`), or raise `cluster.waitForNodeMs`.
 */
export class NoCapableNodeError extends OrchestratorError {
  /** The task that no node served. */
  readonly taskId: string;
  /** The capabilities the task required. */
  readonly requires: readonly string[];
  /** How long it waited for such a node, in ms. */
  readonly waitedMs: number;

  constructor(taskId: string, requires: readonly string[], waitedMs: number) {
    super(
      'NO_CAPABLE_NODE',
      `Task ${taskId} waited ${Math.round(waitedMs)} ms and no live node of the cluster serves [${requires.join(', ')}]; ` +
        'start a node with an agent or pool holding these capabilities (or check `requires`), or raise `cluster.waitForNodeMs`',
    );
    this.taskId = taskId;
    this.requires = requires;
    this.waitedMs = waitedMs;
  }
}

/**
 * A bound on waiting work was reached; the task was not accepted. `limit` names the option that set it: the waiting
 * queue (`maxQueueSize`, which also bounds the hand-offs of a node waiting for a result) or the backlog of a RedisBridge
 * task stream (`maxStreamBacklog`).
 */
export class QueueFullError extends OrchestratorError {
  /** The limit that was reached (the value of the option `limit` names). */
  readonly maxQueueSize: number;
  /** The option that set the limit: `maxQueueSize` (the default) or `maxStreamBacklog`. */
  readonly limit: 'maxQueueSize' | 'maxStreamBacklog';

  /** `message` says which bound was reached and how to raise it; by default the waiting queue's. */
  constructor(
    maxQueueSize: number,
    message = `The waiting queue is full (maxQueueSize ${maxQueueSize}); retry later, add agents or raise maxQueueSize`,
    limit: 'maxQueueSize' | 'maxStreamBacklog' = 'maxQueueSize',
  ) {
    super('QUEUE_FULL', message);
    this.maxQueueSize = maxQueueSize;
    this.limit = limit;
  }
}

/** The orchestrator is stopping or stopped and accepts no new work. */
export class OrchestratorStoppedError extends OrchestratorError {
  constructor(message = 'The orchestrator is stopped or stopping and accepts no new work') {
    super('ORCHESTRATOR_STOPPED', message);
  }
}

/** Work was submitted before `start()` resolved. */
export class OrchestratorNotStartedError extends OrchestratorError {
  constructor(message = 'The orchestrator is not started; await orchestrator.start() before submitting work') {
    super('ORCHESTRATOR_NOT_STARTED', message);
  }
}

/**
 * The reason an attempt's `ctx.signal` is aborted with when an operator halts the orchestrator (or the cluster). The
 * task itself is not failed: it waits again, held until `resume()`, and the interrupted attempt does not count
 * against its `maxAttempts`.
 */
export class OrchestratorHaltedError extends OrchestratorError {
  /** Why it was halted, as given to `halt()`. */
  readonly reason: string;

  constructor(reason: string) {
    super('ORCHESTRATOR_HALTED', `The orchestrator was halted (${reason}); the task waits until it is resumed`);
    this.reason = reason;
  }
}

/** An attempt ran past its `timeoutMs`, or the task past its `deadlineMs` (see `scope`); the agent's `ctx.signal` was aborted with this error. */
export class TaskTimeoutError extends OrchestratorError {
  /** The task that timed out. */
  readonly taskId: string;
  /** The limit it ran past, in ms: the per-attempt `timeoutMs`, or the task's `deadlineMs` (see `scope`). */
  readonly timeoutMs: number;
  /**
   * The attempt that timed out, from 1; with `scope` `'task'`, the attempts started (0 if it never ran, and for a
   * task handed to another node, whose attempts this node does not see).
   */
  readonly attempt: number;
  /**
   * `'attempt'`: one attempt ran past `timeoutMs` (the task may be retried). `'task'`: the whole task ran past its
   * `deadlineMs`, waiting and backoff included, and ends here.
   */
  readonly scope: 'attempt' | 'task';

  constructor(taskId: string, timeoutMs: number, attempt: number, scope: 'attempt' | 'task' = 'attempt') {
    super(
      'TASK_TIMEOUT',
      scope === 'attempt'
        ? `Task ${taskId} attempt ${attempt} timed out after ${timeoutMs} ms`
        : `Task ${taskId} ran past its deadline of ${timeoutMs} ms (waiting, ${attempt} attempt(s) and backoff included)`,
    );
    this.taskId = taskId;
    this.timeoutMs = timeoutMs;
    this.attempt = attempt;
    this.scope = scope;
  }
}

/**
 * The task was cancelled: by `handle.cancel()` or `orchestrator.cancel()`, its `signal`, a stop (without drain, or
 * with work left when draining ended), or its tenant's budget halt (`budgets.haltOnExceeded`). `cause` is the
 * reason: the one given, the signal's, an OrchestratorStoppedError, or the BudgetExceededError.
 */
export class TaskCancelledError extends OrchestratorError {
  /** The cancelled task. */
  readonly taskId: string;

  constructor(taskId: string, reason?: unknown) {
    const why = messageOf(reason);
    super('TASK_CANCELLED', `Task ${taskId} was cancelled${why ? `: ${why}` : ''}`, { cause: reason });
    this.taskId = taskId;
  }
}

/** One attempt of a task, as kept in its history. */
export interface AttemptRecord {
  /** The attempt's number, from 1. */
  readonly attempt: number;
  /** The agent that ran the attempt. */
  readonly agentId: string;
  /** When it started, in ms of the `clock` option (`performance.now()` by default), not epoch ms. */
  readonly startedAt: number;
  /** How long it ran until it failed or timed out, in ms. */
  readonly durationMs: number;
  /** `undefined` only for the successful attempt, which is never part of a dead letter. */
  readonly error: unknown;
}

/**
 * The task gave up after failed attempts and is in the dead-letter list with its history. `cause` is why it gave
 * up: the last attempt's error, or NoCapableAgentError when no agent that could retry it was left.
 */
export class TaskDeadLetteredError extends OrchestratorError {
  /** The dead-lettered task: pass it to `retryDeadLetter` to run it again. */
  readonly taskId: string;
  /** Its failed attempts, oldest first. */
  readonly attempts: readonly AttemptRecord[];

  constructor(
    taskId: string,
    attempts: readonly AttemptRecord[],
    reason: unknown = attempts[attempts.length - 1]?.error,
  ) {
    const message = messageOf(reason, false);
    super(
      'TASK_DEAD_LETTERED',
      `Task ${taskId} failed ${attempts.length} attempt(s) and was dead-lettered${message ? `: ${message}` : ''}`,
      { cause: reason },
    );
    this.taskId = taskId;
    this.attempts = attempts;
  }
}

/** A dead letter, task or handle lookup named an id the orchestrator does not hold. */
export class TaskNotFoundError extends OrchestratorError {
  /** The id that was not found. */
  readonly taskId: string;

  constructor(taskId: string, where = 'the dead-letter list') {
    super('TASK_NOT_FOUND', `No task ${taskId} in ${where}`);
    this.taskId = taskId;
  }
}

/** An agent lifecycle transition that the state machine does not allow. */
export class IllegalStateTransitionError extends OrchestratorError {
  /** The agent concerned. */
  readonly agentId: string;
  /** Its state (an {@link AgentState}). */
  readonly from: string;
  /** The state it was asked to move to. */
  readonly to: string;

  constructor(agentId: string, from: string, to: string) {
    super('ILLEGAL_STATE_TRANSITION', `Agent ${agentId} cannot go from ${from} to ${to}`);
    this.agentId = agentId;
    this.from = from;
    this.to = to;
  }
}

/** No agent with this id is registered. */
export class AgentNotFoundError extends OrchestratorError {
  /** The id that was not found. */
  readonly agentId: string;

  constructor(agentId: string, message = `No agent with id ${JSON.stringify(agentId)} is registered`) {
    super('AGENT_NOT_FOUND', message);
    this.agentId = agentId;
  }
}

/** An agent with this id is already registered. */
export class DuplicateAgentError extends OrchestratorError {
  /** The id already taken. */
  readonly agentId: string;

  constructor(agentId: string) {
    super(
      'DUPLICATE_AGENT',
      `An agent with id ${JSON.stringify(agentId)} is already registered; pick another id or omit it`,
    );
    this.agentId = agentId;
  }
}

/** No pool is declared for this role. */
export class UnknownRoleError extends OrchestratorError {
  /** The role asked for. */
  readonly role: string;

  constructor(role: string, known: readonly string[]) {
    super(
      'UNKNOWN_ROLE',
      `No pool is declared for role ${JSON.stringify(role)}; declared roles: [${known.join(', ')}]`,
    );
    this.role = role;
  }
}

/** The pool already holds `maxAgents` agents. */
export class PoolAtCapacityError extends OrchestratorError {
  /** The pool's role. */
  readonly role: string;
  /** Its `maxAgents`. */
  readonly maxAgents: number;

  constructor(role: string, maxAgents: number) {
    super(
      'POOL_AT_CAPACITY',
      `Pool ${JSON.stringify(role)} already holds its maximum of ${maxAgents} agents; raise maxAgents`,
    );
    this.role = role;
    this.maxAgents = maxAgents;
  }
}

/**
 * A pool could not make an agent: its `create()` failed every attempt (threw, rejected, hung, returned no
 * `execute`, or made an agent that failed its first health check), or the pool makes none while its recovery budget
 * is spent (`attempts` is then 0).
 */
export class AgentCreationError extends OrchestratorError {
  /** The pool's role. `cause` is the last attempt's error (or why none was made). */
  readonly role: string;
  /** Attempts made (0 when the pool made none: its recovery budget is spent). */
  readonly attempts: number;

  constructor(role: string, attempts: number, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(
      'AGENT_CREATION_FAILED',
      `Pool ${JSON.stringify(role)} could not create an agent after ${attempts} attempt(s): ${why}`,
      {
        cause,
      },
    );
    this.role = role;
    this.attempts = attempts;
  }
}

/**
 * The host is under memory or CPU pressure: under critical pressure tasks below the priority floor are refused,
 * and under any pressure no agent is created for `spawnAgent` (a warm spare is still handed out).
 */
export class ResourcePressureError extends OrchestratorError {
  /** The pressure level at the time. */
  readonly level: 'elevated' | 'critical';
  /** The refused task's priority; `undefined` for a refused agent creation. */
  readonly priority: number | undefined;
  /** The floor the task's priority was below (`pressure.priorityFloor`); `undefined` for a refused agent creation. */
  readonly priorityFloor: number | undefined;

  constructor(level: 'elevated' | 'critical', refused: { priority: number; priorityFloor: number } | 'agent creation') {
    const what =
      refused === 'agent creation'
        ? 'no new agent is created (a warm spare would have been handed out)'
        : `task priority ${refused.priority} is below the floor of ${refused.priorityFloor}`;
    super(
      'RESOURCE_PRESSURE',
      `Refused under ${level} resource pressure: ${what}; retry later, raise the priority of work that must run, ` +
        'or raise pressure.memoryLimitBytes / pressure.cpuLimitPercent',
    );
    this.level = level;
    this.priority = refused === 'agent creation' ? undefined : refused.priority;
    this.priorityFloor = refused === 'agent creation' ? undefined : refused.priorityFloor;
  }
}

/** The tenant spent its cost budget for the current window; its new tasks are refused until spend falls back under it. */
export class BudgetExceededError extends OrchestratorError {
  /** The tenant over budget. */
  readonly tenantId: string;
  /** Units it spent in the current window. */
  readonly spent: number;
  /** Its limit per window, in units. */
  readonly limit: number;
  /** The budget window, in ms. */
  readonly windowMs: number;
  /**
   * Ms until enough of the tenant's spend leaves the window for it to be under its limit again: a Retry-After for
   * the caller (`retryAfterMs(error)` reads it). `undefined` when that will not happen by itself (a limit of 0).
   */
  readonly retryAfterMs: number | undefined;

  constructor(tenantId: string, spent: number, limit: number, windowMs: number, retryAfterMs?: number) {
    super(
      'BUDGET_EXCEEDED',
      `Tenant ${JSON.stringify(tenantId)} spent ${spent} of its budget of ${limit} units in the last ${windowMs} ms; ` +
        (retryAfterMs === undefined ? 'wait for the window to move on' : `it is under again in ${retryAfterMs} ms`) +
        ' or raise its limit with resources.setBudget()',
    );
    this.tenantId = tenantId;
    this.spent = spent;
    this.limit = limit;
    this.windowMs = windowMs;
    this.retryAfterMs = retryAfterMs;
  }
}

/** A named dependency's circuit breaker is open and the call has no fallback: it failed fast without calling out. */
export class BreakerOpenError extends OrchestratorError {
  /** The name the dependency's breaker was given in `resources.breaker(name, …)`. */
  readonly breaker: string;

  constructor(breaker: string) {
    super(
      'BREAKER_OPEN',
      `The circuit breaker ${JSON.stringify(breaker)} is open after repeated failures; the call was not made. Retry after its reset timeout or pass a fallback`,
    );
    this.breaker = breaker;
  }
}

/**
 * Redis refused a write of the RedisBridge, or the write could not reach it: the hand-off it carried was not sent
 * (results, whose writes are retried, never end in it). `reply` is Redis's own error text, for example
 * `OOM command not allowed when used memory > 'maxmemory'` or `WRONGTYPE Operation against a key holding the wrong
 * kind of value`; the message says what to do about it.
 */
export class BridgeWriteError extends OrchestratorError {
  /** The Redis command that failed, for example `XADD`. */
  readonly command: string;
  /** The key it wrote. */
  readonly key: string;
  /** The error Redis replied with (or why the command did not reach Redis). */
  readonly reply: string;

  constructor(command: string, key: string, reply: string, cause?: unknown) {
    super(
      'BRIDGE_WRITE_FAILED',
      `Redis refused the bridge's ${command} to ${JSON.stringify(key)} (${reply}); ${writeAdvice(reply)}`,
      { cause },
    );
    this.command = command;
    this.key = key;
    this.reply = reply;
  }
}

/**
 * The durable store could not be reached, or refused the write: for a submit, the task was not stored and not
 * accepted (nothing of it was written); retry it once the store is back. `operation` names what failed (`insert`,
 * `append`, `claim`, …); the message carries the driver's reason.
 */
export class StoreUnavailableError extends OrchestratorError {
  /** The store operation that failed. */
  readonly operation: string;

  constructor(operation: string, reason: string, cause?: unknown) {
    super(
      'STORE_UNAVAILABLE',
      `The durable store failed its ${operation} (${reason}); check that the database is up and reachable (its log, max_connections, disk), then retry`,
      { cause },
    );
    this.operation = operation;
  }
}

/**
 * A workflow called a step other than the one its history has at that position: its code changed under a running
 * run (register the change as a new `version`), or it depends on something that is not the same on a replay (the
 * clock, randomness, a read outside a step). The run ends `failed`; nothing more of it runs.
 */
export class WorkflowNonDeterminismError extends OrchestratorError {
  /** The position in the run where they differ. */
  readonly seq: number;
  /** The step the history has there (`kind:name`), or `null` when it has fewer steps. */
  readonly stored: string | null;
  /** The step the code called there (`kind:name`), or `null` when the code ended first. */
  readonly called: string | null;

  constructor(runId: string, seq: number, stored: string | null, called: string | null, detail?: string) {
    super(
      'WORKFLOW_NONDETERMINISM',
      `Workflow run ${runId} is not deterministic at step ${seq}: its history has ${stored ?? 'nothing'} there but the code called ${called ?? 'nothing'}${detail ? ` (${detail})` : ''}. Steps must be called in the same order with the same names on every replay: register changed code under a new version, and keep clocks, randomness and reads inside run.step()`,
    );
    this.seq = seq;
    this.stored = stored;
    this.called = called;
  }
}

/** A workflow run reached one of its limits (`maxSteps` or its cost `budget`) and was ended before its next step. */
export class WorkflowLimitError extends OrchestratorError {
  /** Which limit. */
  readonly limit: 'steps' | 'budget';
  /** The limit's value. */
  readonly max: number;
  /** Where the run was: steps called, or cost spent. */
  readonly reached: number;

  constructor(runId: string, limit: 'steps' | 'budget', max: number, reached: number) {
    super(
      'WORKFLOW_LIMIT',
      limit === 'steps'
        ? `Workflow run ${runId} called more than maxSteps (${max}) steps and was stopped: bound its loops, or raise maxSteps`
        : `Workflow run ${runId} spent ${reached} cost units, over its budget of ${max}, and was stopped before its next step: raise the workflow's budget, or make its steps cheaper`,
    );
    this.limit = limit;
    this.max = max;
    this.reached = reached;
  }
}

/**
 * A workflow step failed: what `run.task()` and `run.step()` throw when their task or function failed, the first
 * time and on every replay alike (so the workflow sees the same thing either way). `reason` is the step's error as
 * stored (name, message, code); `cause` is the error itself the first time only.
 */
export class WorkflowStepError extends OrchestratorError {
  /** The step's name. */
  readonly step: string;
  /** The step's error as stored. */
  readonly reason: {
    /** The error's class name. */
    readonly name: string;
    /** Its message. */
    readonly message: string;
    /** Its OrchestratorError code, or `null`. */
    readonly code: string | null;
  };

  constructor(
    step: string,
    reason: { readonly name: string; readonly message: string; readonly code: string | null },
    cause?: unknown,
  ) {
    super(
      'WORKFLOW_STEP_FAILED',
      `Step '${step}' failed: ${reason.name}${reason.code ? ` (${reason.code})` : ''}: ${reason.message}`,
      cause === undefined ? undefined : { cause },
    );
    this.step = step;
    this.reason = reason;
  }
}

/** No signal of that name reached the run within the wait's `timeoutMs` (thrown by `run.signal()`). */
export class SignalTimeoutError extends OrchestratorError {
  /** The signal waited for. */
  readonly signal: string;

  constructor(signal: string, timeoutMs: number | null) {
    super(
      'SIGNAL_TIMEOUT',
      `No signal '${signal}' arrived${timeoutMs === null ? '' : ` within ${timeoutMs} ms`}: catch this error in the workflow to go on without it, or wait longer`,
    );
    this.signal = signal;
  }
}

/** `startWorkflow()` named a workflow (or version) this node has not registered. */
export class WorkflowNotFoundError extends OrchestratorError {
  /** The workflow's name. */
  readonly workflow: string;

  constructor(workflow: string, registered: readonly string[], version?: string) {
    super(
      'WORKFLOW_NOT_FOUND',
      `No workflow '${workflow}'${version === undefined ? '' : ` version '${version}'`} is registered here (registered: ${registered.length === 0 ? 'none' : registered.join(', ')}): call orchestrator.workflow('${workflow}', …) before starting it, or pass the version a node of the cluster has`,
    );
    this.workflow = workflow;
  }
}

/** A signal (or another run operation) named a run the store does not hold, or holds for another tenant. */
export class RunNotFoundError extends OrchestratorError {
  /** The run id. */
  readonly runId: string;

  constructor(runId: string, detail = 'no such run (or it belongs to another tenant, or was pruned)') {
    super('RUN_NOT_FOUND', `Run ${runId}: ${detail}`);
    this.runId = runId;
  }
}

/**
 * A task of a tenant with a budget was refused because the cluster-wide budgets (kept in Redis by a RedisBridge) cannot
 * be read now: Redis does not answer. Budgets fail closed, so that no node spends past a tenant's limit unseen; the
 * refusal ends as soon as Redis answers again. Retry the task later (`retryAfterMs` says when the next check is).
 */
export class ClusterLimitsUnavailableError extends OrchestratorError {
  /** The tenant whose task was refused. */
  readonly tenantId: string;
  /** Ms until this node asks Redis again: a Retry-After for the caller. */
  readonly retryAfterMs: number;

  constructor(tenantId: string, retryAfterMs: number, detail: string) {
    super(
      'CLUSTER_LIMITS_UNAVAILABLE',
      `Tenant ${JSON.stringify(tenantId)} has a budget, and the cluster's budgets in Redis cannot be read now (${detail}); ` +
        `budgets fail closed while Redis is away: retry in ${retryAfterMs} ms, or check Redis`,
    );
    this.tenantId = tenantId;
    this.retryAfterMs = retryAfterMs;
  }
}

/** What to do about a refused write, by the prefix of Redis's reply. */
function writeAdvice(reply: string): string {
  const kind = /^[A-Z]+/.exec(reply)?.[0];
  switch (kind) {
    case 'OOM':
      return 'Redis is at its maxmemory: raise maxmemory, free memory in Redis, or lower the load; the task was not handed off, retry it later';
    case 'WRONGTYPE':
      return "another application wrote a key of another type under the bridge's namespace: give the bridge its own `namespace` (or Redis database), or delete the key";
    case 'READONLY':
      return 'the bridge is connected to a read-only replica: point its `url` at the primary';
    case 'NOPERM':
    case 'NOAUTH':
      return "the bridge's Redis user may not run this command or write this key: grant it the namespace's keys and the stream commands";
    case 'MISCONF':
      return 'Redis refuses writes because it cannot persist (stop-writes-on-bgsave-error): fix its disk or persistence settings';
    default:
      return 'check the Redis server (its log, INFO memory, INFO persistence) and retry the task once it accepts writes';
  }
}

/**
 * `value instanceof type`, but false instead of a throw for a value that cannot be inspected (a Proxy whose
 * `getPrototypeOf` trap throws): agents may fail with anything, and the orchestrator must still conclude the task.
 */
export function isInstance<T>(value: unknown, type: abstract new (...args: never[]) => T): value is T {
  try {
    return value instanceof type;
  } catch {
    return false;
  }
}

/** The message of an Error (or a string, when `strings`), read defensively; `undefined` when there is none or it throws. */
export function messageOf(reason: unknown, strings = true): string | undefined {
  try {
    if (reason instanceof Error) return String(reason.message);
    return strings && typeof reason === 'string' ? reason : undefined;
  } catch {
    return undefined;
  }
}
