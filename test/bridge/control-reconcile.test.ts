/**
 * A kill switch that cannot be missed, against a real redis-server: a node whose control subscriber was cut
 * (CLIENT KILL) applies a halt, resume or traffic change sent meanwhile within a heartbeat (and at once when the
 * subscriber is back), running nothing during the halt; each standing entry is applied once however often the node
 * reconciles; an old halt written back into the standing hash after a resume is refused by running nodes and by a
 * node that starts later, and the hash is healed; the hash is re-read only when `control:version` changed; a node that
 * does not hear its own messages back takes them from the standing state as their echo.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  RedisBridge,
  UnifiedOrchestrator,
  type ControlMessage,
  type OrchestratorEvents,
  type RedisBridgeOptions,
} from 'unified-orchestrator';
import { pickStanding } from '../../src/bridge/redis-control.js';
import { MessageSigner } from '../../src/bridge/signing.js';
import { run as cli } from '../../src/cli/cli.js';
import { wait } from '../support/agents.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { eventually, FAST, Fleet, runLog, SECRET } from './helpers.js';

let redis: TestRedis;
let admin: Redis;
const fleet = new Fleet();

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
}, 30_000);
afterEach(async () => {
  await fleet.stopAll();
});
afterAll(async () => {
  admin?.disconnect();
  if (redis?.owned) await redis.stop();
});

const describeRedis = describe.skipIf(REDIS_SERVER.skip);

/**
 * A bridge whose connections carry the name `name` (CLIENT LIST tells them apart) and reconnect only after
 * `reconnectMs`: a subscriber cut stays away that long.
 */
function bridge(ns: string, nodeId: string, reconnectMs = 50, extra: Partial<RedisBridgeOptions> = {}): RedisBridge {
  return new RedisBridge({
    url: redis.url,
    secret: SECRET,
    namespace: ns,
    nodeId,
    ...FAST,
    ...extra,
    redisOptions: { connectionName: `${ns}-${nodeId}`, retryStrategy: () => reconnectMs },
  });
}

/** The CLIENT LIST lines of the connections named `name` that are subscribed to channels (the control subscriber). */
async function subscribers(name: string): Promise<string[]> {
  const list = (await admin.call('CLIENT', 'LIST')) as string;
  return list.split('\n').filter((line) => line.includes(` name=${name} `) && / sub=[1-9]/.test(line));
}

/** Cuts the control subscriber of the node whose connections are named `name` (found by CLIENT LIST). */
async function killSubscriber(name: string): Promise<void> {
  const lines = await subscribers(name);
  expect(lines).toHaveLength(1);
  const id = /^id=(\d+)/.exec(lines[0]!)![1]!;
  expect(await admin.call('CLIENT', 'KILL', 'ID', id)).toBe(1);
  expect(await subscribers(name)).toHaveLength(0);
}

/** What a node emitted about control: halts, resumes, control messages and audit entries. */
function record(o: UnifiedOrchestrator) {
  const ev = {
    halted: [] as Array<OrchestratorEvents['halted']>,
    resumed: [] as Array<OrchestratorEvents['resumed']>,
    control: [] as ControlMessage[],
    audit: [] as string[],
  };
  o.on('halted', (e) => ev.halted.push(e));
  o.on('resumed', (e) => ev.resumed.push(e));
  o.on('bridge:control', (m) => ev.control.push(m));
  o.on('audit', (e) => ev.audit.push(e.action));
  return ev;
}

/** `unified-orchestrator --json status` on namespace `ns`, in process: what it printed, parsed. */
async function cliStatus(ns: string): Promise<{ standing: { halted: string | null }; rejected: number }> {
  let out = '';
  const code = await cli(['--json', 'status'], {
    env: { UO_REDIS_URL: redis.url, UO_NAMESPACE: ns, UO_SECRET: SECRET },
    write: (text) => (out += text),
    error: (text) => (out += text),
  });
  expect(code).toBe(0);
  return JSON.parse(out) as { standing: { halted: string | null }; rejected: number };
}

const task = (id: string) => ({ type: 't', requires: ['x'], payload: { op: 'echo', id } });

