import { afterEach, describe, expect, it } from 'vitest';
import { NoCapableAgentError, UnifiedOrchestrator, type OrchestratorOptions } from 'unified-orchestrator';
import { echoAgent, manualAgent, recordEvents, type Call } from './helpers.js';

let orchestrator: UnifiedOrchestrator | undefined;

afterEach(async () => {
  await orchestrator?.stop({ drain: false, timeoutMs: 1_000 });
  orchestrator = undefined;
});

/** A frozen clock: every attempt lasts 0 ms, so latency never separates otherwise equal agents. */
const frozen = { now: () => 0 };

async function start(options: OrchestratorOptions = {}): Promise<UnifiedOrchestrator> {
  orchestrator = new UnifiedOrchestrator(options);
  await orchestrator.start();
  return orchestrator;
}

/** Runs tasks one after another and returns the agent that ran each (echo agents answer `${agentId}:…`). */
async function sequential(
  o: UnifiedOrchestrator,
  n: number,
  task: Parameters<UnifiedOrchestrator['submit']>[0],
): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const result = await o.submit<string>({ ...task, payload: i });
    out.push(result.split(':')[0]!);
  }
  return out;
}

describe('capability filter', () => {
  it('sends a task only to agents holding every required capability', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'x-only', capabilities: ['x'] });
    o.registerAgent(echoAgent(), { id: 'y-only', capabilities: ['y'] });
    o.registerAgent(echoAgent(), { id: 'xy', capabilities: ['x', 'y'] });
    o.registerAgent(echoAgent(), { id: 'xyz', capabilities: ['x', 'y', 'z'] });
    const log = recordEvents(o);
    const byTask = new Map<string, readonly string[]>();
    const handles = [];
    for (let i = 0; i < 40; i++) {
      const requires = [['x'], ['y'], ['x', 'y'], ['z', 'x'], []][i % 5]!;
      const h = o.delegate({ type: 't', requires });
      byTask.set(h.id, requires);
      handles.push(h.result);
    }
    await Promise.all(handles);
    const caps: Record<string, readonly string[]> = {
      'x-only': ['x'],
      'y-only': ['y'],
      xy: ['x', 'y'],
      xyz: ['x', 'y', 'z'],
    };
    expect(log.started).toHaveLength(40);
    for (const s of log.started) {
      const requires = byTask.get(s.taskId)!;
      for (const c of requires)
        expect(caps[s.agentId], `${s.agentId} ran a task needing [${requires.join(',')}]`).toContain(c);
    }
    // The [x, z] tasks could only go to xyz, and they did not wait for the other agents either.
    const xz = log.started.filter((s) => byTask.get(s.taskId)!.includes('z'));
    expect(new Set(xz.map((s) => s.agentId))).toEqual(new Set(['xyz']));
  });

  it('queues a task for its capable agent rather than run it on a free agent that lacks a capability', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'xy', capabilities: ['x', 'y'] });
    o.registerAgent(echoAgent(), { id: 'x', capabilities: ['x'] });
    const first = o.delegate({ type: 't', requires: ['x', 'y'] });
    const second = o.delegate({ type: 't', requires: ['y', 'x'] });
    expect(calls).toHaveLength(1);
    expect(o.stats().waiting).toBe(1);
    expect(o.agent('x')!.completed).toBe(0);
    calls[0]!.resolve('one');
    await first.result;
    await Promise.resolve();
    expect(calls).toHaveLength(2);
    expect(calls[1]!.ctx.taskId).toBe(second.id);
    calls[1]!.resolve('two');
    await expect(second.result).resolves.toBe('two');
  });

  it('rejects at once with NoCapableAgentError naming the requirements when nobody holds them', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'a', capabilities: ['x', 'y'] });
    let thrown: unknown;
    try {
      o.delegate({ type: 't', requires: ['x', 'gpu'] });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(NoCapableAgentError);
    expect((thrown as NoCapableAgentError).code).toBe('NO_CAPABLE_AGENT');
    expect((thrown as NoCapableAgentError).requires).toEqual(['x', 'gpu']);
    await expect(o.submit({ type: 't', requires: ['gpu'] })).rejects.toBeInstanceOf(NoCapableAgentError);
    const s = o.stats();
    expect(s.rejected).toBe(2);
    expect(s.waiting).toBe(0);
    expect(s.submitted).toBe(2);
  });
});

