/**
 * The CLI's `runs` commands: the history of durable runs read straight from the store (a PostgreSQL server, or an
 * embedded PGlite data directory), and `runs retry`, which stores a new run for a running node to claim. No
 * orchestrator runs in the CLI's process.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { isInstance, ValidationError } from '../errors.js';
import { PGliteStore } from '../store/pglite-store.js';
import { PostgresStore } from '../store/postgres-store.js';
import { listFilters, RUN_STATUSES } from '../store/store-support.js';
import {
  isTerminal,
  type NewRun,
  type RunQuery,
  type RunRecord,
  type RunStatus,
  type RunStore,
} from '../store/store.js';
import { formatRun, formatRunPage, formatTimeline, formatWorkflowHistory } from './format.js';
import { EXIT, redactUrl, UsageError, type CliIo } from './io.js';

/** The `runs` lines of the CLI's usage text. */
export const RUNS_USAGE = `  runs list                runs newest first (filters: --tenant --type --status --since --until; --limit, --cursor)
  runs show <id>           one run: status, attempts, owner, task, result or error; a workflow run's current wait,
                           its steps (agent, attempts, duration, cost, child task, wake time) and signals
  runs events <id>         a run's timeline: queued, started on agent X, retrying with error E, adopted, completed
  runs retry <id>          store a run that ended without success again as a new queued run, for a node to claim`;

/** The `runs` options of the CLI's usage text. */
export const RUNS_OPTIONS = `  --database-url <url>     runs: the store's PostgreSQL server, postgres://user:password@host:port/db (env DATABASE_URL)
  --pglite <dir>           runs: the data directory of an embedded store (PGliteStore) instead
  --schema <name>          runs: the store's schema [default: unified_orchestrator]
  --tenant <id>            runs, workflows, signal: only this tenant's runs (another tenant's run looks unknown);
                           workflows start: the new run's tenant. Also spelled --tenant-id
  --type <type>            runs list: only runs of this task type
  --status <s,...>         runs list: only these statuses (${RUN_STATUSES.join(', ')})
  --since <time>           runs list: created at or after (ISO 8601, or epoch ms)
  --until <time>           runs list: created before (ISO 8601, or epoch ms)
  --limit <n>              runs list: runs per page, 1-1000 [default: 100]
  --cursor <cursor>        runs list: the next page, as the previous page printed it`;

/** The options only `runs` commands take (others refuse them). */
export const RUNS_ONLY_OPTIONS = [
  'database-url',
  'pglite',
  'schema',
  'tenant',
  'tenant-id',
  'type',
  'status',
  'since',
  'until',
  'limit',
  'cursor',
] as const;

/** The lease `runs retry` holds while it writes the new run. */
const RETRY_LEASE_MS = 60_000;

/** Where the store is. */
export type StoreTarget =
  | { readonly kind: 'postgres'; readonly url: string; readonly schema: string | undefined }
  | { readonly kind: 'pglite'; readonly dataDir: string; readonly schema: string | undefined };

/** A parsed `runs` command. */
export type RunsCommand =
  | {
      readonly verb: 'list';
      readonly query: RunQuery;
      readonly target: StoreTarget;
      readonly json: boolean;
      readonly timeoutMs: number;
    }
  | {
      readonly verb: 'show' | 'events' | 'retry';
      readonly id: string;
      readonly tenantId: string | undefined;
      readonly target: StoreTarget;
      readonly json: boolean;
      readonly timeoutMs: number;
    };

type Values = Readonly<Record<string, string | boolean | undefined>>;

/** A time given as ISO 8601 or as epoch milliseconds. */
function timeOf(flag: string, text: string): number {
  if (/^\d+$/.test(text)) return Number(text);
  const ms = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (!Number.isFinite(ms)) {
    throw new UsageError(
      `--${flag} must be an ISO 8601 time (2026-01-31T12:00:00Z) or epoch milliseconds, got ${text}`,
    );
  }
  return ms;
}

/** `--tenant`, or its other spelling `--tenant-id` (UsageError when both are given and differ). */
export function tenantOf(values: Values): string | undefined {
  const a = values['tenant'] as string | undefined;
  const b = values['tenant-id'] as string | undefined;
  if (a !== undefined && b !== undefined && a !== b)
    throw new UsageError(`--tenant and --tenant-id name one thing: pass one of them (got ${a} and ${b})`);
  return a ?? b;
}

