/**
 * Prometheus metrics: every name of METRIC_NAMES is exposed with its type and label set, counters follow the task
 * events, gauges read the orchestrator at scrape time, label values stay bounded and never carry an id, and the
 * metrics live on (and leave) a host's registry cleanly.
 *
 * The exposition is read with a small strict parser of the Prometheus text format (below), so names, types and
 * label sets are checked as a scraper would see them, not through prom-client's own objects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import {
  DEFAULT_METRIC_PREFIX,
  METRIC_NAMES,
  TaskCancelledError,
  UnifiedOrchestrator,
  ValidationError,
  type Agent,
  type GuardedFunction,
  type HealthStatus,
  type OrchestratorOptions,
  type TaskContext,
} from 'unified-orchestrator';
import { until, wait } from '../support/agents.js';

// --- A strict parser of the Prometheus text exposition format (0.0.4) ----------------------------------------------

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Family {
  readonly name: string;
  readonly type: string;
  readonly help: string;
  readonly samples: Sample[];
}

type Exposition = ReadonlyMap<string, Family>;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|\})/;

function unescapeLabel(v: string): string {
  return v.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

/** Sample values as Prometheus reads them (Go's ParseFloat: Inf and NaN in any case; prom-client writes `Nan`). */
function parseValue(raw: string, line: string): number {
  if (/^\+?inf$/i.test(raw)) return Infinity;
  if (/^-inf$/i.test(raw)) return -Infinity;
  if (/^nan$/i.test(raw)) return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) throw new Error(`bad sample value in: ${line}`);
  return Number(raw);
}

/** Which sample names a family of `type` may carry. */
function sampleNamesOf(family: string, type: string): string[] {
  if (type === 'histogram') return [`${family}_bucket`, `${family}_sum`, `${family}_count`];
  if (type === 'summary') return [family, `${family}_sum`, `${family}_count`];
  return [family];
}

/** Parses the text format strictly: every sample must follow the HELP/TYPE of its family; no duplicate series. */
function parseExposition(text: string): Exposition {
  const families = new Map<string, Family>();
  const help = new Map<string, string>();
  const seen = new Set<string>();
  let current: Family | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('# HELP ')) {
      const m = /^# HELP (\S+) ?(.*)$/.exec(line);
      if (!m || !NAME.test(m[1]!)) throw new Error(`bad HELP line: ${line}`);
      help.set(m[1]!, m[2]!);
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (!m || !NAME.test(m[1]!)) throw new Error(`bad TYPE line: ${line}`);
      if (families.has(m[1]!)) throw new Error(`family ${m[1]} declared twice`);
      current = { name: m[1]!, type: m[2]!, help: help.get(m[1]!) ?? '', samples: [] };
      families.set(current.name, current);
      continue;
    }
    if (line.startsWith('#')) continue;
    const nameMatch = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    if (!nameMatch) throw new Error(`bad sample line: ${line}`);
    const name = nameMatch[1]!;
    let rest = line.slice(name.length);
    const labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      rest = rest.slice(1);
      if (rest.startsWith('}')) rest = rest.slice(1);
      else {
        for (;;) {
          const m = LABEL.exec(rest);
          if (!m) throw new Error(`bad labels in: ${line}`);
          if (m[1]! in labels) throw new Error(`label ${m[1]} repeated in: ${line}`);
          labels[m[1]!] = unescapeLabel(m[2]!);
          rest = rest.slice(m[0].length);
          if (m[3] === '}') break;
        }
      }
    }
    const parts = rest.trim().split(/\s+/);
    if (!rest.startsWith(' ') || parts.length < 1 || parts.length > 2) throw new Error(`bad sample line: ${line}`);
    const value = parseValue(parts[0]!, line);
    if (!current || !sampleNamesOf(current.name, current.type).includes(name)) {
      throw new Error(`sample ${name} does not belong to the family declared before it (${current?.name ?? 'none'})`);
    }
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`duplicate series: ${line}`);
    seen.add(key);
    current.samples.push({ name, labels, value });
  }
  return families;
}

// --- Helpers --------------------------------------------------------------------------------------------------------

type MetricKey = keyof typeof METRIC_NAMES;
const P = DEFAULT_METRIC_PREFIX;
const full = (key: MetricKey, prefix = P): string => prefix + METRIC_NAMES[key];

/**
 * The type and label names of every metric. Typed over every key of METRIC_NAMES, so a metric added there without
 * being described here fails the typecheck.
 */
const SPEC: Readonly<
  Record<MetricKey, { readonly type: 'counter' | 'gauge' | 'histogram'; readonly labels: readonly string[] }>
> = {
  tasks: { type: 'counter', labels: ['type', 'outcome'] },
  taskDuration: { type: 'histogram', labels: ['type', 'outcome'] },
  queueWait: { type: 'histogram', labels: ['type'] },
  queueDepth: { type: 'gauge', labels: [] },
  tasksRunning: { type: 'gauge', labels: [] },
  retries: { type: 'counter', labels: [] },
  agents: { type: 'gauge', labels: ['role', 'state'] },
  poolHealthy: { type: 'gauge', labels: ['role'] },
  agentBreakers: { type: 'gauge', labels: ['state'] },
  dependencyBreakerState: { type: 'gauge', labels: ['breaker'] },
  pressure: { type: 'gauge', labels: [] },
  recoveries: { type: 'counter', labels: ['role', 'reason'] },
  slaViolations: { type: 'counter', labels: ['type', 'metric'] },
  slaBreached: { type: 'gauge', labels: ['type', 'metric'] },
  routingCacheHits: { type: 'counter', labels: [] },
  routingCacheMisses: { type: 'counter', labels: [] },
  health: { type: 'gauge', labels: [] },
  halted: { type: 'gauge', labels: [] },
};

