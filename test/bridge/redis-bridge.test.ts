/**
 * RedisBridge behaviour that has no MemoryBridge counterpart, against a real redis-server: signed messages (forged,
 * unsigned, foreign, stale and replayed ones are dropped and counted), done markers against replayed tasks,
 * reclaim of a dead node's entries, dead letters after maxDeliveries, cleanup on stop, the host's own client,
 * and option validation. A raw ioredis client plays the attacker and the dead node ("ghost").
 */
import { Redis, type RedisOptions } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import {
  NoCapableAgentError,
  QueueFullError,
  RedisBridge,
  RemoteTaskError,
  UnifiedOrchestrator,
  ValidationError,
  type ControlMessage,
  type NodeStatus,
  type RedisBridgeOptions,
  type WireTask,
} from 'unified-orchestrator';
import { MessageSigner } from '../../src/bridge/signing.js';
import { wait } from '../support/agents.js';
import { namespace, REDIS_SERVER } from '../support/redis.js';
import { redisSuite } from './redis-suite.js';
import { eventually, FAST, rejection, runLog, SECRET, type Op } from './helpers.js';

const suite = redisSuite();
const { fleet, raw, bridge } = suite;

/** A (producer) and B (serving `x`) on namespace `ns`; B is not started when `startB` is false. */
async function pair(ns: string, options: { startB?: boolean; bExtra?: Partial<RedisBridgeOptions> } = {}) {
  const log = runLog();
  const b = fleet.server(bridge(ns, 'B', options.bExtra), 'B', log);
  const a = fleet.producer(bridge(ns, 'A'));
  if (options.startB !== false) await b.start();
  await a.start();
  if (options.startB !== false) await eventually(() => a.bridge.canAnyServe(['x']), 5_000, 'A sees B');
  return { a, b, log };
}

const task = (payload: Op, extra: Record<string, unknown> = {}) => ({ type: 't', requires: ['x'], payload, ...extra });

function wire(payload: Op): WireTask {
  return { type: 't', requires: ['x'], prefers: [], priority: 0, payload, timeoutMs: null, maxAttempts: 1 };
}

/** Entries of a stream as `[id, {field: value}]`. */
async function entries(r: Redis, key: string): Promise<Array<[string, Record<string, string>]>> {
  const list = await r.xrange(key, '-', '+');
  return list.map(([id, fields]) => {
    const o: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) o[fields[i]!] = fields[i + 1]!;
    return [id, o];
  });
}

/** Pending entries of the `workers` group: `[id, consumer, idleMs, deliveries]`. */
async function pending(r: Redis, stream: string): Promise<Array<[string, string, number, number]>> {
  return (await r.call('XPENDING', stream, 'workers', '-', '+', '100')) as Array<[string, string, number, number]>;
}

/**
 * A node that is not there: a signed registry entry saying it serves `capabilities`, so that A hands off tasks
 * while no real node consumes them yet (the entry expires by itself).
 */
async function phantom(r: Redis, ns: string, id: string, capabilities: string[]): Promise<void> {
  const signer = new MessageSigner(SECRET, ns, 60_000);
  const info = {
    nodeId: id,
    roles: ['ghost'],
    capabilities,
    serves: [capabilities],
    freeSlots: 1,
    heartbeatAt: Date.now(),
  };
  await r.set(`${ns}:node:${id}`, JSON.stringify(signer.seal('node', info)), 'PX', 2_000);
  await r.sadd(`${ns}:nodes`, id);
}

/**
 * A hands off one task for `x` that a dead node ("ghost") took and never acked. Returns A's promise and the entry
 * id; the entry has been delivered `deliveries` times to the ghost. B is not started.
 */
