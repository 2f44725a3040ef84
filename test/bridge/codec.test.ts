/**
 * Faithful or refused (src/bridge/codec.ts): a payload or result either crosses processes unchanged under the
 * documented rule, or is refused with a ValidationError naming the path of a value that really is the offending one.
 * Property-based over fc.anything (with Dates, Maps, Sets, typed arrays, NaN, -0, undefined, BigInt, functions,
 * symbols, boxed values, sparse arrays, null prototypes), examples of every message, hostile objects, the bounds, and
 * the orchestrator over a real RedisBridge: refused at submit locally and remotely with the same error, faithful
 * payloads round-tripping, results checked on the serving node and here alike.
 */
import { types } from 'node:util';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  isOrchestratorError,
  RedisBridge,
  RemoteTaskError,
  UnifiedOrchestrator,
  ValidationError,
  type Agent,
} from 'unified-orchestrator';
import { describeError } from '../../src/bridge/bridge.js';
import { checkFaithful, CODEC_LIMITS } from '../../src/bridge/codec.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { eventually, FAST, Fleet, rejection, SECRET } from './helpers.js';

/** The error `checkFaithful` throws for `value`, or `undefined` when it accepts it. */
function refusal(value: unknown, root = 'v'): unknown {
  try {
    checkFaithful(value, root);
    return undefined;
  } catch (error) {
    return error;
  }
}

type Step = string | number;

/** The steps of a path `checkFaithful` names (`v.a[3]["odd key"]`) under `root`. */
function parsePath(path: string, root = 'v'): Step[] {
  expect(path.startsWith(root)).toBe(true);
  const steps: Step[] = [];
  const token = /\.([A-Za-z_$][\w$]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/y;
  token.lastIndex = root.length;
  while (token.lastIndex < path.length) {
    const m = token.exec(path);
    if (!m) throw new Error(`unparsable path ${path} at ${token.lastIndex}`);
    steps.push(m[1] ?? (m[2] !== undefined ? Number(m[2]) : (JSON.parse(m[3]!) as string)));
  }
  return steps;
}

const isPlain = (v: object): boolean => {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

/**
 * Whether the value the path names is one the rule refuses, judged here independently of the codec: walks the path
 * through own data properties, then looks at what it reached (and where).
 */
function offendingAt(root: unknown, steps: readonly Step[]): boolean {
  const seen: object[] = [];
  let value = root;
  let parent: unknown = undefined;
  for (const step of steps) {
    if (typeof value !== 'object' || value === null) return false; // the path must go through containers
    seen.push(value);
    parent = value;
    const d = Object.getOwnPropertyDescriptor(value, step);
    if (d === undefined) return Array.isArray(value) && typeof step === 'number' && step < value.length; // a hole
    if (!('value' in d)) return true; // an accessor
    if (Array.isArray(value) && typeof step === 'string') return true; // an array's extra property
    value = d.value;
  }
  if (steps.length >= CODEC_LIMITS.maxDepth) return true;
  switch (typeof value) {
    case 'number':
      return !Number.isFinite(value);
    case 'bigint':
    case 'function':
    case 'symbol':
      return true;
    case 'undefined':
      return Array.isArray(parent);
    case 'object': {
      if (value === null) return false;
      if (seen.includes(value)) return true; // a cycle
      if (types.isProxy(value)) return true;
      if (Array.isArray(value) ? Object.getPrototypeOf(value) !== Array.prototype : !isPlain(value)) return true;
      // A plain container: what is wrong is an enumerable symbol-keyed property (fast-check marks cloneable ones).
      return Object.getOwnPropertySymbols(value).some((s) => Object.prototype.propertyIsEnumerable.call(value, s));
    }
    default:
      return false;
  }
}

/**
 * The documented rule: `copy` (what JSON made of `original`) equals it, where an object property whose value is
 * `undefined` counts as absent, `-0` equals `0`, and a null-prototype object equals a plain one. Only plain values
 * can be equal: a Map equals nothing JSON makes.
 */
function sameUnderRule(original: unknown, copy: unknown): boolean {
  if (typeof original !== 'object' || original === null) {
    if (typeof original === 'number') return typeof copy === 'number' && original === copy; // -0 === 0
    return original === copy;
  }
  if (typeof copy !== 'object' || copy === null) return false;
  if (Array.isArray(original)) {
    if (Object.getPrototypeOf(original) !== Array.prototype || !Array.isArray(copy)) return false;
    if (original.length !== copy.length) return false;
    for (let i = 0; i < original.length; i++) {
      if (!Object.hasOwn(original, i) || !sameUnderRule(original[i], copy[i])) return false;
    }
    return Object.keys(original).length === original.length;
  }
  if (!isPlain(original) || Object.getPrototypeOf(copy) !== Object.prototype || Array.isArray(copy)) return false;
  const kept = Object.keys(original).filter((k) => (original as Record<string, unknown>)[k] !== undefined);
  const copied = Object.keys(copy);
  if (kept.length !== copied.length || !kept.every((k) => Object.hasOwn(copy, k))) return false;
  return kept.every((k) =>
    sameUnderRule((original as Record<string, unknown>)[k], (copy as Record<string, unknown>)[k]),
  );
}

/** JSON's round trip of `value` (`undefined` stays `undefined`, as a dropped key does). */
function roundTrip(value: unknown): unknown {
  const json = JSON.stringify(value) as string | undefined;
  return json === undefined ? undefined : JSON.parse(json);
}

const anything = fc.anything({
  maxDepth: 4,
  key: fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'a b', '0', 'toJSON')),
  values: [
    fc.boolean(),
    fc.integer(),
    fc.double(),
    fc.string(),
    fc.constant(null),
    fc.constant(undefined),
    fc.constantFrom(Number.NaN, 0, -0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.MAX_VALUE),
    fc.func(fc.integer()),
    fc.string().map((s) => Symbol(s)),
  ],
  withBoxedValues: true,
  withMap: true,
  withSet: true,
  withNullPrototype: true,
  withBigInt: true,
  withDate: true,
  withTypedArray: true,
  withSparseArray: true,
});

