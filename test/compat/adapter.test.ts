/**
 * OrchestratorsCompatibilityAdapter over a real, started UnifiedOrchestrator: every legacy call and its snake_case
 * alias, the task mapping (role and capabilities, priority names, timeout seconds, max_retries, tenant, caller task
 * id), the task status through its states, agent calls, finished-task retention, input and option validation.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  LEGACY_PRIORITIES,
  OrchestratorsCompatibilityAdapter,
  ValidationError,
  type LegacyTask,
  type LegacyTaskStatus,
  type UnifiedOrchestrator,
} from 'unified-orchestrator';
import { err, Lab, ok, record, sleep, started, stopAll, until } from './helpers.js';

afterEach(stopAll);

/** A started orchestrator with one `writer` agent (concurrency 1, no spare) from `lab`, and an adapter over it. */
async function setup(
  lab: Lab,
  options: ConstructorParameters<typeof OrchestratorsCompatibilityAdapter>[1] = {},
  orchestrator: Parameters<typeof started>[0] = {},
): Promise<{ o: UnifiedOrchestrator; adapter: OrchestratorsCompatibilityAdapter }> {
  const o = await started({
    pools: [lab.pool('writer', ['text'])],
    retry: { baseDelayMs: 1, maxDelayMs: 2 },
    agentBreaker: false,
    ...orchestrator,
  });
  return { o, adapter: new OrchestratorsCompatibilityAdapter(o, options) };
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

async function status(adapter: OrchestratorsCompatibilityAdapter, id: string): Promise<LegacyTaskStatus> {
  return ok(await adapter.getTaskStatus(id));
}

describe('delegateTaskToAgent and getTaskStatus', () => {
  it('answers an id whose status goes pending → running → completed, with the agent, the attempts and the result', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab);

    const first = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    expect(typeof first).toBe('string');
    // The free agent took it at once (inside delegate): running already.
    expect(await status(adapter, first)).toMatchObject({
      task_id: first,
      status: 'running',
      agent_id: 'writer-1',
      attempts: 1,
    });

    const second = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'second' }));
    expect(second).not.toBe(first);
    const waiting = await status(adapter, second);
    expect(waiting).toMatchObject({ task_id: second, status: 'pending', agent_id: null, attempts: 0 });
    expect(waiting).not.toHaveProperty('result');
    expect(waiting).not.toHaveProperty('error');
    expect(waiting.created_at).toMatch(ISO);
    expect(waiting.updated_at).toMatch(ISO);

    lab.held[0]!.release('first done');
    const done = ok(await adapter.waitForTask(first));
    expect(done).toMatchObject({
      task_id: first,
      status: 'completed',
      agent_id: 'writer-1',
      attempts: 1,
      result: 'first done',
    });
    expect(done).not.toHaveProperty('error');
    expect(Date.parse(done.updated_at)).toBeGreaterThanOrEqual(Date.parse(done.created_at));

    expect(ok(await adapter.waitForTask(second))).toMatchObject({
      status: 'completed',
      agent_id: 'writer-1',
      attempts: 1,
      result: { echo: 'second' },
    });
    // Reading a status again answers the same thing: the adapter keeps finished tasks.
    expect(await status(adapter, first)).toEqual(done);
  });

  it('answers to every snake_case alias like to the camelCase call', async () => {
    const lab = new Lab();
    const o = await started({ pools: [lab.pool('writer', ['text'], { minAgents: 0, maxAgents: 2 })] });
    const adapter = new OrchestratorsCompatibilityAdapter(o);

    const agentId = ok(await adapter.spawn_agent('writer'));
    expect(agentId).toMatch(/^writer-\d+$/);
    expect(o.agent(agentId)).toBeDefined();
    expect(ok(await adapter.get_agent_status(agentId))).toEqual(ok(await adapter.getAgentStatus(agentId)));
    expect(ok(await adapter.get_agent_status(agentId))).toMatchObject({
      agent_id: agentId,
      role: 'writer',
      status: 'idle',
    });

    const taskId = ok(await adapter.delegate_task_to_agent({ role: 'writer', payload: 'via alias' }));
    const final = ok(await adapter.wait_for_task(taskId));
    expect(final).toMatchObject({ task_id: taskId, status: 'completed', result: { echo: 'via alias' } });
    expect(ok(await adapter.get_task_status(taskId))).toEqual(final);
    expect(lab.runsOf('via alias')).toHaveLength(1);

    // wait_for_task passes its timeout on: a held task is answered as it is when the timeout passes.
    const heldId = ok(await adapter.delegate_task_to_agent({ role: 'writer', payload: { hold: true } }));
    await until(() => lab.held.length === 1);
    expect(ok(await adapter.wait_for_task(heldId, 0.02))).toMatchObject({ status: 'running' });
    lab.releaseAll();

    expect(ok(await adapter.shutdown_agent(agentId))).toEqual({ agent_id: agentId, status: 'terminated' });
    expect(o.agent(agentId)).toBeUndefined();
    expect(err(await adapter.get_agent_status(agentId)).code).toBe('AGENT_NOT_FOUND');

    // Each alias is the same call: errors come through them too.
    expect(err(await adapter.spawn_agent('ghost')).code).toBe('UNKNOWN_ROLE');
    expect(err(await adapter.get_task_status('nope')).code).toBe('TASK_NOT_FOUND');
    expect(err(await adapter.shutdown_agent('nope')).code).toBe('AGENT_NOT_FOUND');
    expect(err(await adapter.wait_for_task('nope')).code).toBe('TASK_NOT_FOUND');
    expect(err(await adapter.delegate_task_to_agent({ role: 'ghost' })).code).toBe('UNKNOWN_ROLE');
  });
});