async function ghostTook(ns: string, deliveries: number, bExtra: Partial<RedisBridgeOptions> = {}) {
  const r = raw();
  const stream = `${ns}:tasks:x`;
  await r.call('XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM');
  const { a, b, log } = await pair(ns, { startB: false, bExtra });
  await phantom(r, ns, 'ghost', ['x']);
  await eventually(async () => (await a.cluster(), a.bridge.canAnyServe(['x'])), 5_000, 'A sees the ghost');
  const result = a.submit(task({ op: 'echo', id: 'ghosted', v: 'reclaimed' }));
  result.catch(() => {});
  await eventually(async () => (await r.xlen(stream)) === 1, 5_000, 'the hand-off is in the stream');
  const read = (await r.call(
    'XREADGROUP',
    'GROUP',
    'workers',
    'ghost',
    'COUNT',
    '10',
    'STREAMS',
    stream,
    '>',
  )) as unknown[];
  expect(read).not.toBeNull();
  const id = (await r.xrange(stream, '-', '+'))[0]![0];
  for (let i = 1; i < deliveries; i++) await r.call('XCLAIM', stream, 'workers', 'ghost', '0', id);
  const takenAt = Date.now();
  expect(await pending(r, stream)).toEqual([[id, 'ghost', expect.any(Number), deliveries]]);
  return { r, a, b, log, result, stream, id, takenAt };
}

