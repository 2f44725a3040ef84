/**
 * Fuzz target 1: tasks. `delegate(x)` and `submit(x)` with random task objects on one started orchestrator (pressure
 * off, one pool of instant agents): valid tasks, malformed ones (every field of the wrong type, extra keys, NaN,
 * Infinity, negative and huge numbers, huge strings and arrays, deep and cyclic payloads, BigInt, Symbols, functions)
 * and hostile ones (`__proto__` / `constructor` / `prototype` keys through JSON.parse, frozen and null-prototype objects,
 * prototypes whose getters throw, proxies that refuse writes, and in strict mode throwing getters, throwing traps and
 * revoked proxies), sometimes cancelled at once with a random reason, sometimes followed by a call about a task by id
 * (`cancel`, `task`, `retryDeadLetter`) with tenant options of the right tenant, another one, or anything else.
 *
 * Every input is accepted (and its result settles: fulfilled, or rejected with an Error) or refused with a typed
 * OrchestratorError (a ValidationError names a `task…` field). Another tenant's task is neither cancelled nor reported,
 * and its dead letter not retried. After every run: no built-in prototype gained or lost a key, stats() balances with
 * no negative count, and a normal task still runs. No unhandled rejection during the target; stop() drains everything.
 *
 * A second orchestrator with `maxPayloadBytes` checks the payload limit against an oracle: a task that is valid but for
 * its payload is refused with ValidationError(`task.payload`) exactly when the payload's JSON is unmeasurable or too big.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isOrchestratorError,
  UnifiedOrchestrator,
  ValidationError,
  type Agent,
  type OrchestratorOptions,
  type TaskHandle,
} from 'unified-orchestrator';
import {
  arrayArb,
  build,
  checkStats,
  describeError,
  expectTyped,
  json,
  konst,
  notNull,
  objectArb,
  params,
  processGuard,
  prototypeGuard,
  readable,
  settleWithin,
  STRICT,
  TARGET_TIMEOUT_MS,
  validOr,
  valueArb,
  type ValueRecipe,
} from './arbitraries.js';

/** An agent's own failure: the only non-library error a task result may reject with. */
class AgentFailure extends Error {
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean) {
    super(message);
    this.name = 'AgentFailure';
    this.retryable = retryable;
  }
}

/** Instant agents whose behaviour follows the task type. */
const instantAgent = (): Agent => ({
  async execute(ctx) {
    switch (ctx.type) {
      case 'boom':
        throw new AgentFailure('boom', false); // not retryable: fails or dead-letters at once
      case 'flaky':
        if (ctx.attempt === 1) throw new AgentFailure('flaky', true);
        return 'flaky';
      case 'slow':
        await new Promise((resolve) => setImmediate(resolve));
        return 'slow';
      default:
        return ctx.type;
    }
  },
});

const CAPS = ['a', 'b', 'c'];
const TENANTS = ['acme', 'globex'];

function orchestratorOptions(extra: OrchestratorOptions = {}): OrchestratorOptions {
  return {
    pressure: false,
    agentBreaker: false, // an agent failing on purpose must not take its agent out of routing for 10 s
    retry: { baseDelayMs: 0, maxDelayMs: 0 },
    health: { checkIntervalMs: 60_000 },
    pools: [{ role: 'w', capabilities: CAPS, minAgents: 4, maxAgents: 8, concurrency: 4, create: instantAgent }],
    ...extra,
  };
}

// --- Task recipes ------------------------------------------------------------------------------------------------------

/** Task fields are valid 6 times in 7, so that about half the tasks are accepted and reach the engine. */
const valid = (arb: fc.Arbitrary<ValueRecipe>, zone: 'field' | 'container' = 'field'): fc.Arbitrary<ValueRecipe> =>
  validOr(arb, zone, 1, 6);
