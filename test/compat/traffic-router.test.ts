/**
 * TrafficRouter: the hash split (accuracy, stability per key, monotonic in the percentage), runtime changes and
 * rollback, calls about ids going back to the side that handed them out, unknown ids, both legacy spellings, option
 * validation, and traffic changes across a cluster of orchestrators on one MemoryHub.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  bucketOf,
  MemoryBridge,
  MemoryHub,
  OrchestratorsCompatibilityAdapter,
  TrafficRouter,
  ValidationError,
  type LegacyImplementation,
  type TrafficRouterEvents,
  type TrafficRouterOptions,
  type UnifiedOrchestrator,
} from 'unified-orchestrator';
import { FakeLegacy, snakeCase, withoutWait } from './fakes.js';
import { err, Lab, make, metricsText, ok, sample, sleep, stopAll } from './helpers.js';

const routers: TrafficRouter[] = [];
afterEach(async () => {
  await Promise.all(routers.splice(0).map((r) => r.close()));
  await stopAll();
});

function router(options: TrafficRouterOptions): TrafficRouter {
  const r = new TrafficRouter(options);
  routers.push(r);
  return r;
}

/** A router over two fakes, `L` (legacy) and `U` (unified). */
function pair(options: Partial<TrafficRouterOptions> = {}): {
  r: TrafficRouter;
  legacy: FakeLegacy;
  unified: FakeLegacy;
} {
  const legacy = new FakeLegacy('L');
  const unified = new FakeLegacy('U');
  return { r: router({ legacy, unified, ...options }), legacy, unified };
}

/** The side an answered id came from. */
function sideOfId(id: unknown): 'legacy' | 'unified' {
  if (typeof id !== 'string') throw new Error(`expected an id, got ${JSON.stringify(id)}`);
  if (id.startsWith('L-')) return 'legacy';
  if (id.startsWith('U-')) return 'unified';
  throw new Error(`an id of neither side: ${id}`);
}

function record<E extends keyof TrafficRouterEvents>(r: TrafficRouter, event: E): Array<TrafficRouterEvents[E]> {
  const seen: Array<TrafficRouterEvents[E]> = [];
  r.on(event, (e) => seen.push(e));
  return seen;
}

const KEYS = Array.from({ length: 10_000 }, (_, i) => `tenant-${i}`);

