/**
 * Shadow mode: a fake legacy implementation (snake_case, polled through get_task_status) answers, the real adapter
 * over a real orchestrator runs the same call on the side, and the two are compared: events, stats and metrics for
 * matches, each kind of difference, comparators, incomplete and skipped runs, spawns, and close().
 */
import { isDeepStrictEqual } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  OrchestratorsCompatibilityAdapter,
  TrafficRouter,
  type LegacyOrchestrator,
  type LegacyTask,
  type ShadowComparison,
  type TrafficRouterOptions,
  type UnifiedOrchestrator,
} from 'unified-orchestrator';
import { FakeLegacy, snakeCase, type FakeTaskBehaviour } from './fakes.js';
import { err, Lab, metricsText, ok, record, sample, started, stopAll, until } from './helpers.js';

const routers: TrafficRouter[] = [];
afterEach(async () => {
  await Promise.all(routers.splice(0).map((r) => r.close()));
  await stopAll();
});

const M = 'unified_orchestrator_compat_';

interface Setup {
  o: UnifiedOrchestrator;
  lab: Lab;
  adapter: OrchestratorsCompatibilityAdapter;
  fake: FakeLegacy;
  r: TrafficRouter;
  compared: ShadowComparison[];
  differences: ShadowComparison[];
}

/**
 * A started orchestrator with a writer pool from a Lab, the adapter over it, a fake legacy whose tasks end as
 * `behave` says (by default completed with `{ echo: payload }`, like the Lab's agents), and a router in shadow mode.
 */
async function setup(
  options: {
    behave?: (task: LegacyTask) => FakeTaskBehaviour;
    router?: Partial<TrafficRouterOptions>;
    unified?: (adapter: OrchestratorsCompatibilityAdapter) => LegacyOrchestrator;
    maxAgents?: number;
  } = {},
): Promise<Setup> {
  const lab = new Lab();
  const o = await started({
    pools: [lab.pool('writer', ['text'], { maxAgents: options.maxAgents ?? 2 })],
    agentBreaker: false,
  });
  const adapter = new OrchestratorsCompatibilityAdapter(o);
  const fake = new FakeLegacy('L', options.behave);
  const r = new TrafficRouter({
    legacy: snakeCase(fake, false),
    unified: options.unified ? options.unified(adapter) : adapter,
    orchestrator: o,
    shadow: true,
    pollIntervalMs: 5,
    ...options.router,
  });
  routers.push(r);
  const compared: ShadowComparison[] = [];
  const differences: ShadowComparison[] = [];
  r.on('shadow:compared', (c) => compared.push(c)).on('shadow:difference', (c) => differences.push(c));
  return { o, lab, adapter, fake, r, compared, differences };
}

