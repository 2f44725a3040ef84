/**
 * Every Redis reply checked (issue 16): nodes on a real redis-server whose writes fail, at maxmemory under
 * `noeviction` (OOM refuses XADD, SET and scripts, and still allows XACK and XDEL), on keys of the wrong type
 * (WRONGTYPE) and for an ACL user that may not read the `done` markers (NOPERM). Every submit settles, no entry is
 * acked without its result (nor a dead letter without its writes), each task runs once (twice only when its serving
 * node stops while Redis refuses its result), a refused hand-off rejects at once with BridgeWriteError, and the nodes
 * report degraded with Redis's reason while their writes fail and healthy once they are taken again (not before: a
 * reconnect does not hide refused writes, and a write taken does not hide a reconnect).
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  BridgeWriteError,
  RedisBridge,
  type BridgeStatus,
  type RedisBridgeOptions,
  type UnifiedOrchestrator,
  type WireTask,
} from 'unified-orchestrator';
import { MessageSigner } from '../../src/bridge/signing.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { eventually, FAST, Fleet, rejection, runLog, SECRET, type Op } from './helpers.js';

let redis: TestRedis;
const raws: Redis[] = [];
const fleet = new Fleet();

beforeAll(async () => {
  redis = await startRedis();
}, 30_000);
afterEach(async () => {
  await fleet.stopAll();
  // Whatever a test left, the next one starts with a Redis that takes writes.
  const r = raw();
  await r.config('SET', 'maxmemory', '0');
  await r.del('filler');
  for (const c of raws.splice(0)) c.disconnect();
});
afterAll(async () => {
  if (redis?.owned) await redis.stop();
});

/** A raw client, disconnected after the test. */
function raw(): Redis {
  const r = new Redis(redis.url);
  raws.push(r);
  return r;
}

/**
 * Timings for these tests: fast beats, and registry entries that outlive a few seconds of refused writes (a node whose
 * entry expired is no longer handed work, which is not what these tests are about).
 */
const TIMINGS = { ...FAST, nodeTtlMs: 15_000, reclaimIdleMs: 1_000 } as const;

function bridge(ns: string, nodeId: string, extra: Partial<RedisBridgeOptions> = {}): RedisBridge {
  return new RedisBridge({
    url: redis.url,
    secret: SECRET,
    namespace: ns,
    nodeId,
    ...TIMINGS,
    // Named, so that a test can find (and kill) this node's connections in CLIENT LIST.
    redisOptions: { connectionName: `${ns}-${nodeId}` },
    ...extra,
  });
}

/** The states a node's bridge went through, in order, each with the phase of the test it came in. */
function states(o: UnifiedOrchestrator, phase: () => string): Array<BridgeStatus & { phase: string }> {
  const seen: Array<BridgeStatus & { phase: string }> = [];
  o.on('bridge:state', (s) => seen.push({ ...s, phase: phase() }));
  return seen;
}

/** A (producer) and B (serving `x`), both started, A seeing B. */
async function pair(ns: string) {
  const log = runLog();
  const b = fleet.server(bridge(ns, 'B'), 'B', log);
  const a = fleet.producer(bridge(ns, 'A'));
  await b.start();
  await a.start();
  await eventually(() => a.bridge.canAnyServe(['x']), 5_000, 'A sees B');
  return { a, b, log };
}

const task = (payload: Op) => ({ type: 't', requires: ['x'], payload });

/** Each submit's outcome, recorded as it settles; `count` counts settlements (a second one would be a bug). */
function track<T>(promises: ReadonlyArray<Promise<T>>) {
  const outcomes: Array<{ ok: true; value: T } | { ok: false; error: unknown } | undefined> = promises.map(
    () => undefined,
  );
  let count = 0;
  for (const [i, p] of promises.entries()) {
    void p.then(
      (value) => {
        count++;
        outcomes[i] = { ok: true, value };
      },
      (error: unknown) => {
        count++;
        outcomes[i] = { ok: false, error };
      },
    );
  }
  return { outcomes, settled: () => count };
}