describe('checkFaithful: property', () => {
  it('either refuses with a ValidationError naming a path that holds an offending value, or JSON keeps the value under the rule', () => {
    let refused = 0;
    let kept = 0;
    fc.assert(
      fc.property(anything, (value) => {
        const error = refusal(value);
        if (error === undefined) {
          kept++;
          expect(sameUnderRule(value, roundTrip(value))).toBe(true);
          return;
        }
        refused++;
        expect(error).toBeInstanceOf(ValidationError);
        const { field, message } = error as ValidationError;
        expect(message).toContain(`\`${field}\``);
        expect(offendingAt(value, parsePath(field))).toBe(true);
      }),
      { numRuns: 3_000 },
    );
    // Both branches were exercised.
    expect(refused).toBeGreaterThan(100);
    expect(kept).toBeGreaterThan(100);
  });

  it('accepts every JSON value as JSON.parse makes it', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(refusal(value)).toBeUndefined();
        expect(refusal(roundTrip(value))).toBeUndefined();
      }),
      { numRuns: 1_000 },
    );
  });
});

describe('checkFaithful: each refusal names the path, what would change and the fix', () => {
  class Invoice {
    total = 1;
  }
  const sparse: unknown[] = [1];
  sparse[2] = 3;
  const cases: Array<[string, unknown, string, RegExp]> = [
    [
      'Date',
      { items: [0, 1, 2, { when: new Date(0) }] },
      'v.items[3].when',
      /a Date, which becomes a string.*toISOString\(\)/,
    ],
    ['Map', { m: new Map([['a', 1]]) }, 'v.m', /a Map, which becomes \{\}.*Object\.fromEntries\(map\)/],
    ['Set', [new Set([1])], 'v[0]', /a Set, which becomes \{\}.*\[\.\.\.set\]/],
    ['NaN', { n: Number.NaN }, 'v.n', /NaN, which becomes null.*pass null/],
    ['Infinity', { n: -Infinity }, 'v.n', /-Infinity, which becomes null/],
    ['BigInt', { id: 10n }, 'v.id', /a BigInt, which JSON cannot hold.*toString\(\)/],
    ['function', { cb: () => 1 }, 'v.cb', /a function, which is dropped/],
    ['function in array', [() => 1], 'v[0]', /a function, which becomes null/],
    ['symbol', { s: Symbol('x') }, 'v.s', /a symbol, which is dropped.*pass a string/],
    ['undefined in array', [1, undefined], 'v[1]', /undefined in an array, which becomes null.*pass null/],
    ['hole', sparse, 'v[1]', /a hole in a sparse array, which becomes null/],
    ['class instance', { inv: new Invoice() }, 'v.inv', /an instance of Invoice, which arrives as a plain object/],
    ['typed array', { b: new Uint8Array([1]) }, 'v.b', /binary data \(Uint8Array\).*base64/],
    ['Buffer', { b: Buffer.from('x') }, 'v.b', /binary data \(Buffer\)/],
    ['RegExp', { r: /x/ }, 'v.r', /a RegExp, which becomes \{\}.*regexp\.source/],
    ['Error', { e: new Error('x') }, 'v.e', /an Error, which becomes \{\}.*error\.message/],
    ['boxed', { s: new String('x') }, 'v.s', /a boxed primitive \(String object\).*valueOf\(\)/],
    ['odd key', { 'odd key': new Map() }, 'v["odd key"]', /a Map/],
    [
      'array extra',
      { a: Object.assign([1, 2], { note: 'x' }) },
      'v.a.note',
      /a property of an array other than its elements/,
    ],
    [
      'array subclass',
      { a: new (class Row extends Array {})() },
      'v.a',
      /an instance of Row, which arrives as a plain array/,
    ],
    ['symbol key', { o: { [Symbol('k')]: 1 } }, 'v.o', /symbol-keyed property \(Symbol\(k\)\)/],
    [
      'accessor',
      {
        o: {
          get x() {
            return 1;
          },
        },
      },
      'v.o.x',
      /a getter or setter/,
    ],
  ];
  it.each(cases)('%s', (_, value, field, message) => {
    const error = refusal(value) as ValidationError;
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.code).toBe('VALIDATION_ERROR');
    expect(error.field).toBe(field);
    expect(error.message).toMatch(message);
    expect(error.message).toContain(`\`${field}\``);
  });

  it('a cycle names the property that refers back', () => {
    const a: Record<string, unknown> = { b: { c: [1, {}] } };
    ((a['b'] as { c: unknown[] }).c[1] as Record<string, unknown>)['back'] = a;
    const error = refusal(a) as ValidationError;
    expect(error.field).toBe('v.b.c[1].back');
    expect(error.message).toMatch(/refers back to an object that contains it \(a cycle\)/);
  });

  it('the root name is the caller’s: task.payload… for payloads, result… for results', () => {
    expect((refusal({ at: new Date() }, 'task.payload') as ValidationError).field).toBe('task.payload.at');
    expect((refusal(new Map(), 'result') as ValidationError).field).toBe('result');
  });
});

