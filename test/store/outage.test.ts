/**
 * PostgreSQL killed (`pg_ctl stop -m immediate`) and restarted under a running orchestrator: submits during the
 * outage reject with STORE_UNAVAILABLE and leave nothing behind, tasks running through it finish and their ends reach
 * the store once it is back, and every task accepted before or after the outage ends exactly once.
 */
import { describe, expect, it } from 'vitest';
import { StoreUnavailableError, UnifiedOrchestrator, type TaskHandle } from '../../src/index.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { POSTGRES_SERVER, postgresForSuite } from '../support/postgres.js';
import { eventually } from '../support/agents.js';

describe.skipIf(POSTGRES_SERVER.skip)('durable runs through a PostgreSQL outage', () => {
  const server = postgresForSuite();

  it('refuses submits while the server is down, and ends every accepted task exactly once', async () => {
    if (!server().owned) return; // a shared DATABASE_URL server cannot be stopped by a test
    const url = await server().createDatabase('uo_outage');
    const executions = new Map<string, number>();
    const orchestrator = new UnifiedOrchestrator({
      pools: [
        {
          role: 'worker',
          capabilities: ['work'],
          minAgents: 4,
          maxAgents: 4,
          create: () => ({
            async execute(ctx) {
              executions.set(ctx.taskId, (executions.get(ctx.taskId) ?? 0) + 1);
              await new Promise((r) => setTimeout(r, 30));
              return (ctx.payload as { n: number }).n;
            },
          }),
        },
      ],
      metrics: false,
      store: new PostgresStore({ connectionString: url, connectTimeoutMs: 1_000 }),
      durability: { leaseMs: 60_000, claimIntervalMs: 100, pollMs: 100 },
    });
    await orchestrator.start();
    try {
      const accepted: TaskHandle<number>[] = [];
      for (let n = 0; n < 100; n++)
        accepted.push(await orchestrator.enqueue<number>({ type: 't', requires: ['work'], payload: { n } }));

      // Kill the server while tasks run.
      await server().stop({ mode: 'immediate' });
      const refused = await Promise.allSettled(
        Array.from({ length: 20 }, (_, n) =>
          orchestrator.enqueue({ type: 't', requires: ['work'], payload: { n: 1_000 + n } }),
        ),
      );
      for (const r of refused) {
        expect(r.status).toBe('rejected');
        expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailableError);
      }
      expect(orchestrator.health().components.store?.status).toBe('degraded');
      // Tasks accepted before the outage finish meanwhile (their ends wait in memory).
      const before = await Promise.all(accepted.map((h) => h.result));
      expect(before).toEqual(Array.from({ length: 100 }, (_, n) => n));

      await server().restart();
      // Submits work again once the server is back (the pool reconnects by itself).
      await eventually(
        async () => {
          accepted.push(await orchestrator.enqueue<number>({ type: 't', requires: ['work'], payload: { n: 100 } }));
          return true;
        },
        30_000,
        'a submit to be stored again',
      );
      for (let n = 101; n < 200; n++)
        accepted.push(await orchestrator.enqueue<number>({ type: 't', requires: ['work'], payload: { n } }));
      const after = await Promise.all(accepted.slice(100).map((h) => h.result));
      expect(after).toEqual(Array.from({ length: 100 }, (_, n) => 100 + n));

      // The store holds exactly the 200 accepted runs, each completed once, the refused ones nowhere.
      const store = new PostgresStore({ connectionString: url });
      await store.open();
      try {
        await eventually(
          async () => (await store.list({ status: 'completed', limit: 1_000 })).runs.length === 200,
          30_000,
          'every end to reach the store',
        );
        const { runs } = await store.list({ limit: 1_000 });
        expect(runs).toHaveLength(200);
        expect(new Set(runs.map((r) => r.id))).toEqual(new Set(accepted.map((h) => h.id)));
        for (const h of accepted.slice(0, 20)) {
          const kinds = (await store.events(h.id)).map((e) => e.kind);
          expect(kinds.filter((k) => k === 'completed')).toHaveLength(1);
        }
      } finally {
        await store.close();
      }
      expect([...executions.values()].every((n) => n === 1)).toBe(true);
      expect(executions.size).toBe(200);
      await eventually(
        () => orchestrator.health().components.store?.status === 'healthy',
        10_000,
        'the store to be healthy',
      );
    } finally {
      await orchestrator.stop();
    }
  }, 120_000);
});