/** Checks a `runs` command line; throws UsageError naming what to fix. */
export function parseRuns(
  positionals: readonly string[],
  values: Values,
  env: CliIo['env'],
  timeoutMs: number,
): RunsCommand {
  const [verb, ...rest] = positionals;
  const string = (flag: string): string | undefined => values[flag] as string | undefined;
  const json = values['json'] === true;
  const listOnly = ['type', 'status', 'since', 'until', 'limit', 'cursor'];
  let command: (target: StoreTarget) => RunsCommand;
  switch (verb) {
    case 'list': {
      if (rest.length > 0) throw new UsageError(`runs list takes no arguments, got: ${rest.join(' ')}`);
      const query: { -readonly [K in keyof RunQuery]: RunQuery[K] } = {};
      const tenant = tenantOf(values);
      if (tenant !== undefined) query.tenantId = tenant;
      if (string('type') !== undefined) query.type = string('type');
      const status = string('status');
      if (status !== undefined) {
        const statuses = status.split(',').map((s) => s.trim());
        for (const s of statuses) {
          if (!(RUN_STATUSES as readonly string[]).includes(s))
            throw new UsageError(`--status takes ${RUN_STATUSES.join(', ')} (comma-separated), got ${s || '""'}`);
        }
        query.status = statuses as RunStatus[];
      }
      const since = string('since');
      if (since !== undefined) query.since = timeOf('since', since);
      const until = string('until');
      if (until !== undefined) query.until = timeOf('until', until);
      const limit = string('limit');
      if (limit !== undefined) {
        const n = Number(limit);
        if (!/^\d+$/.test(limit) || n < 1 || n > 1000)
          throw new UsageError(`--limit must be a whole number from 1 to 1000, got ${limit}`);
        query.limit = n;
      }
      if (string('cursor') !== undefined) query.cursor = string('cursor');
      try {
        listFilters(query);
      } catch (error) {
        if (isInstance(error, ValidationError)) throw new UsageError(`--${error.field}: ${error.message}`);
        throw error;
      }
      command = (target) => ({ verb: 'list', query, target, json, timeoutMs });
      break;
    }
    case 'show':
    case 'events':
    case 'retry': {
      if (rest.length !== 1 || rest[0] === '') throw new UsageError(`Expected \`runs ${verb} <id>\`: one run id`);
      const given = listOnly.filter((flag) => values[flag] !== undefined);
      if (given.length > 0) throw new UsageError(`--${given[0]} applies to \`runs list\` only`);
      const id = rest[0]!;
      const tenantId = tenantOf(values);
      command = (target) => ({ verb, id, tenantId, target, json, timeoutMs });
      break;
    }
    case undefined:
      throw new UsageError('Expected `runs list`, `runs show <id>`, `runs events <id>` or `runs retry <id>`');
    default:
      throw new UsageError(`Unknown runs command: ${verb} (list, show, events or retry)`);
  }
  return command(targetOf(values, env));
}

/** The store to open, from --database-url / DATABASE_URL or --pglite. */
export function targetOf(values: Values, env: CliIo['env']): StoreTarget {
  const schema = values['schema'] as string | undefined;
  if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,47}$/.test(schema)) {
    throw new UsageError(
      `--schema must be a lower-case identifier (letters, digits, _) of at most 48 characters, got ${JSON.stringify(schema)}`,
    );
  }
  const dataDir = values['pglite'] as string | undefined;
  const flagUrl = values['database-url'] as string | undefined;
  if (dataDir !== undefined) {
    if (flagUrl !== undefined) throw new UsageError('Pass --database-url or --pglite, not both');
    if (dataDir === '') throw new UsageError('--pglite needs the data directory of an embedded store');
    return { kind: 'pglite', dataDir, schema };
  }
  const url = flagUrl ?? env['DATABASE_URL'];
  if (url === undefined || url === '') {
    throw new UsageError(
      'No store to read: pass --database-url postgres://user:password@host:port/database or set DATABASE_URL (or --pglite <dir> for an embedded store)',
    );
  }
  if (!/^postgres(ql)?:\/\//i.test(url) || !URL.canParse(url)) {
    throw new UsageError(
      `Expected a postgres:// or postgresql:// URL (--database-url or DATABASE_URL), got ${JSON.stringify(redactUrl(url))}`,
    );
  }
  return { kind: 'postgres', url, schema };
}

/** Where the store is, for messages (without a password). */
function describeTarget(target: StoreTarget): string {
  return target.kind === 'postgres' ? redactUrl(target.url) : `the PGlite data directory ${target.dataDir}`;
}

/** `text` with the URL's password (and the URL itself) masked, for an error message a driver wrote. */
function scrub(text: string, target: StoreTarget): string {
  if (target.kind !== 'postgres') return text;
  let out = text.replaceAll(target.url, redactUrl(target.url));
  try {
    const password = decodeURIComponent(new URL(target.url).password);
    if (password.length > 0) out = out.replaceAll(password, '***');
  } catch {
    // A URL checked by parseRuns parses; nothing to mask otherwise.
  }
  return out;
}

function openStore(target: StoreTarget, timeoutMs: number): RunStore {
  const schema = target.schema === undefined ? {} : { schema: target.schema };
  if (target.kind === 'postgres') {
    return new PostgresStore({
      connectionString: target.url,
      maxConnections: 2,
      connectTimeoutMs: Math.max(1, Math.round(timeoutMs)),
      ...schema,
    });
  }
  return new PGliteStore({ dataDir: target.dataDir, ...schema });
}

/** Reports a failure (on stderr, or as `{ ok: false, error }` with --json) and answers the exit code 1. */
export type Fail = (message: string, extra?: object) => number;

