/**
 * A task entry is added once, whatever the client does (issue 16): when a connection drops after Redis added an entry
 * but before its reply came back, ioredis sends the command again on the new connection. A plain XADD would then put
 * the entry in the stream twice, and two nodes could run its tasks at once. Here a TCP proxy between the producer and
 * a real redis-server cuts the connection instead of passing on the reply to the first task entry, so the resend
 * really happens; the stream must have had one entry added, and the task run once.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisBridge, UnifiedOrchestrator } from 'unified-orchestrator';
import { ADD_ONCE } from '../../src/bridge/redis-streams.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { FAST, runLog, SECRET, servingAgent, type Op } from './helpers.js';

let redis: TestRedis;
let admin: Redis;

beforeAll(async () => {
  if (REDIS_SERVER.skip) return;
  redis = await startRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin?.disconnect();
  await redis?.stop();
});

/** A proxy to Redis that, once armed, cuts the connection that sent a task entry instead of passing on its reply. */
async function cuttingProxy(port: number): Promise<{ url: string; arm(): void; cuts: () => number; close(): void }> {
  let armed = false;
  let cuts = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    let cutNext = false;
    client.on('data', (chunk: Buffer) => {
      // The script that adds a task entry: its reply is the one to lose.
      if (armed && chunk.includes(ADD_ONCE)) {
        armed = false;
        cutNext = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutNext) {
        cuts++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: proxyPort } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${proxyPort}`,
    arm: () => (armed = true),
    cuts: () => cuts,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe.skipIf(REDIS_SERVER.skip)('a task entry is added once', () => {
  it('the script adds the entry on its first call only, and its mark expires', async () => {
    const stream = `${namespace()}:tasks:x`;
    const mark = `${stream}:sent:abc`;
    const first = await admin.eval(ADD_ONCE, 2, stream, mark, '{"m":1}', 'sig', '5000');
    const second = await admin.eval(ADD_ONCE, 2, stream, mark, '{"m":1}', 'sig', '5000');
    expect(first).toEqual([expect.stringMatching(/^\d+-\d+$/)]); // the entry's id
    expect(second).toBeNull();
    expect(await admin.xlen(stream)).toBe(1);
    const ttl = await admin.pttl(mark);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(5_000);
  });

  it('one call adds all its entries, in order, and a second call with the same mark none of them', async () => {
    const stream = `${namespace()}:tasks:x`;
    const mark = `${stream}:sent:many`;
    const args = ['{"m":1}', 's1', '{"m":2}', 's2', '{"m":3}', 's3', '5000'];
    const first = (await admin.eval(ADD_ONCE, 2, stream, mark, ...args)) as string[];
    const second = await admin.eval(ADD_ONCE, 2, stream, mark, ...args);
    expect(first).toHaveLength(3);
    expect(second).toBeNull();
    const entries = await admin.xrange(stream, '-', '+');
    expect(entries.map(([id]) => id)).toEqual(first);
    expect(entries.map(([, fields]) => fields)).toEqual([
      ['m', '{"m":1}', 's', 's1'],
      ['m', '{"m":2}', 's', 's2'],
      ['m', '{"m":3}', 's', 's3'],
    ]);
  });

  it('a reply lost to a cut connection: ioredis sends the entry again, Redis adds it once, the task runs once', async () => {
    const ns = namespace();
    const proxy = await cuttingProxy(redis.port);
    const log = runLog();
    const worker = new UnifiedOrchestrator({
      pressure: false,
      bridge: new RedisBridge({ url: redis.url, secret: SECRET, namespace: ns, nodeId: 'W', ...FAST }),
      pools: [{ role: 'w', capabilities: ['x'], minAgents: 2, maxAgents: 2, create: () => servingAgent('W', log) }],
    });
    const producer = new UnifiedOrchestrator({
      pressure: false,
      bridge: new RedisBridge({ url: proxy.url, secret: SECRET, namespace: ns, nodeId: 'P', ...FAST }),
    });
    try {
      await worker.start();
      await producer.start();
      const deadline = Date.now() + 10_000;
      while (!producer.bridge.canAnyServe(['x']) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      proxy.arm();
      const op: Op = { op: 'slow', id: 'once', ms: 300 };
      const value = await producer.submit({ type: 't', requires: ['x'], payload: op, timeoutMs: 10_000 });
      expect(value).toMatchObject({ node: 'W', id: 'once' });
      expect(proxy.cuts()).toBe(1); // the reply to the entry was lost, so ioredis sent it again
      const info = (await admin.call('XINFO', 'STREAM', `${ns}:tasks:x`)) as unknown[];
      const added = Number(info[info.indexOf('entries-added') + 1]);
      expect(added).toBe(1);
      expect(log.count('once')).toBe(1);
    } finally {
      await producer.stop({ drain: false });
      await worker.stop({ drain: false });
      proxy.close();
    }
  });
});
