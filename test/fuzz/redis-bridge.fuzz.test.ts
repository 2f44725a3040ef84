/**
 * Fuzz target 4d: junk in a RedisBridge's keys, against a real redis-server (test/support/redis.ts starts one on a free
 * port). Two nodes run: A (a producer) and B (a pool serving `x`); a raw client writes random junk where the bridge
 * reads, as an attacker with access to Redis (or a node of another version) would:
 * - `<ns>:tasks:<class>` streams: random fields, messages sealed with the wrong secret or for another kind, and (signed
 *   with the right secret) batches with malformed bodies or hostile tasks;
 * - `<ns>:results:A`: the same for results;
 * - the `<ns>:control` channel: random strings and JSON, messages sealed with the wrong secret, replays, and valid
 *   control messages with random bodies (halts among them);
 * - the registry (`<ns>:nodes` and `<ns>:node:<id>`, B's own entry included) and the `<ns>:control:standing` hash.
 * After every run both nodes still run, `bridge.stats().rejected` grew by at least the number of messages that must be
 * refused, nothing was unhandled, and a normal task handed from A to B still completes. At the end a third node joins
 * over the junk standing state and serves too.
 *
 * 500 runs, not 10,000: every run makes real Redis round trips and waits for three other connections (B's task reader,
 * A's result reader, both subscribers) to consume the junk, then for a hand-off round trip, so a run costs 5–20 ms of
 * wall time on two cores, against microseconds for the in-process targets.
 */
import { Redis } from 'ioredis';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisBridge, UnifiedOrchestrator, type RedisBridgeOptions } from 'unified-orchestrator';
import { MessageSigner } from '../../src/bridge/signing.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import {
  describeError,
  keyArb,
  params,
  processGuard,
  prototypeGuard,
  settleWithin,
  STRICT,
  TARGET_TIMEOUT_MS,
} from './arbitraries.js';

const SECRET = 'redis-fuzz-shared-secret-0123456789';
const FAST = { heartbeatMs: 50, blockMs: 100, nodeTtlMs: 500, reclaimIdleMs: 300 } as const;

// --- Junk recipes -------------------------------------------------------------------------------------------------------

/** What a stream entry or a message carries. */
type Body =
  | { readonly k: 'raw'; readonly text: string } // not even JSON, or JSON that is not a sealed message
  | { readonly k: 'fields'; readonly pairs: ReadonlyArray<readonly [string, string]> } // a stream entry's own fields
  | { readonly k: 'sealed'; readonly secret: 'right' | 'wrong'; readonly as: string; readonly body: unknown };

type Junk =
  | { readonly k: 'task'; readonly cls: string; readonly entry: Body }
  | { readonly k: 'result'; readonly entry: Body }
  | { readonly k: 'publish'; readonly message: Body | { readonly k: 'replay' } }
  | { readonly k: 'classes'; readonly cls: string }
  | { readonly k: 'node'; readonly id: string; readonly entry: Body }
  | { readonly k: 'standing'; readonly slot: string; readonly entry: Body };

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ maxLength: 20, unit: 'binary' }),
  fc.json({ maxDepth: 2 }),
  fc.constantFrom('{}', '[]', '{"m":1,"s":2}', '{"m":"x","s":"' + 'a'.repeat(64) + '"}', '"null"', 'true', '5'),
);
/** Raw text, without what parses to `null` in default mode (`PUBLISH <ns>:control null` crashes a node: a known bug). */
const publishText = STRICT
  ? fc.oneof(text, fc.constantFrom('null', ' null '))
  : text.filter((t) => {
      try {
        return JSON.parse(t) !== null;
      } catch {
        return true;
      }
    });

