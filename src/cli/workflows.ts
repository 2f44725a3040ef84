/**
 * The CLI's workflow commands, straight on the store (no orchestrator runs in the CLI's process, and no workflow
 * code): `workflows start` stores a new workflow run for the nodes that registered its workflow version, and
 * `signal` delivers a signal to a workflow run.
 */
import { randomUUID } from 'node:crypto';
import { isTerminal, type NewRun, type RunRecord, type RunStore } from '../store/store.js';
import { EXIT, UsageError, type CliIo } from './io.js';
import { isWorkflowRun, targetOf, tenantOf, withStore, type Fail, type StoreTarget } from './runs.js';

/** The `workflows` and `signal` lines of the CLI's usage text. */
export const WORKFLOWS_USAGE = `  workflows start <name>   store a new run of workflow <name> (--version, --input …) for a node that registered
                           that version to run; prints its id
  signal <runId> <name>    deliver signal <name> (--payload) to a workflow run: a wait for it goes on`;

/** The options of `workflows start`, as its help lists them. */
const START_OPTIONS_TEXT = `  --version <v>            the workflow version to run (required: the store does not know which versions the
                           nodes registered; orchestrator.workflow()'s \`version\`, '1' by default)
  --input <json>           the run's input, a JSON value [default: null]
  --id <id>                the run's id; a run the store holds under it is returned, not started again
                           [default: a random UUID]
  --deadline-ms <n>        the run must end within n ms, or it ends timed-out [default: none; the deadlineMs the
                           workflow was registered with does not apply to runs the CLI stores]
  --delay-ms <n>           not started before n ms from now [default: 0]
  --priority <n>           higher is claimed first, an integer [default: 0]
  --wait                   wait until the run ends and print its result; exit 1 unless it completed
  --wait-timeout <ms>      with --wait: stop waiting after this long (exit 1; the run goes on) [default: no limit]`;

/** The options of `signal`, as its help lists them. */
const SIGNAL_OPTIONS_TEXT = `  --payload <json>         the signal's payload, a JSON value [default: null]
  --actor <name>           who sends it, recorded with the signal [default: cli:<user>@<host>]`;

/** The `workflows` and `signal` options of the CLI's usage text. */
export const WORKFLOWS_OPTIONS = `  --version <v>            workflows start: the registered workflow version to run (required)
  --input <json>           workflows start: the run's input, a JSON value [default: null]
  --id <id>, --deadline-ms <n>, --delay-ms <n>, --priority <n>, --wait, --wait-timeout <ms>
                           workflows start: see \`unified-orchestrator workflows --help\`
  --payload <json>         signal: the signal's payload, a JSON value [default: null]
  --actor <name>           signal: who sends it, recorded with it [default: cli:<user>@<host>]`;

/** `workflows --help`. */
export const WORKFLOWS_HELP = `Usage: unified-orchestrator workflows start <name> --version <v> [--input <json>] [--tenant-id <t>] [--id <id>]
         [--deadline-ms <n>] [--delay-ms <n>] [--priority <n>] [--wait [--wait-timeout <ms>]] [--json]
       (and the store: --database-url <url> | DATABASE_URL | --pglite <dir>, --schema <name>)

Stores a new run of workflow <name> in the store, queued for any node that registered <name> at version <v>
(orchestrator.workflow(name, { version }, fn)): the CLI runs no workflow code. A run of a version no node has
stays queued until a node with it starts. Prints the run's id ({ ok, runId, … } with --json).

Options:
${START_OPTIONS_TEXT}
  --tenant-id <t>          the tenant the run (and its tasks) belong to
  --timeout <ms>           how long to wait for a connection to the store [default: 5000]
  --json                   machine-readable output (one JSON object)

Exit status: 0 stored (with --wait: completed), 1 failed (the store unreachable, the id taken by another run; with
--wait: the run ended otherwise, or the wait timed out), 2 wrong usage.`;

/** `signal --help`. */
export const SIGNAL_HELP = `Usage: unified-orchestrator signal <runId> <name> [--payload <json>] [--actor <name>] [--tenant-id <t>] [--json]
       (and the store: --database-url <url> | DATABASE_URL | --pglite <dir>, --schema <name>)

Delivers signal <name> to a workflow run, for its run.signal(<name>) wait. A run parked waiting for it is woken (a
node that has its version resumes it); a signal sent before the wait is kept for it.

Options:
${SIGNAL_OPTIONS_TEXT}
  --tenant-id <t>          the run must belong to this tenant (another tenant's run looks unknown)
  --timeout <ms>           how long to wait for a connection to the store [default: 5000]
  --json                   machine-readable output (one JSON object)

Exit status: 0 delivered, 1 not delivered (no such run, not a workflow run, the run already ended, the store
unreachable), 2 wrong usage.`;

