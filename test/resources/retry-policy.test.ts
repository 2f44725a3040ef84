/**
 * The one retry policy: backoff with full jitter, retry-after hints, the retryable predicate, and how task
 * retries and pool creation go through it.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  AgentCreationError,
  defaultRetryable,
  retryAfterMs,
  RETRY_DEFAULTS,
  TaskDeadLetteredError,
  UnifiedOrchestrator,
  type OrchestratorEvents,
  type OrchestratorOptions,
} from 'unified-orchestrator';
import { MAX_TIMER_MS } from '../../src/util/timers.js';
import { type ResolvedRetryOptions } from '../../src/resources/options.js';
import { RetryPolicy, sleep } from '../../src/resources/retry-policy.js';
import { manualAgent, recordEvents, rejectionOf, startEach, type Call } from '../engine/helpers.js';

/** Every wait the policy asks node:timers/promises for, so tests can read the delay without timing it. */
const timers = vi.hoisted(() => ({ waits: [] as number[] }));
vi.mock('node:timers/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:timers/promises')>();
  return {
    ...actual,
    setTimeout: (ms?: number, value?: unknown, options?: import('node:timers').TimerOptions) => {
      timers.waits.push(ms ?? 0);
      return actual.setTimeout(ms, value, options);
    },
  };
});

afterEach(() => {
  timers.waits.length = 0;
  vi.useRealTimers();
});

function policy(options: Partial<ResolvedRetryOptions> = {}, random: () => number = () => 0.5): RetryPolicy {
  return new RetryPolicy({ ...RETRY_DEFAULTS, ...options }, random);
}

const never = new AbortController().signal;