/** The raw standing entry of `slot` in namespace `ns`. */
const standing = (ns: string, slot: string): Promise<string | null> => admin.hget(`${ns}:control:standing`, slot);

/** Seconds since a command last touched the standing hash of `ns` (OBJECT IDLETIME does not touch it). */
const idleSeconds = async (ns: string): Promise<number> =>
  Number(await admin.call('OBJECT', 'IDLETIME', `${ns}:control:standing`));

describeRedis('RedisBridge reconciles with the standing control state', () => {
  it('a node whose subscriber is cut applies a halt, resume, traffic and rollback within a heartbeat, and runs nothing while halted', async () => {
    const ns = namespace();
    const log = runLog();
    // B's connections come back only after 10 s: everything below happens while its subscriber is away.
    const b = fleet.server(bridge(ns, 'B', 10_000), 'B', log);
    const a = fleet.producer(bridge(ns, 'A'));
    const evB = record(b);
    await b.start();
    await a.start();
    await killSubscriber(`${ns}-B`);

    await a.halt('incident 7');
    await eventually(() => b.controlState().halted === 'incident 7', 3_000, 'B applies the halt it did not hear');
    expect(await subscribers(`${ns}-B`)).toHaveLength(0); // through the heartbeat, not a reconnect
    const results = Array.from({ length: 50 }, (_, i) => b.submit(task(`t${i}`)));
    await eventually(() => b.stats().waiting === 50, 3_000, 'the 50 tasks wait on B');
    await wait(FAST.heartbeatMs * 6);
    expect(log.runs).toHaveLength(0);

    await a.resume();
    await eventually(() => b.controlState().halted === null, 3_000, 'B applies the resume it did not hear');
    await Promise.all(results);
    expect(log.runs).toHaveLength(50);
    expect(new Set(log.runs).size).toBe(50);

    await a.broadcast({ kind: 'traffic', value: { percent: 40, shadow: true } });
    await eventually(() => b.controlState().traffic?.percent === 40, 3_000, 'B applies the traffic change');
    expect(b.controlState().traffic).toEqual({ percent: 40, shadow: true });
    await a.broadcast({ kind: 'rollback', reason: 'bad p95' });
    await eventually(() => b.controlState().traffic?.percent === 0, 3_000, 'B applies the rollback');
    expect(b.controlState().traffic).toEqual({ percent: 0, shadow: false });
    expect(await subscribers(`${ns}-B`)).toHaveLength(0);

    // Each applied once, however many heartbeats reconciled meanwhile.
    await wait(FAST.heartbeatMs * 4);
    expect(evB.halted).toHaveLength(1);
    expect(evB.resumed).toHaveLength(1);
    expect(evB.control.map((m) => m.kind)).toEqual(['halt', 'resume', 'traffic', 'rollback']);
    expect(evB.audit.filter((x) => x.startsWith('orchestrator.') || x.startsWith('traffic.'))).toEqual([
      'orchestrator.halt',
      'orchestrator.resume',
      'traffic.change',
      'traffic.rollback',
    ]);
  }, 30_000);

  it('a node applies a halt it missed as soon as its subscriber is back, long before its next heartbeat', async () => {
    const ns = namespace();
    const log = runLog();
    // B beats every 20 s: only the reconnect (after 100 ms) can tell it in time.
    const slow = { heartbeatMs: 20_000, nodeTtlMs: 60_000, reclaimIdleMs: 60_000 };
    const b = fleet.server(bridge(ns, 'B', 100, slow), 'B', log);
    const a = fleet.producer(bridge(ns, 'A'));
    const evB = record(b);
    await b.start();
    await a.start();
    await killSubscriber(`${ns}-B`);
    await a.halt('missed');
    await eventually(() => b.controlState().halted === 'missed', 5_000, 'B applies the halt once reconnected');
    await eventually(async () => (await subscribers(`${ns}-B`)).length === 1, 5_000, 'B subscribed again');
    // A second cut and reconnect reads the same entry again: nothing is applied twice.
    await killSubscriber(`${ns}-B`);
    await eventually(async () => (await subscribers(`${ns}-B`)).length === 1, 5_000, 'B subscribed again');
    await a.resume();
    await eventually(() => b.controlState().halted === null, 5_000, 'B hears the resume');
    expect(evB.halted).toHaveLength(1);
    expect(evB.resumed).toHaveLength(1);
    expect(evB.control.map((m) => m.kind)).toEqual(['halt', 'resume']);
  }, 30_000);

  it('an old halt written back after a resume: running nodes stay resumed, a new node starts resumed, the hash is healed', async () => {
    const ns = namespace();
    const log = runLog();
    const b = fleet.server(bridge(ns, 'B'), 'B', log);
    const a = fleet.producer(bridge(ns, 'A'));
    const evA = record(a);
    const evB = record(b);
    await b.start();
    await a.start();
    await a.halt('captured');
    await eventually(() => b.controlState().halted === 'captured', 3_000, 'B halted');
    const captured = await standing(ns, 'halt');
    expect(captured).toContain('captured');
    await a.resume();
    await eventually(() => b.controlState().halted === null, 3_000, 'B resumed');
    const resume = await standing(ns, 'halt');
    // Both nodes wrote their registry entries since (vouching for the resume).
    await wait(FAST.heartbeatMs * 3);

    // The attacker (Redis write access, not the secret) writes the captured halt back.
    await admin.hset(`${ns}:control:standing`, 'halt', captured!);
    // The CLI shows the cluster resumed, as its live nodes vouch, not the halt written back.
    expect(await cliStatus(ns)).toMatchObject({ standing: { halted: null }, rejected: 0 });
    const c = fleet.server(bridge(ns, 'C'), 'C', log);
    const evC = record(c);
    await c.start();
    expect(c.controlState().halted).toBeNull();
    expect(evC.halted).toHaveLength(0);
    await eventually(async () => (await standing(ns, 'halt')) === resume, 3_000, 'the hash is healed');

    // Again, raising the version so that the running nodes read it: they refuse it and heal the hash.
    await admin.hset(`${ns}:control:standing`, 'halt', captured!);
    await admin.incr(`${ns}:control:version`);
    await eventually(async () => (await standing(ns, 'halt')) === resume, 3_000, 'the hash is healed again');
    await wait(FAST.heartbeatMs * 4);
    for (const o of [a, b, c]) expect(o.controlState().halted).toBeNull();
    expect(await c.submit(task('after'))).toMatchObject({ id: 'after' });
    expect([evA.halted.length, evB.halted.length, evC.halted.length]).toEqual([1, 1, 0]);
    expect([evA.resumed.length, evB.resumed.length, evC.resumed.length]).toEqual([1, 1, 0]);
  }, 30_000);

  it('the hash is re-read only when control:version changed, and a changed version makes every node re-read it', async () => {
    const ns = namespace();
    const log = runLog();
    const b = fleet.server(bridge(ns, 'B'), 'B', log);
    const a = fleet.producer(bridge(ns, 'A'));
    await b.start();
    await a.start();
    // A halt sealed with the secret and written into the hash without raising the version (and not published).
    const signer = new MessageSigner(SECRET, ns, 60_000);
    const halt = JSON.stringify(signer.seal('control', { kind: 'halt', reason: 'written quietly', from: 'ops' }));
    await admin.hset(`${ns}:control:standing`, 'halt', halt);
    // About 60 heartbeats on two nodes: none reads the hash (Redis keeps a key's last access to the second).
    await wait(3_200);
    expect(await idleSeconds(ns)).toBeGreaterThanOrEqual(2);
    expect(a.controlState().halted).toBeNull();
    expect(b.controlState().halted).toBeNull();

    await admin.incr(`${ns}:control:version`);
    await eventually(
      () => a.controlState().halted === 'written quietly' && b.controlState().halted === 'written quietly',
      3_000,
      'both nodes re-read the hash',
    );
    expect(await idleSeconds(ns)).toBeLessThan(2);
  }, 30_000);

  it('a resume outranks a halt sealed by a clock running ahead, also for a node that did not hear it: all resume and stay so', async () => {
    const ns = namespace();
    const log = runLog();
    const b = fleet.server(bridge(ns, 'B', 10_000), 'B', log);
    const a = fleet.producer(bridge(ns, 'A'));
    await b.start();
    await a.start();
    // A halt from a node whose clock is 20 s ahead, sent as publishControl sends it.
    const ahead = new MessageSigner(SECRET, ns, 60_000);
    const halt = JSON.stringify(
      ahead.seal('control', { kind: 'halt', reason: 'from the future', from: 'skewed' }, Date.now() + 20_000),
    );
    await admin.hset(`${ns}:control:standing`, 'halt', halt);
    await admin.incr(`${ns}:control:version`);
    await admin.publish(`${ns}:control`, halt);
    await eventually(() => a.controlState().halted !== null && b.controlState().halted !== null, 3_000, 'halted');
    // B does not hear the resume: it takes it from the standing state, where it must rank after the halt.
    await killSubscriber(`${ns}-B`);
    await a.resume();
    await eventually(() => b.controlState().halted === null, 3_000, 'B resumes');
    await wait(FAST.heartbeatMs * 6);
    expect(a.controlState().halted).toBeNull();
    expect(b.controlState().halted).toBeNull();
    expect((JSON.parse((await standing(ns, 'halt'))!) as { m: string }).m).toContain('"kind":"resume"');
    expect((await cliStatus(ns)).standing.halted).toBeNull();
  }, 30_000);

  it('a node that does not hear its own messages back takes them from the standing state as their echo, once', async () => {
    const ns = namespace();
    const a = fleet.producer(bridge(ns, 'A', 10_000));
    const b = fleet.producer(bridge(ns, 'B'));
    const evA = record(a);
    await a.start();
    await b.start();
    await killSubscriber(`${ns}-A`);
    await a.halt('own');
    await eventually(() => b.controlState().halted === 'own', 3_000, 'B halted');
    await wait(FAST.heartbeatMs * 4); // A's heartbeats read its halt back
    await a.resume();
    await eventually(() => b.controlState().halted === null, 3_000, 'B resumed');
    await wait(FAST.heartbeatMs * 4);
    await b.halt('from B');
    await eventually(() => a.controlState().halted === 'from B', 3_000, "A applies B's halt");
    await wait(FAST.heartbeatMs * 4);
    // Its own two when sent, then B's: nothing again for the entries read back.
    expect(evA.control.map((m) => `${m.kind}:${m.from}`)).toEqual(['halt:A', 'resume:A', 'halt:B']);
    expect([evA.halted.length, evA.resumed.length]).toEqual([2, 1]);
    expect(await subscribers(`${ns}-A`)).toHaveLength(0);
  }, 30_000);
});

