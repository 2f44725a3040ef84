/**
 * Replay-proof task entries and encrypted messages (issue 16), on a real redis-server. A raw ioredis client plays an
 * attacker with write access to Redis but without the secret: it writes old task entries back into their stream (a
 * dead-lettered one, a completed one after its done marker is gone, one with its old id in a stream made again), and
 * reads everything Redis holds to look for a payload. Executions, settlements and rejections are counted.
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RemoteTaskError, type RedisBridgeOptions } from 'unified-orchestrator';
import { ENCRYPTED_PREFIX, MessageSigner } from '../../src/bridge/signing.js';
import { namespace, REDIS_SERVER } from '../support/redis.js';
import { redisSuite } from './redis-suite.js';
import { eventually, rejection, runLog, SECRET, type Op } from './helpers.js';

const suite = redisSuite();
const { fleet, raw, bridge } = suite;

const task = (payload: Op, extra: Record<string, unknown> = {}) => ({ type: 't', requires: ['x'], payload, ...extra });

type Fields = Record<string, string>;

/** Entries of a stream as `[id, {field: value}]`. */
async function entries(r: Redis, key: string): Promise<Array<[string, Fields]>> {
  const list = await r.xrange(key, '-', '+');
  return list.map(([id, flat]) => [id, object(flat)]);
}

function object(flat: string[]): Fields {
  const o: Fields = {};
  for (let i = 0; i + 1 < flat.length; i += 2) o[flat[i]!] = flat[i + 1]!;
  return o;
}

/** The task id and `ts` of a plain (unencrypted) task message. */
function sealedTask(m: string): { taskId: string; ts: number } {
  const body = JSON.parse(m) as { tasks: Array<{ taskId: string }>; ts: number };
  return { taskId: body.tasks[0]!.taskId, ts: body.ts };
}

/** A signed registry entry for a node that is not there, so that A hands off tasks of `x` that nobody reads yet. */
async function phantom(r: Redis, ns: string, encrypt = false): Promise<void> {
  const signer = new MessageSigner(SECRET, ns, 60_000, { encrypt });
  const info = {
    nodeId: 'ghost',
    roles: ['ghost'],
    capabilities: ['x'],
    serves: [['x']],
    freeSlots: 1,
    heartbeatAt: Date.now(),
  };
  await r.set(`${ns}:node:ghost`, JSON.stringify(signer.seal('node', info)), 'PX', 3_000);
  await r.sadd(`${ns}:nodes`, 'ghost');
}

/**
 * A producer A whose one task of `x` sits in the stream, handed off while only a phantom node could serve it, and a
 * serving node B (with `bExtra`), not started. Returns the entry as Redis holds it.
 */
async function waitingEntry(ns: string, payload: Op, bExtra: Partial<RedisBridgeOptions> = {}, encrypt = false) {
  const r = raw();
  const stream = `${ns}:tasks:x`;
  await r.call('XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM');
  const log = runLog();
  const b = fleet.server(bridge(ns, 'B', { encrypt, ...bExtra }), 'B', log);
  const a = fleet.producer(bridge(ns, 'A', { encrypt }));
  await a.start();
  await phantom(r, ns, encrypt);
  await eventually(async () => (await a.cluster(), a.bridge.canAnyServe(['x'])), 5_000, 'A sees the phantom');
  const result = a.submit(task(payload));
  result.catch(() => {});
  await eventually(async () => (await r.xlen(stream)) === 1, 5_000, 'the hand-off is in the stream');
  const [[id, fields]] = (await entries(r, stream)) as [[string, Fields]];
  return { r, a, b, log, result, stream, id, fields };
}

/** Writes `fields` (an old entry) back into `stream` with a new id, or with `id`. */
async function writeBack(r: Redis, stream: string, fields: Fields, id = '*'): Promise<void> {
  await r.xadd(stream, id, 'm', fields['m']!, 's', fields['s']!);
}