describe('RetryPolicy.delay', () => {
  it('backs off exponentially with full jitter, up to maxDelayMs', () => {
    const p = policy({ baseDelayMs: 100, maxDelayMs: 1_000 }, () => 0.5);
    expect([1, 2, 3, 4, 5, 6, 20].map((n) => p.delay(n))).toEqual([50, 100, 200, 400, 500, 500, 500]);
    expect(policy({ baseDelayMs: 100, maxDelayMs: 1_000 }, () => 0).delay(3)).toBe(0);
    expect(policy({ baseDelayMs: 100, maxDelayMs: 1_000 }, () => 0.999).delay(3)).toBe(399);
  });

  it('draws uniformly in [0, min(maxDelayMs, baseDelayMs * 2^(attempt-1))] from the injected random', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5_000 }),
        fc.integer({ min: 0, max: 100_000 }),
        fc.integer({ min: 1, max: 60 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (base, extra, attempt, r) => {
          const max = base + extra;
          const ceiling = Math.min(max, base * 2 ** (attempt - 1));
          const d = policy({ baseDelayMs: base, maxDelayMs: max }, () => r).delay(attempt, new Error('plain'));
          expect(d).toBe(Math.floor(r * ceiling));
          expect(d).toBeGreaterThanOrEqual(0);
          expect(d).toBeLessThanOrEqual(ceiling);
        },
      ),
    );
  });

  it('stays within the window when the injected random throws or returns junk', () => {
    for (const random of [
      () => 1,
      () => -0.5,
      () => Number.NaN,
      () => 7,
      (): number => {
        throw new Error('no entropy');
      },
    ]) {
      const p = policy({ baseDelayMs: 100, maxDelayMs: 1_000 }, random);
      for (const attempt of [1, 3, 10]) {
        const d = p.delay(attempt);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(Math.min(1_000, 100 * 2 ** (attempt - 1)));
      }
    }
  });

  it("lets the error's retry-after hint win over the backoff, even beyond maxDelayMs", () => {
    const p = policy({ baseDelayMs: 100, maxDelayMs: 1_000 }, () => 0);
    expect(p.delay(1, Object.assign(new Error('429'), { retryAfterMs: 250 }))).toBe(250);
    expect(p.delay(5, Object.assign(new Error('429'), { retryAfterMs: 50_000 }))).toBe(50_000);
    expect(p.delay(1, { retryAfterMs: 0 })).toBe(0);
  });

  const now = Date.parse('2025-03-01T12:00:00Z');
  const hints: Array<[string, unknown, number]> = [
    ['retryAfterMs in ms', { retryAfterMs: 1_234 }, 1_234],
    ['fractional retryAfterMs, rounded up', { retryAfterMs: 1.2 }, 2],
    ['retryAfter in seconds', { retryAfter: 2 }, 2_000],
    ['retryAfter as a numeric string', { retryAfter: '3' }, 3_000],
    ['retryAfter as an HTTP date', { retryAfter: 'Sat, 01 Mar 2025 12:00:05 GMT' }, 5_000],
    ['an HTTP date in the past', { retryAfter: 'Sat, 01 Mar 2025 11:59:00 GMT' }, 0],
    ['headers["retry-after"]', { headers: { 'retry-after': '7' } }, 7_000],
    ['headers["Retry-After"]', { headers: { 'Retry-After': '8' } }, 8_000],
    ['response.headers.get("retry-after")', { response: { headers: new Headers({ 'Retry-After': '4' }) } }, 4_000],
    [
      'response.headers as a plain object',
      { response: { headers: { 'retry-after': 'Sat, 01 Mar 2025 12:00:09 GMT' } } },
      9_000,
    ],
    [
      'retryAfterMs before retryAfter before headers',
      { retryAfterMs: 10, retryAfter: 20, headers: { 'retry-after': '30' } },
      10,
    ],
    ['retryAfter before headers', { retryAfter: 20, headers: { 'retry-after': '30' } }, 20_000],
    ['a hint longer than a timer can hold, capped', { retryAfterMs: 2 ** 40 }, MAX_TIMER_MS],
  ];

  it.each(hints)('reads %s', (_name, error, expected) => {
    expect(retryAfterMs(error, now)).toBe(expected);
    vi.useFakeTimers({ toFake: ['Date'], now });
    // The policy honours the hint up to maxRetryAfterMs (300_000 by default).
    expect(policy({ baseDelayMs: 100, maxDelayMs: 1_000 }, () => 0.5).delay(1, error)).toBe(
      Math.min(expected, RETRY_DEFAULTS.maxRetryAfterMs),
    );
  });

  it('cuts a retry-after hint to maxRetryAfterMs, and reports it through retryAfter()', () => {
    const p = policy({ maxRetryAfterMs: 2_000 });
    expect(p.delay(1, { retryAfter: 86_400 })).toBe(2_000);
    expect(p.retryAfter({ retryAfterMs: 1_500 })).toBe(1_500);
    expect(p.retryAfter({ retryAfterMs: 5_000 })).toBe(2_000);
    expect(p.retryAfter(new Error('no hint'))).toBeUndefined();
  });

  it('reads no hint (and does not throw) from an error whose getters throw', () => {
    const hostile = Object.defineProperty(new Error('x'), 'retryAfterMs', {
      get: () => {
        throw new Error('getter');
      },
    });
    expect(retryAfterMs(hostile)).toBeUndefined();
    expect(policy({}, () => 0.5).delay(1, hostile)).toBe(50);
  });

  const noHints: Array<[string, unknown]> = [
    ['a plain error', new Error('boom')],
    ['a non-object', 'boom'],
    ['a garbage retryAfter', { retryAfter: 'soon' }],
    ['an empty header', { headers: { 'retry-after': ' ' } }],
    [
      'a headers.get that throws',
      {
        headers: {
          get: () => {
            throw new Error('nope');
          },
        },
      },
    ],
    ['a non-finite retryAfterMs', { retryAfterMs: Infinity }],
  ];

  it.each(noHints)('falls back to the backoff for %s', (_name, error) => {
    expect(retryAfterMs(error, now)).toBeUndefined();
    expect(policy({ baseDelayMs: 100, maxDelayMs: 1_000 }, () => 0.5).delay(2, error)).toBe(100);
  });
});

