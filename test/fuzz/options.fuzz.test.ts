/**
 * Fuzz target 2: options. `new UnifiedOrchestrator(options)` with random and hostile option objects: every top-level
 * option, and the nested sections (pools, retry, agentBreaker, pressure, budgets, rateLimits, health with recovery and
 * SLA, metrics, tracing, bridge, audit, clock) with valid values, wrong types, NaN / Infinity / negative / huge numbers,
 * unknown and hostile keys (`__proto__`, `constructor` through JSON.parse), sparse arrays, odd prototypes and proxies.
 *
 * Each either constructs, and then `stop()` of the unstarted orchestrator resolves, or throws a ValidationError whose
 * `field` names the option path (`options` or `options.<key>…`, `<key>` being one of the caller's own keys); never
 * another error type, never a polluted prototype. The orchestrators are never started.
 */
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { MemoryBridge, UnifiedOrchestrator, ValidationError } from 'unified-orchestrator';
import {
  arrayArb,
  build,
  describeError,
  factory,
  json,
  keyArb,
  konst,
  objectArb,
  params,
  processGuard,
  prototypeGuard,
  settleWithin,
  STRICT,
  TARGET_TIMEOUT_MS,
  validOr,
  valueArb,
  type ValueRecipe,
} from './arbitraries.js';

// --- Leaves: valid values mixed with what a caller might send instead ---------------------------------------------------

/** Mostly valid: with ~30 options of a few fields each, a run should often get deep before (or without) a bad value. */
const v = (valid: fc.Arbitrary<ValueRecipe>): fc.Arbitrary<ValueRecipe> => validOr(valid, 'field', 1, 14);
const int = (min: number, max: number): fc.Arbitrary<ValueRecipe> => v(json(fc.integer({ min, max })));
const duration = (): fc.Arbitrary<ValueRecipe> =>
  v(
    fc.oneof(
      { weight: 8, arbitrary: json(fc.integer({ min: 1, max: 100_000 })) },
      { weight: 2, arbitrary: json(fc.double({ min: 1e-3, max: 3e9, noNaN: true })) },
      { weight: 1, arbitrary: konst('Infinity', '2^31', '0', '-1') },
    ),
  );
const delay = (): fc.Arbitrary<ValueRecipe> =>
  v(
    fc.oneof(
      { weight: 6, arbitrary: json(fc.integer({ min: 0, max: 20_000 })) },
      { weight: 1, arbitrary: konst('2^31', '-0') },
    ),
  );
const amount = (): fc.Arbitrary<ValueRecipe> =>
  v(
    fc.oneof(
      { weight: 6, arbitrary: json(fc.double({ min: 0, max: 1e9, noNaN: true })) },
      { weight: 1, arbitrary: konst('Infinity', '-1', 'NaN') },
    ),
  );
const bool = (): fc.Arbitrary<ValueRecipe> => v(json(fc.boolean()));
/** One of `choices` (or, rarely, another string). */
const oneOf = (...choices: string[]): fc.Arbitrary<ValueRecipe> =>
  v(
    json(
      fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom(...choices) },
        { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
      ),
    ),
  );
const str = (): fc.Arbitrary<ValueRecipe> => v(json(fc.string({ maxLength: 10 })));
/** A function (returning anything), or not a function. Strict mode adds functions that throw when called. */
const fn = (returns: fc.Arbitrary<ValueRecipe> = valueArb('field', 0)): fc.Arbitrary<ValueRecipe> =>
  v(
    fc.record({
      k: fc.constant('fn' as const),
      returns: STRICT ? fc.oneof(fc.constant('throws' as const), returns) : returns,
    }),
  );
/** A record keyed by random (and hostile) names. */
const dict = (value: fc.Arbitrary<ValueRecipe>): fc.Arbitrary<ValueRecipe> =>
  validOr(
    fc.record({
      k: fc.constant('obj' as const),
      entries: fc.array(fc.tuple(keyArb, value), { maxLength: 3 }),
      wrap: fc.constant('plain' as const),
    }),
    'container',
    1,
    14,
  );
/** An options section: an object over its fields, `false` where allowed, or anything else. */
const section = (
  fields: Record<string, fc.Arbitrary<ValueRecipe>>,
  canBeFalse = false,
  presence: readonly [number, number] = [1, 1],
): fc.Arbitrary<ValueRecipe> =>
  fc.oneof(
    { weight: 24, arbitrary: objectArb(fields, { extra: 1, presence }) },
    { weight: canBeFalse ? 4 : 0, arbitrary: json(fc.constant(false)) },
    { weight: 1, arbitrary: valueArb('container') },
  );

