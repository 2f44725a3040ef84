/**
 * Fuzz target 3: the legacy calls. An OrchestratorsCompatibilityAdapter and a TrafficRouter (over a trivial fake legacy
 * implementation and the adapter) on one started orchestrator take random sequences of legacy calls in both spellings
 * (spawnAgent / spawn_agent, delegateTaskToAgent / delegate_task_to_agent, getTaskStatus, getAgentStatus, shutdownAgent,
 * waitForTask with small random timeouts) with random arguments: ids they handed out, ids of live agents, and anything
 * else; plus random `setPercent`, `setShadow` and `rollback` on the router.
 *
 * Every call answers (never throws, never rejects) a value of the right shape or `{ error: { code, message } }` whose
 * code is a value of LEGACY_ERROR_CODES, TASK_FAILED or INTERNAL_ERROR. `setPercent` / `setShadow` throw
 * ValidationError or apply (the router and the orchestrator's control state agree). Prototypes stay clean and stats()
 * balances after every run; afterwards a normal legacy task completes through the adapter and through the router.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isLegacyError,
  LEGACY_ERROR_CODES,
  LEGACY_INTERNAL_ERROR,
  LEGACY_TASK_FAILED,
  OrchestratorsCompatibilityAdapter,
  TrafficRouter,
  UnifiedOrchestrator,
  ValidationError,
  type Agent,
  type LegacyOrchestrator,
  type LegacyResult,
} from 'unified-orchestrator';
import {
  arrayArb,
  build,
  checkStats,
  describeError,
  json,
  konst,
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
  wrapArb,
  type ValueRecipe,
} from './arbitraries.js';

const CODES: ReadonlySet<string> = new Set([
  ...Object.values(LEGACY_ERROR_CODES),
  LEGACY_TASK_FAILED,
  LEGACY_INTERNAL_ERROR,
]);
const TASK_STATES: ReadonlySet<string> = new Set(['pending', 'running', 'completed', 'failed', 'cancelled', 'timeout']);
const AGENT_STATES: ReadonlySet<string> = new Set([
  'starting',
  'idle',
  'busy',
  'draining',
  'terminated',
  'unhealthy',
  'failed',
]);

const legacyError = (code: string, message: string) => ({ error: { code, message } });

/** A trivial legacy implementation (camelCase, no waitForTask, so the router polls): robust to any argument. */
class TrivialLegacy implements LegacyOrchestrator {
  #n = 0;
  readonly #tasks = new Set<string>();
  readonly #agents = new Set<string>();

  async spawnAgent(role: string) {
    if (typeof role !== 'string' || role === '') return legacyError('INVALID_REQUEST', 'role');
    const id = `legacy-agent-${++this.#n}`;
    this.#agents.add(id);
    return id;
  }

  async delegateTaskToAgent() {
    const id = `legacy-task-${++this.#n}`;
    this.#tasks.add(id);
    return id;
  }

  async getAgentStatus(id: string) {
    if (typeof id !== 'string' || !this.#agents.has(id)) return legacyError('AGENT_NOT_FOUND', 'no such agent');
    return {
      agent_id: id,
      role: 'w',
      status: 'idle' as const,
      capabilities: ['a'],
      active_tasks: 0,
      completed_tasks: 0,
      failed_tasks: 0,
    };
  }

  async getTaskStatus(id: string) {
    if (typeof id !== 'string' || !this.#tasks.has(id)) return legacyError('TASK_NOT_FOUND', 'no such task');
    return {
      task_id: id,
      status: 'completed' as const,
      agent_id: null,
      attempts: 1,
      result: 'legacy',
      created_at: '2024-01-01T00:00:00.000Z',
      updated_at: '2024-01-01T00:00:00.000Z',
    };
  }

  async shutdownAgent(id: string) {
    if (typeof id !== 'string' || !this.#agents.delete(id)) return legacyError('AGENT_NOT_FOUND', 'no such agent');
    return { agent_id: id, status: 'terminated' as const };
  }
}

const agent = (): Agent => ({
  async execute(ctx) {
    if (ctx.type === 'boom') throw new Error('boom');
    if (ctx.type === 'slow') await new Promise((resolve) => setImmediate(resolve));
    return { done: ctx.type };
  },
});

// --- Call recipes -------------------------------------------------------------------------------------------------------

/** An argument: an id one of the sides handed out (or of a live agent), or any value. */
type Arg =
  | { readonly known: 'task' | 'agent'; readonly pick: number }
  | { readonly value: ValueRecipe }
  | { readonly missing: true };

const idArg = (kind: 'task' | 'agent'): fc.Arbitrary<Arg> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ known: fc.constant(kind), pick: fc.nat() }) },
    {
      weight: 1,
      arbitrary: fc.record({
        known: fc.constant(kind === 'task' ? ('agent' as const) : ('task' as const)),
        pick: fc.nat(),
      }),
    },
    { weight: 2, arbitrary: valueArb('field').map((value) => ({ value })) },
    { weight: 1, arbitrary: fc.constant({ missing: true } as const) },
  );

