import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  AgentCreationError,
  IllegalStateTransitionError,
  PoolAtCapacityError,
  UnifiedOrchestrator,
  UnknownRoleError,
  type Agent,
  type OrchestratorEvents,
  type PoolOptions,
} from 'unified-orchestrator';
import { AgentRecord } from '../../src/pool/agent-record.js';
import { recordingAgent, until, wait } from '../support/agents.js';

const running: UnifiedOrchestrator[] = [];
function make(...pools: PoolOptions[]): UnifiedOrchestrator {
  const o = new UnifiedOrchestrator({ pools, retry: { baseDelayMs: 1, maxDelayMs: 5 } });
  running.push(o);
  return o;
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((o) => o.stop({ drain: false })));
});

function pool(role: string, extra: Partial<PoolOptions> = {}): PoolOptions {
  return { role, capabilities: [role], create: () => recordingAgent(), ...extra };
}

describe('AgentPoolManager', () => {
  it('pre-warms every pool to its minimum, plus a warm spare, at start', async () => {
    const o = make(pool('a'), pool('b', { minAgents: 2, warmSpares: 2 }));
    await o.start();
    const [a, b] = o.stats().pools;
    expect(a).toMatchObject({ role: 'a', members: 5, available: 5, spares: 1 });
    expect(b).toMatchObject({ role: 'b', members: 2, available: 2, spares: 2 });
    expect(o.stats().agents.IDLE).toBe(5 + 1 + 2 + 2);
  });

  it('defaults minAgents to 5 and maxAgents to 75, and lowers the default minimum to a smaller maximum', async () => {
    const o = make(pool('a'), pool('b', { maxAgents: 3, warmSpares: 0 }));
    await o.start();
    const [a, b] = o.stats().pools;
    expect(a).toMatchObject({ minAgents: 5, maxAgents: 75 });
    expect(b).toMatchObject({ minAgents: 3, maxAgents: 3, members: 3 });
  });

  it('spawnAgent hands back a ready agent at once and refills the spare in the background', async () => {
    let created = 0;
    const o = make(pool('a', { minAgents: 1, create: () => (created++, recordingAgent()) }));
    await o.start();
    expect(created).toBe(2); // one member, one spare
    const id = await o.spawnAgent('a');
    expect(o.agent(id)).toMatchObject({ state: 'IDLE', role: 'a' });
    // The spare became a member; a new spare is being made.
    expect(o.stats().pools[0]).toMatchObject({ members: 2 });
    await until(() => o.stats().pools[0]!.spares === 1);
    expect(created).toBe(3);
    // The spawned agent takes work.
    await expect(o.submit({ type: 't', requires: ['a'], payload: 1 })).resolves.toMatch(/^a-\d+:1$/);
  });

  it('spawnAgent rejects an unknown role and a pool at its maximum with typed errors', async () => {
    const o = make(pool('a', { minAgents: 1, maxAgents: 1, warmSpares: 0 }));
    await o.start();
    await expect(o.spawnAgent('nope')).rejects.toBeInstanceOf(UnknownRoleError);
    await expect(o.spawnAgent('a')).rejects.toBeInstanceOf(PoolAtCapacityError);
  });

  it('retries a failing factory with backoff and reports each failure', async () => {
    let calls = 0;
    const failures: OrchestratorEvents['pool:create-failed'][] = [];
    const o = make(
      pool('a', {
        minAgents: 1,
        warmSpares: 0,
        create: () => {
          calls++;
          if (calls < 3) throw new Error(`boom ${calls}`);
          return recordingAgent();
        },
      }),
    );
    o.on('pool:create-failed', (e) => failures.push(e));
    await o.start();
    expect(calls).toBe(3);
    expect(failures.map((f) => [f.attempt, f.willRetry])).toEqual([
      [1, true],
      [2, true],
    ]);
    expect(o.stats().pools[0]).toMatchObject({ members: 1 });
  });

  it('start rejects with AgentCreationError when a pool cannot reach its minimum, and leaves nothing running', async () => {
    const disposed: string[] = [];
    let n = 0;
    const o = make(
      pool('a', {
        minAgents: 2,
        warmSpares: 0,
        createAttempts: 2,
        create: ({ agentId }) => {
          if (++n > 1) throw new Error('factory down');
          return { execute: () => 1, dispose: () => void disposed.push(agentId) };
        },
      }),
    );
    const err = await o.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentCreationError);
    expect(err).toMatchObject({ code: 'AGENT_CREATION_FAILED', role: 'a', attempts: 2 });
    expect(o.state).toBe('stopped');
    expect(disposed).toEqual(['a-1']); // the agent that was made is disposed, not leaked
    expect(o.stats().agents.IDLE).toBe(0);
  });

  it('counts a factory that hangs past createTimeoutMs as failed, and disposes the agent if it arrives late', async () => {
    let calls = 0;
    const lateDisposed = vi.fn();
    const o = make(
      pool('a', {
        minAgents: 1,
        warmSpares: 0,
        createTimeoutMs: 20,
        create: async () => {
          calls++;
          if (calls === 1) {
            await wait(60);
            return { execute: () => 'late', dispose: lateDisposed };
          }
          return recordingAgent();
        },
      }),
    );
    const failures: unknown[] = [];
    o.on('pool:create-failed', (e) => failures.push(e.error));
    await o.start();
    expect(failures).toHaveLength(1);
    expect(String(failures[0])).toMatch(/did not settle within 20 ms/);
    await until(() => lateDisposed.mock.calls.length === 1);
  });

  it('rejects a factory result without execute(), and never makes it routable', async () => {
    const o = make(pool('a', { minAgents: 1, warmSpares: 0, createAttempts: 1, create: () => ({}) as Agent }));
    await expect(o.start()).rejects.toMatchObject({ code: 'AGENT_CREATION_FAILED' });
  });

  it('an agent whose initial health check fails is never routable', async () => {
    let n = 0;
    const o = make(
      pool('a', {
        minAgents: 1,
        warmSpares: 0,
        create: () => ({ execute: () => 'ok', healthCheck: () => ++n > 1 }),
      }),
    );
    const states: string[] = [];
    o.on('agent:state', (e) => states.push(`${e.agentId}:${e.from ?? '-'}>${e.to}`));
    await o.start();
    expect(states).toContain('a-1:INITIALIZING>FAILED');
    expect(states).toContain('a-1:FAILED>TERMINATED');
    expect(states).not.toContain('a-1:INITIALIZING>IDLE');
    expect(o.agents().map((a) => a.state)).toEqual(['IDLE']);
  });

  it('scales up from waiting work (spare first) and back down to the minimum after the idle timeout', async () => {
    const o = new UnifiedOrchestrator({
      pools: [pool('a', { minAgents: 1, maxAgents: 4, idleTimeoutMs: 30, create: () => recordingAgent(20) })],
      scaleIntervalMs: 10,
    });
    running.push(o);
    await o.start();
    const scaled: OrchestratorEvents['pool:scaled'][] = [];
    o.on('pool:scaled', (e) => scaled.push(e));
    await Promise.all(Array.from({ length: 8 }, (_, i) => o.submit({ type: 't', requires: ['a'], payload: i })));
    expect(scaled.filter((e) => e.reason === 'demand').length).toBeGreaterThan(0);
    expect(Math.max(...scaled.map((e) => e.members))).toBeGreaterThan(1);
    expect(o.stats().pools[0]!.members + o.stats().pools[0]!.spares).toBeLessThanOrEqual(4);
    await until(() => o.stats().pools[0]!.members === 1, 3_000);
    expect(scaled.some((e) => e.reason === 'idle')).toBe(true);
  });

  it('keeps an agent handed out by spawnAgent when it idles above the minimum', async () => {
    const o = new UnifiedOrchestrator({
      pools: [pool('a', { minAgents: 1, idleTimeoutMs: 10 })],
      scaleIntervalMs: 5,
    });
    running.push(o);
    await o.start();
    const id = await o.spawnAgent('a');
    await wait(60);
    expect(o.agent(id)?.state).toBe('IDLE');
  });

  it('registerAgent makes an outside agent routable at once; unregisterAgent drains it first', async () => {
    const o = make();
    await o.start();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const disposed = vi.fn();
    const id = o.registerAgent(
      { execute: async () => (await gate, 'done'), dispose: disposed },
      { capabilities: ['x'], id: 'ext-1' },
    );
    expect(id).toBe('ext-1');
    const result = o.submit({ type: 't', requires: ['x'] });
    await until(() => o.agent('ext-1')?.state === 'BUSY');
    const gone = o.unregisterAgent('ext-1');
    await wait(5);
    expect(o.agent('ext-1')?.state).toBe('DRAINING');
    expect(disposed).not.toHaveBeenCalled();
    release();
    await expect(result).resolves.toBe('done');
    await gone;
    expect(disposed).toHaveBeenCalledTimes(1);
    expect(o.agent('ext-1')).toBeUndefined();
  });

  it('refills a pool to its minimum when a member is unregistered', async () => {
    const o = make(pool('a', { minAgents: 2, warmSpares: 0 }));
    await o.start();
    const [first] = o.agents();
    await o.unregisterAgent(first!.id);
    await until(() => o.stats().pools[0]!.members === 2);
    expect(o.agent(first!.id)).toBeUndefined();
  });

  it('a terminated agent record refuses to come back', () => {
    const record = new AgentRecord({
      id: 'r-1',
      role: undefined,
      agent: recordingAgent(),
      capabilities: [],
      concurrency: 1,
      now: 0,
      hooks: { onTransition: () => {}, onDrained: () => {} },
    });
    record.transition('IDLE');
    record.transition('DRAINING');
    record.transition('TERMINATED');
    expect(() => record.transition('IDLE')).toThrow(IllegalStateTransitionError);
    expect(record.state).toBe('TERMINATED');
  });
});

