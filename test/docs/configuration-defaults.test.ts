/**
 * docs/configuration.md states the default of every option; this holds its tables to the frozen `*_DEFAULTS` object
 * of the part that owns the options, both ways: every plain default (a number, string or boolean, `Infinity`
 * included) has a row that states that value, and every row whose Default cell states a value names a key of the
 * section's defaults with that value. So a default changed in code but not on the page (or the other way) fails here.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as bridgeOptions from '../../src/bridge/redis-options.js';
import * as compatOptions from '../../src/compat/options.js';
import * as config from '../../src/config.js';
import * as engineOptions from '../../src/engine/options.js';
import * as audit from '../../src/health/audit.js';
import * as healthOptions from '../../src/health/options.js';
import * as stopOptions from '../../src/orchestrator/stop-options.js';
import * as durabilityOptions from '../../src/store/durability-options.js';
import * as poolOptions from '../../src/pool/options.js';
import * as resourceOptions from '../../src/resources/options.js';
import * as api from 'unified-orchestrator';

const page = readFileSync(fileURLToPath(new URL('../../docs/configuration.md', import.meta.url)), 'utf8');

type Plain = number | string | boolean;

/** One row of an option table: its `##` section (a `###` subsection counts as part of it), option and Default cell. */
interface Row {
  readonly section: string;
  readonly option: string;
  readonly cell: string;
  readonly line: number;
}

/** The cells of a table row; `\|` inside a cell (a union type) is not a separator. */
function cells(line: string): string[] {
  return line
    .trim()
    .replace(/^\||\|$/g, '')
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());
}

