/** Fake legacy implementations for the router tests: they record every call and answer like a tiny orchestrator. */
import type {
  LegacyAgentStatus,
  LegacyOrchestrator,
  LegacyOrchestratorSnake,
  LegacyResult,
  LegacyShutdown,
  LegacyTask,
  LegacyTaskState,
  LegacyTaskStatus,
} from 'unified-orchestrator';

export interface FakeCall {
  readonly method: string;
  readonly args: readonly unknown[];
}

export interface FakeTaskBehaviour {
  /** The final state of the task (default `completed`). */
  readonly status?: LegacyTaskState;
  readonly result?: unknown;
  readonly error?: { code: string; message: string };
  /** Status reads (get/wait) before it reports its final state; `Infinity` never finishes. Default 0. */
  readonly readsBeforeDone?: number;
}

/**
 * A camelCase legacy orchestrator. Ids are `${prefix}-task-n` and `${prefix}-agent-n`. `behave` decides how a task
 * ends from what was delegated. It has `waitForTask` unless made with `{ wait: false }`.
 */
export class FakeLegacy implements LegacyOrchestrator {
  readonly calls: FakeCall[] = [];
  readonly tasks = new Map<string, { task: LegacyTask; reads: number; behaviour: FakeTaskBehaviour }>();
  readonly agents = new Set<string>();
  readonly prefix: string;
  behave: (task: LegacyTask) => FakeTaskBehaviour;
  #n = 0;

  constructor(
    prefix: string,
    behave: (task: LegacyTask) => FakeTaskBehaviour = (t) => ({ result: { echo: t.payload } }),
  ) {
    this.prefix = prefix;
    this.behave = behave;
  }

  /** The calls of one method, in order. */
  callsOf(method: string): FakeCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  async spawnAgent(role: string): Promise<LegacyResult<string>> {
    this.calls.push({ method: 'spawnAgent', args: [role] });
    if (role === 'ghost') return { error: { code: 'UNKNOWN_ROLE', message: `${this.prefix}: no role ghost` } };
    const id = `${this.prefix}-agent-${++this.#n}`;
    this.agents.add(id);
    return id;
  }

  async delegateTaskToAgent(task: LegacyTask): Promise<LegacyResult<string>> {
    this.calls.push({ method: 'delegateTaskToAgent', args: [task] });
    const id = `${this.prefix}-task-${++this.#n}`;
    this.tasks.set(id, { task, reads: 0, behaviour: this.behave(task) });
    return id;
  }

  async getAgentStatus(agentId: string): Promise<LegacyResult<LegacyAgentStatus>> {
    this.calls.push({ method: 'getAgentStatus', args: [agentId] });
    return this.#agent(agentId);
  }

  async getTaskStatus(taskId: string): Promise<LegacyResult<LegacyTaskStatus>> {
    this.calls.push({ method: 'getTaskStatus', args: [taskId] });
    return this.#status(taskId);
  }

  async shutdownAgent(agentId: string): Promise<LegacyResult<LegacyShutdown>> {
    this.calls.push({ method: 'shutdownAgent', args: [agentId] });
    if (!this.agents.delete(agentId))
      return { error: { code: 'AGENT_NOT_FOUND', message: `${this.prefix}: no agent ${agentId}` } };
    return { agent_id: agentId, status: 'terminated' };
  }

  async waitForTask(taskId: string, timeoutSeconds?: number): Promise<LegacyResult<LegacyTaskStatus>> {
    this.calls.push({
      method: 'waitForTask',
      args: timeoutSeconds === undefined ? [taskId] : [taskId, timeoutSeconds],
    });
    return this.#status(taskId);
  }

  #agent(agentId: string): LegacyResult<LegacyAgentStatus> {
    if (!this.agents.has(agentId))
      return { error: { code: 'AGENT_NOT_FOUND', message: `${this.prefix}: no agent ${agentId}` } };
    return {
      agent_id: agentId,
      role: 'writer',
      status: 'idle',
      capabilities: ['text'],
      active_tasks: 0,
      completed_tasks: 0,
      failed_tasks: 0,
    };
  }

  #status(taskId: string): LegacyResult<LegacyTaskStatus> {
    const entry = this.tasks.get(taskId);
    if (!entry) return { error: { code: 'TASK_NOT_FOUND', message: `${this.prefix}: no task ${taskId}` } };
    const b = entry.behaviour;
    const done = entry.reads++ >= (b.readsBeforeDone ?? 0);
    const status = done ? (b.status ?? 'completed') : 'running';
    return {
      task_id: taskId,
      status,
      agent_id: `${this.prefix}-agent-0`,
      attempts: 1,
      ...(status === 'completed' ? { result: b.result } : {}),
      ...(done && b.error ? { error: b.error } : {}),
      created_at: '2024-01-01T00:00:00.000Z',
      updated_at: '2024-01-01T00:00:00.000Z',
    };
  }
}

/** The same fake with only snake_case methods (and `wait_for_task` only when the fake should have it). */
export function snakeCase(fake: FakeLegacy, withWait = true): LegacyOrchestratorSnake {
  return {
    spawn_agent: (role) => fake.spawnAgent(role),
    delegate_task_to_agent: (task) => fake.delegateTaskToAgent(task),
    get_agent_status: (id) => fake.getAgentStatus(id),
    get_task_status: (id) => fake.getTaskStatus(id),
    shutdown_agent: (id) => fake.shutdownAgent(id),
    ...(withWait
      ? {
          wait_for_task: (id: string, t?: number) => (t === undefined ? fake.waitForTask(id) : fake.waitForTask(id, t)),
        }
      : {}),
  };
}

/** The same fake without `waitForTask` (a router must poll `getTaskStatus`). */
export function withoutWait(fake: FakeLegacy): LegacyOrchestrator {
  return {
    spawnAgent: (role) => fake.spawnAgent(role),
    delegateTaskToAgent: (task) => fake.delegateTaskToAgent(task),
    getAgentStatus: (id) => fake.getAgentStatus(id),
    getTaskStatus: (id) => fake.getTaskStatus(id),
    shutdownAgent: (id) => fake.shutdownAgent(id),
  };
}
