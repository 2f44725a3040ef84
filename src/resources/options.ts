/**
 * The resources part's options: retry policy, circuit breakers, memory and CPU pressure, tenant budgets and rate
 * limits. Each group has its documented type (every field optional), one frozen `*_DEFAULTS` object, a resolved type
 * and a resolver that validates the caller's value and returns a new object.
 */
import { ValidationError } from '../errors.js';
import { MAX_TIMER_MS } from '../util/timers.js';
import {
  expectAmount,
  expectBoolean,
  expectDelay,
  expectDuration,
  expectFunction,
  expectInteger,
  expectObject,
  expectPositive,
  keysOf,
  optional,
  own,
  rejectUnknownKeys,
} from '../util/validate.js';

/**
 * The retry policy of task attempts, agent creation and bridge reconnects: exponential backoff with full jitter
 * (attempt n waits a random time in [0, min(maxDelayMs, baseDelayMs * 2^(n-1))]), or the error's own retry-after
 * hint when it carries one.
 */
export interface RetryOptions {
  /**
   * Ceiling of the wait after the first failed attempt, in ms (0 to 2^31-1); it doubles per attempt.
   * @default 100
   */
  baseDelayMs?: number;
  /**
   * The largest ceiling, in ms (from `baseDelayMs` to 2^31-1): no wait without a retry-after hint is longer.
   * @default 10_000, or `baseDelayMs` when that is larger
   */
  maxDelayMs?: number;
  /**
   * The longest wait a retry-after hint on an error is honoured for (task retries, rate-limit pauses, dependency
   * calls); a longer hint is cut to this. @default 300_000
   */
  maxRetryAfterMs?: number;
  /**
   * Whether an error is worth another attempt; `false` ends the retries at once. A task then gives up as it would
   * after its last attempt: dead-lettered with its history when its `maxAttempts` is above 1, failed with the error
   * otherwise. A predicate that throws counts as `false`. @default {@link defaultRetryable}: every error except one
   * with an own `retryable: false` property and the library's own ValidationError, TaskCancelledError and
   * BudgetExceededError
   */
  retryable?: (error: unknown) => boolean;
}

/** Thresholds of a circuit breaker (opossum): it opens when the failure rate in the window crosses the threshold. */
export interface BreakerOptions {
  /** Failure percentage in the rolling window above which the breaker opens. @default 50 */
  errorThresholdPercentage?: number;
  /** Calls in the window before the breaker may open at all, so two early failures do not trip it. @default 5 */
  volumeThreshold?: number;
  /** Length of the rolling window that the rate is measured over, in ms. @default 10_000 */
  windowMs?: number;
  /** How long an open breaker waits before letting one probe call through (half-open), in ms. @default 10_000 */
  resetTimeoutMs?: number;
}

/** One reading of the process. */
export interface ResourceSample {
  /** Resident set size in bytes. */
  readonly rssBytes: number;
  /** V8 heap in use, in bytes (reported, not compared with a limit). */
  readonly heapUsedBytes: number;
  /**
   * CPU in percent of one core since the previous sample (may exceed 100 with worker threads); `NaN` when not known
   * yet (pidusage's first reading averages over the whole life of the process, so it is left out).
   */
  readonly cpuPercent: number;
}

/** Where samples come from. Swap it to drive pressure in tests or to read a container's cgroup instead. */
export interface ResourceSampler {
  /**
   * Reads the process now. A throw, a rejection or no answer within `sampleIntervalMs` is reported as
   * `pressure:sample-failed`, and the level stays as it was.
   */
  sample(): Promise<ResourceSample> | ResourceSample;
  /** Releases what the sampler holds; called on stop. */
  close?(): void;
}

/**
 * Memory and CPU pressure. The level is the higher of `rss / memoryLimitBytes` and `cpu / cpuLimitPercent`:
 * from `elevatedAt` it is elevated (no scale-up; warm spares and idle agents above the minimum are shed), from 1
 * critical (tasks below `priorityFloor` refused as well). It only steps down once the ratio is `hysteresis` below
 * the threshold it crossed, so it does not flap.
 */
