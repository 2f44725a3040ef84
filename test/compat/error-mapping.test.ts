/**
 * The legacy error mapping: every legacy code the adapter can produce, produced for real through the adapter over a
 * real orchestrator; the mapping table over every unified code; `errorCodes` overrides; unknown errors.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  AgentCreationError,
  AgentNotFoundError,
  BreakerOpenError,
  BridgeWriteError,
  StoreUnavailableError,
  BudgetExceededError,
  ClusterLimitsUnavailableError,
  DuplicateAgentError,
  IllegalStateTransitionError,
  LEGACY_ERROR_CODES,
  LEGACY_INTERNAL_ERROR,
  LEGACY_TASK_FAILED,
  NoCapableAgentError,
  NoCapableNodeError,
  OrchestratorHaltedError,
  OrchestratorNotStartedError,
  OrchestratorsCompatibilityAdapter,
  OrchestratorStoppedError,
  PoolAtCapacityError,
  QueueFullError,
  ResourcePressureError,
  TaskCancelledError,
  TaskDeadLetteredError,
  TaskNotFoundError,
  TaskTimeoutError,
  UnknownRoleError,
  ValidationError,
  WorkflowNonDeterminismError,
  WorkflowLimitError,
  WorkflowStepError,
  SignalTimeoutError,
  WorkflowNotFoundError,
  RunNotFoundError,
  RemoteTaskError,
  type OrchestratorError,
  type OrchestratorErrorCode,
  type ResourceSample,
  type ResourceSampler,
  type UnifiedOrchestrator,
} from 'unified-orchestrator';
import { err, Lab, make, ok, record, started, stopAll, until } from './helpers.js';

afterEach(stopAll);

/** A writer pool of one agent from `lab`, and an adapter. */
async function setup(
  lab: Lab,
  orchestrator: Parameters<typeof started>[0] = {},
  options: ConstructorParameters<typeof OrchestratorsCompatibilityAdapter>[1] = {},
): Promise<{ o: UnifiedOrchestrator; adapter: OrchestratorsCompatibilityAdapter }> {
  const o = await started({
    pools: [lab.pool('writer', ['text'])],
    agentBreaker: false,
    retry: { baseDelayMs: 1, maxDelayMs: 2 },
    ...orchestrator,
  });
  return { o, adapter: new OrchestratorsCompatibilityAdapter(o, options) };
}

/** One instance of every error class, by its code: the compiler checks that no code is missing. */
const ERRORS: Readonly<Record<OrchestratorErrorCode, OrchestratorError>> = {
  VALIDATION_ERROR: new ValidationError('task.type', 'bad type'),
  UNKNOWN_ROLE: new UnknownRoleError('ghost', ['writer']),
  NO_CAPABLE_AGENT: new NoCapableAgentError(['quantum']),
  NO_CAPABLE_NODE: new NoCapableNodeError('t-1', ['quantum'], 60_000),
  POOL_AT_CAPACITY: new PoolAtCapacityError('writer', 1),
  QUEUE_FULL: new QueueFullError(1),
  RESOURCE_PRESSURE: new ResourcePressureError('critical', { priority: -10, priorityFloor: 0 }),
  BUDGET_EXCEEDED: new BudgetExceededError('acme', 5, 5, 1_000),
  BREAKER_OPEN: new BreakerOpenError('vendor'),
  STORE_UNAVAILABLE: new StoreUnavailableError('insert', 'connect ECONNREFUSED 127.0.0.1:5432'),
  BRIDGE_WRITE_FAILED: new BridgeWriteError(
    'XADD',
    'ns:tasks:x',
    "OOM command not allowed when used memory > 'maxmemory'.",
  ),
  ORCHESTRATOR_STOPPED: new OrchestratorStoppedError(),
  ORCHESTRATOR_NOT_STARTED: new OrchestratorNotStartedError(),
  ORCHESTRATOR_HALTED: new OrchestratorHaltedError('maintenance'),
  AGENT_NOT_FOUND: new AgentNotFoundError('writer-9'),
  TASK_NOT_FOUND: new TaskNotFoundError('t-1'),
  TASK_TIMEOUT: new TaskTimeoutError('t-1', 50, 1),
  TASK_CANCELLED: new TaskCancelledError('t-1', 'operator'),
  TASK_DEAD_LETTERED: new TaskDeadLetteredError('t-1', []),
  AGENT_CREATION_FAILED: new AgentCreationError('writer', 3, new Error('quota')),
  DUPLICATE_AGENT: new DuplicateAgentError('writer-1'),
  ILLEGAL_STATE_TRANSITION: new IllegalStateTransitionError('writer-1', 'TERMINATED', 'BUSY'),
  WORKFLOW_NONDETERMINISM: new WorkflowNonDeterminismError('r-1', 2, 'task:draft', 'step:draft'),
  WORKFLOW_LIMIT: new WorkflowLimitError('r-1', 'budget', 5, 6),
  WORKFLOW_STEP_FAILED: new WorkflowStepError('draft', { name: 'Error', message: 'boom', code: null }),
  SIGNAL_TIMEOUT: new SignalTimeoutError('approval', 1_000),
  WORKFLOW_NOT_FOUND: new WorkflowNotFoundError('review', []),
  RUN_NOT_FOUND: new RunNotFoundError('r-1'),
  CLUSTER_LIMITS_UNAVAILABLE: new ClusterLimitsUnavailableError('acme', 1_000, 'connection lost'),
  REMOTE_TASK_FAILED: new RemoteTaskError({ name: 'PaymentError', code: 'E_CARD', message: 'declined' }, 'node-b'),
  TASK_DELIVERY_STALE: new RemoteTaskError(
    { name: 'Error', code: 'TASK_DELIVERY_STALE', message: 'the entry is older than doneTtlMs' },
    'node-b',
  ),
};

