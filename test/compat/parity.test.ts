/**
 * Flags-off parity: with every flag off (0%, no shadow), a TrafficRouter in front of a legacy implementation must be
 * invisible. A recorded sequence of legacy calls (every method, valid and invalid input, calls about ids answered
 * earlier in the sequence, legacy errors and thrown errors) is run once straight against a fresh legacy instance and
 * once through a router whose unified side is an adapter over a real orchestrator: the answers, the thrown errors and
 * the calls the legacy instance saw must be the same, and the orchestrator must see nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  OrchestratorsCompatibilityAdapter,
  TrafficRouter,
  type LegacyAgentStatus,
  type LegacyOrchestrator,
  type LegacyResult,
  type LegacyShutdown,
  type LegacyTask,
  type LegacyTaskStatus,
  type UnifiedOrchestrator,
} from 'unified-orchestrator';
import { Lab, record, started, stopAll } from './helpers.js';

afterEach(stopAll);

/** A fixed error instance the legacy implementation throws: the router must pass this very object on. */
const LEGACY_OUTAGE = new Error('legacy backend unreachable');

/** A deterministic legacy orchestrator with state; it logs every call with its exact arguments. */
class DeterministicLegacy implements LegacyOrchestrator {
  readonly log: Array<{ method: string; args: unknown[] }> = [];
  readonly #roles = new Map([
    ['writer', ['text']],
    ['reviewer', ['text', 'review']],
  ]);
  readonly #agents = new Map<string, { role: string; completed: number }>();
  readonly #tasks = new Map<string, { task: LegacyTask; agent: string; seq: number }>();
  readonly #callerIds = new Map<string, string>();
  #seq = 0;

  spawnAgent(...args: [string]): Promise<LegacyResult<string>> {
    this.log.push({ method: 'spawnAgent', args });
    const [role] = args;
    if (typeof role !== 'string') throw new TypeError(`role must be a string, got ${typeof role}`); // thrown synchronously
    if (!this.#roles.has(role))
      return Promise.resolve({ error: { code: 'UNKNOWN_ROLE', message: `unknown role ${role}` } });
    const id = `agent-${role}-${++this.#seq}`;
    this.#agents.set(id, { role, completed: 0 });
    return Promise.resolve(id);
  }

  async delegateTaskToAgent(...args: [LegacyTask]): Promise<LegacyResult<string>> {
    this.log.push({ method: 'delegateTaskToAgent', args });
    const [task] = args;
    const role = task.role; // a null task throws a TypeError here, as a sloppy legacy implementation would
    if (task.payload === 'explode') throw LEGACY_OUTAGE;
    if (role !== undefined && !this.#roles.has(role))
      return { error: { code: 'UNKNOWN_ROLE', message: `unknown role ${role}` } };
    if (
      task.priority !== undefined &&
      !['low', 'normal', 'high', 'critical'].includes(String(task.priority)) &&
      typeof task.priority !== 'number'
    ) {
      return { error: { code: 'INVALID_REQUEST', message: `bad priority ${String(task.priority)}` } };
    }
    if (task.task_id !== undefined && this.#callerIds.has(task.task_id)) return this.#callerIds.get(task.task_id)!;
    const id = task.task_id ?? `task-${++this.#seq}`;
    const agent =
      [...this.#agents.entries()].find(([, a]) => role === undefined || a.role === role)?.[0] ?? 'agent-pool';
    this.#tasks.set(id, { task, agent, seq: this.#seq });
    if (task.task_id !== undefined) this.#callerIds.set(task.task_id, id);
    const a = this.#agents.get(agent);
    if (a && task.payload !== 'fail') a.completed++;
    return id;
  }

  getAgentStatus(...args: [string]): Promise<LegacyResult<LegacyAgentStatus>> {
    this.log.push({ method: 'getAgentStatus', args });
    const [id] = args;
    if (id === 'explode') throw LEGACY_OUTAGE; // thrown synchronously
    const a = this.#agents.get(id);
    if (!a) return Promise.resolve({ error: { code: 'AGENT_NOT_FOUND', message: `no agent ${id}` } });
    return Promise.resolve({
      agent_id: id,
      role: a.role,
      status: 'idle',
      capabilities: [...this.#roles.get(a.role)!],
      active_tasks: 0,
      completed_tasks: a.completed,
      failed_tasks: 0,
    });
  }

  async getTaskStatus(...args: [string]): Promise<LegacyResult<LegacyTaskStatus>> {
    this.log.push({ method: 'getTaskStatus', args });
    return this.#status(args[0]);
  }

  async shutdownAgent(...args: [string]): Promise<LegacyResult<LegacyShutdown>> {
    this.log.push({ method: 'shutdownAgent', args });
    const [id] = args;
    if (!this.#agents.delete(id)) return { error: { code: 'AGENT_NOT_FOUND', message: `no agent ${id}` } };
    return { agent_id: id, status: 'terminated' };
  }

  async waitForTask(...args: [string, number?]): Promise<LegacyResult<LegacyTaskStatus>> {
    this.log.push({ method: 'waitForTask', args });
    const [id, timeout] = args;
    if (timeout !== undefined && !(timeout > 0))
      return { error: { code: 'INVALID_REQUEST', message: 'timeout must be > 0' } };
    return this.#status(id);
  }

  #status(id: string): LegacyResult<LegacyTaskStatus> {
    if (typeof id !== 'string' || id === '')
      return { error: { code: 'INVALID_REQUEST', message: 'task_id must be a non-empty string' } };
    const t = this.#tasks.get(id);
    if (!t) return { error: { code: 'TASK_NOT_FOUND', message: `no task ${id}` } };
    const at = new Date(Date.UTC(2024, 0, 1, 0, 0, t.seq)).toISOString();
    const base = { task_id: id, agent_id: t.agent, attempts: 1, created_at: at, updated_at: at };
    return t.task.payload === 'fail'
      ? { ...base, status: 'failed', error: { code: 'TASK_FAILED', message: 'the model refused' } }
      : { ...base, status: 'completed', result: { echo: t.task.payload ?? null, by: t.task.role ?? 'any' } };
  }
}

type Method =
  'spawnAgent' | 'delegateTaskToAgent' | 'getAgentStatus' | 'getTaskStatus' | 'shutdownAgent' | 'waitForTask';
interface Step {
  readonly method: Method;
  /** The arguments, from the answers of the steps before (by index). */
  readonly args: (answers: readonly unknown[]) => unknown[];
}

const step = (method: Method, args: (answers: readonly unknown[]) => unknown[]): Step => ({ method, args });
const at = (i: number) => (answers: readonly unknown[]) => answers[i];

/** The recorded sequence. */
const SEQUENCE: readonly Step[] = [
  /* 0 */ step('spawnAgent', () => ['writer']),
  /* 1 */ step('spawnAgent', () => ['reviewer']),
  /* 2 */ step('spawnAgent', () => ['ghost']),
  /* 3 */ step('spawnAgent', () => [42]),
  /* 4 */ step('getAgentStatus', (a) => [at(0)(a)]),
  /* 5 */ step('delegateTaskToAgent', () => [
    { role: 'writer', payload: 'draft', priority: 'high', tenant_id: 'acme' },
  ]),
  /* 6 */ step('delegateTaskToAgent', () => [{ role: 'writer', payload: 'fail', task_id: 'caller-7' }]),
  /* 7 */ step('delegateTaskToAgent', () => [{ role: 'ghost', payload: 1 }]),
  /* 8 */ step('delegateTaskToAgent', () => [{ role: 'writer', priority: 'urgent' }]),
  /* 9 */ step('delegateTaskToAgent', () => [null]),
  /* 10 */ step('delegateTaskToAgent', () => [{ role: 'writer', payload: 'explode' }]),
  /* 11 */ step('getTaskStatus', (a) => [at(5)(a)]),
  /* 12 */ step('getTaskStatus', (a) => [at(6)(a)]),
  /* 13 */ step('getTaskStatus', () => ['task-999']),
  /* 14 */ step('getTaskStatus', () => ['']),
  /* 15 */ step('waitForTask', (a) => [at(5)(a)]),
  /* 16 */ step('waitForTask', (a) => [at(6)(a), 5]),
  /* 17 */ step('waitForTask', () => ['nope', 1]),
  /* 18 */ step('getAgentStatus', () => ['explode']),
  /* 19 */ step('getAgentStatus', () => ['agent-nobody']),
  /* 20 */ step('shutdownAgent', (a) => [at(1)(a)]),
  /* 21 */ step('getAgentStatus', (a) => [at(1)(a)]),
  /* 22 */ step('shutdownAgent', (a) => [at(1)(a)]),
  /* 23 */ step('delegateTaskToAgent', () => [
    { capabilities: ['text'], payload: { nested: [1, 2, { deep: true }] }, timeout: 30, max_retries: 2 },
  ]),
  /* 24 */ step('getTaskStatus', (a) => [at(23)(a)]),
  /* 25 */ step('getAgentStatus', (a) => [at(0)(a)]),
  /* 26 */ step('shutdownAgent', (a) => [at(0)(a)]),
  /* 27 */ step('spawnAgent', () => ['writer']),
  /* 28 */ step('waitForTask', (a) => [at(23)(a), -1]),
  /* 29 */ step('delegateTaskToAgent', () => [{ role: 'reviewer', payload: 'review', task_id: 'caller-7' }]),
  /* 30 */ step('getTaskStatus', (a) => [at(29)(a)]),
  /* 31 */ step('delegateTaskToAgent', (a) => [{ role: 'writer', payload: 'more', tenant_id: String(at(27)(a)) }]),
  /* 32 */ step('waitForTask', (a) => [at(31)(a)]),
  /* 33 */ step('getAgentStatus', (a) => [at(27)(a)]),
  /* 34 */ step('shutdownAgent', () => ['agent-nobody']),
];

const SNAKE: Record<Method, string> = {
  spawnAgent: 'spawn_agent',
  delegateTaskToAgent: 'delegate_task_to_agent',
  getAgentStatus: 'get_agent_status',
  getTaskStatus: 'get_task_status',
  shutdownAgent: 'shutdown_agent',
  waitForTask: 'wait_for_task',
};

type Outcome = { readonly threw: false; readonly value: unknown } | { readonly threw: true; readonly error: unknown };

/** Runs the sequence against `target`; `spell` picks the method name to call for each step. */
async function play(target: object, spell: (method: Method, index: number) => string): Promise<Outcome[]> {
  const answers: unknown[] = [];
  const outcomes: Outcome[] = [];
  for (const [i, s] of SEQUENCE.entries()) {
    const fn = (target as Record<string, (...args: unknown[]) => Promise<unknown>>)[spell(s.method, i)]!;
    try {
      const value = await fn.apply(target, s.args(answers));
      outcomes.push({ threw: false, value });
      answers.push(value);
    } catch (error) {
      outcomes.push({ threw: true, error });
      answers.push(undefined);
    }
  }
  return outcomes;
}

function expectSameOutcomes(direct: Outcome[], routed: Outcome[]): void {
  expect(routed).toHaveLength(direct.length);
  for (const [i, d] of direct.entries()) {
    const r = routed[i]!;
    const where = `step ${i} (${SEQUENCE[i]!.method})`;
    expect(r.threw, where).toBe(d.threw);
    if (!d.threw && !r.threw) {
      expect(r.value, where).toStrictEqual(d.value);
    } else if (d.threw && r.threw) {
      expect((r.error as Error).constructor, where).toBe((d.error as Error).constructor);
      expect((r.error as Error).message, where).toBe((d.error as Error).message);
      if (d.error === LEGACY_OUTAGE) expect(r.error, where).toBe(LEGACY_OUTAGE);
    }
  }
}

/** A started orchestrator with pools the sequence's roles would match, and the adapter over it. */
async function unifiedSide(): Promise<{
  o: UnifiedOrchestrator;
  adapter: OrchestratorsCompatibilityAdapter;
  lab: Lab;
}> {
  const lab = new Lab();
  const o = await started({
    pools: [
      lab.pool('writer', ['text'], { maxAgents: 3, warmSpares: 1 }),
      lab.pool('reviewer', ['text', 'review'], { maxAgents: 3 }),
    ],
  });
  return { o, adapter: new OrchestratorsCompatibilityAdapter(o), lab };
}

describe('flags-off parity', () => {
  it('the sequence has at least 25 calls, covers every method, and exercises values, legacy errors and thrown errors', async () => {
    expect(SEQUENCE.length).toBeGreaterThanOrEqual(25);
    expect(new Set(SEQUENCE.map((s) => s.method))).toEqual(new Set(Object.keys(SNAKE)));
    const outcomes = await play(new DeterministicLegacy(), (m) => m);
    const kinds = outcomes.map((o) =>
      o.threw
        ? 'threw'
        : typeof o.value === 'object' && o.value !== null && 'error' in o.value && !('status' in o.value)
          ? 'error'
          : 'value',
    );
    expect(kinds.filter((k) => k === 'threw')).toHaveLength(4);
    expect(kinds.filter((k) => k === 'error').length).toBeGreaterThanOrEqual(10);
    expect(kinds.filter((k) => k === 'value').length).toBeGreaterThanOrEqual(15);
    // Deterministic: a second fresh instance answers the same.
    expectSameOutcomes(outcomes, await play(new DeterministicLegacy(), (m) => m));
  });

  it.each([
    ['camelCase calls, default options', false, false],
    ['snake_case calls on every other step, default options', true, false],
    ['with the orchestrator given (still 0% and no shadow)', true, true],
  ] as const)(
    '%s: the same answers, errors and legacy calls, and nothing reaches the orchestrator',
    async (_name, alternate, withOrchestrator) => {
      const direct = new DeterministicLegacy();
      const directOutcomes = await play(direct, (m) => m);

      const { o, adapter, lab } = await unifiedSide();
      const agentsBefore = o
        .agents()
        .map((a) => a.id)
        .sort();
      const scaled = record(o, 'pool:scaled');
      const queued = record(o, 'task:queued');
      const startedTasks = record(o, 'task:started');
      const legacy = new DeterministicLegacy();
      const r = new TrafficRouter({ legacy, unified: adapter, ...(withOrchestrator ? { orchestrator: o } : {}) });
      expect(r.stats()).toMatchObject({ percent: 0, shadow: false });
      const routedOutcomes = await play(r, (m, i) => (alternate && i % 2 === 1 ? SNAKE[m] : m));
      await r.close();

      expectSameOutcomes(directOutcomes, routedOutcomes);
      expect(legacy.log).toStrictEqual(direct.log);
      expect(legacy.log.length).toBe(SEQUENCE.length);

      // Nothing reached the unified side.
      expect(o.stats().submitted).toBe(0);
      expect(o.stats().completed + o.stats().failed + o.stats().rejected).toBe(0);
      expect(
        o
          .agents()
          .map((a) => a.id)
          .sort(),
      ).toEqual(agentsBefore);
      expect(scaled.filter((e) => e.reason === 'spawn')).toHaveLength(0);
      expect(queued).toHaveLength(0);
      expect(startedTasks).toHaveLength(0);
      expect(lab.runs).toHaveLength(0);
      expect(r.stats()).toMatchObject({
        calls: { legacy: SEQUENCE.length, unified: 0, shadow: 0 },
        shadowRuns: { match: 0, mismatch: 0, incomplete: 0, skipped: 0, inFlight: 0 },
      });
    },
  );

  it('the comparison itself notices a difference (a router at 100% is not at parity)', async () => {
    const direct = new DeterministicLegacy();
    const directOutcomes = await play(direct, (m) => m);
    const { o, adapter } = await unifiedSide();
    const legacy = new DeterministicLegacy();
    const r = new TrafficRouter({ legacy, unified: adapter, percent: 100 });
    const routedOutcomes = await play(r, (m) => m);
    await r.close();
    expect(() => expectSameOutcomes(directOutcomes, routedOutcomes)).toThrow();
    expect(legacy.log).not.toStrictEqual(direct.log);
    expect(o.stats().submitted).toBeGreaterThan(0);
  });
});