/**
 * Opens the store `target` names (or takes `io.store`), runs `body` with it, and closes it. A failure to open it, or
 * an error `body` throws, is reported through `fail` (exit 1) with the URL's password masked.
 */
export async function withStore(
  target: StoreTarget,
  timeoutMs: number,
  json: boolean,
  io: CliIo,
  body: (store: RunStore, fail: Fail) => Promise<number>,
): Promise<number> {
  const fail: Fail = (message, extra = {}) => {
    const text = scrub(message, target);
    if (json) io.write(`${JSON.stringify({ ok: false, error: text, ...extra })}\n`);
    else io.error(`unified-orchestrator: ${text}\n`);
    return EXIT.failed;
  };
  if (io.store) {
    try {
      return await body(io.store, fail);
    } catch (error) {
      return fail((error as Error).message);
    }
  }
  if (target.kind === 'pglite') {
    // Opening a directory that holds no database would make a new, empty one: refuse instead.
    let entries: string[];
    try {
      entries = statSync(target.dataDir).isDirectory() ? readdirSync(target.dataDir) : [];
    } catch {
      entries = [];
    }
    if (!entries.includes('PG_VERSION')) {
      return fail(
        `no embedded store at ${target.dataDir}: --pglite takes the dataDir of a PGliteStore that was opened before`,
      );
    }
  }
  const store = openStore(target, timeoutMs);
  try {
    try {
      await store.open();
    } catch (error) {
      return fail(`cannot open the store at ${describeTarget(target)}: ${(error as Error).message}`);
    }
    return await body(store, fail);
  } catch (error) {
    return fail((error as Error).message);
  } finally {
    await store.close().catch(() => undefined);
  }
}

/** Whether `run` is a workflow run (its type is `workflow:<name>`). */
export function isWorkflowRun(run: RunRecord): boolean {
  return run.type.startsWith('workflow:');
}

/** Runs a parsed `runs` command against its store; resolves with the exit code. */
export async function runRuns(command: RunsCommand, io: CliIo, pid = process.pid): Promise<number> {
  const { json } = command;
  return withStore(command.target, command.timeoutMs, json, io, async (store, fail) => {
    if (command.verb === 'list') {
      const page = await store.list(command.query);
      io.write(json ? `${JSON.stringify({ ok: true, ...page })}\n` : formatRunPage(page));
      return EXIT.ok;
    }
    const { id, tenantId } = command;
    const run = await store.get(id, tenantId);
    if (!run) {
      return fail(
        `no run ${JSON.stringify(id)} in the store${tenantId === undefined ? '' : ` for tenant ${tenantId}`}`,
        {
          id,
        },
      );
    }
    if (command.verb === 'show') {
      if (!isWorkflowRun(run)) {
        io.write(json ? `${JSON.stringify({ ok: true, run })}\n` : formatRun(run));
        return EXIT.ok;
      }
      const { steps, signals } = await store.history(id, tenantId);
      io.write(
        json
          ? `${JSON.stringify({ ok: true, run, steps, signals })}\n`
          : formatRun(run) + formatWorkflowHistory(run, { steps, signals }, Date.now()),
      );
      return EXIT.ok;
    }
    if (command.verb === 'events') {
      const events = await store.events(id, tenantId);
      io.write(json ? `${JSON.stringify({ ok: true, id, events })}\n` : formatTimeline(run, events));
      return EXIT.ok;
    }
    // retry
    if (!isTerminal(run.status) || run.status === 'completed') {
      return fail(
        `run ${id} is ${run.status}: only a run that ended without success (failed, dead-lettered, timed-out, cancelled) can be retried`,
        { id, status: run.status },
      );
    }
    const nodeId = `cli-${pid}`;
    const newRun: NewRun = {
      id: randomUUID(),
      type: run.type,
      tenantId: run.tenantId,
      idempotencyKey: null,
      // The old deadline has passed or is near: the new run has none, as the orchestrator's runs.retry() does.
      task: { ...run.task, deadlineAt: null },
      createdAt: Date.now(),
    };
    // The CLI holds a lease while it writes, so that no node takes the new run over as a dead node's (a recovery)
    // before it is given back; should the CLI die in between, the lease ends and a node takes it over all the same.
    await store.heartbeat(nodeId, RETRY_LEASE_MS);
    try {
      await store.insert(nodeId, [newRun]);
      // Given back: unowned and queued, so the first running node that serves it claims it.
      await store.append([
        { runId: newRun.id, kind: 'released', at: Date.now(), nodeId, detail: { retryOf: id, by: 'cli' } },
      ]);
    } finally {
      await store.leave(nodeId);
    }
    if (json) io.write(`${JSON.stringify({ ok: true, id, newId: newRun.id })}\n`);
    else
      io.write(
        `Retried run ${id} (${run.status}) as run ${newRun.id}: queued for the first running node that serves ${run.task.requires.length > 0 ? run.task.requires.join(', ') : 'any task'}.\n`,
      );
    return EXIT.ok;
  });
}