describe('scoring', () => {
  it('prefers an agent holding a preferred capability over a generalist', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'generalist', capabilities: ['x', 'a', 'b', 'c'] });
    o.registerAgent(echoAgent(), { id: 'preferred', capabilities: ['x', 'p'] });
    expect(await sequential(o, 6, { type: 't', requires: ['x'], prefers: ['p'] })).toEqual(Array(6).fill('preferred'));
  });

  it('lets preferred-capability fit outweigh specialisation', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'specialist', capabilities: ['x'] });
    o.registerAgent(echoAgent(), { id: 'preferred-generalist', capabilities: ['x', 'p', 'a', 'b', 'c'] });
    expect(await sequential(o, 6, { type: 't', requires: ['x'], prefers: ['p'] })).toEqual(
      Array(6).fill('preferred-generalist'),
    );
  });

  it('sends work to the specialist and keeps the generalist free', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'generalist', capabilities: ['x', 'y', 'z'] });
    o.registerAgent(echoAgent(), { id: 'specialist', capabilities: ['x'] });
    expect(await sequential(o, 8, { type: 't', requires: ['x'] })).toEqual(Array(8).fill('specialist'));
  });

  it('falls back to the generalist while the specialist is busy', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'specialist', capabilities: ['x'] });
    o.registerAgent(manualAgent(calls), { id: 'generalist', capabilities: ['x', 'y', 'z'] });
    o.delegate({ type: 't', requires: ['x'] });
    o.delegate({ type: 't', requires: ['x'] });
    expect(calls.map((c) => c.agentId)).toEqual(['specialist', 'generalist']);
  });

  it('breaks ties round-robin', async () => {
    const o = await start({ clock: frozen });
    for (const id of ['a', 'b', 'c']) o.registerAgent(echoAgent(), { id, capabilities: ['x'] });
    const order = await sequential(o, 9, { type: 't', requires: ['x'] });
    expect(new Set(order.slice(0, 3))).toEqual(new Set(['a', 'b', 'c']));
    expect(order.slice(3, 6)).toEqual(order.slice(0, 3));
    expect(order.slice(6, 9)).toEqual(order.slice(0, 3));
  });

  it('with routing "least-loaded" picks the agent with the fewest running tasks, specialist or not', async () => {
    const o = await start({ routing: 'least-loaded' });
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'specialist', capabilities: ['x'], concurrency: 3 });
    o.registerAgent(manualAgent(calls), { id: 'generalist', capabilities: ['x', 'y', 'z'], concurrency: 3 });
    for (let i = 0; i < 4; i++) o.delegate({ type: 't', requires: ['x'] });
    expect(o.agent('specialist')!.running).toBe(2);
    expect(o.agent('generalist')!.running).toBe(2);
    // Free one slot on the generalist: it is now the least loaded, so the next task goes there.
    calls.find((c) => c.agentId === 'generalist')!.resolve();
    await new Promise((r) => setTimeout(r, 0));
    o.delegate({ type: 't', requires: ['x'] });
    expect(calls.at(-1)!.agentId).toBe('generalist');
  });

  it('with routing "least-loaded" picks the least-loaded agent even in a large group of equal agents', async () => {
    const o = await start({ routing: 'least-loaded' });
    const calls: Call[] = [];
    const ids = Array.from({ length: 12 }, (_, i) => `a${i}`);
    for (const id of ids) o.registerAgent(manualAgent(calls), { id, capabilities: ['x'], concurrency: 2 });
    for (let i = 0; i < ids.length; i++) o.delegate({ type: 't', requires: ['x'] });
    expect(ids.map((id) => o.agent(id)!.running)).toEqual(Array(12).fill(1));
    const order = [11, 3, 9, 0, 7, 5, 10, 1, 8, 2, 6, 4].map((i) => ids[i]!);
    const picked: string[] = [];
    for (const id of order) {
      // Free the one task of `id`: it is now the only idle agent, every other one runs 1 of 2.
      calls.find((c) => c.agentId === id && !c.settled)!.resolve();
      await new Promise((r) => setTimeout(r, 0));
      o.delegate({ type: 't', requires: ['x'] });
      picked.push(calls.at(-1)!.agentId);
      if (picked.at(-1) !== id) break; // the fleet is no longer "one idle, the rest at 1 of 2"
    }
    expect(picked).toEqual(order);
  });

  it('with the default "score" routing the same load stacks on the specialist first (contrast with least-loaded)', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'specialist', capabilities: ['x'], concurrency: 3 });
    o.registerAgent(manualAgent(calls), { id: 'generalist', capabilities: ['x', 'y', 'z'], concurrency: 3 });
    for (let i = 0; i < 2; i++) o.delegate({ type: 't', requires: ['x'] });
    expect(o.agent('specialist')!.running).toBe(2);
    expect(o.agent('generalist')!.running).toBe(0);
  });

  it('with routing "round-robin" takes capable agents in turn, ignoring specialisation', async () => {
    const o = await start({ routing: 'round-robin' });
    o.registerAgent(echoAgent(), { id: 'specialist', capabilities: ['x'] });
    o.registerAgent(echoAgent(), { id: 'generalist', capabilities: ['x', 'y', 'z'] });
    o.registerAgent(echoAgent(), { id: 'other', capabilities: ['y'] });
    const order = await sequential(o, 6, { type: 't', requires: ['x'] });
    expect(order.filter((a) => a === 'specialist')).toHaveLength(3);
    expect(order.filter((a) => a === 'generalist')).toHaveLength(3);
    for (let i = 1; i < order.length; i++) expect(order[i]).not.toBe(order[i - 1]);
  });
});

