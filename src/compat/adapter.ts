/**
 * OrchestratorsCompatibilityAdapter: the legacy calls (`spawnAgent`, `delegateTaskToAgent`, status and shutdown, and
 * their snake_case aliases) over a UnifiedOrchestrator, with legacy tasks mapped to unified ones and unified errors
 * to the legacy `{ error: { code, message } }` answer.
 */
import { UnknownRoleError, ValidationError, type OrchestratorErrorCode } from '../errors.js';
import type { OrchestratorEvents } from '../events.js';
import type { Task, TaskHandle } from '../engine/task.js';
import type { UnifiedOrchestrator } from '../orchestrator/orchestrator.js';
import type { RunEvent, RunRecord, RunStatus } from '../store/store.js';
import type { AgentSnapshot } from '../pool/agent-record.js';
import {
  LEGACY_ERROR_CODES,
  LEGACY_INTERNAL_ERROR,
  LEGACY_PRIORITIES,
  LEGACY_TASK_FAILED,
  LegacyCalls,
  type LegacyAgentState,
  type LegacyAgentStatus,
  type LegacyErrorResponse,
  type LegacyResult,
  type LegacyShutdown,
  type LegacyTask,
  type LegacyTaskState,
  type LegacyTaskStatus,
} from './legacy.js';
import { Fifo } from '../util/fifo.js';
import { resolveAdapterOptions, type CompatibilityAdapterOptions, type ResolvedAdapterOptions } from './options.js';

const AGENT_STATES: Readonly<Record<AgentSnapshot['state'], LegacyAgentState>> = {
  INITIALIZING: 'starting',
  IDLE: 'idle',
  BUSY: 'busy',
  DRAINING: 'draining',
  TERMINATED: 'terminated',
  UNHEALTHY: 'unhealthy',
  FAILED: 'failed',
};

/** The legacy state of a stored run. */
const RUN_STATES: Readonly<Record<RunStatus, LegacyTaskState>> = {
  queued: 'pending',
  running: 'running',
  completed: 'completed',
  failed: 'failed',
  'dead-lettered': 'failed',
  'timed-out': 'timeout',
  cancelled: 'cancelled',
};

/** The error code of a stored run that ended without one of its own. */
const RUN_ERROR_CODES: Partial<Record<RunStatus, string>> = {
  'timed-out': 'TASK_TIMEOUT',
  cancelled: 'TASK_CANCELLED',
};

const TASK_KEYS: ReadonlySet<string> = new Set([
  'role',
  'capabilities',
  'type',
  'priority',
  'payload',
  'timeout',
  'max_retries',
  'maxRetries',
  'tenant_id',
  'tenantId',
  'task_id',
  'taskId',
]);

/** The adapter's record of a delegated task: what `getTaskStatus` answers. */
interface TaskEntry {
  readonly id: string;
  /** The orchestrator's id (differs from `id` when the caller gave a `task_id`). */
  readonly unifiedId: string;
  status: LegacyTaskState;
  agentId: string | null;
  attempts: number;
  result?: unknown;
  error?: LegacyErrorResponse['error'];
  readonly createdAt: number;
  updatedAt: number;
  /** Settles when the task is terminal. */
  settled: Promise<void>;
}

/**
 * The legacy orchestrator API over a {@link UnifiedOrchestrator}. Every call answers with its value or with
 * `{ error: { code, message } }` (codes in {@link LEGACY_ERROR_CODES}); none throws.
 *
 * @example
 * ```ts
 * const legacyApi = new OrchestratorsCompatibilityAdapter(orchestrator);
 * const taskId = await legacyApi.delegate_task_to_agent({ role: 'writer', payload: 'draft', priority: 'high', timeout: 30 });
 * const status = await legacyApi.waitForTask(taskId as string);
 * ```
 */