/** Waits until `stream` holds no entry and nothing is pending in its group: a written-back entry was dealt with. */
async function drained(r: Redis, stream: string): Promise<void> {
  await eventually(
    async () => (await r.xlen(stream)) === 0 && ((await r.call('XPENDING', stream, 'workers')) as [number])[0] === 0,
    5_000,
    'the stream is drained',
  );
}

const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('RedisBridge: old task entries written back are not run', () => {
  it('a dead-lettered entry copied back from the dead stream is refused: its done marker, and later its age, stop it', async () => {
    const ns = namespace();
    // B refuses entries added more than 3 s after they were sealed; dead-letters at the first claim past 1 delivery.
    const { r, a, b, log, result, stream, id } = await waitingEntry(
      ns,
      { op: 'echo', id: 'poison' },
      { maxDeliveries: 1, maxMessageAgeMs: 3_000 },
    );
    // A node took it and died, twice.
    await r.call('XREADGROUP', 'GROUP', 'workers', 'ghost', 'STREAMS', stream, '>');
    await r.call('XCLAIM', stream, 'workers', 'ghost', '0', id);
    await b.start();
    expect(((await rejection(result)) as RemoteTaskError).code).toBe('TASK_DEAD_LETTERED');
    // Counted once Redis took the dead letter: its result can reach A a moment before B's count.
    await eventually(() => b.bridge.stats().deadLettered === 1, 2_000, 'B counted the dead letter');
    const [[, dead]] = (await entries(r, `${ns}:dead`)) as [[string, Fields]];
    const { taskId, ts } = sealedTask(dead['m']!);
    // Dead-lettering ended the task: its done marker is set.
    expect(await r.exists(`${ns}:done:${taskId}`)).toBe(1);
    const rejectedBefore = b.bridge.stats().rejected;

    // Copied back at once (within maxMessageAgeMs of its sealing): the done marker refuses it.
    expect(Date.now() - ts).toBeLessThan(2_500);
    await writeBack(r, stream, dead);
    await drained(r, stream);
    expect(b.bridge.stats().rejected).toBe(rejectedBefore + 1);

    // The marker gone (expired), and copied back later than maxMessageAgeMs: the entry's id and ts disagree.
    await r.del(`${ns}:done:${taskId}`);
    await eventually(() => Date.now() - ts > 3_200, 5_000, 'the message is older than maxMessageAgeMs');
    await writeBack(r, stream, dead);
    await drained(r, stream);
    expect(b.bridge.stats().rejected).toBe(rejectedBefore + 2);

    expect(log.runs).toEqual([]);
    expect(b.bridge.stats().served).toBe(0);
    expect(b.bridge.stats().deadLettered).toBe(1);
    // The submitter heard TASK_DEAD_LETTERED once; the failure sent for the late copy matched nothing it waits for.
    expect(a.bridge.stats()).toMatchObject({ handedOff: 1, rejected: 0 });
  });

  it('a completed task written back after its done marker expired is not run again (a new id, or its old id)', async () => {
    const ns = namespace();
    // Done markers live 1.5 s here; entries added more than 500 ms after sealing are refused.
    const { r, a, b, log, result, stream, id, fields } = await waitingEntry(
      ns,
      { op: 'echo', id: 'once', v: 1 },
      { doneTtlMs: 1_500, maxMessageAgeMs: 500 },
    );
    await b.start();
    await expect(result).resolves.toEqual({ node: 'B', id: 'once', v: 1 });
    expect(log.count('once')).toBe(1);
    const { taskId } = sealedTask(fields['m']!);
    expect(await r.exists(`${ns}:done:${taskId}`)).toBe(1);

    // The marker deleted (as if expired), the entry written back with a new id: its id and ts disagree.
    await r.del(`${ns}:done:${taskId}`);
    await eventually(() => Date.now() - sealedTask(fields['m']!).ts > 700, 5_000, 'past maxMessageAgeMs');
    await writeBack(r, stream, fields);
    await drained(r, stream);
    expect(b.bridge.stats().rejected).toBe(1);

    // The marker expired for real; the stream deleted and made again, the entry written back with its own old id: the
    // id agrees with its ts, but it was sealed longer than doneTtlMs ago.
    await eventually(async () => (await r.exists(`${ns}:done:${taskId}`)) === 0, 5_000, 'the marker expired');
    expect(Date.now() - sealedTask(fields['m']!).ts).toBeGreaterThan(1_500);
    await r.del(stream);
    await writeBack(r, stream, fields, id);
    await eventually(() => b.bridge.stats().rejected === 2, 5_000, 'the entry with its old id is refused');
    await drained(r, stream);

    expect(log.count('once')).toBe(1);
    expect(b.bridge.stats().served).toBe(1);
    // A was waiting for none of them: the failures sent for the refused entries were dropped.
    expect(a.bridge.stats().rejected).toBe(0);
  });

  it('a genuine entry older than doneTtlMs is not run, and its waiting submitter gets TASK_DELIVERY_STALE', async () => {
    const ns = namespace();
    const { r, b, log, result, stream } = await waitingEntry(ns, { op: 'echo', id: 'too-old' }, { doneTtlMs: 400 });
    await eventually(
      async () => Date.now() - sealedTask((await entries(r, stream))[0]![1]['m']!).ts > 600,
      5_000,
      'the entry is older than doneTtlMs',
    );
    await b.start();
    const error = (await rejection(result)) as RemoteTaskError;
    expect(error).toBeInstanceOf(RemoteTaskError);
    expect(error.code).toBe('TASK_DELIVERY_STALE');
    expect(error.message).toMatch(/doneTtlMs \(400\)/);
    expect(error.node).toBe('B');
    await drained(r, stream);
    expect(log.runs).toEqual([]);
    expect(b.bridge.stats().rejected).toBe(1);
    expect(b.bridge.stats().served).toBe(0);
  });

  it('an old entry of an origin gone for good is refused without making a results stream nobody reads', async () => {
    const ns = namespace();
    const r = raw();
    const stream = `${ns}:tasks:x`;
    const log = runLog();
    await r.call('XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM');
    await r.sadd(`${ns}:classes`, 'x');
    const b = fleet.server(bridge(ns, 'B', { doneTtlMs: 1_000 }), 'B', log);
    await b.start();
    // An entry sealed 5 s ago by node Z, long gone, written with an id of that time.
    const signer = new MessageSigner(SECRET, ns, 60_000);
    const realNow = Date.now;
    const sealedAt = realNow() - 5_000;
    Date.now = () => sealedAt;
    let sealed: { m: string; s: string };
    try {
      const body = {
        origin: 'Z',
        tasks: [{ taskId: 'z-1', task: { type: 't', requires: ['x'], payload: { op: 'echo', id: 'z' } } }],
      };
      sealed = signer.seal('tasks', body);
    } finally {
      Date.now = realNow;
    }
    await r.xadd(stream, `${sealedAt}-0`, 'm', sealed.m, 's', sealed.s);
    await eventually(() => b.bridge.stats().rejected === 1, 5_000, 'the entry is refused');
    await drained(r, stream);
    expect(log.runs).toEqual([]);
    expect(await r.exists(`${ns}:results:Z`)).toBe(0);
    expect(await r.exists(`${ns}:done:z-1`)).toBe(1);
  });
});