const stringField = (...common: string[]): fc.Arbitrary<ValueRecipe> =>
  valid(json(fc.oneof(fc.constantFrom(...common), fc.string({ minLength: 1, maxLength: 12 }))));

const capabilityList = (): fc.Arbitrary<ValueRecipe> =>
  fc.oneof(
    { weight: 16, arbitrary: json(fc.subarray(CAPS)) },
    { weight: 2, arbitrary: json(fc.array(fc.constantFrom(...CAPS, 'z'), { maxLength: 12 })) }, // duplicates, unknown capability
    { weight: 1, arbitrary: konst('hugeArray') }, // 100,000 copies of 'a'
    {
      weight: 1,
      arbitrary: json(fc.array(fc.string({ minLength: 1, maxLength: 3 }), { minLength: 100, maxLength: 400 })),
    },
    { weight: 1, arbitrary: arrayArb(valueArb('field')) }, // items of every type, under container wrappers
    { weight: 1, arbitrary: valueArb('container') }, // not a list: Array.isArray, then reads of length and items
  );

const signalField = (): fc.Arbitrary<ValueRecipe> =>
  fc.oneof(
    { weight: 6, arbitrary: konst('liveSignal', 'liveSignal', 'abortedSignal') },
    { weight: 1, arbitrary: valueArb('container') }, // `instanceof AbortSignal` reads the prototype
    // Objects that pass `instanceof AbortSignal` but are not one, or a real one whose members throw: see known-bugs.
    ...(STRICT ? [{ weight: 2, arbitrary: konst('fakeSignal', 'signalThrowingAel', 'signalThrowingAborted') }] : []),
  );

/** The fields of a task, each valid with some weight and anything else otherwise. */
const TASK_FIELDS = {
  type: stringField('t', 't', 'slow', 'boom', 'flaky', 'x'.repeat(300)),
  requires: capabilityList(),
  prefers: capabilityList(),
  priority: valid(
    json(
      fc.oneof(
        { weight: 10, arbitrary: fc.integer({ min: -1_000_000, max: 1_000_000 }) },
        { weight: 1, arbitrary: fc.constantFrom(-1_000_001, -1_000_000, 1_000_000, 1_000_001) },
      ),
    ),
  ),
  payload: valueArb('payload'),
  timeoutMs: valid(
    fc.oneof(
      json(fc.integer({ min: 1, max: 50 })),
      json(fc.double({ min: 1e-300, max: 5, noNaN: true })),
      konst('Infinity', '1e308', 'MIN_VALUE'),
    ),
  ),
  deadlineMs: valid(
    fc.oneof(
      json(fc.integer({ min: 1, max: 60 })),
      json(fc.double({ min: 1e-300, max: 5, noNaN: true })),
      konst('Infinity', '1e308', 'MIN_VALUE'),
    ),
  ),
  maxAttempts: valid(json(fc.integer({ min: 1, max: 100 }))),
  idempotencyKey: stringField('k1', 'k2', 'k3'),
  tenantId: stringField(...TENANTS),
  affinityKey: stringField('aff1', 'aff2'),
  signal: signalField(),
};

/** A task recipe: an object over the task fields (maybe with extra keys), or something that is not a task at all. */
const taskArb: fc.Arbitrary<ValueRecipe> = fc.oneof(
  { weight: 12, arbitrary: objectArb(TASK_FIELDS, { extra: 1, required: ['type'] }) },
  {
    weight: 1,
    arbitrary: konst('protoJson', 'constructorPrototype', 'nullProtoObject', 'objectPrototype', 'map', 'thenable'),
  },
  { weight: 1, arbitrary: valueArb('container') },
);

/** A cancel right after delegate: by the handle or by id, with any reason. */
const cancelArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  {
    weight: 1,
    arbitrary: fc.record({
      via: fc.constantFrom('handle' as const, 'id' as const),
      reason: valueArb(STRICT ? 'payload' : 'container'),
    }),
  },
);