export class OrchestratorsCompatibilityAdapter extends LegacyCalls {
  readonly #orchestrator: UnifiedOrchestrator;
  readonly #options: ResolvedAdapterOptions;
  /** Pool role → its capabilities, read on first use (pools are fixed when the orchestrator is made). */
  #poolRoles: ReadonlyMap<string, readonly string[]> | undefined;
  /** Tasks by the id handed to the caller. */
  readonly #tasks = new Map<string, TaskEntry>();
  /** Live tasks by the orchestrator's id, for its events. */
  readonly #live = new Map<string, TaskEntry>();
  /** Finished tasks in the order they finished, with when they expire. */
  readonly #finished = new Fifo<{ readonly entry: TaskEntry; readonly expiresAt: number }>();
  /** A task that started inside `delegate()`, before its entry existed. */
  #startedEarly: OrchestratorEvents['task:started'] | undefined;
  readonly #onStarted = (e: OrchestratorEvents['task:started']): void => {
    const entry = this.#live.get(e.taskId);
    if (!entry) {
      this.#startedEarly = e;
      return;
    }
    this.#started(entry, e);
  };
  #started(entry: TaskEntry, e: OrchestratorEvents['task:started']): void {
    entry.status = 'running';
    entry.agentId = e.agentId;
    entry.attempts = e.attempt;
    entry.updatedAt = Date.now();
  }
  /** Back in a queue: after a failed attempt, or interrupted by a halt. */
  readonly #onWaiting = (e: { readonly taskId: string }): void => {
    const entry = this.#live.get(e.taskId);
    if (!entry) return;
    entry.status = 'pending';
    entry.updatedAt = Date.now();
  };
  #closed = false;
  /** Whether the orchestrator has a store (fixed when it is made; read on first use). */
  #durable: boolean | undefined;

  /** Listens to `orchestrator`'s task events until {@link close}. Throws ValidationError for bad options. */
  constructor(orchestrator: UnifiedOrchestrator, options: CompatibilityAdapterOptions = {}) {
    super();
    if (
      typeof orchestrator !== 'object' ||
      orchestrator === null ||
      typeof (orchestrator as { delegate?: unknown }).delegate !== 'function'
    ) {
      throw new ValidationError('orchestrator', 'Expected a UnifiedOrchestrator as the first argument');
    }
    this.#orchestrator = orchestrator;
    this.#options = resolveAdapterOptions(options);
    orchestrator
      .on('task:started', this.#onStarted)
      .on('task:retrying', this.#onWaiting)
      .on('task:queued', this.#onWaiting);
  }

  /** Takes the ready agent of `role`'s pool (see `UnifiedOrchestrator.spawnAgent`) and answers its id. */
  async spawnAgent(role: string): Promise<LegacyResult<string>> {
    if (typeof role !== 'string' || role === '')
      return this.#invalid('role', 'Expected `role` to be a non-empty string naming a pool');
    try {
      return await this.#orchestrator.spawnAgent(role);
    } catch (error) {
      return this.toLegacyError(error);
    }
  }

  /**
   * Accepts a legacy task and answers its id (the caller's `task_id` when it gave one: a second delegation with the
   * same id answers the same task). Read the outcome with `getTaskStatus` or `waitForTask`. When the orchestrator
   * has a `store`, answers once the task is stored (SERVICE_UNAVAILABLE when the store did not take it).
   */
  async delegateTaskToAgent(task: LegacyTask): Promise<LegacyResult<string>> {
    let unified: Task;
    let callerId: string | undefined;
    try {
      ({ task: unified, callerId } = this.#toUnified(task));
    } catch (error) {
      return this.toLegacyError(error);
    }
    if (callerId !== undefined) {
      this.#sweep(Date.now());
      if (this.#tasks.has(callerId)) return callerId;
    }
    let handle: TaskHandle;
    this.#startedEarly = undefined;
    try {
      handle = this.#orchestrator.delegate(unified);
    } catch (error) {
      return this.toLegacyError(error);
    }
    const entry = this.#track(handle, callerId ?? handle.id);
    // A free agent took it at once, inside delegate(): its start event came before the entry.
    const early = this.#startedEarly as OrchestratorEvents['task:started'] | undefined;
    if (early?.taskId === handle.id) this.#started(entry, early);
    this.#startedEarly = undefined;
    // With a store the id is answered once the task is stored, so that it can be found again after a restart.
    const stored = (handle as { stored?: Promise<string> }).stored;
    if (stored) {
      try {
        await stored;
      } catch (error) {
        // Not accepted: forget it, so that the caller may delegate the same `task_id` again.
        if (this.#tasks.get(entry.id) === entry) this.#tasks.delete(entry.id);
        this.#live.delete(entry.unifiedId);
        return this.toLegacyError(error);
      }
    }
    return callerId ?? handle.id;
  }

  /**
   * The status of a task delegated through this adapter; TASK_NOT_FOUND for others, and for finished ones past
   * `finishedTaskTtlMs` or `maxFinishedTasks`. When the orchestrator has a `store`, a task this adapter does not hold
   * is read from the store (a task delegated before a restart, or through another node's adapter), by the id
   * `delegateTaskToAgent` answered when the caller gave no `task_id`.
   */
  async getTaskStatus(taskId: string): Promise<LegacyResult<LegacyTaskStatus>> {
    if (typeof taskId !== 'string' || taskId === '')
      return this.#invalid('task_id', 'Expected `task_id` to be a non-empty string');
    this.#sweep(Date.now());
    const entry = this.#tasks.get(taskId);
    if (entry) return statusOf(entry);
    return (await this.#stored(taskId)) ?? this.#unknownTask(taskId);
  }

  /**
   * Waits until the task is terminal and answers its final status; after `timeoutSeconds` (when given) answers its
   * status as it is then. With a `store`, a task this adapter does not hold is followed in the store (as
   * `getTaskStatus` reads it), wherever it runs.
   */
  async waitForTask(taskId: string, timeoutSeconds?: number): Promise<LegacyResult<LegacyTaskStatus>> {
    if (typeof taskId !== 'string' || taskId === '')
      return this.#invalid('task_id', 'Expected `task_id` to be a non-empty string');
    if (
      timeoutSeconds !== undefined &&
      !(typeof timeoutSeconds === 'number' && timeoutSeconds > 0 && timeoutSeconds <= 2_147_483)
    ) {
      return this.#invalid('timeout', 'Expected `timeout` to be a number of seconds > 0 (at most 2147483)');
    }
    this.#sweep(Date.now());
    const entry = this.#tasks.get(taskId);
    if (!entry) return this.#waitForStored(taskId, timeoutSeconds);
    if (timeoutSeconds === undefined) await entry.settled;
    else {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        entry.settled,
        new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutSeconds * 1_000))),
      ]);
      clearTimeout(timer);
    }
    return statusOf(entry);
  }

  /** Any agent's state and counts (not only those spawned through the adapter); AGENT_NOT_FOUND when unknown. */
  async getAgentStatus(agentId: string): Promise<LegacyResult<LegacyAgentStatus>> {
    if (typeof agentId !== 'string' || agentId === '')
      return this.#invalid('agent_id', 'Expected `agent_id` to be a non-empty string');
    const a = this.#orchestrator.agent(agentId);
    if (!a) return this.#notFound('AGENT_NOT_FOUND', `No agent with id ${JSON.stringify(agentId)} is registered`);
    return {
      agent_id: a.id,
      role: a.role ?? null,
      status: AGENT_STATES[a.state],
      capabilities: a.capabilities,
      active_tasks: a.running,
      completed_tasks: a.completed,
      failed_tasks: a.failed,
    };
  }

  /** Drains the agent (its running tasks finish), disposes it and removes it from the fleet. */
  async shutdownAgent(agentId: string): Promise<LegacyResult<LegacyShutdown>> {
    if (typeof agentId !== 'string' || agentId === '')
      return this.#invalid('agent_id', 'Expected `agent_id` to be a non-empty string');
    try {
      await this.#orchestrator.unregisterAgent(agentId);
      return { agent_id: agentId, status: 'terminated' };
    } catch (error) {
      return this.toLegacyError(error);
    }
  }

  /** The legacy answer for an error: its unified code mapped through the table (or `fallback` for other errors). */
  toLegacyError(error: unknown, fallback = LEGACY_INTERNAL_ERROR): LegacyErrorResponse {
    const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
    let legacy = fallback;
    if (typeof code === 'string') {
      const override = Object.hasOwn(this.#options.errorCodes, code) ? this.#options.errorCodes[code] : undefined;
      legacy =
        override ??
        (Object.hasOwn(LEGACY_ERROR_CODES, code) ? LEGACY_ERROR_CODES[code as OrchestratorErrorCode] : fallback);
    }
    const message = error instanceof Error ? error.message : typeof error === 'string' ? error : 'The call failed';
    return { error: { code: legacy, message } };
  }

  /** Stops listening to the orchestrator; statuses already kept stay readable. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#orchestrator
      .off('task:started', this.#onStarted)
      .off('task:retrying', this.#onWaiting)
      .off('task:queued', this.#onWaiting);
  }

  // --- Internals -----------------------------------------------------------------------------------

  #hasStore(): boolean {
    this.#durable ??= this.#orchestrator.stats().durable !== undefined;
    return this.#durable;
  }

  #unknownTask(taskId: string): LegacyErrorResponse {
    return this.#notFound(
      'TASK_NOT_FOUND',
      this.#hasStore()
        ? `No task ${JSON.stringify(taskId)}: it is neither held here nor in the store (never delegated, or pruned by retention)`
        : `No task ${JSON.stringify(taskId)}: it was never delegated here, or finished too long ago to be kept`,
    );
  }

  /**
   * The status of `taskId` as the store holds it: `undefined` when there is no store or it has no such run, a legacy
   * error when the store cannot be read.
   */
  async #stored(taskId: string): Promise<LegacyResult<LegacyTaskStatus> | undefined> {
    if (!this.#hasStore()) return undefined;
    try {
      const run = await this.#storedRun(taskId);
      if (!run) return undefined;
      const events = run.attempts > 0 ? await this.#orchestrator.runs.events(run.id) : [];
      return this.#statusOfRun(taskId, run, events);
    } catch (error) {
      return this.toLegacyError(error);
    }
  }

  /** The run of `taskId`: by its own id, or (a caller's own `task_id`) by the key it was delegated with. */
  async #storedRun(taskId: string): Promise<RunRecord | undefined> {
    const run = await this.#orchestrator.runs.get(taskId);
    if (run) return run;
    const { runs } = await this.#orchestrator.runs.list({ idempotencyKey: `legacy:${taskId}`, limit: 1 });
    return runs[0];
  }

  async #waitForStored(taskId: string, timeoutSeconds: number | undefined): Promise<LegacyResult<LegacyTaskStatus>> {
    const now = await this.#stored(taskId);
    if (now === undefined) return this.#unknownTask(taskId);
    if ('error' in now || !LIVE_STATES.has(now.status)) return now;
    let ended: Promise<unknown>;
    try {
      const run = await this.#storedRun(taskId);
      if (!run) return this.#unknownTask(taskId);
      ended = this.#orchestrator.attach(run.id).result;
    } catch {
      return now; // not running (stopped): the status as it is
    }
    const settled = ended.then(
      () => undefined,
      () => undefined,
    );
    if (timeoutSeconds === undefined) await settled;
    else {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        settled,
        new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutSeconds * 1_000))),
      ]);
      clearTimeout(timer);
    }
    return (await this.#stored(taskId)) ?? this.#unknownTask(taskId);
  }

  /** A stored run as a legacy status, its error mapped as a live task's would be. */
  #statusOfRun(taskId: string, run: RunRecord, events: readonly RunEvent[]): LegacyTaskStatus {
    const status = RUN_STATES[run.status];
    let agentId: string | null = null;
    for (let i = events.length - 1; i >= 0 && agentId === null; i--) agentId = events[i]!.agentId;
    let error: LegacyErrorResponse['error'] | undefined;
    if (status === 'failed' || status === 'timeout' || status === 'cancelled') {
      const stored = run.error;
      const cause = Object.assign(new Error(stored?.message ?? `Task ${taskId} ended ${run.status}`), {
        code: stored?.code ?? RUN_ERROR_CODES[run.status],
      });
      error = this.toLegacyError(cause, LEGACY_TASK_FAILED).error;
    }
    return {
      task_id: taskId,
      status,
      agent_id: agentId,
      attempts: run.attempts,
      ...(status === 'completed' ? { result: run.result } : {}),
      ...(error !== undefined ? { error } : {}),
      created_at: iso(run.createdAt),
      updated_at: iso(run.updatedAt),
    };
  }

  #toUnified(input: LegacyTask): { task: Task; callerId: string | undefined } {
    if (typeof input !== 'object' || input === null || Array.isArray(input))
      throw new ValidationError('task', 'Expected the task to be an object with a `role` or `capabilities`');
    const t = input as Record<string, unknown>;
    for (const key of Object.keys(t)) {
      if (!TASK_KEYS.has(key))
        throw new ValidationError(
          `task.${key}`,
          `Unknown field \`task.${key}\`; expected one of: ${[...TASK_KEYS].join(', ')}`,
        );
    }
    const get = (key: string): unknown => (Object.hasOwn(t, key) ? t[key] : undefined);
    const either = (snake: string, camel: string): unknown => get(snake) ?? get(camel);
    const requires: string[] = [];
    const role = get('role');
    if (role !== undefined) {
      if (typeof role !== 'string' || role === '')
        throw new ValidationError('task.role', 'Expected `task.role` to be a non-empty string naming a pool');
      const caps = this.#capabilitiesOf(role);
      if (!caps)
        throw new UnknownRoleError(role, [
          ...new Set([...(this.#options.roles?.keys() ?? []), ...this.#pools().keys()]),
        ]);
      requires.push(...caps);
    }
    const capabilities = get('capabilities');
    if (capabilities !== undefined) {
      if (!Array.isArray(capabilities))
        throw new ValidationError(
          'task.capabilities',
          'Expected `task.capabilities` to be an array of capability names',
        );
      for (const c of capabilities as unknown[]) {
        if (typeof c !== 'string' || c === '')
          throw new ValidationError(
            'task.capabilities',
            'Expected every entry of `task.capabilities` to be a non-empty string',
          );
        if (!requires.includes(c)) requires.push(c);
      }
    }
    if (role === undefined && capabilities === undefined) {
      throw new ValidationError(
        'task.role',
        'Expected `task.role` or `task.capabilities`: which agents may run the task',
      );
    }
    const task: { -readonly [K in keyof Task]: Task[K] } = {
      type: this.#options.defaultType,
      requires,
      payload: get('payload'),
    };
    const type = get('type');
    if (type !== undefined) {
      if (typeof type !== 'string' || type === '')
        throw new ValidationError('task.type', 'Expected `task.type` to be a non-empty string');
      task.type = type;
    }
    const priority = get('priority');
    if (priority !== undefined) {
      if (typeof priority === 'string' && Object.hasOwn(LEGACY_PRIORITIES, priority))
        task.priority = LEGACY_PRIORITIES[priority as keyof typeof LEGACY_PRIORITIES];
      else if (typeof priority === 'number' && Number.isSafeInteger(priority)) task.priority = priority;
      else
        throw new ValidationError(
          'task.priority',
          `Expected \`task.priority\` to be an integer or one of ${Object.keys(LEGACY_PRIORITIES).join(', ')}`,
        );
    }
    const timeout = get('timeout');
    if (timeout !== undefined) {
      if (typeof timeout !== 'number' || !(timeout > 0) || timeout > 2_147_483) {
        throw new ValidationError(
          'task.timeout',
          'Expected `task.timeout` to be a number of seconds > 0 (at most 2147483)',
        );
      }
      task.timeoutMs = Math.max(1, Math.round(timeout * 1_000));
    }
    const retries = either('max_retries', 'maxRetries');
    if (retries !== undefined) {
      if (typeof retries !== 'number' || !Number.isSafeInteger(retries) || retries < 0 || retries > 99) {
        throw new ValidationError('task.max_retries', 'Expected `task.max_retries` to be an integer from 0 to 99');
      }
      task.maxAttempts = retries + 1;
    }
    const tenant = either('tenant_id', 'tenantId');
    if (tenant !== undefined) task.tenantId = tenant as string; // checked by the orchestrator
    const callerId = either('task_id', 'taskId');
    if (callerId !== undefined) {
      if (typeof callerId !== 'string' || callerId === '' || callerId.length > 256) {
        throw new ValidationError(
          'task.task_id',
          'Expected `task.task_id` to be a non-empty string of at most 256 characters',
        );
      }
      task.idempotencyKey = `legacy:${callerId}`;
    }
    return { task, callerId: callerId };
  }

  #pools(): ReadonlyMap<string, readonly string[]> {
    this.#poolRoles ??= new Map(this.#orchestrator.stats().pools.map((p) => [p.role, p.capabilities]));
    return this.#poolRoles;
  }

  #capabilitiesOf(role: string): readonly string[] | undefined {
    return this.#options.roles?.get(role) ?? this.#pools().get(role);
  }

  #track(handle: TaskHandle, id: string): TaskEntry {
    const now = Date.now();
    const entry: TaskEntry = {
      id,
      unifiedId: handle.id,
      status: 'pending',
      agentId: null,
      attempts: 0,
      createdAt: now,
      updatedAt: now,
      settled: Promise.resolve(),
    };
    this.#tasks.set(id, entry);
    this.#live.set(handle.id, entry);
    entry.settled = handle.result.then(
      (value) => {
        entry.status = 'completed';
        entry.result = value;
        this.#finish(entry);
      },
      (error: unknown) => {
        const code = (error as { code?: unknown } | null)?.code;
        entry.status = code === 'TASK_TIMEOUT' ? 'timeout' : code === 'TASK_CANCELLED' ? 'cancelled' : 'failed';
        entry.error = this.toLegacyError(error, LEGACY_TASK_FAILED).error;
        this.#finish(entry);
      },
    );
    return entry;
  }

  #finish(entry: TaskEntry): void {
    const now = Date.now();
    entry.updatedAt = now;
    this.#live.delete(entry.unifiedId);
    this.#finished.push({ entry, expiresAt: now + this.#options.finishedTaskTtlMs });
    this.#sweep(now);
  }

  /** Forgets finished tasks past their time, and the oldest beyond `maxFinishedTasks`. */
  #sweep(now: number): void {
    for (let next = this.#finished.peek(); next; next = this.#finished.peek()) {
      if (next.expiresAt > now && this.#finished.size <= this.#options.maxFinishedTasks) return;
      this.#finished.shift();
      // The id may have been delegated again since (a caller's task_id): only this entry goes.
      if (this.#tasks.get(next.entry.id) === next.entry) this.#tasks.delete(next.entry.id);
    }
  }

  #invalid(field: string, message: string): LegacyErrorResponse {
    return this.toLegacyError(new ValidationError(field, message));
  }

  #notFound(code: 'TASK_NOT_FOUND' | 'AGENT_NOT_FOUND', message: string): LegacyErrorResponse {
    return this.toLegacyError(Object.assign(new Error(message), { code }));
  }
}

/** The legacy states of a task not yet terminal. */
const LIVE_STATES: ReadonlySet<LegacyTaskState> = new Set(['pending', 'running']);

function statusOf(entry: TaskEntry): LegacyTaskStatus {
  return {
    task_id: entry.id,
    status: entry.status,
    agent_id: entry.agentId,
    attempts: entry.attempts,
    ...(entry.status === 'completed' ? { result: entry.result } : {}),
    ...(entry.error !== undefined ? { error: entry.error } : {}),
    created_at: iso(entry.createdAt),
    updated_at: iso(entry.updatedAt),
  };
}

/** ISO 8601 of an epoch ms; tasks that start and end within the same few milliseconds share the formatting. */
const isoCache = { ms: [Number.NaN, Number.NaN], text: ['', ''], next: 0 };
function iso(ms: number): string {
  if (ms === isoCache.ms[0]) return isoCache.text[0]!;
  if (ms === isoCache.ms[1]) return isoCache.text[1]!;
  const text = new Date(ms).toISOString();
  const slot = isoCache.next;
  isoCache.ms[slot] = ms;
  isoCache.text[slot] = text;
  isoCache.next = 1 - slot;
  return text;
}
