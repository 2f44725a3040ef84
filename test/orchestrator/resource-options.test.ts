import { describe, expect, it } from 'vitest';
import { UnifiedOrchestrator, ValidationError, type OrchestratorOptions } from 'unified-orchestrator';

function refused(options: unknown): ValidationError {
  try {
    new UnifiedOrchestrator(options as OrchestratorOptions);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

describe('resource option validation', () => {
  const sample = () => ({ rssBytes: 1, heapUsedBytes: 1, cpuPercent: 0 });
  const cases: Array<[string, unknown, string, RegExp]> = [
    [
      'retryable not a function',
      { retry: { retryable: true } },
      'options.retry.retryable',
      /to be a function, got true/,
    ],
    [
      'breaker threshold above 100',
      { agentBreaker: { errorThresholdPercentage: 101 } },
      'options.agentBreaker.errorThresholdPercentage',
      /> 0 and <= 100, got 101/,
    ],
    [
      'breaker threshold 0',
      { agentBreaker: { errorThresholdPercentage: 0 } },
      'options.agentBreaker.errorThresholdPercentage',
      /> 0 and <= 100, got 0/,
    ],
    [
      'breaker volume negative',
      { agentBreaker: { volumeThreshold: -1 } },
      'options.agentBreaker.volumeThreshold',
      /integer from 0/,
    ],
    [
      'breaker reset too long for a timer',
      { agentBreaker: { resetTimeoutMs: 2 ** 31 } },
      'options.agentBreaker.resetTimeoutMs',
      /from 1 to 2147483647/,
    ],
    ['breaker unknown key', { agentBreaker: { threshold: 5 } }, 'options.agentBreaker.threshold', /Unknown field/],
    ['breaker true', { agentBreaker: true }, 'options.agentBreaker', /to be an object, got true/],
    ['memory limit 0', { pressure: { memoryLimitBytes: 0 } }, 'options.pressure.memoryLimitBytes', /number > 0/],
    ['cpu limit negative', { pressure: { cpuLimitPercent: -1 } }, 'options.pressure.cpuLimitPercent', /number > 0/],
    ['elevatedAt above 1', { pressure: { elevatedAt: 1.5 } }, 'options.pressure.elevatedAt', /> 0 and <= 1, got 1.5/],
    ['hysteresis above 0.5', { pressure: { hysteresis: 0.6 } }, 'options.pressure.hysteresis', /<= 0.5/],
    ['priority floor fractional', { pressure: { priorityFloor: 0.5 } }, 'options.pressure.priorityFloor', /integer/],
    ['sampler without sample()', { pressure: { sampler: {} } }, 'options.pressure.sampler.sample', /to be a function/],
    ['pressure unknown key', { pressure: { memoryLimit: 1 } }, 'options.pressure.memoryLimit', /Unknown field/],
    [
      'budget limit negative',
      { budgets: { limits: { acme: -1 } } },
      'options.budgets.limits.acme',
      />= 0 \(or Infinity\), got -1/,
    ],
    ['budget window 0', { budgets: { windowMs: 0 } }, 'options.budgets.windowMs', /milliseconds > 0/],
    [
      'haltOnExceeded not boolean',
      { budgets: { haltOnExceeded: 'yes' } },
      'options.budgets.haltOnExceeded',
      /boolean, got "yes"/,
    ],
    [
      'rate limit without interval',
      { rateLimits: { llm: { requests: 5 } } },
      'options.rateLimits.llm.intervalMs',
      /milliseconds from 1/,
    ],
    [
      'rate limit requests 0',
      { rateLimits: { llm: { requests: 0, intervalMs: 1_000 } } },
      'options.rateLimits.llm.requests',
      /number > 0/,
    ],
    [
      'rate limit unknown key',
      { rateLimits: { llm: { rpm: 5, intervalMs: 1_000 } } },
      'options.rateLimits.llm.rpm',
      /Unknown field/,
    ],
  ];

  it.each(cases)('%s → ValidationError naming %s', (_name, options, field, message) => {
    const err = refused(options);
    expect(err.code).toBe('VALIDATION_ERROR');
    expect(err.field).toBe(field);
    expect(err.message).toMatch(message);
  });

  it('accepts every resource option at its documented shape, and false to turn breakers and sampling off', async () => {
    const full = new UnifiedOrchestrator({
      retry: { baseDelayMs: 10, maxDelayMs: 100, retryable: () => true },
      agentBreaker: { errorThresholdPercentage: 25, volumeThreshold: 3, windowMs: 5_000, resetTimeoutMs: 1_000 },
      pressure: {
        memoryLimitBytes: Infinity,
        cpuLimitPercent: 90,
        elevatedAt: 0.9,
        hysteresis: 0,
        sampleIntervalMs: 500,
        cpuSustainedSamples: 2,
        priorityFloor: 5,
        sampler: { sample },
      },
      budgets: { windowMs: 60_000, limits: { acme: 100 }, defaultLimit: 1_000, haltOnExceeded: true },
      rateLimits: { llm: { requests: 60, units: 90_000, intervalMs: 60_000, maxDeferrals: 3 } },
    });
    await full.start();
    expect(full.stats().resources.rateLimits['llm']).toMatchObject({
      name: 'llm',
      requestsAvailable: 60,
      unitsAvailable: 90_000,
      paused: false,
    });
    await full.stop();
    const bare = new UnifiedOrchestrator({ agentBreaker: false, pressure: false });
    await bare.start();
    bare.registerAgent({ execute: () => 1 }, { capabilities: [], id: 'a' });
    expect(bare.agent('a')?.breaker).toBeUndefined();
    expect(bare.resources.pressure).toBe('normal');
    await bare.stop();
  });
});