export interface PressureOptions {
  /** Resident set size at which pressure is critical, in bytes. @default 2 GiB (2_147_483_648) */
  memoryLimitBytes?: number;
  /** Process CPU, in percent of one core as `top` shows it, at which pressure is critical. @default 80 */
  cpuLimitPercent?: number;
  /** Fraction of a limit from which pressure is elevated. @default 0.85 */
  elevatedAt?: number;
  /** How far below a threshold the ratio must fall before the level steps down. @default 0.05 */
  hysteresis?: number;
  /** How often the process is sampled, in ms. @default 1_000 */
  sampleIntervalMs?: number;
  /**
   * CPU counts only when it stayed high for this many samples in a row (memory counts at once): a busy second is
   * normal, a busy stretch is pressure. @default 3
   */
  cpuSustainedSamples?: number;
  /**
   * Under critical pressure, tasks with a priority below this are refused with ResourcePressureError. The default
   * sheds background work (negative priority) and keeps normal work; raise it to shed more. @default 0
   */
  priorityFloor?: number;
  /** Where the samples come from. @default pidusage for CPU and RSS, process.memoryUsage() for the heap */
  sampler?: ResourceSampler;
}

/** Per-tenant cost budgets over a sliding window, fed by `ctx.reportCost(units)`. */
export interface BudgetOptions {
  /** The sliding window that spend is summed over, in ms. @default 3_600_000 (one hour) */
  windowMs?: number;
  /** Units each tenant may spend per window, by tenant id. @default {} */
  limits?: Readonly<Record<string, number>>;
  /** The limit of a tenant not in `limits`; tasks without a `tenantId` are never budgeted. @default Infinity */
  defaultLimit?: number;
  /** When a tenant goes over, also cancel its waiting tasks (running ones finish). @default false */
  haltOnExceeded?: boolean;
}

/**
 * A rate limit on a capability (every task that requires it) or a named dependency (`resources.breaker(name, …)`).
 * Work over the limit waits for room instead of failing.
 */
export interface RateLimitOptions {
  /** Calls or tasks started per interval. @default unlimited */
  requests?: number;
  /** Units (tokens, say) per interval: tasks report them with `ctx.reportCost`, dependencies with their `units` option. @default unlimited */
  units?: number;
  /** The interval both budgets refill over, continuously, in ms. Required. */
  intervalMs: number;
  /** Times one task or call is put back after a retry-after error before that error is final. @default 10 */
  maxDeferrals?: number;
}

/** {@link RetryOptions} with every default applied: the type of {@link RETRY_DEFAULTS}. */
export interface ResolvedRetryOptions {
  /** Ceiling of the wait after the first failed attempt, in ms; it doubles per attempt. */
  readonly baseDelayMs: number;
  /** The largest ceiling of a wait without a retry-after hint, in ms. */
  readonly maxDelayMs: number;
  /** The longest retry-after hint honoured, in ms; a longer one is cut to this. */
  readonly maxRetryAfterMs: number;
  /** Whether an error is worth another attempt. */
  readonly retryable: (error: unknown) => boolean;
}

/** {@link BreakerOptions} with every default applied: the type of {@link BREAKER_DEFAULTS}. */
export interface ResolvedBreakerOptions {
  /** Failure percentage (0 to 100) in the rolling window above which the breaker opens. */
  readonly errorThresholdPercentage: number;
  /** Calls in the window before the breaker may open at all. */
  readonly volumeThreshold: number;
  /** Length of the rolling window, in ms. */
  readonly windowMs: number;
  /** How long an open breaker waits before it goes half-open, in ms. */
  readonly resetTimeoutMs: number;
}

export interface ResolvedPressureOptions {
  readonly memoryLimitBytes: number;
  readonly cpuLimitPercent: number;
  readonly elevatedAt: number;
  readonly hysteresis: number;
  readonly sampleIntervalMs: number;
  readonly cpuSustainedSamples: number;
  readonly priorityFloor: number;
  readonly sampler: ResourceSampler | undefined;
}

export interface ResolvedBudgetOptions {
  readonly windowMs: number;
  readonly limits: ReadonlyMap<string, number>;
  readonly defaultLimit: number;
  readonly haltOnExceeded: boolean;
}