const json = fc.jsonValue({ maxDepth: 3 });
const hostileTask = fc.record(
  {
    type: fc.oneof(fc.constant('t'), json),
    requires: fc.oneof(fc.constant(['x']), fc.constant(['zzz']), json),
    payload: json,
    timeoutMs: fc.oneof(fc.constant(null), json),
    maxAttempts: fc.oneof(fc.constant(1), json),
    priority: json,
  },
  { requiredKeys: [] },
);
const batchBody = fc.oneof(
  json,
  fc.record(
    {
      origin: fc.oneof(fc.constantFrom('A', 'B', 'nobody', '__proto__'), json),
      tasks: fc.oneof(
        json,
        fc.array(
          fc.record({ taskId: fc.oneof(fc.string({ minLength: 1 }), json), task: fc.oneof(hostileTask, json) }),
          { maxLength: 3 },
        ),
      ),
    },
    { requiredKeys: [] },
  ),
);
/** Result bodies. A `results` array holding `null` kills A's result reader (a known bug): strict mode only. */
const resultsJson = STRICT ? json : json.filter((v) => !(Array.isArray(v) && v.includes(null)));
const resultEntry = STRICT ? json : json.filter((v) => v !== null);
const resultBody = fc.oneof(
  json,
  fc.record(
    {
      results: fc.oneof(
        resultsJson,
        fc.array(
          fc.oneof(
            resultEntry,
            fc.record(
              { taskId: fc.string(), ok: fc.boolean(), value: json, error: json, node: json },
              { requiredKeys: [] },
            ),
          ),
          { maxLength: 3 },
        ),
      ),
    },
    { requiredKeys: [] },
  ),
);
const controlBody = fc.record(
  {
    kind: fc.oneof(fc.constantFrom('halt', 'resume', 'drain', 'traffic', 'rollback', 'config'), json),
    reason: json,
    value: json,
    from: json,
  },
  { requiredKeys: [] },
);
/** A node entry. `serves` holding a number (or null) makes every later hand-off throw a TypeError (a known bug): strict only. */
const servesArb = STRICT
  ? json
  : fc.oneof(
      fc.constant(undefined),
      fc.string(),
      fc.array(fc.oneof(fc.array(fc.string(), { maxLength: 3 }), fc.string()), { maxLength: 3 }),
    );
const nodeBody = fc.oneof(
  fc.record(
    {
      nodeId: fc.oneof(fc.string(), json),
      roles: json,
      capabilities: json,
      freeSlots: json,
      slots: json,
      heartbeatAt: fc.oneof(fc.constant(Date.now()), json),
      status: json,
    },
    { requiredKeys: [] },
  ),
  fc.record({ nodeId: fc.string(), serves: servesArb, heartbeatAt: fc.constant(Date.now()) }, { requiredKeys: [] }),
);

const pairs = fc.array(
  fc.tuple(fc.oneof(fc.constantFrom('m', 's'), fc.string({ maxLength: 6 })), fc.string({ maxLength: 40 })),
  { minLength: 1, maxLength: 3 },
);
const sealed = (as: fc.Arbitrary<string>, body: fc.Arbitrary<unknown>): fc.Arbitrary<Body> =>
  fc.record({
    k: fc.constant('sealed' as const),
    secret: fc.constantFrom('right' as const, 'wrong' as const),
    as,
    body,
  });
const anyKind = fc.constantFrom('tasks', 'results', 'control', 'node');

const entryOf = (kind: string, body: fc.Arbitrary<unknown>): fc.Arbitrary<Body> =>
  fc.oneof(
    { weight: 2, arbitrary: pairs.map((p) => ({ k: 'fields', pairs: p }) as const) },
    { weight: 2, arbitrary: sealed(fc.constant(kind), body) },
    { weight: 1, arbitrary: sealed(anyKind, body) },
  );
const rawOrSealed = (kind: string, body: fc.Arbitrary<unknown>, raw = text): fc.Arbitrary<Body> =>
  fc.oneof(
    { weight: 2, arbitrary: raw.map((t) => ({ k: 'raw', text: t }) as const) },
    { weight: 2, arbitrary: sealed(fc.constant(kind), body) },
    { weight: 1, arbitrary: sealed(anyKind, body) },
  );

const clsArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant('x') },
  { weight: 1, arbitrary: fc.constantFrom('*', 'x+x', 'zzz', '') },
  { weight: 1, arbitrary: keyArb },
);

const junkArb: fc.Arbitrary<Junk> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ k: fc.constant('task' as const), cls: clsArb, entry: entryOf('tasks', batchBody) }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('result' as const), entry: entryOf('results', resultBody) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('publish' as const),
      message: fc.oneof(rawOrSealed('control', controlBody, publishText), fc.constant({ k: 'replay' } as const)),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('classes' as const), cls: clsArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('node' as const),
      id: fc.oneof(fc.constantFrom('B', 'J', '*', ''), keyArb),
      entry: rawOrSealed('node', nodeBody),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('standing' as const),
      slot: fc.oneof(fc.constantFrom('halt', 'percent', 'shadow'), keyArb),
      entry: rawOrSealed('control', controlBody),
    }),
  },
);

// --- The target -----------------------------------------------------------------------------------------------------------

