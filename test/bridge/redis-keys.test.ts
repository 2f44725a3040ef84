/**
 * Key names that cannot collide (src/bridge/redis-keys.ts): capabilities with `+ : { } * % `, spaces or unicode run
 * on the node that serves them, classes that once joined to one key stay apart, and namespaces where one is a prefix
 * of the other (`x` and `x:tasks`) share one Redis without touching each other's keys. Real redis-server.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisBridge, UnifiedOrchestrator, type RedisBridgeOptions } from 'unified-orchestrator';
import { classKey, keyOf, namespaceKey, requiresOf } from '../../src/bridge/redis-keys.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { eventually, FAST, Fleet, runLog, SECRET, servingAgent, type Op } from './helpers.js';

let redis: TestRedis;
const fleet = new Fleet();

beforeAll(async () => {
  redis = await startRedis();
}, 30_000);
afterEach(async () => {
  await fleet.stopAll();
});
afterAll(async () => {
  if (redis?.owned) await redis.stop();
});

function bridge(ns: string, nodeId: string, extra: Partial<RedisBridgeOptions> = {}): RedisBridge {
  return new RedisBridge({ url: redis.url, secret: SECRET, namespace: ns, nodeId, ...FAST, ...extra });
}

/** A node `node` on `ns` with one pool per entry of `pools` (each a list of capabilities). */
function server(ns: string, node: string, pools: ReadonlyArray<readonly string[]>, log = runLog()) {
  return fleet.add(
    new UnifiedOrchestrator({
      pressure: false,
      bridge: bridge(ns, node),
      pools: pools.map((capabilities, i) => ({
        role: `r${i}`,
        capabilities: [...capabilities],
        minAgents: 1,
        maxAgents: 2,
        concurrency: 4,
        create: () => servingAgent(node, log),
      })),
    }),
  );
}

const echo = (requires: readonly string[], id: string) => ({
  type: 't',
  requires: [...requires],
  payload: { op: 'echo', id, v: id } satisfies Op,
  timeoutMs: 10_000,
});

const ODD = ['a+b', 'a:b', '{tag}', 'open{', 'close}', '*', 'two words', '100%', '%41', '🚀', 'naïve', 'x:refused:0-1'];

describe('redis-keys: encoding', () => {
  it('round-trips every class, keeps the separators out of encoded names, and tells odd classes apart', () => {
    const classes = [[], ['x'], ...ODD.map((c) => [c]), ['a', 'b'], ['b', 'a+b', 'a'], ['', 'x']];
    const keys = new Set<string>();
    for (const requires of classes) {
      const key = classKey(requires);
      keys.add(key);
      expect(requiresOf(key)).toEqual([...requires].sort());
      if (requires.length > 0) expect(key.split('+')).toHaveLength(requires.length);
      expect(key).not.toMatch(/[:{} ]/);
    }
    expect(keys.size).toBe(classes.length);
    expect(classKey(['*'])).not.toBe(classKey([]));
    expect(classKey(['a+b'])).not.toBe(classKey(['a', 'b']));
  });

  it('serves no class it did not write: malformed or non-canonical keys read back as undefined', () => {
    for (const key of ['%', '%E2%82', 'a:b', 'b+a', '%61', 'x y', '']) {
      expect(requiresOf(key), key).toEqual(key === '' ? [''] : undefined);
    }
  });

  it('encodes `%` and `:` in the namespace only, so a hash tag survives and no namespace is a prefix of another', () => {
    expect(namespaceKey('uo')).toBe('uo');
    expect(namespaceKey('{uo}')).toBe('{uo}');
    expect(keyOf('x:tasks', 'nodes')).toBe('x%3Atasks:nodes');
    expect(keyOf('x', 'tasks', 'nodes')).toBe('x:tasks:nodes');
    expect(namespaceKey('a%3Ab')).not.toBe(namespaceKey('a:b'));
  });
});