describe('routing cache', () => {
  it('counts a miss for a new requirement signature and hits for repeats (order-insensitive)', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'a', capabilities: ['x', 'y', 'p'] });
    const before = o.stats().routingCache;
    expect(before).toMatchObject({ hits: 0, misses: 0 });
    await o.submit({ type: 't', requires: ['x', 'y'] });
    expect(o.stats().routingCache).toMatchObject({ hits: 0, misses: 1 });
    await o.submit({ type: 't', requires: ['x', 'y'] });
    await o.submit({ type: 't', requires: ['y', 'x'] });
    expect(o.stats().routingCache).toMatchObject({ hits: 2, misses: 1 });
    await o.submit({ type: 't', requires: ['x'] });
    await o.submit({ type: 't', requires: ['x', 'y'], prefers: ['p'] });
    expect(o.stats().routingCache).toMatchObject({ hits: 2, misses: 3 });
    expect(o.stats().routingCache.size).toBe(3);
  });

  it('misses after an agent joins, and routes to the new agent', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'generalist', capabilities: ['x', 'y', 'z'] });
    await o.submit({ type: 't', requires: ['x'] });
    await o.submit({ type: 't', requires: ['x'] });
    expect(o.stats().routingCache).toMatchObject({ hits: 1, misses: 1 });
    o.registerAgent(echoAgent(), { id: 'specialist', capabilities: ['x'] });
    const result = await o.submit<string>({ type: 't', requires: ['x'] });
    expect(o.stats().routingCache).toMatchObject({ hits: 1, misses: 2 });
    expect(result.startsWith('specialist:')).toBe(true);
  });

  it('never serves an unregistered agent from the cache', async () => {
    const o = await start();
    o.registerAgent(echoAgent(), { id: 'specialist', capabilities: ['x'] });
    o.registerAgent(echoAgent(), { id: 'generalist', capabilities: ['x', 'y'] });
    const log = recordEvents(o);
    await o.submit({ type: 't', requires: ['x'] });
    await o.submit({ type: 't', requires: ['x'] });
    const misses = o.stats().routingCache.misses;
    await o.unregisterAgent('specialist');
    log.started.length = 0;
    for (let i = 0; i < 10; i++) await o.submit({ type: 't', requires: ['x'] });
    expect(o.stats().routingCache.misses).toBe(misses + 1);
    expect(log.started.map((s) => s.agentId)).toEqual(Array(10).fill('generalist'));
  });

  it('never routes to an agent that is draining (unroutable), even with a free slot and a warm cache entry', async () => {
    const o = await start();
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'specialist', capabilities: ['x'], concurrency: 4 });
    o.registerAgent(echoAgent(), { id: 'generalist', capabilities: ['x', 'y'] });
    const log = recordEvents(o);
    const running = o.delegate({ type: 't', requires: ['x'] });
    expect(calls).toHaveLength(1);
    const leaving = o.unregisterAgent('specialist'); // DRAINING until its task settles
    expect(o.agent('specialist')!.state).toBe('DRAINING');
    for (let i = 0; i < 5; i++) await o.submit({ type: 't', requires: ['x'] });
    expect(log.started.filter((s) => s.agentId === 'specialist')).toHaveLength(1);
    expect(calls).toHaveLength(1);
    calls[0]!.resolve('done');
    await running.result;
    await leaving;
    expect(o.agent('specialist')).toBeUndefined();
  });
});