/** The legacy codes as the compat layer documents them. */
const EXPECTED: Readonly<Record<OrchestratorErrorCode, string>> = {
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
};

describe('every legacy code, produced through the adapter', () => {
  it('UNKNOWN_ROLE: a task or a spawn for a role that no pool (nor `roles`) declares', async () => {
    const { o, adapter } = await setup(new Lab());
    const delegated = err(await adapter.delegateTaskToAgent({ role: 'ghost', payload: 1 }));
    expect(delegated.code).toBe('UNKNOWN_ROLE');
    expect(delegated.message).toContain('"ghost"');
    const spawned = err(await adapter.spawnAgent('ghost'));
    expect(spawned.code).toBe('UNKNOWN_ROLE');
    expect(spawned.message).toContain('"ghost"');
    expect(o.stats().submitted).toBe(0);
  });

  it('NO_AGENT_AVAILABLE: capabilities no agent or pool holds', async () => {
    const { adapter } = await setup(new Lab());
    const e = err(await adapter.delegateTaskToAgent({ capabilities: ['text', 'quantum'], payload: 1 }));
    expect(e.code).toBe('NO_AGENT_AVAILABLE');
    expect(e.message).toContain('quantum');
    // The role's capabilities plus one nobody has: the same.
    expect(err(await adapter.delegateTaskToAgent({ role: 'writer', capabilities: ['quantum'] })).code).toBe(
      'NO_AGENT_AVAILABLE',
    );
  });

  it('CAPACITY_EXCEEDED from POOL_AT_CAPACITY: spawnAgent on a pool at maxAgents', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    expect(o.agents()).toHaveLength(1);
    const e = err(await adapter.spawnAgent('writer'));
    expect(e.code).toBe('CAPACITY_EXCEEDED');
    expect(e.message).toMatch(/maximum of 1 agents/);
    expect(o.agents()).toHaveLength(1);
  });

  it('CAPACITY_EXCEEDED from QUEUE_FULL: a task beyond maxQueueSize', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab, { maxQueueSize: 1 });
    ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } })); // running
    ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'waits' })); // the one waiting
    const e = err(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'refused' }));
    expect(e.code).toBe('CAPACITY_EXCEEDED');
    expect(e.message).toMatch(/maxQueueSize 1/);
    expect(o.stats().rejected).toBe(1);
    lab.releaseAll();
  });

  it('SERVICE_UNAVAILABLE before start and after stop', async () => {
    const lab = new Lab();
    const o = make({ pools: [lab.pool('writer', ['text'])] });
    const adapter = new OrchestratorsCompatibilityAdapter(o);
    for (const answer of [
      await adapter.delegateTaskToAgent({ role: 'writer', payload: 1 }),
      await adapter.spawnAgent('writer'),
    ]) {
      const e = err(answer);
      expect(e.code).toBe('SERVICE_UNAVAILABLE');
      expect(e.message).toMatch(/not started/);
    }
    await o.start();
    // Running: accepted.
    expect(
      ok(await adapter.waitForTask(ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 1 })))),
    ).toMatchObject({ status: 'completed' });
    await o.stop();
    for (const answer of [
      await adapter.delegateTaskToAgent({ role: 'writer', payload: 2 }),
      await adapter.spawnAgent('writer'),
    ]) {
      const e = err(answer);
      expect(e.code).toBe('SERVICE_UNAVAILABLE');
      expect(e.message).toMatch(/stopped/);
    }
  });

  it('BUDGET_EXCEEDED: a tenant that spent its budget; other tenants still run', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab, { budgets: { limits: { acme: 5 } } });
    const spend = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { cost: 5 }, tenant_id: 'acme' }));
    expect(ok(await adapter.waitForTask(spend))).toMatchObject({ status: 'completed' });
    const e = err(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'more', tenant_id: 'acme' }));
    expect(e.code).toBe('BUDGET_EXCEEDED');
    expect(e.message).toContain('"acme"');
    expect(err(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'more', tenantId: 'acme' })).code).toBe(
      'BUDGET_EXCEEDED',
    );
    expect(ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'fine', tenant_id: 'globex' }))).toEqual(
      expect.any(String),
    );
    expect(ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'no tenant' }))).toEqual(expect.any(String));
  });

  it('SERVICE_OVERLOADED: low-priority work and agent creation under critical resource pressure', async () => {
    class FakeSampler implements ResourceSampler {
      rssBytes = 100;
      sample(): ResourceSample {
        return { rssBytes: this.rssBytes, heapUsedBytes: 10, cpuPercent: Number.NaN };
      }
    }
    const sampler = new FakeSampler();
    const lab = new Lab();
    const o = await started({
      pools: [lab.pool('writer', ['text'], { maxAgents: 3 })],
      pressure: { memoryLimitBytes: 1_000, sampleIntervalMs: 60_000, sampler },
    });
    const adapter = new OrchestratorsCompatibilityAdapter(o);
    const monitor = (o.resources as unknown as { pressureMonitor: { sampleNow(): Promise<void> } }).pressureMonitor;
    sampler.rssBytes = 1_500;
    await monitor.sampleNow();
    expect(o.resources.pressure).toBe('critical');

    const low = err(await adapter.delegateTaskToAgent({ role: 'writer', priority: 'low', payload: 1 }));
    expect(low.code).toBe('SERVICE_OVERLOADED');
    expect(low.message).toMatch(/priority -10 is below the floor of 0/);
    expect(err(await adapter.delegateTaskToAgent({ role: 'writer', priority: -1, payload: 1 })).code).toBe(
      'SERVICE_OVERLOADED',
    );
    // Normal work still runs.
    expect(
      ok(await adapter.waitForTask(ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'normal' })))),
    ).toMatchObject({ status: 'completed' });
    // No spare and room in the pool: no agent is created under pressure.
    const spawn = err(await adapter.spawnAgent('writer'));
    expect(spawn.code).toBe('SERVICE_OVERLOADED');
    expect(spawn.message).toMatch(/no new agent is created/);

    sampler.rssBytes = 100;
    await monitor.sampleNow();
    expect(ok(await adapter.delegateTaskToAgent({ role: 'writer', priority: 'low', payload: 2 }))).toEqual(
      expect.any(String),
    );
  });

  it('TASK_TIMEOUT, TASK_CANCELLED and TASK_FAILED (agent error, and a dead-lettered task) in the task status', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    const startedEvents = record(o, 'task:started');

    const timedOut = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true }, timeout: 0.02 }));
    expect(ok(await adapter.waitForTask(timedOut))).toMatchObject({
      status: 'timeout',
      error: { code: 'TASK_TIMEOUT' },
    });

    const cancelled = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    await until(() => lab.held.length === 1);
    expect(o.cancel(startedEvents.at(-1)!.taskId, 'no longer needed')).toBe(true);
    const c = ok(await adapter.waitForTask(cancelled));
    expect(c).toMatchObject({ status: 'cancelled', error: { code: 'TASK_CANCELLED' } });
    expect(c.error!.message).toMatch(/no longer needed/);

    const failed = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { fail: 'the model refused' } }));
    expect(ok(await adapter.waitForTask(failed))).toMatchObject({
      status: 'failed',
      error: { code: 'TASK_FAILED', message: 'the model refused' },
    });

    const deadLettered = ok(
      await adapter.delegateTaskToAgent({ role: 'writer', payload: { fail: 'again and again' }, max_retries: 2 }),
    );
    const d = ok(await adapter.waitForTask(deadLettered));
    expect(d).toMatchObject({ status: 'failed', attempts: 3, error: { code: 'TASK_FAILED' } });
    expect(d.error!.message).toMatch(/failed 3 attempt\(s\) and was dead-lettered: again and again/);
    expect(o.deadLetters().map((l) => l.attempts.length)).toEqual([3]);
  });

  it('an agent error that carries an orchestrator code is mapped by the table (a dependency breaker that is open)', async () => {
    const o = await started({ agentBreaker: false });
    const vendor = o.resources.breaker(
      'vendor',
      async (): Promise<string> => {
        throw new Error('vendor down');
      },
      { volumeThreshold: 1, errorThresholdPercentage: 1, resetTimeoutMs: 60_000 },
    );
    await vendor().catch(() => {});
    o.registerAgent({ execute: () => vendor() }, { capabilities: ['llm'] });
    const adapter = new OrchestratorsCompatibilityAdapter(o);
    const s = ok(
      await adapter.waitForTask(ok(await adapter.delegateTaskToAgent({ capabilities: ['llm'], payload: 'x' }))),
    );
    expect(s.status).toBe('failed');
    expect(s.error).toEqual({ code: 'SERVICE_UNAVAILABLE', message: new BreakerOpenError('vendor').message });
  });

  it('AGENT_SPAWN_FAILED: the pool’s factory fails', async () => {
    const lab = new Lab();
    let made = 0;
    const o = await started({
      pools: [
        lab.pool('writer', ['text'], {
          maxAgents: 3,
          createAttempts: 1,
          create: () => {
            if (made++ >= 1) throw new Error('vendor quota reached');
            return lab.agent();
          },
        }),
      ],
    });
    const adapter = new OrchestratorsCompatibilityAdapter(o);
    const e = err(await adapter.spawnAgent('writer'));
    expect(e.code).toBe('AGENT_SPAWN_FAILED');
    expect(e.message).toContain('vendor quota reached');
    expect(made).toBe(2);
  });

  it('AGENT_NOT_FOUND, TASK_NOT_FOUND and INVALID_REQUEST', async () => {
    const { adapter } = await setup(new Lab());
    for (const answer of [await adapter.getAgentStatus('writer-99'), await adapter.shutdownAgent('writer-99')]) {
      expect(err(answer)).toMatchObject({ code: 'AGENT_NOT_FOUND', message: expect.stringContaining('writer-99') });
    }
    for (const answer of [await adapter.getTaskStatus('t-99'), await adapter.waitForTask('t-99')]) {
      expect(err(answer)).toMatchObject({ code: 'TASK_NOT_FOUND', message: expect.stringContaining('t-99') });
    }
    expect(err(await adapter.delegateTaskToAgent({ role: 'writer', priority: 'asap' as never })).code).toBe(
      'INVALID_REQUEST',
    );
  });
});

