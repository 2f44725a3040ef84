/**
 * The operations kit checked with Prometheus' own tool: the exposition passes `promtool check metrics`, the alert
 * rules pass `promtool check rules` and their unit tests (`promtool test rules`), and the Grafana dashboard's PromQL
 * parses and references only metrics the orchestrator exports, so neither can rot when a metric is renamed.
 * The workflow metrics (WORKFLOW_METRIC_NAMES) are covered the same way: the live exposition runs a workflow.
 *
 * promtool comes with the Debian package `prometheus` (CI installs it). Without it the tests that run it skip, and the
 * run says so in one line; with `CI` set they fail instead (test/support/binaries.ts).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COMPAT_METRIC_NAMES,
  DEFAULT_METRIC_PREFIX,
  METRIC_NAMES,
  OrchestratorsCompatibilityAdapter,
  STORE_METRIC_NAMES,
  TrafficRouter,
  UnifiedOrchestrator,
  type TaskContext,
} from 'unified-orchestrator';
import { WORKFLOW_METRIC_NAMES } from '../../src/health/metric-names.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { eventually, until, wait } from '../support/agents.js';
import { PROMTOOL } from '../support/binaries.js';

const OPERATIONS = fileURLToPath(new URL('../../docs/operations/', import.meta.url));
const RULES = join(OPERATIONS, 'alert-rules.yml');
const RULE_TESTS = join(OPERATIONS, 'alert-rules.test.yml');
const DASHBOARD = join(OPERATIONS, 'grafana-dashboard.json');

const MISSING =
  `promtool was not found (looked for ${JSON.stringify(PROMTOOL.command)} on PATH). These tests need it: install ` +
  'the Debian package `prometheus` (`apt-get install --no-install-recommends prometheus`, which provides ' +
  '/usr/bin/promtool), or point the PROMTOOL environment variable at a promtool binary. CI installs it (.ci/run).';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs promtool with `args` (and `stdin`); fails with install instructions when it is not installed. */
function promtool(args: readonly string[], options: { stdin?: string; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL.command, args, { cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (error: NodeJS.ErrnoException) => reject(error.code === 'ENOENT' ? new Error(MISSING) : error));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.on('error', () => {}); // promtool may exit before reading all of stdin; the exit code tells.
    child.stdin.end(options.stdin ?? '');
  });
}

// --- Metric names the kit may reference ------------------------------------------------------------------------------

const P = DEFAULT_METRIC_PREFIX;
const HISTOGRAMS = new Set<string>([
  METRIC_NAMES.taskDuration,
  METRIC_NAMES.queueWait,
  COMPAT_METRIC_NAMES.callDuration,
  STORE_METRIC_NAMES.writeDuration,
  STORE_METRIC_NAMES.batchSize,
  WORKFLOW_METRIC_NAMES.stepDuration,
]);

/**
 * Every metric the orchestrator exports (the store's with a `store`, the workflows' once it hosts workflow runs), and
 * a TrafficRouter on its registry.
 */
const ALL_NAMES = [
  ...Object.values(METRIC_NAMES),
  ...Object.values(STORE_METRIC_NAMES),
  ...Object.values(WORKFLOW_METRIC_NAMES),
  ...Object.values(COMPAT_METRIC_NAMES),
];

/**
 * Every series name the orchestrator (with a store, and a TrafficRouter on its registry) exports with the default
 * prefix: histograms as _bucket, _sum and _count.
 */
const KNOWN = new Map<string, string>();
for (const name of ALL_NAMES) {
  if (HISTOGRAMS.has(name)) for (const suffix of ['_bucket', '_sum', '_count']) KNOWN.set(`${P}${name}${suffix}`, name);
  else KNOWN.set(`${P}${name}`, name);
}

const PROMQL_WORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
  'atan2',
]);

/**
 * The metric names a PromQL expression selects: strings, label matchers, ranges, grouping label lists and Grafana
 * variables are removed; what is left that is an identifier not followed by `(` (a function or aggregation) and not a
 * keyword is a metric name.
 */
