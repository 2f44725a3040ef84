/** The audit trail: each critical operation is an `audit` event (and a sink entry) with its time, actor and node. */
import { afterEach, describe, expect, it } from 'vitest';
import {
  MemoryBridge,
  MemoryHub,
  OrchestratorsCompatibilityAdapter,
  TrafficRouter,
  UnifiedOrchestrator,
  type AuditEntry,
  type OrchestratorOptions,
} from 'unified-orchestrator';
import { until } from '../support/agents.js';

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false })));
});

function make(options: OrchestratorOptions = {}): { o: UnifiedOrchestrator; trail: AuditEntry[]; sunk: AuditEntry[] } {
  const trail: AuditEntry[] = [];
  const sunk: AuditEntry[] = [];
  const o = new UnifiedOrchestrator({
    pressure: false,
    agentBreaker: false,
    retry: { baseDelayMs: 1, maxDelayMs: 1 },
    audit: { sink: (e) => void sunk.push(e), actor: 'svc-billing' },
    pools: [
      {
        role: 'w',
        capabilities: ['x'],
        minAgents: 1,
        create: () => ({
          execute: async (ctx) => {
            if (ctx.payload === 'fail') throw new Error('no');
            return 'ok';
          },
        }),
      },
    ],
    ...options,
  });
  o.on('audit', (e) => trail.push(e));
  live.push(o);
  return { o, trail, sunk };
}

const actions = (trail: readonly AuditEntry[]): string[] => trail.map((e) => e.action);