/**
 * How many EVAL calls failed so far (INFO commandstats): in these tests only a serving node's result writes are
 * scripts, so this counts its refused attempts to write results.
 */
async function failedEvals(r: Redis): Promise<number> {
  const info = await r.info('commandstats');
  return Number(/cmdstat_eval:.*\bfailed_calls=(\d+)/.exec(info)?.[1] ?? 0);
}

/** Pending entries of the `workers` group of `stream` (XPENDING summary); 0 before the group exists. */
async function pendingCount(r: Redis, stream: string): Promise<number> {
  try {
    const summary = (await r.call('XPENDING', stream, 'workers')) as [number, ...unknown[]];
    return Number(summary[0]);
  } catch (error) {
    if (String(error).includes('NOGROUP')) return 0;
    throw error;
  }
}

/**
 * Puts Redis at its maxmemory under noeviction: a filler of 8 MB, then maxmemory 4 MB below what is used, so that
 * the bridge's own small allocations and frees cannot bring it back under. Checked: a SET is refused with OOM.
 */
async function fillUp(r: Redis): Promise<void> {
  await r.config('SET', 'maxmemory-policy', 'noeviction');
  // Made in Redis (SETRANGE pads with zeros): a large SET would leave as large a query buffer, which Redis frees a
  // few seconds later, and memory would then be back under the limit.
  await r.setrange('filler', 8 * 1024 * 1024 - 1, 'f');
  const used = Number(/used_memory:(\d+)/.exec(await r.info('memory'))?.[1]);
  await r.config('SET', 'maxmemory', String(used - 4 * 1024 * 1024));
  await expect(r.set('probe', '1')).rejects.toThrow(/^OOM/);
}

/** Raises maxmemory again (no limit): Redis takes writes again. */
async function freeUp(r: Redis): Promise<void> {
  await r.config('SET', 'maxmemory', '0');
  await r.del('filler');
}

/** How many XADD calls Redis rejected so far (INFO commandstats: refused before running, as at maxmemory). */
async function rejectedXadds(r: Redis): Promise<number> {
  const info = await r.info('commandstats');
  return Number(/cmdstat_xadd:.*\brejected_calls=(\d+)/.exec(info)?.[1] ?? 0);
}

/** A signed task entry from origin `A` for class `x`, as A would have written it; returns its id. */
async function handOffEntry(r: Redis, ns: string, taskId: string, payload: Op): Promise<string> {
  const task: WireTask = {
    type: 't',
    requires: ['x'],
    prefers: [],
    priority: 0,
    payload,
    timeoutMs: null,
    maxAttempts: 1,
  };
  const sealed = new MessageSigner(SECRET, ns, 60_000).seal('tasks', { origin: 'A', tasks: [{ taskId, task }] });
  return (await r.xadd(`${ns}:tasks:x`, '*', 'm', sealed.m, 's', sealed.s))!;
}

/** Kills the connections of the node whose connections are named `name` (see `bridge`), not the test's. */
async function killConnections(r: Redis, name: string): Promise<number> {
  const list = (await r.client('LIST')) as string;
  let killed = 0;
  for (const line of list.split('\n')) {
    const id = /\bid=(\d+)/.exec(line)?.[1];
    if (id && line.includes(` name=${name} `)) {
      await r.client('KILL', 'ID', id);
      killed++;
    }
  }
  return killed;
}