describe('waitForTask', () => {
  it('without a timeout waits until the task is terminal', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab);
    const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    let answered: LegacyTaskStatus | undefined;
    const waiting = adapter.waitForTask(id).then((s) => (answered = ok(s)));
    await sleep(30);
    expect(answered).toBeUndefined();
    lab.held[0]!.release({ n: 1 });
    await waiting;
    expect(answered).toMatchObject({ task_id: id, status: 'completed', result: { n: 1 } });
  });

  it('with a timeout answers the status as it is then (not terminal), and the task goes on', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab);
    const running = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    const pending = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'behind' }));

    expect(ok(await adapter.waitForTask(running, 0.03))).toMatchObject({
      task_id: running,
      status: 'running',
      attempts: 1,
    });
    expect(ok(await adapter.waitForTask(pending, 0.01))).toMatchObject({
      task_id: pending,
      status: 'pending',
      attempts: 0,
    });

    lab.releaseAll();
    // A long timeout does not hold the answer back once the task is terminal.
    expect(ok(await adapter.waitForTask(running, 1_000))).toMatchObject({ status: 'completed' });
    expect(ok(await adapter.waitForTask(pending, 1_000))).toMatchObject({
      status: 'completed',
      result: { echo: 'behind' },
    });
  });

  it('answers TASK_NOT_FOUND for an unknown id and INVALID_REQUEST for a bad timeout', async () => {
    const { adapter } = await setup(new Lab());
    expect(err(await adapter.waitForTask('never-delegated'))).toMatchObject({ code: 'TASK_NOT_FOUND' });
    expect(err(await adapter.waitForTask('never-delegated')).message).toContain('never-delegated');
    const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 1 }));
    for (const bad of [0, -1, Number.NaN, Infinity, 3_000_000, '5' as unknown as number]) {
      const e = err(await adapter.waitForTask(id, bad));
      expect(e.code).toBe('INVALID_REQUEST');
      expect(e.message).toContain('`timeout`');
    }
  });
});