/** The options only `workflows start` takes. */
const START_OPTIONS = [
  'input',
  'id',
  'version',
  'deadline-ms',
  'delay-ms',
  'priority',
  'wait',
  'wait-timeout',
] as const;
/** The options only `signal` takes. */
const SIGNAL_OPTIONS = ['payload', 'actor'] as const;

/** The options only the workflow commands take (others refuse them). */
export const WORKFLOWS_ONLY_OPTIONS = [...START_OPTIONS, ...SIGNAL_OPTIONS] as const;

/** The options of `runs list` that the workflow commands refuse. */
const LIST_OPTIONS = ['type', 'status', 'since', 'until', 'limit', 'cursor'] as const;

/** How often `workflows start --wait` reads the run. */
const WAIT_POLL_MS = 200;

/** A parsed `workflows start` or `signal` command. */
export type WorkflowsCommand =
  | {
      readonly verb: 'start';
      readonly name: string;
      readonly version: string;
      readonly input: unknown;
      readonly id: string | undefined;
      readonly tenantId: string | undefined;
      readonly deadlineMs: number | undefined;
      readonly delayMs: number;
      readonly priority: number;
      readonly wait: boolean;
      readonly waitTimeoutMs: number | undefined;
      readonly target: StoreTarget;
      readonly json: boolean;
      readonly timeoutMs: number;
    }
  | {
      readonly verb: 'signal';
      readonly runId: string;
      readonly name: string;
      readonly payload: unknown;
      readonly actor: string;
      readonly tenantId: string | undefined;
      readonly target: StoreTarget;
      readonly json: boolean;
      readonly timeoutMs: number;
    };

type Values = Readonly<Record<string, string | boolean | undefined>>;

/** `--<flag>`'s JSON value, or UsageError saying how to write one. */
function jsonFlag(values: Values, flag: string): unknown {
  const text = values[flag] as string | undefined;
  if (text === undefined) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new UsageError(
      `--${flag} must be JSON (${(error as Error).message}): quote it for the shell, e.g. --${flag} '{"ok":true}' (a string is '"text"')`,
    );
  }
}

/** `--<flag>` as a number of ms (≥ `min`), or undefined when not given; UsageError otherwise. */
function msFlag(values: Values, flag: string, min: number): number | undefined {
  const text = values[flag] as string | undefined;
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < min)
    throw new UsageError(`--${flag} must be a number of milliseconds ${min === 0 ? '≥ 0' : '> 0'}, got ${text}`);
  return n;
}

/** The first of `flags` given, as UsageError: it does not apply to `command`. */
function refuse(values: Values, flags: readonly string[], command: string): void {
  const given = flags.find((flag) => values[flag] !== undefined);
  if (given !== undefined) throw new UsageError(`--${given} does not apply to \`${command}\``);
}

/**
 * Checks a `workflows …` (`positionals` after `workflows`) or `signal …` (after `signal`) command line; throws
 * UsageError naming what to fix. `actor` is the default actor of a signal.
 */