// --- Sections -----------------------------------------------------------------------------------------------------------

const thresholds = section({
  p50Ms: amount(),
  p95Ms: amount(),
  p99Ms: amount(),
  errorRate: validOr(json(fc.double({ min: -0.5, max: 1.5, noNaN: true }))),
});

const pool = section(
  {
    role: oneOf('w', 'r', 'x'),
    capabilities: fc.oneof(
      { weight: 12, arbitrary: json(fc.array(fc.constantFrom('a', 'b', 'c'), { maxLength: 4 })) },
      { weight: 1, arbitrary: arrayArb(valueArb('field')) },
      { weight: 1, arbitrary: valueArb('container') },
    ),
    create: fn(),
    minAgents: int(-1, 12),
    maxAgents: int(0, 12),
    concurrency: int(0, 20_000),
    warmSpares: int(-1, 1_001),
    idleTimeoutMs: duration(),
    createTimeoutMs: duration(),
    createAttempts: int(0, 101),
    createConcurrency: int(0, 1_001),
  },
  false,
  [6, 1],
); // role, capabilities and create are required: mostly there

/** A prom-client registry: a real one, or a duck-typed fake that passes the check (the latter is a known bug). */
const registry = fc.oneof(
  konst('map'),
  factory('registry', () => new Registry()),
  ...(STRICT
    ? [
        fc.constant({
          k: 'obj' as const,
          entries: [
            ['registerMetric', { k: 'fn' as const, returns: { k: 'json' as const, v: null } }],
            ['metrics', { k: 'fn' as const, returns: { k: 'json' as const, v: '' } }],
          ] as Array<readonly [string, ValueRecipe]>,
          wrap: 'plain' as const,
        }),
      ]
    : []),
);

const OPTION_FIELDS: Record<string, fc.Arbitrary<ValueRecipe>> = {
  pools: fc.oneof(
    { weight: 4, arbitrary: arrayArb(pool, { maxLength: 3 }) },
    { weight: 1, arbitrary: STRICT ? konst('sparseArray') : konst('hugeArray', 'emptyString') },
    { weight: 1, arbitrary: valueArb('container') },
  ),
  routing: oneOf('score', 'least-loaded', 'round-robin'),
  maxQueueSize: int(-1, 1_000_000),
  defaultTimeoutMs: duration(),
  defaultMaxAttempts: int(0, 101),
  retry: section({ baseDelayMs: delay(), maxDelayMs: delay(), maxRetryAfterMs: delay(), retryable: fn() }),
  agentBreaker: section(
    {
      errorThresholdPercentage: amount(),
      volumeThreshold: int(-1, 1_000_001),
      windowMs: duration(),
      resetTimeoutMs: duration(),
    },
    true,
  ),
  pressure: section(
    {
      memoryLimitBytes: amount(),
      cpuLimitPercent: amount(),
      elevatedAt: validOr(json(fc.double({ min: -0.1, max: 1.2, noNaN: true }))),
      hysteresis: validOr(json(fc.double({ min: -0.1, max: 0.6, noNaN: true }))),
      sampleIntervalMs: duration(),
      cpuSustainedSamples: int(0, 101),
      priorityFloor: int(-1_000_001, 1_000_002),
      sampler: section({ sample: fn() }, false, [6, 1]),
    },
    true,
  ),
  budgets: section({ windowMs: duration(), limits: dict(amount()), defaultLimit: amount(), haltOnExceeded: bool() }),
  rateLimits: dict(
    section({ requests: amount(), units: amount(), intervalMs: duration(), maxDeferrals: int(-1, 1_001) }),
  ),
  health: section({
    checkIntervalMs: duration(),
    checkTimeoutMs: duration(),
    stuckAfterMs: duration(),
    recovery: section({ maxReplacements: int(-1, 1_000_001), windowMs: duration() }),
    sla: section({
      windowMs: duration(),
      minSamples: int(0, 100),
      default: thresholds,
      types: dict(thresholds),
      maxTypes: int(0, 100_001),
    }),
  }),
  metrics: section(
    {
      registry,
      prefix: validOr(json(fc.stringMatching(/^[a-zA-Z_:][a-zA-Z0-9_:]{0,8}$/))),
      defaultMetrics: bool(),
      maxTaskTypes: int(0, 10_001),
    },
    true,
  ),
  tracing: fc.oneof(
    json(fc.constantFrom('auto', true, false, 'on')),
    section({ tracer: section({ startSpan: fn() }, false, [6, 1]) }, false, [6, 1]),
  ),
  bridge: fc.oneof(
    factory('memoryBridge', () => new MemoryBridge()),
    section(
      Object.fromEntries(
        ['start', 'stop', 'handOff', 'nodes', 'control', 'canAnyServe', 'status', 'stats'].map((m) => [m, fn()]),
      ),
    ),
  ),
  handOffAbove: int(-1, 1_000),
  maxPayloadBytes: validOr(fc.oneof(json(fc.integer({ min: 0, max: 1 << 20 })), konst('Infinity'))),
  audit: section({ sink: fn(), actor: str() }),
  agingIntervalMs: duration(),
  idempotencyTtlMs: duration(),
  maxIdempotencyKeys: int(-1, 100_000),
  maxDeadLetters: int(-1, 100_000),
  maxAffinityKeys: int(-1, 100_000),
  scaleIntervalMs: duration(),
  // stop() reads the clock: a `now` that throws makes even an unstarted stop() reject (strict mode adds it; see known-bugs).
  clock: section(
    {
      now: STRICT
        ? fn(json(fc.double({ noNaN: true })))
        : fc.oneof(
            { weight: 12, arbitrary: fc.record({ k: fc.constant('fn' as const), returns: json(fc.double()) }) },
            { weight: 1, arbitrary: konst('null', 'emptyString', 'map', 'bigint', 'symbol') },
          ),
    },
    false,
    [6, 1],
  ),
  random: fn(json(fc.double({ min: 0, max: 1, noNaN: true }))),
};

