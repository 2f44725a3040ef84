/**
 * The compat layer's options: for the adapter and for the traffic router, each a documented options type, one frozen
 * `*_DEFAULTS` object, a resolved type and a resolver that validates the caller's value and returns a new object. The
 * orchestrator's own options are in each part's `options.ts`, composed by `src/config.ts`; these stay in compat
 * because nothing below it may know of compat.
 */
import type { UnifiedOrchestrator } from '../orchestrator/orchestrator.js';
import {
  expectDuration,
  expectFunction,
  expectInteger,
  expectObject,
  expectString,
  expectStringArray,
  keysOf,
  optional,
  own,
  rejectUnknownKeys,
} from '../util/validate.js';
import { ValidationError, type OrchestratorErrorCode } from '../errors.js';
import { isPercent } from '../bridge/bridge.js';
import type { Registry } from 'prom-client';
import { SNAKE_CASE, type LegacyImplementation, type LegacyMethod, type LegacyTask } from './legacy.js';

/** Options of {@link OrchestratorsCompatibilityAdapter}. */
export interface CompatibilityAdapterOptions {
  /**
   * Capabilities a legacy `role` stands for; an entry here wins over a pool of the same role. @default each pool's
   * role → that pool's capabilities (a role of yours that is not a pool needs an entry here)
   */
  readonly roles?: Readonly<Record<string, readonly string[]>>;
  /** Legacy codes that differ from {@link LEGACY_ERROR_CODES}, per unified code. */
  readonly errorCodes?: Readonly<Partial<Record<OrchestratorErrorCode, string>>>;
  /** Finished tasks whose status stays readable: at most this many (oldest forgotten first)... @default 10_000 */
  readonly maxFinishedTasks?: number;
  /** ...for at most this many ms after they finished (`Infinity` for no limit). @default 3_600_000 (an hour) */
  readonly finishedTaskTtlMs?: number;
  /** The unified task `type` of a legacy task without one. @default 'legacy' */
  readonly defaultType?: string;
}

/** {@link CompatibilityAdapterOptions} checked, with the defaults filled in. */
export interface ResolvedAdapterOptions {
  readonly roles: ReadonlyMap<string, readonly string[]> | undefined;
  readonly errorCodes: Readonly<Partial<Record<string, string>>>;
  readonly maxFinishedTasks: number;
  readonly finishedTaskTtlMs: number;
  readonly defaultType: string;
}

/**
 * The defaults of {@link CompatibilityAdapterOptions}. `roles` (each pool's role → its capabilities) and `errorCodes`
 * (none: {@link LEGACY_ERROR_CODES} as they are) have no value here.
 */
export const ADAPTER_DEFAULTS = Object.freeze({
  /** Finished tasks whose status stays readable, at most. */
  maxFinishedTasks: 10_000,
  /** How long (ms) a finished task's status stays readable: an hour. */
  finishedTaskTtlMs: 3_600_000,
  /** The unified task `type` of a legacy task without one. */
  defaultType: 'legacy',
}) satisfies Partial<CompatibilityAdapterOptions>;

const ADAPTER_KEYS = keysOf<CompatibilityAdapterOptions>({
  roles: true,
  errorCodes: true,
  maxFinishedTasks: true,
  finishedTaskTtlMs: true,
  defaultType: true,
});

/** Checks an adapter's options and fills in the defaults; throws ValidationError naming the first bad field. */
export function resolveAdapterOptions(input: unknown): ResolvedAdapterOptions {
  const o = expectObject(input ?? {}, 'options');
  rejectUnknownKeys(o, ADAPTER_KEYS, 'options');
  let roles: Map<string, readonly string[]> | undefined;
  const r = own(o, 'roles');
  if (r !== undefined) {
    roles = new Map();
    for (const [role, caps] of Object.entries(expectObject(r, 'options.roles')))
      roles.set(role, expectStringArray(caps, `options.roles.${role}`));
  }
  const errorCodes: Record<string, string> = {};
  const e = own(o, 'errorCodes');
  if (e !== undefined) {
    for (const [code, legacy] of Object.entries(expectObject(e, 'options.errorCodes')))
      errorCodes[code] = expectString(legacy, `options.errorCodes.${code}`);
  }
  const d = ADAPTER_DEFAULTS;
  return {
    roles,
    errorCodes,
    maxFinishedTasks: optional(own(o, 'maxFinishedTasks'), d.maxFinishedTasks, (v) =>
      expectInteger(v, 'options.maxFinishedTasks', 0),
    ),
    finishedTaskTtlMs: optional(own(o, 'finishedTaskTtlMs'), d.finishedTaskTtlMs, (v) =>
      expectDuration(v, 'options.finishedTaskTtlMs', true),
    ),
    defaultType: optional(own(o, 'defaultType'), d.defaultType, (v) => expectString(v, 'options.defaultType')),
  };
}