/** The rows of every table with an Option (or Field) column and a Default column. */
export function optionRows(markdown: string): Row[] {
  const rows: Row[] = [];
  let section = '';
  let header: string[] | undefined;
  let fenced = false;
  markdown.split('\n').forEach((line, i) => {
    if (line.startsWith('```')) fenced = !fenced;
    if (fenced) return;
    const heading = /^(#{2,3}) (.+)$/.exec(line);
    if (heading) {
      if (heading[1] === '##') section = heading[2]!.trim();
      header = undefined;
      return;
    }
    if (!line.startsWith('|')) {
      header = undefined;
      return;
    }
    const row = cells(line);
    if (header === undefined) {
      header = row;
      return;
    }
    const name = header.findIndex((c) => c === 'Option' || c === 'Field');
    const value = header.indexOf('Default');
    if (name < 0 || value < 0 || row.every((c) => /^:?-+:?$/.test(c))) return;
    rows.push({ section, option: row[name]!.replace(/`/g, ''), cell: row[value]!, line: i + 1 });
  });
  return rows;
}

/** A literal as the page writes it: `100_000`, `0.85`, `'score'`, `Infinity`, `true`, `false`. */
function literal(code: string): Plain | undefined {
  if (code === 'true' || code === 'false') return code === 'true';
  if (code === 'Infinity') return Infinity;
  if (/^-?\d+(?:_\d+)*(?:\.\d+)?$/.test(code)) return Number(code.replace(/_/g, ''));
  return /^'([^'\\]*)'$/.exec(code)?.[1];
}

export type StatedDefault =
  { kind: 'value'; value: Plain } | { kind: 'required' } | { kind: 'none' } | { kind: 'other' };

/**
 * What a Default cell states. The value is its first code span when that is a literal, wherever the cell has it
 * ("none (`Infinity` internally)", "`5`, or `maxAgents` when that is lower", "2 GiB (`2_147_483_648`)"). A cell
 * that is just "required" or "none" has no default; anything else ("`performance.now()`", "see [Retry](#retry)",
 * "`{}`") states no plain value, and its row must be in {@link NO_VALUE}.
 */
export function statedDefault(cell: string): StatedDefault {
  const code = /`([^`]+)`/.exec(cell)?.[1];
  const value = code === undefined ? undefined : literal(code);
  if (value !== undefined) return { kind: 'value', value };
  if (cell === 'required') return { kind: 'required' };
  if (cell === 'none') return { kind: 'none' };
  return { kind: 'other' };
}

/** The plain values of a defaults object, by dotted path (`recovery.windowMs`); functions and the like are left out. */
function plainValues(defaults: object, prefix = '', out = new Map<string, Plain>()): Map<string, Plain> {
  for (const [key, value] of Object.entries(defaults)) {
    if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') {
      out.set(prefix + key, value);
    } else if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
      plainValues(value as object, `${prefix}${key}.`, out);
    }
  }
  return out;
}

/**
 * Each `##` section of the page with an option table, the defaults it documents, and how its rows name them: a row
 * is `prefix` + the key's dotted path (`health.` + `sla.windowMs`).
 */
const SECTIONS: Record<string, { heading: string; prefix: string; defaults: Record<string, object> }> = {
  top: {
    heading: '`new UnifiedOrchestrator(options)`: top level',
    prefix: '',
    defaults: {
      ENGINE_DEFAULTS: engineOptions.ENGINE_DEFAULTS,
      ORCHESTRATOR_DEFAULTS: config.ORCHESTRATOR_DEFAULTS,
    },
  },
  pools: { heading: 'Pools (`pools[i]`)', prefix: '', defaults: { POOL_DEFAULTS: poolOptions.POOL_DEFAULTS } },
  retry: { heading: 'Retry', prefix: 'retry.', defaults: { RETRY_DEFAULTS: resourceOptions.RETRY_DEFAULTS } },
  breaker: {
    heading: 'Agent breaker',
    prefix: 'agentBreaker.',
    defaults: { BREAKER_DEFAULTS: resourceOptions.BREAKER_DEFAULTS },
  },
  pressure: {
    heading: 'Pressure',
    prefix: 'pressure.',
    defaults: { PRESSURE_DEFAULTS: resourceOptions.PRESSURE_DEFAULTS },
  },
  budgets: { heading: 'Budgets', prefix: 'budgets.', defaults: { BUDGET_DEFAULTS: resourceOptions.BUDGET_DEFAULTS } },
  rateLimits: {
    heading: 'Rate limits (`rateLimits[name]`)',
    prefix: '',
    defaults: { RATE_LIMIT_DEFAULTS: resourceOptions.RATE_LIMIT_DEFAULTS },
  },
  // With its subsection "SLA (`health.sla`)", whose rows are `health.sla.*`.
  health: { heading: 'Health', prefix: 'health.', defaults: { HEALTH_DEFAULTS: healthOptions.HEALTH_DEFAULTS } },
  metrics: { heading: 'Metrics', prefix: 'metrics.', defaults: { METRICS_DEFAULTS: healthOptions.METRICS_DEFAULTS } },
  audit: { heading: 'Audit', prefix: 'audit.', defaults: { AUDIT_DEFAULTS: audit.AUDIT_DEFAULTS } },
  task: {
    heading: 'Task fields with defaults',
    prefix: '',
    defaults: { TASK_DEFAULTS: engineOptions.TASK_DEFAULTS },
  },
  durability: {
    heading: 'Durability',
    prefix: 'durability.',
    defaults: { DURABILITY_DEFAULTS: durabilityOptions.DURABILITY_DEFAULTS },
  },
  stop: { heading: '`stop(options)`', prefix: '', defaults: { STOP_DEFAULTS: stopOptions.STOP_DEFAULTS } },
  bridge: {
    heading: 'RedisBridge options',
    prefix: '',
    defaults: { REDIS_BRIDGE_DEFAULTS: bridgeOptions.REDIS_BRIDGE_DEFAULTS },
  },
  adapter: {
    heading: 'OrchestratorsCompatibilityAdapter options',
    prefix: '',
    defaults: { ADAPTER_DEFAULTS: compatOptions.ADAPTER_DEFAULTS },
  },
  router: {
    heading: 'TrafficRouter options',
    prefix: '',
    defaults: { TRAFFIC_ROUTER_DEFAULTS: compatOptions.TRAFFIC_ROUTER_DEFAULTS },
  },
};

/**
 * Rows whose Default cell states no plain value although the option has a default, by `section: option`, with the
 * reason. Cells that are just "required" or "none" need no entry.
 */
const NO_VALUE: Record<string, readonly string[]> = {
  "a part's own options, whose defaults have their own section": [
    'top: retry',
    'top: agentBreaker',
    'top: pressure',
    'top: budgets',
    'top: health',
    'top: metrics',
    'top: audit',
    'top: durability',
    'health: health.sla',
  ],
  'an empty collection': [
    'top: pools',
    'top: rateLimits',
    'budgets: budgets.limits',
    'health: health.sla.types',
    'adapter: errorCodes',
    'task: requires, prefers',
  ],
  'a list, not a plain value': ['router: notFoundCodes'],
  'derived from another option': ['durability: durability.heartbeatMs'],
  'a function or an object, made at run time': [
    'top: bridge',
    'durability: durability.nodeId',
    'top: clock',
    'top: random',
    'retry: retry.retryable',
    'pressure: pressure.sampler',
    'metrics: metrics.registry',
    'bridge: nodeId',
    'bridge: retry',
    'adapter: roles',
    'router: key',
    'router: compare',
    'router: metrics',
  ],
  "another option's value": ['task: timeoutMs', 'task: maxAttempts', 'stop: actor'],
};
const noValue = new Set(Object.values(NO_VALUE).flat());

const rows = optionRows(page);
const sectionOf = new Map(Object.entries(SECTIONS).map(([id, s]) => [s.heading, id]));

const show = (v: Plain): string => (typeof v === 'string' ? `'${v}'` : String(v));

describe('docs/configuration.md states the defaults of the code', () => {
  it('statedDefault reads the forms the page uses', () => {
    expect(statedDefault('`100_000`')).toEqual({ kind: 'value', value: 100_000 });
    expect(statedDefault("`'score'`")).toEqual({ kind: 'value', value: 'score' });
    expect(statedDefault('`0.85`')).toEqual({ kind: 'value', value: 0.85 });
    expect(statedDefault('`false`')).toEqual({ kind: 'value', value: false });
    expect(statedDefault('none (`Infinity` internally)')).toEqual({ kind: 'value', value: Infinity });
    expect(statedDefault('`5`, or `maxAgents` when that is lower')).toEqual({ kind: 'value', value: 5 });
    expect(statedDefault('2 GiB (`2_147_483_648`)')).toEqual({ kind: 'value', value: 2_147_483_648 });
    expect(statedDefault('`3_600_000` (one hour)')).toEqual({ kind: 'value', value: 3_600_000 });
    expect(statedDefault('required')).toEqual({ kind: 'required' });
    expect(statedDefault('none')).toEqual({ kind: 'none' });
    for (const cell of ['`performance.now()`', 'see [Retry](#retry)', '`{}`', '`[]`', 'the `audit.actor` option']) {
      expect(statedDefault(cell)).toEqual({ kind: 'other' });
    }
  });

  it('optionRows reads every option table, escaped pipes included', () => {
    expect(rows.length).toBeGreaterThan(100);
    expect(rows.find((r) => r.option === 'routing')?.cell).toBe("`'score'`");
  });

  it('every option table is in a mapped section, and every mapped section is on the page', () => {
    expect([...new Set(rows.map((r) => r.section))].filter((s) => !sectionOf.has(s))).toEqual([]);
    const headings = new Set(rows.map((r) => r.section));
    expect(Object.values(SECTIONS).filter((s) => !headings.has(s.heading))).toEqual([]);
  });

  it('every *_DEFAULTS object of the options modules is mapped to a section', () => {
    const mapped = new Set(Object.values(SECTIONS).flatMap((s) => Object.values(s.defaults)));
    const modules = [engineOptions, poolOptions, resourceOptions, healthOptions, audit, stopOptions, config];
    const exported = [api, bridgeOptions, compatOptions, ...modules].flatMap((m) =>
      Object.entries(m).filter(([name]) => name.endsWith('_DEFAULTS')),
    );
    expect(exported.length).toBeGreaterThan(10);
    expect(exported.filter(([, value]) => !mapped.has(value as object)).map(([name]) => name)).toEqual([]);
  });

  it('the allow-list names only rows that state no plain value', () => {
    const stale = [...noValue].filter((entry) => {
      const row = rows.find((r) => `${sectionOf.get(r.section)}: ${r.option}` === entry);
      return row === undefined || statedDefault(row.cell).kind !== 'other';
    });
    expect(stale).toEqual([]);
  });

  it.each(Object.entries(SECTIONS))('%s: the rows and the defaults agree, both ways', (id, section) => {
    const own = rows.filter((r) => r.section === section.heading);
    const problems: string[] = [];
    const expected = new Map<string, { value: Plain; from: string }>();
    for (const [from, defaults] of Object.entries(section.defaults)) {
      for (const [key, value] of plainValues(defaults)) {
        const option = section.prefix + key;
        const other = expected.get(option);
        if (other !== undefined && !Object.is(other.value, value)) {
          problems.push(`${other.from} and ${from} disagree on ${key}`);
        }
        expected.set(option, { value, from });
      }
    }
    // Every plain default has a row that states it.
    for (const [option, { value, from }] of expected) {
      const row = own.find((r) => r.option === option);
      if (row === undefined) {
        problems.push(`${from}: no row for \`${option}\` (default ${show(value)})`);
        continue;
      }
      const stated = statedDefault(row.cell);
      if (stated.kind !== 'value') {
        problems.push(`line ${row.line}: \`${option}\` states no value ("${row.cell}"), ${from} has ${show(value)}`);
      } else if (!Object.is(stated.value, value)) {
        problems.push(`line ${row.line}: \`${option}\` says ${show(stated.value)}, ${from} has ${show(value)}`);
      }
    }
    // Every row that states a value names a default; every other row has no default or is allow-listed.
    for (const row of own) {
      const stated = statedDefault(row.cell);
      if (stated.kind === 'value' && !expected.has(row.option)) {
        problems.push(
          `line ${row.line}: \`${row.option}\` says ${show(stated.value)}, but ${Object.keys(section.defaults).join(' and ')} has no such key`,
        );
      } else if (stated.kind === 'other' && !expected.has(row.option) && !noValue.has(`${id}: ${row.option}`)) {
        problems.push(
          `line ${row.line}: \`${row.option}\` states no plain value ("${row.cell}") and is not in NO_VALUE`,
        );
      }
    }
    expect(problems).toEqual([]);
  });
});