/** Suites on a real Redis: skipped without redis-server (the run says so once), failing instead under CI. */
const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('RedisBridge: signed messages', () => {
  it('forged, unsigned and foreign task entries are dropped and counted, never run', async () => {
    const ns = namespace();
    const { a, b, log } = await pair(ns);
    // A first real hand-off: B consumes the stream of class x from now on.
    await expect(a.submit(task({ op: 'echo', id: 'real-1' }))).resolves.toMatchObject({ node: 'B' });
    const r = raw();
    const stream = `${ns}:tasks:x`;
    const good = new MessageSigner(SECRET, ns, 60_000);
    const body = (id: string) => ({ taskId: `forged-${id}`, origin: a.bridge.nodeId, task: wire({ op: 'echo', id }) });
    const before = b.bridge.stats().rejected;

    // A wrong HMAC: a valid signature, but of another message.
    const wrong = good.seal('task', body('wrong-mac'));
    await r.xadd(stream, '*', 'm', wrong.m.replace('wrong-mac', 'wrong-mac-2'), 's', wrong.s);
    // A well-formed but made-up signature.
    await r.xadd(stream, '*', 'm', good.seal('task', body('made-up')).m, 's', 'ab'.repeat(32));
    // No signature at all.
    await r.xadd(stream, '*', 'm', good.seal('task', body('unsigned')).m);
    // Signed with another secret.
    const other = new MessageSigner('another-secret-not-the-cluster-one', ns, 60_000).seal(
      'task',
      body('other-secret'),
    );
    await r.xadd(stream, '*', 'm', other.m, 's', other.s);
    // The right secret, but another namespace (signatures are bound to it).
    const foreign = new MessageSigner(SECRET, `${ns}-elsewhere`, 60_000).seal('task', body('other-ns'));
    await r.xadd(stream, '*', 'm', foreign.m, 's', foreign.s);
    // The right secret, but signed as another kind of message.
    const moved = good.seal('control', body('other-kind'));
    await r.xadd(stream, '*', 'm', moved.m, 's', moved.s);

    await eventually(() => b.bridge.stats().rejected - before >= 6, 5_000, 'B rejected the forged entries');
    // A real task after them still runs; by then the forged ones are long dealt with.
    await expect(a.submit(task({ op: 'echo', id: 'real-2' }))).resolves.toMatchObject({ node: 'B', id: 'real-2' });
    expect(b.bridge.stats().rejected - before).toBe(6);
    expect(log.runs).toEqual(['real-1', 'real-2']);
    // Dropped for good: acked and deleted, not left for redelivery.
    await eventually(async () => (await r.xlen(stream)) === 0, 5_000, 'the stream is empty');
    expect(await pending(r, stream)).toEqual([]);
    expect(b.bridge.stats().served).toBe(2);
  });

  it('forged, unsigned, foreign, stale and replayed control messages are dropped and counted, never delivered', async () => {
    const ns = namespace();
    const { a, b } = await pair(ns);
    const channel = `${ns}:control`;
    const seenA: ControlMessage[] = [];
    const seenB: ControlMessage[] = [];
    a.on('bridge:control', (m) => seenA.push(m));
    b.on('bridge:control', (m) => seenB.push(m));
    // A listener on the channel captures A's real, signed broadcast.
    const sub = raw();
    const captured: string[] = [];
    sub.on('message', (_channel: string, message: string) => captured.push(message));
    await sub.subscribe(channel);
    const r = raw();

    await a.broadcast({ kind: 'halt', reason: 'real' });
    await eventually(() => seenB.length === 1 && captured.length === 1, 5_000, 'the real halt arrived');
    const beforeA = a.bridge.stats().rejected;
    const beforeB = b.bridge.stats().rejected;

    const good = new MessageSigner(SECRET, ns, 60_000);
    const evil = { kind: 'halt', reason: 'evil', from: 'evil' };
    const forgedBodies: string[] = [];
    // Not even JSON.
    forgedBodies.push('halt everything');
    // Unsigned.
    forgedBodies.push(JSON.stringify({ m: JSON.stringify({ ...evil, id: 'u1', ts: Date.now() }) }));
    // A made-up signature.
    forgedBodies.push(JSON.stringify({ m: JSON.stringify({ ...evil, id: 'w1', ts: Date.now() }), s: 'cd'.repeat(32) }));
    // A real signature of another message.
    const sealed = good.seal('control', { ...evil, reason: 'original' });
    forgedBodies.push(JSON.stringify({ m: sealed.m.replace('original', 'tampered'), s: sealed.s }));
    // Another secret.
    forgedBodies.push(
      JSON.stringify(new MessageSigner('another-secret-not-the-cluster-one', ns, 60_000).seal('control', evil)),
    );
    // Signed as another kind (a task signature moved to the control channel).
    forgedBodies.push(JSON.stringify(good.seal('task', evil)));
    // Stale: correctly signed two minutes ago (maxMessageAgeMs is 60 s).
    const now = Date.now();
    const clock = vi.spyOn(Date, 'now').mockReturnValue(now - 120_000);
    try {
      forgedBodies.push(JSON.stringify(good.seal('control', evil)));
    } finally {
      clock.mockRestore();
    }
    // Replayed: A's own real broadcast, sent again.
    forgedBodies.push(captured[0]!);
    for (const m of forgedBodies) await r.publish(channel, m);

    // A real message after them: once it arrives, every forged one has been seen.
    await a.broadcast({ kind: 'resume', reason: 'sentinel' });
    await eventually(() => seenA.length === 2 && seenB.length === 2, 5_000, 'the sentinel arrived');
    for (const seen of [seenA, seenB]) {
      expect(seen.map((m) => [m.kind, m.reason, m.from])).toEqual([
        ['halt', 'real', a.bridge.nodeId],
        ['resume', 'sentinel', a.bridge.nodeId],
      ]);
    }
    expect(b.bridge.stats().rejected - beforeB).toBe(forgedBodies.length);
    expect(a.bridge.stats().rejected - beforeA).toBe(forgedBodies.length);
  });

  it('a replayed task message (an already completed, validly signed entry) is not run again, by any node', async () => {
    const ns = namespace();
    const { a, b, log } = await pair(ns);
    const r = raw();
    const stream = `${ns}:tasks:x`;
    // The task waits on a gate: meanwhile its signed entry is still in the stream, and we copy it.
    const p = a.submit(task({ op: 'gate', id: 'once' }));
    await eventually(() => log.count('once') === 1, 5_000, 'B started the task');
    const { m, s } = (await entries(r, stream))[0]![1];
    expect(typeof m).toBe('string');
    expect(s).toMatch(/^[0-9a-f]{64}$/);
    log.open();
    await expect(p).resolves.toEqual({ node: 'B', id: 'once', v: 'gate' });
    await eventually(async () => (await r.xlen(stream)) === 0, 5_000, 'the entry is acked and deleted');

    // Replayed to B.
    let before = b.bridge.stats().rejected;
    await r.xadd(stream, '*', 'm', m!, 's', s!);
    await eventually(() => b.bridge.stats().rejected > before, 5_000, 'B dropped the replay');
    expect(b.bridge.stats().rejected - before).toBe(1);
    // Replayed to a fresh node that never saw the task (no local idempotency memory): the done marker stops it.
    const logC = runLog();
    const c = fleet.server(bridge(ns, 'C'), 'C', logC);
    await c.start();
    await b.stop();
    before = c.bridge.stats().rejected;
    await r.xadd(stream, '*', 'm', m!, 's', s!);
    await eventually(() => c.bridge.stats().rejected > before, 5_000, 'C dropped the replay');
    await wait(100);
    expect(log.count('once')).toBe(1);
    expect(logC.runs).toEqual([]);
    expect(c.bridge.stats().served).toBe(0);
    await eventually(async () => (await r.xlen(stream)) === 0, 5_000, 'the replays are acked and deleted');
    expect(await pending(r, stream)).toEqual([]);
  });
});