/** A legacy call as a TrafficRouter's `key` function sees it: the calls that make something new are split. */
export type RoutedCall =
  | {
      /** A `spawnAgent` call. */
      readonly method: 'spawnAgent';
      /** The role asked for. */
      readonly role: string;
    }
  | {
      /** A `delegateTaskToAgent` call. */
      readonly method: 'delegateTaskToAgent';
      /** The caller's task, as given (not validated yet). */
      readonly task: LegacyTask;
    };

/** Options of {@link TrafficRouter}. */
export interface TrafficRouterOptions {
  /** The legacy implementation: any object with the legacy calls (camelCase or snake_case). */
  readonly legacy: LegacyImplementation;
  /** The unified side: usually an {@link OrchestratorsCompatibilityAdapter}. */
  readonly unified: LegacyImplementation;
  /**
   * The orchestrator whose bridge carries traffic changes to every node (`setPercent`, `setShadow` and `rollback`
   * are broadcast, and changes from other nodes or the CLI apply here), and whose metrics registry gets the router's
   * metrics. The cluster's standing traffic setting, when there is one, wins over `percent` and `shadow` below.
   */
  readonly orchestrator?: UnifiedOrchestrator;
  /**
   * Percent of calls for the unified side, 0 to 100 (fractions allowed, honoured to 0.01). @default 0 (every call to
   * legacy)
   */
  readonly percent?: number;
  /** Shadow mode: calls answered by legacy also run on the unified side, and the two are compared. @default false */
  readonly shadow?: boolean;
  /**
   * The key a call is split by: the same key always goes to the same side (for a given percentage), and raising the
   * percentage only moves keys from legacy to unified. `undefined` draws the side at random.
   * @default the task's `tenant_id` (or `tenantId`), else the caller's `task_id` (or `taskId`); `undefined` for
   * spawnAgent
   */
  readonly key?: (call: RoutedCall) => string | undefined;
  /** Whether two completed results are equal. @default deep strict equality (`util.isDeepStrictEqual`) */
  readonly compare?: (legacy: unknown, unified: unknown) => boolean;
  /**
   * A shadow run slower than legacy by more than `ratio` times and by more than `minMs` is recorded as a latency
   * difference. @default { ratio: 2, minMs: 100 }
   */
  readonly latencyTolerance?: {
    /** How many times slower than legacy the unified side may be; a finite number >= 1. @default 2 */
    readonly ratio?: number;
    /** Ms slower than legacy the unified side may always be, whatever the ratio; >= 0. @default 100 */
    readonly minMs?: number;
  };
  /** Ms a shadow comparison waits for both tasks to finish before it is recorded as incomplete. @default 60_000 */
  readonly shadowTimeoutMs?: number;
  /** Shadow comparisons running at once; calls beyond it are not shadowed (counted as `skipped`). @default 1_000 */
  readonly maxShadowInFlight?: number;
  /** Ms between polls with `getTaskStatus` when waiting on a side that has no `waitForTask`. @default 200 */
  readonly pollIntervalMs?: number;
  /** Legacy error codes that mean "no such agent or task", for ids this router did not hand out. @default ['AGENT_NOT_FOUND', 'TASK_NOT_FOUND'] */
  readonly notFoundCodes?: readonly string[];
  /** Ids remembered with the side that handed them out (oldest forgotten first). @default 100_000 */
  readonly maxOwnedIds?: number;
  /**
   * Where the metrics go (names in `COMPAT_METRIC_NAMES`); `false` for none. Without a registry, given here or the
   * orchestrator's, there are none either. @default the orchestrator's registry and the default prefix
   */
  readonly metrics?:
    | false
    | {
        /** The prom-client registry to register on. @default the orchestrator's `metricsRegistry` */
        readonly registry?: Registry;
        /** Prefix of every metric name. @default `DEFAULT_METRIC_PREFIX` (`unified_orchestrator_`) */
        readonly prefix?: string;
      };
}

/** {@link TrafficRouterOptions} checked, with the defaults filled in. */
export interface ResolvedRouterOptions {
  readonly legacy: LegacyImplementation;
  readonly unified: LegacyImplementation;
  readonly orchestrator: UnifiedOrchestrator | undefined;
  readonly percent: number;
  readonly shadow: boolean;
  readonly key: (call: RoutedCall) => string | undefined;
  readonly compare: (legacy: unknown, unified: unknown) => boolean;
  readonly latencyRatio: number;
  readonly latencyMinMs: number;
  readonly shadowTimeoutMs: number;
  readonly maxShadowInFlight: number;
  readonly pollIntervalMs: number;
  readonly notFoundCodes: ReadonlySet<string>;
  readonly maxOwnedIds: number;
  readonly metrics: false | { readonly registry: Registry | undefined; readonly prefix: string | undefined };
}