describe('the caller task_id', () => {
  it('is the id answered, and a second delegation with it answers the same task without running it again', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    const task = { role: 'writer', payload: { hold: true }, task_id: 'order-42' } as const;

    expect(await adapter.delegateTaskToAgent(task)).toBe('order-42');
    await until(() => lab.held.length === 1);
    // While it runs.
    expect(await adapter.delegateTaskToAgent(task)).toBe('order-42');
    expect(await adapter.delegate_task_to_agent({ ...task, payload: 'other payload' })).toBe('order-42');
    expect(await status(adapter, 'order-42')).toMatchObject({ task_id: 'order-42', status: 'running' });

    lab.releaseAll();
    expect(ok(await adapter.waitForTask('order-42'))).toMatchObject({
      task_id: 'order-42',
      status: 'completed',
      result: { released: { hold: true } },
    });
    // After it finished.
    expect(await adapter.delegateTaskToAgent(task)).toBe('order-42');

    expect(lab.runs).toHaveLength(1);
    expect(o.stats().submitted).toBe(1);
    expect(o.stats().completed).toBe(1);
  });

  it('is read in camelCase too, and differs from the orchestrator’s own id', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    const starts = record(o, 'task:started');
    expect(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'c', taskId: 'camel-1' })).toBe('camel-1');
    expect(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'c', taskId: 'camel-1' })).toBe('camel-1');
    expect(ok(await adapter.waitForTask('camel-1'))).toMatchObject({ task_id: 'camel-1', status: 'completed' });
    expect(lab.runs).toHaveLength(1);
    expect(starts).toHaveLength(1);
    expect(starts[0]!.taskId).not.toBe('camel-1');
    // The orchestrator's id is not a legacy id: only the caller's is.
    expect(err(await adapter.getTaskStatus(starts[0]!.taskId)).code).toBe('TASK_NOT_FOUND');
  });

  it('different ids are different tasks', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab);
    expect(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'same', task_id: 'a' })).toBe('a');
    expect(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'same', task_id: 'b' })).toBe('b');
    await adapter.waitForTask('a');
    await adapter.waitForTask('b');
    expect(lab.runsOf('same')).toHaveLength(2);
  });
});

describe('terminal states', () => {
  it('an agent error: failed with TASK_FAILED and its message', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab);
    const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { fail: 'kaput' } }));
    const s = ok(await adapter.waitForTask(id));
    expect(s).toMatchObject({
      task_id: id,
      status: 'failed',
      agent_id: 'writer-1',
      attempts: 1,
      error: { code: 'TASK_FAILED', message: 'kaput' },
    });
    expect(s).not.toHaveProperty('result');
  });

  it('timeout (seconds): the attempt is aborted through its signal and the task ends as timeout / TASK_TIMEOUT', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab);
    const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true }, timeout: 0.05 }));
    await until(() => lab.runs.length === 1);
    const signal = lab.runs[0]!.ctx.signal;
    expect(signal.aborted).toBe(false);
    const s = ok(await adapter.waitForTask(id));
    expect(s).toMatchObject({ status: 'timeout', attempts: 1, error: { code: 'TASK_TIMEOUT' } });
    expect(s.error!.message).toMatch(/timed out after 50 ms/);
    expect(signal.aborted).toBe(true);
    expect((signal.reason as { code?: string }).code).toBe('TASK_TIMEOUT');
    expect(lab.held).toHaveLength(0); // the agent saw the abort
  });

  it('a fractional timeout is rounded to ms; a task without one uses the orchestrator default', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab, {}, { defaultTimeoutMs: 40 });
    const byDefault = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    expect(ok(await adapter.waitForTask(byDefault))).toMatchObject({
      status: 'timeout',
      error: { code: 'TASK_TIMEOUT' },
    });
    expect(err(await adapter.delegateTaskToAgent({ role: 'writer', timeout: 0 })).code).toBe('INVALID_REQUEST');
    const tiny = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true }, timeout: 0.0001 }));
    const s = ok(await adapter.waitForTask(tiny));
    expect(s.status).toBe('timeout');
    expect(s.error!.message).toMatch(/after 1 ms/);
  });

  it('cancelled through orchestrator.cancel(unified id): cancelled / TASK_CANCELLED, still answered under the caller id', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    const queued = record(o, 'task:queued');
    const startedEvents = record(o, 'task:started');

    // A running one.
    expect(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true }, task_id: 'c-run' })).toBe(
      'c-run',
    );
    const runningId = startedEvents[0]!.taskId;
    expect(runningId).not.toBe('c-run');
    // A waiting one.
    expect(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'never runs', task_id: 'c-wait' })).toBe(
      'c-wait',
    );
    const waitingId = queued[0]!.taskId;

    expect(o.cancel(waitingId, 'operator said so')).toBe(true);
    expect(o.cancel(runningId)).toBe(true);
    const w = ok(await adapter.waitForTask('c-wait'));
    expect(w).toMatchObject({
      task_id: 'c-wait',
      status: 'cancelled',
      agent_id: null,
      attempts: 0,
      error: { code: 'TASK_CANCELLED' },
    });
    expect(w.error!.message).toContain('operator said so');
    expect(ok(await adapter.waitForTask('c-run'))).toMatchObject({
      task_id: 'c-run',
      status: 'cancelled',
      agent_id: 'writer-1',
      attempts: 1,
      error: { code: 'TASK_CANCELLED' },
    });
    expect(lab.runsOf('never runs')).toHaveLength(0);
  });
});