describe('the split', () => {
  it.each([10, 50, 90])(
    'at %i percent, that share of 10,000 keys goes to the unified side, within 2 points',
    async (percent) => {
      const { r, legacy, unified } = pair({ percent });
      for (const key of KEYS) await r.delegateTaskToAgent({ role: 'writer', tenant_id: key });
      const toUnified = unified.callsOf('delegateTaskToAgent').length;
      const toLegacy = legacy.callsOf('delegateTaskToAgent').length;
      expect(toUnified + toLegacy).toBe(KEYS.length);
      expect(Math.abs((toUnified / KEYS.length) * 100 - percent)).toBeLessThanOrEqual(2);
      expect(r.stats().calls).toEqual({ legacy: toLegacy, unified: toUnified, shadow: 0 });
    },
  );

  it('0% sends every call to legacy and 100% every call to unified, keyed or not', async () => {
    const { r, legacy, unified } = pair();
    for (let i = 0; i < 50; i++) {
      await r.delegateTaskToAgent({ role: 'writer', tenant_id: `t${i}` });
      await r.delegateTaskToAgent({ role: 'writer' });
      await r.spawnAgent('writer');
    }
    expect(unified.calls).toHaveLength(0);
    expect(legacy.calls).toHaveLength(150);
    await r.setPercent(100);
    for (let i = 0; i < 50; i++) {
      await r.delegateTaskToAgent({ role: 'writer', tenant_id: `t${i}` });
      await r.spawnAgent('writer');
    }
    expect(unified.calls).toHaveLength(100);
    expect(legacy.calls).toHaveLength(150);
  });

  it('the same key always goes to the same side, and the router agrees with sideOf()', async () => {
    const { r } = pair({ percent: 50 });
    const keys = KEYS.slice(0, 1_000);
    const first = new Map<string, string>();
    for (const key of keys) first.set(key, sideOfId(await r.delegateTaskToAgent({ role: 'writer', tenant_id: key })));
    for (const key of keys) {
      // By tenant, by task id when there is no tenant, and through the snake_case alias: the same key, the same side.
      expect(sideOfId(await r.delegateTaskToAgent({ role: 'writer', tenant_id: key, payload: 'again' }))).toBe(
        first.get(key),
      );
      expect(sideOfId(await r.delegate_task_to_agent({ role: 'writer', task_id: key }))).toBe(first.get(key));
      expect(r.sideOf(key)).toBe(first.get(key));
    }
    const sides = new Set(first.values());
    expect(sides).toEqual(new Set(['legacy', 'unified']));
  });

  it('raising the percentage only moves keys from legacy to unified, never back', async () => {
    const { r } = pair();
    const keys = KEYS.slice(0, 2_000);
    let previous = new Map<string, 'legacy' | 'unified'>();
    for (const percent of [0, 10, 25, 50, 75, 90, 100]) {
      await r.setPercent(percent);
      const now = new Map<string, 'legacy' | 'unified'>();
      for (const key of keys) now.set(key, sideOfId(await r.delegateTaskToAgent({ role: 'writer', tenant_id: key })));
      for (const [key, side] of previous) if (side === 'unified') expect(now.get(key)).toBe('unified');
      const unified = [...now.values()].filter((s) => s === 'unified').length;
      expect(Math.abs((unified / keys.length) * 100 - percent)).toBeLessThanOrEqual(3);
      previous = now;
    }
  });

  it('a custom key function decides the split (spawnAgent by role here)', async () => {
    const { r, unified } = pair({
      percent: 50,
      key: (call) => (call.method === 'spawnAgent' ? `role:${call.role}` : undefined),
    });
    const roles = Array.from({ length: 40 }, (_, i) => `role-${i}`);
    for (const role of roles) {
      const expected = bucketOf(`role:${role}`) < 5_000 ? 'unified' : 'legacy';
      for (let i = 0; i < 3; i++) expect(sideOfId(await r.spawnAgent(role))).toBe(expected);
    }
    expect(unified.callsOf('spawnAgent').length).toBeGreaterThan(0);
  });
});