describe('RetryPolicy.retryable', () => {
  it('by default retries every error except an own retryable: false and the library refusals', () => {
    const p = policy();
    expect(p.retryable(new Error('boom'))).toBe(true);
    expect(p.retryable('a string')).toBe(true);
    expect(p.retryable(Object.assign(new Error('bad request'), { retryable: false }))).toBe(false);
    expect(p.retryable(Object.assign(new Error('flaky'), { retryable: true }))).toBe(true);
    for (const code of ['VALIDATION_ERROR', 'TASK_CANCELLED', 'BUDGET_EXCEEDED']) {
      expect(p.retryable(Object.assign(new Error(code), { code }))).toBe(false);
    }
    expect(p.retryable(Object.assign(new Error('timeout'), { code: 'TASK_TIMEOUT' }))).toBe(true);
    expect(RETRY_DEFAULTS.retryable).toBe(defaultRetryable);
  });

  it('uses the configured predicate, and treats a predicate that throws as "not retryable"', () => {
    const predicate = vi.fn((error: unknown) => (error as Error).message === 'transient');
    const p = policy({ retryable: predicate });
    expect(p.retryable(new Error('transient'))).toBe(true);
    expect(p.retryable(new Error('fatal'))).toBe(false);
    expect(predicate).toHaveBeenCalledTimes(2);
    const throwing = policy({
      retryable: () => {
        throw new Error('predicate bug');
      },
    });
    expect(throwing.retryable(new Error('transient'))).toBe(false);
  });
});