const HEALTH_VALUE: Record<HealthStatus, number> = { healthy: 0, degraded: 1, unhealthy: 2 };

async function scrape(o: UnifiedOrchestrator): Promise<Exposition> {
  const m = o.metrics();
  if (!m) throw new Error('metrics are off');
  const { contentType, body } = await m;
  expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(body);
}

function family(x: Exposition, name: string): Family {
  const f = x.get(name);
  if (!f) throw new Error(`no metric family ${name} in the exposition (have: ${[...x.keys()].join(', ')})`);
  return f;
}

/** Samples named `sampleName` (the family name by default) whose labels include `match`. */
function samples(
  x: Exposition,
  familyName: string,
  match: Record<string, string> = {},
  sampleName = familyName,
): Sample[] {
  return family(x, familyName).samples.filter(
    (s) => s.name === sampleName && Object.entries(match).every(([k, v]) => s.labels[k] === v),
  );
}

/** The value of the one series with exactly these labels (besides none), or undefined. */
function valueOf(
  x: Exposition,
  familyName: string,
  labels: Record<string, string> = {},
  sampleName = familyName,
): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  const s = family(x, familyName).samples.find(
    (s) => s.name === sampleName && JSON.stringify(Object.entries(s.labels).sort()) === want,
  );
  return s?.value;
}

/** `{ labelValue: value }` of a counter or gauge by one label. */
function byLabel(
  x: Exposition,
  familyName: string,
  label: string,
  match: Record<string, string> = {},
  sampleName = familyName,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples(x, familyName, match, sampleName))
    out[s.labels[label]!] = (out[s.labels[label]!] ?? 0) + s.value;
  return out;
}

/** `{ "type/outcome": value }` */
function byTypeOutcome(x: Exposition, familyName: string, sampleName = familyName): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples(x, familyName, {}, sampleName)) out[`${s.labels['type']}/${s.labels['outcome']}`] = s.value;
  return out;
}

function labelValues(x: Exposition, familyName: string, label: string): string[] {
  return [
    ...new Set(
      family(x, familyName)
        .samples.map((s) => s.labels[label])
        .filter((v): v is string => v !== undefined),
    ),
  ].sort();
}

// --- The parser itself ----------------------------------------------------------------------------------------------

describe('the test parser of the text format', () => {
  it('reads families, escaped label values and special values, and refuses malformed input', () => {
    const x = parseExposition(
      [
        '# HELP a_total A.',
        '# TYPE a_total counter',
        'a_total{k="x\\"y\\\\z\\n",j="2"} 3',
        '# TYPE h histogram',
        'h_bucket{le="+Inf"} 1',
        'h_sum 0.5',
        'h_count 1',
        '# TYPE g gauge',
        'g NaN',
      ].join('\n'),
    );
    expect(valueOf(x, 'a_total', { k: 'x"y\\z\n', j: '2' })).toBe(3);
    expect(family(x, 'a_total').help).toBe('A.');
    expect(valueOf(x, 'h', {}, 'h_count')).toBe(1);
    expect(valueOf(x, 'g')).toBeNaN();
    expect(valueOf(parseExposition('# TYPE g gauge\ng Nan'), 'g')).toBeNaN();
    expect(() => parseExposition('# TYPE a gauge\nb 1')).toThrow(/does not belong/);
    expect(() => parseExposition('# TYPE a gauge\na{x="1} 1')).toThrow(/bad labels/);
    expect(() => parseExposition('# TYPE a gauge\na 1\na 2')).toThrow(/duplicate/);
    expect(() => parseExposition('# TYPE a gauge\na one')).toThrow(/bad sample value/);
  });
});

// --- One fleet, every outcome ---------------------------------------------------------------------------------------

