/**
 * Prometheus metrics through prom-client, on the registry the host passes (or a private one). Counters and
 * histograms follow the task events; gauges read the orchestrator's state when scraped, so an idle orchestrator
 * costs nothing between scrapes.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ResolvedMetricsOptions } from './options.js';
import { ValidationError } from '../errors.js';
import type { EngineEvents } from '../engine/events.js';
import type { PoolEvents } from '../pool/events.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import type { HealthEvents } from './events.js';

/** The events the health part hears and emits. */
type Events = EngineEvents & PoolEvents & HealthEvents;
import type { TaskObserver } from '../engine/task-execution-engine.js';
import type { Disposables } from '../resources/disposables.js';
import { HotCounter, HotHistogram, type Series } from './hot-metrics.js';
import { METRIC_NAMES, STORE_METRIC_NAMES } from './metric-names.js';

/** What the metrics read at scrape time. */
export interface MetricsSource {
  /** Waiting and running tasks, retries, routing cache counters. */
  counts(): {
    readonly waiting: number;
    readonly running: number;
    readonly retries: number;
    readonly routingCacheHits: number;
    readonly routingCacheMisses: number;
  };
  /** Agents by role label and state. */
  agents(): Iterable<{ readonly role: string; readonly state: string; readonly count: number }>;
  /** Per pool, whether it is healthy. */
  pools(): Iterable<{ readonly role: string; readonly healthy: boolean }>;
  agentBreakers(): Readonly<Record<string, number>>;
  dependencyBreakers(): Readonly<Record<string, 'closed' | 'half-open' | 'open'>>;
  pressure(): 'normal' | 'elevated' | 'critical';
  health(): 'healthy' | 'degraded' | 'unhealthy';
  halted(): boolean;
  /** The durable layer's state, when a `store` is configured; without it no store metric is registered. */
  store?: () => {
    readonly available: boolean;
    readonly buffered: number;
    readonly eventsDropped: number;
    readonly unclaimed: readonly { readonly count: number }[];
  };
}

/**
 * Told by the durable layer of each write statement, failure and take-over (the shape of its `DurableObserver`).
 * Called per statement, not per task: a batch of hundreds of runs is one call.
 */
export interface StoreMetricsObserver {
  writeLatency(kind: 'insert' | 'append', size: number, ms: number): void;
  writeFailed(kind: 'insert' | 'append' | 'heartbeat' | 'claim' | 'prune'): void;
  adopted(count: number, recovered: number): void;
}

/** Refuses a metric name the registry already holds (two orchestrators on one registry need their own prefix). */
export function checkFreeName(registry: Registry, full: string): void {
  if (registry.getSingleMetric(full)) {
    throw new ValidationError(
      'options.metrics.registry',
      `The registry already holds a metric named ${full}; give each orchestrator on one registry its own metrics.prefix`,
    );
  }
}

const LEVELS = { normal: 0, elevated: 1, critical: 2 } as const;
const HEALTH = { healthy: 0, degraded: 1, unhealthy: 2 } as const;
const BREAKER = { closed: 0, 'half-open': 1, open: 2 } as const;

const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const WAIT_BUCKETS = [0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60];
/** Store round trips: a local PGlite write takes under a millisecond, a remote server's a few; alerts look at 250 ms. */
const STORE_WRITE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Runs or events per statement, up to `durability.maxBatch` (10,000 at most) and 2,000 events per append. */
const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000];
const WRITE_KINDS = ['insert', 'append'] as const;
const STORE_OPERATIONS = ['insert', 'append', 'heartbeat', 'claim', 'prune'] as const;

export class OrchestratorMetrics implements TaskObserver {
  readonly registry: Registry;
  readonly #options: ResolvedMetricsOptions;
  readonly #types = new Map<string, string>();
  /** Per type, then outcome, the series of the two per-task metrics: two map reads per task, no string built. */
  readonly #byType = new Map<string, Map<string, { count: Series; duration: Series }>>();
  readonly #waitByType = new Map<string, Series>();
  readonly #tasks: HotCounter;
  readonly #duration: HotHistogram;
  readonly #wait: HotHistogram;
  readonly #recoveries: Counter<'role' | 'reason'>;
  readonly #slaViolations: Counter<'type' | 'metric'>;
  readonly #slaBreached: Gauge<'type' | 'metric'>;
  readonly #names: string[] = [];
  /** What the durable layer reports to (`durable.observe(...)`), when a `store` is configured. */
  readonly store: StoreMetricsObserver | undefined;