describe('RetryPolicy.run', () => {
  /** `fn` that fails with the given errors in order, then resolves with 'done'. */
  function script(errors: unknown[]): ReturnType<typeof vi.fn<(attempt: number) => Promise<string>>> {
    return vi.fn(async (_attempt: number) => {
      if (errors.length > 0) throw errors.shift();
      return 'done';
    });
  }

  it('retries until fn resolves, reporting each failure with willRetry', async () => {
    const errors = [new Error('one'), new Error('two')];
    const fn = script([...errors]);
    const onFailure = vi.fn();
    await expect(
      policy({ baseDelayMs: 0, maxDelayMs: 0 }).run(fn, { attempts: 5, signal: never, onFailure }),
    ).resolves.toBe('done');
    expect(fn.mock.calls.map(([attempt]) => attempt)).toEqual([1, 2, 3]);
    expect(onFailure.mock.calls).toEqual([
      [errors[0], 1, true],
      [errors[1], 2, true],
    ]);
  });

  it('waits delay(attempt, error) between attempts', async () => {
    const fn = script([new Error('jittered'), Object.assign(new Error('429'), { retryAfterMs: 15 })]);
    const p = policy({ baseDelayMs: 40, maxDelayMs: 1_000 }, () => 0.25);
    await expect(p.run(fn, { attempts: 3, signal: never })).resolves.toBe('done');
    // Attempt 1: 0.25 * 40; attempt 2: the error's own hint.
    expect(timers.waits).toEqual([10, 15]);
  });

  it('stops at once on an error the policy does not retry', async () => {
    const fatal = Object.assign(new Error('bad request'), { retryable: false });
    const fn = script([fatal]);
    const onFailure = vi.fn();
    await expect(
      policy({ baseDelayMs: 0, maxDelayMs: 0 }).run(fn, { attempts: 5, signal: never, onFailure }),
    ).rejects.toBe(fatal);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(onFailure.mock.calls).toEqual([[fatal, 1, false]]);
    expect(timers.waits).toEqual([]);
  });

  it("stops at once on an error the run's own retryable filter refuses", async () => {
    const special = new Error('caller knows');
    const fn = script([special]);
    const onFailure = vi.fn();
    const retryable = vi.fn((error: unknown) => error !== special);
    await expect(
      policy({ baseDelayMs: 0, maxDelayMs: 0 }).run(fn, { attempts: 5, signal: never, onFailure, retryable }),
    ).rejects.toBe(special);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(retryable).toHaveBeenCalledWith(special);
    expect(onFailure.mock.calls).toEqual([[special, 1, false]]);
  });

  it('stops when the attempts are spent, rejecting with the last error', async () => {
    const errors = [new Error('one'), new Error('two'), new Error('three'), new Error('four')];
    const fn = script([...errors]);
    const onFailure = vi.fn<(error: unknown, attempt: number, willRetry: boolean) => void>();
    await expect(
      policy({ baseDelayMs: 0, maxDelayMs: 0 }).run(fn, { attempts: 3, signal: never, onFailure }),
    ).rejects.toBe(errors[2]);
    expect(fn).toHaveBeenCalledTimes(3);
    expect(onFailure.mock.calls.map(([, attempt, willRetry]) => [attempt, willRetry])).toEqual([
      [1, true],
      [2, true],
      [3, false],
    ]);
  });

  it('does not call fn when the signal is already aborted', async () => {
    const controller = new AbortController();
    const reason = new Error('stopping');
    controller.abort(reason);
    const fn = script([]);
    await expect(policy().run(fn, { attempts: 3, signal: controller.signal })).rejects.toBe(reason);
    expect(fn).not.toHaveBeenCalled();
  });

  it('stops waiting between attempts when the signal aborts, with its reason', async () => {
    const controller = new AbortController();
    const reason = new Error('stopping');
    const fn = script([new Error('one'), new Error('two')]);
    // A wait of ~9.9 s after the first failure, aborted a few ms into it.
    const p = policy({ baseDelayMs: 10_000, maxDelayMs: 10_000 }, () => 0.99);
    const run = p.run(fn, {
      attempts: 3,
      signal: controller.signal,
      onFailure: () => setTimeout(() => controller.abort(reason), 5),
    });
    await expect(run).rejects.toBe(reason);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(timers.waits).toEqual([9_900]);
  });

  it('rejects with the signal reason, not fn error, when the signal aborts during an attempt', async () => {
    const controller = new AbortController();
    const reason = new Error('stopping');
    const onFailure = vi.fn();
    const fn = vi.fn(async () => {
      controller.abort(reason);
      throw new Error('aborted mid-flight');
    });
    await expect(
      policy({ baseDelayMs: 0, maxDelayMs: 0 }).run(fn, { attempts: 3, signal: controller.signal, onFailure }),
    ).rejects.toBe(reason);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(onFailure).not.toHaveBeenCalled();
  });

  it('sleep() rejects with the signal reason when aborted, and returns at once for 0 ms', async () => {
    await expect(sleep(0, never)).resolves.toBeUndefined();
    const controller = new AbortController();
    const reason = new Error('stop');
    const waiting = sleep(10_000, controller.signal);
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    await expect(sleep(0, controller.signal)).rejects.toBe(reason);
  });
});