function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?[a-zA-Z_][a-zA-Z0-9_]*(?::[a-z]+)?\}?/g, ' ');
  const names: string[] = [];
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const before = stripped[m.index - 1] ?? ' ';
    if (/[0-9.]/.test(before)) continue; // a number's exponent or a duration's unit
    if (/^\s*\(/.test(stripped.slice(m.index + m[0].length))) continue; // function or aggregation
    if (PROMQL_WORDS.has(m[0].toLowerCase())) continue;
    names.push(m[0]);
  }
  return names;
}

/** Grafana's variables replaced by values that parse, so the expression can be checked as PromQL. */
function asPromQL(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$__range|\$\{__rate_interval\}|\$\{__interval\}|\$\{__range\}/g, '5m')
    .replace(/\$\{?(job|instance)\}?/g, '.*');
}

/** The `expr:` values of a Prometheus rules file (single-line or `|`/`>` block scalars). */
function ruleExpressions(yaml: string): string[] {
  const lines = yaml.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)(?:- )?expr:\s*(.*)$/.exec(lines[i]!);
    if (!m) continue;
    const value = m[2]!.trim();
    if (/^[|>][-+]?$/.test(value)) {
      const block: string[] = [];
      while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || lines[i + 1]!.search(/\S/) > m[1]!.length))
        block.push(lines[++i]!.trim());
      out.push(block.join(' ').trim());
    } else {
      out.push(value.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1'));
    }
  }
  return out;
}

/** The alerting rules of the file, one text block each, by name. */
function alertBlocks(yaml: string): Map<string, string> {
  const out = new Map<string, string>();
  const parts = yaml.split(/^\s*- alert:\s*/m).slice(1);
  for (const part of parts) {
    const name = part.split('\n')[0]!.trim();
    out.set(name, part);
  }
  return out;
}

// --- Grafana dashboard model (the parts checked) ---------------------------------------------------------------------

interface Target {
  readonly refId?: string;
  readonly expr?: string;
  readonly datasource?: { readonly type?: string; readonly uid?: string };
}

interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { readonly h: number; readonly w: number; readonly x: number; readonly y: number };
  readonly datasource?: { readonly type?: string; readonly uid?: string };
  readonly targets?: readonly Target[];
  readonly panels?: readonly Panel[];
}

interface Dashboard {
  readonly title: string;
  readonly uid: string;
  readonly schemaVersion: number;
  readonly panels: readonly Panel[];
  readonly templating: {
    readonly list: ReadonlyArray<{
      readonly name: string;
      readonly type: string;
      readonly query?: unknown;
      readonly definition?: string;
    }>;
  };
}

function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Every PromQL expression of the dashboard: panel targets and query variables. */
function dashboardExpressions(d: Dashboard): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  for (const p of allPanels(d.panels))
    for (const t of p.targets ?? [])
      if (t.expr !== undefined) out.push({ where: `panel "${p.title}" ${t.refId ?? ''}`, expr: t.expr });
  for (const v of d.templating.list) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query as { query?: string } | undefined)?.query;
    // label_values(selector, label): the selector is PromQL.
    for (const text of [q, v.definition]) {
      const m = text === undefined ? null : /^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$/.exec(text);
      if (m) out.push({ where: `variable $${v.name}`, expr: m[1]! });
      else if (text !== undefined)
        throw new Error(`variable $${v.name}: expected label_values(selector, label), got ${text}`);
    }
  }
  return out;
}

// --- A live exposition with every series present ---------------------------------------------------------------------

/**
 * Runs a small workload touching every metric (on a store, so that its metrics are there; with a workflow that runs a
 * task, parks on a signal and is replayed) and returns the exposition text.
 */