describe('legacy task fields', () => {
  it('priority names map to LEGACY_PRIORITIES: queued low, critical, normal, high (and a number) run critical, 50, high, normal, low', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    const queued = record(o, 'task:queued');
    ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    await until(() => lab.held.length === 1);
    const priorities = ['low', 'critical', 'normal', 'high', 50] as const;
    const ids: string[] = [];
    for (const priority of priorities)
      ids.push(ok(await adapter.delegateTaskToAgent({ role: 'writer', priority, payload: `p:${priority}` })));
    expect(queued.map((e) => e.priority)).toEqual([
      LEGACY_PRIORITIES.low,
      LEGACY_PRIORITIES.critical,
      LEGACY_PRIORITIES.normal,
      LEGACY_PRIORITIES.high,
      50,
    ]);
    expect(LEGACY_PRIORITIES).toEqual({ low: -10, normal: 0, high: 10, critical: 100 });

    lab.releaseAll();
    for (const id of ids) await adapter.waitForTask(id);
    expect(lab.runs.slice(1).map((r) => r.payload)).toEqual(['p:critical', 'p:50', 'p:high', 'p:normal', 'p:low']);
  });

  it('max_retries: attempts after the first; the status counts them and is pending again during a backoff', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    const duringBackoff: Array<string | undefined> = [];
    // Registered after the adapter's own listener: the adapter has updated the status when this runs.
    // getTaskStatus reads the status synchronously, before its promise settles.
    o.on('task:retrying', () => void adapter.getTaskStatus('r-1').then((s) => duringBackoff.push(ok(s).status)));

    ok(
      await adapter.delegateTaskToAgent({
        role: 'writer',
        payload: { failTimes: 2, key: 'a' },
        max_retries: 2,
        task_id: 'r-1',
      }),
    );
    expect(ok(await adapter.waitForTask('r-1'))).toMatchObject({
      status: 'completed',
      attempts: 3,
      result: { attempt: 3 },
    });
    await until(() => duringBackoff.length === 2);
    expect(duringBackoff).toEqual(['pending', 'pending']);

    // One retry is not enough for two failures: the task gives up (dead-lettered) as failed / TASK_FAILED.
    const gaveUp = ok(
      await adapter.delegateTaskToAgent({ role: 'writer', payload: { failTimes: 2, key: 'b' }, maxRetries: 1 }),
    );
    const s = ok(await adapter.waitForTask(gaveUp));
    expect(s).toMatchObject({ status: 'failed', attempts: 2, error: { code: 'TASK_FAILED' } });
    expect(s.error!.message).toMatch(/dead-lettered/);
    expect(o.deadLetters()).toHaveLength(1);

    // Without max_retries: the orchestrator's default (one attempt).
    const once = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { failTimes: 1, key: 'c' } }));
    expect(ok(await adapter.waitForTask(once))).toMatchObject({
      status: 'failed',
      attempts: 1,
      error: { code: 'TASK_FAILED', message: 'failure 1 of c' },
    });
    expect(lab.runs.filter((r) => (r.payload as { key?: string }).key === 'a')).toHaveLength(3);
    expect(lab.runs.filter((r) => (r.payload as { key?: string }).key === 'b')).toHaveLength(2);
  });

  it('max_retries 0 means a single attempt even when the orchestrator default retries', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab, {}, { defaultMaxAttempts: 3 });
    const id = ok(
      await adapter.delegateTaskToAgent({ role: 'writer', payload: { failTimes: 5, key: 'z' }, max_retries: 0 }),
    );
    expect(ok(await adapter.waitForTask(id))).toMatchObject({ status: 'failed', attempts: 1 });
    const byDefault = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { failTimes: 2, key: 'y' } }));
    expect(ok(await adapter.waitForTask(byDefault))).toMatchObject({ status: 'completed', attempts: 3 });
  });

  it('tenant_id (and tenantId) is the task’s tenant', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    const queued = record(o, 'task:queued');
    ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true }, tenant_id: 'acme' }));
    const second = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'camel', tenantId: 'globex' }));
    const third = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'none' }));
    expect(queued.map((e) => e.tenantId)).toEqual(['globex', undefined]);
    lab.releaseAll();
    await adapter.waitForTask(second);
    await adapter.waitForTask(third);
    expect(Object.fromEntries(lab.runs.map((r) => [JSON.stringify(r.payload), r.ctx.tenantId]))).toEqual({
      '{"hold":true}': 'acme',
      '"camel"': 'globex',
      '"none"': undefined,
    });
  });

  it('type is the task type (default "legacy", or defaultType)', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    await adapter.waitForTask(ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 1 })));
    await adapter.waitForTask(ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 2, type: 'summarise' })));
    const other = new OrchestratorsCompatibilityAdapter(o, { defaultType: 'old-system' });
    await other.waitForTask(ok(await other.delegateTaskToAgent({ role: 'writer', payload: 3 })));
    expect(lab.runs.map((r) => r.ctx.type)).toEqual(['legacy', 'summarise', 'old-system']);
  });

  it('role stands for its pool’s capabilities, capabilities add to them, and `roles` names roles that are not pools', async () => {
    const lab = new Lab();
    const o = await started({ pools: [lab.pool('writer', ['text']), lab.pool('artist', ['text', 'images'])] });
    const adapter = new OrchestratorsCompatibilityAdapter(o, { roles: { editor: ['text'], illustrator: ['images'] } });
    const run = async (task: LegacyTask): Promise<string | null> =>
      ok(await adapter.waitForTask(ok(await adapter.delegateTaskToAgent(task)))).agent_id;

    expect(await run({ role: 'writer', payload: 1, capabilities: ['images'] })).toBe('artist-1');
    expect(await run({ capabilities: ['images'], payload: 2 })).toBe('artist-1');
    expect(await run({ role: 'illustrator', payload: 3 })).toBe('artist-1');
    expect(['writer-1', 'artist-1']).toContain(await run({ role: 'editor', payload: 4 }));
    expect(await run({ role: 'artist', payload: 5 })).toBe('artist-1');
    // A role of `roles` is not a pool: nothing to spawn.
    expect(err(await adapter.spawnAgent('editor')).code).toBe('UNKNOWN_ROLE');
    // The message names the known roles, pools and `roles` alike.
    const unknown = err(await adapter.delegateTaskToAgent({ role: 'ghost' }));
    expect(unknown.code).toBe('UNKNOWN_ROLE');
    expect(unknown.message).toMatch(/editor/);
    expect(unknown.message).toMatch(/writer/);
  });

  it('a task delegated while the orchestrator is halted is accepted and stays pending until resume', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    await o.halt('maintenance', { local: true });
    const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'held' }));
    await sleep(20);
    expect(await status(adapter, id)).toMatchObject({ status: 'pending', attempts: 0 });
    expect(lab.runs).toHaveLength(0);
    await o.resume({ local: true });
    expect(ok(await adapter.waitForTask(id))).toMatchObject({ status: 'completed', result: { echo: 'held' } });
  });
});