describe('affinityKey', () => {
  it('sends tasks with the same key to the same agent while it is free', async () => {
    const o = await start({ clock: frozen });
    for (const id of ['a', 'b', 'c']) o.registerAgent(echoAgent(), { id, capabilities: ['x'] });
    const keyed: string[] = [];
    const unkeyed: string[] = [];
    for (let i = 0; i < 6; i++) {
      keyed.push(...(await sequential(o, 1, { type: 't', requires: ['x'], affinityKey: 'session-1' })));
      unkeyed.push(...(await sequential(o, 1, { type: 't', requires: ['x'] })));
    }
    expect(new Set(keyed).size).toBe(1);
    // Without a key, ties rotate: the key is what keeps the keyed tasks in place.
    expect(new Set(unkeyed).size).toBeGreaterThan(1);
  });

  it('does not wait for its agent when that agent is busy, and comes back to it once free', async () => {
    const o = await start({ clock: frozen });
    const calls: Call[] = [];
    for (const id of ['a', 'b', 'c']) o.registerAgent(manualAgent(calls), { id, capabilities: ['x'] });
    const first = o.delegate({ type: 't', requires: ['x'], affinityKey: 'k' });
    const home = calls[0]!.agentId;
    const second = o.delegate({ type: 't', requires: ['x'], affinityKey: 'k' });
    expect(calls).toHaveLength(2);
    expect(calls[1]!.agentId).not.toBe(home);
    expect(o.stats().waiting).toBe(0);
    calls[0]!.resolve();
    calls[1]!.resolve();
    await Promise.all([first.result, second.result]);
    for (let i = 0; i < 3; i++) {
      const h = o.delegate({ type: 't', requires: ['x'], affinityKey: 'k' });
      expect(calls.at(-1)!.agentId).toBe(home);
      calls.at(-1)!.resolve();
      await h.result;
    }
  });

  it('moves the key to another agent when its agent is unregistered, and sticks there', async () => {
    const o = await start({ clock: frozen });
    for (const id of ['a', 'b', 'c']) o.registerAgent(echoAgent(), { id, capabilities: ['x'] });
    const [home] = await sequential(o, 1, { type: 't', requires: ['x'], affinityKey: 'k' });
    await o.unregisterAgent(home!);
    const after: string[] = [];
    for (let i = 0; i < 5; i++) {
      after.push(...(await sequential(o, 1, { type: 't', requires: ['x'], affinityKey: 'k' })));
      await sequential(o, 1, { type: 't', requires: ['x'] }); // rotate the tie-break in between
    }
    expect(after).not.toContain(home);
    expect(new Set(after).size).toBe(1);
  });

  it('does not send a keyed task to its agent when that agent lacks a required capability', async () => {
    const o = await start({ clock: frozen });
    o.registerAgent(echoAgent(), { id: 'x', capabilities: ['x'] });
    o.registerAgent(echoAgent(), { id: 'xy', capabilities: ['x', 'y'] });
    const [home] = await sequential(o, 1, { type: 't', requires: ['x'], affinityKey: 'k' });
    expect(home).toBe('x');
    const [next] = await sequential(o, 1, { type: 't', requires: ['x', 'y'], affinityKey: 'k' });
    expect(next).toBe('xy');
  });
});