describeRedis('RedisBridge: reclaim and dead letters', () => {
  it('an entry taken by a node that died is claimed by a live node after reclaimIdleMs and run; the submitter gets its result', async () => {
    const ns = namespace();
    const { r, b, log, result, stream, takenAt } = await ghostTook(ns, 1);
    await b.start();
    await expect(result).resolves.toEqual({ node: 'B', id: 'ghosted', v: 'reclaimed' });
    // Not before it was idle for reclaimIdleMs (300) (a little slack for timer granularity).
    expect(Date.now() - takenAt).toBeGreaterThanOrEqual(FAST.reclaimIdleMs - 25);
    expect(log.count('ghosted')).toBe(1);
    expect(b.bridge.stats().reclaimed).toBeGreaterThanOrEqual(1);
    expect(b.bridge.stats().served).toBe(1);
    await eventually(async () => (await pending(r, stream)).length === 0, 5_000, 'the entry is acked');
    expect(await r.xlen(stream)).toBe(0);
  });

  it('a node that stops with entries still pending under its name leaves them for reclaim, not dropped with its consumer', async () => {
    // Entries a node refused (stopping, queue full) stay pending under its name for another node to claim; deleting
    // the group consumer on stop used to drop them for good, and their submitters waited forever.
    const ns = namespace();
    const { r, b, log, result, stream } = await ghostTook(ns, 1);
    const ghost = fleet.server(bridge(ns, 'ghost', { reclaimIdleMs: 60_000 }), 'ghost', runLog());
    await ghost.start();
    await eventually(
      async () => ((await r.call('XINFO', 'CONSUMERS', stream, 'workers')) as unknown[]).length > 0,
      5_000,
      'ghost consumes x',
    );
    await ghost.stop();
    expect((await pending(r, stream)).map((p) => p[1])).toEqual(['ghost']);
    await b.start();
    await expect(result).resolves.toEqual({ node: 'B', id: 'ghosted', v: 'reclaimed' });
    expect(log.count('ghosted')).toBe(1);
  });

  it('refusals do not count as deliveries: a task every node refuses for a while is not dead-lettered, and runs once a node has room', async () => {
    const ns = namespace();
    const { a, b, log } = await pair(ns, { startB: false });
    // A node that serves x but refuses every task, as a node with a full queue does.
    const refusals: string[] = [];
    const refuser = new RedisBridge({
      url: suite.redis.url,
      secret: SECRET,
      namespace: ns,
      nodeId: 'busy',
      ...FAST,
      maxDeliveries: 2,
    });
    const status = {
      state: 'running',
      health: 'healthy',
      halted: null,
      traffic: null,
      running: 0,
      waiting: 0,
      queues: {},
      pools: [],
      breakers: { open: 0, halfOpen: 0, dependenciesOpen: [] },
    } satisfies NodeStatus;
    await refuser.start({
      info: () => ({ nodeId: 'busy', roles: ['w'], capabilities: ['x'], serves: [['x']], freeSlots: 1, slots: 1 }),
      canServe: (requires) => requires.every((c) => c === 'x'),
      run: async (handOff) => {
        refusals.push(handOff.taskId);
        throw new QueueFullError(0);
      },
      control: () => {},
      status: () => status,
      state: () => {},
    });
    try {
      await eventually(async () => (await a.cluster(), a.bridge.canAnyServe(['x'])), 5_000, 'A sees the busy node');
      let settled: unknown = 'pending';
      const result = a.submit(task({ op: 'echo', id: 'patient', v: 'ran' }));
      result.then(
        (v) => (settled = v),
        (e: unknown) => (settled = e),
      );
      // Refused far more often than maxDeliveries (2), a claim every reclaimIdleMs (300).
      await eventually(() => refusals.length >= 5, 10_000, 'five refusals');
      expect(settled).toBe('pending');
      expect(refuser.stats().deadLettered).toBe(0);
      await b.start();
      await expect(result).resolves.toEqual({ node: 'B', id: 'patient', v: 'ran' });
      expect(log.count('patient')).toBe(1);
    } finally {
      await refuser.stop();
    }
  });

  it('an entry at its last allowed delivery (maxDeliveries) still runs', async () => {
    const ns = namespace();
    // Two deliveries to the ghost; B's claim is the third, and maxDeliveries is 3.
    const { b, log, result } = await ghostTook(ns, 2, { maxDeliveries: 3 });
    await b.start();
    await expect(result).resolves.toEqual({ node: 'B', id: 'ghosted', v: 'reclaimed' });
    expect(log.count('ghosted')).toBe(1);
    expect(b.bridge.stats().deadLettered).toBe(0);
  });

  it('an entry delivered more than maxDeliveries times is dead-lettered, not run, and its submitter gets TASK_DEAD_LETTERED', async () => {
    const ns = namespace();
    const { r, b, log, result, stream, id } = await ghostTook(ns, 4, { maxDeliveries: 3 });
    await b.start();
    const error = (await rejection(result)) as RemoteTaskError;
    expect(error).toBeInstanceOf(RemoteTaskError);
    expect(error.code).toBe('TASK_DEAD_LETTERED');
    expect(error.name).toBe('TaskDeadLetteredError');
    expect(error.node).toBe(b.bridge.nodeId);
    expect(log.runs).toEqual([]);
    // Counted once Redis took the dead letter: its result can reach A a moment before B's count.
    await eventually(() => b.bridge.stats().deadLettered === 1, 2_000, 'B counted the dead letter');
    expect(b.bridge.stats().served).toBe(0);
    const dead = await entries(r, `${ns}:dead`);
    expect(dead).toHaveLength(1);
    const [, f] = dead[0]!;
    expect(f).toMatchObject({ stream, entry: id });
    expect(Number(f['deliveries'])).toBeGreaterThan(3);
    expect(JSON.parse(f['m']!)).toMatchObject({ origin: 'A', tasks: [{ task: { payload: { id: 'ghosted' } } }] });
    expect(f['s']).toMatch(/^[0-9a-f]{64}$/);
    expect(await pending(r, stream)).toEqual([]);
    expect(await r.xlen(stream)).toBe(0);
  });

  it('the dead stream keeps at most maxDeadEntries entries, dropping the oldest', async () => {
    const ns = namespace();
    const earlier = raw();
    for (let i = 0; i < 5; i++) await earlier.xadd(`${ns}:dead`, '*', 'entry', `earlier-${i}`);
    const { r, b, result, id } = await ghostTook(ns, 4, { maxDeliveries: 3, maxDeadEntries: 3 });
    await b.start();
    await rejection(result);
    // Counted once Redis took the dead letter: its result can reach A a moment before B's count.
    await eventually(() => b.bridge.stats().deadLettered === 1, 2_000, 'B counted the dead letter');
    const dead = await entries(r, `${ns}:dead`);
    expect(dead.map(([, f]) => f['entry'])).toEqual(['earlier-3', 'earlier-4', id]);
  });

  it("a live node's long-running entry is kept fresh: another serving node never reclaims it, it runs once", async () => {
    const ns = namespace();
    const { a, b, log } = await pair(ns);
    const logC = runLog();
    const c = fleet.server(bridge(ns, 'C'), 'C', logC);
    await c.start();
    await eventually(async () => (await a.cluster()).length === 3, 5_000, 'three nodes');
    // Runs three times reclaimIdleMs.
    const results = await Promise.all(
      [0, 1, 2, 3].map((i) => a.submit(task({ op: 'slow', id: `long-${i}`, ms: 3 * FAST.reclaimIdleMs }))),
    );
    expect(results.map((r) => (r as { id: string }).id)).toEqual(['long-0', 'long-1', 'long-2', 'long-3']);
    for (let i = 0; i < 4; i++) expect(log.count(`long-${i}`) + logC.count(`long-${i}`)).toBe(1);
    expect(b.bridge.stats().reclaimed + c.bridge.stats().reclaimed).toBe(0);
  });
});