describe('audit trail', () => {
  it('records spawn, register, terminate, halt, resume, dead-letter retry and stop with time, actor and node', async () => {
    const { o, trail, sunk } = make();
    await o.start();
    const before = Date.now();
    const spawned = await o.spawnAgent('w', { actor: 'alice' });
    const outside = o.registerAgent({ execute: async () => 'x' }, { capabilities: ['y'] });
    await o.unregisterAgent(spawned, { actor: 'bob' });
    await o.halt('incident', { actor: 'carol' });
    await o.resume();
    const dead = o.delegate({ type: 't', requires: ['x'], payload: 'fail', maxAttempts: 2 });
    await dead.result.catch(() => {});
    const retried = o.retryDeadLetter(dead.id, { actor: 'dave' });
    await retried.result.catch(() => {});
    await o.stop({ actor: 'erin' });
    expect(actions(trail)).toEqual([
      'agent.spawn',
      'agent.register',
      'agent.terminate',
      'orchestrator.halt',
      'orchestrator.resume',
      'deadletter.retry',
      'orchestrator.stop',
    ]);
    expect(trail.map((e) => e.actor)).toEqual(['alice', 'svc-billing', 'bob', 'carol', 'svc-billing', 'dave', 'erin']);
    expect(trail[0]!.detail).toEqual({ agentId: spawned, role: 'w' });
    expect(trail[1]!.detail).toEqual({ agentId: outside, capabilities: ['y'] });
    expect(trail[2]!.detail).toEqual({ agentId: spawned, role: 'w' });
    expect(trail[3]!.detail).toEqual({ reason: 'incident', interrupted: 0, held: 0 });
    expect(trail[5]!.detail).toEqual({ taskId: dead.id, newTaskId: retried.id });
    expect(trail[6]!.detail).toEqual({ drain: true, timeoutMs: 30_000 });
    for (const e of trail) {
      expect(e.node).toBe(o.bridge.nodeId);
      expect(e.at).toBeGreaterThanOrEqual(before);
      expect(e.at).toBeLessThanOrEqual(Date.now());
    }
    // The sink got the same entries, in order.
    expect(sunk).toEqual(trail);
  });

  it('records a budget halt as the system', async () => {
    const { o, trail } = make({ budgets: { limits: { acme: 5 }, haltOnExceeded: true } });
    await o.start();
    // One task reports the cost that crosses the budget while another of the tenant waits.
    let spend!: (units: number) => void;
    const gate = new Promise<void>((resolve) =>
      o.registerAgent(
        {
          execute: async (ctx) => {
            spend = (u) => {
              ctx.reportCost(u);
              resolve();
            };
            await gate;
            return 'ok';
          },
        },
        { capabilities: ['cost'] },
      ),
    );
    const first = o.delegate({ type: 't', requires: ['cost'], tenantId: 'acme' });
    const waiting = o.delegate({ type: 't', requires: ['cost'], tenantId: 'acme' });
    await until(() => spend !== undefined);
    spend(10);
    await first.result;
    await expect(waiting.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
    const halt = trail.find((e) => e.action === 'budget.halt');
    expect(halt).toMatchObject({ actor: 'system', detail: { tenantId: 'acme', halted: 1, limit: 5 } });
  });

  it('records traffic changes and rollbacks on every node, with the actor who made them; a drain request too', async () => {
    const hub = new MemoryHub();
    const a = make({ bridge: new MemoryBridge({ hub, nodeId: 'node-a' }) });
    const b = make({ bridge: new MemoryBridge({ hub, nodeId: 'node-b' }) });
    await a.o.start();
    await b.o.start();
    const legacy = {
      spawnAgent: async () => 'l',
      delegateTaskToAgent: async () => 'l',
      getAgentStatus: async () => 'l',
      getTaskStatus: async () => 'l',
      shutdownAgent: async () => 'l',
    } as never;
    const router = new TrafficRouter({
      legacy,
      unified: new OrchestratorsCompatibilityAdapter(a.o),
      orchestrator: a.o,
    });
    await router.setPercent(10, { actor: 'frank' });
    await router.rollback('p95', { actor: 'grace' });
    await b.o.broadcast({ kind: 'drain', reason: 'deploy', actor: 'heidi' });
    for (const { o, trail } of [a, b]) {
      const entries = trail.filter((e) => e.action !== 'agent.register');
      expect(actions(entries)).toEqual(['traffic.change', 'traffic.rollback', 'orchestrator.drain']);
      expect(entries.map((e) => e.actor)).toEqual(['frank', 'grace', 'heidi']);
      expect(entries[0]!.detail).toEqual({ percent: 10, shadow: false, previous: null });
      expect(entries[1]!.detail).toEqual({ reason: 'p95', previous: { percent: 10, shadow: false } });
      for (const e of entries) expect(e.node).toBe(o.bridge.nodeId);
    }
    await router.close();
  });

  it('a halt from another node is recorded with that node as the actor when the message names none', async () => {
    const hub = new MemoryHub();
    const a = make({ bridge: new MemoryBridge({ hub, nodeId: 'node-a' }), audit: {} });
    const b = make({ bridge: new MemoryBridge({ hub, nodeId: 'node-b' }), audit: {} });
    await a.o.start();
    await b.o.start();
    await a.o.broadcast({ kind: 'halt', reason: 'from a' });
    expect(a.trail.find((e) => e.action === 'orchestrator.halt')?.actor).toBe('local');
    expect(b.trail.find((e) => e.action === 'orchestrator.halt')?.actor).toBe('node-a');
  });

  it('a sink that throws or rejects is reported as audit:sink-failed and the operation goes ahead', async () => {
    let calls = 0;
    const { o } = make({
      audit: {
        sink: () => {
          calls++;
          if (calls === 1) throw new Error('disk full');
          return Promise.reject(new Error('network'));
        },
      },
    });
    const failures: unknown[] = [];
    o.on('audit:sink-failed', (e) => failures.push((e.error as Error).message));
    await o.start();
    const agentId = await o.spawnAgent('w');
    await o.halt('x');
    expect(o.controlState().halted).toBe('x');
    expect(o.agent(agentId)).toBeDefined();
    await until(() => failures.length === 2);
    expect(failures).toEqual(['disk full', 'network']);
  });

  it('validates its options', () => {
    expect(() => new UnifiedOrchestrator({ audit: { sink: 'file.log' as never } })).toThrow(
      expect.objectContaining({ field: 'options.audit.sink' }),
    );
    expect(() => new UnifiedOrchestrator({ audit: { actor: '' } })).toThrow(
      expect.objectContaining({ field: 'options.audit.actor' }),
    );
    expect(() => new UnifiedOrchestrator({ audit: { level: 'all' } as never })).toThrow(
      expect.objectContaining({ field: 'options.audit.level' }),
    );
  });
});