describe('task retries through the policy', () => {
  const start = startEach();

  function startWith(options: OrchestratorOptions): Promise<UnifiedOrchestrator> {
    return start({ pools: [], pressure: false, agentBreaker: false, ...options });
  }

  /** An agent that fails its first `failures.length` calls with those errors, then answers 'ok'. */
  function scriptedAgent(failures: unknown[], calls: { n: number }) {
    return {
      execute: async () => {
        calls.n++;
        if (failures.length > 0) throw failures.shift();
        return 'ok';
      },
    };
  }

  it('does not retry an error the retry.retryable predicate rejects: one attempt, then dead-lettered', async () => {
    const fatal = new Error('fatal');
    const retryable = vi.fn((error: unknown) => error !== fatal);
    const o = await startWith({ retry: { baseDelayMs: 1, maxDelayMs: 1, retryable } });
    const log = recordEvents(o);
    const calls = { n: 0 };
    o.registerAgent(scriptedAgent([fatal, fatal, fatal], calls), { id: 'a', capabilities: [] });
    const error = await rejectionOf(o.submit({ type: 't', maxAttempts: 3 }));
    expect(error).toBeInstanceOf(TaskDeadLetteredError);
    expect(error).toMatchObject({ code: 'TASK_DEAD_LETTERED', cause: fatal });
    expect((error as TaskDeadLetteredError).attempts).toHaveLength(1);
    expect(calls.n).toBe(1);
    expect(retryable).toHaveBeenCalledWith(fatal);
    expect(log.retrying).toEqual([]);
    expect(log.failed).toMatchObject([{ outcome: 'dead-lettered', attempts: 1 }]);
    expect(o.deadLetters()).toHaveLength(1);
    expect(o.deadLetters()[0]!.attempts[0]).toMatchObject({ attempt: 1, agentId: 'a', error: fatal });
  });

  it('by default does not retry an error with its own retryable: false, and does retry a plain one', async () => {
    const o = await startWith({ retry: { baseDelayMs: 1, maxDelayMs: 1 } });
    const fatal = Object.assign(new Error('bad request'), { retryable: false });
    const fatalCalls = { n: 0 };
    o.registerAgent(scriptedAgent([fatal, fatal], fatalCalls), { id: 'fatal', capabilities: ['fatal'] });
    const error = await rejectionOf(o.submit({ type: 't', requires: ['fatal'], maxAttempts: 3 }));
    expect(error).toMatchObject({ code: 'TASK_DEAD_LETTERED', cause: fatal });
    expect(fatalCalls.n).toBe(1);

    const flakyCalls = { n: 0 };
    o.registerAgent(scriptedAgent([new Error('flaky'), new Error('flaky')], flakyCalls), {
      id: 'flaky',
      capabilities: ['flaky'],
    });
    await expect(o.submit({ type: 't', requires: ['flaky'], maxAttempts: 3 })).resolves.toBe('ok');
    expect(flakyCalls.n).toBe(3);
  });

  it('treats a retryable predicate that throws as "not retryable"', async () => {
    const o = await startWith({
      retry: {
        baseDelayMs: 1,
        maxDelayMs: 1,
        retryable: () => {
          throw new Error('predicate bug');
        },
      },
    });
    const log = recordEvents(o);
    const calls = { n: 0 };
    const boom = new Error('boom');
    o.registerAgent(scriptedAgent([boom, boom], calls), { id: 'a', capabilities: [] });
    const error = await rejectionOf(o.submit({ type: 't', maxAttempts: 3 }));
    expect(error).toBeInstanceOf(TaskDeadLetteredError);
    expect(error).toMatchObject({ cause: boom });
    expect(calls.n).toBe(1);
    expect(log.retrying).toEqual([]);
  });

  it('retries a retry-after error after the hinted delay when no rate limit is configured', async () => {
    // Jitter alone would wait 0.9 * 5 s on the first retry: the hint must win.
    const o = await startWith({ retry: { baseDelayMs: 5_000, maxDelayMs: 5_000 }, random: () => 0.9 });
    const log = recordEvents(o);
    const calls: Call[] = [];
    o.registerAgent(manualAgent(calls), { id: 'a', capabilities: ['llm'] });
    const result = o.submit({ type: 't', requires: ['llm'], maxAttempts: 3 });
    const throttled = Object.assign(new Error('429'), { retryAfterMs: 40 });
    calls[0]!.reject(throttled);
    await new Promise<void>((resolve) => o.once('task:started', () => resolve()));
    expect(log.retrying).toHaveLength(1);
    expect(log.retrying[0]).toMatchObject({ attempt: 1, delayMs: 40, error: throttled });
    calls[1]!.resolve('answer');
    await expect(result).resolves.toBe('answer');
    expect(log.started.map((s) => s.attempt)).toEqual([1, 2]);
    expect(log.completed).toMatchObject([{ attempt: 2 }]);
  });

  it('reads a retry-after header in seconds for the task retry delay', async () => {
    const o = await startWith({ retry: { baseDelayMs: 5_000, maxDelayMs: 5_000 }, random: () => 0.9 });
    const log = recordEvents(o);
    const calls = { n: 0 };
    const throttled = Object.assign(new Error('503'), {
      response: { headers: new Headers({ 'retry-after': '0.03' }) },
    });
    o.registerAgent(scriptedAgent([throttled], calls), { id: 'a', capabilities: [] });
    await expect(o.submit({ type: 't', maxAttempts: 2 })).resolves.toBe('ok');
    expect(log.retrying).toMatchObject([{ attempt: 1, delayMs: 30 }]);
    expect(calls.n).toBe(2);
  });
});