/**
 * A legacy task. In shadow mode the router copies a task without its caller id by destructuring, which reads inherited
 * `task_id` / `taskId` too: a task whose prototype throws there is a known bug, so the router gets those in strict mode only.
 */
const legacyTask = (on: 'adapter' | 'router'): fc.Arbitrary<ValueRecipe> =>
  objectArb(
    {
      role: validOr(json(fc.constantFrom('w', 'r', 'ghost'))),
      capabilities: validOr(json(fc.subarray(['a', 'b', 'c', 'z'])), 'container'),
      type: validOr(json(fc.constantFrom('legacy', 'boom', 'slow', 'x'))),
      priority: validOr(
        json(
          fc.oneof(fc.constantFrom('low', 'normal', 'high', 'critical', 'urgent'), fc.integer({ min: -100, max: 100 })),
        ),
      ),
      payload: valueArb('payload'),
      timeout: validOr(json(fc.double({ min: 1e-4, max: 60, noNaN: true }))),
      max_retries: validOr(json(fc.integer({ min: 0, max: 3 }))),
      maxRetries: validOr(json(fc.integer({ min: 0, max: 3 }))),
      tenant_id: validOr(json(fc.constantFrom('acme', 'globex', 'initech'))),
      tenantId: validOr(json(fc.constantFrom('acme', 'globex'))),
      task_id: validOr(json(fc.constantFrom('caller-1', 'caller-2', 'caller-3'))),
      taskId: validOr(json(fc.constantFrom('caller-1', 'caller-4'))),
    },
    {
      extra: 1,
      presence: [1, 2],
      wrap: fc.oneof(
        { weight: 6, arbitrary: fc.constant('plain' as const) },
        {
          weight: 2,
          arbitrary: wrapArb('container').filter((w) => on === 'adapter' || STRICT || w !== 'inheritsHostile'),
        },
      ),
    },
  );

const taskArg = (on: 'adapter' | 'router'): fc.Arbitrary<Arg> =>
  fc.oneof(
    { weight: 8, arbitrary: legacyTask(on).map((value) => ({ value })) },
    { weight: 1, arbitrary: arrayArb(valueArb('field')).map((value) => ({ value })) },
    {
      weight: 1,
      arbitrary: valueArb('container')
        .filter((r) => on === 'adapter' || readable(r))
        .map((value) => ({ value })),
    },
    { weight: 1, arbitrary: fc.constant({ missing: true } as const) },
  );

/**
 * waitForTask's timeout in seconds: small valid ones (a wait never holds a run for long), or anything else. The router
 * does arithmetic on a timeout it does not check when it polls a legacy side: a Symbol or BigInt there is a known bug
 * (strict mode sends them to the router too).
 */
const timeoutArg = (on: 'adapter' | 'router'): fc.Arbitrary<Arg> =>
  fc.oneof(
    { weight: 3, arbitrary: json(fc.double({ min: 1e-4, max: 0.01, noNaN: true })).map((value) => ({ value })) },
    { weight: 1, arbitrary: fc.constant({ missing: true } as const) },
    {
      weight: 1,
      arbitrary: konst(
        'NaN',
        '-1',
        '0',
        'Infinity',
        '1e308',
        '2^31',
        'MAX_SAFE+1',
        'emptyString',
        'null',
        ...(on === 'adapter' || STRICT ? (['bigint', 'symbol'] as const) : []),
      ).map((value) => ({ value })),
    },
  );