export function parseWorkflows(
  command: 'workflows' | 'signal',
  positionals: readonly string[],
  values: Values,
  env: CliIo['env'],
  timeoutMs: number,
  actor: string,
): WorkflowsCommand {
  const json = values['json'] === true;
  const string = (flag: string): string | undefined => values[flag] as string | undefined;
  if (command === 'signal') {
    refuse(values, [...LIST_OPTIONS, ...START_OPTIONS], 'signal');
    if (positionals.length !== 2 || positionals.some((p) => p === ''))
      throw new UsageError(
        `Expected \`signal <runId> <name>\`: the workflow run's id and the signal's name${positionals.length > 2 ? ` (got ${positionals.length} arguments: pass the payload with --payload)` : ''}`,
      );
    const [runId, name] = positionals as [string, string];
    const payload = jsonFlag(values, 'payload');
    const given = string('actor');
    if (given !== undefined && given.trim() === '') throw new UsageError('--actor needs a name, got an empty one');
    return {
      verb: 'signal',
      runId,
      name,
      payload,
      actor: given ?? actor,
      tenantId: tenantOf(values),
      target: targetOf(values, env),
      json,
      timeoutMs,
    };
  }
  const [verb, ...rest] = positionals;
  if (verb === undefined) throw new UsageError('Expected `workflows start <name>`');
  if (verb !== 'start') throw new UsageError(`Unknown workflows command: ${verb} (start)`);
  refuse(values, [...LIST_OPTIONS, ...SIGNAL_OPTIONS], 'workflows start');
  if (rest.length !== 1 || rest[0] === '')
    throw new UsageError(
      `Expected \`workflows start <name>\`: one workflow name${rest.length > 1 ? ` (got ${rest.length}: pass the input with --input)` : ''}`,
    );
  const name = rest[0]!;
  if (name.includes('@'))
    throw new UsageError(`A workflow name has no '@' (got ${name}): pass the version with --version`);
  const version = string('version');
  if (version === undefined || version === '')
    throw new UsageError(
      "--version is required: the version the nodes registered the workflow under (orchestrator.workflow()'s `version`, '1' when not given); the store does not record which versions nodes have",
    );
  const input = jsonFlag(values, 'input');
  const id = string('id');
  if (id !== undefined && (id === '' || id.length > 256))
    throw new UsageError(`--id must be a non-empty run id of at most 256 characters, got ${JSON.stringify(id)}`);
  const tenantId = tenantOf(values);
  if (tenantId === '') throw new UsageError('--tenant-id needs a tenant id, got an empty one');
  const priorityText = string('priority');
  const priority = priorityText === undefined ? 0 : Number(priorityText);
  if (priorityText !== undefined && (!/^-?\d+$/.test(priorityText.trim()) || !Number.isSafeInteger(priority)))
    throw new UsageError(`--priority must be an integer, got ${priorityText}`);
  const wait = values['wait'] === true;
  const waitTimeoutMs = msFlag(values, 'wait-timeout', 1);
  if (waitTimeoutMs !== undefined && !wait) throw new UsageError('--wait-timeout applies with --wait only');
  return {
    verb: 'start',
    name,
    version,
    input,
    id,
    tenantId,
    deadlineMs: msFlag(values, 'deadline-ms', 1),
    delayMs: msFlag(values, 'delay-ms', 0) ?? 0,
    priority,
    wait,
    waitTimeoutMs,
    target: targetOf(values, env),
    json,
    timeoutMs,
  };
}

/** Runs a parsed `workflows start` or `signal` against its store; resolves with the exit code. */
export async function runWorkflows(command: WorkflowsCommand, io: CliIo, pid = process.pid): Promise<number> {
  return withStore(command.target, command.timeoutMs, command.json, io, (store, fail) =>
    command.verb === 'start' ? start(command, store, io, fail, pid) : signal(command, store, io, fail, pid),
  );
}

type StartCommand = Extract<WorkflowsCommand, { verb: 'start' }>;
type SignalCommand = Extract<WorkflowsCommand, { verb: 'signal' }>;

async function start(command: StartCommand, store: RunStore, io: CliIo, fail: Fail, pid: number): Promise<number> {
  const { name, version, json } = command;
  const type = `workflow:${name}`;
  const capability = `workflow:${name}@${version}`;
  const createdAt = Date.now();
  const run: NewRun = {
    id: command.id ?? randomUUID(),
    type,
    tenantId: command.tenantId ?? null,
    idempotencyKey: null,
    // As WorkflowRunner.startRun stores a run for a version its node does not have.
    task: {
      requires: [capability],
      prefers: [],
      priority: command.priority,
      payload: command.input,
      timeoutMs: null,
      deadlineAt: command.deadlineMs === undefined ? null : createdAt + command.deadlineMs,
      maxAttempts: 1,
      affinityKey: null,
    },
    createdAt,
    // A run inserted with a `notBefore` has no owner: any node with the version claims it when due (at once when
    // there is no delay). One write, and the CLI holds no lease.
    notBefore: createdAt + command.delayMs,
  };
  const [outcome] = await store.insert(`cli-${pid}`, [run]);
  let existing = false;
  if (outcome?.kind === 'duplicate') {
    const held = outcome.existing;
    if (held.tenantId !== run.tenantId || held.type !== type) {
      return fail(
        `run id ${run.id} is taken by another run${held.tenantId !== run.tenantId ? '' : ` (of type ${held.type})`}: choose another --id`,
        { runId: run.id },
      );
    }
    existing = true;
  }
  const record = await store.get(run.id, command.tenantId);
  if (!record)
    return fail(`run ${run.id} is not in the store after it was stored (pruned at once?)`, { runId: run.id });
  const summary = {
    runId: record.id,
    workflow: name,
    version: versionOf(record) ?? version,
    tenantId: record.tenantId,
    existing,
    status: record.status,
    notBefore: record.notBefore,
  };
  if (!command.wait) {
    if (json) io.write(`${JSON.stringify({ ok: true, ...summary })}\n`);
    else io.write(`${startedText(record, summary.version, existing)}\n`);
    return EXIT.ok;
  }
  if (!json) io.error(`${startedText(record, summary.version, existing)} Waiting for it to end…\n`);
  const end = await waitForEnd(store, record, command.waitTimeoutMs);
  if (!isTerminal(end.status)) {
    const text = `run ${end.id} is still ${end.status}${end.waitingFor.length > 0 ? ` (waiting for signal ${end.waitingFor.join(' or ')})` : ''} after ${command.waitTimeoutMs} ms: stopped waiting; it goes on`;
    return fail(text, { ...summary, status: end.status, ended: false });
  }
  const ok = end.status === 'completed';
  if (json) {
    io.write(
      `${JSON.stringify({ ok, ...summary, status: end.status, ended: true, result: end.result, error: end.error, cost: end.cost })}\n`,
    );
  } else if (ok) {
    io.write(`Run ${end.id} completed: ${JSON.stringify(end.result)}\n`);
  } else {
    io.error(
      `unified-orchestrator: run ${end.id} ended ${end.status}${end.error ? `: ${end.error.code ?? end.error.name}: ${end.error.message}` : ''}\n`,
    );
  }
  return ok ? EXIT.ok : EXIT.failed;
}