/**
 * The calls about a task by id, with tenant isolation (`{ tenantId }`): `cancel`, `task` and `retryDeadLetter` on the
 * task just delegated, a dead letter, or any id; with options of the right tenant, another tenant, or anything else.
 */
const tenantOptions: fc.Arbitrary<ValueRecipe> = fc.oneof(
  { weight: 2, arbitrary: konst('undefined') },
  {
    weight: 6,
    arbitrary: objectArb(
      {
        tenantId: validOr(json(fc.constantFrom(...TENANTS)), 'field', 1, 4),
        actor: validOr(json(fc.string({ maxLength: 8 }))),
      },
      { extra: 1, wrap: fc.constant('plain' as const) },
    ),
  },
  { weight: 1, arbitrary: valueArb(STRICT ? 'payload' : 'container').filter((r) => readable(r) && notNull(r)) },
);
type IdOp = {
  readonly op: 'cancel' | 'task' | 'retryDeadLetter';
  readonly id: 'current' | 'deadLetter' | ValueRecipe;
  readonly reason: ValueRecipe;
  readonly options: ValueRecipe;
};
const idOpArb: fc.Arbitrary<IdOp | undefined> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(undefined) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constantFrom('cancel' as const, 'task' as const, 'retryDeadLetter' as const),
      id: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom('current' as const, 'deadLetter' as const) },
        { weight: 1, arbitrary: valueArb('field') },
      ),
      reason: valueArb(STRICT ? 'payload' : 'container'),
      options: tenantOptions,
    }),
  },
);

// --- The property -------------------------------------------------------------------------------------------------------

/** Rejections an accepted task's result may carry. */
function expectTaskFailure(reason: unknown): void {
  if (reason instanceof AgentFailure) return;
  expectTyped(reason, 'task');
}

async function runTask(
  o: UnifiedOrchestrator,
  task: unknown,
  via: 'delegate' | 'submit',
  cancel: { via: 'handle' | 'id'; reason: ValueRecipe } | undefined,
  idOp: IdOp | undefined,
): Promise<void> {
  let result: Promise<unknown> | undefined;
  let id: string | undefined;
  try {
    if (via === 'submit') {
      result = o.submit(task as never);
      expect(result, 'submit returns a promise').toBeInstanceOf(Promise);
    } else {
      const handle: TaskHandle = o.delegate(task as never);
      expect(typeof handle.id === 'string' && handle.id.length > 0, 'handle.id').toBe(true);
      expect(handle.result).toBeInstanceOf(Promise);
      result = handle.result;
      id = handle.id;
      if (cancel) {
        const reason = build(cancel.reason, 'reason');
        const cancelled = cancel.via === 'handle' ? handle.cancel(reason) : o.cancel(handle.id, reason);
        expect(typeof cancelled, 'cancel answers a boolean').toBe('boolean');
      }
    }
  } catch (error) {
    expectTyped(error, ['task', 'taskId']);
  }
  if (idOp) await runIdOp(o, idOp, id);
  if (!result) return;
  const settled = await settleWithin(result, 5_000, 'the task result');
  if (settled.status === 'rejected') expectTaskFailure(settled.reason);
}