async function liveExposition(options: { prefix?: string; defaultMetrics?: boolean } = {}): Promise<string> {
  let sick = false;
  const o = new UnifiedOrchestrator({
    pressure: false,
    agentBreaker: { volumeThreshold: 1_000 },
    retry: { baseDelayMs: 1, maxDelayMs: 1 },
    metrics: { ...options },
    store: new MemoryStore(),
    durability: { claimIntervalMs: 20 },
    health: { checkIntervalMs: 60_000, sla: { minSamples: 1, types: { slow: { p95Ms: 1 }, bad: { errorRate: 0.1 } } } },
    pools: [
      {
        role: 'writer',
        capabilities: ['text'],
        minAgents: 1,
        warmSpares: 0,
        create: () => ({
          async execute(ctx: TaskContext) {
            if (ctx.type === 'bad' || (ctx.type === 'flaky' && ctx.attempt === 1)) throw new Error('no');
            if (ctx.type === 'slow') await wait(5);
            return 'ok';
          },
          healthCheck: () => !sick,
        }),
      },
    ],
  });
  o.registerAgent({ execute: () => 'ok' }, { capabilities: ['outside'] });
  o.workflow('review', {}, async (run, doc: string) => {
    const draft = await run.task<string>('draft', { type: 'draft', requires: ['text'], payload: doc });
    const approval = await run.signal<{ ok: boolean }>('approval');
    return run.step('publish', () => ({ draft, published: approval.ok }));
  });
  await o.start();
  try {
    // A workflow run: a task step, a park on the signal, then a replay of the task step and two steps that run.
    const flow = o.startWorkflow('review', 'doc-1');
    await eventually(async () => (await o.runs.get(flow.id))?.waitingFor.includes('approval') ?? false);
    await o.signal(flow.id, 'approval', { ok: true });
    await flow.result;
    await o.submit({ type: 'slow', requires: ['text'] });
    await o.submit({ type: 'flaky', requires: ['text'], maxAttempts: 2 });
    await o.submit({ type: 'bad', requires: ['text'] }).catch(() => {});
    await o.submit({ type: 'outside', requires: ['outside'] });
    // A type that needs escaping in a label value.
    await o.submit({ type: 'say "hi" \\ twice\n', requires: ['outside'] });
    const dep = o.resources.breaker(
      'llm',
      async (): Promise<never> => {
        throw new Error('down');
      },
      { volumeThreshold: 1, errorThresholdPercentage: 1 },
    );
    await dep().catch(() => {});
    // A TrafficRouter on the orchestrator's registry, in shadow mode, with one planted difference.
    const legacy = {
      spawnAgent: async () => 'legacy-agent',
      delegateTaskToAgent: async () => 'legacy-task',
      getAgentStatus: async () => ({ error: { code: 'AGENT_NOT_FOUND', message: 'none' } }),
      getTaskStatus: async (id: string) => ({
        task_id: id,
        status: 'completed' as const,
        agent_id: null,
        attempts: 1,
        result: 'legacy answer',
        created_at: '',
        updated_at: '',
      }),
      shutdownAgent: async (id: string) => ({ agent_id: id, status: 'terminated' as const }),
    };
    const router = new TrafficRouter({
      legacy,
      unified: new OrchestratorsCompatibilityAdapter(o),
      orchestrator: o,
      shadow: true,
      pollIntervalMs: 5,
    });
    await router.delegateTaskToAgent({ role: 'writer', type: 'shadowed' });
    await router.close();
    sick = true;
    await o.checkHealth();
    sick = false;
    await until(() => o.health().components.pools['writer']?.status === 'healthy');
    const m = await o.metrics()!;
    return m.body;
  } finally {
    await o.stop();
  }
}

// --- Tests -----------------------------------------------------------------------------------------------------------

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'uo-promtool-'));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A test that runs promtool: skipped when it is missing, unless CI is set. */
const withPromtool = it.skipIf(PROMTOOL.skip);

describe('promtool', () => {
  withPromtool('is installed (Debian package `prometheus`)', async () => {
    const run = await promtool(['--version']);
    expect(run.code, MISSING).toBe(0);
    expect(`${run.stdout}${run.stderr}`).toMatch(/promtool, version \d+\.\d+/);
  });
});

describe('the exposition', () => {
  withPromtool('passes `promtool check metrics` (read from a temp file on stdin)', async () => {
    const body = await liveExposition();
    for (const name of [
      ...Object.values(METRIC_NAMES),
      ...Object.values(STORE_METRIC_NAMES),
      ...Object.values(WORKFLOW_METRIC_NAMES),
    ])
      expect(body).toMatch(new RegExp(`^${P}${name}(_bucket|_count|_sum)?[{ ]`, 'm'));
    const file = join(dir, 'exposition.txt');
    await writeFile(file, body);
    const run = await promtool(['check', 'metrics'], { stdin: await readFile(file, 'utf8') });
    expect(run, `${run.stdout}${run.stderr}`).toMatchObject({ code: 0 });
    expect(`${run.stdout}${run.stderr}`.trim()).toBe('');
  });

  withPromtool('passes `promtool check metrics` with a custom prefix', async () => {
    const body = await liveExposition({ prefix: 'svc_agents_' });
    expect(body).toContain('svc_agents_tasks_total{');
    const run = await promtool(['check', 'metrics'], { stdin: body });
    expect(run, `${run.stdout}${run.stderr}`).toMatchObject({ code: 0 });
  });

  withPromtool('promtool check metrics does catch a broken exposition (so a pass means something)', async () => {
    const run = await promtool(['check', 'metrics'], { stdin: '# TYPE x_total counter\nx_total{a="1" 1\n' });
    expect(run.code).not.toBe(0);
  });
});