  constructor(
    options: ResolvedMetricsOptions,
    source: MetricsSource,
    events: TypedEmitter<Events>,
    disposables: Disposables,
  ) {
    this.#options = options;
    this.registry = options.registry ?? new Registry();
    const registers = [this.registry];
    const store = source.store;
    const name = (key: keyof typeof METRIC_NAMES | `store:${keyof typeof STORE_METRIC_NAMES}`): string => {
      const full =
        options.prefix +
        (key.startsWith('store:')
          ? STORE_METRIC_NAMES[key.slice(6) as keyof typeof STORE_METRIC_NAMES]
          : METRIC_NAMES[key as keyof typeof METRIC_NAMES]);
      checkFreeName(this.registry, full);
      this.#names.push(full);
      return full;
    };
    // Each metric is registered once it is built; the names are checked first, so a clash leaves nothing half-registered.
    for (const key of Object.keys(METRIC_NAMES) as Array<keyof typeof METRIC_NAMES>) name(key);
    if (store)
      for (const key of Object.keys(STORE_METRIC_NAMES) as Array<keyof typeof STORE_METRIC_NAMES>) name(`store:${key}`);
    this.#names.length = 0;

    // The per-task metrics are hot: see hot-metrics.ts for why they are not prom-client's own classes.
    this.#tasks = new HotCounter(name('tasks'), 'Tasks that reached a terminal state, by type and outcome.', [
      'type',
      'outcome',
    ]);
    this.#duration = new HotHistogram(
      name('taskDuration'),
      'Seconds from acceptance to the terminal state, by type and outcome.',
      ['type', 'outcome'],
      DURATION_BUCKETS,
    );
    this.#wait = new HotHistogram(
      name('queueWait'),
      'Seconds a task waited for an agent before an attempt started, by type.',
      ['type'],
      WAIT_BUCKETS,
    );
    for (const m of [this.#tasks, this.#duration, this.#wait]) this.registry.registerMetric(m as never);
    new Gauge({
      name: name('queueDepth'),
      help: 'Tasks waiting for an agent.',
      registers,
      collect() {
        this.set(source.counts().waiting);
      },
    });
    new Gauge({
      name: name('tasksRunning'),
      help: 'Attempts running.',
      registers,
      collect() {
        this.set(source.counts().running);
      },
    });
    const monotonic = (metric: Counter, read: () => number): void => {
      let last = 0;
      // Counters only go up: add what the source counted since the last scrape.
      (metric as unknown as { collect: () => void }).collect = () => {
        const now = read();
        if (now > last) metric.inc(now - last);
        last = now;
      };
    };
    const retries = new Counter({ name: name('retries'), help: 'Attempts after the first.', registers });
    monotonic(retries, () => source.counts().retries);
    new Gauge({
      name: name('agents'),
      help: 'Agents by pool role and lifecycle state.',
      labelNames: ['role', 'state'],
      registers,
      collect() {
        this.reset();
        for (const a of source.agents()) this.set({ role: a.role, state: a.state }, a.count);
      },
    });
    new Gauge({
      name: name('poolHealthy'),
      help: '1 while the pool is healthy; 0 below its minimum or out of recovery budget.',
      labelNames: ['role'],
      registers,
      collect() {
        for (const p of source.pools()) this.set({ role: p.role }, p.healthy ? 1 : 0);
      },
    });
    new Gauge({
      name: name('agentBreakers'),
      help: 'Agent circuit breakers by state.',
      labelNames: ['state'],
      registers,
      collect() {
        for (const [state, n] of Object.entries(source.agentBreakers())) this.set({ state }, n);
      },
    });
    new Gauge({
      name: name('dependencyBreakerState'),
      help: 'A dependency circuit breaker: 0 closed, 1 half-open, 2 open.',
      labelNames: ['breaker'],
      registers,
      collect() {
        for (const [breaker, state] of Object.entries(source.dependencyBreakers()))
          this.set({ breaker }, BREAKER[state]);
      },
    });
    new Gauge({
      name: name('pressure'),
      help: 'Resource pressure: 0 normal, 1 elevated, 2 critical.',
      registers,
      collect() {
        this.set(LEVELS[source.pressure()]);
      },
    });
    this.#recoveries = new Counter({
      name: name('recoveries'),
      help: 'Agents replaced by the health monitor, by pool role and reason.',
      labelNames: ['role', 'reason'],
      registers,
    });
    this.#slaViolations = new Counter({
      name: name('slaViolations'),
      help: 'SLA thresholds crossed, by task type and metric.',
      labelNames: ['type', 'metric'],
      registers,
    });
    this.#slaBreached = new Gauge({
      name: name('slaBreached'),
      help: '1 while an SLA threshold is crossed, by task type and metric.',
      labelNames: ['type', 'metric'],
      registers,
    });
    const hits = new Counter({
      name: name('routingCacheHits'),
      help: 'Routing decisions answered from the routing cache.',
      registers,
    });
    monotonic(hits, () => source.counts().routingCacheHits);
    const misses = new Counter({
      name: name('routingCacheMisses'),
      help: 'Routing decisions that built their candidate set.',
      registers,
    });
    monotonic(misses, () => source.counts().routingCacheMisses);
    new Gauge({
      name: name('health'),
      help: 'Overall health: 0 healthy, 1 degraded, 2 unhealthy.',
      registers,
      collect() {
        this.set(HEALTH[source.health()]);
      },
    });
    new Gauge({
      name: name('halted'),
      help: '1 while the orchestrator is halted (waiting work held).',
      registers,
      collect() {
        this.set(source.halted() ? 1 : 0);
      },
    });
    this.store = store ? storeMetrics(name, registers, store, monotonic) : undefined;
    if (options.defaultMetrics) {
      // Whatever collectDefaultMetrics adds is ours too: it leaves with the orchestrator, and a clash undoes it all.
      const before = new Set(this.registry.getMetricsAsArray().map((m) => m.name));
      const added = (): string[] =>
        this.registry
          .getMetricsAsArray()
          .map((m) => m.name)
          .filter((n) => !before.has(n));
      try {
        collectDefaultMetrics({ register: this.registry, prefix: options.prefix });
      } catch (error) {
        for (const n of [...this.#names, ...added()]) this.registry.removeSingleMetric(n);
        throw new ValidationError(
          'options.metrics.registry',
          `The registry already holds default process metrics with prefix ${JSON.stringify(options.prefix)} ` +
            `(${error instanceof Error ? error.message : String(error)}); give each orchestrator its own metrics.prefix, or collect them once yourself`,
        );
      }
      this.#names.push(...added());
    }

    const listen = <E extends keyof Events>(event: E, fn: (p: Events[E]) => void): void =>
      void disposables.listen(events, event, fn);
    listen('agent:replaced', (e) => this.#recoveries.inc({ role: e.role ?? 'none', reason: e.reason }));
    listen('sla:violation', (e) => {
      const labels = { type: this.#typeLabel(e.type), metric: metricLabel(e.metric) };
      this.#slaViolations.inc(labels);
      this.#slaBreached.set(labels, 1);
    });
    listen('sla:recovered', (e) =>
      this.#slaBreached.set({ type: this.#typeLabel(e.type), metric: metricLabel(e.metric) }, 0),
    );
    // On stop the metrics leave the registry, so that a new orchestrator can register the same names on it.
    disposables.add(() => {
      if (options.registry === undefined) return;
      for (const n of this.#names) this.registry.removeSingleMetric(n);
    });
  }

  /** The exposition in Prometheus text format. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** TaskObserver: called by the engine for every terminal state. */
  taskEnded(type: string, outcome: string, latencyMs: number): void {
    let outcomes = this.#byType.get(type);
    if (!outcomes) {
      outcomes = new Map();
      // Bounded like the label values: past the limit, types share the `other` series without being cached.
      if (this.#byType.size < this.#options.maxTaskTypes * 2) this.#byType.set(type, outcomes);
    }
    let c = outcomes.get(outcome);
    if (!c) {
      const label = this.#typeLabel(type);
      const labels = { type: label, outcome };
      const seriesKey = `${label}\u0000${outcome}`;
      c = { count: this.#tasks.series(seriesKey, labels), duration: this.#duration.series(seriesKey, labels) };
      outcomes.set(outcome, c);
    }
    this.#tasks.inc(c.count);
    this.#duration.observe(c.duration, latencyMs / 1_000);
  }

  /** TaskObserver: called by the engine when an attempt starts. */
  attemptStarted(type: string, waitedMs: number): void {
    this.#wait.observe(this.#waitFor(type), waitedMs / 1_000);
  }

  #waitFor(type: string): Series {
    let s = this.#waitByType.get(type);
    if (!s) {
      const label = this.#typeLabel(type);
      s = this.#wait.series(label, { type: label });
      if (this.#waitByType.size < this.#options.maxTaskTypes) this.#waitByType.set(type, s);
    }
    return s;
  }

  /** The label value of a task type: itself for the first `maxTaskTypes` types, `other` after. */
  #typeLabel(type: string): string {
    let label = this.#types.get(type);
    if (label === undefined) {
      if (this.#types.size >= this.#options.maxTaskTypes) return 'other';
      label = type;
      this.#types.set(type, label);
    }
    return label;
  }
}

/**
 * The durable layer's metrics: histograms and counters fed by its observer (children bound once, so a write costs a
 * few array writes), gauges and the dropped-events counter read at scrape time.
 */
function storeMetrics(
  name: (key: `store:${keyof typeof STORE_METRIC_NAMES}`) => string,
  registers: Registry[],
  read: NonNullable<MetricsSource['store']>,
  monotonic: (metric: Counter, read: () => number) => void,
): StoreMetricsObserver {
  const duration = new Histogram({
    name: name('store:writeDuration'),
    help: 'Seconds a write statement to the store took, by kind (insert of runs, append of events).',
    labelNames: ['kind'],
    buckets: STORE_WRITE_BUCKETS,
    registers,
  });
  const size = new Histogram({
    name: name('store:batchSize'),
    help: 'Runs (insert) or events (append) written in one statement, by kind.',
    labelNames: ['kind'],
    buckets: BATCH_SIZE_BUCKETS,
    registers,
  });
  const failures = new Counter({
    name: name('store:writeFailures'),
    help: 'Store operations that failed, by operation (insert, append, heartbeat, claim, prune).',
    labelNames: ['operation'],
    registers,
  });
  const adopted = new Counter({
    name: name('store:runsAdopted'),
    help: 'Runs taken over from the store; recovered="true" when the node holding them died.',
    labelNames: ['recovered'],
    registers,
  });
  const dropped = new Counter({
    name: name('store:eventsDropped'),
    help: 'Progress events dropped because the store was down longer than durability.maxBufferedEvents holds.',
    registers,
  });
  monotonic(dropped, () => read().eventsDropped);
  new Gauge({
    name: name('store:eventsBuffered'),
    help: 'Events waiting to be written to the store.',
    registers,
    collect() {
      this.set(read().buffered);
    },
  });
  new Gauge({
    name: name('store:unclaimed'),
    help: 'Due runs that no live node took for durability.unclaimedAfterMs: no node that can serve them is up.',
    registers,
    collect() {
      this.set(read().unclaimed.reduce((n, u) => n + u.count, 0));
    },
  });
  new Gauge({
    name: name('store:available'),
    help: '1 while the store answers (the last write or lease renewal worked), 0 while it fails.',
    registers,
    collect() {
      this.set(read().available ? 1 : 0);
    },
  });
  // Every series exists from the start at 0, so that increase() and rate() see the first failure or take-over.
  const durationOf = { insert: duration.labels('insert'), append: duration.labels('append') };
  const sizeOf = { insert: size.labels('insert'), append: size.labels('append') };
  for (const kind of WRITE_KINDS) {
    duration.zero({ kind });
    size.zero({ kind });
  }
  const failuresOf = new Map(STORE_OPERATIONS.map((operation) => [operation as string, failures.labels(operation)]));
  for (const child of failuresOf.values()) child.inc(0);
  const adoptedRecovered = adopted.labels('true');
  const adoptedReleased = adopted.labels('false');
  adoptedRecovered.inc(0);
  adoptedReleased.inc(0);
  return {
    writeLatency(kind, n, ms) {
      durationOf[kind].observe(ms / 1_000);
      sizeOf[kind].observe(n);
    },
    writeFailed(operation) {
      (failuresOf.get(operation) ?? failures.labels(operation)).inc();
    },
    adopted(count, recovered) {
      if (recovered > 0) adoptedRecovered.inc(recovered);
      if (count > recovered) adoptedReleased.inc(count - recovered);
    },
  };
}

function metricLabel(metric: 'p50' | 'p95' | 'p99' | 'errorRate'): string {
  return metric === 'errorRate' ? 'error_rate' : metric;
}