type Method =
  'spawnAgent' | 'delegateTaskToAgent' | 'getTaskStatus' | 'getAgentStatus' | 'shutdownAgent' | 'waitForTask';
const SNAKE: Record<Method, string> = {
  spawnAgent: 'spawn_agent',
  delegateTaskToAgent: 'delegate_task_to_agent',
  getTaskStatus: 'get_task_status',
  getAgentStatus: 'get_agent_status',
  shutdownAgent: 'shutdown_agent',
  waitForTask: 'wait_for_task',
};

type Call =
  | {
      readonly on: 'adapter' | 'router';
      readonly method: Method;
      readonly snake: boolean;
      readonly args: readonly Arg[];
    }
  | {
      readonly on: 'control';
      readonly op: 'setPercent' | 'setShadow' | 'rollback';
      readonly value: ValueRecipe | undefined;
    };

const argsOf = (on: 'adapter' | 'router'): Record<Method, fc.Arbitrary<readonly Arg[]>> => ({
  spawnAgent: fc.tuple(
    fc.oneof(
      { weight: 4, arbitrary: json(fc.constantFrom('w', 'r', 'ghost')).map((value) => ({ value })) },
      { weight: 1, arbitrary: valueArb('field').map((value) => ({ value })) },
    ),
  ),
  delegateTaskToAgent: fc.tuple(taskArg(on)),
  getTaskStatus: fc.tuple(idArg('task')),
  getAgentStatus: fc.tuple(idArg('agent')),
  shutdownAgent: fc.tuple(idArg('agent')),
  waitForTask: fc.tuple(idArg('task'), timeoutArg(on)),
});

/** Built once: making arbitraries is far dearer than drawing from them (chain() would remake them every draw). */
const ARGS = { adapter: argsOf('adapter'), router: argsOf('router') };

const legacyCall: fc.Arbitrary<Call> = fc
  .record({
    on: fc.constantFrom('adapter' as const, 'router' as const),
    method: fc.constantFrom(...(Object.keys(SNAKE) as Method[])),
    snake: fc.boolean(),
  })
  .chain((c) => ARGS[c.on][c.method].map((args) => ({ ...c, args })));

/** Whether `String(value)` works: setPercent builds its error message with it (so a value it throws on is a known bug). */
function printable(r: ValueRecipe): boolean {
  try {
    String(build(r));
    return true;
  } catch {
    return false;
  }
}

const controlCall: fc.Arbitrary<Call> = fc.oneof(
  fc.record({
    on: fc.constant('control' as const),
    op: fc.constant('setPercent' as const),
    value: validOr(
      json(fc.oneof(fc.integer({ min: 0, max: 100 }), fc.double({ min: -10, max: 110, noNaN: true }))),
    ).filter((r) => STRICT || printable(r)),
  }),
  fc.record({
    on: fc.constant('control' as const),
    op: fc.constant('setShadow' as const),
    value: validOr(json(fc.boolean())),
  }),
  fc.record({
    on: fc.constant('control' as const),
    op: fc.constant('rollback' as const),
    value: fc.option(json(fc.string({ maxLength: 20 })), { nil: undefined }),
  }),
);

const callsArb = fc.array(fc.oneof({ weight: 8, arbitrary: legacyCall }, { weight: 1, arbitrary: controlCall }), {
  minLength: 1,
  maxLength: 4,
});

/** The router's split at the start of a run (so that a counterexample does not depend on the runs before it). */
const startArb = fc.record({
  percent: fc.oneof(fc.constantFrom(0, 50, 100), fc.double({ min: 0, max: 100, noNaN: true })),
  shadow: fc.boolean(),
});

// --- Answers ------------------------------------------------------------------------------------------------------------

function expectLegacyError(value: unknown, where: string): void {
  expect(isLegacyError(value), `${where}: an error answer`).toBe(true);
  const { code, message } = (value as { error: { code: unknown; message: unknown } }).error;
  if (typeof code !== 'string' || !CODES.has(code))
    throw new Error(`${where}: error code ${String(code)} is not a legacy code`);
  expect(typeof message, `${where}: error message`).toBe('string');
}