describe('metrics after a workload with every outcome', () => {
  let o: UnifiedOrchestrator;
  let x: Exposition;
  const sick = new Set<string>();
  const startedByType: Record<string, number> = {};
  const taskIds = new Set<string>();
  let llm: GuardedFunction<[], never>;
  let search: GuardedFunction<[], never>;

  /** What each task type does on a pool agent. */
  function worker(agentId: string): Agent {
    return {
      async execute(ctx: TaskContext) {
        switch (ctx.type) {
          case 'fail':
          case 'doomed':
            throw new Error(`${ctx.type} fails`);
          case 'flaky':
            if (ctx.attempt === 1) throw new Error('first attempt fails');
            return 'ok';
          case 'hang':
          case 'cancel':
            await wait(60_000, ctx.signal);
            return 'never';
          case 'slow':
            await wait(15);
            return 'ok';
          default:
            return 'ok';
        }
      },
      healthCheck: () => !sick.has(agentId),
    };
  }

  beforeAll(async () => {
    o = new UnifiedOrchestrator({
      pressure: false,
      // Breakers that never open on this handful of failures, so routing stays simple.
      agentBreaker: { volumeThreshold: 1_000 },
      retry: { baseDelayMs: 1, maxDelayMs: 1 },
      health: {
        checkIntervalMs: 60_000,
        sla: { minSamples: 1, types: { slow: { p95Ms: 5 }, fail: { errorRate: 0.5 } } },
      },
      pools: [
        { role: 'worker', capabilities: ['work'], minAgents: 2, warmSpares: 0, create: (ctx) => worker(ctx.agentId) },
      ],
    });
    o.registerAgent({ execute: () => 'outside' }, { capabilities: ['outside'] });
    o.registerAgent({ execute: () => 'scouted' }, { capabilities: ['scout'], role: 'scout' });
    o.on('task:started', (e) => {
      startedByType[e.type] = (startedByType[e.type] ?? 0) + 1;
      taskIds.add(e.taskId);
    });
    o.on('task:failed', (e) => taskIds.add(e.taskId));
    o.on('task:completed', (e) => taskIds.add(e.taskId));
    await o.start();

    const run = (type: string, extra: { maxAttempts?: number; timeoutMs?: number; requires?: string[] } = {}) =>
      o.submit({ type, requires: ['work'], tenantId: 'tenant-a', idempotencyKey: undefined, ...extra });
    await Promise.all([run('ok'), run('ok'), run('ok')]);
    await Promise.allSettled([run('fail'), run('fail')]);
    await expect(run('hang', { timeoutMs: 20 })).rejects.toMatchObject({ code: 'TASK_TIMEOUT' });
    const cancelled = o.delegate({ type: 'cancel', requires: ['work'] });
    await until(() => taskIds.has(cancelled.id));
    cancelled.cancel('not needed');
    await expect(cancelled.result).rejects.toBeInstanceOf(TaskCancelledError);
    await expect(run('flaky', { maxAttempts: 2 })).resolves.toBe('ok');
    await expect(run('doomed', { maxAttempts: 3 })).rejects.toMatchObject({ code: 'TASK_DEAD_LETTERED' });
    await Promise.all([run('slow'), run('slow')]);
    await run('outside', { requires: ['outside'] });
    await run('scout', { requires: ['scout'] });

    // Dependency breakers in each state: db closed, llm open, search half-open.
    const db = o.resources.breaker('db', async () => 'row');
    await db();
    llm = o.resources.breaker(
      'llm',
      async (): Promise<never> => {
        throw new Error('llm down');
      },
      { volumeThreshold: 1, errorThresholdPercentage: 1 },
    );
    await llm().catch(() => {});
    search = o.resources.breaker(
      'search',
      async (): Promise<never> => {
        throw new Error('search down');
      },
      { volumeThreshold: 1, errorThresholdPercentage: 1, resetTimeoutMs: 20 },
    );
    await search().catch(() => {});
    await until(() => search.state === 'half-open');

    // One pool agent fails its health check and is replaced; the same pass judges the SLA windows.
    const victim = o.agents().find((a) => a.role === 'worker');
    sick.add(victim!.id);
    await o.checkHealth();
    await until(() => o.health().components.pools['worker']?.status === 'healthy');
    x = await scrape(o);
  });

  afterAll(async () => {
    await o?.stop();
  });

  it('exposes every metric of METRIC_NAMES, with its TYPE and HELP', () => {
    for (const key of Object.keys(METRIC_NAMES) as MetricKey[]) {
      const f = family(x, full(key));
      expect(f.type, key).toBe(SPEC[key].type);
      expect(f.help.length, key).toBeGreaterThan(0);
    }
    expect(METRIC_NAMES[`tasks`]).toBe('tasks_total');
    // Counters end in _total, as Prometheus expects.
    for (const key of Object.keys(SPEC) as MetricKey[]) {
      if (SPEC[key].type === 'counter') expect(METRIC_NAMES[key]).toMatch(/_total$/);
    }
  });

  it('labels every series with exactly the label names of its metric (histogram buckets add le)', () => {
    for (const key of Object.keys(METRIC_NAMES) as MetricKey[]) {
      const f = family(x, full(key));
      expect(f.samples.length, `${key} has series after the workload`).toBeGreaterThan(0);
      for (const s of f.samples) {
        const want = [...SPEC[key].labels, ...(s.name.endsWith('_bucket') ? ['le'] : [])].sort();
        expect(Object.keys(s.labels).sort(), `${s.name}${JSON.stringify(s.labels)}`).toEqual(want);
      }
    }
  });

  it('tasks_total{type,outcome} counts every terminal task, matching stats()', () => {
    const stats = o.stats();
    expect(byTypeOutcome(x, full('tasks'))).toEqual({
      'ok/completed': 3,
      'fail/failed': 2,
      'hang/timed-out': 1,
      'cancel/cancelled': 1,
      'flaky/completed': 1,
      'doomed/dead-lettered': 1,
      'slow/completed': 2,
      'outside/completed': 1,
      'scout/completed': 1,
    });
    const byOutcome = byLabel(x, full('tasks'), 'outcome');
    expect(byOutcome).toEqual({
      completed: stats.completed,
      failed: stats.failed,
      'timed-out': stats.timedOut,
      cancelled: stats.cancelled,
      'dead-lettered': stats.deadLettered,
    });
    expect(stats).toMatchObject({ completed: 8, failed: 2, timedOut: 1, cancelled: 1, deadLettered: 1 });
  });

  it('task_duration_seconds{type,outcome} has one observation per terminal task, in cumulative buckets', () => {
    const name = full('taskDuration');
    expect(byTypeOutcome(x, name, `${name}_count`)).toEqual(byTypeOutcome(x, full('tasks')));
    for (const count of samples(x, name, {}, `${name}_count`)) {
      const { type, outcome } = count.labels as { type: string; outcome: string };
      const buckets = samples(x, name, { type, outcome }, `${name}_bucket`);
      const les = buckets.map((b) => (b.labels['le'] === '+Inf' ? Infinity : Number(b.labels['le'])));
      expect(les).toEqual([...les].sort((a, b) => a - b));
      expect(les.at(-1)).toBe(Infinity);
      const values = buckets.map((b) => b.value);
      for (let i = 1; i < values.length; i++) expect(values[i]!).toBeGreaterThanOrEqual(values[i - 1]!);
      expect(values.at(-1)).toBe(count.value);
      const sum = valueOf(x, name, { type, outcome }, `${name}_sum`)!;
      expect(sum).toBeGreaterThanOrEqual(0);
    }
    // The slow tasks took at least 15 ms each, in seconds.
    expect(valueOf(x, name, { type: 'slow', outcome: 'completed' }, `${name}_sum`)!).toBeGreaterThanOrEqual(0.028);
  });

  it('queue_wait_seconds{type} observes every attempt that started', () => {
    const name = full('queueWait');
    expect(byLabel(x, name, 'type', {}, `${name}_count`)).toEqual(startedByType);
    expect(startedByType).toMatchObject({ flaky: 2, doomed: 3, ok: 3 });
    for (const s of samples(x, name, {}, `${name}_sum`)) expect(s.value).toBeGreaterThanOrEqual(0);
  });

  it('retries_total equals stats().retries', () => {
    expect(valueOf(x, full('retries'))).toBe(o.stats().retries);
    expect(o.stats().retries).toBe(3);
  });

  it('agents{role,state} counts agents by pool role and state; outside agents without a role are role="none"', () => {
    const name = full('agents');
    expect(labelValues(x, name, 'role')).toEqual(['none', 'scout', 'worker']);
    expect(valueOf(x, name, { role: 'none', state: 'IDLE' })).toBe(1);
    expect(valueOf(x, name, { role: 'scout', state: 'IDLE' })).toBe(1);
    expect(valueOf(x, name, { role: 'worker', state: 'IDLE' })).toBe(2);
    const stats = o.stats();
    const byState = byLabel(x, name, 'state');
    for (const [state, n] of Object.entries(stats.agents)) expect(byState[state] ?? 0, state).toBe(n);
  });

  it('pool_healthy{role} is 1 for a healthy pool', () => {
    expect(byLabel(x, full('poolHealthy'), 'role')).toEqual({ worker: 1 });
  });

  it('agent_breakers{state} counts agent breakers in each state', () => {
    const byState = byLabel(x, full('agentBreakers'), 'state');
    expect(byState).toEqual(o.stats().resources.breakers.agents);
    expect(byState).toEqual({ closed: 4, open: 0, 'half-open': 0 });
  });

  it('dependency_breaker_state{breaker} is 0 closed, 1 half-open, 2 open', () => {
    expect(byLabel(x, full('dependencyBreakerState'), 'breaker')).toEqual({ db: 0, search: 1, llm: 2 });
    expect(llm.state).toBe('open');
  });

  it('resource_pressure is 0 with sampling off', () => {
    expect(valueOf(x, full('pressure'))).toBe(0);
  });

  it('recoveries_total{role,reason} counts the health replacement', () => {
    expect(samples(x, full('recoveries'))).toEqual([
      { name: full('recoveries'), labels: { role: 'worker', reason: 'health-check' }, value: 1 },
    ]);
  });

  it('sla_violations_total and sla_breached {type,metric} name the crossed thresholds as p95 and error_rate', () => {
    const key = (s: Sample) => `${s.labels['type']}/${s.labels['metric']}=${s.value}`;
    expect(samples(x, full('slaViolations')).map(key).sort()).toEqual(['fail/error_rate=1', 'slow/p95=1']);
    expect(samples(x, full('slaBreached')).map(key).sort()).toEqual(['fail/error_rate=1', 'slow/p95=1']);
  });

  it('routing_cache_hits_total and routing_cache_misses_total match stats().routingCache', () => {
    const { hits, misses } = o.stats().routingCache;
    expect(valueOf(x, full('routingCacheHits'))).toBe(hits);
    expect(valueOf(x, full('routingCacheMisses'))).toBe(misses);
    expect(hits + misses).toBeGreaterThan(0);
  });

  it('health_status follows health(): degraded (1) with SLA breaches and an open breaker', () => {
    expect(o.health().status).toBe('degraded');
    expect(valueOf(x, full('health'))).toBe(HEALTH_VALUE[o.health().status]);
  });

  it('carries no task id or agent id in any label value', () => {
    const ids = new Set([...taskIds, ...o.agents().map((a) => a.id), sick.values().next().value as string]);
    expect(taskIds.size).toBeGreaterThan(10);
    for (const f of x.values()) {
      for (const s of f.samples) {
        for (const v of Object.values(s.labels)) expect(ids.has(v), `${s.name}${JSON.stringify(s.labels)}`).toBe(false);
      }
    }
    expect(JSON.stringify([...x.values()])).not.toContain('tenant-a');
  });

  it('a second scrape does not double-count counters fed at scrape time', async () => {
    const again = await scrape(o);
    for (const key of ['retries', 'routingCacheHits', 'routingCacheMisses'] as const) {
      expect(valueOf(again, full(key)), key).toBe(valueOf(x, full(key)));
    }
    expect(valueOf(again, full('tasks'), { type: 'ok', outcome: 'completed' })).toBe(3);
  });
});