/** One call about a task by id; checks tenant isolation where the outcome is known. */
async function runIdOp(o: UnifiedOrchestrator, op: IdOp, current: string | undefined): Promise<void> {
  const letter = o.deadLetters().at(-1);
  const id = op.id === 'current' ? current : op.id === 'deadLetter' ? letter?.taskId : build(op.id, 'taskId');
  const options = build(op.options, 'options') as { tenantId?: unknown } | undefined;
  const tenant =
    typeof options === 'object' && options !== null && typeof options.tenantId === 'string' && options.tenantId !== ''
      ? options.tenantId
      : undefined;
  const before = typeof id === 'string' && id !== '' ? o.task(id) : undefined;
  let answer: unknown;
  try {
    if (op.op === 'cancel') answer = o.cancel(id as string, build(op.reason, 'reason'), options as never);
    else if (op.op === 'task') answer = o.task(id as string, options as never);
    else {
      const handle = o.retryDeadLetter(id as string, options as never);
      answer = handle;
      const settled = await settleWithin(handle.result, 5_000, 'a retried dead letter');
      if (settled.status === 'rejected') expectTaskFailure(settled.reason);
    }
  } catch (error) {
    expectTyped(error, ['taskId', 'options', 'task']);
    if (
      op.op === 'retryDeadLetter' &&
      op.id === 'deadLetter' &&
      letter &&
      tenant !== undefined &&
      letter.tenantId !== tenant
    ) {
      // Another tenant's dead letter is not found, and stays where it is.
      expect((error as { code?: unknown }).code).toBe('TASK_NOT_FOUND');
      expect(
        o.deadLetters().some((l) => l.taskId === letter.taskId),
        "the other tenant's dead letter is kept",
      ).toBe(true);
    }
    return;
  }
  if (op.op === 'cancel') expect(typeof answer).toBe('boolean');
  if (op.op === 'task')
    expect(answer === undefined || (typeof answer === 'object' && (answer as { id?: unknown }).id === id)).toBe(true);
  if (before && tenant !== undefined && before.tenantId !== tenant) {
    // Another tenant's task: not cancelled, not reported.
    if (op.op === 'cancel') expect(answer, "cancel of another tenant's task").toBe(false);
    if (op.op === 'task') expect(answer, "task() of another tenant's task").toBeUndefined();
  }
  if (op.op === 'retryDeadLetter' && op.id === 'deadLetter' && letter && tenant !== undefined) {
    expect(letter.tenantId, 'a dead letter retried only by its own tenant').toBe(tenant);
  }
}

function suite(name: string, extra: OrchestratorOptions, body: (ctx: { o: () => UnifiedOrchestrator }) => void): void {
  describe(name, () => {
    let o: UnifiedOrchestrator;
    let guard: ReturnType<typeof processGuard>;
    beforeAll(async () => {
      guard = processGuard();
      o = new UnifiedOrchestrator(orchestratorOptions(extra));
      await o.start();
    });
    afterAll(async () => {
      try {
        const stopped = await settleWithin(o.stop({ drain: true, timeoutMs: 5_000 }), 10_000, 'stop()');
        expect(stopped.status).toBe('fulfilled');
        const s = o.stats();
        checkStats(s, 'after stop');
        expect([s.waiting, s.running, s.backingOff], 'nothing left in flight after stop').toEqual([0, 0, 0]);
        await guard.check();
      } finally {
        guard.dispose();
      }
    });
    body({ o: () => o });
  });
}

suite('fuzz: delegate / submit with random and hostile tasks', {}, ({ o }) => {
  it(
    'accepts (and settles) or refuses with a typed error; prototypes clean, stats balanced, a normal task still runs',
    async () => {
      const protos = prototypeGuard();
      let n = 0;
      await fc.assert(
        fc.asyncProperty(
          taskArb,
          fc.constantFrom('delegate' as const, 'submit' as const),
          cancelArb,
          idOpArb,
          async (recipe, via, cancel, idOp) => {
            await runTask(o(), build(recipe, 'task'), via, cancel, idOp);
            protos.check(`after run ${++n}`);
            checkStats(o().stats(), `after run ${n}`);
            expect(await o().submit({ type: 'normal', requires: ['a'] }), 'a normal task still runs').toBe('normal');
          },
        ),
        params(10_000),
      );
    },
    TARGET_TIMEOUT_MS,
  );

  it(
    'a polluted Object.prototype supplies no task field',
    async () => {
      // The engine reads only a task's own keys: values on the prototype chain (here, Object.prototype itself for the
      // length of one synchronous delegate call) must change nothing.
      const fields = [
        'type',
        'requires',
        'prefers',
        'priority',
        'timeoutMs',
        'deadlineMs',
        'maxAttempts',
        'idempotencyKey',
        'tenantId',
        'affinityKey',
        'signal',
      ];
      await fc.assert(
        fc.asyncProperty(fc.subarray(fields, { minLength: 1 }), valueArb('field'), async (polluted, recipe) => {
          const value = build(recipe);
          let handle: TaskHandle;
          try {
            for (const f of polluted)
              Object.defineProperty(Object.prototype, f, {
                value,
                configurable: true,
                enumerable: false,
                writable: true,
              });
            handle = o().delegate({ type: 'p', payload: 1 });
          } finally {
            for (const f of polluted) delete (Object.prototype as Record<string, unknown>)[f];
          }
          expect(await handle.result).toBe('p');
        }),
        params(1_000),
      );
    },
    TARGET_TIMEOUT_MS,
  );
});