describe('spawnAgent, getAgentStatus, shutdownAgent', () => {
  it('spawns an agent of a pool, reports its state and counts, and shuts it down (then AGENT_NOT_FOUND)', async () => {
    const lab = new Lab();
    const o = await started({ pools: [lab.pool('writer', ['text', 'markdown'], { minAgents: 0, maxAgents: 2 })] });
    const adapter = new OrchestratorsCompatibilityAdapter(o);
    expect(o.agents()).toHaveLength(0);

    const agentId = ok(await adapter.spawnAgent('writer'));
    expect(o.agents().map((a) => a.id)).toEqual([agentId]);
    expect(ok(await adapter.getAgentStatus(agentId))).toEqual({
      agent_id: agentId,
      role: 'writer',
      status: 'idle',
      capabilities: ['text', 'markdown'],
      active_tasks: 0,
      completed_tasks: 0,
      failed_tasks: 0,
    });

    const held = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    await until(() => lab.held.length === 1);
    expect(ok(await adapter.getAgentStatus(agentId))).toMatchObject({ status: 'busy', active_tasks: 1 });
    lab.releaseAll();
    await adapter.waitForTask(held);
    await adapter.waitForTask(ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { fail: 'x' } })));
    expect(ok(await adapter.getAgentStatus(agentId))).toMatchObject({
      status: 'idle',
      active_tasks: 0,
      completed_tasks: 1,
      failed_tasks: 1,
    });

    expect(ok(await adapter.shutdownAgent(agentId))).toEqual({ agent_id: agentId, status: 'terminated' });
    expect(o.agent(agentId)).toBeUndefined();
    const gone = err(await adapter.getAgentStatus(agentId));
    expect(gone.code).toBe('AGENT_NOT_FOUND');
    expect(gone.message).toContain(agentId);
    expect(err(await adapter.shutdownAgent(agentId)).code).toBe('AGENT_NOT_FOUND');
  });

  it('an outside agent has role null', async () => {
    const lab = new Lab();
    const o = await started();
    const adapter = new OrchestratorsCompatibilityAdapter(o);
    const id = o.registerAgent(lab.agent(), { capabilities: ['x'] });
    expect(ok(await adapter.getAgentStatus(id))).toMatchObject({
      agent_id: id,
      role: null,
      status: 'idle',
      capabilities: ['x'],
    });
  });
});