describeRedis('RedisBridge: results', () => {
  it("a result written while the submitter's result reader is not blocked in a read (here: its connection was killed) still reaches it", async () => {
    // The reader once re-read from '$' after every empty or failed read: a result that arrived in between was never
    // seen and its task waited forever (it showed under CPU load as a hung 500-task test).
    const { a, log } = await pair(namespace());
    const result = a.submit(task({ op: 'gate', id: 'gap' }));
    await eventually(() => log.count('gap') === 1, 5_000, 'B started the task');
    const admin = raw();
    const clients = String(await admin.call('CLIENT', 'LIST'))
      .split('\n')
      .filter((line) => / cmd=xread /.test(line))
      .map((line) => /\bid=(\d+)/.exec(line)![1]!);
    expect(clients.length).toBeGreaterThan(0);
    for (const id of clients) await admin.call('CLIENT', 'KILL', 'ID', id);
    log.open(); // B reports now, while A's reader reconnects and waits before reading again
    await expect(result).resolves.toEqual({ node: 'B', id: 'gap', v: 'gate' });
  });
});

describeRedis('RedisBridge: the registry after a reconnect', () => {
  it('after a mere reconnect (Redis kept its data), a node that then leaves cleanly gets no more work', async () => {
    // The grace that keeps known nodes counting applies only when Redis restarted (its run id changed): after a
    // network blip the registry is intact, and work for a node that left must be refused, not stranded in a stream.
    const ns = namespace();
    const timings = { heartbeatMs: 50, blockMs: 100, nodeTtlMs: 3_000, reclaimIdleMs: 1_000 };
    const b = fleet.server(bridge(ns, 'B', timings), 'B', runLog());
    const a = fleet.producer(bridge(ns, 'A', { ...timings, redisOptions: { connectionName: `blip-${ns}` } }), {
      waitForNodeMs: 0,
    });
    await b.start();
    await a.start();
    await eventually(() => a.bridge.canAnyServe(['x']), 5_000, 'A sees B');
    let degraded = false;
    a.on('bridge:state', (st) => (degraded ||= st.status === 'degraded'));
    const admin = raw();
    for (const line of String(await admin.call('CLIENT', 'LIST')).split('\n')) {
      if (line.includes(`name=blip-${ns}`)) await admin.call('CLIENT', 'KILL', 'ID', /\bid=(\d+)/.exec(line)![1]!);
    }
    await eventually(() => degraded && a.health().components.bridge.status === 'healthy', 10_000, 'A reconnected');
    await b.stop({ drain: true, timeoutMs: 2_000 });
    await wait(250); // a few of A's beats read the registry without B (B's last heartbeat is still fresh)
    const outcome = await Promise.race([
      a.submit(task({ op: 'echo', id: 'orphan' })).catch((e: unknown) => e),
      wait(1_000).then(() => 'handed off, stranded'),
    ]);
    expect(outcome).toBeInstanceOf(NoCapableAgentError);
  });
});