// --- Gauges and counters at scrape time -----------------------------------------------------------------------------

/** An agent that holds every attempt until `release()`. */
function gatedAgent(): { agent: Agent; release: () => void; running: () => number } {
  let open!: () => void;
  let gate = new Promise<void>((r) => (open = r));
  let running = 0;
  return {
    agent: {
      async execute() {
        running++;
        try {
          await gate;
        } finally {
          running--;
        }
        return 'done';
      },
    },
    release: () => {
      open();
      gate = new Promise<void>((r) => (open = r));
    },
    running: () => running,
  };
}

describe('gauges and counters read at scrape time', () => {
  it('queue_depth and tasks_running reflect waiting and running tasks when scraped', async () => {
    const g = gatedAgent();
    const o = new UnifiedOrchestrator({ pressure: false });
    o.registerAgent(g.agent, { capabilities: ['x'] });
    await o.start();
    try {
      let x = await scrape(o);
      expect(valueOf(x, full('queueDepth'))).toBe(0);
      expect(valueOf(x, full('tasksRunning'))).toBe(0);
      const results = [1, 2, 3].map(() => o.submit({ type: 't', requires: ['x'] }));
      await until(() => g.running() === 1);
      x = await scrape(o);
      expect(valueOf(x, full('tasksRunning'))).toBe(1);
      expect(valueOf(x, full('queueDepth'))).toBe(2);
      expect(o.stats()).toMatchObject({ running: 1, waiting: 2 });
      g.release();
      await until(() => g.running() === 1 && o.stats().waiting === 1);
      x = await scrape(o);
      expect(valueOf(x, full('queueDepth'))).toBe(1);
      g.release();
      await until(() => g.running() === 1 && o.stats().waiting === 0);
      g.release();
      await Promise.all(results);
      x = await scrape(o);
      expect(valueOf(x, full('queueDepth'))).toBe(0);
      expect(valueOf(x, full('tasksRunning'))).toBe(0);
    } finally {
      g.release();
      await o.stop();
    }
  });

  it('retries_total equals stats().retries at every scrape and never decreases', async () => {
    const o = new UnifiedOrchestrator({
      pressure: false,
      agentBreaker: false,
      retry: { baseDelayMs: 1, maxDelayMs: 1 },
    });
    o.registerAgent(
      { execute: (ctx) => (ctx.attempt < 3 ? Promise.reject(new Error('again')) : 'ok') },
      { capabilities: [] },
    );
    await o.start();
    try {
      const seen: number[] = [];
      for (let i = 0; i < 4; i++) {
        seen.push(valueOf(await scrape(o), full('retries'))!);
        expect(seen.at(-1)).toBe(o.stats().retries);
        await o.submit({ type: 'r', maxAttempts: 3 });
      }
      seen.push(valueOf(await scrape(o), full('retries'))!);
      seen.push(valueOf(await scrape(o), full('retries'))!);
      expect(seen).toEqual([0, 2, 4, 6, 8, 8]);
      expect(o.stats().retries).toBe(8);
    } finally {
      await o.stop();
    }
  });

  it('agent_breakers counts an open agent breaker', async () => {
    const o = new UnifiedOrchestrator({
      pressure: false,
      agentBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1, resetTimeoutMs: 60_000 },
    });
    o.registerAgent({ execute: () => Promise.reject(new Error('broken')) }, { capabilities: ['broken'] });
    o.registerAgent({ execute: () => 'ok' }, { capabilities: ['fine'] });
    await o.start();
    try {
      await o.submit({ type: 'b', requires: ['broken'] }).catch(() => {});
      await until(() => o.stats().resources.breakers.agents.open === 1);
      const x = await scrape(o);
      expect(byLabel(x, full('agentBreakers'), 'state')).toEqual({ closed: 1, open: 1, 'half-open': 0 });
      expect(valueOf(x, full('agents'), { role: 'none', state: 'UNHEALTHY' })).toBe(1);
      expect(valueOf(x, full('health'))).toBe(1);
    } finally {
      await o.stop();
    }
  });

  it.each([
    ['normal', 100, 0],
    ['elevated', 900, 1],
    ['critical', 5_000, 2],
  ] as const)('resource_pressure is %s (%#) under a sampler reading rss %d of 1000', async (level, rssBytes, value) => {
    const o = new UnifiedOrchestrator({
      pressure: {
        memoryLimitBytes: 1_000,
        sampleIntervalMs: 60_000,
        sampler: { sample: () => ({ rssBytes, heapUsedBytes: 1, cpuPercent: 0 }) },
      },
    });
    await o.start();
    try {
      expect(o.resources.pressure).toBe(level);
      const x = await scrape(o);
      expect(valueOf(x, full('pressure'))).toBe(value);
      expect(valueOf(x, full('health'))).toBe(value === 0 ? 0 : 1);
    } finally {
      await o.stop();
    }
  });

  it('pool_healthy is 0 and health_status 2 when a pool is below its minimum with no recovery budget left', async () => {
    let sick = false;
    const o = new UnifiedOrchestrator({
      pressure: false,
      health: { checkIntervalMs: 60_000, recovery: { maxReplacements: 0 } },
      pools: [
        {
          role: 'fragile',
          capabilities: ['f'],
          minAgents: 1,
          warmSpares: 0,
          create: () => ({ execute: () => 'ok', healthCheck: () => !sick }),
        },
      ],
    });
    await o.start();
    try {
      expect(valueOf(await scrape(o), full('poolHealthy'), { role: 'fragile' })).toBe(1);
      sick = true;
      await o.checkHealth();
      expect(o.health().components.pools['fragile']?.status).toBe('unhealthy');
      const x = await scrape(o);
      expect(valueOf(x, full('poolHealthy'), { role: 'fragile' })).toBe(0);
      expect(valueOf(x, full('health'))).toBe(2);
      // No replacement was made: the budget was spent.
      expect(samples(x, full('recoveries'))).toEqual([]);
    } finally {
      await o.stop();
    }
  });

  it('pool_healthy stays 1 while a pool is above its minimum with one agent quarantined (0 is "below its minimum or cannot recover")', async () => {
    const o = new UnifiedOrchestrator({
      pressure: false,
      agentBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1, resetTimeoutMs: 60_000 },
      pools: [
        {
          role: 'w',
          capabilities: ['w'],
          minAgents: 1,
          warmSpares: 0,
          create: () => ({
            execute: (ctx: TaskContext) => (ctx.payload === 'bad' ? Promise.reject(new Error('bad')) : 'ok'),
          }),
        },
      ],
    });
    await o.start();
    try {
      await o.spawnAgent('w');
      expect(o.stats().pools[0]?.members).toBe(2);
      await o.submit({ type: 't', requires: ['w'], payload: 'bad' }).catch(() => {});
      await until(() => o.stats().resources.breakers.agents.open === 1);
      const pool = o.health().components.pools['w']!;
      expect(pool.routable).toBeGreaterThanOrEqual(pool.minAgents);
      expect(pool.quarantined).toBe(1);
      const x = await scrape(o);
      expect(valueOf(x, full('poolHealthy'), { role: 'w' })).toBe(1);
    } finally {
      await o.stop();
    }
  });

  it('health_status is 2 (unhealthy) after stop(), and the exposition still answers', async () => {
    const o = new UnifiedOrchestrator({ pressure: false });
    expect(valueOf(await scrape(o), full('health'))).toBe(1); // created, not started: degraded
    await o.start();
    expect(valueOf(await scrape(o), full('health'))).toBe(0);
    await o.stop();
    expect(valueOf(await scrape(o), full('health'))).toBe(2);
  });
});