describe('a halt', () => {
  it('puts a running task back to pending (its attempt aborted); after resume it completes', async () => {
    const lab = new Lab();
    const { o, adapter } = await setup(lab);
    const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    expect((await status(adapter, id)).status).toBe('running');
    await o.halt('maintenance');
    expect((await status(adapter, id)).status).toBe('pending');
    await o.resume();
    await until(() => lab.held.length > 0);
    lab.releaseAll();
    expect(ok(await adapter.waitForTask(id))).toMatchObject({ status: 'completed' });
  });
});

describe('finished-task retention', () => {
  it('maxFinishedTasks keeps the most recently finished ones; older ones are TASK_NOT_FOUND', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab, { maxFinishedTasks: 2 });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: i }));
      await adapter.waitForTask(id);
      ids.push(id);
    }
    expect(err(await adapter.getTaskStatus(ids[0]!)).code).toBe('TASK_NOT_FOUND');
    expect(ok(await adapter.getTaskStatus(ids[1]!))).toMatchObject({ status: 'completed', result: { echo: 1 } });
    expect(ok(await adapter.getTaskStatus(ids[2]!))).toMatchObject({ status: 'completed', result: { echo: 2 } });
  });

  it('a running task is never evicted, even with maxFinishedTasks 0; it goes once finished', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab, { maxFinishedTasks: 0 });
    const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    for (let i = 0; i < 3; i++) await adapter.delegateTaskToAgent({ role: 'writer', payload: i });
    expect(ok(await adapter.getTaskStatus(id)).status).toBe('running');
    const waiting = adapter.waitForTask(id);
    lab.releaseAll();
    // The waiter still gets the final status...
    expect(ok(await waiting)).toMatchObject({ status: 'completed' });
    // ...but it is not kept.
    expect(err(await adapter.getTaskStatus(id)).code).toBe('TASK_NOT_FOUND');
  });

  it('finishedTaskTtlMs forgets a finished task after that long', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab, { finishedTaskTtlMs: 40 });
    const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'ttl' }));
    await adapter.waitForTask(id);
    expect(ok(await adapter.getTaskStatus(id)).status).toBe('completed');
    await sleep(80);
    expect(err(await adapter.getTaskStatus(id)).code).toBe('TASK_NOT_FOUND');
  });

  it('after finishedTaskTtlMs, waitForTask answers TASK_NOT_FOUND and a caller task_id delegated again is a new task', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab, { finishedTaskTtlMs: 20 });
    const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'first', task_id: 'x' }));
    await adapter.waitForTask(id);
    const other = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'other' }));
    await adapter.waitForTask(other);
    await sleep(50);
    expect(err(await adapter.waitForTask(other)).code).toBe('TASK_NOT_FOUND');
    expect(await adapter.delegateTaskToAgent({ role: 'writer', payload: 'again', task_id: 'x' })).toBe('x');
    expect(ok(await adapter.getTaskStatus('x'))).toMatchObject({ task_id: 'x' });
  });
});

