/**
 * Tenant isolation: calls about a task by id that state a tenant never reach another tenant's task (cancel, task
 * status, dead-letter retry), and the dead-letter list filters by tenant. Budgets and fairness per tenant are
 * covered in test/resources/budgets.test.ts and test/engine/queueing.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TaskNotFoundError, UnifiedOrchestrator, ValidationError, type Agent } from 'unified-orchestrator';
import { until, wait } from '../support/agents.js';

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false })));
});

/** One agent that holds every task until the test lets go, and fails tasks whose payload says so. */
async function setup(): Promise<{ o: UnifiedOrchestrator; release: () => void }> {
  let release!: () => void;
  let gate = new Promise<void>((resolve) => (release = resolve));
  const agent: Agent = {
    async execute(ctx) {
      if (ctx.payload === 'fail') throw new Error('no');
      await Promise.race([gate, wait(10_000, ctx.signal)]);
      return 'done';
    },
  };
  const o = new UnifiedOrchestrator({
    pressure: false,
    agentBreaker: false,
    retry: { baseDelayMs: 1, maxDelayMs: 1 },
    pools: [{ role: 'w', capabilities: ['x'], minAgents: 1, maxAgents: 1, warmSpares: 0, create: () => agent }],
  });
  live.push(o);
  await o.start();
  return {
    o,
    release: () => {
      release();
      gate = new Promise<void>((resolve) => (release = resolve));
    },
  };
}

describe('tenant isolation', () => {
  it("cancel with another tenant's id is refused (false) and leaves the task running; its own tenant cancels it", async () => {
    const { o } = await setup();
    const running = o.delegate({ type: 't', requires: ['x'], tenantId: 'acme' });
    const waiting = o.delegate({ type: 't', requires: ['x'], tenantId: 'acme' });
    await until(() => o.stats().running === 1);
    expect(o.cancel(running.id, 'nope', { tenantId: 'globex' })).toBe(false);
    expect(o.cancel(waiting.id, 'nope', { tenantId: 'globex' })).toBe(false);
    expect(o.task(running.id)?.phase).toBe('running');
    expect(o.task(waiting.id)?.phase).toBe('waiting');
    expect(o.cancel(waiting.id, 'mine', { tenantId: 'acme' })).toBe(true);
    await expect(waiting.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
    // Without a stated tenant (a trusted caller) the id alone is enough.
    expect(o.cancel(running.id, 'admin')).toBe(true);
    await expect(running.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
  });

  it('task() reports a live task to its own tenant and to a caller stating none, and nothing to another tenant', async () => {
    const { o, release } = await setup();
    const h = o.delegate({ type: 'report', requires: ['x'], tenantId: 'acme', priority: 3 });
    await until(() => o.stats().running === 1);
    expect(o.task(h.id, { tenantId: 'globex' })).toBeUndefined();
    const own = o.task(h.id, { tenantId: 'acme' });
    expect(own).toMatchObject({
      id: h.id,
      type: 'report',
      tenantId: 'acme',
      priority: 3,
      phase: 'running',
      attempts: 1,
    });
    expect(own?.agentId).toMatch(/^w-/);
    expect(o.task(h.id)).toEqual(own);
    release();
    await h.result;
    expect(o.task(h.id)).toBeUndefined();
    expect(o.task('no-such-task')).toBeUndefined();
  });

  it("retryDeadLetter for another tenant's letter throws TaskNotFoundError and keeps the letter; deadLetters(tenant) filters", async () => {
    const { o } = await setup();
    const acme = o.delegate({ type: 't', requires: ['x'], tenantId: 'acme', payload: 'fail', maxAttempts: 2 });
    const globex = o.delegate({ type: 't', requires: ['x'], tenantId: 'globex', payload: 'fail', maxAttempts: 2 });
    await expect(acme.result).rejects.toMatchObject({ code: 'TASK_DEAD_LETTERED' });
    await expect(globex.result).rejects.toMatchObject({ code: 'TASK_DEAD_LETTERED' });
    expect(o.deadLetters('acme').map((l) => l.taskId)).toEqual([acme.id]);
    expect(o.deadLetters('globex').map((l) => l.taskId)).toEqual([globex.id]);
    expect(() => o.retryDeadLetter(acme.id, { tenantId: 'globex' })).toThrow(TaskNotFoundError);
    expect(
      o
        .deadLetters()
        .map((l) => l.taskId)
        .sort(),
    ).toEqual([acme.id, globex.id].sort());
    const again = o.retryDeadLetter(acme.id, { tenantId: 'acme' });
    expect(again.id).not.toBe(acme.id);
    await expect(again.result).rejects.toMatchObject({ code: 'TASK_DEAD_LETTERED' });
  });

  it('a tenantId that is not a non-empty string is a ValidationError naming options.tenantId', async () => {
    const { o } = await setup();
    const h = o.delegate({ type: 't', requires: ['x'], tenantId: 'acme' });
    for (const bad of [42, '', null]) {
      expect(() => o.cancel(h.id, undefined, { tenantId: bad as never })).toThrow(ValidationError);
      expect(() => o.task(h.id, { tenantId: bad as never })).toThrow(
        expect.objectContaining({ field: 'options.tenantId' }),
      );
    }
    expect(o.task(h.id)).toBeDefined();
  });
});
