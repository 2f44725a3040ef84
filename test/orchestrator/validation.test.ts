import { afterEach, describe, expect, it } from 'vitest';
import { UnifiedOrchestrator, ValidationError, type Agent } from 'unified-orchestrator';
import { recordingAgent } from '../support/agents.js';

function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).code).toBe('VALIDATION_ERROR');
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

const create = (): Agent => recordingAgent();

describe('pool option validation', () => {
  const cases: Array<[string, unknown, string, RegExp]> = [
    ['missing role', { capabilities: [], create }, 'options.pools[0].role', /non-empty string, got undefined/],
    [
      'capabilities not an array',
      { role: 'a', capabilities: 'x', create },
      'options.pools[0].capabilities',
      /array of strings/,
    ],
    [
      'capability not a string',
      { role: 'a', capabilities: ['x', 3], create },
      'options.pools[0].capabilities[1]',
      /non-empty string, got 3/,
    ],
    [
      'create not a function',
      { role: 'a', capabilities: [], create: 'nope' },
      'options.pools[0].create',
      /to be a function, got "nope"/,
    ],
    [
      'min > max',
      { role: 'a', capabilities: [], create, minAgents: 10, maxAgents: 3 },
      'options.pools[0].minAgents',
      /\(10\) to be <= .*maxAgents` \(3\)/,
    ],
    [
      'negative minAgents',
      { role: 'a', capabilities: [], create, minAgents: -1 },
      'options.pools[0].minAgents',
      /integer from 0 to 10000, got -1/,
    ],
    [
      'zero maxAgents',
      { role: 'a', capabilities: [], create, maxAgents: 0 },
      'options.pools[0].maxAgents',
      /integer from 1 to 10000, got 0/,
    ],
    [
      'fractional concurrency',
      { role: 'a', capabilities: [], create, concurrency: 1.5 },
      'options.pools[0].concurrency',
      /integer from 1 to 10000, got 1.5/,
    ],
    [
      'negative createTimeoutMs',
      { role: 'a', capabilities: [], create, createTimeoutMs: -5 },
      'options.pools[0].createTimeoutMs',
      /milliseconds from 1 to 2147483647 \(or Infinity for none\), got -5/,
    ],
    ['unknown key', { role: 'a', capabilities: [], create, maxAgent: 3 }, 'options.pools[0].maxAgent', /Unknown field/],
    [
      'minAgents beyond the bound',
      { role: 'a', capabilities: [], create, minAgents: 2 ** 32, maxAgents: 2 ** 32 },
      'options.pools[0].maxAgents',
      /integer from 1 to 10000/,
    ],
    [
      'createTimeoutMs a Node timer cannot hold',
      { role: 'a', capabilities: [], create, createTimeoutMs: 2 ** 31 },
      'options.pools[0].createTimeoutMs',
      /from 1 to 2147483647/,
    ],
  ];
  it.each(cases)('%s → ValidationError naming %s', (_name, pool, field, message) => {
    const err = validationError(() => new UnifiedOrchestrator({ pools: [pool as never] }));
    expect(err.field).toBe(field);
    expect(err.message).toMatch(message);
  });

  it('refuses two pools with the same role', () => {
    const err = validationError(
      () =>
        new UnifiedOrchestrator({
          pools: [
            { role: 'a', capabilities: [], create },
            { role: 'a', capabilities: [], create },
          ],
        }),
    );
    expect(err.field).toBe('options.pools[1].role');
  });

  it('refuses orchestrator options of the wrong shape', () => {
    expect(validationError(() => new UnifiedOrchestrator({ routing: 'fastest' as never })).field).toBe(
      'options.routing',
    );
    expect(validationError(() => new UnifiedOrchestrator({ maxQueueSize: -1 })).field).toBe('options.maxQueueSize');
    expect(validationError(() => new UnifiedOrchestrator({ retry: { baseDelayMs: 100, maxDelayMs: 10 } })).field).toBe(
      'options.retry.maxDelayMs',
    );
    expect(validationError(() => new UnifiedOrchestrator({ pools: {} as never })).field).toBe('options.pools');
  });

  it('stop() with bad options rejects (it never throws synchronously) and leaves the orchestrator usable', async () => {
    const o = new UnifiedOrchestrator();
    const p = o.stop({ drain: 'yes' as never });
    await expect(p).rejects.toMatchObject({ code: 'VALIDATION_ERROR', field: 'options.drain' });
    await expect(o.stop({ timeoutMs: 2 ** 31 })).rejects.toMatchObject({ field: 'options.timeoutMs' });
    expect(o.state).toBe('created');
    await o.stop();
    expect(o.state).toBe('stopped');
  });

  it("does not mutate the caller's options", () => {
    const pools = [{ role: 'a', capabilities: ['x', 'x'], create }];
    const options = { pools };
    new UnifiedOrchestrator(options);
    expect(options).toEqual({ pools: [{ role: 'a', capabilities: ['x', 'x'], create }] });
  });
});

describe('task validation', () => {
  let o: UnifiedOrchestrator;
  afterEach(() => o.stop({ drain: false }));

  const cases: Array<[string, unknown, string, RegExp]> = [
    ['not an object', 42, 'task', /to be an object, got 42/],
    ['missing type', { requires: [] }, 'task.type', /non-empty string, got undefined/],
    ['empty type', { type: '' }, 'task.type', /non-empty string, got ""/],
    ['requires not an array', { type: 't', requires: 'x' }, 'task.requires', /array of strings, got "x"/],
    [
      'requires holding a non-string',
      { type: 't', requires: ['x', null] },
      'task.requires[1]',
      /non-empty string, got null/,
    ],
    ['prefers not an array', { type: 't', prefers: {} }, 'task.prefers', /array of strings, got an object/],
    [
      'negative timeout',
      { type: 't', timeoutMs: -1 },
      'task.timeoutMs',
      /milliseconds > 0 \(or Infinity for none\), got -1/,
    ],
    ['NaN timeout', { type: 't', timeoutMs: Number.NaN }, 'task.timeoutMs', /got NaN/],
    ['fractional priority', { type: 't', priority: 0.5 }, 'task.priority', /integer/],
    ['zero maxAttempts', { type: 't', maxAttempts: 0 }, 'task.maxAttempts', /integer from 1 to 100, got 0/],
    ['signal not an AbortSignal', { type: 't', signal: {} }, 'task.signal', /AbortSignal/],
    ['misspelt field', { type: 't', require: ['x'] }, 'task.require', /Unknown field `task.require`/],
  ];
  it.each(cases)('%s → ValidationError naming %s, nothing accepted', async (_name, task, field, message) => {
    o = new UnifiedOrchestrator();
    o.registerAgent(recordingAgent(), { capabilities: ['x'] });
    await o.start();
    const err = await o.submit(task as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).field).toBe(field);
    expect((err as ValidationError).message).toMatch(message);
    // delegate refuses synchronously with the same error
    expect(() => o.delegate(task as never)).toThrow(ValidationError);
    const s = o.stats();
    expect(s).toMatchObject({ submitted: 2, rejected: 2, waiting: 0, running: 0, completed: 0 });
  });

  it('ignores a polluted prototype: only own fields count', async () => {
    o = new UnifiedOrchestrator();
    o.registerAgent(recordingAgent(), { capabilities: ['x'] });
    await o.start();
    const task = Object.create({ requires: ['not-held'] }) as { type: string };
    task.type = 't';
    await expect(o.submit(task)).resolves.toMatch(/:undefined$/);
  });
});

describe('registerAgent validation', () => {
  it('refuses bad agents and options without registering anything', async () => {
    const o = new UnifiedOrchestrator();
    expect(validationError(() => o.registerAgent({} as Agent, { capabilities: [] })).field).toBe('agent.execute');
    expect(validationError(() => o.registerAgent(recordingAgent(), { capabilities: [1] as never })).field).toBe(
      'options.capabilities[0]',
    );
    expect(validationError(() => o.registerAgent(recordingAgent(), { capabilities: [], concurrency: 0 })).field).toBe(
      'options.concurrency',
    );
    expect(validationError(() => o.registerAgent(recordingAgent(), { capabilities: [], id: '' })).field).toBe(
      'options.id',
    );
    expect(o.agents()).toEqual([]);
    o.registerAgent(recordingAgent(), { capabilities: [], id: 'dup' });
    expect(() => o.registerAgent(recordingAgent(), { capabilities: [], id: 'dup' })).toThrow(
      expect.objectContaining({ code: 'DUPLICATE_AGENT' }),
    );
    expect(o.agents()).toHaveLength(1);
    await o.stop();
  });
});
