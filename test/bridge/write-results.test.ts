/**
 * The serving side's one write per report (WRITE_RESULTS, issue 16): a results message, its tasks' `done` markers and
 * the acks of the entries it finishes go in together or not at all, on a real redis-server. Nothing is marked done or
 * acked when the message is refused; an ack Redis refuses does not undo the results, and its error comes back.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisBridge } from 'unified-orchestrator';
import { WRITE_RESULTS } from '../../src/bridge/redis-results.js';
import { GROUP, streamsOf } from '../../src/bridge/redis-streams.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { eventually, FAST, Fleet, runLog, SECRET } from './helpers.js';

let redis: TestRedis;
let admin: Redis;
const fleet = new Fleet();

beforeAll(async () => {
  if (REDIS_SERVER.skip) return;
  redis = await startRedis();
  admin = new Redis(redis.url);
}, 30_000);
afterAll(async () => {
  await fleet.stopAll();
  admin?.disconnect();
  if (redis?.owned) await redis.stop();
});

/** A task stream with its group and `n` entries delivered to consumer `W` (pending under it); their ids. */
async function delivered(stream: string, n: number): Promise<string[]> {
  await admin.call('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM');
  for (let i = 0; i < n; i++) await admin.xadd(stream, '*', 'm', `task ${i}`);
  const reply = await admin.call('XREADGROUP', 'GROUP', GROUP, 'W', 'STREAMS', stream, '>');
  return streamsOf(reply)[0]![1].map(([id]) => id);
}

async function pendingIds(stream: string): Promise<string[]> {
  const rows = (await admin.call('XPENDING', stream, GROUP, '-', '+', '100')) as Array<[string, ...unknown[]]>;
  return rows.map(([id]) => id);
}

/** WRITE_RESULTS' arguments: the keys, then ARGV (message, signature, TTL, marker count, group, runs of acks). */
function call(
  results: string,
  markers: readonly string[],
  acks: ReadonlyArray<[stream: string, ids: readonly string[]]>,
): Promise<unknown> {
  const keys = [results, ...markers, ...acks.map(([stream]) => stream)];
  const args = ['message', 'signature', '60000', String(markers.length), GROUP];
  for (const [, ids] of acks) args.push(String(ids.length), ...ids);
  return admin.eval(WRITE_RESULTS, keys.length, ...keys, ...args);
}

describe.skipIf(REDIS_SERVER.skip)('WRITE_RESULTS: results, done markers and acks in one step', () => {
  it('writes the message and the markers, and acks and deletes exactly the entries it lists, in each stream', async () => {
    const ns = namespace();
    const [s1, s2] = [`${ns}:tasks:a`, `${ns}:tasks:b`];
    const ids1 = await delivered(s1, 3);
    const ids2 = await delivered(s2, 2);
    const markers = [`${ns}:done:t1`, `${ns}:done:t2`];
    // Two runs for s1 (as the writer cuts long lists), one for s2; the last entry of s1 is not finished yet.
    const reply = await call(`${ns}:results:P`, markers, [
      [s1, [ids1[0]!]],
      [s1, [ids1[1]!]],
      [s2, ids2],
    ]);
    expect(reply).toBe(0);
    expect(await admin.xrange(`${ns}:results:P`, '-', '+')).toEqual([
      [expect.any(String), ['m', 'message', 's', 'signature']],
    ]);
    for (const m of markers) {
      const ttl = await admin.pttl(m);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);
    }
    expect(await pendingIds(s1)).toEqual([ids1[2]]);
    expect((await admin.xrange(s1, '-', '+')).map(([id]) => id)).toEqual([ids1[2]]);
    expect(await pendingIds(s2)).toEqual([]);
    expect(await admin.xlen(s2)).toBe(0);
  });

  it('a results message Redis refuses (WRONGTYPE) sets no marker and acks nothing', async () => {
    const ns = namespace();
    const stream = `${ns}:tasks:a`;
    const ids = await delivered(stream, 2);
    await admin.set(`${ns}:results:P`, 'not a stream');
    await expect(call(`${ns}:results:P`, [`${ns}:done:t1`], [[stream, ids]])).rejects.toThrow(/WRONGTYPE/);
    expect(await admin.exists(`${ns}:done:t1`)).toBe(0);
    expect(await pendingIds(stream)).toEqual(ids);
    expect(await admin.xlen(stream)).toBe(2);
  });

  it('an ack Redis refuses does not undo the results: its error comes back, and the other acks go in', async () => {
    const ns = namespace();
    const good = `${ns}:tasks:a`;
    const ids = await delivered(good, 1);
    const bad = `${ns}:tasks:b`;
    await admin.set(bad, 'not a stream');
    const reply = await call(
      `${ns}:results:P`,
      [`${ns}:done:t1`],
      [
        [bad, ['1-1']],
        [good, ids],
      ],
    );
    expect(reply).toMatch(/WRONGTYPE/);
    expect(await admin.xlen(`${ns}:results:P`)).toBe(1);
    expect(await admin.exists(`${ns}:done:t1`)).toBe(1);
    expect(await pendingIds(good)).toEqual([]);
  });

  it('through the bridge: entries are acked and deleted with their results, and the origin deletes what it read', async () => {
    const ns = namespace();
    const log = runLog();
    const options = { url: redis.url, secret: SECRET, namespace: ns, ...FAST };
    const worker = fleet.server(new RedisBridge({ ...options, nodeId: 'W' }), 'W', log);
    const producer = fleet.producer(new RedisBridge({ ...options, nodeId: 'P' }));
    await worker.start();
    await producer.start();
    await eventually(() => producer.bridge.canAnyServe(['x']), 5_000, 'P sees W');
    const values = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        producer.submit({ type: 't', requires: ['x'], payload: { op: 'echo', id: `t${i}` } }),
      ),
    );
    expect(values).toHaveLength(40);
    for (let i = 0; i < 40; i++) expect(log.count(`t${i}`)).toBe(1);
    const stream = `${ns}:tasks:x`;
    await eventually(async () => (await admin.xlen(stream)) === 0, 5_000, 'the task entries deleted');
    expect(await pendingIds(stream)).toEqual([]);
    await eventually(async () => (await admin.xlen(`${ns}:results:P`)) === 0, 5_000, 'the results deleted once read');
  });
});