describeRedis('RedisBridge: a hand-off past its deadline', () => {
  it('is forgotten by its submitter: not waited for, and not sent again after a reconnect', async () => {
    const ns = namespace();
    const r = raw();
    const stream = `${ns}:tasks:x`;
    const a = fleet.producer(bridge(ns, 'A', { redisOptions: { connectionName: `late-${ns}` } }));
    await a.start();
    await phantom(r, ns, 'ghost', ['x']); // a node that serves x on paper and never reads
    await eventually(async () => (await a.cluster(), a.bridge.canAnyServe(['x'])), 5_000, 'A sees the ghost');
    await expect(a.submit(task({ op: 'echo', id: 'late' }, { deadlineMs: 100 }))).rejects.toMatchObject({
      code: 'TASK_TIMEOUT',
      scope: 'task',
    });
    expect(await r.xlen(stream)).toBe(1);
    let degraded = false;
    a.on('bridge:state', (st) => (degraded ||= st.status === 'degraded'));
    for (const line of String(await r.call('CLIENT', 'LIST')).split('\n')) {
      if (line.includes(`name=late-${ns}`)) await r.call('CLIENT', 'KILL', 'ID', /\bid=(\d+)/.exec(line)![1]!);
    }
    await eventually(() => degraded && a.health().components.bridge.status === 'healthy', 10_000, 'A reconnected');
    await wait(300); // beats after the reconnect: hand-offs still waiting would be sent again now
    expect(await r.xlen(stream)).toBe(1);
  });
});