/** `promise`, or a rejection once `ms` passed: "at once" in a test, without waiting for the test's own timeout. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('RedisBridge: Redis refuses writes', () => {
  it('at maxmemory (noeviction): results are kept and retried, never acked without them; new hand-offs reject with BRIDGE_WRITE_FAILED; degraded with the reason, healthy after; each task runs once', async () => {
    const ns = namespace();
    const r = raw();
    const stream = `${ns}:tasks:x`;
    const { a, b, log } = await pair(ns);
    let phase = 'before';
    const statesA = states(a, () => phase);
    const statesB = states(b, () => phase);

    // N tasks running on B (held at the gate), handed off while Redis took writes.
    const N = 40;
    const ids = Array.from({ length: N }, (_, i) => `g${i}`);
    const running = track(ids.map((id) => a.submit(task({ op: 'gate', id }))));
    await eventually(() => log.runs.length === N, 10_000, 'all N running on B');
    const pendingBefore = await pendingCount(r, stream);
    expect(pendingBefore).toBeGreaterThan(0);

    phase = 'oom';
    await fillUp(r);
    // Hand-offs refused by Redis reject at once with the typed error, and never run.
    const M = 10;
    const refusedIds = Array.from({ length: M }, (_, i) => `refused${i}`);
    const refused = track(refusedIds.map((id) => a.submit(task({ op: 'echo', id }))));
    await eventually(() => refused.settled() === M, 5_000, 'every hand-off refused by Redis settles');
    for (const outcome of refused.outcomes) {
      expect(outcome?.ok).toBe(false);
      const error = (outcome as { error: unknown }).error as BridgeWriteError;
      expect(error).toBeInstanceOf(BridgeWriteError);
      expect(error.code).toBe('BRIDGE_WRITE_FAILED');
      expect(error.command).toBe('XADD');
      expect(error.reply).toMatch(/^OOM/);
      expect(error.message).toMatch(/maxmemory/);
    }
    await eventually(
      () => /Redis refuses writes: OOM/.test(a.bridge.status().detail ?? ''),
      5_000,
      'A degraded with the reason',
    );
    expect(a.bridge.status().status).toBe('degraded');

    // The tasks finish while Redis refuses their results: B keeps them and retries, and acks nothing.
    const failedBefore = await failedEvals(r);
    log.open();
    await eventually(() => b.bridge.stats().served === N, 10_000, 'B ran the N tasks');
    await eventually(async () => (await failedEvals(r)) >= failedBefore + 3, 10_000, 'B retried its refused results');
    await eventually(
      () => /Redis refuses writes: OOM/.test(b.bridge.status().detail ?? ''),
      5_000,
      'B degraded with the reason',
    );
    // A reconnect while writes still fail does not make B healthy.
    expect(await killConnections(r, `${ns}-B`)).toBeGreaterThan(0);
    const failedAfterKill = await failedEvals(r);
    await eventually(
      async () => (await failedEvals(r)) >= failedAfterKill + 3,
      10_000,
      'B retried after its reconnect',
    );
    expect(b.bridge.status().status).toBe('degraded');
    expect(running.settled()).toBe(0);
    expect(await pendingCount(r, stream)).toBe(pendingBefore);
    expect(await r.xlen(`${ns}:results:A`)).toBe(0);

    // Memory back: the retries go through, every submit resolves with its result, and the entries are acked.
    phase = 'freed';
    await freeUp(r);
    await eventually(() => running.settled() === N, 10_000, 'every running submit settles once Redis takes writes');
    expect(running.outcomes).toEqual(ids.map((id) => ({ ok: true, value: { node: 'B', id, v: 'gate' } })));
    await eventually(async () => (await pendingCount(r, stream)) === 0, 5_000, 'every entry acked');
    expect(await r.xlen(stream)).toBe(0);
    await eventually(() => b.bridge.status().status === 'healthy', 5_000, 'B healthy again');
    await eventually(() => a.bridge.status().status === 'healthy', 5_000, 'A healthy again');

    for (const id of ids) expect(log.count(id)).toBe(1);
    for (const id of refusedIds) expect(log.count(id)).toBe(0);
    expect(refused.settled() + running.settled()).toBe(N + M);
    // Degraded with the reason during OOM, never healthy then; healthy only once memory was back.
    for (const seen of [statesA, statesB]) {
      expect(seen.filter((s) => s.phase === 'oom' && s.status === 'healthy')).toEqual([]);
      expect(seen.some((s) => s.phase === 'oom' && /Redis refuses writes: OOM/.test(s.detail ?? ''))).toBe(true);
      expect(seen.at(-1)).toMatchObject({ status: 'healthy', phase: 'freed' });
    }
  }, 60_000);

  it('WRONGTYPE on the class stream: the hand-off rejects at once with BRIDGE_WRITE_FAILED naming the key, and never runs', async () => {
    const ns = namespace();
    const r = raw();
    const stream = `${ns}:tasks:x`;
    await r.set(stream, 'not a stream');
    const { a, log } = await pair(ns);
    const seen = states(a, () => 'after');
    const error = (await rejection(
      within(a.submit(task({ op: 'echo', id: 'wrong' })), 3_000, 'the refused hand-off'),
    )) as BridgeWriteError;
    expect(error).toBeInstanceOf(BridgeWriteError);
    expect(error.code).toBe('BRIDGE_WRITE_FAILED');
    expect(error.command).toBe('XADD');
    expect(error.key).toBe(stream);
    expect(error.reply).toMatch(/^WRONGTYPE/);
    expect(error.message).toMatch(/namespace/);
    expect(seen.some((s) => s.status === 'degraded' && /WRONGTYPE/.test(s.detail ?? ''))).toBe(true);
    expect(log.count('wrong')).toBe(0);
    // Fixed (the key deleted): hand-offs go through again.
    await r.del(stream);
    await expect(a.submit(task({ op: 'echo', id: 'right' }))).resolves.toEqual({ node: 'B', id: 'right' });
  });

  it('WRONGTYPE on the classes set: the class is not announced and its hand-off rejects with BRIDGE_WRITE_FAILED', async () => {
    const ns = namespace();
    const r = raw();
    const { a, log } = await pair(ns);
    await r.set(`${ns}:classes`, 'not a set');
    const error = (await rejection(
      within(a.submit(task({ op: 'echo', id: 'unannounced' })), 3_000, 'the unannounced hand-off'),
    )) as BridgeWriteError;
    expect(error).toBeInstanceOf(BridgeWriteError);
    expect(error.command).toBe('SADD');
    expect(error.reply).toMatch(/^WRONGTYPE/);
    expect(await r.exists(`${ns}:tasks:x`)).toBe(0);
    // Not marked known: once the key is fixed, the class is announced and its hand-offs run.
    await r.del(`${ns}:classes`);
    await expect(a.submit(task({ op: 'echo', id: 'announced' }))).resolves.toEqual({ node: 'B', id: 'announced' });
    expect(await r.sismember(`${ns}:classes`, 'x')).toBe(1);
    expect(log.count('unannounced')).toBe(0);
  });

  it("WRONGTYPE on the origin's results stream: the result is retried and the entry stays pending until the key is fixed; then it arrives once", async () => {
    const ns = namespace();
    const r = raw();
    const stream = `${ns}:tasks:x`;
    const results = `${ns}:results:A`;
    const { a, b, log } = await pair(ns);
    await r.set(results, 'not a stream');
    const submitted = track([a.submit(task({ op: 'echo', id: 'kept', v: 1 }))]);
    await eventually(() => log.count('kept') === 1, 5_000, 'B ran it');
    const before = await failedEvals(r);
    await eventually(async () => (await failedEvals(r)) >= before + 3, 5_000, 'B retried its refused result');
    await eventually(() => /WRONGTYPE/.test(b.bridge.status().detail ?? ''), 5_000, 'B degraded with the reason');
    // It stays so while the result waits, whatever else B writes meanwhile: its heartbeat rewrites its registry entry.
    const entry = `${ns}:node:B`;
    const written = new Set([await r.get(entry)]);
    await eventually(async () => (written.add(await r.get(entry)), written.size >= 3), 5_000, 'B beats meanwhile');
    expect(b.bridge.status()).toEqual({ status: 'degraded', detail: expect.stringMatching(/WRONGTYPE/) });
    expect(await pendingCount(r, stream)).toBe(1);
    expect(submitted.settled()).toBe(0);
    await r.del(results);
    await eventually(() => submitted.settled() === 1, 5_000, 'the submit settles once the key is fixed');
    expect(submitted.outcomes).toEqual([{ ok: true, value: { node: 'B', id: 'kept', v: 1 } }]);
    await eventually(async () => (await pendingCount(r, stream)) === 0, 5_000, 'the entry acked');
    await eventually(() => b.bridge.status().status === 'healthy', 5_000, 'B healthy again');
    expect(log.count('kept')).toBe(1);
  });

  it('a write that succeeds while a connection is still reconnecting does not make the node healthy', async () => {
    const ns = namespace();
    const r = raw();
    const { b } = await pair(ns);
    const clients = Number(/connected_clients:(\d+)/.exec(await r.info('clients'))?.[1]);
    const subscriber = ((await r.client('LIST')) as string)
      .split('\n')
      .find((line) => line.includes(` name=${ns}-B `) && /\bsub=[1-9]/.test(line));
    const id = /\bid=(\d+)/.exec(subscriber ?? '')?.[1];
    expect(id).toBeDefined();
    // At once: B's subscriber cut, and no room left for it to come back (maxclients).
    const admin = raw();
    await admin
      .multi()
      .client('KILL', 'ID', id!)
      .config('SET', 'maxclients', String(clients - 1))
      .exec();
    try {
      await eventually(() => b.bridge.status().status === 'degraded', 5_000, 'B degraded while reconnecting');
      // B's heartbeat keeps writing its registry entry through its commands connection meanwhile.
      const entry = `${ns}:node:B`;
      const written = new Set([await r.get(entry)]);
      await eventually(async () => (written.add(await r.get(entry)), written.size >= 4), 5_000, 'B keeps beating');
      expect(b.bridge.status()).toEqual({ status: 'degraded', detail: 'reconnecting to Redis' });
    } finally {
      await admin.config('SET', 'maxclients', '10000');
    }
    await eventually(() => b.bridge.status().status === 'healthy', 5_000, 'B healthy once it reconnected');
  });

  it('a dead letter at maxmemory: the entry is neither acked nor deleted until the dead stream and the results take it, then dead-lettered once', async () => {
    const ns = namespace();
    const r = raw();
    const stream = `${ns}:tasks:x`;
    // An entry a dead node ("ghost") took four times; B allows three deliveries, so B's claim dead-letters it.
    await r.call('XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM');
    const id = await handOffEntry(r, ns, 'A-doomed', { op: 'echo', id: 'doomed' });
    await r.call('XREADGROUP', 'GROUP', 'workers', 'ghost', 'COUNT', '1', 'STREAMS', stream, '>');
    for (let i = 1; i < 4; i++) await r.call('XCLAIM', stream, 'workers', 'ghost', '0', id);
    await r.sadd(`${ns}:classes`, 'x');
    const log = runLog();
    const b = fleet.server(bridge(ns, 'B', { maxDeliveries: 3 }), 'B', log);
    await b.start();
    await fillUp(r);
    const rejectedBefore = await rejectedXadds(r);
    // B claims it once idle (reclaimIdleMs) and tries to dead-letter it: Redis refuses the XADDs.
    await eventually(async () => (await rejectedXadds(r)) >= rejectedBefore + 2, 10_000, 'B tried to dead-letter it');
    expect(await r.xlen(stream)).toBe(1);
    expect(await pendingCount(r, stream)).toBe(1);
    expect(await r.exists(`${ns}:dead`, `${ns}:results:A`)).toBe(0);
    expect(b.bridge.stats().deadLettered).toBe(0);
    await eventually(() => /Redis refuses writes: OOM/.test(b.bridge.status().detail ?? ''), 5_000, 'B degraded');

    await freeUp(r);
    await eventually(() => b.bridge.stats().deadLettered === 1, 10_000, 'dead-lettered once Redis takes writes');
    await eventually(async () => (await r.xlen(stream)) === 0, 5_000, 'the entry deleted');
    expect(await pendingCount(r, stream)).toBe(0);
    const dead = await r.xrange(`${ns}:dead`, '-', '+');
    expect(dead).toHaveLength(1);
    expect(dead[0]![1]).toEqual(expect.arrayContaining(['entry', id]));
    const results = await r.xrange(`${ns}:results:A`, '-', '+');
    expect(results).toHaveLength(1);
    expect(results[0]![1][1]).toContain('TASK_DEAD_LETTERED');
    expect(log.runs).toEqual([]);
    await eventually(() => b.bridge.status().status === 'healthy', 5_000, 'B healthy again');
    expect(b.bridge.stats().deadLettered).toBe(1);
  });

  it('a done-marker read that fails (NOPERM) is not taken for "not done": the node leaves the entries pending and runs nothing; another node runs each once', async () => {
    const ns = namespace();
    const admin = raw();
    // B's user may write the `done` markers but not read them: its MGET fails; everything else it may do.
    const user = `${ns}-blind`;
    await admin.call(
      'ACL',
      'SETUSER',
      user,
      'on',
      '>blind-password',
      'allcommands',
      'allchannels',
      `~${ns}:[^d]*`,
      `~${ns}:dead`,
      `%W~${ns}:done:*`,
    );
    try {
      const url = new URL(redis.url);
      url.username = user;
      url.password = 'blind-password';
      const logB = runLog();
      const b = fleet.server(bridge(ns, 'B', { url: url.href, maxDeliveries: 100 }), 'B', logB);
      const a = fleet.producer(bridge(ns, 'A'));
      await b.start();
      await a.start();
      await eventually(() => a.bridge.canAnyServe(['x']), 5_000, 'A sees B');
      const K = 5;
      const ids = Array.from({ length: K }, (_, i) => `blind${i}`);
      const submitted = track(ids.map((id) => a.submit(task({ op: 'echo', id }))));
      await eventually(async () => (await admin.xlen(`${ns}:tasks:x`)) > 0, 5_000, 'handed off');
      await eventually(
        async () => (await pendingCount(admin, `${ns}:tasks:x`)) === (await admin.xlen(`${ns}:tasks:x`)),
        5_000,
        'B took the entries',
      );
      // C, which can read the markers, reclaims them once idle and runs each once; B never runs one.
      const logC = runLog();
      const c = fleet.server(bridge(ns, 'C', { maxDeliveries: 100 }), 'C', logC);
      await c.start();
      await eventually(() => submitted.settled() === K, 15_000, 'every submit settles');
      expect(submitted.outcomes).toEqual(ids.map((id) => ({ ok: true, value: { node: 'C', id } })));
      expect(logB.runs).toEqual([]);
      for (const id of ids) expect(logC.count(id)).toBe(1);
    } finally {
      await fleet.stopAll();
      await admin.call('ACL', 'DELUSER', user);
    }
  }, 30_000);

  it('a serving node that stops while Redis refuses its results gives them up: its stop returns, the entries stay pending, and another node runs them', async () => {
    const ns = namespace();
    const r = raw();
    const stream = `${ns}:tasks:x`;
    const { a, b, log } = await pair(ns);
    const K = 5;
    const ids = Array.from({ length: K }, (_, i) => `given-up${i}`);
    const submitted = track(ids.map((id) => a.submit(task({ op: 'gate', id }))));
    await eventually(() => log.runs.length === K, 5_000, 'all running on B');
    const entries = await r.xlen(stream);
    await fillUp(r);
    const failedBefore = await failedEvals(r);
    log.open();
    await eventually(async () => (await failedEvals(r)) >= failedBefore + 2, 5_000, 'B retries its results');
    await within(b.stop({ timeoutMs: 5_000 }), 8_000, "B's stop");
    expect(await pendingCount(r, stream)).toBe(entries);
    expect(await r.xlen(stream)).toBe(entries);
    expect(submitted.settled()).toBe(0);

    await freeUp(r);
    const logC = runLog();
    const c = fleet.server(bridge(ns, 'C'), 'C', logC);
    await c.start();
    logC.open();
    await eventually(() => submitted.settled() === K, 10_000, 'every submit settles');
    expect(submitted.outcomes).toEqual(ids.map((id) => ({ ok: true, value: { node: 'C', id, v: 'gate' } })));
    // Run twice, as documented: once on B, whose results Redis refused, and once on C.
    for (const id of ids) expect([log.count(id), logC.count(id)]).toEqual([1, 1]);
    await eventually(async () => (await pendingCount(r, stream)) === 0, 5_000, 'every entry acked');
  });
});