/** Every value Redis holds under `ns`: stream entries' fields, strings, hash fields and values, set members. */
async function everything(r: Redis, ns: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${ns}*`, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      out.push(key);
      const type = await r.type(key);
      if (type === 'stream') for (const [, flat] of await r.xrange(key, '-', '+')) out.push(...flat);
      else if (type === 'string') out.push((await r.get(key)) ?? '');
      else if (type === 'hash') out.push(...Object.entries(await r.hgetall(key)).flat());
      else if (type === 'set') out.push(...(await r.smembers(key)));
      else out.push(`unread ${type}`);
    }
  } while (cursor !== '0');
  return out;
}

describeRedis('RedisBridge: encrypt', () => {
  it('with encrypt on, no payload, result or control text is readable anywhere in Redis, and tasks still run', async () => {
    const ns = namespace();
    const marker = 'plaintext-marker-7c1d';
    const { r, a, b, log, result, stream } = await waitingEntry(
      ns,
      { op: 'echo', id: `task-${marker}`, v: `value-${marker}` },
      {},
      true,
    );
    await a.broadcast({ kind: 'halt', reason: `reason-${marker}` });
    await a.broadcast({ kind: 'resume', reason: `resume-${marker}` });
    // The results message is deleted once A read it: a second reader catches it as it is added.
    const spy = raw({ connectionName: 'spy' });
    const caught = spy.xread('BLOCK', 10_000, 'STREAMS', `${ns}:results:A`, '$');
    await eventually(async () => /name=spy .*cmd=xread/.test(String(await r.client('LIST'))), 5_000, 'the spy reads');
    const before = await everything(r, ns);
    await b.start();
    await expect(result).resolves.toEqual({ node: 'B', id: `task-${marker}`, v: `value-${marker}` });
    expect(log.count(`task-${marker}`)).toBe(1);
    const results = ((await caught) ?? []).flatMap(([, list]) => list.flatMap(([, flat]) => flat));
    expect(results.length).toBeGreaterThan(0);
    const after = await everything(r, ns);

    const seen = [...before, ...results, ...after];
    expect(seen.filter((v) => v.includes(marker))).toEqual([]);
    // What was there: the task entry, the standing halt/resume and the registry entries, all sealed as ciphertext.
    expect(before.some((v) => v.startsWith(ENCRYPTED_PREFIX))).toBe(true);
    const sealed = (raw: string) => (JSON.parse(raw) as { m: string }).m;
    expect(sealed((await r.get(`${ns}:node:B`))!).startsWith(ENCRYPTED_PREFIX)).toBe(true);
    for (const v of Object.values(await r.hgetall(`${ns}:control:standing`)))
      expect(sealed(v).startsWith(ENCRYPTED_PREFIX)).toBe(true);
    expect(object(results)['m']!.startsWith(ENCRYPTED_PREFIX)).toBe(true);
    expect(await r.xlen(stream)).toBe(0);
    expect(a.bridge.stats().rejected + b.bridge.stats().rejected).toBe(0);
  });

  it('a node without encrypt refuses an encrypted task entry, counts it, and says why in its status', async () => {
    const ns = namespace();
    // A (and the phantom) encrypt; B does not.
    const r = raw();
    const stream = `${ns}:tasks:x`;
    await r.call('XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM');
    const log = runLog();
    const b = fleet.server(bridge(ns, 'B'), 'B', log);
    const a = fleet.producer(bridge(ns, 'A', { encrypt: true }));
    await a.start();
    await phantom(r, ns, true);
    await eventually(async () => (await a.cluster(), a.bridge.canAnyServe(['x'])), 5_000, 'A sees the phantom');
    a.submit(task({ op: 'echo', id: 'mismatch' })).catch(() => {});
    await eventually(async () => (await r.xlen(stream)) === 1, 5_000, 'the hand-off is in the stream');
    await b.start();
    await drained(r, stream);
    expect(log.runs).toEqual([]);
    expect(b.bridge.stats().rejected).toBeGreaterThanOrEqual(1);
    const status = b.bridge.status();
    expect(status.status).toBe('degraded');
    expect(status.detail).toMatch(/refused an encrypted (tasks|node) message.*`encrypt` option as this one \(false\)/);
  });
});