describe('bucketOf', () => {
  it('is an integer from 0 to 9,999, the same for the same key', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 64 }), (key) => {
        const b = bucketOf(key);
        return Number.isInteger(b) && b >= 0 && b < 10_000 && bucketOf(key.slice()) === b;
      }),
      { numRuns: 1_000 },
    );
  });

  it('decides the side: unified exactly when the bucket is below percent × 100, monotonic in the percentage', () => {
    const r = router({ legacy: new FakeLegacy('L'), unified: new FakeLegacy('U') });
    fc.assert(
      fc.property(
        fc.string({ maxLength: 32 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        (key, a, b) => {
          const [low, high] = a <= b ? [a / 100, b / 100] : [b / 100, a / 100];
          void r.setPercent(low);
          const atLow = r.sideOf(key);
          void r.setPercent(high);
          const atHigh = r.sideOf(key);
          expect(atLow).toBe(bucketOf(key) < low * 100 ? 'unified' : 'legacy');
          if (atLow === 'unified') expect(atHigh).toBe('unified');
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('is stable across versions and nodes: known keys keep their buckets (FNV-1a over UTF-16 units, then fmix32)', () => {
    // Computed independently (a Python port of the documented hash). A change here moves keys between sides on a
    // rolling deploy, where nodes of two versions would disagree about the same key.
    const golden: Record<string, number> = {
      '': 8923,
      a: 1715,
      acme: 3394,
      'tenant-0': 3661,
      'tenant-1': 9711,
      'order-42': 9703,
      ünïcödé: 9435,
      '🙂': 3841,
    };
    for (const [key, bucket] of Object.entries(golden)) expect(bucketOf(key), key).toBe(bucket);
  });

  it('spreads close keys: no bucket value repeats much over 10,000 sequential keys', () => {
    const counts = new Map<number, number>();
    for (const key of KEYS) counts.set(bucketOf(key), (counts.get(bucketOf(key)) ?? 0) + 1);
    // 10,000 keys into 10,000 buckets: about 63% of the buckets are hit; a poor hash hits far fewer.
    expect(counts.size).toBeGreaterThan(5_500);
    expect(Math.max(...counts.values())).toBeLessThan(10);
  });
});

describe('runtime changes', () => {
  it('setPercent applies to the very next call, without awaiting it', async () => {
    const { r } = pair();
    expect(sideOfId(await r.delegateTaskToAgent({ role: 'writer', tenant_id: 'k' }))).toBe('legacy');
    void r.setPercent(100);
    expect(r.percent).toBe(100);
    expect(sideOfId(await r.delegateTaskToAgent({ role: 'writer', tenant_id: 'k' }))).toBe('unified');
    void r.setPercent(0);
    expect(sideOfId(await r.delegateTaskToAgent({ role: 'writer', tenant_id: 'k' }))).toBe('legacy');
    // Fractions are honoured to 0.01%: a key in bucket b is unified from b/100 + 0.01 on.
    const b = bucketOf('k');
    void r.setPercent(b / 100);
    expect(sideOfId(await r.delegateTaskToAgent({ role: 'writer', tenant_id: 'k' }))).toBe('legacy');
    void r.setPercent((b + 1) / 100);
    expect(sideOfId(await r.delegateTaskToAgent({ role: 'writer', tenant_id: 'k' }))).toBe('unified');
  });

  it('emits traffic:changed for a change (not for a setting that changes nothing)', async () => {
    const { r } = pair();
    const changed = record(r, 'traffic:changed');
    await r.setPercent(20);
    await r.setPercent(20);
    await r.setShadow(true);
    expect(changed).toEqual([
      { percent: 20, shadow: false, previous: { percent: 0, shadow: false }, source: 'local' },
      { percent: 20, shadow: true, previous: { percent: 20, shadow: false }, source: 'local' },
    ]);
    expect(r.stats()).toMatchObject({ percent: 20, shadow: true });
  });

  it('rollback sends the next call to legacy, turns shadow off, and emits traffic:changed and traffic:rollback', async () => {
    const { r, legacy, unified } = pair({ percent: 100, shadow: true });
    const events: string[] = [];
    const changed = record(r, 'traffic:changed');
    const rollbacks = record(r, 'traffic:rollback');
    r.on('traffic:changed', () => events.push('changed')).on('traffic:rollback', () => events.push('rollback'));
    expect(sideOfId(await r.delegateTaskToAgent({ role: 'writer', tenant_id: 'k' }))).toBe('unified');

    void r.rollback('p95 regression');
    expect(r.percent).toBe(0);
    expect(r.shadow).toBe(false);
    expect(sideOfId(await r.delegateTaskToAgent({ role: 'writer', tenant_id: 'k' }))).toBe('legacy');
    expect(changed).toEqual([{ percent: 0, shadow: false, previous: { percent: 100, shadow: true }, source: 'local' }]);
    expect(rollbacks).toEqual([{ reason: 'p95 regression', source: 'local' }]);
    expect(events).toEqual(['changed', 'rollback']);
    // Shadow is off: the legacy call was not run on the unified side too.
    expect(unified.callsOf('delegateTaskToAgent')).toHaveLength(1);
    expect(legacy.callsOf('delegateTaskToAgent')).toHaveLength(1);
    expect(r.stats().calls.shadow).toBe(0);

    // A rollback when already rolled back is still reported, without a change.
    await r.rollback();
    expect(rollbacks).toHaveLength(2);
    expect(rollbacks[1]).toEqual({ source: 'local' });
    expect(changed).toHaveLength(1);
  });
});

describe('calls about ids', () => {
  it('go back to the side that handed the id out, after the percentage changed too', async () => {
    const { r, legacy, unified } = pair({ percent: 100 });
    const uTask = await r.delegateTaskToAgent({ role: 'writer', payload: 'u' });
    const uAgent = await r.spawnAgent('writer');
    await r.setPercent(0);
    const lTask = await r.delegateTaskToAgent({ role: 'writer', payload: 'l' });
    const lAgent = await r.spawnAgent('writer');
    expect([uTask, uAgent, lTask, lAgent].map(sideOfId)).toEqual(['unified', 'unified', 'legacy', 'legacy']);

    for (const percent of [0, 100, 50]) {
      await r.setPercent(percent);
      legacy.calls.length = 0;
      unified.calls.length = 0;
      expect(ok(await r.getTaskStatus(uTask as string))).toMatchObject({ task_id: uTask, result: { echo: 'u' } });
      expect(ok(await r.waitForTask(uTask as string))).toMatchObject({ task_id: uTask, status: 'completed' });
      expect(ok(await r.getAgentStatus(uAgent as string))).toMatchObject({ agent_id: uAgent });
      expect(ok(await r.getTaskStatus(lTask as string))).toMatchObject({ task_id: lTask, result: { echo: 'l' } });
      expect(ok(await r.wait_for_task(lTask as string, 5))).toMatchObject({ task_id: lTask });
      expect(ok(await r.get_agent_status(lAgent as string))).toMatchObject({ agent_id: lAgent });
      expect(unified.calls.map((c) => c.method)).toEqual(['getTaskStatus', 'waitForTask', 'getAgentStatus']);
      expect(legacy.calls.map((c) => c.method)).toEqual(['getTaskStatus', 'waitForTask', 'getAgentStatus']);
      expect(legacy.calls[1]!.args).toEqual([lTask, 5]);
    }
    await r.setPercent(100);
    expect(ok(await r.shutdownAgent(lAgent as string))).toEqual({ agent_id: lAgent, status: 'terminated' });
    await r.setPercent(0);
    expect(ok(await r.shutdown_agent(uAgent as string))).toEqual({ agent_id: uAgent, status: 'terminated' });
    expect(legacy.agents.has(lAgent as string)).toBe(false);
    expect(unified.agents.has(uAgent as string)).toBe(false);
  });

  it('an unknown id goes to legacy only, until the unified side was used; then to unified when legacy says not found', async () => {
    const { r, legacy, unified } = pair();
    // Ids the unified side knows but this router never handed out (another node's, say).
    const foreignTask = (await unified.delegateTaskToAgent({ role: 'writer', payload: 'foreign' })) as string;
    const foreignAgent = (await unified.spawnAgent('writer')) as string;
    unified.calls.length = 0;

    const notFound = await r.getTaskStatus(foreignTask);
    expect(err(notFound)).toEqual({ code: 'TASK_NOT_FOUND', message: `L: no task ${foreignTask}` });
    expect(err(await r.getAgentStatus(foreignAgent)).code).toBe('AGENT_NOT_FOUND');
    expect(unified.calls).toHaveLength(0);

    // The unified side takes one call...
    await r.setPercent(100);
    await r.delegateTaskToAgent({ role: 'writer', payload: 'first unified' });
    await r.setPercent(0);
    unified.calls.length = 0;
    legacy.calls.length = 0;
    // ...from then on an id legacy does not know is asked of the unified side too.
    expect(ok(await r.getTaskStatus(foreignTask))).toMatchObject({ task_id: foreignTask, result: { echo: 'foreign' } });
    expect(ok(await r.getAgentStatus(foreignAgent))).toMatchObject({ agent_id: foreignAgent });
    expect(ok(await r.waitForTask(foreignTask))).toMatchObject({ task_id: foreignTask });
    expect(legacy.calls.map((c) => c.method)).toEqual(['getTaskStatus', 'getAgentStatus', 'waitForTask']);
    expect(unified.calls.map((c) => c.method)).toEqual(['getTaskStatus', 'getAgentStatus', 'waitForTask']);

    // Unknown to both: legacy's answer.
    expect(err(await r.getTaskStatus('nobody'))).toEqual({ code: 'TASK_NOT_FOUND', message: 'L: no task nobody' });
    // Known to legacy: the unified side is not asked.
    const lTaskDirect = (await legacy.delegateTaskToAgent({ role: 'writer' })) as string;
    unified.calls.length = 0;
    expect(ok(await r.getTaskStatus(lTaskDirect))).toMatchObject({ task_id: lTaskDirect });
    expect(unified.calls).toHaveLength(0);
  });

  it("an unknown id of a failed unified task answers its failed status, not legacy's not-found", async () => {
    const legacy = new FakeLegacy('L');
    const unified = new FakeLegacy('U', () => ({
      status: 'failed',
      error: { code: 'TASK_FAILED', message: 'agent said no' },
    }));
    const r = router({ legacy, unified, percent: 100 });
    await r.delegateTaskToAgent({ role: 'writer', payload: 'makes the unified side used' });
    await r.setPercent(0);
    // A task of the unified side this router never handed out (another node's): its status carries an `error`.
    const foreign = (await unified.delegateTaskToAgent({ role: 'writer', payload: 'fails' })) as string;
    expect(ok(await r.getTaskStatus(foreign))).toMatchObject({
      task_id: foreign,
      status: 'failed',
      error: { code: 'TASK_FAILED' },
    });
  });

  it('only the notFoundCodes fall through to the unified side', async () => {
    const legacy = new FakeLegacy('L');
    const unified = new FakeLegacy('U');
    const picky: LegacyImplementation = {
      ...withoutWait(legacy),
      getTaskStatus: async (id: string) =>
        id.startsWith('U-') ? { error: { code: 'MISSING', message: 'gone' } } : legacy.getTaskStatus(id),
      getAgentStatus: async () => ({ error: { code: 'INVALID_REQUEST', message: 'bad id' } }),
    };
    const r = router({ legacy: picky, unified, notFoundCodes: ['MISSING'], percent: 100 });
    await r.delegateTaskToAgent({ role: 'writer' });
    const foreign = (await unified.delegateTaskToAgent({ role: 'writer', payload: 'x' })) as string;
    const agent = (await unified.spawnAgent('writer')) as string;
    await r.setPercent(0);
    expect(ok(await r.getTaskStatus(foreign))).toMatchObject({ task_id: foreign });
    // INVALID_REQUEST is not "not found": legacy's answer stands.
    unified.calls.length = 0;
    expect(err(await r.getAgentStatus(agent))).toEqual({ code: 'INVALID_REQUEST', message: 'bad id' });
    expect(unified.calls).toHaveLength(0);
  });

  it('remembers at most maxOwnedIds ids; a forgotten one is asked of legacy first', async () => {
    const { r, legacy, unified } = pair({ percent: 100, maxOwnedIds: 2 });
    const first = (await r.delegateTaskToAgent({ role: 'writer', payload: 1 })) as string;
    await r.delegateTaskToAgent({ role: 'writer', payload: 2 });
    await r.delegateTaskToAgent({ role: 'writer', payload: 3 });
    legacy.calls.length = 0;
    expect(ok(await r.getTaskStatus(first))).toMatchObject({ task_id: first });
    expect(legacy.calls.map((c) => c.method)).toEqual(['getTaskStatus']);
    expect(unified.callsOf('getTaskStatus')).toHaveLength(1);
  });
});

describe('legacy implementations', () => {
  it('snake_case ones work, with their wait_for_task', async () => {
    const fake = new FakeLegacy('L');
    const r = router({ legacy: snakeCase(fake), unified: new FakeLegacy('U') });
    const id = ok(await r.delegateTaskToAgent({ role: 'writer', payload: 'snake' }));
    expect(ok(await r.getTaskStatus(id))).toMatchObject({ task_id: id, result: { echo: 'snake' } });
    expect(ok(await r.waitForTask(id, 2))).toMatchObject({ task_id: id });
    const agent = ok(await r.spawn_agent('writer'));
    expect(ok(await r.get_agent_status(agent))).toMatchObject({ agent_id: agent });
    expect(ok(await r.shutdown_agent(agent))).toEqual({ agent_id: agent, status: 'terminated' });
    expect(err(await r.spawnAgent('ghost')).code).toBe('UNKNOWN_ROLE');
    expect(fake.calls.map((c) => c.method)).toEqual([
      'delegateTaskToAgent',
      'getTaskStatus',
      'waitForTask',
      'spawnAgent',
      'getAgentStatus',
      'shutdownAgent',
      'spawnAgent',
    ]);
    expect(fake.callsOf('waitForTask')[0]!.args).toEqual([id, 2]);
  });

  it('camelCase ones work; without waitForTask the router polls getTaskStatus until the task is terminal', async () => {
    const fake = new FakeLegacy('L', () => ({ result: 'eventually', readsBeforeDone: 3 }));
    const r = router({ legacy: withoutWait(fake), unified: new FakeLegacy('U'), pollIntervalMs: 5 });
    const id = ok(await r.delegateTaskToAgent({ role: 'writer' }));
    expect(ok(await r.waitForTask(id))).toMatchObject({ task_id: id, status: 'completed', result: 'eventually' });
    expect(fake.callsOf('getTaskStatus')).toHaveLength(4);
    expect(fake.callsOf('waitForTask')).toHaveLength(0);
  });

  it('polling stops at the timeout with the status as it is then', async () => {
    const fake = new FakeLegacy('L', () => ({ readsBeforeDone: Infinity }));
    const r = router({ legacy: snakeCase(fake, false), unified: new FakeLegacy('U'), pollIntervalMs: 5 });
    const id = ok(await r.delegate_task_to_agent({ role: 'writer' }));
    expect(ok(await r.wait_for_task(id, 0.05))).toMatchObject({ task_id: id, status: 'running' });
    expect(fake.callsOf('getTaskStatus').length).toBeGreaterThan(1);
    // A not-found answer ends the poll at once.
    expect(err(await r.waitForTask('nobody')).code).toBe('TASK_NOT_FOUND');
  });

  it('the unified side may be a real adapter (percent 100)', async () => {
    const lab = new Lab();
    const o = make({ pools: [lab.pool('writer', ['text'])] });
    await o.start();
    const adapter = new OrchestratorsCompatibilityAdapter(o);
    const r = router({ legacy: new FakeLegacy('L'), unified: adapter, percent: 100 });
    const id = ok(await r.delegate_task_to_agent({ role: 'writer', payload: 'real' }));
    expect(ok(await r.wait_for_task(id))).toMatchObject({ task_id: id, status: 'completed', result: { echo: 'real' } });
    expect(lab.runsOf('real')).toHaveLength(1);
  });
});

describe('options', () => {
  function thrown(fn: () => unknown): ValidationError {
    try {
      fn();
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      return error as ValidationError;
    }
    throw new Error('expected a ValidationError');
  }
  const legacy = new FakeLegacy('L');
  const unified = new FakeLegacy('U');
  // eslint-disable-next-line @typescript-eslint/unbound-method -- taken out to be left out, never called
  const { getTaskStatus: _omit, ...noStatus } = withoutWait(legacy);
  const cases: Array<[string, unknown, string]> = [
    ['not an object', 42, 'options'],
    ['no legacy', { unified }, 'options.legacy'],
    ['legacy without getTaskStatus', { legacy: noStatus, unified }, 'options.legacy.getTaskStatus'],
    [
      'unified without spawnAgent',
      { legacy, unified: { ...snakeCase(unified), spawn_agent: undefined } },
      'options.unified.spawnAgent',
    ],
    ['percent 150', { legacy, unified, percent: 150 }, 'options.percent'],
    ['percent -1', { legacy, unified, percent: -1 }, 'options.percent'],
    ['percent NaN', { legacy, unified, percent: Number.NaN }, 'options.percent'],
    ['percent as a string', { legacy, unified, percent: '50' }, 'options.percent'],
    ['shadow not a boolean', { legacy, unified, shadow: 'yes' }, 'options.shadow'],
    ['unknown key', { legacy, unified, percentage: 5 }, 'options.percentage'],
    ['orchestrator of the wrong kind', { legacy, unified, orchestrator: {} }, 'options.orchestrator'],
    ['key not a function', { legacy, unified, key: 'tenant' }, 'options.key'],
    ['compare not a function', { legacy, unified, compare: true }, 'options.compare'],
    ['latency ratio below 1', { legacy, unified, latencyTolerance: { ratio: 0.5 } }, 'options.latencyTolerance.ratio'],
    ['negative latency minMs', { legacy, unified, latencyTolerance: { minMs: -1 } }, 'options.latencyTolerance.minMs'],
    ['zero shadowTimeoutMs', { legacy, unified, shadowTimeoutMs: 0 }, 'options.shadowTimeoutMs'],
    ['negative maxShadowInFlight', { legacy, unified, maxShadowInFlight: -1 }, 'options.maxShadowInFlight'],
    ['zero maxOwnedIds', { legacy, unified, maxOwnedIds: 0 }, 'options.maxOwnedIds'],
    ['notFoundCodes not strings', { legacy, unified, notFoundCodes: [404] }, 'options.notFoundCodes[0]'],
    ['metrics prefix invalid', { legacy, unified, metrics: { prefix: '1bad' } }, 'options.metrics.prefix'],
    [
      'metrics prefix with a colon (recording-rule names only)',
      { legacy, unified, metrics: { prefix: 'team:compat_' } },
      'options.metrics.prefix',
    ],
  ];

  it.each(cases.map(([name, options, field]) => [name, field, options] as const))(
    '%s → ValidationError on %s',
    (_name, field, options) => {
      expect(thrown(() => new TrafficRouter(options as TrafficRouterOptions)).field).toBe(field);
    },
  );

  it('setPercent and setShadow throw at once for bad values, and change nothing', () => {
    const r = router({ legacy, unified, percent: 5 });
    expect(thrown(() => r.setPercent(150)).field).toBe('percent');
    expect(thrown(() => r.setPercent(Number.NaN)).field).toBe('percent');
    expect(thrown(() => r.setShadow('on' as unknown as boolean)).field).toBe('shadow');
    expect(r.stats()).toMatchObject({ percent: 5, shadow: false });
  });
});

describe('across a cluster (MemoryHub)', () => {
  /** Two started orchestrators on one hub, each with an adapter and its own router. */
  async function cluster(): Promise<{ hub: MemoryHub; nodes: Array<{ o: UnifiedOrchestrator; r: TrafficRouter }> }> {
    const hub = new MemoryHub();
    const nodes: Array<{ o: UnifiedOrchestrator; r: TrafficRouter }> = [];
    for (const name of ['a', 'b']) {
      const lab = new Lab();
      const o = make({
        pools: [lab.pool('writer', ['text'])],
        bridge: new MemoryBridge({ hub, nodeId: `node-${name}` }),
      });
      await o.start();
      nodes.push({
        o,
        r: router({ legacy: new FakeLegacy('L'), unified: new OrchestratorsCompatibilityAdapter(o), orchestrator: o }),
      });
    }
    return { hub, nodes };
  }

  it('setPercent and setShadow on one node move the other; a rollback on the other moves the first back', async () => {
    const { nodes } = await cluster();
    const [a, b] = nodes as [(typeof nodes)[number], (typeof nodes)[number]];
    const bChanges = record(b.r, 'traffic:changed');
    const aRollbacks = record(a.r, 'traffic:rollback');
    const bRollbacks = record(b.r, 'traffic:rollback');

    await a.r.setPercent(50);
    await sleep(0);
    expect(b.r.percent).toBe(50);
    expect(bChanges).toEqual([
      { percent: 50, shadow: false, previous: { percent: 0, shadow: false }, source: 'cluster', from: 'node-a' },
    ]);
    expect(b.o.controlState().traffic).toEqual({ percent: 50, shadow: false });
    expect(sample(await metricsText(b.o), 'unified_orchestrator_compat_traffic_percent')).toBe(50);

    await a.r.setShadow(true);
    await sleep(0);
    expect(b.r.shadow).toBe(true);
    expect(b.r.percent).toBe(50);

    await b.r.rollback('errors up');
    await sleep(0);
    expect(a.r.percent).toBe(0);
    expect(a.r.shadow).toBe(false);
    expect(aRollbacks).toEqual([{ reason: 'errors up', source: 'cluster', from: 'node-b' }]);
    // B reports its own rollback once (not again when its message comes back to it).
    expect(bRollbacks).toEqual([{ reason: 'errors up', source: 'local' }]);
    expect(a.o.controlState().traffic).toEqual({ percent: 0, shadow: false });
    expect(sample(await metricsText(a.o), 'unified_orchestrator_compat_traffic_percent')).toBe(0);
    // A's own setting did not bounce back from its echo.
    await a.r.setPercent(30);
    await sleep(0);
    expect(a.r.percent).toBe(30);
    expect(b.r.percent).toBe(30);
  });

  it('a router made after a change adopts the standing setting (on a node that was there, and on one that joins later)', async () => {
    const { hub, nodes } = await cluster();
    await nodes[0]!.r.setPercent(40);
    await nodes[0]!.r.setShadow(true);

    const late = router({
      legacy: new FakeLegacy('L'),
      unified: new FakeLegacy('U'),
      orchestrator: nodes[1]!.o,
      percent: 0,
    });
    expect(late.stats()).toMatchObject({ percent: 40, shadow: true });

    const lab = new Lab();
    const joiner = make({ pools: [lab.pool('writer', ['text'])], bridge: new MemoryBridge({ hub, nodeId: 'node-c' }) });
    await joiner.start();
    expect(joiner.controlState().traffic).toEqual({ percent: 40, shadow: true });
    const c = router({
      legacy: new FakeLegacy('L'),
      unified: new OrchestratorsCompatibilityAdapter(joiner),
      orchestrator: joiner,
      percent: 90,
      shadow: false,
    });
    expect(c.stats()).toMatchObject({ percent: 40, shadow: true });

    // A router made before its orchestrator joins follows the replay of the standing setting.
    const early = make({ pools: [lab.pool('writer', ['text'])], bridge: new MemoryBridge({ hub, nodeId: 'node-d' }) });
    const d = router({
      legacy: new FakeLegacy('L'),
      unified: new OrchestratorsCompatibilityAdapter(early),
      orchestrator: early,
      percent: 5,
    });
    expect(d.percent).toBe(5);
    await early.start();
    expect(d.stats()).toMatchObject({ percent: 40, shadow: true });
  });

  it('a traffic message broadcast through an orchestrator (the CLI path) moves both routers', async () => {
    const { nodes } = await cluster();
    const [a, b] = nodes as [(typeof nodes)[number], (typeof nodes)[number]];
    const aChanges = record(a.r, 'traffic:changed');
    await a.o.broadcast({ kind: 'traffic', value: { percent: 30 } });
    await sleep(0);
    expect(a.r.percent).toBe(30);
    expect(b.r.percent).toBe(30);
    expect(aChanges).toEqual([
      { percent: 30, shadow: false, previous: { percent: 0, shadow: false }, source: 'cluster', from: 'node-a' },
    ]);
    expect(a.o.controlState().traffic).toEqual({ percent: 30, shadow: false });
    expect(b.o.controlState().traffic).toEqual({ percent: 30, shadow: false });
    // The next call on A follows it at once.
    const key = KEYS.find((k) => bucketOf(k) < 3_000)!;
    expect(a.r.sideOf(key)).toBe('unified');

    await a.o.broadcast({ kind: 'traffic', value: 60 });
    await sleep(0);
    expect([a.r.percent, b.r.percent]).toEqual([60, 60]);
    await b.o.broadcast({ kind: 'traffic', value: { shadow: true } });
    await sleep(0);
    expect([a.r.stats(), b.r.stats()]).toMatchObject([
      { percent: 60, shadow: true },
      { percent: 60, shadow: true },
    ]);
    await a.o.broadcast({ kind: 'rollback', reason: 'cli' });
    await sleep(0);
    for (const { r } of nodes) expect(r.stats()).toMatchObject({ percent: 0, shadow: false });
    // A malformed value changes nothing.
    await a.o.broadcast({ kind: 'traffic', value: { percent: 300 } });
    await sleep(0);
    expect([a.r.percent, b.r.percent]).toEqual([0, 0]);
    expect(aChanges).toHaveLength(4);
  });

  it('a traffic message from an operator tool on the hub (its own node id) moves every router', async () => {
    const { hub, nodes } = await cluster();
    const cli = new MemoryBridge({ hub, nodeId: 'operator-cli' });
    await cli.control({ kind: 'traffic', value: { percent: 25, shadow: true } });
    await sleep(0);
    for (const { r, o } of nodes) {
      expect(r.stats()).toMatchObject({ percent: 25, shadow: true });
      expect(o.controlState().traffic).toEqual({ percent: 25, shadow: true });
    }
    await cli.control({ kind: 'rollback', reason: 'operator' });
    await sleep(0);
    for (const { r } of nodes) expect(r.stats()).toMatchObject({ percent: 0, shadow: false });
  });

  it('a closed router no longer follows the cluster', async () => {
    const { nodes } = await cluster();
    await nodes[1]!.r.close();
    await nodes[0]!.r.setPercent(70);
    await sleep(0);
    expect(nodes[1]!.r.percent).toBe(0);
    expect(nodes[1]!.o.controlState().traffic).toEqual({ percent: 70, shadow: false });
  });
});