const isIso = (v: unknown): boolean => typeof v === 'string' && !Number.isNaN(Date.parse(v));

function checkAnswer(method: Method, value: unknown, where: string): void {
  if (typeof value === 'object' && value !== null && isLegacyError(value)) return expectLegacyError(value, where);
  switch (method) {
    case 'spawnAgent':
    case 'delegateTaskToAgent':
      expect(typeof value === 'string' && value.length > 0, `${where}: an id, got ${describeError(value)}`).toBe(true);
      return;
    case 'getTaskStatus':
    case 'waitForTask': {
      const s = value as Record<string, unknown>;
      expect(typeof s.task_id === 'string' && TASK_STATES.has(s.status as string), `${where}: a task status`).toBe(
        true,
      );
      expect(s.agent_id === null || typeof s.agent_id === 'string', `${where}: agent_id`).toBe(true);
      expect(Number.isSafeInteger(s.attempts) && (s.attempts as number) >= 0, `${where}: attempts`).toBe(true);
      expect(isIso(s.created_at) && isIso(s.updated_at), `${where}: timestamps`).toBe(true);
      if (s.error !== undefined) expectLegacyError({ error: s.error }, `${where} (status error)`);
      return;
    }
    case 'getAgentStatus': {
      const s = value as Record<string, unknown>;
      expect(
        typeof s.agent_id === 'string' && AGENT_STATES.has(s.status as string) && Array.isArray(s.capabilities),
        `${where}: an agent status`,
      ).toBe(true);
      expect(
        [s.active_tasks, s.completed_tasks, s.failed_tasks].every((n) => Number.isSafeInteger(n) && (n as number) >= 0),
        `${where}: counts`,
      ).toBe(true);
      return;
    }
    case 'shutdownAgent':
      expect(
        typeof (value as { agent_id?: unknown }).agent_id === 'string' &&
          (value as { status?: unknown }).status === 'terminated',
        `${where}: a shutdown`,
      ).toBe(true);
  }
}

// --- The target ---------------------------------------------------------------------------------------------------------