describe('checkFaithful: the documented relaxations', () => {
  it('an undefined property is accepted (JSON drops the key; reading it still gives undefined)', () => {
    const value = { a: 1, gone: undefined };
    expect(refusal(value)).toBeUndefined();
    const copy = roundTrip(value) as Record<string, unknown>;
    expect(copy['gone']).toBeUndefined();
    expect('gone' in copy).toBe(false);
  });

  it('undefined as the whole value is accepted (no payload, a void agent)', () => {
    expect(refusal(undefined)).toBeUndefined();
  });

  it('-0 is accepted and arrives as 0', () => {
    expect(refusal({ z: -0 })).toBeUndefined();
    expect(Object.is((roundTrip({ z: -0 }) as { z: number }).z, 0)).toBe(true);
  });

  it('a null-prototype object and a shared (acyclic) reference are accepted', () => {
    const shared = { k: 1 };
    const nullProto = Object.assign(Object.create(null) as object, { a: shared, b: shared });
    expect(refusal(nullProto)).toBeUndefined();
    expect(roundTrip(nullProto)).toEqual({ a: { k: 1 }, b: { k: 1 } });
  });

  it('non-enumerable properties are not part of the value: not read, not refused', () => {
    let read = false;
    const value = { a: 1 };
    Object.defineProperty(value, 'hidden', {
      enumerable: false,
      get() {
        read = true;
        return new Map();
      },
    });
    expect(refusal(value)).toBeUndefined();
    expect(read).toBe(false);
  });
});