// --- SLA gauge going back to 0 --------------------------------------------------------------------------------------

describe('SLA metrics', () => {
  it('sla_breached goes back to 0 once the type recovers; sla_violations_total keeps counting', async () => {
    let offset = 0;
    const o = new UnifiedOrchestrator({
      pressure: false,
      clock: { now: () => performance.now() + offset },
      health: { checkIntervalMs: 60_000, sla: { windowMs: 1_000, minSamples: 1, types: { slow: { p95Ms: 5 } } } },
    });
    o.registerAgent({ execute: () => wait(15).then(() => 'ok') }, { capabilities: [] });
    await o.start();
    try {
      const breached = async () => valueOf(await scrape(o), full('slaBreached'), { type: 'slow', metric: 'p95' });
      const violations = async () => valueOf(await scrape(o), full('slaViolations'), { type: 'slow', metric: 'p95' });
      await o.submit({ type: 'slow' });
      await o.checkHealth();
      expect(await breached()).toBe(1);
      expect(await violations()).toBe(1);
      // The window moves past the slow task: too few samples to judge, so the breach is over.
      offset += 5_000;
      await o.checkHealth();
      expect(await breached()).toBe(0);
      expect(await violations()).toBe(1);
      offset += 5_000;
      await o.submit({ type: 'slow' });
      await o.checkHealth();
      expect(await breached()).toBe(1);
      expect(await violations()).toBe(2);
    } finally {
      await o.stop();
    }
  });
});