describe('spare accounting', () => {
  it('starts a refill for a spawn made the moment the previous spare was placed', async () => {
    const o = new UnifiedOrchestrator({ pools: [pool('a', { minAgents: 1, maxAgents: 50 })], scaleIntervalMs: 60_000 });
    running.push(o);
    await o.start();
    let armed = false;
    let second: Promise<string> | undefined;
    o.on('agent:state', (e) => {
      // The refilled spare has just been placed (it turns IDLE): spawn it at once, inside that window.
      if (armed && e.from === 'INITIALIZING' && e.to === 'IDLE') {
        armed = false;
        second = o.spawnAgent('a');
      }
    });
    armed = true;
    await o.spawnAgent('a');
    await until(() => second !== undefined);
    await second;
    // That spawn must have started a refill right away, not left the pool without a spare until the scale
    // tick (a minute away here).
    const p = o.stats().pools[0]!;
    expect(p.spares + p.creating).toBe(1);
    await until(() => o.stats().pools[0]!.spares === 1);
    expect(o.stats().pools[0]).toMatchObject({ members: 3, spares: 1, creating: 0 });
  });
});

describe('creation races', () => {
  const slowCheck = (ms: number) => () => new Promise<boolean>((r) => setTimeout(() => r(true), ms));

  it('unregistering an agent while it initialises withdraws it: disposed once, never routable, stop unaffected', async () => {
    const disposed: string[] = [];
    const o = new UnifiedOrchestrator({
      pools: [
        pool('a', {
          minAgents: 0,
          maxAgents: 2,
          warmSpares: 0,
          create: ({ agentId }) => ({
            execute: () => 'ran',
            healthCheck: slowCheck(20),
            dispose: () => new Promise<void>((r) => setTimeout(() => (disposed.push(agentId), r()), 40)),
          }),
        }),
      ],
    });
    running.push(o);
    await o.start();
    let unregistered: Promise<void> | undefined;
    o.on('agent:state', (e) => {
      if (e.from === undefined) unregistered = o.unregisterAgent(e.agentId);
    });
    const err = await o.spawnAgent('a').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'AGENT_NOT_FOUND', agentId: 'a-1' });
    await unregistered;
    expect(disposed).toEqual(['a-1']);
    expect(o.agents()).toEqual([]);
    expect(o.stats().pools[0]).toMatchObject({ members: 0, spares: 0, creating: 0 });
    await o.stop();
    expect(o.state).toBe('stopped');
    expect(disposed).toEqual(['a-1']);
  });

  it('stop during start disposes each made agent once and does not wait for a hung health check', async () => {
    let disposes = 0;
    const o = new UnifiedOrchestrator({
      pools: [
        pool('a', {
          minAgents: 2,
          warmSpares: 0,
          createTimeoutMs: 60_000,
          create: () => ({
            execute: () => 1,
            healthCheck: () => new Promise<boolean>(() => {}),
            dispose: () => void disposes++,
          }),
        }),
      ],
    });
    const starting = o.start().catch((e: unknown) => e);
    await until(() => o.agents().length === 2); // both made, both stuck in their health check
    const t0 = Date.now();
    await o.stop();
    expect(Date.now() - t0).toBeLessThan(5_000); // not the 60 s health-check timeout
    await expect(starting).resolves.toMatchObject({ code: 'ORCHESTRATOR_STOPPED' });
    expect(disposes).toBe(2);
    expect(o.agents()).toEqual([]);
  });

  it('a pool never reuses an id taken by registerAgent', async () => {
    const o = make(pool('a', { minAgents: 0, warmSpares: 0 }));
    await o.start();
    o.registerAgent(recordingAgent(), { capabilities: ['outside'], id: 'a-1' });
    const id = await o.spawnAgent('a');
    expect(id).not.toBe('a-1');
    expect(
      o
        .agents()
        .map((a) => a.id)
        .sort(),
    ).toEqual(['a-1', id].sort());
    expect(o.agent('a-1')?.capabilities).toEqual(['outside']);
  });
});

describe('demand after a failed creation', () => {
  it('asks again on the scale tick, so a waiting task is not stranded by one failed factory call', async () => {
    let calls = 0;
    const o = new UnifiedOrchestrator({
      pools: [
        pool('a', {
          minAgents: 0,
          warmSpares: 0,
          createAttempts: 1,
          create: () => {
            if (++calls === 1) throw new Error('transient');
            return recordingAgent();
          },
        }),
      ],
      scaleIntervalMs: 10,
    });
    running.push(o);
    await o.start();
    const result = o.submit({ type: 't', requires: ['a'], payload: 'p' });
    await expect(result).resolves.toMatch(/^a-\d+:p$/);
    expect(calls).toBe(2);
  });
});