export interface ResolvedRateLimitOptions {
  readonly requests: number;
  readonly units: number;
  readonly intervalMs: number;
  readonly maxDeferrals: number;
}

/**
 * The default `retryable` predicate: every error is retried except one that says otherwise with an own
 * `retryable: false` property, and the library's own refusals that another attempt cannot fix.
 */
export function defaultRetryable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return true;
  if ((error as { retryable?: unknown }).retryable === false) return false;
  const code = (error as { code?: unknown }).code;
  return code !== 'VALIDATION_ERROR' && code !== 'TASK_CANCELLED' && code !== 'BUDGET_EXCEEDED';
}

/**
 * The defaults of {@link RetryOptions}: a backoff ceiling of 100 ms doubling per attempt up to 10 s (each wait is
 * random below it), retry-after hints honoured up to 5 minutes, and {@link defaultRetryable}. Given a
 * `retry.baseDelayMs` above 10 s, `maxDelayMs` defaults to that instead.
 */
export const RETRY_DEFAULTS: ResolvedRetryOptions = Object.freeze({
  baseDelayMs: 100,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 300_000,
  retryable: defaultRetryable,
});

/** The defaults of {@link BreakerOptions}, for agent breakers and dependency breakers alike. */
export const BREAKER_DEFAULTS: ResolvedBreakerOptions = Object.freeze({
  errorThresholdPercentage: 50,
  volumeThreshold: 5,
  windowMs: 10_000,
  resetTimeoutMs: 10_000,
});

/** The defaults of {@link PressureOptions} (sampling itself is on unless `pressure: false`). */
export const PRESSURE_DEFAULTS = Object.freeze({
  /** Resident set size at which pressure is critical: 2 GiB, in bytes. */
  memoryLimitBytes: 2 * 1024 ** 3,
  /** Process CPU, in percent of one core, at which pressure is critical. */
  cpuLimitPercent: 80,
  /** Fraction (0 to 1) of a limit from which pressure is elevated. */
  elevatedAt: 0.85,
  /** How far (as a fraction) below a threshold the level steps down. */
  hysteresis: 0.05,
  /** Sampling interval, in ms. */
  sampleIntervalMs: 1_000,
  /** Samples in a row that CPU must stay high to count. */
  cpuSustainedSamples: 3,
  /** Under critical pressure, tasks with a priority below this are refused. */
  priorityFloor: 0,
});

/** The defaults of {@link BudgetOptions}: no tenant is limited unless given a limit. */
export const BUDGET_DEFAULTS = Object.freeze({
  /** The sliding window spend is summed over: one hour, in ms. */
  windowMs: 3_600_000,
  /** The limit of a tenant not in `limits`: none. */
  defaultLimit: Infinity,
  /** Whether going over also cancels the tenant's waiting tasks. */
  haltOnExceeded: false,
});

/** The defaults of {@link RateLimitOptions} (`intervalMs` has none: it is required). */
export const RATE_LIMIT_DEFAULTS = Object.freeze({
  /** Calls or tasks per interval: unlimited. */
  requests: Infinity,
  /** Units per interval: unlimited. */
  units: Infinity,
  /** Times one task or call is put back after a retry-after error before that error is final. */
  maxDeferrals: 10,
});

const RETRY_KEYS = keysOf<RetryOptions>({
  baseDelayMs: true,
  maxDelayMs: true,
  maxRetryAfterMs: true,
  retryable: true,
});