// --- Bounded label values -------------------------------------------------------------------------------------------

describe('label values are bounded', () => {
  it('with maxTaskTypes: 2 and 5 task types, the type label is the first two types and "other"', async () => {
    const o = new UnifiedOrchestrator({
      pressure: false,
      metrics: { maxTaskTypes: 2 },
      health: { checkIntervalMs: 60_000, sla: { minSamples: 1, types: { t4: { p95Ms: 1 } } } },
    });
    o.registerAgent(
      { execute: (ctx) => (ctx.type === 't3' ? Promise.reject(new Error('no')) : wait(3).then(() => 'ok')) },
      { capabilities: [] },
    );
    await o.start();
    try {
      for (const type of ['t0', 't1', 't2', 't3', 't4', 't0', 't4']) await o.submit({ type }).catch(() => {});
      await o.checkHealth();
      const x = await scrape(o);
      expect(labelValues(x, full('tasks'), 'type')).toEqual(['other', 't0', 't1']);
      expect(labelValues(x, full('taskDuration'), 'type')).toEqual(['other', 't0', 't1']);
      expect(labelValues(x, full('queueWait'), 'type')).toEqual(['other', 't0', 't1']);
      expect(byTypeOutcome(x, full('tasks'))).toEqual({
        't0/completed': 2,
        't1/completed': 1,
        'other/completed': 3,
        'other/failed': 1,
      });
      const queueWait = full('queueWait');
      expect(byLabel(x, queueWait, 'type', {}, `${queueWait}_count`)).toEqual({ t0: 2, t1: 1, other: 4 });
      expect(samples(x, full('slaViolations')).map((s) => s.labels)).toEqual([{ type: 'other', metric: 'p95' }]);
      expect(samples(x, full('slaBreached')).map((s) => s.labels)).toEqual([{ type: 'other', metric: 'p95' }]);
    } finally {
      await o.stop();
    }
  });

  it('many distinct task types never grow the label set past maxTaskTypes + "other"', async () => {
    const o = new UnifiedOrchestrator({ pressure: false, metrics: { maxTaskTypes: 3 } });
    o.registerAgent({ execute: () => 'ok' }, { capabilities: [] });
    await o.start();
    try {
      for (let i = 0; i < 50; i++) await o.submit({ type: `type-${i}` });
      const x = await scrape(o);
      expect(labelValues(x, full('tasks'), 'type')).toEqual(['other', 'type-0', 'type-1', 'type-2']);
      expect(valueOf(x, full('tasks'), { type: 'other', outcome: 'completed' })).toBe(47);
    } finally {
      await o.stop();
    }
  });
});