// --- maxPayloadBytes ----------------------------------------------------------------------------------------------------

const LIMIT = 2_048;

/** The oracle: whether a payload fits, measured on a separately built copy of it. */
function fits(payload: unknown): boolean {
  let text: string | undefined;
  try {
    text = JSON.stringify(payload);
  } catch {
    return false;
  }
  return text === undefined || Buffer.byteLength(text, 'utf8') <= LIMIT;
}

const payloadArb = fc.oneof(
  { weight: 12, arbitrary: valueArb('payload') },
  // Strings around the limit, where UTF-8 (1 to 4 bytes per character) decides: built by repeat, not char by char.
  {
    weight: 6,
    arbitrary: fc
      .record({
        ascii: fc.integer({ min: LIMIT - 24, max: LIMIT + 4 }),
        wide: fc.constantFrom('é', '€', '😀'),
        count: fc.integer({ min: 0, max: 8 }),
      })
      .map(({ ascii, wide, count }) => ({ k: 'json' as const, v: 'a'.repeat(ascii) + wide.repeat(count) })),
  },
  {
    weight: 1,
    arbitrary: konst(
      'cyclic',
      'bigint',
      'toJSONThrows',
      'revoked',
      'proxyThrowsAll',
      'thenableThrows',
      'symbol',
      'function',
    ),
  },
  { weight: 1, arbitrary: konst('hugeString', 'veryDeepObject', 'deepObject') }, // a few ms each: kept rare
);

suite(`fuzz: payloads against maxPayloadBytes (${LIMIT})`, { maxPayloadBytes: LIMIT }, ({ o }) => {
  it(
    'refuses with ValidationError(task.payload) exactly when the payload is unmeasurable or too big',
    async () => {
      const protos = prototypeGuard();
      await fc.assert(
        fc.asyncProperty(payloadArb, fc.constantFrom('delegate' as const, 'submit' as const), async (recipe, via) => {
          const expectFits = fits(build(recipe, 'payload'));
          const task = { type: 't', requires: ['a'], payload: build(recipe, 'payload') };
          let refused: unknown;
          let result: Promise<unknown> | undefined;
          try {
            result = via === 'submit' ? o().submit(task) : o().delegate(task).result;
            if (via === 'submit') await result.catch((e: unknown) => (refused = e));
          } catch (error) {
            refused = error;
          }
          if (expectFits) {
            if (refused !== undefined) throw new Error(`a payload that fits was refused: ${describeError(refused)}`);
            expect(await result).toBe('t');
          } else {
            if (!(refused instanceof ValidationError) || refused.field !== 'task.payload')
              throw new Error(
                `expected ValidationError(task.payload), got ${refused === undefined ? 'acceptance' : describeError(refused)}`,
              );
            expect(isOrchestratorError(refused)).toBe(true);
          }
          protos.check();
          checkStats(o().stats());
        }),
        params(10_000),
      );
    },
    TARGET_TIMEOUT_MS,
  );
});
