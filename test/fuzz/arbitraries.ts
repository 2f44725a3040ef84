/**
 * Shared pieces of the fuzz suite (test/fuzz): hostile value generators, fast-check parameters (runs, seed, strict
 * mode), a guard against unhandled rejections and uncaught exceptions, a prototype-pollution check, and the balance of
 * an orchestrator's counters.
 *
 * Recipes, not values. The arbitraries generate plain descriptions of hostile values ("a Proxy whose traps throw, around
 * this object", "a getter that throws on its second read") and `build()` makes a fresh value from a recipe inside the
 * property. So counterexamples print readably, a value with state (a revoked Proxy, a counting getter) is new for every
 * run and every shrink step, and nothing the library might keep or mutate is shared between runs.
 *
 * Zones say where a value lands, because what is hostile depends on what the library does with it:
 * - `payload`: carried, never inspected (or only through a guarded JSON.stringify): anything goes.
 * - `field`: checked with typeof / Array.isArray / number checks: anything but what makes those throw (a revoked Proxy).
 * - `container`: an object or array the library walks (the task itself, `requires`, an options section): its reads must
 *   not throw, so the read-throwing wrappers (throwing traps and getters, revoked proxies) are strict-only there.
 *
 * Strict mode (`FUZZ_STRICT=1`) adds the input classes of the known bugs (test/fuzz/known-bugs.test.ts pins each one
 * with its minimal counterexample) so that the targets reproduce them; by default they are left out so the suite
 * passes and guards everything else. Other knobs: `FUZZ_RUNS` (runs per target), `FUZZ_SEED` and `FUZZ_PATH` (replay a
 * failure: fast-check prints both in its failure message).
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import {
  isOrchestratorError,
  LEGACY_ERROR_CODES,
  type OrchestratorErrorCode,
  type OrchestratorStats,
} from 'unified-orchestrator';

// ---------------------------------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------------------------------

/** Include the input classes of the known bugs. */
export const STRICT = process.env['FUZZ_STRICT'] === '1';

/** `n`, or `FUZZ_RUNS` when set (a soak run, or a quick one). */
export function runs(n: number): number {
  const v = Number(process.env['FUZZ_RUNS']);
  return Number.isSafeInteger(v) && v > 0 ? v : n;
}

/**
 * fast-check parameters for one target. The seed is drawn here (or taken from `FUZZ_SEED`) so that it is known up front;
 * on failure fast-check's message carries it with the shrink path (`{ seed: …, path: "…" }`): replay with
 * `FUZZ_SEED=<seed> FUZZ_PATH=<path> npx vitest run test/fuzz/<file>`.
 */