describe('docs/operations/alert-rules.yml', () => {
  withPromtool('passes `promtool check rules`', async () => {
    const run = await promtool(['check', 'rules', RULES]);
    expect(run, `${run.stdout}${run.stderr}`).toMatchObject({ code: 0 });
    expect(run.stdout).toMatch(/SUCCESS: \d+ rules found/);
  });

  withPromtool('passes its unit tests, `promtool test rules alert-rules.test.yml`', async () => {
    const run = await promtool(['test', 'rules', RULE_TESTS]);
    expect(run, `${run.stdout}${run.stderr}`).toMatchObject({ code: 0 });
    expect(run.stdout).toContain('SUCCESS');
  });

  it('has the unit tests that prove the SLA, pool, breaker, pressure, store and workflow alerts fire', async () => {
    const tests = await readFile(RULE_TESTS, 'utf8');
    for (const alert of [
      'UnifiedOrchestratorSlaBreached',
      'UnifiedOrchestratorPoolUnhealthy',
      'UnifiedOrchestratorAgentBreakersOpen',
      'UnifiedOrchestratorDependencyBreakerOpen',
      'UnifiedOrchestratorCriticalPressure',
      'UnifiedOrchestratorStoreUnavailable',
      'UnifiedOrchestratorStoreWriteLatencyHigh',
      'UnifiedOrchestratorRunsRecovered',
      'UnifiedOrchestratorRunsUnclaimed',
      'UnifiedOrchestratorEventsDropped',
      'UnifiedOrchestratorWorkflowRunsFailing',
      'UnifiedOrchestratorWorkflowRunsStalled',
    ]) {
      // Each is evaluated at a time where it fires (a non-empty exp_alerts list after its alertname).
      expect(tests, alert).toMatch(new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels:`));
    }
  });

  it('defines each alert with a for duration, a severity and summary/description annotations', async () => {
    const blocks = alertBlocks(await readFile(RULES, 'utf8'));
    expect([...blocks.keys()].sort()).toEqual(
      [
        'UnifiedOrchestratorAgentBreakersOpen',
        'UnifiedOrchestratorCriticalPressure',
        'UnifiedOrchestratorDependencyBreakerOpen',
        'UnifiedOrchestratorHaltedLong',
        'UnifiedOrchestratorHighTaskFailureRatio',
        'UnifiedOrchestratorPoolUnhealthy',
        'UnifiedOrchestratorQueueGrowing',
        'UnifiedOrchestratorSlaBreached',
        'UnifiedOrchestratorUnhealthy',
        'UnifiedOrchestratorStoreUnavailable',
        'UnifiedOrchestratorStoreWriteLatencyHigh',
        'UnifiedOrchestratorRunsRecovered',
        'UnifiedOrchestratorRunsUnclaimed',
        'UnifiedOrchestratorEventsDropped',
        'UnifiedOrchestratorWorkflowRunsFailing',
        'UnifiedOrchestratorWorkflowRunsStalled',
      ].sort(),
    );
    // A non-empty quoted string, in either YAML quoting (Prettier picks the one that needs fewer escapes).
    const quoted = `(?:"[^"]+"|'(?:[^']|'')+')`;
    for (const [name, block] of blocks) {
      expect(block, name).toMatch(/^\s+for: \d+[smh]$/m);
      expect(block, name).toMatch(/^\s+severity: (critical|warning)$/m);
      expect(block, name).toMatch(new RegExp(`^\\s+summary: ${quoted}$`, 'm'));
      expect(block, name).toMatch(new RegExp(`^\\s+description: ${quoted}$`, 'm'));
    }
    const exprOf = (name: string) => ruleExpressions(blocks.get(name)!)[0];
    expect(exprOf('UnifiedOrchestratorSlaBreached')).toMatch(/sla_breached\)? == 1$/);
    expect(exprOf('UnifiedOrchestratorPoolUnhealthy')).toMatch(/pool_healthy == 0$/);
    expect(exprOf('UnifiedOrchestratorAgentBreakersOpen')).toMatch(/agent_breakers\{state="open"\}\)? > 0$/);
    expect(exprOf('UnifiedOrchestratorDependencyBreakerOpen')).toMatch(/dependency_breaker_state == 2$/);
    expect(exprOf('UnifiedOrchestratorCriticalPressure')).toMatch(/resource_pressure == 2$/);
    expect(exprOf('UnifiedOrchestratorUnhealthy')).toMatch(/health_status\)? == 2$/);
    expect(exprOf('UnifiedOrchestratorHaltedLong')).toMatch(/halted == 1$/);
    expect(exprOf('UnifiedOrchestratorStoreUnavailable')).toMatch(/store_available\)? == 0$/);
    expect(exprOf('UnifiedOrchestratorStoreWriteLatencyHigh')).toMatch(
      /^histogram_quantile\(0\.99, .*store_write_duration_seconds_bucket\{kind="insert"\}.*> 0\.25$/,
    );
    expect(exprOf('UnifiedOrchestratorRunsRecovered')).toMatch(/runs_adopted_total\{recovered="true"\}.*> 0$/);
    expect(exprOf('UnifiedOrchestratorEventsDropped')).toMatch(/store_events_dropped_total.*> 0$/);
    expect(exprOf('UnifiedOrchestratorWorkflowRunsFailing')).toMatch(
      /^\( sum by \(job, workflow\) \(increase\(unified_orchestrator_workflow_runs_total\{outcome=~"failed\|timed-out"\}\[15m\]\)\) .*\) > 0\.1 and .*>= 5$/,
    );
    expect(exprOf('UnifiedOrchestratorWorkflowRunsStalled')).toMatch(
      /^\( unified_orchestrator_workflow_runs_active > 0 unless on \(job, instance\) .*workflow_step_duration_seconds_count.*\) unless on \(job, instance\) unified_orchestrator_halted == 1$/,
    );
  });

  it('references only metrics the orchestrator exports', async () => {
    const exprs = ruleExpressions(await readFile(RULES, 'utf8'));
    expect(exprs.length).toBe(16);
    for (const expr of exprs) {
      const names = metricNamesIn(expr);
      expect(names.length, expr).toBeGreaterThan(0);
      for (const name of names) expect(KNOWN.has(name), `${name} in: ${expr}`).toBe(true);
    }
  });
});