describe('toLegacyError', () => {
  it('the table covers every unified code, as documented', () => {
    expect(Object.keys(LEGACY_ERROR_CODES).sort()).toEqual(Object.keys(ERRORS).sort());
    expect({ ...LEGACY_ERROR_CODES }).toEqual(EXPECTED);
    expect(Object.isFrozen(LEGACY_ERROR_CODES)).toBe(true);
  });

  it.each(Object.entries(LEGACY_ERROR_CODES))('%s → %s, the message passed through', async (code, legacy) => {
    const o = make();
    const adapter = new OrchestratorsCompatibilityAdapter(o);
    // An error object with that code...
    const plain = Object.assign(new Error(`something about ${code}`), { code });
    expect(adapter.toLegacyError(plain)).toEqual({ error: { code: legacy, message: `something about ${code}` } });
    // ...and the library's own error of that code.
    const real = ERRORS[code as OrchestratorErrorCode];
    expect(real.code).toBe(code);
    expect(adapter.toLegacyError(real)).toEqual({ error: { code: legacy, message: real.message } });
    // A known code wins over the fallback.
    expect(adapter.toLegacyError(real, LEGACY_TASK_FAILED).error.code).toBe(legacy);
  });

  it('errors without a known code are INTERNAL_ERROR (or the fallback given)', () => {
    const adapter = new OrchestratorsCompatibilityAdapter(make());
    expect(adapter.toLegacyError(new TypeError('x is not a function'))).toEqual({
      error: { code: LEGACY_INTERNAL_ERROR, message: 'x is not a function' },
    });
    expect(LEGACY_INTERNAL_ERROR).toBe('INTERNAL_ERROR');
    expect(adapter.toLegacyError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toEqual({
      error: { code: 'INTERNAL_ERROR', message: 'socket hang up' },
    });
    expect(adapter.toLegacyError(Object.assign(new Error('numeric'), { code: 42 })).error.code).toBe('INTERNAL_ERROR');
    // Keys of Object.prototype are not codes of the table.
    for (const code of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      expect(adapter.toLegacyError(Object.assign(new Error('proto'), { code })).error.code).toBe('INTERNAL_ERROR');
    }
    expect(adapter.toLegacyError('plain string')).toEqual({
      error: { code: 'INTERNAL_ERROR', message: 'plain string' },
    });
    for (const value of [undefined, null, 42, { message: 'not an Error' }]) {
      expect(adapter.toLegacyError(value)).toEqual({ error: { code: 'INTERNAL_ERROR', message: 'The call failed' } });
    }
    expect(adapter.toLegacyError(new Error('agent broke'), LEGACY_TASK_FAILED)).toEqual({
      error: { code: 'TASK_FAILED', message: 'agent broke' },
    });
  });

  it('an unexpected error from a call answers INTERNAL_ERROR instead of throwing', async () => {
    // Something that looks enough like an orchestrator to be accepted, and breaks in delegate and spawnAgent.
    const broken = {
      delegate(): never {
        throw new TypeError('engine exploded');
      },
      spawnAgent(): Promise<string> {
        return Promise.reject(new RangeError('pool exploded'));
      },
      unregisterAgent(): Promise<void> {
        return Promise.reject(new Error('cannot'));
      },
      on() {
        return this;
      },
      stats: () => ({ pools: [{ role: 'writer', capabilities: ['text'] }] }),
    };
    const adapter = new OrchestratorsCompatibilityAdapter(broken as unknown as UnifiedOrchestrator);
    expect(await adapter.delegateTaskToAgent({ role: 'writer' })).toEqual({
      error: { code: 'INTERNAL_ERROR', message: 'engine exploded' },
    });
    expect(await adapter.spawnAgent('writer')).toEqual({ error: { code: 'INTERNAL_ERROR', message: 'pool exploded' } });
    expect(await adapter.shutdownAgent('writer-1')).toEqual({ error: { code: 'INTERNAL_ERROR', message: 'cannot' } });
  });
});

describe('errorCodes overrides', () => {
  it('replace the legacy code of the unified codes they name, for call answers and task statuses alike', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(
      lab,
      { maxQueueSize: 1 },
      {
        errorCodes: {
          UNKNOWN_ROLE: 'NO_SUCH_ROLE',
          QUEUE_FULL: 'QUEUE_IS_FULL',
          TASK_TIMEOUT: 'TIMED_OUT',
          VALIDATION_ERROR: 'BAD_INPUT',
        },
      },
    );
    expect(err(await adapter.delegateTaskToAgent({ role: 'ghost' })).code).toBe('NO_SUCH_ROLE');
    expect(err(await adapter.spawnAgent('ghost')).code).toBe('NO_SUCH_ROLE');
    expect(err(await adapter.delegateTaskToAgent({ payload: 1 })).code).toBe('BAD_INPUT');
    expect(err(await adapter.getTaskStatus('')).code).toBe('BAD_INPUT');

    const timedOut = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true }, timeout: 0.02 }));
    const s = ok(await adapter.waitForTask(timedOut));
    // The state still follows the unified outcome; only the code is the override.
    expect(s).toMatchObject({ status: 'timeout', error: { code: 'TIMED_OUT' } });

    ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'waits' }));
    expect(err(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'one too many' })).code).toBe(
      'QUEUE_IS_FULL',
    );
    // Codes not overridden keep the table's.
    expect(err(await adapter.spawnAgent('writer')).code).toBe('CAPACITY_EXCEEDED');
    expect(err(await adapter.getTaskStatus('nope')).code).toBe('TASK_NOT_FOUND');
    // Another adapter over the same orchestrator is not affected.
    expect(err(await new OrchestratorsCompatibilityAdapter(o).delegateTaskToAgent({ role: 'ghost' })).code).toBe(
      'UNKNOWN_ROLE',
    );
    lab.releaseAll();
  });

  it('an override for a code outside the table maps errors with that code too', () => {
    const adapter = new OrchestratorsCompatibilityAdapter(make(), { errorCodes: { ECONNRESET: 'NETWORK' } as never });
    expect(adapter.toLegacyError(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toEqual({
      error: { code: 'NETWORK', message: 'reset' },
    });
  });
});