const ROUTER_KEYS = keysOf<TrafficRouterOptions>({
  legacy: true,
  unified: true,
  orchestrator: true,
  percent: true,
  shadow: true,
  key: true,
  compare: true,
  latencyTolerance: true,
  shadowTimeoutMs: true,
  maxShadowInFlight: true,
  pollIntervalMs: true,
  notFoundCodes: true,
  maxOwnedIds: true,
  metrics: true,
});
const LATENCY_TOLERANCE_KEYS = keysOf<NonNullable<TrafficRouterOptions['latencyTolerance']>>({
  ratio: true,
  minMs: true,
});
const METRICS_KEYS = keysOf<Exclude<NonNullable<TrafficRouterOptions['metrics']>, false>>({
  registry: true,
  prefix: true,
});
const REQUIRED_METHODS: readonly LegacyMethod[] = [
  'spawnAgent',
  'delegateTaskToAgent',
  'getAgentStatus',
  'getTaskStatus',
  'shutdownAgent',
];

/** The default split key: the tenant, else the caller's task id. */
export function defaultKey(call: RoutedCall): string | undefined {
  if (call.method !== 'delegateTaskToAgent') return undefined;
  const t = call.task as unknown;
  if (typeof t !== 'object' || t === null) return undefined;
  try {
    for (const k of ['tenant_id', 'tenantId', 'task_id', 'taskId']) {
      const v = Object.hasOwn(t, k) ? (t as Record<string, unknown>)[k] : undefined;
      if (typeof v === 'string' && v !== '') return v;
    }
  } catch {
    // A task that cannot be read has no key (the side that gets it answers INVALID_REQUEST).
  }
  return undefined;
}

/**
 * The defaults of {@link TrafficRouterOptions}. `compare` (deep strict equality) and `metrics` (the orchestrator's
 * registry and the default prefix) have no value here.
 */
export const TRAFFIC_ROUTER_DEFAULTS = Object.freeze({
  /** Percent of calls for the unified side: none, every call goes to legacy. */
  percent: 0,
  /** Shadow mode: off. */
  shadow: false,
  /** The split key: the task's tenant, else the caller's task id; `undefined` for spawnAgent. */
  key: defaultKey,
  /** How much slower than legacy a shadow run may be before it is recorded as a latency difference. */
  latencyTolerance: Object.freeze({
    /** Times slower than legacy. */
    ratio: 2,
    /** Ms slower than legacy, whatever the ratio. */
    minMs: 100,
  }),
  /** Ms a shadow comparison waits for both tasks to finish. */
  shadowTimeoutMs: 60_000,
  /** Shadow comparisons running at once. */
  maxShadowInFlight: 1_000,
  /** Ms between polls of a side that has no `waitForTask`. */
  pollIntervalMs: 200,
  /** Legacy error codes that mean "no such agent or task". */
  notFoundCodes: Object.freeze<string[]>(['AGENT_NOT_FOUND', 'TASK_NOT_FOUND']),
  /** Ids remembered with the side that handed them out, at most. */
  maxOwnedIds: 100_000,
}) satisfies Partial<TrafficRouterOptions>;

