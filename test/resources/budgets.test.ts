/**
 * Per-tenant cost budgets: spend reported with `ctx.reportCost` summed per tenant over a sliding window; a tenant
 * at its limit has new tasks refused (and, with haltOnExceeded, its waiting ones cancelled) until the window moves on.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  BudgetExceededError,
  retryAfterMs,
  TaskCancelledError,
  UnifiedOrchestrator,
  ValidationError,
  type Agent,
  type BudgetOptions,
  type OrchestratorEvents,
  type OrchestratorOptions,
} from 'unified-orchestrator';
import { manualAgent, rejectionOf, until, type Call } from '../engine/helpers.js';

type ExceededEvent = OrchestratorEvents['budget:exceeded'];

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
});

/** A clock the test moves by hand. */
function manualClock(start = 1_000_000): { now(): number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** Started orchestrator with no pools and no pressure sampling. */
async function start(options: OrchestratorOptions): Promise<UnifiedOrchestrator> {
  const o = new UnifiedOrchestrator({ pools: [], pressure: false, defaultTimeoutMs: Infinity, ...options });
  live.push(o);
  await o.start();
  return o;
}

/** Reports each of `payload.costs` and answers `payload.value`. */
function costAgent(): Agent<{ costs?: number[]; value?: unknown }> {
  return {
    execute(ctx) {
      for (const units of ctx.payload.costs ?? []) ctx.reportCost(units);
      return ctx.payload.value;
    },
  };
}

function spendTask(tenantId: string | undefined, costs: number[], value: unknown = costs.join('+')) {
  return { type: 'spend', requires: ['x'], ...(tenantId === undefined ? {} : { tenantId }), payload: { costs, value } };
}

function exceededEvents(o: UnifiedOrchestrator): ExceededEvent[] {
  const events: ExceededEvent[] = [];
  o.on('budget:exceeded', (e) => events.push(e));
  return events;
}

function delegateError(o: UnifiedOrchestrator, task: Parameters<UnifiedOrchestrator['delegate']>[0]): unknown {
  try {
    o.delegate(task);
  } catch (error) {
    return error;
  }
  throw new Error('expected delegate to throw');
}

describe('tenant budgets', () => {
  it('refuses a tenant at its limit, once per crossing, while other tenants and untenanted tasks proceed', async () => {
    const clock = manualClock();
    const budgets: BudgetOptions = { windowMs: 1_000, limits: { acme: 10 } };
    const o = await start({ budgets, clock });
    const events = exceededEvents(o);
    o.registerAgent(costAgent(), { id: 'a', capabilities: ['x'], concurrency: 4 });

    await expect(o.submit(spendTask('acme', [4]))).resolves.toBe('4');
    await expect(o.submit(spendTask('acme', [5]))).resolves.toBe('5');
    expect(o.resources.spend('acme')).toBe(9);
    expect(events).toEqual([]);

    // The task that crosses the limit still completes; the event fires once however often it reports after that.
    await expect(o.submit(spendTask('acme', [2, 3, 1]))).resolves.toBe('2+3+1');
    expect(o.resources.spend('acme')).toBe(15);
    expect(events).toEqual([{ tenantId: 'acme', spent: 11, limit: 10, windowMs: 1_000, halted: 0 }]);

    const refused = await rejectionOf(o.submit(spendTask('acme', [1])));
    expect(refused).toBeInstanceOf(BudgetExceededError);
    expect(refused).toMatchObject({ code: 'BUDGET_EXCEEDED', tenantId: 'acme', spent: 15, limit: 10, windowMs: 1_000 });
    expect(delegateError(o, spendTask('acme', [1]))).toBeInstanceOf(BudgetExceededError);
    expect(o.stats().rejected).toBe(2);

    // Other tenants (no limit of their own, defaultLimit Infinity) and untenanted tasks are not affected.
    await expect(o.submit(spendTask('globex', [50]))).resolves.toBe('50');
    await expect(o.submit(spendTask(undefined, [50]))).resolves.toBe('50');
    expect(o.resources.spend('globex')).toBe(50);
    expect(o.resources.spend('acme')).toBe(15);
    expect(o.resources.spend('nobody')).toBe(0);
    expect(events).toHaveLength(1);
    await o.stop();
  });

  it('a refusal says when the tenant is under its limit again (retryAfterMs), and it is accepted exactly then', async () => {
    const clock = manualClock(); // 1_000_000: on a bucket boundary (buckets of windowMs / 20 = 50 ms)
    const o = await start({ budgets: { windowMs: 1_000, limits: { acme: 10 } }, clock });
    o.registerAgent(costAgent(), { id: 'a', capabilities: ['x'], concurrency: 4 });
    await o.submit(spendTask('acme', [4])); // leaves the window at +1_000
    clock.advance(100);
    await o.submit(spendTask('acme', [5])); // at +1_100
    clock.advance(200);
    await o.submit(spendTask('acme', [2])); // 11 of 10
    clock.advance(100); // +400
    const refused = (await o.submit(spendTask('acme', [1])).catch((e: unknown) => e)) as BudgetExceededError;
    expect(refused).toBeInstanceOf(BudgetExceededError);
    // Once the first 4 leave, 7 < 10: in 600 ms.
    expect(refused.retryAfterMs).toBe(600);
    expect(retryAfterMs(refused)).toBe(600);
    expect(refused.message).toContain('under again in 600 ms');
    clock.advance(599);
    await expect(o.submit(spendTask('acme', [1]))).rejects.toMatchObject({ code: 'BUDGET_EXCEEDED', retryAfterMs: 1 });
    clock.advance(1);
    await expect(o.submit(spendTask('acme', [1]))).resolves.toBe('1');
    // A limit of 0 never clears by itself: no hint.
    o.resources.setBudget('zero', 0);
    await expect(o.submit(spendTask('zero', [1]))).rejects.toMatchObject({
      code: 'BUDGET_EXCEEDED',
      retryAfterMs: undefined,
    });
  });

  it('reportCost may be destructured from the context (it is bound to its attempt)', async () => {
    const o = await start({ budgets: { windowMs: 60_000, limits: { acme: 100 } } });
    const destructuring: Agent<{ units: number }> = {
      execute({ payload, reportCost }) {
        reportCost(payload.units);
        expect(() => reportCost(-1)).toThrow(ValidationError);
        return 'ok';
      },
    };
    o.registerAgent(destructuring, { id: 'd', capabilities: ['x'] });
    await expect(o.submit({ type: 'spend', requires: ['x'], tenantId: 'acme', payload: { units: 7 } })).resolves.toBe(
      'ok',
    );
    await expect(o.submit({ type: 'spend', requires: ['x'], tenantId: 'acme', payload: { units: 5 } })).resolves.toBe(
      'ok',
    );
    expect(o.resources.spend('acme')).toBe(12);
  });

  it('spend slides out of the window, the tenant is accepted again, and a new crossing is reported again', async () => {
    const clock = manualClock();
    const o = await start({ budgets: { windowMs: 1_000, limits: { acme: 10 } }, clock });
    const events = exceededEvents(o);
    o.registerAgent(costAgent(), { id: 'a', capabilities: ['x'] });

    await o.submit(spendTask('acme', [4]));
    clock.advance(500);
    await o.submit(spendTask('acme', [7]));
    expect(o.resources.spend('acme')).toBe(11);
    expect(events).toHaveLength(1);
    expect(await rejectionOf(o.submit(spendTask('acme', [0])))).toBeInstanceOf(BudgetExceededError);

    // A window after the first charge, only the second is left, and 7 < 10.
    clock.advance(500);
    expect(o.resources.spend('acme')).toBe(7);
    await expect(o.submit(spendTask('acme', [1]))).resolves.toBe('1');
    expect(o.resources.spend('acme')).toBe(8);

    clock.advance(1_000);
    expect(o.resources.spend('acme')).toBe(0);

    // Crossing again is a new crossing.
    await o.submit(spendTask('acme', [12]));
    expect(events).toHaveLength(2);
    expect(events[1]).toEqual({ tenantId: 'acme', spent: 12, limit: 10, windowMs: 1_000, halted: 0 });
    expect(await rejectionOf(o.submit(spendTask('acme', [0])))).toBeInstanceOf(BudgetExceededError);
    await o.stop();
  });

  it('with the real clock and a short window, a refused tenant is accepted again once the window passed', async () => {
    const o = await start({ budgets: { windowMs: 200, limits: { acme: 5 } } });
    o.registerAgent(costAgent(), { id: 'a', capabilities: ['x'] });
    await o.submit(spendTask('acme', [5]));
    expect(await rejectionOf(o.submit(spendTask('acme', [1])))).toBeInstanceOf(BudgetExceededError);
    await until(() => o.resources.spend('acme') === 0, 1_000);
    await expect(o.submit(spendTask('acme', [1], 'again'))).resolves.toBe('again');
    await o.stop();
  });

  it('defaultLimit applies to every tenant without a limit of its own; untenanted tasks are never budgeted', async () => {
    const o = await start({ budgets: { limits: { big: 100 }, defaultLimit: 3 }, clock: manualClock() });
    o.registerAgent(costAgent(), { id: 'a', capabilities: ['x'] });
    await o.submit(spendTask('small', [3]));
    await o.submit(spendTask('big', [50]));
    await o.submit(spendTask(undefined, [1_000]));
    expect(await rejectionOf(o.submit(spendTask('small', [0])))).toMatchObject({
      code: 'BUDGET_EXCEEDED',
      tenantId: 'small',
      limit: 3,
    });
    await expect(o.submit(spendTask('big', [0], 'big ok'))).resolves.toBe('big ok');
    await expect(o.submit(spendTask(undefined, [0], 'free'))).resolves.toBe('free');
    await o.stop();
  });

  it('setBudget raises, lowers and removes a limit at runtime', async () => {
    const o = await start({ budgets: { limits: { acme: 10 }, defaultLimit: 20 }, clock: manualClock() });
    const events = exceededEvents(o);
    o.registerAgent(costAgent(), { id: 'a', capabilities: ['x'] });
    await o.submit(spendTask('acme', [10]));
    expect(events).toHaveLength(1);
    expect(await rejectionOf(o.submit(spendTask('acme', [0])))).toBeInstanceOf(BudgetExceededError);

    o.resources.setBudget('acme', 15);
    await expect(o.submit(spendTask('acme', [3], 'raised'))).resolves.toBe('raised');
    expect(o.resources.spend('acme')).toBe(13);
    // Going over the raised limit is a new crossing.
    await o.submit(spendTask('acme', [2]));
    expect(events).toHaveLength(2);
    expect(events[1]).toMatchObject({ tenantId: 'acme', spent: 15, limit: 15 });
    expect(await rejectionOf(o.submit(spendTask('acme', [0])))).toMatchObject({ limit: 15, spent: 15 });

    // Removing its own limit falls back to defaultLimit (20).
    o.resources.setBudget('acme', undefined);
    await expect(o.submit(spendTask('acme', [5], 'default'))).resolves.toBe('default');
    expect(await rejectionOf(o.submit(spendTask('acme', [0])))).toMatchObject({ limit: 20, spent: 20 });

    // Lowering a tenant that has not spent its limit yet refuses it at once; Infinity lifts every limit.
    await o.submit(spendTask('other', [5]));
    o.resources.setBudget('other', 5);
    expect(await rejectionOf(o.submit(spendTask('other', [0])))).toMatchObject({
      tenantId: 'other',
      limit: 5,
      spent: 5,
    });
    o.resources.setBudget('other', Infinity);
    await expect(o.submit(spendTask('other', [100], 'unlimited'))).resolves.toBe('unlimited');
    await o.stop();
  });

  it('setBudget on an orchestrator without limits counts what the tenant already spent in the window', async () => {
    const o = await start({ clock: manualClock() });
    o.registerAgent(costAgent(), { id: 'a', capabilities: ['x'] });
    await o.submit(spendTask('acme', [7]));
    expect(o.resources.spend('acme')).toBe(7);
    o.resources.setBudget('acme', 5);
    expect(await rejectionOf(o.submit(spendTask('acme', [0])))).toMatchObject({
      code: 'BUDGET_EXCEEDED',
      spent: 7,
      limit: 5,
    });
    await o.stop();
  });

  it("with haltOnExceeded the tenant's waiting tasks are cancelled; its running ones and other tenants' finish", async () => {
    const o = await start({ budgets: { limits: { acme: 10 }, haltOnExceeded: true }, clock: manualClock() });
    const events = exceededEvents(o);
    const failed: Array<OrchestratorEvents['task:failed']> = [];
    o.on('task:failed', (e) => failed.push(e));
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    o.registerAgent(manualAgent(calls), { id: 'b', capabilities: ['x'] });

    const running1 = o.submit({ type: 't', requires: ['x'], tenantId: 'acme', payload: 'r1' });
    const running2 = o.submit({ type: 't', requires: ['x'], tenantId: 'acme', payload: 'r2' });
    const waiting1 = o.delegate({ type: 't', requires: ['x'], tenantId: 'acme', payload: 'w1' });
    const waiting2 = o.delegate({ type: 't', requires: ['x'], tenantId: 'acme', payload: 'w2' });
    const other = o.submit({ type: 't', requires: ['x'], tenantId: 'globex', payload: 'g' });
    const untenanted = o.submit({ type: 't', requires: ['x'], payload: 'u' });
    expect(calls).toHaveLength(2);
    expect(o.stats()).toMatchObject({ running: 2, waiting: 4 });

    calls[0]!.ctx.reportCost(10);
    expect(events).toEqual([{ tenantId: 'acme', spent: 10, limit: 10, windowMs: 3_600_000, halted: 2 }]);
    for (const handle of [waiting1, waiting2]) {
      const error = await rejectionOf(handle.result);
      expect(error).toBeInstanceOf(TaskCancelledError);
      expect(error).toMatchObject({ code: 'TASK_CANCELLED', taskId: handle.id });
      const cause = (error as Error).cause;
      expect(cause).toBeInstanceOf(BudgetExceededError);
      expect(cause).toMatchObject({ tenantId: 'acme', spent: 10, limit: 10 });
    }
    expect(failed.map((e) => [e.taskId, e.outcome])).toEqual([
      [waiting1.id, 'cancelled'],
      [waiting2.id, 'cancelled'],
    ]);
    expect(o.stats()).toMatchObject({ running: 2, waiting: 2, cancelled: 2 });

    // Running tasks of the tenant finish, and report more cost without a second event.
    calls[1]!.ctx.reportCost(1);
    calls[0]!.resolve('r1 done');
    calls[1]!.resolve('r2 done');
    await expect(running1).resolves.toBe('r1 done');
    await expect(running2).resolves.toBe('r2 done');
    await until(() => calls.length === 4);
    for (const c of calls.slice(2)) c.resolve(c.ctx.payload);
    await expect(Promise.all([other, untenanted])).resolves.toEqual(['g', 'u']);
    expect(events).toHaveLength(1);
    expect(o.resources.spend('acme')).toBe(11);
    expect(await rejectionOf(o.submit({ type: 't', requires: ['x'], tenantId: 'acme' }))).toBeInstanceOf(
      BudgetExceededError,
    );
    await o.stop();
  });

  it("without haltOnExceeded the tenant's tasks accepted before the crossing still run", async () => {
    const o = await start({ budgets: { limits: { acme: 10 } }, clock: manualClock() });
    const events = exceededEvents(o);
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const first = o.submit({ type: 't', requires: ['x'], tenantId: 'acme', payload: 1 });
    const queued = o.submit({ type: 't', requires: ['x'], tenantId: 'acme', payload: 2 });
    calls[0]!.ctx.reportCost(25);
    expect(events).toEqual([{ tenantId: 'acme', spent: 25, limit: 10, windowMs: 3_600_000, halted: 0 }]);
    calls[0]!.resolve(1);
    await until(() => calls.length === 2);
    calls[1]!.resolve(2);
    await expect(Promise.all([first, queued])).resolves.toEqual([1, 2]);
    expect(await rejectionOf(o.submit({ type: 't', requires: ['x'], tenantId: 'acme' }))).toBeInstanceOf(
      BudgetExceededError,
    );
    await o.stop();
  });
});

describe('budget validation', () => {
  it('names the offending option', () => {
    const cases: Array<[BudgetOptions, string]> = [
      [{ limits: { acme: -1 } }, 'options.budgets.limits.acme'],
      [{ limits: { acme: Number.NaN } }, 'options.budgets.limits.acme'],
      [{ limits: { ok: 1, 'tenant-7': -0.5 } }, 'options.budgets.limits.tenant-7'],
      [{ defaultLimit: -1 }, 'options.budgets.defaultLimit'],
      [{ windowMs: 0 }, 'options.budgets.windowMs'],
      [{ haltOnExceeded: 'yes' as unknown as boolean }, 'options.budgets.haltOnExceeded'],
      [{ limit: 5 } as unknown as BudgetOptions, 'options.budgets.limit'],
    ];
    for (const [budgets, field] of cases) {
      let error: unknown;
      try {
        new UnifiedOrchestrator({ pressure: false, budgets });
      } catch (e) {
        error = e;
      }
      expect(error, field).toBeInstanceOf(ValidationError);
      expect(error, field).toMatchObject({ code: 'VALIDATION_ERROR', field });
    }
  });

  it('setBudget refuses a negative or non-numeric limit, and spend a non-string tenant', async () => {
    const o = await start({ budgets: { limits: { acme: 10 } } });
    expect(() => o.resources.setBudget('acme', -1)).toThrow(ValidationError);
    expect(() => o.resources.setBudget('acme', Number.NaN)).toThrow(ValidationError);
    expect(() => o.resources.setBudget('acme', '5' as unknown as number)).toThrow(ValidationError);
    expect(() => o.resources.spend(42 as unknown as string)).toThrow(ValidationError);
    // The limit is unchanged.
    o.registerAgent(costAgent(), { id: 'a', capabilities: ['x'] });
    await o.submit(spendTask('acme', [10]));
    expect(await rejectionOf(o.submit(spendTask('acme', [0])))).toMatchObject({ limit: 10 });
    await o.stop();
  });
});

describe('many tenants', () => {
  it('keeps every tenant with spend in the window past the sweep threshold, and forgets idle ones once the window moved on', async () => {
    const { TenantBudgets } = await import('../../src/resources/budgets.js');
    const budgets = new TenantBudgets({
      windowMs: 1_000,
      limits: new Map([['t-7', 1]]),
      defaultLimit: Infinity,
      haltOnExceeded: false,
    });
    // 25,000 tenants active in one window: none may be forgotten (their spend counts against their limits).
    for (let i = 0; i < 25_000; i++) budgets.charge(`t-${i}`, 1, 10);
    expect(budgets.spent('t-0', 20)).toBe(1);
    expect(budgets.spent('t-24999', 20)).toBe(1);
    expect(budgets.exhausted('t-7', 20)).toBe(true);
    // A window later they have nothing left; new tenants arriving sweep them out and start from zero.
    for (let i = 0; i < 60_000; i++) budgets.charge(`u-${i}`, 2, 2_000);
    expect(budgets.spent('t-7', 2_000)).toBe(0);
    expect(budgets.exhausted('t-7', 2_000)).toBe(false);
    expect(budgets.spent('u-59999', 2_000)).toBe(2);
  });
});
