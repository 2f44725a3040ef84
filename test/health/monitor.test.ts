/**
 * HealthMonitor through the orchestrator: stuck agents and failing health checks replaced within a recovery budget,
 * outside agents quarantined and recovered, a crash-looping pool stopped and reported unhealthy (also over HTTP),
 * SLA windows per task type, and the `health()` report.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  TaskTimeoutError,
  UnifiedOrchestrator,
  type Agent,
  type OrchestratorEventName,
  type OrchestratorEvents,
  type OrchestratorOptions,
  type PoolOptions,
  type TaskContext,
} from 'unified-orchestrator';
import { manualAgent, rejectionOf, type Call } from '../engine/helpers.js';
import { until, wait } from '../support/agents.js';

// --- Helpers ---------------------------------------------------------------------------------------

const live: UnifiedOrchestrator[] = [];

/** An orchestrator with no pressure sampling (no CPU noise) and a health interval too long to fire by itself. */
function make(options: OrchestratorOptions = {}): UnifiedOrchestrator {
  const o = new UnifiedOrchestrator({
    pools: [],
    pressure: false,
    ...options,
    health: { checkIntervalMs: 60_000, ...options.health },
  });
  live.push(o);
  return o;
}

async function started(options: OrchestratorOptions = {}): Promise<UnifiedOrchestrator> {
  const o = make(options);
  await o.start();
  return o;
}

afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
});

/** Records every payload of one event. */
function record<E extends OrchestratorEventName>(o: UnifiedOrchestrator, event: E): Array<OrchestratorEvents[E]> {
  const seen: Array<OrchestratorEvents[E]> = [];
  o.on(event, (e) => seen.push(e));
  return seen;
}

/** The agent each started attempt ran on, by task id. */
function startedOn(o: UnifiedOrchestrator): Map<string, string> {
  const on = new Map<string, string>();
  o.on('task:started', (e) => on.set(e.taskId, e.agentId));
  return on;
}

/** A control block for the agents one pool factory made, by id. */
interface Made {
  readonly id: string;
  disposed: number;
  /** What its health checks (after the one at creation) do. */
  health: 'ok' | 'false' | 'throws' | 'hangs';
  checks: number;
}

/**
 * A pool whose agents answer `${agentId}:${payload}`, hang forever (ignoring their signal) on payload `'hang'`, and
 * wait for the test on payload `'manual'` (through `calls`). Their health check does what `made[i].health` says.
 */
function trackedPool(
  role: string,
  extra: Partial<PoolOptions> & { calls?: Call[]; firstCheck?: 'pass' | 'same' } = {},
): { pool: PoolOptions; made: Made[]; byId: (id: string) => Made } {
  const made: Made[] = [];
  const { calls = [], firstCheck = 'pass', ...rest } = extra;
  const manual = manualAgent(calls);
  const pool: PoolOptions = {
    role,
    capabilities: ['x'],
    minAgents: 2,
    warmSpares: 0,
    createAttempts: 1,
    ...rest,
    create: ({ agentId }) => {
      const m: Made = { id: agentId, disposed: 0, health: 'ok', checks: 0 };
      made.push(m);
      const agent: Agent = {
        execute: (ctx: TaskContext) => {
          if (ctx.payload === 'hang') return new Promise<never>(() => {});
          if (ctx.payload === 'manual') return manual.execute(ctx);
          return `${ctx.agentId}:${String(ctx.payload)}`;
        },
        healthCheck: () => {
          m.checks++;
          // The check at creation passes, so the agent joins; later ones follow `health`.
          if (m.checks === 1 && firstCheck === 'pass') return true;
          switch (m.health) {
            case 'ok':
              return true;
            case 'false':
              return false;
            case 'throws':
              throw new Error('health check exploded');
            case 'hangs':
              return new Promise<boolean>(() => {});
          }
        },
        dispose: () => {
          m.disposed++;
        },
      };
      return agent;
    },
  };
  const byId = (id: string): Made => {
    const m = made.find((x) => x.id === id);
    if (!m) throw new Error(`no agent ${id} was made`);
    return m;
  };
  return { pool, made, byId };
}