describe('invalid input', () => {
  const field = (name: string): RegExp => new RegExp(`\`${name.replace(/[.]/g, '\\.')}\``);
  const cases: Array<[string, unknown, RegExp]> = [
    ['null task', null, /task/],
    ['string task', 'write me a poem', /task/],
    ['array task', [{ role: 'writer' }], /task/],
    ['number task', 42, /task/],
    ['unknown key', { role: 'writer', colour: 'red' }, field('task.colour')],
    ['no role nor capabilities', { payload: 1 }, field('task.role')],
    ['empty role', { role: '' }, field('task.role')],
    ['role not a string', { role: 7 }, field('task.role')],
    ['capabilities not an array', { capabilities: 'text' }, field('task.capabilities')],
    ['empty capability', { capabilities: ['text', ''] }, field('task.capabilities')],
    ['empty type', { role: 'writer', type: '' }, field('task.type')],
    ['unknown priority name', { role: 'writer', priority: 'urgent' }, field('task.priority')],
    ['fractional priority', { role: 'writer', priority: 1.5 }, field('task.priority')],
    ['zero timeout', { role: 'writer', timeout: 0 }, field('task.timeout')],
    ['negative timeout', { role: 'writer', timeout: -1 }, field('task.timeout')],
    ['string timeout', { role: 'writer', timeout: '30' }, field('task.timeout')],
    ['infinite timeout', { role: 'writer', timeout: Infinity }, field('task.timeout')],
    ['timeout past a timer', { role: 'writer', timeout: 2_147_484 }, field('task.timeout')],
    ['negative max_retries', { role: 'writer', max_retries: -1 }, field('task.max_retries')],
    ['fractional max_retries', { role: 'writer', max_retries: 1.5 }, field('task.max_retries')],
    ['max_retries too high', { role: 'writer', max_retries: 100 }, field('task.max_retries')],
    ['bad maxRetries', { role: 'writer', maxRetries: '2' }, field('task.max_retries')],
    ['empty task_id', { role: 'writer', task_id: '' }, field('task.task_id')],
    ['numeric task_id', { role: 'writer', task_id: 5 }, field('task.task_id')],
    ['task_id too long', { role: 'writer', task_id: 'x'.repeat(257) }, field('task.task_id')],
    ['bad taskId', { role: 'writer', taskId: '' }, field('task.task_id')],
  ];

  it.each(cases)(
    '%s → INVALID_REQUEST naming the field, and nothing reaches the orchestrator',
    async (_name, task, message) => {
      const lab = new Lab();
      const { o, adapter } = await setup(lab);
      const e = err(await adapter.delegateTaskToAgent(task as LegacyTask));
      expect(e.code).toBe('INVALID_REQUEST');
      expect(e.message).toMatch(message);
      expect(o.stats().submitted).toBe(0);
    },
  );

  it('a task_id of 256 characters is fine', async () => {
    const { adapter } = await setup(new Lab());
    const id = 'x'.repeat(256);
    expect(await adapter.delegateTaskToAgent({ role: 'writer', task_id: id })).toBe(id);
  });

  it('values the orchestrator refuses are INVALID_REQUEST too (tenant, priority range)', async () => {
    const { adapter } = await setup(new Lab());
    const tenant = err(await adapter.delegateTaskToAgent({ role: 'writer', tenant_id: 5 as unknown as string }));
    expect(tenant.code).toBe('INVALID_REQUEST');
    expect(tenant.message).toMatch(/tenant/i);
    const priority = err(await adapter.delegateTaskToAgent({ role: 'writer', priority: 10_000_000 }));
    expect(priority.code).toBe('INVALID_REQUEST');
    expect(priority.message).toMatch(/priority/);
  });

  it('ids of the other calls: empty or not a string → INVALID_REQUEST naming the argument', async () => {
    const { o, adapter } = await setup(new Lab());
    const answers: Array<[unknown, string]> = [
      [await adapter.getTaskStatus(''), 'task_id'],
      [await adapter.getTaskStatus(7 as unknown as string), 'task_id'],
      [await adapter.waitForTask(''), 'task_id'],
      [await adapter.getAgentStatus(''), 'agent_id'],
      [await adapter.getAgentStatus(undefined as unknown as string), 'agent_id'],
      [await adapter.shutdownAgent(''), 'agent_id'],
      [await adapter.spawnAgent(''), 'role'],
      [await adapter.spawnAgent(null as unknown as string), 'role'],
    ];
    for (const [answer, name] of answers) {
      const e = err(answer);
      expect(e.code).toBe('INVALID_REQUEST');
      expect(e.message).toContain(`\`${name}\``);
    }
    expect(o.agents()).toHaveLength(1);
  });

  it('no call throws, whatever it is given', async () => {
    const { adapter } = await setup(new Lab());
    const weird: unknown[] = [undefined, null, 0, {}, [], Symbol('s'), () => {}, Object.create(null)];
    for (const w of weird) {
      for (const call of [
        () => adapter.delegateTaskToAgent(w as LegacyTask),
        () => adapter.getTaskStatus(w as string),
        () => adapter.getAgentStatus(w as string),
        () => adapter.shutdownAgent(w as string),
        () => adapter.spawnAgent(w as string),
        () => adapter.waitForTask(w as string),
      ]) {
        const answer = await call();
        expect(err(answer).code).toMatch(/^(INVALID_REQUEST|UNKNOWN_ROLE|TASK_NOT_FOUND|AGENT_NOT_FOUND)$/);
      }
    }
  });
});