export function params<T>(numRuns: number): fc.Parameters<T> {
  const fromEnv = Number(process.env['FUZZ_SEED']);
  const seed =
    process.env['FUZZ_SEED'] !== undefined && Number.isSafeInteger(fromEnv)
      ? fromEnv
      : (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0;
  const path = process.env['FUZZ_PATH'];
  return { numRuns: runs(numRuns), seed, ...(path ? { path } : {}) };
}

/** Per-test timeout of a fuzz target: generous, since the targets share two cores with the rest of the suite. */
export const TARGET_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------------------------------------------------------------
// Guards
// ---------------------------------------------------------------------------------------------------------------------

/**
 * Counts unhandled rejections and uncaught exceptions while a target runs (`uncaughtExceptionMonitor` observes without
 * changing what Node does). `check()` lets pending rejections surface (one macrotask) and asserts none happened.
 */
export function processGuard(): {
  check(): Promise<void>;
  dispose(): void;
  readonly events: ReadonlyArray<readonly [string, unknown]>;
} {
  const events: Array<readonly [string, unknown]> = [];
  const onRejection = (reason: unknown): void => {
    events.push(['unhandledRejection', reason]);
  };
  const onException = (error: unknown): void => {
    events.push(['uncaughtException', error]);
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtExceptionMonitor', onException);
  return {
    events,
    async check() {
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(
        events.map(([kind, e]) => `${kind}: ${describeError(e)}`),
        'unhandled rejections / uncaught exceptions',
      ).toEqual([]);
    },
    dispose() {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtExceptionMonitor', onException);
    },
  };
}

/** Keys a polluted prototype would show on every object. */
const SENTINELS = [
  'polluted',
  'isAdmin',
  'fuzzed',
  'intervalMs',
  'role',
  'type',
  'requires',
  'kind',
  'percent',
  'shadow',
  'then',
];

const WATCHED: ReadonlyArray<readonly [string, object]> = [
  ['Object.prototype', Object.prototype],
  ['Array.prototype', Array.prototype],
  ['Function.prototype', Function.prototype],
  ['String.prototype', String.prototype],
  ['Promise.prototype', Promise.prototype],
  ['Error.prototype', Error.prototype],
];

/**
 * A snapshot of the built-in prototypes; `check()` (cheap: key counts, the values of Object.prototype's own properties,
 * and sentinel lookups on a fresh object) throws when anything was added, removed or replaced.
 */
export function prototypeGuard(): { check(where?: string): void } {
  const counts = WATCHED.map(([, p]) => Reflect.ownKeys(p).length);
  const objectValues = new Map(
    Reflect.ownKeys(Object.prototype).map((k) => [k, Object.getOwnPropertyDescriptor(Object.prototype, k)]),
  );
  return {
    check(where = '') {
      WATCHED.forEach(([name, p], i) => {
        const n = Reflect.ownKeys(p).length;
        if (n !== counts[i])
          throw new Error(
            `${name} has ${n - counts[i]!} new own key(s) ${where}: ${Reflect.ownKeys(p).map(String).join(', ')}`,
          );
      });
      for (const [k, d] of objectValues) {
        const now = Object.getOwnPropertyDescriptor(Object.prototype, k);
        if (!now || now.value !== d?.value || now.get !== d?.get || now.set !== d?.set)
          throw new Error(`Object.prototype.${String(k)} was replaced ${where}`);
      }
      const probe: Record<string, unknown> = {};
      for (const k of SENTINELS)
        if (k in probe) throw new Error(`({}).${k} resolves through a polluted prototype ${where}`);
      if (Object.getPrototypeOf(Object.prototype) !== null)
        throw new Error(`Object.prototype got a prototype ${where}`);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------------

/** What hostile inputs throw (getters, traps, toString): recognisable when it escapes the library unwrapped. */
export class FuzzThrow extends Error {
  constructor(where: string) {
    super(`fuzz: ${where} threw`);
    this.name = 'FuzzThrow';
  }
}

/** Every stable code of the library. */
export const ERROR_CODES: ReadonlySet<string> = new Set(Object.keys(LEGACY_ERROR_CODES) as OrchestratorErrorCode[]);

/** A short description of an error (or anything thrown), never throwing itself. */
export function describeError(e: unknown): string {
  try {
    if (e instanceof Error)
      // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a fuzzed `code` may be anything; String() it is
      return `${e.constructor.name}(${String((e as { code?: unknown }).code ?? '')}): ${e.message.slice(0, 200)}`;
    return `${typeof e}: ${String(e).slice(0, 200)}`;
  } catch {
    return `${typeof e} (unprintable)`;
  }
}

/** JSON-ish text of anything, for assertion messages (BigInt, cycles and throwing getters included). */
export function show(value: unknown): string {
  const seen = new WeakSet<object>();
  try {
    return (
      JSON.stringify(value, (_k, v: unknown) => {
        if (typeof v === 'bigint') return `${v}n`;
        if (typeof v === 'object' && v !== null) {
          if (seen.has(v)) return '[cycle]';
          seen.add(v);
        }
        return v;
      }) ?? String(value)
    ).slice(0, 300);
  } catch {
    return `${typeof value} (unprintable)`;
  }
}

/**
 * Asserts `error` is a typed refusal: an OrchestratorError with a known code; a ValidationError also names a non-empty
 * `field` (starting with `fieldPrefix` when given) and has a message.
 */
export function expectTyped(error: unknown, fieldPrefix?: string | readonly string[]): void {
  if (!isOrchestratorError(error))
    throw new Error(`expected an OrchestratorError, got ${describeError(error)}`, { cause: error });
  expect(ERROR_CODES.has(error.code), `known code ${error.code}`).toBe(true);
  expect(typeof error.message === 'string' && error.message.length > 0, 'error message').toBe(true);
  if (error.code === 'VALIDATION_ERROR') {
    const field = (error as { field?: unknown }).field;
    expect(
      typeof field === 'string' && field.length > 0,
      `ValidationError.field is a non-empty string (${String(field)})`,
    ).toBe(true);
    if (fieldPrefix !== undefined) {
      const prefixes = typeof fieldPrefix === 'string' ? [fieldPrefix] : fieldPrefix;
      expect(
        prefixes.some(
          (p) =>
            (field as string) === p || (field as string).startsWith(`${p}.`) || (field as string).startsWith(`${p}[`),
        ),
        `field ${String(field)} starts with ${prefixes.join(' | ')}`,
      ).toBe(true);
    }
  }
}

/** Settles `p` within `ms`, or fails: the outcome as a PromiseSettledResult. */
export async function settleWithin<T>(p: Promise<T>, ms: number, what: string): Promise<PromiseSettledResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  const settled = p.then(
    (value) => ({ status: 'fulfilled', value }) as const,
    (reason: unknown) => ({ status: 'rejected', reason }) as const,
  );
  const outcome = await Promise.race([settled, timeout]);
  clearTimeout(timer);
  if (outcome === 'timeout') throw new Error(`${what} did not settle within ${ms} ms`);
  return outcome;
}

// ---------------------------------------------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------------------------------------------

/** Every submit is refused, deduplicated, terminal (five outcomes) or in flight (waiting, running, backing off). */
export function checkStats(s: OrchestratorStats, where = ''): void {
  const counters = [
    'submitted',
    'rejected',
    'deduplicated',
    'completed',
    'failed',
    'cancelled',
    'timedOut',
    'deadLettered',
    'retries',
    'waiting',
    'running',
    'backingOff',
    'deadLetters',
  ] as const;
  for (const k of counters) {
    const v = s[k];
    if (!(Number.isSafeInteger(v) && v >= 0)) throw new Error(`stats().${k} is ${v} ${where}`);
  }
  for (const [state, n] of Object.entries(s.agents))
    if (!(Number.isSafeInteger(n) && n >= 0)) throw new Error(`stats().agents.${state} is ${n} ${where}`);
  const accounted =
    s.rejected +
    s.deduplicated +
    s.completed +
    s.failed +
    s.cancelled +
    s.timedOut +
    s.deadLettered +
    s.waiting +
    s.running +
    s.backingOff;
  if (accounted !== s.submitted) {
    throw new Error(
      `stats() does not balance ${where}: submitted ${s.submitted} ≠ rejected ${s.rejected} + deduplicated ${s.deduplicated} + completed ${s.completed} + failed ${s.failed} + cancelled ${s.cancelled} + timedOut ${s.timedOut} + deadLettered ${s.deadLettered} + waiting ${s.waiting} + running ${s.running} + backingOff ${s.backingOff} = ${accounted}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Hostile values: recipes
// ---------------------------------------------------------------------------------------------------------------------

/** Named hostile (or merely odd) values; `build` makes a fresh one each time (expensive immutable ones are cached). */
export const CONSTS = [
  'undefined',
  'null',
  'true',
  'false',
  'NaN',
  'Infinity',
  '-Infinity',
  '-0',
  '0',
  '-1',
  '0.5',
  '1e-300',
  'MIN_VALUE',
  'MAX_SAFE+1',
  '1e308',
  '2^31',
  'bigint',
  'symbol',
  'function',
  'asyncFunction',
  'class',
  'date',
  'invalidDate',
  'regexp',
  'map',
  'set',
  'weakMap',
  'promise',
  'rejectedPromise',
  'error',
  'boxedString',
  'boxedNumber',
  'emptyString',
  'nul',
  'loneSurrogate',
  'rtl',
  'hugeString',
  'hugeArray',
  'sparseArray',
  'typedArray',
  'arrayBuffer',
  'nullProtoObject',
  'objectPrototype',
  'arrayPrototype',
  'thenable',
  'thenableThrows',
  'toJSONThrows',
  'cyclic',
  'cyclicArray',
  'deepObject',
  'veryDeepObject',
  'deepArray',
  'protoJson',
  'constructorPrototype',
  'liveSignal',
  'abortedSignal',
  // Read-hostile: their reads or coercions throw. Strict-only outside the payload zone.
  'revoked',
  'toStringThrows',
  'errorThrowingMessage',
  'proxyThrowsAll',
  // Hostile only as a task's `signal` (they pass `instanceof AbortSignal`): strict-only, and only there.
  'fakeSignal',
  'signalThrowingAel',
  'signalThrowingAborted',
] as const;
export type ConstName = (typeof CONSTS)[number];

/** Consts whose inspection (Array.isArray, instanceof, String(), property reads) throws. */
export const READ_HOSTILE_CONSTS: ReadonlySet<ConstName> = new Set([
  'revoked',
  'toStringThrows',
  'errorThrowingMessage',
  'proxyThrowsAll',
  'thenableThrows',
]);

/** Signals that are not what they claim; only a task's `signal` field gets them (strict mode). */
export const SIGNAL_CONSTS: ReadonlySet<ConstName> = new Set([
  'fakeSignal',
  'signalThrowingAel',
  'signalThrowingAborted',
]);

/** How an object or array is wrapped. */
export const WRAPS = [
  'plain',
  'frozen',
  'sealed',
  'nullProto',
  'inheritsHostile',
  'proxy',
  'proxyNoMutate',
  // Read-hostile: strict-only where the library reads the object.
  'proxyThrows',
  'getterThrows',
  'getterThrowsSecondRead',
  'revoked',
] as const;
export type Wrap = (typeof WRAPS)[number];
export const SAFE_WRAPS: readonly Wrap[] = [
  'plain',
  'frozen',
  'sealed',
  'nullProto',
  'inheritsHostile',
  'proxy',
  'proxyNoMutate',
];

export type ValueRecipe =
  | { readonly k: 'json'; readonly v: unknown }
  | { readonly k: 'any'; readonly v: unknown }
  | { readonly k: 'const'; readonly name: ConstName }
  | { readonly k: 'obj'; readonly entries: ReadonlyArray<readonly [string, ValueRecipe]>; readonly wrap: Wrap }
  | { readonly k: 'arr'; readonly items: readonly ValueRecipe[]; readonly wrap: Wrap }
  | { readonly k: 'fn'; readonly returns: ValueRecipe | 'throws' }
  | { readonly k: 'new'; readonly name: string };

export type Zone = 'payload' | 'field' | 'container';

/** Keys that have bitten JavaScript libraries before. */
export const HOSTILE_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'valueOf',
  'hasOwnProperty',
  '__defineGetter__',
  'then',
  'toJSON',
  'length',
  '',
  ' ',
  '0',
  '-1',
  'polluted',
  'isAdmin',
  'a.b',
  'a[0]',
  '\u0000',
  '\uD800',
  '𝒳',
  'x'.repeat(300),
] as const;

export const keyArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 8 }) },
  { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_KEYS) },
);

export function constArb(zone: Zone, extra: readonly ConstName[] = []): fc.Arbitrary<ValueRecipe> {
  const names = CONSTS.filter(
    (n) => !SIGNAL_CONSTS.has(n) && (zone === 'payload' || STRICT || !READ_HOSTILE_CONSTS.has(n)),
  ).concat(extra);
  return fc.constantFrom(...names).map((name) => ({ k: 'const', name }) as const);
}

/**
 * The wrappers `zone` allows. Arrays without Array.prototype (null or hostile prototype) lose map/forEach/iteration:
 * the library walking a caller's array with those fails (a known bug for `pools`), so they are strict-only in containers.
 */
export function wrapArb(zone: Zone, array = false): fc.Arbitrary<Wrap> {
  if (zone === 'payload' || STRICT) return fc.constantFrom(...WRAPS);
  if (zone === 'field') return fc.constantFrom(...WRAPS.filter((w) => w !== 'revoked'));
  return fc.constantFrom(...SAFE_WRAPS.filter((w) => !array || (w !== 'nullProto' && w !== 'inheritsHostile')));
}

const FACTORIES = new Map<string, () => unknown>();

/** A value made by `make` for every run (a real registry, a bridge): a recipe that prints as its name. */
export function factory(name: string, make: () => unknown): fc.Arbitrary<ValueRecipe> {
  FACTORIES.set(name, make);
  return fc.constant({ k: 'new', name } as const);
}

const jsonArb: fc.Arbitrary<ValueRecipe> = fc.jsonValue({ maxDepth: 2 }).map((v) => ({ k: 'json', v }) as const);
/** fast-check's `anything`; sparse arrays only where they are not walked (a sparse `pools` is a known bug). */
const anyArb = (zone: Zone): fc.Arbitrary<ValueRecipe> =>
  fc
    .anything({
      maxDepth: 2,
      maxKeys: 4,
      key: keyArb,
      withBigInt: true,
      withBoxedValues: true,
      withDate: true,
      withMap: true,
      withSet: true,
      withNullPrototype: true,
      withObjectString: true,
      withSparseArray: zone !== 'container' || STRICT,
      withTypedArray: true,
      withUnicodeString: true,
    })
    .map((v) => ({ k: 'any', v }) as const);

/**
 * Any value for `zone`: named consts, JSON, fast-check's `anything` (BigInt, boxed values, null prototypes, sparse and
 * typed arrays, Maps, Sets, odd keys), functions, and objects and arrays of those under the wrappers the zone allows.
 * What is nested inside a field or payload value is never inspected, so it may be anything.
 */
export function valueArb(zone: Zone, depth = 2): fc.Arbitrary<ValueRecipe> {
  const leaves = [
    { weight: 4, arbitrary: constArb(zone) },
    { weight: 2, arbitrary: jsonArb },
    { weight: 2, arbitrary: anyArb(zone) },
  ];
  if (depth <= 0) return fc.oneof(...leaves);
  // The library descends into containers (an options section's sub-sections), never into field or payload values.
  const inner = valueArb(zone === 'container' ? 'container' : 'payload', depth - 1);
  return fc.oneof(
    ...leaves,
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('obj' as const),
        entries: fc.array(fc.tuple(keyArb, inner), { maxLength: 4 }),
        wrap: wrapArb(zone),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('arr' as const),
        items: fc.array(inner, { maxLength: 4 }),
        wrap: wrapArb(zone, true),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ k: fc.constant('fn' as const), returns: fc.oneof(fc.constant('throws' as const), inner) }),
    },
  );
}

/**
 * Not an object whose prototype throws on the names the library reads. Option bags and messages are read with plain
 * property access (inherited properties included, as for a class instance): a prototype whose getters throw is as
 * hostile there as a throwing trap, so such recipes are strict-only where the library reads them that way.
 */
export const readable = (r: ValueRecipe): boolean => STRICT || !(r.k === 'obj' && r.wrap === 'inheritsHostile');

/** Not `null`: `null` for an optional options bag (`cancel(id, reason, null)`) is a known bug, strict-only. */
export const notNull = (r: ValueRecipe): boolean =>
  STRICT ||
  !((r.k === 'const' && r.name === 'null') || (r.k === 'json' && r.v === null) || (r.k === 'any' && r.v === null));

/** `value` or, with weight `hostile`, any value of `zone` (what a caller might send instead). */
export function validOr(
  valid: fc.Arbitrary<ValueRecipe>,
  zone: Zone = 'field',
  hostile = 1,
  weight = 3,
): fc.Arbitrary<ValueRecipe> {
  return fc.oneof({ weight, arbitrary: valid }, { weight: hostile, arbitrary: valueArb(zone) });
}

export const json = (arb: fc.Arbitrary<unknown>): fc.Arbitrary<ValueRecipe> =>
  arb.map((v) => ({ k: 'json', v }) as const);
export const konst = (...names: ConstName[]): fc.Arbitrary<ValueRecipe> =>
  fc.constantFrom(...names).map((name) => ({ k: 'const', name }) as const);

/**
 * An object recipe over `fields` (each present or not), sometimes with extra keys, under a wrapper `zone` allows.
 * The keys of `fields` are the ones the library knows; extra ones it must refuse or ignore.
 */
export function objectArb(
  fields: Record<string, fc.Arbitrary<ValueRecipe>>,
  options: {
    zone?: Zone;
    extra?: number;
    wrap?: fc.Arbitrary<Wrap>;
    presence?: readonly [present: number, absent: number];
    required?: readonly string[];
  } = {},
): fc.Arbitrary<ValueRecipe> {
  const zone = options.zone ?? 'container';
  const entries = Object.entries(fields).map(([key, arb]) => {
    // A required field is there 8 times in 9 (its absence is one more malformed input).
    const [present, absent] = options.required?.includes(key) ? [8, 1] : (options.presence ?? [1, 1]);
    return fc.oneof(
      { weight: present, arbitrary: arb.map((v) => [key, v] as const) },
      { weight: absent, arbitrary: fc.constant(undefined) },
    );
  });
  const extra = fc.oneof(
    { weight: 20, arbitrary: fc.constant([] as Array<readonly [string, ValueRecipe]>) },
    {
      weight: options.extra ?? 2,
      arbitrary: fc.array(fc.tuple(keyArb, valueArb('field')), { minLength: 1, maxLength: 2 }),
    },
  );
  const wrap =
    options.wrap ??
    fc.oneof({ weight: 6, arbitrary: fc.constant('plain' as const) }, { weight: 2, arbitrary: wrapArb(zone) });
  return fc
    .record({ entries: fc.tuple(fc.tuple(...entries), extra), wrap })
    .map(({ entries: [known, more], wrap: w }) => ({
      k: 'obj' as const,
      entries: [...known.filter((e): e is readonly [string, ValueRecipe] => e !== undefined), ...more],
      wrap: w,
    }));
}

/** An array recipe of `item`s under a wrapper `zone` allows. */
export function arrayArb(
  item: fc.Arbitrary<ValueRecipe>,
  options: { zone?: Zone; maxLength?: number } = {},
): fc.Arbitrary<ValueRecipe> {
  const wrap = fc.oneof(
    { weight: 6, arbitrary: fc.constant('plain' as const) },
    { weight: 1, arbitrary: wrapArb(options.zone ?? 'container', true) },
  );
  return fc.record({
    k: fc.constant('arr' as const),
    items: fc.array(item, { maxLength: options.maxLength ?? 4 }),
    wrap,
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// Hostile values: building
// ---------------------------------------------------------------------------------------------------------------------

/** Names the library reads somewhere: a prototype with throwing getters for them catches reads of inherited fields. */
const READ_NAMES = [
  'type',
  'requires',
  'prefers',
  'priority',
  'payload',
  'timeoutMs',
  'deadlineMs',
  'maxAttempts',
  'idempotencyKey',
  'tenantId',
  'affinityKey',
  'signal',
  'role',
  'capabilities',
  'timeout',
  'max_retries',
  'maxRetries',
  'tenant_id',
  'task_id',
  'taskId',
  'kind',
  'reason',
  'value',
  'from',
  'replayed',
  'percent',
  'shadow',
  'pools',
  'retry',
  'health',
  'metrics',
  'create',
  'then',
  'toJSON',
  'code',
  'message',
  'name',
];

let hostileProto: object | undefined;
/** A prototype whose every commonly read property is a getter that throws. */
function hostilePrototype(): object {
  if (!hostileProto) {
    const p: Record<string, unknown> = {};
    for (const name of READ_NAMES)
      Object.defineProperty(p, name, {
        enumerable: false,
        get: () => {
          throw new FuzzThrow(`inherited getter ${name}`);
        },
      });
    hostileProto = Object.freeze(p);
  }
  return hostileProto;
}

function throwingHandler(where: string): ProxyHandler<object> {
  const t = (trap: string) => (): never => {
    throw new FuzzThrow(`${where} trap ${trap}`);
  };
  return {
    get: t('get'),
    set: t('set'),
    has: t('has'),
    ownKeys: t('ownKeys'),
    getOwnPropertyDescriptor: t('getOwnPropertyDescriptor'),
    getPrototypeOf: t('getPrototypeOf'),
    setPrototypeOf: t('setPrototypeOf'),
    defineProperty: t('defineProperty'),
    deleteProperty: t('deleteProperty'),
    isExtensible: t('isExtensible'),
    preventExtensions: t('preventExtensions'),
  };
}

/** A Proxy that reads through but refuses every write: the library must never mutate what it is given. */
const noMutateHandler: ProxyHandler<object> = {
  set: () => {
    throw new FuzzThrow('mutation (set)');
  },
  defineProperty: () => {
    throw new FuzzThrow('mutation (defineProperty)');
  },
  deleteProperty: () => {
    throw new FuzzThrow('mutation (deleteProperty)');
  },
  setPrototypeOf: () => {
    throw new FuzzThrow('mutation (setPrototypeOf)');
  },
  preventExtensions: () => {
    throw new FuzzThrow('mutation (preventExtensions)');
  },
};

function revoked(target: object = {}): object {
  const { proxy, revoke } = Proxy.revocable(target, {});
  revoke();
  return proxy;
}

function define(target: object, key: string | number, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function wrap<T extends object>(value: T, how: Wrap, where: string): unknown {
  switch (how) {
    case 'plain':
    case 'nullProto':
    case 'inheritsHostile':
      return value;
    case 'frozen':
      return Object.freeze(value);
    case 'sealed':
      return Object.seal(value);
    case 'proxy':
      return new Proxy(value, {});
    case 'proxyNoMutate':
      return new Proxy(value, noMutateHandler);
    case 'proxyThrows':
      return new Proxy(value, throwingHandler(where));
    case 'revoked':
      return revoked(value);
    case 'getterThrows':
    case 'getterThrowsSecondRead': {
      const keys = Object.keys(value);
      const key = keys[0] ?? (Array.isArray(value) ? '0' : 'type');
      const held = (value as Record<string, unknown>)[key];
      let reads = 0;
      Object.defineProperty(value, key, {
        enumerable: true,
        configurable: true,
        get: () => {
          if (how === 'getterThrowsSecondRead' && reads++ === 0) return held;
          throw new FuzzThrow(`getter ${where}.${key}`);
        },
      });
      return value;
    }
  }
}

const cache = new Map<string, unknown>();
function cached(name: string, make: () => unknown): unknown {
  if (!cache.has(name)) cache.set(name, make());
  return cache.get(name);
}

function nest(depth: number, array: boolean): unknown {
  let v: unknown = array ? [] : {};
  for (let i = 0; i < depth; i++) v = Object.freeze(array ? [v] : { d: v });
  return v;
}

/** A fresh value of a named const. */
export function makeConst(name: ConstName): unknown {
  switch (name) {
    case 'undefined':
      return undefined;
    case 'null':
      return null;
    case 'true':
      return true;
    case 'false':
      return false;
    case 'NaN':
      return Number.NaN;
    case 'Infinity':
      return Number.POSITIVE_INFINITY;
    case '-Infinity':
      return Number.NEGATIVE_INFINITY;
    case '-0':
      return -0;
    case '0':
      return 0;
    case '-1':
      return -1;
    case '0.5':
      return 0.5;
    case '1e-300':
      return 1e-300;
    case 'MIN_VALUE':
      return Number.MIN_VALUE;
    case 'MAX_SAFE+1':
      return Number.MAX_SAFE_INTEGER + 1;
    case '1e308':
      return 1e308;
    case '2^31':
      return 2 ** 31;
    case 'bigint':
      return 10n;
    case 'symbol':
      return Symbol('fuzz');
    case 'function':
      return () => 'fn';
    case 'asyncFunction':
      return async () => 'fn';
    case 'class':
      return class Fuzz {};
    case 'date':
      return new Date(0);
    case 'invalidDate':
      return new Date(Number.NaN);
    case 'regexp':
      return /fuzz/giu;
    case 'map':
      return new Map<unknown, unknown>([
        ['type', 't'],
        ['kind', 'halt'],
      ]);
    case 'set':
      return new Set(['a']);
    case 'weakMap':
      return new WeakMap();
    case 'promise':
      return Promise.resolve('t');
    case 'rejectedPromise': {
      const p = Promise.reject(new FuzzThrow('rejected promise'));
      p.catch(() => {});
      return p;
    }
    case 'error':
      return new Error('fuzz error');
    case 'boxedString':
      return new String('t');
    case 'boxedNumber':
      return new Number(5);
    case 'emptyString':
      return '';
    case 'nul':
      return '\u0000';
    case 'loneSurrogate':
      return '\uD800';
    case 'rtl':
      return '\u202Eevil';
    case 'hugeString':
      return cached(name, () => 'x'.repeat(1 << 18));
    case 'hugeArray':
      return cached(name, () => Object.freeze(new Array<string>(100_000).fill('a')));
    case 'sparseArray':
      return [, , 'a']; // eslint-disable-line no-sparse-arrays -- the holes are the point
    case 'typedArray':
      return new Uint8Array([1, 2, 3]);
    case 'arrayBuffer':
      return new ArrayBuffer(8);
    case 'nullProtoObject':
      return Object.create(null) as object;
    case 'objectPrototype':
      return Object.prototype;
    case 'arrayPrototype':
      return Array.prototype;
    case 'thenable':
      return { then: (resolve: (v: unknown) => void) => resolve('hijacked') };
    case 'thenableThrows':
      return Object.defineProperty({}, 'then', {
        enumerable: true,
        get: () => {
          throw new FuzzThrow('then getter');
        },
      });
    case 'toJSONThrows':
      return {
        toJSON: () => {
          throw new FuzzThrow('toJSON');
        },
      };
    case 'cyclic': {
      const o: Record<string, unknown> = { a: 1 };
      o['self'] = o;
      return o;
    }
    case 'cyclicArray': {
      const a: unknown[] = [1];
      a.push(a);
      return a;
    }
    case 'deepObject':
      return cached(name, () => nest(1_000, false)); // serialisable (JSON.stringify's limit is about 4,000 here)
    case 'veryDeepObject':
      return cached(name, () => nest(20_000, false)); // beyond the stack: JSON.stringify throws RangeError
    case 'deepArray':
      return cached(name, () => nest(1_000, true));
    case 'protoJson':
      return JSON.parse(
        '{"__proto__":{"polluted":"yes","isAdmin":true},"constructor":{"prototype":{"polluted":"yes"}},"type":"t"}',
      ) as unknown;
    case 'constructorPrototype':
      return { constructor: { prototype: { polluted: 'yes' } }, prototype: { polluted: 'yes' } };
    case 'liveSignal':
      return new AbortController().signal;
    case 'abortedSignal':
      return AbortSignal.abort(new FuzzThrow('abort reason'));
    case 'revoked':
      return revoked();
    case 'toStringThrows':
      return {
        toString: () => {
          throw new FuzzThrow('toString');
        },
        valueOf: () => {
          throw new FuzzThrow('valueOf');
        },
        [Symbol.toPrimitive]: () => {
          throw new FuzzThrow('toPrimitive');
        },
      };
    case 'errorThrowingMessage':
      return Object.defineProperty(new Error('x'), 'message', {
        get: () => {
          throw new FuzzThrow('error.message');
        },
      });
    case 'proxyThrowsAll':
      return new Proxy({}, throwingHandler('const'));
    case 'fakeSignal':
      return Object.create(AbortSignal.prototype) as object;
    case 'signalThrowingAel': {
      const s = new AbortController().signal;
      return Object.defineProperty(s, 'addEventListener', {
        value: () => {
          throw new FuzzThrow('signal.addEventListener');
        },
      });
    }
    case 'signalThrowingAborted':
      return Object.defineProperty(new AbortController().signal, 'aborted', {
        get: () => {
          throw new FuzzThrow('signal.aborted');
        },
      });
  }
}

/** A fresh value from a recipe. */
export function build(r: ValueRecipe, where = 'value'): unknown {
  switch (r.k) {
    case 'json':
    case 'any':
      return r.v;
    case 'const':
      return makeConst(r.name);
    case 'new': {
      const make = FACTORIES.get(r.name);
      if (!make) throw new Error(`no factory ${r.name}`);
      return make();
    }
    case 'fn': {
      const returns = r.returns;
      return returns === 'throws'
        ? () => {
            throw new FuzzThrow(`${where}()`);
          }
        : () => build(returns, `${where}()`);
    }
    case 'obj': {
      const o: object =
        r.wrap === 'nullProto'
          ? Object.create(null)
          : r.wrap === 'inheritsHostile'
            ? Object.create(hostilePrototype())
            : {};
      for (const [key, value] of r.entries) define(o, key, build(value, `${where}.${key}`));
      return wrap(o, r.wrap, where);
    }
    case 'arr': {
      const a: unknown[] = [];
      r.items.forEach((item, i) => define(a, i, build(item, `${where}[${i}]`)));
      if (r.wrap === 'nullProto') Object.setPrototypeOf(a, null);
      if (r.wrap === 'inheritsHostile') Object.setPrototypeOf(a, hostilePrototype());
      return wrap(a, r.wrap, where);
    }
  }
}

/** Whether an error is one a hostile input threw itself (a getter, a trap, toString), escaping the library unwrapped. */
export function isFuzzThrow(e: unknown): boolean {
  return e instanceof FuzzThrow;
}
