/**
 * The health part's options: health checks, stuck detection, recovery budget and SLA windows; Prometheus metrics;
 * the audit trail. Each group has its documented type, one frozen `*_DEFAULTS` object, a resolved type and a
 * resolver that validates the caller's value and returns a new object.
 */
import type { Registry } from 'prom-client';
import { ValidationError } from '../errors.js';
import { MAX_TIMER_MS } from '../util/timers.js';
import {
  describe,
  expectBoolean,
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
import type { TracerLike, TracingMode } from './tracing.js';

/** Latency and error-rate thresholds of one task type (or the default for all). Each is optional. */
export interface SlaThresholds {
  /** Median latency (acceptance to end) in ms above which the SLA is breached. */
  p50Ms?: number;
  /** 95th-percentile latency (acceptance to end) in ms above which the SLA is breached. */
  p95Ms?: number;
  /** 99th-percentile latency (acceptance to end) in ms above which the SLA is breached. */
  p99Ms?: number;
  /** Share of tasks (0 to 1) ending in anything but success, cancellations left out, above which it is breached. */
  errorRate?: number;
}

/** SLA monitoring per task type. */
export interface SlaOptions {
  /** The rolling window the figures are taken over, in ms. @default 60_000 */
  windowMs?: number;
  /** Tasks of a type in the window before it is judged at all. @default 20 */
  minSamples?: number;
  /** Thresholds for every type. @default none (no type is judged unless it has thresholds) */
  default?: SlaThresholds;
  /** Thresholds per type, over the default's. @default {} */
  types?: Readonly<Record<string, SlaThresholds>>;
  /** Task types tracked at most (memory bound); later types are not tracked. @default 100 */
  maxTypes?: number;
}

/** Health checks, stuck detection, automatic recovery and SLA windows. */
export interface HealthOptions {
  /** How often agents' `healthCheck()` runs (and stuck agents and SLAs are looked at), in ms. @default 10_000 */
  checkIntervalMs?: number;
  /** A `healthCheck()` that has not settled after this many ms failed. @default 5_000 */
  checkTimeoutMs?: number;
  /**
   * An agent whose given-up attempt (timed out or cancelled) has still not returned after this many ms is stuck;
   * `Infinity` to never call an agent stuck. @default 30_000
   */
  stuckAfterMs?: number;
  /**
   * Replacements per pool (failed or stuck agents, failed creations) allowed per window; beyond that the pool stops
   * recovering until the window moves on and is reported unhealthy, instead of crash-looping. @default { maxReplacements: 5, windowMs: 60_000 }
   */
  recovery?: {
    /** Replacements and failed creations a pool may have in one window. @default 5 */
    maxReplacements?: number;
    /** The sliding window they are counted over, in ms. @default 60_000 */
    windowMs?: number;
  };
  /** SLA thresholds per task type and the window they are judged over; no type is judged unless given thresholds. */
  sla?: SlaOptions;
}

/**
 * Prometheus metrics through prom-client. Give your own `registry` to expose them with your other metrics, or read
 * them from `orchestrator.metrics()` / the HTTP handler's `/metrics`.
 */
export interface MetricsOptions {
  /** A prom-client Registry. @default a private registry */
  registry?: Registry;
  /** Prepended to every metric name. @default 'unified_orchestrator_' */
  prefix?: string;
  /** Also collect prom-client's default process metrics into the registry. @default false */
  defaultMetrics?: boolean;
  /** Task types given their own label value; later ones are counted as `other`. @default 100 */
  maxTaskTypes?: number;
}

export interface ResolvedSlaOptions {
  readonly windowMs: number;
  readonly minSamples: number;
  readonly default: SlaThresholds | undefined;
  readonly types: ReadonlyMap<string, SlaThresholds>;
  readonly maxTypes: number;
}

export interface ResolvedHealthOptions {
  readonly checkIntervalMs: number;
  readonly checkTimeoutMs: number;
  readonly stuckAfterMs: number;
  readonly recovery: { readonly maxReplacements: number; readonly windowMs: number };
  readonly sla: ResolvedSlaOptions;
}

export interface ResolvedMetricsOptions {
  readonly registry: Registry | undefined;
  readonly prefix: string;
  readonly defaultMetrics: boolean;
  readonly maxTaskTypes: number;
}

/** The defaults of {@link HealthOptions}. */
export const HEALTH_DEFAULTS = Object.freeze({
  /** Interval of health checks, stuck detection and SLA evaluation, in ms. */
  checkIntervalMs: 10_000,
  /** Time a `healthCheck()` may take, in ms. */
  checkTimeoutMs: 5_000,
  /** Time after which an agent with a given-up attempt that never returned is stuck, in ms. */
  stuckAfterMs: 30_000,
  /** The recovery budget of each pool. */
  recovery: Object.freeze({
    /** Replacements and failed creations per window. */
    maxReplacements: 5,
    /** The window, in ms. */
    windowMs: 60_000,
  }),
  /** SLA windows (no type is judged unless given thresholds). */
  sla: Object.freeze({
    /** The rolling window, in ms. */
    windowMs: 60_000,
    /** Tasks of a type in the window before it is judged. */
    minSamples: 20,
    /** Task types tracked at most. */
    maxTypes: 100,
  }),
});

/** The defaults of {@link MetricsOptions} (metrics are on, on a private registry, unless `metrics: false`). */
export const METRICS_DEFAULTS = Object.freeze({
  /** Prepended to every metric name. */
  prefix: 'unified_orchestrator_',
  /** Whether prom-client's default process metrics are collected too. */
  defaultMetrics: false,
  /** Task types given their own label value; later ones are `other`. */
  maxTaskTypes: 100,
});

const THRESHOLD_KEYS = keysOf<SlaThresholds>({ p50Ms: true, p95Ms: true, p99Ms: true, errorRate: true });

function resolveThresholds(input: unknown, field: string): SlaThresholds {
  const o = expectObject(input, field);
  rejectUnknownKeys(o, THRESHOLD_KEYS, field);
  const out: SlaThresholds = {};
  for (const key of ['p50Ms', 'p95Ms', 'p99Ms'] as const) {
    if (own(o, key) !== undefined) out[key] = expectPositive(own(o, key), `${field}.${key}`);
  }
  if (own(o, 'errorRate') !== undefined) {
    const v = own(o, 'errorRate');
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) {
      throw new ValidationError(
        `${field}.errorRate`,
        `Expected \`${field}.errorRate\` to be a number from 0 to 1, got ${describe(v)}`,
      );
    }
    out.errorRate = v;
  }
  return out;
}