describeRedis('RedisBridge: stop, connections, options', () => {
  it('group consumers left by nodes gone for good (nothing pending, idle, not in the registry) are deleted in time', async () => {
    const ns = namespace();
    const { a } = await pair(ns);
    await expect(a.submit(task({ op: 'echo', id: 'first' }))).resolves.toMatchObject({ node: 'B' });
    const r = raw();
    const stream = `${ns}:tasks:x`;
    // A consumer as a stopped node leaves it once its refused entries were claimed: no pending entries, no node.
    await r.call('XGROUP', 'CREATECONSUMER', stream, 'workers', 'gone-node');
    const names = async (): Promise<string[]> =>
      ((await r.call('XINFO', 'CONSUMERS', stream, 'workers')) as unknown[][]).map((c) => String(c[1]));
    expect(await names()).toContain('gone-node');
    // Idle past two node TTLs (1 s with these timings), then a sweep (every 30 beats of 50 ms).
    await eventually(async () => !(await names()).includes('gone-node'), 20_000, 'the gone consumer deleted');
    expect(await names()).toContain('B'); // a live node's consumer stays
  }, 30_000);

  it('stop removes the node key, the nodes set entry and the group consumer', async () => {
    const ns = namespace();
    const { a, b } = await pair(ns);
    await expect(a.submit(task({ op: 'echo', id: 'e' }))).resolves.toMatchObject({ node: 'B' });
    const r = raw();
    const stream = `${ns}:tasks:x`;
    // While running: both registered, B a consumer of the group.
    expect((await r.smembers(`${ns}:nodes`)).sort()).toEqual(['A', 'B']);
    expect(await r.exists(`${ns}:node:A`, `${ns}:node:B`)).toBe(2);
    const consumers = (await r.call('XINFO', 'CONSUMERS', stream, 'workers')) as unknown[][];
    expect(consumers.map((c) => c[1])).toContain('B');

    await b.stop();
    // Gone at once, not after its TTL.
    expect(await r.exists(`${ns}:node:B`)).toBe(0);
    expect(await r.smembers(`${ns}:nodes`)).toEqual(['A']);
    await a.stop();
    const keys = await r.keys(`${ns}:*`);
    expect(keys.filter((k) => k.startsWith(`${ns}:node:`))).toEqual([]);
    expect(await r.scard(`${ns}:nodes`)).toBe(0);
    expect(await r.call('XINFO', 'CONSUMERS', stream, 'workers')).toEqual([]);
  });

  const clients: Array<[string, RedisOptions]> = [
    ['default', {}],
    ['RESP2', { protocol: 2 }],
    ['RESP3 with replyMapping resp3', { replyMapping: 'resp3' }],
  ];
  for (const [label, options] of clients) {
    it(`a host-passed ioredis client (${label}) serves and hands off, and stop() does not close it`, async () => {
      const ns = namespace();
      const clientA = raw(options);
      const clientB = raw(options);
      const log = runLog();
      const listenersBefore = ['error', 'ready', 'reconnecting'].map(
        (e) => clientA.listenerCount(e) + clientB.listenerCount(e),
      );
      const b = fleet.server(
        new RedisBridge({ redis: clientB, secret: SECRET, namespace: ns, nodeId: 'B', ...FAST }),
        'B',
        log,
      );
      const a = fleet.producer(
        new RedisBridge({ redis: clientA, secret: SECRET, namespace: ns, nodeId: 'A', ...FAST }),
      );
      await b.start();
      await a.start();
      await eventually(() => a.bridge.canAnyServe(['x']), 5_000, 'A sees B');
      const outcome = await Promise.race([
        a.submit(task({ op: 'echo', id: 'host', v: 1 })),
        wait(3_000).then(() => 'no result after 3 s'),
      ]);
      expect(outcome).toEqual({ node: 'B', id: 'host', v: 1 });
      await a.stop();
      await b.stop();
      for (const client of [clientA, clientB]) {
        expect(client.status).toBe('ready');
        await expect(client.ping()).resolves.toBe('PONG');
      }
      // The bridge took its listeners off the host's clients: nothing of it stays behind on them.
      expect(
        ['error', 'ready', 'reconnecting'].map((e) => clientA.listenerCount(e) + clientB.listenerCount(e)),
      ).toEqual(listenersBefore);
    });
  }

  it('a bridge that opened its own connection closes it on stop', async () => {
    const ns = namespace();
    const { a, b } = await pair(ns);
    const r = raw();
    const name = async () => ((await r.call('CLIENT', 'LIST')) as string).split('\n').filter(Boolean).length;
    const withBoth = await name();
    await a.stop();
    await b.stop();
    // Each bridge holds four connections (commands, subscriber, two blocking readers): all eight are gone.
    await eventually(async () => (await name()) <= withBoth - 8, 5_000, 'the connections are closed');
  });

  it('validates its options', () => {
    const field = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (error) {
        expect(error).toBeInstanceOf(ValidationError);
        return (error as ValidationError).field;
      }
      return undefined;
    };
    expect(field(() => new RedisBridge({ url: 'redis://127.0.0.1:1', secret: 'short' }))).toBe('options.secret');
    expect(field(() => new RedisBridge({ url: 'redis://127.0.0.1:1', secret: 'x'.repeat(15) }))).toBe('options.secret');
    expect(field(() => new RedisBridge({ url: 'redis://127.0.0.1:1', secret: 42 as unknown as string }))).toBe(
      'options.secret',
    );
    expect(field(() => new RedisBridge({ secret: 'x'.repeat(16) }))).toBe('options.url');
    expect(field(() => new RedisBridge(null as unknown as RedisBridgeOptions))).toBe('options');
    const ok = { url: 'redis://127.0.0.1:1', secret: 'x'.repeat(16) };
    expect(field(() => new RedisBridge(ok))).toBeUndefined();
    expect(field(() => new RedisBridge({ ...ok, url: 'http://127.0.0.1:6379' }))).toBe('options.url');
    expect(field(() => new RedisBridge({ ...ok, redis: {} as never, url: undefined }))).toBe('options.redis');
    expect(field(() => new RedisBridge({ ...ok, heartbeatMS: 10 } as never))).toBe('options.heartbeatMS'); // misspelt
    for (const key of [
      'heartbeatMs',
      'nodeTtlMs',
      'reclaimIdleMs',
      'blockMs',
      'doneTtlMs',
      'maxMessageAgeMs',
      'stopTimeoutMs',
      'maxDeliveries',
      'maxDeadEntries',
    ] as const) {
      for (const bad of [0, -1, 1.5, NaN, Infinity, '100'])
        expect(field(() => new RedisBridge({ ...ok, [key]: bad }))).toBe(`options.${key}`);
    }
    expect(field(() => new RedisBridge({ ...ok, heartbeatMs: 2 ** 31 }))).toBe('options.heartbeatMs'); // past a Node timer
    expect(field(() => new RedisBridge({ ...ok, stopTimeoutMs: 2 ** 31 }))).toBe('options.stopTimeoutMs');
    // The timings must fit together: a registry entry outlives a beat, and reclaim never takes a live node's work.
    expect(field(() => new RedisBridge({ ...ok, heartbeatMs: 1_000, nodeTtlMs: 1_000 }))).toBe('options.nodeTtlMs');
    expect(field(() => new RedisBridge({ ...ok, heartbeatMs: 1_000, reclaimIdleMs: 900 }))).toBe(
      'options.reclaimIdleMs',
    );
    expect(field(() => new RedisBridge({ ...ok, nodeId: '' }))).toBe('options.nodeId');
    // The group consumer that holds the entries no node runs.
    expect(field(() => new RedisBridge({ ...ok, nodeId: '~released' }))).toBe('options.nodeId');
    expect(field(() => new RedisBridge({ ...ok, namespace: '' }))).toBe('options.namespace');
    expect(field(() => new RedisBridge({ ...ok, redisOptions: 'x' as never }))).toBe('options.redisOptions');
    expect(field(() => new RedisBridge({ ...ok, retry: {} as never }))).toBe('options.retry.delay');
    // The orchestrator refuses a bridge that is not one.
    expect(field(() => new UnifiedOrchestrator({ bridge: {} as unknown as RedisBridge }))).toMatch(/^options\.bridge/);
  });
});