describe('shadow mode', () => {
  it('answers come from legacy; the unified side really runs the same task; a match is recorded', async () => {
    const { o, lab, fake, r, compared, differences } = await setup();
    const id = ok(await r.delegate_task_to_agent({ role: 'writer', payload: 'hello', tenant_id: 'acme' }));
    expect(id).toBe('L-task-1');
    expect(ok(await r.getTaskStatus(id))).toMatchObject({
      task_id: 'L-task-1',
      agent_id: 'L-agent-0',
      result: { echo: 'hello' },
    });
    await r.close();

    expect(lab.runsOf('hello')).toHaveLength(1);
    expect(lab.runs[0]!.ctx.tenantId).toBe('acme');
    expect(o.stats().completed).toBe(1);
    expect(fake.callsOf('delegateTaskToAgent')).toHaveLength(1);
    expect(compared).toHaveLength(1);
    expect(compared[0]).toMatchObject({
      method: 'delegateTaskToAgent',
      key: 'acme',
      legacy: { outcome: 'completed' },
      unified: { outcome: 'completed' },
      differences: [],
      result: 'match',
    });
    expect(compared[0]!.legacy.latencyMs).toBeGreaterThanOrEqual(0);
    expect(compared[0]!.unified.latencyMs).toBeGreaterThanOrEqual(0);
    expect(differences).toHaveLength(0);
    expect(r.stats()).toMatchObject({
      calls: { legacy: 2, unified: 0, shadow: 1 },
      shadowRuns: { match: 1, mismatch: 0, incomplete: 0, skipped: 0, inFlight: 0 },
    });

    const body = await metricsText(o);
    expect(sample(body, `${M}calls_total`, { method: 'delegateTaskToAgent', side: 'legacy' })).toBe(1);
    expect(sample(body, `${M}calls_total`, { method: 'delegateTaskToAgent', side: 'shadow' })).toBe(1);
    expect(sample(body, `${M}calls_total`, { method: 'getTaskStatus', side: 'legacy' })).toBe(1);
    expect(sample(body, `${M}shadow_comparisons_total`, { method: 'delegateTaskToAgent', result: 'match' })).toBe(1);
    expect(
      sample(body, `${M}shadow_comparisons_total`, { method: 'delegateTaskToAgent', result: 'mismatch' }),
    ).toBeUndefined();
    expect(sample(body, `${M}shadow_enabled`)).toBe(1);
    expect(sample(body, `${M}call_duration_seconds_count`, { method: 'delegateTaskToAgent', side: 'shadow' })).toBe(1);
  });

  it('without shadow mode, or for calls the unified side answers, nothing runs twice', async () => {
    const { lab, fake, r, compared } = await setup({ router: { shadow: false } });
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'plain' }));
    await r.setShadow(true);
    await r.setPercent(100);
    const id = ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'unified only' }));
    expect(ok(await r.waitForTask(id))).toMatchObject({ status: 'completed', result: { echo: 'unified only' } });
    await r.close();
    expect(lab.runs.map((run) => run.payload)).toEqual(['unified only']);
    expect(fake.callsOf('delegateTaskToAgent')).toHaveLength(1);
    expect(compared).toHaveLength(0);
  });

  it('a planted result difference is reported as shadow:difference ["result"] and counted in the metrics', async () => {
    const { o, lab, r, compared, differences } = await setup({
      behave: (task) => ({
        result: task.payload === 'plant' ? { echo: 'legacy says otherwise' } : { echo: task.payload },
      }),
    });
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'same' }));
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'plant' }));
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'same again' }));
    await r.close();

    expect(lab.runs).toHaveLength(3);
    expect(compared).toHaveLength(3);
    expect(differences).toHaveLength(1);
    expect(differences[0]).toMatchObject({
      method: 'delegateTaskToAgent',
      legacy: { outcome: 'completed' },
      unified: { outcome: 'completed' },
      differences: ['result'],
      result: 'mismatch',
    });
    expect(r.stats().shadowRuns).toEqual({ match: 2, mismatch: 1, incomplete: 0, skipped: 0, inFlight: 0 });

    const body = await metricsText(o);
    expect(body).toContain(`${M}shadow_differences_total{method="delegateTaskToAgent",kind="result"} 1`);
    expect(sample(body, `${M}shadow_differences_total`, { method: 'delegateTaskToAgent', kind: 'result' })).toBe(1);
    expect(
      sample(body, `${M}shadow_differences_total`, { method: 'delegateTaskToAgent', kind: 'outcome' }),
    ).toBeUndefined();
    expect(sample(body, `${M}shadow_comparisons_total`, { method: 'delegateTaskToAgent', result: 'mismatch' })).toBe(1);
    expect(sample(body, `${M}shadow_comparisons_total`, { method: 'delegateTaskToAgent', result: 'match' })).toBe(2);
  });

  it('an outcome difference: legacy completes, the unified agent throws', async () => {
    const { o, r, differences } = await setup();
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: { fail: 'unified broke' } }));
    await r.close();
    expect(differences).toHaveLength(1);
    expect(differences[0]!.differences).toEqual(['outcome']);
    expect(differences[0]!.legacy).toMatchObject({ outcome: 'completed' });
    expect(differences[0]!.legacy.code).toBeUndefined();
    expect(differences[0]!.unified.outcome).not.toBe('completed');
    expect(differences[0]!.unified.code).toBe('TASK_FAILED');
    expect(
      sample(await metricsText(o), `${M}shadow_differences_total`, { method: 'delegateTaskToAgent', kind: 'outcome' }),
    ).toBe(1);
  });

  it('an outcome difference: the unified side refuses a task legacy accepts', async () => {
    const { r, differences } = await setup();
    ok(await r.delegateTaskToAgent({ role: 'ghost', payload: 1 }));
    await r.close();
    expect(differences).toHaveLength(1);
    expect(differences[0]).toMatchObject({
      differences: ['outcome'],
      legacy: { outcome: 'completed' },
      unified: { outcome: 'error', code: 'UNKNOWN_ROLE' },
    });
  });

  it('an error-code difference: both fail, with different codes', async () => {
    const { o, r, differences, compared } = await setup({
      behave: (task) =>
        (task.payload as { fail?: string }).fail === 'code'
          ? { status: 'failed', error: { code: 'LEGACY_CRASH', message: 'segfault' } }
          : { status: 'failed', error: { code: 'TASK_FAILED', message: 'agent said no' } },
    });
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: { fail: 'code' } }));
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: { fail: 'same code' } }));
    await r.close();
    expect(compared).toHaveLength(2);
    expect(differences).toHaveLength(1);
    expect(differences[0]).toMatchObject({
      differences: ['error_code'],
      legacy: { code: 'LEGACY_CRASH' },
      unified: { code: 'TASK_FAILED' },
    });
    // Two failures with the same code match (their messages are not compared).
    expect(compared.filter((c) => c.result === 'match')).toHaveLength(1);
    expect(
      sample(await metricsText(o), `${M}shadow_differences_total`, {
        method: 'delegateTaskToAgent',
        kind: 'error_code',
      }),
    ).toBe(1);
  });

  it('failed, cancelled and timed-out statuses compare by their state: legacy timeout against unified failed is an outcome difference', async () => {
    const { r, differences } = await setup({
      behave: () => ({ status: 'timeout', error: { code: 'TASK_TIMEOUT', message: 'slow' } }),
    });
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: { fail: 'boom' } }));
    await r.close();
    expect(differences).toHaveLength(1);
    expect(differences[0]).toMatchObject({
      differences: ['outcome'],
      legacy: { outcome: 'timeout', code: 'TASK_TIMEOUT' },
      unified: { outcome: 'failed', code: 'TASK_FAILED' },
    });
  });

  it('a latency difference: the unified side slower than the tolerance allows', async () => {
    const behave = (task: LegacyTask): FakeTaskBehaviour => ({
      result: { slept: (task.payload as { sleep: number }).sleep },
    });
    const strict = await setup({ behave, router: { latencyTolerance: { ratio: 2, minMs: 20 } } });
    ok(await strict.r.delegateTaskToAgent({ role: 'writer', payload: { sleep: 80 } }));
    await strict.r.close();
    expect(strict.differences).toHaveLength(1);
    const c = strict.differences[0]!;
    expect(c.differences).toEqual(['latency']);
    expect(c.unified.latencyMs).toBeGreaterThanOrEqual(79);
    expect(c.unified.latencyMs).toBeGreaterThan(c.legacy.latencyMs * 2);
    expect(
      sample(await metricsText(strict.o), `${M}shadow_differences_total`, {
        method: 'delegateTaskToAgent',
        kind: 'latency',
      }),
    ).toBe(1);

    // The same run within the default tolerance (100 ms over legacy) is a match.
    const lenient = await setup({ behave });
    ok(await lenient.r.delegateTaskToAgent({ role: 'writer', payload: { sleep: 80 } }));
    await lenient.r.close();
    expect(lenient.compared.map((x) => x.result)).toEqual(['match']);
  });

  it('a pluggable comparator decides whether results are equal (ignoring a timestamp here)', async () => {
    const behave = (task: LegacyTask): FakeTaskBehaviour => ({
      result: { echo: task.payload, at: '2024-01-01T00:00:00Z' },
    });
    const seen: Array<[unknown, unknown]> = [];
    const withoutAt = (v: unknown): unknown => {
      if (typeof v !== 'object' || v === null) return v;
      const { at: _at, ...rest } = v as Record<string, unknown>;
      return rest;
    };
    const custom = await setup({
      behave,
      router: {
        compare: (legacy, unified) => {
          seen.push([legacy, unified]);
          return isDeepStrictEqual(withoutAt(legacy), withoutAt(unified));
        },
      },
    });
    ok(await custom.r.delegateTaskToAgent({ role: 'writer', payload: 'stamped' }));
    await custom.r.close();
    expect(seen).toEqual([[{ echo: 'stamped', at: '2024-01-01T00:00:00Z' }, { echo: 'stamped' }]]);
    expect(custom.compared.map((c) => c.result)).toEqual(['match']);

    // With the default (deep equality), the timestamp is a difference.
    const deep = await setup({ behave });
    ok(await deep.r.delegateTaskToAgent({ role: 'writer', payload: 'stamped' }));
    await deep.r.close();
    expect(deep.differences.map((c) => c.differences)).toEqual([['result']]);
  });

  it('a comparator that throws counts as a result difference (and does not fail the call)', async () => {
    const { r, differences, compared } = await setup({
      router: {
        compare: () => {
          throw new Error('comparator bug');
        },
      },
    });
    expect(ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'x' }))).toBe('L-task-1');
    await r.close();
    expect(compared).toHaveLength(1);
    expect(differences.map((c) => c.differences)).toEqual([['result']]);
  });

  it('the comparator is only asked about two completed results', async () => {
    let asked = 0;
    const { r, compared } = await setup({
      behave: () => ({ status: 'failed', error: { code: 'TASK_FAILED', message: 'no' } }),
      router: { compare: () => (asked++, false) },
    });
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: { fail: 'no' } }));
    await r.close();
    expect(asked).toBe(0);
    expect(compared.map((c) => c.result)).toEqual(['match']);
  });

  it('shadowTimeoutMs: a legacy task that never finishes makes the comparison incomplete', async () => {
    const { o, lab, r, compared, differences } = await setup({
      behave: () => ({ readsBeforeDone: Infinity }),
      router: { shadowTimeoutMs: 60 },
    });
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'stuck on legacy' }));
    await r.close();
    expect(lab.runs).toHaveLength(1);
    expect(compared).toHaveLength(1);
    expect(compared[0]).toMatchObject({
      result: 'incomplete',
      differences: [],
      legacy: { outcome: 'unfinished' },
      unified: { outcome: 'completed' },
    });
    expect(compared[0]!.legacy.latencyMs).toBeGreaterThanOrEqual(55);
    expect(differences).toHaveLength(0);
    expect(r.stats().shadowRuns).toMatchObject({ match: 0, mismatch: 0, incomplete: 1 });
    expect(
      sample(await metricsText(o), `${M}shadow_comparisons_total`, {
        method: 'delegateTaskToAgent',
        result: 'incomplete',
      }),
    ).toBe(1);
  });

  it('maxShadowInFlight 0: calls are not shadowed, only counted as skipped', async () => {
    const { o, lab, r, compared } = await setup({ router: { maxShadowInFlight: 0 } });
    expect(ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'x' }))).toBe('L-task-1');
    expect(ok(await r.spawnAgent('writer'))).toBe('L-agent-2');
    await r.close();
    expect(lab.runs).toHaveLength(0);
    expect(compared).toHaveLength(0);
    expect(o.stats().submitted).toBe(0);
    expect(r.stats().shadowRuns).toEqual({ match: 0, mismatch: 0, incomplete: 0, skipped: 2, inFlight: 0 });
    expect(r.stats().calls.shadow).toBe(0);
    const body = await metricsText(o);
    expect(sample(body, `${M}shadow_comparisons_total`, { method: 'delegateTaskToAgent', result: 'skipped' })).toBe(1);
    expect(sample(body, `${M}shadow_comparisons_total`, { method: 'spawnAgent', result: 'skipped' })).toBe(1);
  });

  it('maxShadowInFlight bounds the comparisons running at once', async () => {
    const { lab, r, compared } = await setup({
      behave: (task) => ({ result: { echo: task.payload }, readsBeforeDone: task.payload === 'slow' ? 6 : 0 }),
      router: { maxShadowInFlight: 1 },
    });
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'slow' }));
    expect(r.stats().shadowRuns.inFlight).toBe(1);
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'skipped' }));
    await r.close();
    expect(lab.runs.map((run) => run.payload)).toEqual(['slow']);
    expect(r.stats().shadowRuns).toEqual({ match: 1, mismatch: 0, incomplete: 0, skipped: 1, inFlight: 0 });
    expect(compared).toHaveLength(1);
    // Room again: the next call is shadowed.
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'after' }));
    await r.close();
    expect(lab.runsOf('after')).toHaveLength(1);
  });

  it('a shadow spawnAgent spawns a unified agent and shuts it down again: no agent is leaked', async () => {
    const { o, fake, r, compared } = await setup({ maxAgents: 3 });
    const before = o.agents().map((a) => a.id);
    expect(before).toHaveLength(1);
    const spawned: string[] = [];
    o.on('pool:scaled', (e) => {
      if (e.reason === 'spawn') spawned.push(e.role);
    });
    const states = record(o, 'agent:state');

    const id = ok(await r.spawnAgent('writer'));
    expect(id).toBe('L-agent-1');
    expect(fake.agents.has(id)).toBe(true);
    await r.close();
    await until(() => o.agents().length === before.length && states.some((s) => s.to === 'TERMINATED'));

    expect(o.agents().map((a) => a.id)).toEqual(before);
    expect(spawned).toEqual(['writer']);
    const terminated = states.filter((s) => s.to === 'TERMINATED').map((s) => s.agentId);
    expect(terminated).toHaveLength(1);
    expect(before).not.toContain(terminated[0]);
    expect(compared).toEqual([
      expect.objectContaining({
        method: 'spawnAgent',
        key: undefined,
        legacy: expect.objectContaining({ outcome: 'ok' }),
        unified: expect.objectContaining({ outcome: 'ok' }),
        result: 'match',
      }),
    ]);
    // Spawn and shutdown on the unified side, both as shadow calls.
    expect(r.stats().calls).toMatchObject({ legacy: 1, unified: 0, shadow: 2 });
  });

  it('shadow spawnAgent differences: a unified pool at capacity, and the same refusal on both sides', async () => {
    const { o, r, compared } = await setup({ maxAgents: 1 });
    ok(await r.spawnAgent('writer'));
    expect(err(await r.spawnAgent('ghost')).code).toBe('UNKNOWN_ROLE');
    await r.close();
    expect(compared).toHaveLength(2);
    expect(compared[0]).toMatchObject({
      differences: ['outcome'],
      legacy: { outcome: 'ok' },
      unified: { outcome: 'error', code: 'CAPACITY_EXCEEDED' },
      result: 'mismatch',
    });
    expect(compared[1]).toMatchObject({
      differences: [],
      legacy: { outcome: 'error', code: 'UNKNOWN_ROLE' },
      unified: { outcome: 'error', code: 'UNKNOWN_ROLE' },
      result: 'match',
    });
    expect(o.agents()).toHaveLength(1);
  });

  it('the caller’s task_id is not passed to the unified shadow copy', async () => {
    const seen: LegacyTask[] = [];
    const { fake, adapter, r, lab, compared } = await setup({
      unified: (a) => ({
        spawnAgent: (role) => a.spawnAgent(role),
        delegateTaskToAgent: (task) => {
          seen.push(task);
          return a.delegateTaskToAgent(task);
        },
        getAgentStatus: (id) => a.getAgentStatus(id),
        getTaskStatus: (id) => a.getTaskStatus(id),
        shutdownAgent: (id) => a.shutdownAgent(id),
        waitForTask: (id, s) => a.waitForTask(id, s),
      }),
    });
    const task: LegacyTask = {
      role: 'writer',
      payload: 'mine',
      task_id: 'order-1',
      priority: 'high',
      tenant_id: 'acme',
    };
    ok(await r.delegateTaskToAgent(task));
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'camel', taskId: 'order-2' }));
    await r.close();

    expect(fake.callsOf('delegateTaskToAgent').map((c) => c.args[0])).toEqual([
      task,
      { role: 'writer', payload: 'camel', taskId: 'order-2' },
    ]);
    expect(seen).toEqual([
      { role: 'writer', payload: 'mine', priority: 'high', tenant_id: 'acme' },
      { role: 'writer', payload: 'camel' },
    ]);
    expect(err(await adapter.getTaskStatus('order-1')).code).toBe('TASK_NOT_FOUND');
    expect(err(await adapter.getTaskStatus('order-2')).code).toBe('TASK_NOT_FOUND');
    expect(lab.runs).toHaveLength(2);
    // The split key is still the caller's (tenant first).
    expect(compared.map((c) => c.key)).toEqual(['acme', 'order-2']);
  });

  it('a unified side that throws never fails the caller’s call; it is an outcome difference', async () => {
    const { r, differences } = await setup({
      unified: (a) => ({
        spawnAgent: (role) => a.spawnAgent(role),
        delegateTaskToAgent: () => {
          throw new Error('unified exploded');
        },
        getAgentStatus: (id) => a.getAgentStatus(id),
        getTaskStatus: (id) => a.getTaskStatus(id),
        shutdownAgent: (id) => a.shutdownAgent(id),
      }),
    });
    expect(ok(await r.delegateTaskToAgent({ role: 'writer', payload: 1 }))).toBe('L-task-1');
    await r.close();
    expect(differences).toHaveLength(1);
    expect(differences[0]).toMatchObject({
      differences: ['outcome'],
      legacy: { outcome: 'completed' },
      unified: { outcome: 'threw' },
    });
  });

  it('close() waits for the comparisons in flight', async () => {
    const { r, compared } = await setup({ behave: (task) => ({ result: { echo: task.payload }, readsBeforeDone: 8 }) });
    ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'takes a while on legacy' }));
    expect(r.stats().shadowRuns.inFlight).toBe(1);
    expect(compared).toHaveLength(0);
    await r.close();
    expect(compared).toHaveLength(1);
    expect(compared[0]!.result).toBe('match');
    expect(r.stats().shadowRuns.inFlight).toBe(0);
  });
});