describe('pickStanding: per slot the newest among the hash and what live nodes vouch for', () => {
  const signer = new MessageSigner(SECRET, 'uo', 60_000);
  const seal = (message: ControlMessage, notBefore = 0): string =>
    JSON.stringify(signer.seal('control', message, notBefore));
  const now = Date.now();
  const halt = seal({ kind: 'halt', reason: 'old' }, now);
  const resume = seal({ kind: 'resume' }, now + 10);
  const rollback = seal({ kind: 'rollback' }, now + 20);

  it('a newer vouched entry wins over the hash, which is then behind on that slot only', () => {
    const picked = pickStanding(signer, { halt, percent: rollback, shadow: rollback }, [resume]);
    expect(picked.messages.map((m) => m.kind)).toEqual(['resume', 'rollback']);
    expect(picked.behind).toEqual(['halt']);
    expect(picked.rejected).toBe(0);
  });

  it('an older vouched entry does not displace the hash, and the same entry twice is one message', () => {
    const picked = pickStanding(signer, { halt: resume }, [halt, resume]);
    expect(picked.messages).toEqual([{ kind: 'resume', replayed: true }]);
    expect(picked.behind).toEqual([]);
  });

  it('an entry under a slot it does not set, a forged one and a non-standing kind are refused and counted', () => {
    const forged = JSON.stringify({ m: (JSON.parse(halt) as { m: string }).m, s: '0'.repeat(64) });
    const drain = seal({ kind: 'drain' });
    const picked = pickStanding(signer, { percent: halt, shadow: forged, halt: drain }, [forged]);
    expect(picked.messages).toEqual([]);
    expect(picked.rejected).toBe(4);
  });
});