export function resolveRetryOptions(input: unknown, field = 'retry'): ResolvedRetryOptions {
  if (input === undefined) return RETRY_DEFAULTS;
  const o = expectObject(input, field);
  rejectUnknownKeys(o, RETRY_KEYS, field);
  const baseDelayMs = optional(own(o, 'baseDelayMs'), RETRY_DEFAULTS.baseDelayMs, (v) =>
    expectDelay(v, `${field}.baseDelayMs`),
  );
  const maxDelayMs = optional(own(o, 'maxDelayMs'), Math.max(RETRY_DEFAULTS.maxDelayMs, baseDelayMs), (v) =>
    expectDelay(v, `${field}.maxDelayMs`),
  );
  if (maxDelayMs < baseDelayMs) {
    throw new ValidationError(
      `${field}.maxDelayMs`,
      `Expected \`${field}.maxDelayMs\` (${maxDelayMs}) to be >= baseDelayMs (${baseDelayMs})`,
    );
  }
  const retryable = optional(own(o, 'retryable'), RETRY_DEFAULTS.retryable, (v) =>
    expectFunction<(e: unknown) => boolean>(v, `${field}.retryable`),
  );
  const maxRetryAfterMs = optional(own(o, 'maxRetryAfterMs'), RETRY_DEFAULTS.maxRetryAfterMs, (v) =>
    expectDelay(v, `${field}.maxRetryAfterMs`),
  );
  return { baseDelayMs, maxDelayMs, maxRetryAfterMs, retryable };
}
const BREAKER_KEYS = keysOf<BreakerOptions>({
  errorThresholdPercentage: true,
  volumeThreshold: true,
  windowMs: true,
  resetTimeoutMs: true,
});

export function resolveBreakerOptions(input: unknown, field: string): ResolvedBreakerOptions {
  if (input === undefined) return BREAKER_DEFAULTS;
  const o = expectObject(input, field);
  rejectUnknownKeys(o, BREAKER_KEYS, field);
  const d = BREAKER_DEFAULTS;
  return {
    errorThresholdPercentage: optional(own(o, 'errorThresholdPercentage'), d.errorThresholdPercentage, (v) =>
      expectPositive(v, `${field}.errorThresholdPercentage`, 100),
    ),
    volumeThreshold: optional(own(o, 'volumeThreshold'), d.volumeThreshold, (v) =>
      expectInteger(v, `${field}.volumeThreshold`, 0, 1_000_000),
    ),
    windowMs: optional(own(o, 'windowMs'), d.windowMs, (v) =>
      expectDuration(v, `${field}.windowMs`, false, MAX_TIMER_MS),
    ),
    resetTimeoutMs: optional(own(o, 'resetTimeoutMs'), d.resetTimeoutMs, (v) =>
      expectDuration(v, `${field}.resetTimeoutMs`, false, MAX_TIMER_MS),
    ),
  };
}

const PRESSURE_KEYS = keysOf<PressureOptions>({
  memoryLimitBytes: true,
  cpuLimitPercent: true,
  elevatedAt: true,
  hysteresis: true,
  sampleIntervalMs: true,
  cpuSustainedSamples: true,
  priorityFloor: true,
  sampler: true,
});

export function resolvePressureOptions(input: unknown): ResolvedPressureOptions | false {
  if (input === false) return false;
  const d = PRESSURE_DEFAULTS;
  const o = input === undefined ? {} : expectObject(input, 'options.pressure');
  rejectUnknownKeys(o, PRESSURE_KEYS, 'options.pressure');
  const elevatedAt = optional(own(o, 'elevatedAt'), d.elevatedAt, (v) =>
    expectPositive(v, 'options.pressure.elevatedAt', 1),
  );
  const hysteresis = optional(own(o, 'hysteresis'), d.hysteresis, (v) => {
    if (v === 0) return 0;
    return expectPositive(v, 'options.pressure.hysteresis', 0.5);
  });
  if (hysteresis >= elevatedAt) {
    // The level could then never step back down to normal.
    throw new ValidationError(
      'options.pressure.hysteresis',
      `Expected \`options.pressure.hysteresis\` (${hysteresis}) to be below \`options.pressure.elevatedAt\` (${elevatedAt})`,
    );
  }
  const sampler = optional<ResourceSampler | undefined>(own(o, 'sampler'), undefined, (v) => {
    expectFunction(expectObject(v, 'options.pressure.sampler')['sample'], 'options.pressure.sampler.sample');
    return v as ResourceSampler;
  });
  return {
    memoryLimitBytes: optional(own(o, 'memoryLimitBytes'), d.memoryLimitBytes, (v) =>
      expectPositive(v, 'options.pressure.memoryLimitBytes', Number.MAX_VALUE, true),
    ),
    cpuLimitPercent: optional(own(o, 'cpuLimitPercent'), d.cpuLimitPercent, (v) =>
      expectPositive(v, 'options.pressure.cpuLimitPercent', Number.MAX_VALUE, true),
    ),
    elevatedAt,
    hysteresis,
    sampleIntervalMs: optional(own(o, 'sampleIntervalMs'), d.sampleIntervalMs, (v) =>
      expectDuration(v, 'options.pressure.sampleIntervalMs', false, MAX_TIMER_MS),
    ),
    cpuSustainedSamples: optional(own(o, 'cpuSustainedSamples'), d.cpuSustainedSamples, (v) =>
      expectInteger(v, 'options.pressure.cpuSustainedSamples', 1, 100),
    ),
    priorityFloor: optional(own(o, 'priorityFloor'), d.priorityFloor, (v) =>
      expectInteger(v, 'options.pressure.priorityFloor', -1_000_000, 1_000_001),
    ),
    sampler,
  };
}