// --- Registries, prefixes, on and off -------------------------------------------------------------------------------

describe('registries and options', () => {
  it("registers on a host registry, alongside the host's own metrics", async () => {
    const registry = new Registry();
    const host = new Counter({ name: 'host_requests_total', help: 'Host requests.', registers: [registry] });
    host.inc(7);
    const o = new UnifiedOrchestrator({ pressure: false, metrics: { registry } });
    expect(o.metricsRegistry).toBe(registry);
    o.registerAgent({ execute: () => 'ok' }, { capabilities: [] });
    await o.start();
    try {
      await o.submit({ type: 'a' });
      const x = parseExposition(await registry.metrics());
      expect(valueOf(x, 'host_requests_total')).toBe(7);
      for (const key of Object.keys(METRIC_NAMES) as MetricKey[])
        expect(registry.getSingleMetric(full(key)), key).toBeDefined();
      expect(valueOf(x, full('tasks'), { type: 'a', outcome: 'completed' })).toBe(1);
      // orchestrator.metrics() reads the same registry, host metric included.
      const mine = await scrape(o);
      expect(valueOf(mine, 'host_requests_total')).toBe(7);
      expect(valueOf(mine, full('tasks'), { type: 'a', outcome: 'completed' })).toBe(1);
      expect((await o.metrics())!.contentType).toBe(registry.contentType);
    } finally {
      await o.stop();
    }
  });

  it('uses a custom prefix for every name', async () => {
    const o = new UnifiedOrchestrator({ pressure: false, metrics: { prefix: 'svc_agents_' } });
    try {
      const x = await scrape(o);
      for (const key of Object.keys(METRIC_NAMES) as MetricKey[])
        expect(family(x, full(key, 'svc_agents_')).type).toBe(SPEC[key].type);
      expect([...x.keys()].filter((n) => n.startsWith(P))).toEqual([]);
      expect([...x.keys()].every((n) => n.startsWith('svc_agents_'))).toBe(true);
    } finally {
      await o.stop();
    }
  });

  it('an empty prefix gives the bare names', async () => {
    const o = new UnifiedOrchestrator({ pressure: false, metrics: { prefix: '' } });
    try {
      const x = await scrape(o);
      expect([...x.keys()].sort()).toEqual(Object.values(METRIC_NAMES).sort());
    } finally {
      await o.stop();
    }
  });

  it('a second orchestrator on the same registry and prefix is refused with ValidationError, and registers nothing', async () => {
    const registry = new Registry();
    const first = new UnifiedOrchestrator({ pressure: false, metrics: { registry } });
    const before = (await registry.getMetricsAsJSON()).map((m) => m.name).sort();
    let error: unknown;
    try {
      new UnifiedOrchestrator({ pressure: false, metrics: { registry } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'VALIDATION_ERROR', field: 'options.metrics.registry' });
    expect((error as Error).message).toContain('prefix');
    expect((await registry.getMetricsAsJSON()).map((m) => m.name).sort()).toEqual(before);
    // Another prefix on the same registry is fine.
    const second = new UnifiedOrchestrator({ pressure: false, metrics: { registry, prefix: 'second_' } });
    expect(registry.getSingleMetric(full('tasks', 'second_'))).toBeDefined();
    await second.stop();
    await first.stop();
  });

  it('after stop() its metrics leave the host registry (host metrics stay), so a new orchestrator can register', async () => {
    const registry = new Registry();
    new Counter({ name: 'host_requests_total', help: 'Host requests.', registers: [registry] });
    const first = new UnifiedOrchestrator({ pressure: false, metrics: { registry } });
    await first.start();
    await first.stop();
    for (const key of Object.keys(METRIC_NAMES) as MetricKey[])
      expect(registry.getSingleMetric(full(key)), key).toBeUndefined();
    expect(registry.getSingleMetric('host_requests_total')).toBeDefined();
    const second = new UnifiedOrchestrator({ pressure: false, metrics: { registry } });
    second.registerAgent({ execute: () => 'ok' }, { capabilities: [] });
    await second.start();
    try {
      await second.submit({ type: 'again' });
      const x = parseExposition(await registry.metrics());
      expect(valueOf(x, full('tasks'), { type: 'again', outcome: 'completed' })).toBe(1);
    } finally {
      await second.stop();
    }
  });

  it('stop() before start() also releases the host registry', async () => {
    const registry = new Registry();
    await new UnifiedOrchestrator({ pressure: false, metrics: { registry } }).stop();
    expect(await registry.getMetricsAsJSON()).toEqual([]);
  });

  it('after the host resets the registry (registry.resetMetrics()), task metrics restart at 0 and keep counting every type', async () => {
    const registry = new Registry();
    const o = new UnifiedOrchestrator({ pressure: false, metrics: { registry } });
    o.registerAgent({ execute: () => 'ok' }, { capabilities: [] });
    await o.start();
    try {
      await o.submit({ type: 'seen' });
      await o.submit({ type: 'seen' });
      expect(valueOf(await scrape(o), full('tasks'), { type: 'seen', outcome: 'completed' })).toBe(2);
      registry.resetMetrics();
      await o.submit({ type: 'seen' });
      await o.submit({ type: 'new' });
      const x = await scrape(o);
      // Like prom-client's own counters after a reset: the type seen before the reset counts again from 0.
      expect(byTypeOutcome(x, full('tasks'))).toEqual({ 'seen/completed': 1, 'new/completed': 1 });
      expect(byTypeOutcome(x, full('taskDuration'), `${full('taskDuration')}_count`)).toEqual({
        'seen/completed': 1,
        'new/completed': 1,
      });
      expect(byLabel(x, full('queueWait'), 'type', {}, `${full('queueWait')}_count`)).toEqual({ seen: 1, new: 1 });
    } finally {
      await o.stop();
    }
  });

  it('escapes task types with quotes, backslashes and newlines in label values', async () => {
    const o = new UnifiedOrchestrator({ pressure: false });
    o.registerAgent({ execute: () => 'ok' }, { capabilities: [] });
    await o.start();
    try {
      const weird = ['say "hi"', 'back\\slash', 'two\nlines', 'ünïcødé {x="1"}'];
      for (const type of weird) await o.submit({ type });
      const x = await scrape(o);
      expect(labelValues(x, full('tasks'), 'type')).toEqual([...weird].sort());
      for (const type of weird) expect(valueOf(x, full('tasks'), { type, outcome: 'completed' }), type).toBe(1);
    } finally {
      await o.stop();
    }
  });

  it('metrics: false turns them off', async () => {
    const o = new UnifiedOrchestrator({ pressure: false, metrics: false });
    expect(o.metrics()).toBeUndefined();
    expect(o.metricsRegistry).toBeUndefined();
    await o.start();
    expect(o.metrics()).toBeUndefined();
    await o.stop();
  });

  it("defaultMetrics: true adds prom-client's process metrics under the prefix", async () => {
    const o = new UnifiedOrchestrator({ pressure: false, metrics: { defaultMetrics: true, prefix: 'dm_' } });
    try {
      const x = await scrape(o);
      expect(family(x, 'dm_process_cpu_user_seconds_total').type).toBe('counter');
      expect(family(x, 'dm_nodejs_heap_size_used_bytes').type).toBe('gauge');
      expect([...x.keys()].every((n) => n.startsWith('dm_'))).toBe(true);
      expect(family(x, full('tasks', 'dm_')).type).toBe('counter');
    } finally {
      await o.stop();
    }
    const off = new UnifiedOrchestrator({ pressure: false });
    expect([...(await scrape(off)).keys()].some((n) => n.includes('process_'))).toBe(false);
    await off.stop();
  });

  it('defaultMetrics: true on a host registry: they leave with the orchestrator, so a new one can register them again', async () => {
    const registry = new Registry();
    const first = new UnifiedOrchestrator({ pressure: false, metrics: { registry, defaultMetrics: true } });
    expect(registry.getSingleMetric(`${P}process_cpu_user_seconds_total`)).toBeDefined();
    await first.stop();
    expect.soft((await registry.getMetricsAsJSON()).map((m) => m.name)).toEqual([]);
    let second: UnifiedOrchestrator | undefined;
    expect(
      () => (second = new UnifiedOrchestrator({ pressure: false, metrics: { registry, defaultMetrics: true } })),
    ).not.toThrow();
    await second?.stop();
  });

  it("a clash on the default metrics' names is a ValidationError that leaves nothing half-registered", async () => {
    const registry = new Registry();
    // The host already collects the default metrics under the same prefix.
    collectDefaultMetrics({ register: registry, prefix: P });
    const before = (await registry.getMetricsAsJSON()).map((m) => m.name).sort();
    let error: unknown;
    try {
      new UnifiedOrchestrator({ pressure: false, metrics: { registry, defaultMetrics: true } });
    } catch (e) {
      error = e;
    }
    expect.soft((await registry.getMetricsAsJSON()).map((m) => m.name).sort()).toEqual(before);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'VALIDATION_ERROR', field: 'options.metrics.registry' });
  });

  it.each([
    ['a prefix starting with a digit', { prefix: '9x' }, 'options.metrics.prefix'],
    ['a prefix with a dash', { prefix: 'a-b' }, 'options.metrics.prefix'],
    [
      'a prefix with a colon (promtool rejects it in an exposition)',
      { prefix: 'svc:agents_' },
      'options.metrics.prefix',
    ],
    ['a prefix that is not a string', { prefix: 5 }, 'options.metrics.prefix'],
    ['a registry that is not an object', { registry: 42 }, 'options.metrics.registry'],
    ['an object that is not a registry', { registry: {} }, 'options.metrics.registry.registerMetric'],
    ['a registry without metrics()', { registry: { registerMetric: () => {} } }, 'options.metrics.registry.metrics'],
    ['maxTaskTypes 0', { maxTaskTypes: 0 }, 'options.metrics.maxTaskTypes'],
    ['defaultMetrics not a boolean', { defaultMetrics: 'yes' }, 'options.metrics.defaultMetrics'],
    ['an unknown key', { prefx: 'a_' }, 'options.metrics.prefx'],
  ])('refuses %s with ValidationError naming the field', (_, metrics, field) => {
    let error: unknown;
    try {
      new UnifiedOrchestrator({ pressure: false, metrics } as unknown as OrchestratorOptions);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'VALIDATION_ERROR', field });
    expect(field.startsWith('options.metrics')).toBe(true);
  });
});