const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('RedisBridge: names that cannot collide', () => {
  it('a task needing a capability with `+ : { } * %`, a space or unicode runs once on the node that serves it', async () => {
    const ns = namespace('uo-keys');
    const log = runLog();
    const b = server(
      ns,
      'B',
      ODD.map((c) => [c]),
      log,
    );
    const a = fleet.producer(bridge(ns, 'A'));
    await b.start();
    await a.start();
    await eventually(() => ODD.every((c) => a.bridge.canAnyServe([c])), 5_000, 'A sees B');
    const results = await Promise.all(ODD.map((c, i) => a.submit(echo([c], `odd-${i}`))));
    expect(results).toEqual(ODD.map((_, i) => ({ node: 'B', id: `odd-${i}`, v: `odd-${i}` })));
    for (let i = 0; i < ODD.length; i++) expect(log.count(`odd-${i}`)).toBe(1);
    expect(a.bridge.stats().deadLettered).toBe(0);
    expect(b.bridge.stats().rejected).toBe(0);
  }, 30_000);

  it('`a+b` and `a` with `b` are two classes: each task runs on the node that serves its class', async () => {
    const ns = namespace('uo-keys');
    const log = runLog();
    const plus = server(ns, 'PLUS', [['a+b']], log);
    const pair = server(ns, 'PAIR', [['a', 'b']], log);
    const a = fleet.producer(bridge(ns, 'A'));
    await Promise.all([plus.start(), pair.start(), a.start()]);
    await eventually(
      () => a.bridge.canAnyServe(['a+b']) && a.bridge.canAnyServe(['a', 'b']),
      5_000,
      'A sees both nodes',
    );
    const ids = Array.from({ length: 8 }, (_, i) => i);
    const joined = await Promise.all(ids.map((i) => a.submit<{ node: string }>(echo(['a+b'], `plus-${i}`))));
    const split = await Promise.all(ids.map((i) => a.submit<{ node: string }>(echo(['b', 'a'], `pair-${i}`))));
    expect(new Set(joined.map((r) => r.node))).toEqual(new Set(['PLUS']));
    expect(new Set(split.map((r) => r.node))).toEqual(new Set(['PAIR']));
    expect(log.runs).toHaveLength(16);
  }, 30_000);

  it('namespaces `x` and `x:tasks` run side by side on one Redis without touching each other', async () => {
    const x = namespace('uo-keys');
    const xTasks = `${x}:tasks`;
    // In `x`, capability `nodes` is the stream `x:tasks:nodes`: the registry set of `x:tasks` before the encoding.
    const logX = runLog();
    const logT = runLog();
    const bx = server(x, 'BX', [['nodes']], logX);
    const ax = fleet.producer(bridge(x, 'AX'));
    const bt = server(xTasks, 'BT', [['nodes']], logT);
    const at = fleet.producer(bridge(xTasks, 'AT'));
    await Promise.all([bx.start(), ax.start(), bt.start(), at.start()]);
    await eventually(() => ax.bridge.canAnyServe(['nodes']) && at.bridge.canAnyServe(['nodes']), 5_000, 'both see B');
    const ids = Array.from({ length: 6 }, (_, i) => i);
    const [inX, inT] = await Promise.all([
      Promise.all(ids.map((i) => ax.submit(echo(['nodes'], `x-${i}`)))),
      Promise.all(ids.map((i) => at.submit(echo(['nodes'], `t-${i}`)))),
    ]);
    expect(inX).toEqual(ids.map((i) => ({ node: 'BX', id: `x-${i}`, v: `x-${i}` })));
    expect(inT).toEqual(ids.map((i) => ({ node: 'BT', id: `t-${i}`, v: `t-${i}` })));
    expect(logX.runs.sort()).toEqual(ids.map((i) => `x-${i}`).sort());
    expect(logT.runs.sort()).toEqual(ids.map((i) => `t-${i}`).sort());
    // Each namespace sees its own nodes only.
    for (const id of (await ax.cluster()).map((n) => n.nodeId)) expect(['AX', 'BX']).toContain(id);
    for (const id of (await at.cluster()).map((n) => n.nodeId)) expect(['AT', 'BT']).toContain(id);
    const r = new Redis(redis.url);
    try {
      expect(await r.type(`${x}:tasks:nodes`)).toBe('stream');
      expect(await r.type(`${namespaceKey(xTasks)}:nodes`)).toBe('set');
    } finally {
      r.disconnect();
    }
  }, 30_000);
});