describe('docs/operations/grafana-dashboard.json', () => {
  let dashboard: Dashboard;
  let exprs: Array<{ where: string; expr: string }>;

  beforeAll(async () => {
    dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard;
    exprs = dashboardExpressions(dashboard);
  });

  it('is a Grafana dashboard with a ${datasource} Prometheus variable that every panel and target uses', () => {
    expect(dashboard.title).toBeTruthy();
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.schemaVersion).toBeLessThanOrEqual(41);
    const ds = dashboard.templating.list.find((v) => v.name === 'datasource');
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const panels = allPanels(dashboard.panels).filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThanOrEqual(12);
    for (const p of panels) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        expect(t.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
        expect(t.expr?.trim(), p.title).toBeTruthy();
      }
    }
  });

  it('has unique panel ids and a layout inside the 24-column grid', () => {
    const panels = allPanels(dashboard.panels);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      expect(p.gridPos.w, p.title).toBeGreaterThan(0);
      expect(p.gridPos.h, p.title).toBeGreaterThan(0);
    }
    // No two panels overlap.
    const boxes = panels.map((p) => p.gridPos);
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i]!;
        const b = boxes[j]!;
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        expect(overlap, `${panels[i]!.title} / ${panels[j]!.title}`).toBe(false);
      }
    }
  });

  it('has the panels operators look for', () => {
    const titles = allPanels(dashboard.panels).map((p) => p.title);
    for (const wanted of [
      /task rate by outcome/i,
      /task duration p50 \/ p95 \/ p99/i,
      /queue wait p95/i,
      /queue depth and running/i,
      /agents by state/i,
      /pool health/i,
      /agent breakers/i,
      /dependency breakers/i,
      /pressure/i,
      /recoveries/i,
      /sla breaches/i,
      /routing cache hit ratio/i,
      /store availability/i,
      /store write latency/i,
      /store batch size/i,
      /store write failures/i,
      /runs adopted/i,
      /store events buffered and dropped/i,
      /workflow runs ended by workflow and outcome/i,
      /workflow failure ratio/i,
      /workflow step duration p50 \/ p95 by workflow and kind/i,
      /workflow parks and replays/i,
      /workflow runs active/i,
    ]) {
      expect(
        titles.some((t) => wanted.test(t)),
        String(wanted),
      ).toBe(true);
    }
    const duration = exprs.filter((e) => e.expr.includes(`${P}task_duration_seconds_bucket`)).map((e) => e.expr);
    for (const q of ['0.5', '0.95', '0.99'])
      expect(
        duration.some((e) => e.startsWith(`histogram_quantile(${q},`)),
        q,
      ).toBe(true);
    expect(
      exprs.some(
        (e) => e.expr.startsWith('histogram_quantile(0.95,') && e.expr.includes(`${P}queue_wait_seconds_bucket`),
      ),
    ).toBe(true);
    const steps = exprs.filter((e) => e.expr.includes(`${P}workflow_step_duration_seconds_bucket`)).map((e) => e.expr);
    for (const q of ['0.5', '0.95'])
      expect(
        steps.some((e) => e.startsWith(`histogram_quantile(${q}, sum by (le, workflow, kind) (`)),
        q,
      ).toBe(true);
  });

  it('every PromQL expression references only metric names the orchestrator exports (default prefix)', () => {
    expect(exprs.length).toBeGreaterThan(12);
    for (const { where, expr } of exprs) {
      const names = metricNamesIn(expr);
      expect(names.length, `${where}: ${expr}`).toBeGreaterThan(0);
      for (const name of names) expect(KNOWN.has(name), `${where}: unknown metric ${name} in ${expr}`).toBe(true);
    }
  });

  it('covers every metric the orchestrator (with a store and workflows) and a TrafficRouter export', () => {
    const used = new Set(exprs.flatMap((e) => metricNamesIn(e.expr)).map((n) => KNOWN.get(n)));
    expect(ALL_NAMES.filter((n) => !used.has(n))).toEqual([]);
  });

  withPromtool('every PromQL expression parses (checked by promtool as recording rules)', async () => {
    const rules = [
      'groups:',
      '  - name: dashboard',
      '    rules:',
      ...exprs.flatMap(({ expr }, i) => [
        `      - record: dashboard:expr_${i}`,
        `        expr: ${JSON.stringify(asPromQL(expr))}`,
      ]),
      '',
    ].join('\n');
    const file = join(dir, 'dashboard-rules.yml');
    await writeFile(file, rules);
    const run = await promtool(['check', 'rules', file]);
    expect(run, `${run.stdout}${run.stderr}`).toMatchObject({ code: 0 });
    expect(run.stdout).toContain(`SUCCESS: ${exprs.length} rules found`);
  });

  it('the metric names it uses are all in a live exposition', async () => {
    const body = await liveExposition();
    const exposed = new Set([...body.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)].map((m) => m[1]!));
    for (const name of new Set(exprs.flatMap((e) => metricNamesIn(e.expr)))) expect(exposed.has(name), name).toBe(true);
  });
});

describe('the PromQL name extractor used above', () => {
  it('finds metric names and ignores functions, labels, strings, ranges and variables', () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.95, sum by (le, type) (rate(a_bucket{job=~"$job", x="b_total"}[$__rate_interval]))) / on (job) group_left (instance) b_total offset 5m > 1e3 and bool c',
      ),
    ).toEqual(['a_bucket', 'b_total', 'c']);
    expect(metricNamesIn('sum(rate(x[5m])) by (outcome)')).toEqual(['x']);
    expect(metricNamesIn('up == 0')).toEqual(['up']);
  });
});