describe('pool creation retries through the policy', () => {
  type CreateFailed = OrchestratorEvents['pool:create-failed'];

  async function startPool(
    create: () => never,
    extra: OrchestratorOptions = {},
  ): Promise<{ error: unknown; events: CreateFailed[] }> {
    const o = new UnifiedOrchestrator({
      pressure: false,
      retry: { baseDelayMs: 1, maxDelayMs: 1 },
      ...extra,
      pools: [
        {
          role: 'worker',
          capabilities: ['work'],
          create,
          createAttempts: 3,
          minAgents: 1,
          maxAgents: 1,
          warmSpares: 0,
        },
      ],
    });
    const events: CreateFailed[] = [];
    o.on('pool:create-failed', (e) => events.push(e));
    try {
      const error = await rejectionOf(o.start());
      expect(o.state).toBe('stopped');
      return { error, events };
    } finally {
      await o.stop();
    }
  }

  it('does not retry a create() error with retryable: false: start() rejects after one create-failed event', async () => {
    const fatal = Object.assign(new Error('bad credentials'), { retryable: false });
    const create = vi.fn((): never => {
      throw fatal;
    });
    const { error, events } = await startPool(create);
    expect(error).toBeInstanceOf(AgentCreationError);
    expect(error).toMatchObject({ code: 'AGENT_CREATION_FAILED', role: 'worker', cause: fatal });
    expect(create).toHaveBeenCalledTimes(1);
    expect(events).toEqual([{ role: 'worker', attempt: 1, willRetry: false, error: fatal }]);
  });

  it('reports the attempts actually made when it stopped early on a non-retryable error', async () => {
    const fatal = Object.assign(new Error('bad credentials'), { retryable: false });
    const { error } = await startPool(() => {
      throw fatal;
    });
    expect(error).toBeInstanceOf(AgentCreationError);
    expect((error as AgentCreationError).attempts).toBe(1);
    expect((error as Error).message).toContain('after 1 attempt(s)');
  });

  it('retries a retryable create() error up to createAttempts', async () => {
    const flaky = new Error('flaky');
    const create = vi.fn((): never => {
      throw flaky;
    });
    const { error, events } = await startPool(create);
    expect(error).toBeInstanceOf(AgentCreationError);
    expect(error).toMatchObject({ attempts: 3, cause: flaky });
    expect(create).toHaveBeenCalledTimes(3);
    expect(events.map((e) => [e.attempt, e.willRetry])).toEqual([
      [1, true],
      [2, true],
      [3, false],
    ]);
  });

  it('applies the configured retry.retryable predicate to creation too', async () => {
    const create = vi.fn((): never => {
      throw new Error('flaky');
    });
    const { error, events } = await startPool(create, {
      retry: { baseDelayMs: 1, maxDelayMs: 1, retryable: () => false },
    });
    expect(error).toBeInstanceOf(AgentCreationError);
    expect(create).toHaveBeenCalledTimes(1);
    expect(events.map((e) => e.willRetry)).toEqual([false]);
  });
});