const SLA_KEYS = keysOf<SlaOptions>({ windowMs: true, minSamples: true, default: true, types: true, maxTypes: true });
const HEALTH_KEYS = keysOf<HealthOptions>({
  checkIntervalMs: true,
  checkTimeoutMs: true,
  stuckAfterMs: true,
  recovery: true,
  sla: true,
});
const RECOVERY_KEYS = keysOf<NonNullable<HealthOptions['recovery']>>({ maxReplacements: true, windowMs: true });

export function resolveHealthOptions(input: unknown): ResolvedHealthOptions {
  const d = HEALTH_DEFAULTS;
  const o = input === undefined ? {} : expectObject(input, 'options.health');
  rejectUnknownKeys(o, HEALTH_KEYS, 'options.health');
  const r = own(o, 'recovery') === undefined ? {} : expectObject(own(o, 'recovery'), 'options.health.recovery');
  rejectUnknownKeys(r, RECOVERY_KEYS, 'options.health.recovery');
  const s = own(o, 'sla') === undefined ? {} : expectObject(own(o, 'sla'), 'options.health.sla');
  rejectUnknownKeys(s, SLA_KEYS, 'options.health.sla');
  const types = new Map<string, SlaThresholds>();
  if (own(s, 'types') !== undefined) {
    const t = expectObject(own(s, 'types'), 'options.health.sla.types');
    for (const type of Object.keys(t)) types.set(type, resolveThresholds(t[type], `options.health.sla.types.${type}`));
  }
  return {
    checkIntervalMs: optional(own(o, 'checkIntervalMs'), d.checkIntervalMs, (v) =>
      expectDuration(v, 'options.health.checkIntervalMs', false, MAX_TIMER_MS),
    ),
    checkTimeoutMs: optional(own(o, 'checkTimeoutMs'), d.checkTimeoutMs, (v) =>
      expectDuration(v, 'options.health.checkTimeoutMs', false, MAX_TIMER_MS),
    ),
    stuckAfterMs: optional(own(o, 'stuckAfterMs'), d.stuckAfterMs, (v) =>
      expectDuration(v, 'options.health.stuckAfterMs', true),
    ),
    recovery: {
      maxReplacements: optional(own(r, 'maxReplacements'), d.recovery.maxReplacements, (v) =>
        expectInteger(v, 'options.health.recovery.maxReplacements', 0, 1_000_000),
      ),
      windowMs: optional(own(r, 'windowMs'), d.recovery.windowMs, (v) =>
        expectDuration(v, 'options.health.recovery.windowMs'),
      ),
    },
    sla: {
      windowMs: optional(own(s, 'windowMs'), d.sla.windowMs, (v) => expectDuration(v, 'options.health.sla.windowMs')),
      minSamples: optional(own(s, 'minSamples'), d.sla.minSamples, (v) =>
        expectInteger(v, 'options.health.sla.minSamples', 1),
      ),
      default:
        own(s, 'default') === undefined
          ? undefined
          : resolveThresholds(own(s, 'default'), 'options.health.sla.default'),
      types,
      maxTypes: optional(own(s, 'maxTypes'), d.sla.maxTypes, (v) =>
        expectInteger(v, 'options.health.sla.maxTypes', 1, 100_000),
      ),
    },
  };
}