describe('checkFaithful: hostile values and bounds', () => {
  it('never calls a getter or a proxy trap, and throws nothing but ValidationError', () => {
    let called = 0;
    const hostile = {
      get boom(): never {
        called++;
        throw new Error('getter ran');
      },
    };
    const trapped = new Proxy(
      {},
      new Proxy(
        {},
        {
          get() {
            called++;
            throw new Error('trap ran');
          },
        },
      ),
    );
    const { proxy: revoked, revoke } = Proxy.revocable({}, {});
    revoke();
    const weirdClass = Object.create(
      Object.create(Object.prototype, {
        constructor: {
          get() {
            called++;
            throw new Error('constructor getter ran');
          },
        },
      }) as object,
    ) as object;
    for (const [value, field] of [
      [hostile, 'v.boom'],
      [{ deep: [trapped] }, 'v.deep[0]'],
      [{ r: revoked }, 'v.r'],
      [new Proxy([1, 2], {}), 'v'],
      [{ w: weirdClass }, 'v.w'],
    ] as const) {
      const error = refusal(value);
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe(field);
    }
    expect(called).toBe(0);
  });

  it(`refuses a value nested deeper than ${CODEC_LIMITS.maxDepth} levels, and accepts one at the bound`, () => {
    const nest = (levels: number): unknown => {
      let v: unknown = 1;
      for (let i = 0; i < levels; i++) v = [v];
      return v;
    };
    expect(refusal(nest(CODEC_LIMITS.maxDepth))).toBeUndefined();
    const error = refusal(nest(CODEC_LIMITS.maxDepth + 1)) as ValidationError;
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.message).toMatch(/nested deeper than 512 levels/);
    expect(parsePath(error.field)).toHaveLength(CODEC_LIMITS.maxDepth);
  });

  it(`refuses a value of more than ${CODEC_LIMITS.maxValues} values (a shared-reference tree JSON would blow up)`, () => {
    let v: unknown = 'leaf';
    for (let i = 0; i < 40; i++) v = [v, v]; // 2^41 values as JSON, a few dozen objects in memory
    const started = performance.now();
    const error = refusal(v) as ValidationError;
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.message).toMatch(/past 1000000 values/);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

/** An agent that returns `v` for `{ op: 'echo', v }`, and values JSON would change for `{ op: 'map' }`. */
function codecAgent(node: string): Agent {
  return {
    execute(ctx) {
      const p = ctx.payload as { op: string; v?: unknown };
      if (p.op === 'map') return { node, counts: new Map([['a', 1]]) };
      if (p.op === 'progress') {
        ctx.progress(1);
        ctx.progress(2);
        return { node, v: 'done' };
      }
      return { node, v: p.v };
    },
  };
}

const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('faithful or refused, through the orchestrator on a real redis-server', () => {
  let redis: TestRedis;
  const fleet = new Fleet();
  beforeAll(async () => {
    redis = await startRedis();
  }, 30_000);
  afterEach(() => fleet.stopAll());
  afterAll(async () => {
    if (redis?.owned) await redis.stop();
  });

  /** A (serving `local`) and B (serving `x`) on one RedisBridge namespace, A seeing B. */
  async function pair(): Promise<{ a: UnifiedOrchestrator; b: UnifiedOrchestrator }> {
    const ns = namespace();
    const node = (id: string, capability: string): UnifiedOrchestrator =>
      fleet.add(
        new UnifiedOrchestrator({
          pressure: false,
          bridge: new RedisBridge({ url: redis.url, secret: SECRET, namespace: ns, nodeId: id, ...FAST }),
          pools: [{ role: capability, capabilities: [capability], minAgents: 1, create: () => codecAgent(id) }],
        }),
      );
    const b = node('B', 'x');
    const a = node('A', 'local');
    await b.start();
    await a.start();
    await eventually(() => a.bridge.canAnyServe(['x']), 5_000, 'A sees B');
    return { a, b };
  }

  it('a Map payload is refused at submit with the same ValidationError, whether it would run here or on B', async () => {
    const { a, b } = await pair();
    const payload = { op: 'echo', v: { items: [{ id: 1 }, { id: 2, tally: new Map([['k', 1]]) }] } };
    const local = await rejection(a.submit({ type: 't', requires: ['local'], payload }));
    const remote = await rejection(a.submit({ type: 't', requires: ['x'], payload }));
    for (const error of [local, remote]) {
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ code: 'VALIDATION_ERROR', field: 'task.payload.v.items[1].tally' });
    }
    expect((remote as Error).message).toBe((local as Error).message);
    expect((local as Error).message).toMatch(/is a Map, which becomes \{\} across processes/);
    // delegate throws the same, synchronously.
    expect(() => a.delegate({ type: 't', requires: ['x'], payload })).toThrow(ValidationError);
    // Nothing was accepted, run or handed off.
    expect(a.bridge.stats().handedOff).toBe(0);
    expect(a.stats()).toMatchObject({ completed: 0 });
    expect(b.stats()).toMatchObject({ submitted: 0 });
  });

  it('a faithful payload round-trips through B unchanged (under the rule), as it does here', async () => {
    const { a } = await pair();
    const v = {
      text: 'é 😀 \u0000',
      n: [0, -1.5, Number.MAX_SAFE_INTEGER, 1e-300],
      nested: { ok: true, none: null, list: [[], {}, [{ deep: 'x' }]] },
      zero: -0,
      dropped: undefined,
    };
    const expected = { text: v.text, n: v.n, nested: v.nested, zero: 0 };
    const remote = await a.submit<{ node: string; v: unknown }>({
      type: 't',
      requires: ['x'],
      payload: { op: 'echo', v },
    });
    expect(remote.node).toBe('B');
    expect(remote.v).toEqual(expected);
    expect(Object.is((remote.v as { zero: number }).zero, 0)).toBe(true);
    expect('dropped' in (remote.v as object)).toBe(false);
    const local = await a.submit<{ v: unknown }>({ type: 't', requires: ['local'], payload: { op: 'echo', v } });
    expect(sameUnderRule(local.v, remote.v)).toBe(true);
  });

  it('a result JSON would change fails on B and here alike, naming result.<path>; the remote error is an OrchestratorError', async () => {
    const { a, b } = await pair();
    const remote = await rejection(a.submit({ type: 't', requires: ['x'], payload: { op: 'map' } }));
    expect(remote).toBeInstanceOf(RemoteTaskError);
    expect(isOrchestratorError(remote)).toBe(true);
    expect(remote).toMatchObject({ name: 'ValidationError', code: 'VALIDATION_ERROR', node: 'B' });
    const local = await rejection(a.delegate({ type: 't', requires: ['local'], payload: { op: 'map' } }).result);
    expect(local).toBeInstanceOf(ValidationError);
    expect(local).toMatchObject({ code: 'VALIDATION_ERROR', field: 'result.counts' });
    expect((remote as Error).message).toBe((local as Error).message);
    // The task itself completed where it ran (its agent is not run again); only its result was refused.
    expect(b.stats()).toMatchObject({ completed: 1, failed: 0 });
    expect(a.stats()).toMatchObject({ completed: 1, failed: 0 });
  });

  it('a handle whose result is checked is still the same handle: id, cancel and progress', async () => {
    const { a } = await pair();
    const handle = a.delegate<{ v: unknown }>({ type: 't', requires: ['local'], payload: { op: 'progress' } });
    await expect(handle.result).resolves.toEqual({ node: 'A', v: 'done' });
    expect(handle.progress.latest?.value).toBe(2);
    expect(handle.progress.ended).toBe(true);
    expect(typeof handle.id).toBe('string');
    expect(handle.cancel()).toBe(false); // already done
  });

  it('without a bridge option, payloads and results stay in-process and are not checked', async () => {
    const o = fleet.add(
      new UnifiedOrchestrator({
        pressure: false,
        pools: [{ role: 'local', capabilities: ['local'], minAgents: 1, create: () => codecAgent('solo') }],
      }),
    );
    await o.start();
    const map = new Map([['k', 1]]);
    await expect(o.submit({ type: 't', requires: ['local'], payload: { op: 'echo', v: map } })).resolves.toEqual({
      node: 'solo',
      v: map,
    });
    const result = await o.submit<{ counts: unknown }>({ type: 't', requires: ['local'], payload: { op: 'map' } });
    expect(result.counts).toBeInstanceOf(Map);
  });
});