describe('fuzz: legacy calls through the adapter and the traffic router', () => {
  let o: UnifiedOrchestrator;
  let adapter: OrchestratorsCompatibilityAdapter;
  let router: TrafficRouter;
  let guard: ReturnType<typeof processGuard>;
  const ids = { task: [] as string[], agent: [] as string[] };

  beforeAll(async () => {
    guard = processGuard();
    o = new UnifiedOrchestrator({
      pressure: false,
      agentBreaker: false,
      retry: { baseDelayMs: 0, maxDelayMs: 0 },
      health: { checkIntervalMs: 60_000 },
      pools: [
        { role: 'w', capabilities: ['a', 'b'], minAgents: 2, maxAgents: 8, concurrency: 2, create: agent },
        { role: 'r', capabilities: ['c'], minAgents: 1, maxAgents: 4, create: agent },
      ],
    });
    await o.start();
    adapter = new OrchestratorsCompatibilityAdapter(o);
    router = new TrafficRouter({
      legacy: new TrivialLegacy(),
      unified: adapter,
      orchestrator: o,
      shadowTimeoutMs: 50,
      pollIntervalMs: 1,
    });
  });

  afterAll(async () => {
    try {
      adapter?.close();
      await o?.stop({ drain: true, timeoutMs: 5_000 });
      await guard.check();
    } finally {
      guard.dispose();
    }
  });

  function resolveArg(arg: Arg): unknown {
    if ('missing' in arg) return undefined;
    if ('value' in arg) return build(arg.value, 'arg');
    const pool = arg.known === 'task' ? ids.task : [...ids.agent, ...o.agents().map((a) => a.id)];
    return pool.length === 0 ? 'none-yet' : pool[arg.pick % pool.length];
  }

  async function run(call: Call, where: string): Promise<void> {
    if (call.on === 'control') {
      const value = call.value === undefined ? undefined : build(call.value, call.op);
      let sent: Promise<void>;
      try {
        sent =
          call.op === 'setPercent'
            ? router.setPercent(value as number)
            : call.op === 'setShadow'
              ? router.setShadow(value as boolean)
              : router.rollback(value as string | undefined);
      } catch (error) {
        if (call.op === 'rollback' || !(error instanceof ValidationError))
          throw new Error(`${where}: ${call.op} threw ${describeError(error)}`, { cause: error });
        expect(error.field).toBe(call.op === 'setPercent' ? 'percent' : 'shadow');
        return;
      }
      const settled = await settleWithin(sent, 2_000, `${where}: ${call.op}`);
      if (settled.status === 'rejected')
        throw new Error(`${where}: ${call.op} rejected ${describeError(settled.reason)}`);
      if (call.op === 'setPercent')
        expect(router.percent === value, `${where}: percent ${router.percent} applied (${String(value)})`).toBe(true); // -0 is 0
      if (call.op === 'setShadow') expect(router.shadow).toBe(value);
      if (call.op === 'rollback')
        expect(router.percent === 0 && router.shadow === false, `${where}: rolled back`).toBe(true);
      const traffic = o.controlState().traffic;
      expect(
        traffic !== null && traffic.percent === router.percent && traffic.shadow === router.shadow,
        `${where}: the orchestrator applied the same split (${JSON.stringify(traffic)} vs ${router.percent}/${router.shadow})`,
      ).toBe(true);
      return;
    }
    const target = (call.on === 'adapter' ? adapter : router) as unknown as Record<
      string,
      (...args: unknown[]) => Promise<LegacyResult<unknown>>
    >;
    const name = call.snake ? SNAKE[call.method] : call.method;
    const args = call.args.map(resolveArg);
    let answer: Promise<unknown>;
    try {
      answer = target[name]!(...args);
    } catch (error) {
      throw new Error(`${where}: ${call.on}.${name} threw synchronously: ${describeError(error)}`, { cause: error });
    }
    const settled = await settleWithin(answer, 3_000, `${where}: ${call.on}.${name}`);
    if (settled.status === 'rejected')
      throw new Error(`${where}: ${call.on}.${name} rejected: ${describeError(settled.reason)}`, {
        cause: settled.reason,
      });
    checkAnswer(call.method, settled.value, `${where}: ${call.on}.${name}`);
    if (typeof settled.value === 'string') {
      const list = call.method === 'spawnAgent' ? ids.agent : ids.task;
      list.push(settled.value);
      if (list.length > 200) list.shift();
    }
  }

  it(
    'every call answers a value or a legacy error; controls apply or throw ValidationError',
    async () => {
      const protos = prototypeGuard();
      let n = 0;
      await fc.assert(
        fc.asyncProperty(startArb, callsArb, async (start, calls) => {
          n++;
          await router.setPercent(start.percent);
          await router.setShadow(start.shadow);
          for (const [i, call] of calls.entries()) await run(call, `run ${n} call ${i}`);
          protos.check(`after run ${n}`);
          checkStats(o.stats(), `after run ${n}`);
        }),
        params(10_000),
      );
    },
    TARGET_TIMEOUT_MS,
  );

  it('afterwards a normal legacy task completes through the adapter and through the router; close() settles', async () => {
    const id = await adapter.delegateTaskToAgent({ role: 'w', payload: 'normal', type: 'normal' });
    expect(typeof id).toBe('string');
    expect(await adapter.waitForTask(id as string, 5)).toMatchObject({
      task_id: id,
      status: 'completed',
      result: { done: 'normal' },
    });
    await router.setShadow(false);
    await router.setPercent(100);
    const viaRouter = await router.delegate_task_to_agent({
      role: 'w',
      payload: 'normal',
      type: 'normal',
      tenant_id: 'acme',
    });
    expect(typeof viaRouter).toBe('string');
    expect(await router.wait_for_task(viaRouter as string, 5)).toMatchObject({
      status: 'completed',
      result: { done: 'normal' },
    });
    await settleWithin(router.close(), 5_000, 'router.close()');
    expect(router.stats().shadowRuns.inFlight).toBe(0);
    checkStats(o.stats(), 'at the end');
  });
});