const METRICS_KEYS = keysOf<MetricsOptions>({ registry: true, prefix: true, defaultMetrics: true, maxTaskTypes: true });

export function resolveMetricsOptions(input: unknown): ResolvedMetricsOptions | false {
  if (input === false) return false;
  const d = METRICS_DEFAULTS;
  const o = input === undefined ? {} : expectObject(input, 'options.metrics');
  rejectUnknownKeys(o, METRICS_KEYS, 'options.metrics');
  const registry = own(o, 'registry');
  if (registry !== undefined) {
    // Duck-typed: the host's prom-client may be another copy than ours, so instanceof would be wrong.
    const r = expectObject(registry, 'options.metrics.registry');
    expectFunction(r['registerMetric'], 'options.metrics.registry.registerMetric');
    expectFunction(r['metrics'], 'options.metrics.registry.metrics');
    expectFunction(r['getSingleMetric'], 'options.metrics.registry.getSingleMetric');
  }
  const prefix = optional(own(o, 'prefix'), d.prefix, (v) => {
    // Colons are for recording rules, not for what a client exposes (promtool rejects them there).
    if (typeof v !== 'string' || !/^[a-zA-Z_][a-zA-Z0-9_]*$|^$/.test(v)) {
      throw new ValidationError(
        'options.metrics.prefix',
        `Expected \`options.metrics.prefix\` to match [a-zA-Z_][a-zA-Z0-9_]* (a Prometheus metric name), got ${describe(v)}`,
      );
    }
    return v;
  });
  return {
    registry: registry as ResolvedMetricsOptions['registry'],
    prefix,
    defaultMetrics: optional(own(o, 'defaultMetrics'), d.defaultMetrics, (v) =>
      expectBoolean(v, 'options.metrics.defaultMetrics'),
    ),
    maxTaskTypes: optional(own(o, 'maxTaskTypes'), d.maxTaskTypes, (v) =>
      expectInteger(v, 'options.metrics.maxTaskTypes', 1, 10_000),
    ),
  };
}

/** Validates the `tracing` option: a boolean, `'auto'`, or an object whose `tracer` has `startSpan`. */
export function resolveTracingMode(input: unknown, fallback: TracingMode): TracingMode {
  return optional<TracingMode>(input, fallback, (v) => {
    if (typeof v === 'boolean' || v === 'auto') return v;
    const t = expectObject(v, 'options.tracing');
    expectFunction(
      expectObject(t['tracer'], 'options.tracing.tracer')['startSpan'],
      'options.tracing.tracer.startSpan',
    );
    return { tracer: t['tracer'] as TracerLike };
  });
}