/** The version of a workflow run, from its `requires` (`workflow:<name>@<version>`). */
function versionOf(run: RunRecord): string | undefined {
  const cap = run.task.requires[0];
  if (cap === undefined) return undefined;
  const at = cap.lastIndexOf('@');
  return at < 0 ? undefined : cap.slice(at + 1);
}

function startedText(run: RunRecord, version: string, existing: boolean): string {
  const workflow = `${run.type.slice('workflow:'.length)}@${version}`;
  if (existing) return `Run ${run.id} (${workflow}) is in the store already (${run.status}): nothing new was stored.`;
  const when =
    run.notBefore !== null && run.notBefore > run.createdAt
      ? `due at ${new Date(run.notBefore).toISOString()}`
      : 'queued';
  return `Started ${workflow} as run ${run.id}${run.tenantId === null ? '' : ` (tenant ${run.tenantId})`}: ${when} for the first node that registers ${workflow}.`;
}

/** Reads the run until it is terminal, or `timeoutMs` passed; the last record read. */
async function waitForEnd(store: RunStore, first: RunRecord, timeoutMs: number | undefined): Promise<RunRecord> {
  const until = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
  let run = first;
  while (!isTerminal(run.status)) {
    const left = until - Date.now();
    if (left <= 0) return run;
    await new Promise((resolve) => setTimeout(resolve, Math.min(WAIT_POLL_MS, left)));
    run = (await store.get(run.id)) ?? run;
  }
  return run;
}

async function signal(command: SignalCommand, store: RunStore, io: CliIo, fail: Fail, pid: number): Promise<number> {
  const { runId, name, tenantId, json } = command;
  const unknown = (): number =>
    fail(`no run ${JSON.stringify(runId)} in the store${tenantId === undefined ? '' : ` for tenant ${tenantId}`}`, {
      runId,
    });
  const run = await store.get(runId, tenantId);
  if (!run) return unknown();
  if (!isWorkflowRun(run))
    return fail(`run ${runId} is a task of type ${run.type}, not a workflow run: only workflow runs take signals`, {
      runId,
      type: run.type,
    });
  const ended = (status: string): number =>
    fail(`run ${runId} has ended (${status}): the signal was not delivered`, { runId, status });
  if (isTerminal(run.status)) return ended(run.status);
  const outcome = await store.signal({
    runId,
    ...(tenantId === undefined ? {} : { tenantId }),
    name,
    payload: command.payload,
    actor: command.actor,
    at: Date.now(),
    nodeId: `cli-${pid}`,
  });
  if (outcome.kind === 'unknown') return unknown();
  if (outcome.kind === 'ended') return ended(outcome.status);
  const waiting = run.waitingFor.includes(name);
  if (json) {
    io.write(
      `${JSON.stringify({ ok: true, runId, signal: name, signalId: outcome.id, actor: command.actor, waiting })}\n`,
    );
  } else {
    io.write(
      `Delivered signal ${name} to run ${runId} (signal ${outcome.id}, from ${command.actor}): ${waiting ? 'it was waiting for it, and resumes on a node that has its version.' : `kept for its next wait for ${name}.`}\n`,
    );
  }
  return EXIT.ok;
}