/** Mounts the orchestrator's HTTP handler on an ephemeral port. */
async function serve(
  o: UnifiedOrchestrator,
): Promise<{ get(path: string): Promise<{ status: number; body: string }>; close(): Promise<void> }> {
  const server: Server = createServer(o.httpHandler());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    async get(path) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      return { status: res.status, body: await res.text() };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// --- Stuck agents ------------------------------------------------------------------------------------

describe('stuck agents', () => {
  it('replaces a pool agent whose timed-out attempt never returns, and the pool returns to size with working agents', async () => {
    const { pool, made, byId } = trackedPool('w', { minAgents: 2 });
    const o = await started({ pools: [pool], health: { stuckAfterMs: 60 } });
    const unhealthy = record(o, 'agent:unhealthy');
    const replaced = record(o, 'agent:replaced');
    const on = startedOn(o);
    expect(made).toHaveLength(2);

    const handle = o.delegate({ type: 't', requires: ['x'], payload: 'hang', timeoutMs: 20 });
    expect(await rejectionOf(handle.result)).toBeInstanceOf(TaskTimeoutError);
    const stuckId = on.get(handle.id)!;
    expect(stuckId).toBeDefined();
    // The task moved on, the agent did not: it keeps its slot.
    expect(o.agent(stuckId)).toMatchObject({ state: 'BUSY', running: 1 });

    // Not stuck yet: the attempt was given up on less than stuckAfterMs ago.
    await o.checkHealth();
    expect(unhealthy).toEqual([]);
    expect(o.agent(stuckId)).toMatchObject({ running: 1 });

    await wait(70);
    await o.checkHealth();
    expect(unhealthy).toEqual([{ agentId: stuckId, role: 'w', reason: 'stuck', error: expect.any(Error) }]);
    expect(replaced).toEqual([{ agentId: stuckId, role: 'w', reason: 'stuck' }]);

    // It is disposed at once (its attempt will never return) and gone; a new agent of the factory takes its place.
    await until(() => o.agent(stuckId) === undefined);
    expect(byId(stuckId).disposed).toBe(1);
    await until(() => o.health().components.pools['w']!.routable === 2);
    expect(made).toHaveLength(3);
    const fresh = made[2]!.id;
    expect(o.agent(fresh)).toMatchObject({ role: 'w', running: 0 });
    expect(o.stats().pools[0]).toMatchObject({ members: 2, available: 2 });
    expect(o.health().components.pools['w']).toMatchObject({
      status: 'healthy',
      routable: 2,
      quarantined: 0,
      recoveries: 1,
    });

    // New work runs, never on the stuck agent.
    const results = await Promise.all(
      [1, 2, 3, 4].map((payload) => o.submit<string>({ type: 't', requires: ['x'], payload })),
    );
    expect(results.map((r) => r.split(':')[1])).toEqual(['1', '2', '3', '4']);
    const ranOn = results.map((r) => r.split(':')[0]!);
    expect(ranOn).not.toContain(stuckId);
    for (const id of ranOn) expect(made.map((m) => m.id)).toContain(id);

    // A later pass does not report it again.
    await o.checkHealth();
    expect(unhealthy).toHaveLength(1);
    expect(replaced).toHaveLength(1);
  });

  it('finds an agent stuck on one attempt even while its other given-up attempts keep returning late', async () => {
    // Concurrency 2: one slot holds an attempt that never returns; through the other, timed-out attempts come back
    // late all the time. Those must not make the one that never returns look young.
    let ranHang = false;
    const o = await started({
      health: { stuckAfterMs: 150 },
      agentBreaker: false, // the timeouts would open it and quarantine the agent for another reason
      pools: [
        {
          role: 'w',
          capabilities: ['x'],
          minAgents: 1,
          maxAgents: 1,
          warmSpares: 0,
          concurrency: 2,
          create: () => ({
            async execute(ctx: TaskContext) {
              if (ctx.payload === 'hang' && !ranHang) {
                ranHang = true;
                return new Promise<never>(() => {});
              }
              await wait(30); // past its 10 ms timeout, ignoring the signal: returns late
              return 'late';
            },
          }),
        },
      ],
    });
    const unhealthy = record(o, 'agent:unhealthy');
    const hung = o.delegate({ type: 't', requires: ['x'], payload: 'hang', timeoutMs: 10 });
    await rejectionOf(hung.result);
    const deadline = Date.now() + 2_000;
    while (unhealthy.length === 0 && Date.now() < deadline) {
      await o.submit({ type: 't', requires: ['x'], payload: 'late', timeoutMs: 10 }).catch(() => {});
      await o.checkHealth();
    }
    expect(unhealthy).toEqual([expect.objectContaining({ reason: 'stuck' })]);
  });

  it('quarantines a stuck outside agent (no replacement) until its attempt returns and a check passes', async () => {
    const o = await started({ health: { stuckAfterMs: 30 } });
    const unhealthy = record(o, 'agent:unhealthy');
    const replaced = record(o, 'agent:replaced');
    const recovered = record(o, 'agent:recovered');
    let release!: () => void;
    let first = true;
    const agent: Agent = {
      execute: (ctx) => {
        if (first) {
          first = false;
          return new Promise<string>((resolve) => (release = () => resolve('late')));
        }
        return `ok:${String(ctx.payload)}`;
      },
      healthCheck: () => true,
    };
    o.registerAgent(agent, { id: 'out', capabilities: ['x'] });
    await expect(o.submit({ type: 't', requires: ['x'], timeoutMs: 10 })).rejects.toBeInstanceOf(TaskTimeoutError);
    await wait(40);
    await o.checkHealth();
    expect(unhealthy).toEqual([{ agentId: 'out', role: undefined, reason: 'stuck', error: expect.any(Error) }]);
    expect(replaced).toEqual([]);
    expect(o.agent('out')).toMatchObject({ state: 'UNHEALTHY', running: 1 });

    // Quarantined: a task waits for it.
    const waiting = o.submit<string>({ type: 't', requires: ['x'], payload: 1 });
    await wait(10);
    expect(o.stats().waiting).toBe(1);

    // Still stuck on the next pass: no recovery, no second report.
    await o.checkHealth();
    expect(recovered).toEqual([]);
    expect(unhealthy).toHaveLength(1);

    release();
    await until(() => o.agent('out')!.running === 0);
    await o.checkHealth();
    expect(recovered).toEqual([{ agentId: 'out', role: undefined }]);
    await expect(waiting).resolves.toBe('ok:1');
  });

  it('lifts the stuck quarantine of an outside agent without a healthCheck once its attempt returned', async () => {
    const o = await started({ health: { stuckAfterMs: 30 } });
    const recovered = record(o, 'agent:recovered');
    let release!: () => void;
    let first = true;
    o.registerAgent(
      {
        execute: (ctx) => {
          if (first) {
            first = false;
            return new Promise<string>((resolve) => (release = () => resolve('late')));
          }
          return `ok:${String(ctx.payload)}`;
        },
      },
      { id: 'plain', capabilities: ['x'] },
    );
    await expect(o.submit({ type: 't', requires: ['x'], timeoutMs: 10 })).rejects.toBeInstanceOf(TaskTimeoutError);
    await wait(40);
    await o.checkHealth();
    expect(o.agent('plain')).toMatchObject({ state: 'UNHEALTHY' });

    release();
    await until(() => o.agent('plain')!.running === 0);
    await o.checkHealth();
    // No longer stuck, and there is no health check that could fail: it must be routable again.
    expect(recovered).toEqual([{ agentId: 'plain', role: undefined }]);
    expect(o.agent('plain')).toMatchObject({ state: 'IDLE' });
    await expect(o.submit({ type: 't', requires: ['x'], payload: 2 })).resolves.toBe('ok:2');
  });
});

// --- Failing health checks of pool agents ---------------------------------------------------------------

describe('failing health checks of pool agents', () => {
  it.each(['false', 'throws', 'hangs'] as const)(
    'replaces an agent whose healthCheck %s, after its running task finished',
    async (mode) => {
      const calls: Call[] = [];
      const { pool, made, byId } = trackedPool('w', { minAgents: 2, calls });
      const o = await started({ pools: [pool], health: { checkTimeoutMs: 30 } });
      const unhealthy = record(o, 'agent:unhealthy');
      const replaced = record(o, 'agent:replaced');
      const on = startedOn(o);
      expect(made).toHaveLength(2);

      // A task is running on the agent that is about to fail its check.
      const handle = o.delegate<string>({ type: 't', requires: ['x'], payload: 'manual' });
      await until(() => calls.length === 1);
      const badId = on.get(handle.id)!;
      const other = made.find((m) => m.id !== badId)!.id;
      byId(badId).health = mode;

      await o.checkHealth();
      expect(unhealthy).toEqual([{ agentId: badId, role: 'w', reason: 'health-check', error: expect.any(Error) }]);
      if (mode === 'hangs') expect((unhealthy[0]!.error as Error).message).toMatch(/did not settle within 30 ms/);
      if (mode === 'throws') expect((unhealthy[0]!.error as Error).message).toBe('health check exploded');
      expect(replaced).toEqual([{ agentId: badId, role: 'w', reason: 'health-check' }]);

      // Not stuck: it drains. Its task carries on, it takes no new work, it is not disposed yet.
      expect(o.agent(badId)).toMatchObject({ state: 'DRAINING', running: 1 });
      expect(byId(badId).disposed).toBe(0);
      await expect(o.submit<string>({ type: 't', requires: ['x'], payload: 'n' })).resolves.toMatch(/^w-\d+:n$/);
      expect(on.get(handle.id)).toBe(badId);
      expect([...on.values()].filter((id) => id === badId)).toHaveLength(1);

      calls[0]!.resolve('finished');
      await expect(handle.result).resolves.toBe('finished');
      await until(() => o.agent(badId) === undefined);
      expect(byId(badId).disposed).toBe(1);

      // Back to size with a new agent from the factory.
      await until(() => o.health().components.pools['w']!.routable === 2);
      expect(made).toHaveLength(3);
      const fresh = made[2]!.id;
      expect([badId, other]).not.toContain(fresh);
      expect(o.agent(fresh)).toMatchObject({ role: 'w' });
      expect(o.agent(other)).toMatchObject({ state: 'IDLE' });
      expect(o.health().components.pools['w']).toMatchObject({ status: 'healthy', routable: 2, quarantined: 0 });
    },
  );

  it('checks agents on the interval by itself', async () => {
    const { pool, made } = trackedPool('w', { minAgents: 1 });
    const o = await started({ pools: [pool], health: { checkIntervalMs: 20 } });
    const replaced = record(o, 'agent:replaced');
    const checksBefore = made[0]!.checks;
    await until(() => made[0]!.checks >= checksBefore + 2);
    expect(replaced).toEqual([]);
    made[0]!.health = 'false';
    await until(() => replaced.length === 1);
    expect(replaced[0]).toEqual({ agentId: made[0]!.id, role: 'w', reason: 'health-check' });
    await until(() => made.length === 2 && o.health().components.pools['w']!.routable === 1);
  });
});

// --- Outside agents ---------------------------------------------------------------------------------------

describe('outside agents', () => {
  function flagged(calls: Call[]): { agent: Agent; setHealthy(v: boolean): void } {
    let healthy = true;
    const manual = manualAgent(calls);
    return {
      agent: { execute: (ctx) => manual.execute(ctx), healthCheck: () => healthy },
      setHealthy: (v) => (healthy = v),
    };
  }

  it('quarantines a failing outside agent (tasks wait), and makes it routable again once a check passes', async () => {
    const o = await started();
    const unhealthy = record(o, 'agent:unhealthy');
    const replaced = record(o, 'agent:replaced');
    const recovered = record(o, 'agent:recovered');
    const calls: Call[] = [];
    const a = flagged(calls);
    o.registerAgent(a.agent, { id: 'out', capabilities: ['x'] });

    a.setHealthy(false);
    await o.checkHealth();
    expect(unhealthy).toEqual([{ agentId: 'out', role: undefined, reason: 'health-check', error: expect.any(Error) }]);
    expect(replaced).toEqual([]);
    expect(o.agent('out')).toMatchObject({ state: 'UNHEALTHY' });
    expect(o.stats().agents.UNHEALTHY).toBe(1);

    const result = o.submit<string>({ type: 't', requires: ['x'] });
    await wait(10);
    expect(calls).toHaveLength(0);
    expect(o.stats().waiting).toBe(1);

    // Failing again: still quarantined, reported once.
    await o.checkHealth();
    expect(unhealthy).toHaveLength(1);
    expect(recovered).toEqual([]);

    a.setHealthy(true);
    await o.checkHealth();
    expect(recovered).toEqual([{ agentId: 'out', role: undefined }]);
    await until(() => calls.length === 1);
    expect(o.agent('out')).toMatchObject({ state: 'BUSY' });
    calls[0]!.resolve('done');
    await expect(result).resolves.toBe('done');

    // A passing check of a healthy agent is no recovery.
    await o.checkHealth();
    expect(recovered).toHaveLength(1);
  });

  it('sends work to the other capable agents while one is quarantined', async () => {
    const o = await started();
    const on = startedOn(o);
    const calls: Call[] = [];
    const a = flagged(calls);
    o.registerAgent(a.agent, { id: 'sick', capabilities: ['x'] });
    o.registerAgent({ execute: (ctx) => `b:${String(ctx.payload)}` }, { id: 'b', capabilities: ['x'] });
    a.setHealthy(false);
    await o.checkHealth();
    const results = await Promise.all(
      [1, 2, 3, 4, 5].map((payload) => o.submit({ type: 't', requires: ['x'], payload })),
    );
    expect(results).toEqual(['b:1', 'b:2', 'b:3', 'b:4', 'b:5']);
    expect([...on.values()]).not.toContain('sick');
    expect(calls).toHaveLength(0);
  });

  it('a breaker that half-opens does not lift a health quarantine; a passing check does', async () => {
    const o = await started({
      agentBreaker: { errorThresholdPercentage: 50, volumeThreshold: 1, windowMs: 10_000, resetTimeoutMs: 60 },
    });
    const breaker = record(o, 'breaker:state');
    const recovered = record(o, 'agent:recovered');
    const calls: Call[] = [];
    const a = flagged(calls);
    o.registerAgent(a.agent, { id: 'out', capabilities: ['x'] });

    // Its breaker opens.
    const failing = o.submit({ type: 't', requires: ['x'] });
    calls[0]!.reject(new Error('boom'));
    await expect(failing).rejects.toThrow('boom');
    await until(() => breaker.some((e) => e.to === 'open'));
    expect(o.agent('out')).toMatchObject({ state: 'UNHEALTHY', breaker: 'open' });

    // And it fails its health check too.
    a.setHealthy(false);
    await o.checkHealth();
    const waiting = o.submit<string>({ type: 't', requires: ['x'], payload: 'w' });

    await until(() => breaker.some((e) => e.to === 'half-open'));
    await wait(20);
    expect(o.agent('out')).toMatchObject({ state: 'UNHEALTHY', breaker: 'half-open' });
    expect(calls).toHaveLength(1);
    expect(o.stats().waiting).toBe(1);

    a.setHealthy(true);
    await o.checkHealth();
    expect(recovered).toEqual([{ agentId: 'out', role: undefined }]);
    // Routable again, as the breaker's probe.
    await until(() => calls.length === 2);
    calls[1]!.resolve('probe ok');
    await expect(waiting).resolves.toBe('probe ok');
    await until(() => o.agent('out')?.breaker === 'closed');
    expect(o.agent('out')).toMatchObject({ state: 'IDLE' });
  });

  it('a passing check does not lift the quarantine of a breaker that is still open', async () => {
    const o = await started({
      agentBreaker: { errorThresholdPercentage: 50, volumeThreshold: 1, windowMs: 10_000, resetTimeoutMs: 60_000 },
    });
    const calls: Call[] = [];
    const a = flagged(calls);
    o.registerAgent(a.agent, { id: 'out', capabilities: ['x'] });
    const failing = o.submit({ type: 't', requires: ['x'] });
    calls[0]!.reject(new Error('boom'));
    await expect(failing).rejects.toThrow('boom');
    await until(() => o.agent('out')?.breaker === 'open');
    a.setHealthy(false);
    await o.checkHealth();
    a.setHealthy(true);
    await o.checkHealth();
    expect(o.agent('out')).toMatchObject({ state: 'UNHEALTHY', breaker: 'open' });
    const waiting = o.submit({ type: 't', requires: ['x'] });
    waiting.catch(() => {});
    await wait(10);
    expect(calls).toHaveLength(1);
  });
});

// --- Recovery budget ---------------------------------------------------------------------------------------

describe('recovery budget', () => {
  /** A pool of one agent whose health checks fail after the one at creation: every replacement fails again. */
  function crashLooping(extra: Partial<PoolOptions> = {}): { pool: PoolOptions; made: Made[] } {
    const t = trackedPool('w', { minAgents: 1, ...extra });
    const create = t.pool.create;
    const pool: PoolOptions = {
      ...t.pool,
      create: async (ctx) => {
        const agent = await create(ctx);
        t.made[t.made.length - 1]!.health = 'false';
        return agent;
      },
    };
    return { pool, made: t.made };
  }

  it('stops a crash-looping pool after maxReplacements, reports it unhealthy, and /healthz flips to 503', async () => {
    const { pool, made } = crashLooping();
    const o = await started({
      pools: [pool],
      health: { recovery: { maxReplacements: 2, windowMs: 60_000 } },
      scaleIntervalMs: 10,
    });
    const replaced = record(o, 'agent:replaced');
    const unhealthy = record(o, 'agent:unhealthy');
    const exhausted = record(o, 'pool:recovery-exhausted');
    const http = await serve(o);
    try {
      const before = await http.get('/healthz');
      expect(before.status).toBe(200);
      expect(JSON.parse(before.body)).toMatchObject({ status: 'healthy' });
      expect((await http.get('/readyz')).status).toBe(200);

      // Two replacements are within budget.
      for (let n = 1; n <= 2; n++) {
        await o.checkHealth();
        expect(replaced).toHaveLength(n);
        await until(() => made.length === n + 1 && o.health().components.pools['w']!.routable === 1);
      }
      expect(exhausted).toEqual([]);
      expect(o.health().components.pools['w']).toMatchObject({ status: 'healthy', recoveries: 2, suspendedForMs: 0 });

      // The third failure finds the budget spent.
      await o.checkHealth();
      expect(exhausted).toHaveLength(1);
      expect(exhausted[0]).toMatchObject({ role: 'w', replacements: 2, windowMs: 60_000 });
      expect(exhausted[0]!.resumeInMs).toBeGreaterThan(0);
      expect(exhausted[0]!.resumeInMs).toBeLessThanOrEqual(60_000);
      expect(replaced).toHaveLength(2);
      expect(unhealthy).toHaveLength(3);
      const last = made[2]!.id;
      expect(o.agent(last)).toMatchObject({ state: 'UNHEALTHY' });

      // More passes and scale ticks: no more creations, no more events.
      for (let i = 0; i < 4; i++) {
        await o.checkHealth();
        await wait(15);
      }
      expect(made).toHaveLength(3);
      expect(exhausted).toHaveLength(1);
      expect(replaced).toHaveLength(2);
      expect(unhealthy).toHaveLength(3);

      const report = o.health();
      expect(report.status).toBe('unhealthy');
      expect(report.components.pools['w']).toMatchObject({
        status: 'unhealthy',
        minAgents: 1,
        routable: 0,
        quarantined: 1,
        recoveries: 2,
      });
      expect(report.components.pools['w']!.suspendedForMs).toBeGreaterThan(0);

      const after = await http.get('/healthz');
      expect(after.status).toBe(503);
      expect(JSON.parse(after.body)).toMatchObject({
        status: 'unhealthy',
        components: { pools: { w: { status: 'unhealthy' } } },
      });
      expect((await http.get('/readyz')).status).toBe(503);
    } finally {
      await http.close();
    }
  });

  it('counts failed creations too: a factory that fails after its first agent is stopped', async () => {
    let calls = 0;
    const pool: PoolOptions = {
      role: 'w',
      capabilities: ['x'],
      minAgents: 1,
      warmSpares: 0,
      createAttempts: 1,
      create: () => {
        calls++;
        if (calls > 1) throw new Error('factory down');
        let checks = 0;
        return { execute: () => 'ok', healthCheck: () => ++checks === 1 };
      },
    };
    const o = await started({
      pools: [pool],
      health: { recovery: { maxReplacements: 2, windowMs: 60_000 } },
      scaleIntervalMs: 10,
    });
    const exhausted = record(o, 'pool:recovery-exhausted');
    const createFailed = record(o, 'pool:create-failed');
    await o.checkHealth(); // replaced (1 of 2); its replacement fails (2 of 2); the next try finds the budget spent
    await until(() => exhausted.length === 1);
    expect(exhausted[0]).toMatchObject({ role: 'w', replacements: 2, windowMs: 60_000 });
    expect(exhausted[0]!.resumeInMs).toBeGreaterThan(0);
    const seen = calls;
    expect(seen).toBeLessThanOrEqual(3);
    await wait(80); // several scale ticks
    for (let i = 0; i < 3; i++) await o.checkHealth();
    expect(calls).toBe(seen);
    expect(createFailed.length).toBe(seen - 1);
    expect(exhausted).toHaveLength(1);
    expect(o.health()).toMatchObject({
      status: 'unhealthy',
      components: { pools: { w: { status: 'unhealthy', routable: 0 } } },
    });
  });

  it('resumes replacing once the window moves on (injected clock)', async () => {
    let offset = 0;
    const clock = { now: () => performance.now() + offset };
    const { pool, made } = crashLooping();
    const o = await started({
      pools: [pool],
      clock,
      agentBreaker: false,
      health: { recovery: { maxReplacements: 2, windowMs: 60_000 } },
    });
    const replaced = record(o, 'agent:replaced');
    const exhausted = record(o, 'pool:recovery-exhausted');
    for (let n = 1; n <= 2; n++) {
      await o.checkHealth();
      await until(() => made.length === n + 1 && o.health().components.pools['w']!.routable === 1);
    }
    await o.checkHealth();
    expect(exhausted).toHaveLength(1);
    expect(o.health().status).toBe('unhealthy');

    // Not yet: half the window later it still makes nothing.
    offset += 30_000;
    await o.checkHealth();
    await wait(10);
    expect(made).toHaveLength(3);
    expect(o.health().components.pools['w']!.suspendedForMs).toBeGreaterThan(0);

    // The window moved on: the quarantined agent is replaced and the pool is back to size.
    offset += 30_001;
    await o.checkHealth();
    expect(replaced).toHaveLength(3);
    await until(() => made.length === 4 && o.health().components.pools['w']!.routable === 1);
    expect(o.health().components.pools['w']).toMatchObject({ routable: 1, quarantined: 0, suspendedForMs: 0 });
    expect(o.health().status).toBe('healthy');
    await expect(o.submit({ type: 't', requires: ['x'], payload: 'p' })).resolves.toBe(`${made[3]!.id}:p`);

    // A fresh budget: one more replacement fits (the one above was the first), then it stops again, and says so.
    await o.checkHealth();
    expect(replaced).toHaveLength(4);
    await until(() => made.length === 5 && o.health().components.pools['w']!.routable === 1);
    await o.checkHealth();
    expect(exhausted).toHaveLength(2);
    expect(exhausted[1]).toMatchObject({ role: 'w', replacements: 2, windowMs: 60_000 });
    await o.checkHealth();
    await wait(10);
    expect(made).toHaveLength(5);
    expect(o.health().status).toBe('unhealthy');
  });
});

// --- SLA ------------------------------------------------------------------------------------------------

describe('SLA windows', () => {
  const sla = { minSamples: 5, types: { slow: { p95Ms: 20 } }, default: { errorRate: 0.2 } };

  /** An outside agent (concurrency 20) that takes `payload` ms (a number), fails on `'fail'`, or waits on `'manual'`. */
  function worker(o: UnifiedOrchestrator, calls: Call[] = []): void {
    const manual = manualAgent(calls);
    o.registerAgent(
      {
        execute: async (ctx) => {
          if (ctx.payload === 'fail') throw new Error('nope');
          if (ctx.payload === 'manual') return manual.execute(ctx);
          if (typeof ctx.payload === 'number') await wait(ctx.payload);
          return 'ok';
        },
      },
      { id: 'worker', capabilities: ['x'], concurrency: 20 },
    );
  }

  const run = (o: UnifiedOrchestrator, type: string, payloads: readonly unknown[]): Promise<unknown[]> =>
    Promise.all(payloads.map((payload) => o.submit({ type, requires: ['x'], payload }).catch((e: unknown) => e)));

  it('reports a p95 violation once, in the event and in health()', async () => {
    const o = await started({ agentBreaker: false, health: { sla } });
    const violations = record(o, 'sla:violation');
    worker(o);
    await run(o, 'slow', [40, 40, 40, 40, 40]);
    await o.checkHealth();
    expect(violations).toHaveLength(1);
    const v = violations[0]!;
    expect(v).toMatchObject({
      type: 'slow',
      metric: 'p95',
      threshold: 20,
      count: 5,
      errors: 0,
      errorRate: 0,
      windowMs: 60_000,
    });
    expect(v.value).toBeGreaterThan(20);
    expect(v.value).toBeGreaterThanOrEqual(40 / 1.1);
    expect(v.p95Ms).toBe(v.value);

    const report = o.health();
    expect(report.status).toBe('degraded');
    expect(report.components.sla.status).toBe('degraded');
    expect(report.components.sla.breaches).toEqual([{ type: 'slow', metric: 'p95', value: v.value, threshold: 20 }]);
    expect(report.components.sla.breaches[0]).not.toHaveProperty('figures');

    // Still over: no second event.
    await o.checkHealth();
    expect(violations).toHaveLength(1);
  });

  it('recovers when the slow tasks leave a short window and fast ones follow', async () => {
    const o = await started({ agentBreaker: false, health: { sla: { ...sla, windowMs: 300 } } });
    const violations = record(o, 'sla:violation');
    const recoveries = record(o, 'sla:recovered');
    worker(o);
    await run(o, 'slow', [40, 40, 40, 40, 40]);
    await o.checkHealth();
    expect(violations.map((v) => [v.type, v.metric])).toEqual([['slow', 'p95']]);
    expect(recoveries).toEqual([]);

    await wait(330);
    await run(o, 'slow', [0, 0, 0, 0, 0, 0]);
    await o.checkHealth();
    expect(recoveries).toHaveLength(1);
    expect(recoveries[0]).toMatchObject({ type: 'slow', metric: 'p95', threshold: 20, count: 6, windowMs: 300 });
    expect(recoveries[0]!.value).toBeLessThanOrEqual(20);
    expect(o.health().components.sla).toEqual({ status: 'healthy', breaches: [] });
    expect(o.health().status).toBe('healthy');
  });

  it('recovers when an injected clock moves the window on', async () => {
    let offset = 0;
    const o = await started({ agentBreaker: false, clock: { now: () => performance.now() + offset }, health: { sla } });
    const violations = record(o, 'sla:violation');
    const recoveries = record(o, 'sla:recovered');
    worker(o);
    await run(o, 'slow', [40, 40, 40, 40, 40]);
    await o.checkHealth();
    expect(violations).toHaveLength(1);
    offset += 30_000; // half a window: still in it
    await o.checkHealth();
    expect(recoveries).toEqual([]);
    offset += 30_000;
    await o.checkHealth();
    // Nothing left in the window: too few samples to judge, so no longer breached.
    expect(recoveries).toHaveLength(1);
    expect(recoveries[0]).toMatchObject({ type: 'slow', metric: 'p95', count: 0 });
    expect(o.health().components.sla.breaches).toEqual([]);
  });

  it('reports an error-rate violation from the default thresholds; time-outs count as errors', async () => {
    const o = await started({ agentBreaker: false, health: { sla } });
    const violations = record(o, 'sla:violation');
    worker(o);
    await run(o, 'flaky', [0, 0, 0, 'fail']);
    await expect(o.submit({ type: 'flaky', requires: ['x'], payload: 200, timeoutMs: 10 })).rejects.toBeInstanceOf(
      TaskTimeoutError,
    );
    await o.checkHealth();
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatchObject({ type: 'flaky', metric: 'errorRate', count: 5, errors: 2, threshold: 0.2 });
    expect(violations[0]!.value).toBeCloseTo(0.4);
    expect(violations[0]!.errorRate).toBeCloseTo(0.4);
    expect(o.health().components.sla.breaches).toEqual([
      { type: 'flaky', metric: 'errorRate', value: violations[0]!.value, threshold: 0.2 },
    ]);
  });

  it('leaves cancelled tasks out of the figures', async () => {
    const o = await started({ agentBreaker: false, health: { sla } });
    const violations = record(o, 'sla:violation');
    const calls: Call[] = [];
    worker(o, calls);
    await run(o, 'c', [0, 0, 0, 0, 0]);
    const handles = [1, 2, 3, 4, 5].map(() => o.delegate({ type: 'c', requires: ['x'], payload: 'manual' }));
    await until(() => calls.length === 5);
    for (const h of handles) h.cancel('changed my mind');
    await Promise.all(handles.map((h) => h.result.catch(() => {})));
    await o.checkHealth();
    // 5 completed, 5 cancelled: counted as errors that would be a 50% error rate.
    expect(violations).toEqual([]);

    // Whereas one real failure in six is judged (and is within 0.2) and two in seven are over.
    await run(o, 'c', ['fail']);
    await o.checkHealth();
    expect(violations).toEqual([]);
    await run(o, 'c', ['fail']);
    await o.checkHealth();
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatchObject({ type: 'c', metric: 'errorRate', count: 7, errors: 2 });
  });

  it('does not judge a type with fewer than minSamples tasks in the window', async () => {
    const o = await started({ agentBreaker: false, health: { sla } });
    const violations = record(o, 'sla:violation');
    worker(o);
    await run(o, 'slow', [40, 40, 40, 40]);
    await run(o, 'bad', ['fail', 'fail', 'fail', 'fail']);
    await o.checkHealth();
    expect(violations).toEqual([]);
    expect(o.health().components.sla.status).toBe('healthy');
    // The fifth sample makes it judged.
    await run(o, 'slow', [40]);
    await run(o, 'bad', ['fail']);
    await o.checkHealth();
    expect(violations.map((v) => `${v.type}/${v.metric}`).sort()).toEqual(['bad/errorRate', 'slow/p95']);
  });

  it('judges nothing without thresholds', async () => {
    const o = await started({ agentBreaker: false, health: { sla: { minSamples: 1 } } });
    const violations = record(o, 'sla:violation');
    worker(o);
    await run(o, 'slow', [30, 'fail', 'fail']);
    await o.checkHealth();
    expect(violations).toEqual([]);
    expect(o.health().components.sla).toEqual({ status: 'healthy', breaches: [] });
  });
});

// --- health() ----------------------------------------------------------------------------------------------

describe('health() report', () => {
  const COMPONENTS = ['orchestrator', 'pools', 'queue', 'breakers', 'pressure', 'sla', 'bridge'];

  it('is degraded before start, healthy while running with nothing wrong, unhealthy after stop', async () => {
    const { pool } = trackedPool('w', { minAgents: 2 });
    const o = make({ pools: [pool] });
    const created = o.health();
    expect(Object.keys(created.components).sort()).toEqual([...COMPONENTS].sort());
    expect(created.status).toBe('degraded');
    expect(created.components.orchestrator).toEqual({ status: 'degraded', state: 'created', halted: null });
    expect(created.components.pools['w']).toMatchObject({ status: 'degraded', routable: 0 });

    await o.start();
    const running = o.health();
    expect(running).toEqual({
      status: 'healthy',
      components: {
        orchestrator: { status: 'healthy', state: 'running', halted: null },
        pools: {
          w: { status: 'healthy', minAgents: 2, routable: 2, quarantined: 0, recoveries: 0, suspendedForMs: 0 },
        },
        queue: { status: 'healthy', waiting: 0, maxQueueSize: 100_000 },
        breakers: { status: 'healthy', agentsOpen: 0, dependenciesOpen: [] },
        pressure: { status: 'healthy', level: 'normal' },
        sla: { status: 'healthy', breaches: [] },
        bridge: { status: 'healthy', kind: 'memory', detail: expect.stringMatching(/^in memory as node-/) },
      },
    });

    await o.stop();
    const stopped = o.health();
    expect(stopped.status).toBe('unhealthy');
    expect(stopped.components.orchestrator).toEqual({ status: 'unhealthy', state: 'stopped', halted: null });
  });

  it('serves /healthz 200 with the report while degraded, and /readyz 503 before start', async () => {
    const o = make();
    const http = await serve(o);
    try {
      const healthz = await http.get('/healthz');
      expect(healthz.status).toBe(200);
      expect(JSON.parse(healthz.body)).toMatchObject({
        status: 'degraded',
        components: { orchestrator: { state: 'created' } },
      });
      expect((await http.get('/readyz')).status).toBe(503);
      await o.start();
      expect((await http.get('/readyz')).status).toBe(200);
      await o.stop();
      expect((await http.get('/healthz')).status).toBe(503);
    } finally {
      await http.close();
    }
  });

  it('reports the queue degraded from 80% of maxQueueSize', async () => {
    const o = await started({ maxQueueSize: 5 });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['x'] });
    const results = [0, 1, 2, 3].map((payload) => o.submit({ type: 't', requires: ['x'], payload }));
    await until(() => calls.length === 1);
    expect(o.health().components.queue).toEqual({ status: 'healthy', waiting: 3, maxQueueSize: 5 });
    expect(o.health().status).toBe('healthy');
    results.push(o.submit({ type: 't', requires: ['x'], payload: 4 }));
    expect(o.health().components.queue).toEqual({ status: 'degraded', waiting: 4, maxQueueSize: 5 });
    expect(o.health().status).toBe('degraded');
    for (let i = 0; i < 5; i++) {
      await until(() => calls.length === i + 1);
      calls[i]!.resolve(i);
    }
    await expect(Promise.all(results)).resolves.toEqual([0, 1, 2, 3, 4]);
    expect(o.health().components.queue.status).toBe('healthy');
  });

  it('reports breakers degraded while an agent breaker or a dependency breaker is open', async () => {
    const o = await started({
      agentBreaker: { errorThresholdPercentage: 50, volumeThreshold: 1, windowMs: 10_000, resetTimeoutMs: 60_000 },
    });
    o.registerAgent({ execute: () => Promise.reject(new Error('boom')) }, { id: 'a', capabilities: ['x'] });
    expect(o.health().components.breakers.status).toBe('healthy');
    await expect(o.submit({ type: 't', requires: ['x'] })).rejects.toThrow('boom');
    await until(() => o.agent('a')?.breaker === 'open');
    expect(o.health().components.breakers).toEqual({ status: 'degraded', agentsOpen: 1, dependenciesOpen: [] });
    expect(o.health().status).toBe('degraded');
    await o.unregisterAgent('a');
    expect(o.health().components.breakers).toEqual({ status: 'healthy', agentsOpen: 0, dependenciesOpen: [] });

    const db = o.resources.breaker('db', () => Promise.reject(new Error('down')), {
      errorThresholdPercentage: 50,
      volumeThreshold: 1,
      resetTimeoutMs: 60_000,
    });
    for (let i = 0; i < 5 && db.state !== 'open'; i++) await db().catch(() => {});
    expect(db.state).toBe('open');
    expect(o.health().components.breakers).toEqual({ status: 'degraded', agentsOpen: 0, dependenciesOpen: ['db'] });
  });

  it('reports a pool degraded while a member is quarantined but enough are routable, unhealthy when too few are', async () => {
    const { pool, made } = trackedPool('w', { minAgents: 1 });
    // No budget: a failing agent stays, quarantined.
    const o = await started({ pools: [pool], health: { recovery: { maxReplacements: 0, windowMs: 60_000 } } });
    const recovered = record(o, 'agent:recovered');
    const spawned = await o.spawnAgent('w');
    expect(made.map((m) => m.id)).toContain(spawned);
    const first = made.find((m) => m.id !== spawned)!;
    first.health = 'false';
    await o.checkHealth();
    expect(o.health().components.pools['w']).toMatchObject({ status: 'degraded', routable: 1, quarantined: 1 });
    expect(o.health().status).toBe('degraded');

    made.find((m) => m.id === spawned)!.health = 'false';
    await o.checkHealth();
    expect(o.health().components.pools['w']).toMatchObject({ status: 'unhealthy', routable: 0, quarantined: 2 });
    expect(o.health().status).toBe('unhealthy');

    // Both pass again: back in routing (a pool agent left in place recovers like an outside one).
    for (const m of made) m.health = 'ok';
    await o.checkHealth();
    expect(recovered.map((r) => r.agentId).sort()).toEqual([first.id, spawned].sort());
    expect(o.health().components.pools['w']).toMatchObject({ status: 'healthy', routable: 2, quarantined: 0 });
  });
});