/** Checks a router's options and fills in the defaults; throws ValidationError naming the first bad field. */
export function resolveRouterOptions(
  input: unknown,
  deepEqual: (a: unknown, b: unknown) => boolean,
): ResolvedRouterOptions {
  const o = expectObject(input, 'options');
  rejectUnknownKeys(o, ROUTER_KEYS, 'options');
  const side = (name: 'legacy' | 'unified'): LegacyImplementation => {
    const impl = expectObject(own(o, name), `options.${name}`);
    for (const m of REQUIRED_METHODS) {
      if (typeof impl[m] !== 'function' && typeof impl[SNAKE_CASE[m]] !== 'function') {
        throw new ValidationError(
          `options.${name}.${m}`,
          `Expected \`options.${name}\` to have a \`${m}\` (or \`${SNAKE_CASE[m]}\`) method: it must implement every legacy call`,
        );
      }
    }
    return impl as unknown as LegacyImplementation;
  };
  const percent = own(o, 'percent');
  if (percent !== undefined && !isPercent(percent))
    throw new ValidationError(
      'options.percent',
      `Expected \`options.percent\` to be a number from 0 to 100, got ${typeof percent === 'number' ? percent : typeof percent}`,
    );
  const shadow = own(o, 'shadow');
  if (shadow !== undefined && typeof shadow !== 'boolean')
    throw new ValidationError('options.shadow', 'Expected `options.shadow` to be a boolean');
  const orchestrator = own(o, 'orchestrator');
  if (
    orchestrator !== undefined &&
    (typeof orchestrator !== 'object' ||
      orchestrator === null ||
      typeof (orchestrator as { broadcast?: unknown }).broadcast !== 'function')
  ) {
    throw new ValidationError('options.orchestrator', 'Expected `options.orchestrator` to be a UnifiedOrchestrator');
  }
  const tolerance =
    own(o, 'latencyTolerance') === undefined
      ? {}
      : expectObject(own(o, 'latencyTolerance'), 'options.latencyTolerance');
  rejectUnknownKeys(tolerance, LATENCY_TOLERANCE_KEYS, 'options.latencyTolerance');
  const ratio = own(tolerance, 'ratio');
  if (ratio !== undefined && (typeof ratio !== 'number' || !(ratio >= 1) || !Number.isFinite(ratio))) {
    throw new ValidationError(
      'options.latencyTolerance.ratio',
      'Expected `options.latencyTolerance.ratio` to be a finite number >= 1',
    );
  }
  const minMs = own(tolerance, 'minMs');
  if (minMs !== undefined && (typeof minMs !== 'number' || !(minMs >= 0) || !Number.isFinite(minMs))) {
    throw new ValidationError(
      'options.latencyTolerance.minMs',
      'Expected `options.latencyTolerance.minMs` to be a finite number of milliseconds >= 0',
    );
  }
  const metrics = own(o, 'metrics');
  let resolvedMetrics: ResolvedRouterOptions['metrics'];
  if (metrics === false) resolvedMetrics = false;
  else {
    const m = metrics === undefined ? {} : expectObject(metrics, 'options.metrics');
    rejectUnknownKeys(m, METRICS_KEYS, 'options.metrics');
    const registry = own(m, 'registry');
    if (
      registry !== undefined &&
      (typeof registry !== 'object' ||
        registry === null ||
        typeof (registry as { registerMetric?: unknown }).registerMetric !== 'function')
    ) {
      throw new ValidationError(
        'options.metrics.registry',
        'Expected `options.metrics.registry` to be a prom-client Registry',
      );
    }
    const prefix = own(m, 'prefix');
    // As for the orchestrator's: colons are for recording rules, not for what a client exposes (promtool rejects them).
    if (prefix !== undefined && (typeof prefix !== 'string' || !/^[a-zA-Z_][a-zA-Z0-9_]*$|^$/.test(prefix))) {
      throw new ValidationError(
        'options.metrics.prefix',
        'Expected `options.metrics.prefix` to match [a-zA-Z_][a-zA-Z0-9_]* (a Prometheus metric name prefix)',
      );
    }
    resolvedMetrics = { registry: registry as Registry | undefined, prefix: prefix };
  }
  const d = TRAFFIC_ROUTER_DEFAULTS;
  return {
    legacy: side('legacy'),
    unified: side('unified'),
    orchestrator: orchestrator as ResolvedRouterOptions['orchestrator'],
    percent: percent ?? d.percent,
    shadow: shadow ?? d.shadow,
    key: optional(own(o, 'key'), d.key, (v) => expectFunction(v, 'options.key')),
    compare: optional(own(o, 'compare'), deepEqual, (v) => expectFunction(v, 'options.compare')),
    latencyRatio: ratio ?? d.latencyTolerance.ratio,
    latencyMinMs: minMs ?? d.latencyTolerance.minMs,
    shadowTimeoutMs: optional(own(o, 'shadowTimeoutMs'), d.shadowTimeoutMs, (v) =>
      expectDuration(v, 'options.shadowTimeoutMs', false, 2_147_483_647),
    ),
    maxShadowInFlight: optional(own(o, 'maxShadowInFlight'), d.maxShadowInFlight, (v) =>
      expectInteger(v, 'options.maxShadowInFlight', 0),
    ),
    pollIntervalMs: optional(own(o, 'pollIntervalMs'), d.pollIntervalMs, (v) =>
      expectDuration(v, 'options.pollIntervalMs', false, 2_147_483_647),
    ),
    notFoundCodes: new Set(
      optional(own(o, 'notFoundCodes'), d.notFoundCodes, (v) => expectStringArray(v, 'options.notFoundCodes')),
    ),
    maxOwnedIds: optional(own(o, 'maxOwnedIds'), d.maxOwnedIds, (v) => expectInteger(v, 'options.maxOwnedIds', 1)),
    metrics: resolvedMetrics,
  };
}