const BUDGET_KEYS = keysOf<BudgetOptions>({ windowMs: true, limits: true, defaultLimit: true, haltOnExceeded: true });

export function resolveBudgetOptions(input: unknown): ResolvedBudgetOptions {
  const d = BUDGET_DEFAULTS;
  const o = input === undefined ? {} : expectObject(input, 'options.budgets');
  rejectUnknownKeys(o, BUDGET_KEYS, 'options.budgets');
  const limits = new Map<string, number>();
  const raw = own(o, 'limits');
  if (raw !== undefined) {
    const l = expectObject(raw, 'options.budgets.limits');
    for (const tenant of Object.keys(l))
      limits.set(tenant, expectAmount(l[tenant], `options.budgets.limits.${tenant}`));
  }
  return {
    windowMs: optional(own(o, 'windowMs'), d.windowMs, (v) => expectDuration(v, 'options.budgets.windowMs')),
    limits,
    defaultLimit: optional(own(o, 'defaultLimit'), d.defaultLimit, (v) =>
      expectAmount(v, 'options.budgets.defaultLimit'),
    ),
    haltOnExceeded: optional(own(o, 'haltOnExceeded'), d.haltOnExceeded, (v) =>
      expectBoolean(v, 'options.budgets.haltOnExceeded'),
    ),
  };
}

const RATE_LIMIT_KEYS = keysOf<RateLimitOptions>({ requests: true, units: true, intervalMs: true, maxDeferrals: true });

/** Validates one rate limit; `field` is where it sits in the caller's options, for messages. */
export function resolveRateLimitOptions(input: unknown, field: string): ResolvedRateLimitOptions {
  const o = expectObject(input, field);
  rejectUnknownKeys(o, RATE_LIMIT_KEYS, field);
  const d = RATE_LIMIT_DEFAULTS;
  const requests = optional(own(o, 'requests'), d.requests, (v) => {
    // A bucket that holds less than one request could never start one.
    if (typeof v === 'number' && v > 0 && v < 1) {
      throw new ValidationError(
        `${field}.requests`,
        `Expected \`${field}.requests\` to be a number >= 1 (or Infinity), got ${v}`,
      );
    }
    return expectPositive(v, `${field}.requests`, Number.MAX_VALUE, true);
  });
  const units = optional(own(o, 'units'), d.units, (v) => expectPositive(v, `${field}.units`, Number.MAX_VALUE, true));
  return {
    requests,
    units,
    intervalMs: expectDuration(own(o, 'intervalMs'), `${field}.intervalMs`, false, MAX_TIMER_MS),
    maxDeferrals: optional(own(o, 'maxDeferrals'), d.maxDeferrals, (v) =>
      expectInteger(v, `${field}.maxDeferrals`, 0, 1_000),
    ),
  };
}

/** Validates the rate limits by capability or dependency name. */
export function resolveRateLimits(input: unknown): ReadonlyMap<string, ResolvedRateLimitOptions> {
  const out = new Map<string, ResolvedRateLimitOptions>();
  if (input === undefined) return out;
  const o = expectObject(input, 'options.rateLimits');
  for (const name of Object.keys(o)) out.set(name, resolveRateLimitOptions(o[name], `options.rateLimits.${name}`));
  return out;
}