describe('options', () => {
  const cases: Array<[string, unknown, string]> = [
    ['not an object', 'fast', 'options'],
    ['unknown key', { maxTasks: 5 }, 'options.maxTasks'],
    ['negative maxFinishedTasks', { maxFinishedTasks: -1 }, 'options.maxFinishedTasks'],
    ['fractional maxFinishedTasks', { maxFinishedTasks: 1.5 }, 'options.maxFinishedTasks'],
    ['zero finishedTaskTtlMs', { finishedTaskTtlMs: 0 }, 'options.finishedTaskTtlMs'],
    ['string finishedTaskTtlMs', { finishedTaskTtlMs: '1h' }, 'options.finishedTaskTtlMs'],
    ['roles not an object', { roles: ['editor'] }, 'options.roles'],
    ['a role that is not a list', { roles: { editor: 'text' } }, 'options.roles.editor'],
    ['errorCodes not an object', { errorCodes: 'x' }, 'options.errorCodes'],
    ['an error code that is not a string', { errorCodes: { QUEUE_FULL: 5 } }, 'options.errorCodes.QUEUE_FULL'],
    ['empty defaultType', { defaultType: '' }, 'options.defaultType'],
  ];

  it.each(cases.map(([name, options, fieldName]) => [name, fieldName, options] as const))(
    '%s → ValidationError on field %s',
    async (_name, fieldName, options) => {
      const o = await started();
      let thrown: unknown;
      try {
        new OrchestratorsCompatibilityAdapter(o, options as never);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ValidationError);
      expect((thrown as ValidationError).field).toBe(fieldName);
    },
  );

  it('the first argument must be an orchestrator', () => {
    for (const bad of [undefined, null, {}, { delegate: 1 }]) {
      let thrown: unknown;
      try {
        new OrchestratorsCompatibilityAdapter(bad as never);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ValidationError);
      expect((thrown as ValidationError).field).toBe('orchestrator');
    }
  });

  it('accepts every option at its bounds', async () => {
    const o = await started();
    expect(
      () =>
        new OrchestratorsCompatibilityAdapter(o, {
          maxFinishedTasks: 0,
          finishedTaskTtlMs: Infinity,
          roles: {},
          errorCodes: {},
          defaultType: 't',
        }),
    ).not.toThrow();
  });
});

describe('close', () => {
  it('stops following the orchestrator’s events; outcomes are still recorded', async () => {
    const lab = new Lab();
    const { adapter } = await setup(lab);
    adapter.close();
    adapter.close();
    const id = ok(await adapter.delegateTaskToAgent({ role: 'writer', payload: { hold: true } }));
    await until(() => lab.held.length === 1);
    // The start is no longer heard of.
    expect(ok(await adapter.getTaskStatus(id))).toMatchObject({ status: 'pending', agent_id: null });
    lab.releaseAll();
    expect(ok(await adapter.waitForTask(id))).toMatchObject({
      status: 'completed',
      result: { released: { hold: true } },
    });
  });
});