/** Suites on a real Redis: skipped without redis-server (the run says so once), failing instead under CI. */
const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('fuzz: junk in the RedisBridge keys while two nodes run', () => {
  let redis: TestRedis;
  let ns: string;
  let raw: Redis;
  let a: UnifiedOrchestrator;
  let b: UnifiedOrchestrator;
  let guard: ReturnType<typeof processGuard>;
  let right: MessageSigner;
  let wrong: MessageSigner;
  /** The last valid control message published here, replayed by `{ k: 'replay' }`. */
  let lastControl: string | undefined;
  const extra: UnifiedOrchestrator[] = [];

  const bridge = (nodeId: string, more: Partial<RedisBridgeOptions> = {}): RedisBridge =>
    new RedisBridge({ url: redis.url, secret: SECRET, namespace: ns, nodeId, ...FAST, ...more });
  const rejected = (): number => a.bridge.stats().rejected + b.bridge.stats().rejected;

  beforeAll(async () => {
    guard = processGuard();
    redis = await startRedis();
    ns = namespace('uo-fuzz');
    raw = new Redis(redis.url);
    right = new MessageSigner(SECRET, ns, 60_000);
    wrong = new MessageSigner(`${SECRET}-wrong`, ns, 60_000);
    b = new UnifiedOrchestrator({
      pressure: false,
      health: { checkIntervalMs: 60_000 },
      retry: { baseDelayMs: 1, maxDelayMs: 5 },
      bridge: bridge('B'),
      pools: [
        {
          role: 'w',
          capabilities: ['x'],
          minAgents: 2,
          maxAgents: 4,
          concurrency: 8,
          create: () => ({ execute: async (ctx): Promise<unknown> => ctx.payload }),
        },
      ],
    });
    a = new UnifiedOrchestrator({ pressure: false, health: { checkIntervalMs: 60_000 }, bridge: bridge('A') });
    await b.start();
    await a.start();
    await until(() => a.bridge.canAnyServe(['x']), 5_000, 'A sees B');
    expect(await a.submit({ type: 't', requires: ['x'], payload: 'first' })).toBe('first'); // the class stream and its group exist
  }, 30_000);

  afterAll(async () => {
    try {
      for (const o of [...extra, a, b]) await o?.stop({ timeoutMs: 5_000 });
      raw?.disconnect();
      if (redis?.owned) await redis.stop();
      await guard?.check();
    } finally {
      guard?.dispose();
    }
  }, 30_000);

  /** The fields of a stream entry, or the text of a message. */
  function encode(body: Body): string[] {
    switch (body.k) {
      case 'raw':
        return ['m', body.text];
      case 'fields':
        return body.pairs.flat();
      case 'sealed': {
        const { m, s } = (body.secret === 'right' ? right : wrong).seal(body.as, body.body as object);
        return ['m', m, 's', s];
      }
    }
  }
  const message = (body: Body): string => {
    if (body.k === 'raw') return body.text;
    const [, m, , s] = encode(body);
    return JSON.stringify({ m, s });
  };

  /** What the nodes must refuse (and count): a lower bound, since some junk is counted again on every heartbeat. */
  function mustReject(j: Junk): number {
    const forged = (body: Body, kind: string): boolean =>
      body.k !== 'sealed' || body.secret === 'wrong' || body.as !== kind;
    switch (j.k) {
      case 'task': {
        if (!['x', '*', 'x+x'].includes(j.cls)) return 0; // a class nobody serves is never read
        if (forged(j.entry, 'tasks')) return 1;
        const batch = (j.entry as { body: unknown }).body as { origin?: unknown; tasks?: unknown } | null;
        const wellFormed =
          typeof batch === 'object' &&
          batch !== null &&
          typeof batch.origin === 'string' &&
          Array.isArray(batch.tasks) &&
          batch.tasks.length > 0 &&
          batch.tasks.every(
            (t: unknown) =>
              typeof t === 'object' &&
              t !== null &&
              typeof (t as { taskId?: unknown }).taskId === 'string' &&
              typeof (t as { task?: unknown }).task === 'object' &&
              (t as { task?: unknown }).task !== null,
          );
        return wellFormed ? 0 : 1;
      }
      case 'result': {
        if (forged(j.entry, 'results')) return 1;
        return Array.isArray(((j.entry as { body: unknown }).body as { results?: unknown } | null)?.results) ? 0 : 1;
      }
      case 'publish':
        if (j.message.k === 'replay') return lastControl === undefined ? 0 : 2;
        if (j.message.k === 'sealed' && !forged(j.message, 'control')) return 0;
        return 2; // both subscribers refuse it
      case 'node':
        // A live node (A, B) rewrites its own entry on every heartbeat: junk there may be gone before anyone reads it.
        if (j.id === 'A' || j.id === 'B') return 0;
        return j.entry.k === 'sealed' && !forged(j.entry, 'node') ? 0 : 1; // counted on every refresh while it lives
      default:
        return 0; // the classes set; standing state (read only when a node joins: checked at the end)
    }
  }

  async function write(junks: readonly Junk[]): Promise<void> {
    const p = raw.pipeline();
    for (const j of junks) {
      switch (j.k) {
        case 'task':
          if (j.cls !== 'x') p.sadd(`${ns}:classes`, j.cls).publish(`${ns}:classes`, j.cls);
          p.xadd(`${ns}:tasks:${j.cls}`, '*', ...encode(j.entry));
          break;
        case 'result':
          p.xadd(`${ns}:results:A`, '*', ...encode(j.entry));
          break;
        case 'publish': {
          if (j.message.k === 'replay') {
            if (lastControl !== undefined) p.publish(`${ns}:control`, lastControl);
            break;
          }
          const text = message(j.message);
          if (j.message.k === 'sealed' && j.message.secret === 'right' && j.message.as === 'control')
            lastControl = text;
          p.publish(`${ns}:control`, text);
          break;
        }
        case 'classes':
          p.sadd(`${ns}:classes`, j.cls).publish(`${ns}:classes`, j.cls);
          break;
        case 'node':
          p.sadd(`${ns}:nodes`, j.id).set(`${ns}:node:${j.id}`, message(j.entry), 'PX', 400);
          break;
        case 'standing':
          p.hset(`${ns}:control:standing`, j.slot, message(j.entry));
          break;
      }
    }
    const results = await p.exec();
    const failed = results?.find(([e]) => e);
    if (failed) throw new Error(`writing junk failed: ${String(failed[0])}`);
  }

  it(
    'nodes keep running, count what they refuse, and still hand off work',
    async () => {
      const protos = prototypeGuard();
      let n = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(junkArb, { minLength: 1, maxLength: 4 }), async (junks) => {
          n++;
          const before = rejected();
          const expected = junks.reduce((sum, j) => sum + mustReject(j), 0);
          await write(junks);
          await until(
            () => rejected() - before >= expected,
            5_000,
            () => `rejected to grow by ${expected} (grew by ${rejected() - before})`,
          );
          for (const [who, o] of [
            ['A', a],
            ['B', b],
          ] as const) {
            expect(o.state, `${who} keeps running`).toBe('running');
            expect(o.bridge.status().status, `${who}'s bridge`).not.toBe('unhealthy');
          }
          // Valid control messages among the junk may have halted the cluster: release it, then hand off a task.
          await a.resume();
          await until(
            () => a.bridge.canAnyServe(['x']),
            5_000,
            'A sees B again (its registry entry may have been overwritten)',
          );
          const done = await settleWithin(
            a.submit<number>({ type: 't', requires: ['x'], payload: n }),
            10_000,
            'a normal hand-off',
          );
          if (done.status === 'rejected') throw new Error(`a normal hand-off failed: ${describeError(done.reason)}`);
          expect(done.value).toBe(n);
          protos.check(`after run ${n}`);
        }),
        params(500),
      );
      await guard.check();
    },
    TARGET_TIMEOUT_MS,
  );

  it('a node joining over the junk standing state starts, counts the forged entries, and serves', async () => {
    const standing = await raw.hgetall(`${ns}:control:standing`);
    await raw.hset(`${ns}:control:standing`, 'junk-slot', 'not json at all'); // at least one forged entry
    const forged =
      Object.keys(standing).filter((slot) => slot !== 'junk-slot' && !opensAsControl(standing[slot]!)).length + 1;
    const c = new UnifiedOrchestrator({
      pressure: false,
      health: { checkIntervalMs: 60_000 },
      bridge: bridge('C'),
      pools: [
        {
          role: 'w',
          capabilities: ['y'],
          minAgents: 1,
          create: () => ({ execute: async (ctx): Promise<unknown> => ctx.payload }),
        },
      ],
    });
    extra.push(c);
    await c.start();
    expect(c.state).toBe('running');
    expect(c.bridge.stats().rejected).toBeGreaterThanOrEqual(forged);
    await c.resume({ local: true }); // a valid junk halt may stand
    await until(() => a.bridge.canAnyServe(['y']), 5_000, 'A sees C');
    expect(await a.submit({ type: 't', requires: ['y'], payload: 'via C' })).toBe('via C');
  });

  function opensAsControl(value: string): boolean {
    try {
      const { m, s } = JSON.parse(value) as { m: unknown; s: unknown };
      const opened = new MessageSigner(SECRET, ns, 60_000).open<{ kind?: unknown }>('control', m, s);
      return opened !== undefined && typeof opened.kind === 'string';
    } catch {
      return false;
    }
  }
});

async function until(predicate: () => boolean, timeoutMs: number, what: string | (() => string)): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline)
      throw new Error(`${typeof what === 'string' ? what : what()}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