describe('RemoteTaskError, the remote side of an error', () => {
  it('is an OrchestratorError: a library code is kept, any other becomes REMOTE_TASK_FAILED with remoteCode', () => {
    const known = new RemoteTaskError({ name: 'TaskTimeoutError', code: 'TASK_TIMEOUT', message: 'slow' }, 'B');
    expect(isOrchestratorError(known)).toBe(true);
    expect(known).toBeInstanceOf(RemoteTaskError);
    expect(known).toMatchObject({ name: 'TaskTimeoutError', code: 'TASK_TIMEOUT', remoteCode: 'TASK_TIMEOUT' });
    const own = new RemoteTaskError({ name: 'PaymentError', code: 'E_CARD', message: 'declined' }, 'B');
    expect(own).toMatchObject({ name: 'PaymentError', code: 'REMOTE_TASK_FAILED', remoteCode: 'E_CARD', node: 'B' });
    const none = new RemoteTaskError({ name: 'TypeError', message: 'x' }, 'B');
    expect(none).toMatchObject({ code: 'REMOTE_TASK_FAILED', remoteCode: undefined });
    // Not fooled by a prototype key.
    expect(new RemoteTaskError({ name: 'E', code: 'toString', message: 'm' }, 'B').code).toBe('REMOTE_TASK_FAILED');
  });

  it('passed on again (described for another hop or the store), it keeps the code it was reported with', () => {
    const own = new RemoteTaskError({ name: 'PaymentError', code: 'E_CARD', message: 'declined' }, 'B');
    expect(describeError(own)).toEqual({ name: 'PaymentError', code: 'E_CARD', message: 'declined' });
    const again = new RemoteTaskError(describeError(own), 'C');
    expect(again).toMatchObject({ name: 'PaymentError', code: 'REMOTE_TASK_FAILED', remoteCode: 'E_CARD' });
    expect(describeError(new RemoteTaskError({ name: 'TypeError', message: 'x' }, 'B'))).toEqual({
      name: 'TypeError',
      message: 'x',
    });
  });
});