const optionsArb: fc.Arbitrary<ValueRecipe> = fc.oneof(
  { weight: 20, arbitrary: objectArb(OPTION_FIELDS, { extra: 1, presence: [1, 2] }) },
  {
    weight: 1,
    arbitrary: konst('undefined', 'protoJson', 'constructorPrototype', 'nullProtoObject', 'objectPrototype', 'map'),
  },
  { weight: 1, arbitrary: valueArb('container') },
);

/** Whether `field` is `options.<key>…` for one of the caller's own keys (keys may hold dots, so match by prefix). */
function startsAtOwnKey(field: string, options: unknown): boolean {
  if (typeof options !== 'object' || options === null) return false;
  return Object.keys(options).some((k) => {
    const head = `options.${k}`;
    return field === head || field.startsWith(`${head}.`) || field.startsWith(`${head}[`);
  });
}

describe('fuzz: new UnifiedOrchestrator(options)', () => {
  it(
    'constructs (and an unstarted stop() resolves) or throws ValidationError naming the option path',
    async () => {
      const guard = processGuard();
      const protos = prototypeGuard();
      let constructed = 0;
      let refused = 0;
      try {
        await fc.assert(
          fc.asyncProperty(optionsArb, async (recipe) => {
            const options = build(recipe, 'options');
            let o: UnifiedOrchestrator;
            try {
              o = new UnifiedOrchestrator(options as never);
            } catch (error) {
              refused++;
              if (!(error instanceof ValidationError))
                throw new Error(`expected ValidationError, got ${describeError(error)}`, { cause: error });
              expect(error.code).toBe('VALIDATION_ERROR');
              expect(typeof error.field === 'string' && error.field.length > 0, 'field is a non-empty string').toBe(
                true,
              );
              expect(
                error.field === 'options' || error.field.startsWith('options.'),
                `field ${error.field} is an option path`,
              ).toBe(true);
              expect(error.message.length).toBeGreaterThan(0);
              if (error.field !== 'options') {
                // The path starts at one of the caller's own keys (a wrong value or an unknown key they wrote).
                expect(
                  startsAtOwnKey(error.field, options),
                  `field ${error.field} starts at an own key of the options`,
                ).toBe(true);
              }
              protos.check();
              return;
            }
            constructed++;
            expect(o.state).toBe('created');
            const stopped = await settleWithin(o.stop(), 2_000, 'stop() of an unstarted orchestrator');
            if (stopped.status === 'rejected')
              throw new Error(`stop() of an unstarted orchestrator rejected: ${describeError(stopped.reason)}`);
            expect(o.state).toBe('stopped');
            protos.check();
          }),
          params(10_000),
        );
        // Both outcomes are common enough for the target to mean something.
        expect(constructed, 'runs that constructed').toBeGreaterThan(100);
        expect(refused, 'runs that were refused').toBeGreaterThan(100);
        await guard.check();
      } finally {
        guard.dispose();
      }
    },
    TARGET_TIMEOUT_MS,
  );
});
