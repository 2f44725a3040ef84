/**
 * The operator CLI (`unified-orchestrator`): reads the cluster's registry and sends control messages through Redis,
 * signed with the cluster's secret, then waits until every live node reports it applied them.
 */
import { hostname, userInfo } from 'node:os';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { Redis } from 'ioredis';
import {
  isPercent,
  parseTraffic,
  type ControlMessage,
  type NodeStatus,
  type TrafficSetting,
} from '../bridge/bridge.js';
import { publishControl, readNodes, readStanding } from '../bridge/redis-control.js';
import { redactRedisUrl } from '../bridge/redis-options.js';
import { MessageSigner } from '../bridge/signing.js';
import { formatStatus, type ClusterView } from './format.js';
import { EXIT, redactUrl, UsageError, type CliIo } from './io.js';
import { parseRuns, RUNS_ONLY_OPTIONS, RUNS_OPTIONS, RUNS_USAGE, runRuns, type RunsCommand } from './runs.js';
import {
  parseWorkflows,
  runWorkflows,
  SIGNAL_HELP,
  WORKFLOWS_HELP,
  WORKFLOWS_ONLY_OPTIONS,
  WORKFLOWS_OPTIONS,
  WORKFLOWS_USAGE,
  type WorkflowsCommand,
} from './workflows.js';

export { EXIT, type CliIo } from './io.js';

export const USAGE = `Usage: unified-orchestrator <command> [options]

Commands:
  status                   nodes, pools, queue depths, breakers, halt and traffic split
  halt [reason...]         every node holds its waiting work and aborts running attempts (they wait again)
  resume                   every node releases the work a halt holds
  traffic                  the cluster's traffic split
  traffic set <percent>    share of legacy calls (0-100) the unified orchestrator takes, on every node
  shadow on|off            shadow mode on every node
  rollback [reason...]     every legacy call back to the legacy implementation at once (0%, shadow off)
${RUNS_USAGE}
${WORKFLOWS_USAGE}

Options:
  --redis <url>            Redis URL (env UO_REDIS_URL, then REDIS_URL) [default: redis://127.0.0.1:6379]
  --namespace <ns>         key prefix the nodes use (env UO_NAMESPACE) [default: uo]
  --secret-file <path>     file holding the cluster's shared secret; otherwise the env variable UO_SECRET
  --encrypt                the nodes seal messages encrypted (their option encrypt: true; env UO_ENCRYPT=1)
  --timeout <ms>           how long to wait for every node to confirm (runs: for a connection) [default: 5000]
  --no-wait                send without waiting for the nodes to confirm
  --strict                 status: exit 1 unless every node is healthy and applies the cluster's halt and split
${RUNS_OPTIONS}
${WORKFLOWS_OPTIONS}
  --json                   machine-readable output (one JSON object)
  -h, --help               this text

Exit status: 0 done, 1 failed (Redis or the store unreachable, a node did not confirm in time, --strict check failed,
a run unknown or not retryable, a signal not delivered, a waited-for run not completed), 2 wrong usage.
\`unified-orchestrator <command> --help\` shows one command's help (workflows, signal).`;

/** The help of one command (\`<command> --help\`), where it has its own. */
const COMMAND_HELP: Readonly<Record<string, string>> = { workflows: WORKFLOWS_HELP, signal: SIGNAL_HELP };

/** The options only the Redis commands take (`runs` commands refuse them). */
const REDIS_ONLY_OPTIONS = ['redis', 'namespace', 'secret-file', 'encrypt', 'no-wait', 'strict'] as const;

interface Parsed {
  readonly command: string[];
  readonly url: string;
  readonly namespace: string;
  readonly secretFile: string | undefined;
  readonly encrypt: boolean;
  readonly timeoutMs: number;
  readonly wait: boolean;
  readonly strict: boolean;
  readonly json: boolean;
  readonly help: boolean;
}

type Values = Record<string, string | boolean | undefined>;

/** The command line as parseArgs reads it (every command's options), or UsageError. */
function parseArgv(argv: readonly string[]): { values: Values; positionals: string[] } {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        redis: { type: 'string' },
        namespace: { type: 'string' },
        'secret-file': { type: 'string' },
        encrypt: { type: 'boolean' },
        timeout: { type: 'string' },
        'no-wait': { type: 'boolean' },
        strict: { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        'database-url': { type: 'string' },
        pglite: { type: 'string' },
        schema: { type: 'string' },
        tenant: { type: 'string' },
        'tenant-id': { type: 'string' },
        type: { type: 'string' },
        status: { type: 'string' },
        since: { type: 'string' },
        until: { type: 'string' },
        limit: { type: 'string' },
        cursor: { type: 'string' },
        input: { type: 'string' },
        id: { type: 'string' },
        version: { type: 'string' },
        'deadline-ms': { type: 'string' },
        'delay-ms': { type: 'string' },
        priority: { type: 'string' },
        wait: { type: 'boolean' },
        'wait-timeout': { type: 'string' },
        payload: { type: 'string' },
        actor: { type: 'string' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** `--timeout` in ms (default 5000), or UsageError. */
function timeoutOf(values: Values): number {
  const timeout = values['timeout'] === undefined ? 5_000 : Number(values['timeout']);
  if (!Number.isFinite(timeout) || timeout <= 0)
    throw new UsageError(`--timeout must be a number of milliseconds > 0, got ${String(values['timeout'])}`);
  return timeout;
}

/** The first of `flags` given, as UsageError: it does not apply to `command`. */
function refuseFlags(values: Values, flags: readonly string[], command: string): void {
  const given = flags.find((flag) => values[flag] !== undefined);
  if (given !== undefined) throw new UsageError(`--${given} does not apply to \`${command}\``);
}

function parse(values: Values, positionals: string[], env: CliIo['env']): Parsed {
  refuseFlags(values, [...RUNS_ONLY_OPTIONS, ...WORKFLOWS_ONLY_OPTIONS], positionals[0] ?? 'this command');
  const timeout = timeoutOf(values);
  const url =
    (values['redis'] as string | undefined) ?? env['UO_REDIS_URL'] ?? env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
  if (!/^rediss?:\/\//i.test(url) || !URL.canParse(url)) {
    // Shown without its password: ioredis's own error would print the URL whole.
    throw new UsageError(
      `Expected a redis:// or rediss:// URL (--redis, UO_REDIS_URL or REDIS_URL), got ${JSON.stringify(redactRedisUrl(url))}`,
    );
  }
  return {
    command: positionals,
    url,
    namespace: (values['namespace'] as string | undefined) ?? env['UO_NAMESPACE'] ?? 'uo',
    secretFile: values['secret-file'] as string | undefined,
    encrypt: values['encrypt'] === true || env['UO_ENCRYPT'] === '1' || env['UO_ENCRYPT'] === 'true',
    timeoutMs: timeout,
    wait: values['no-wait'] !== true,
    strict: values['strict'] === true,
    json: values['json'] === true,
    help: values['help'] === true,
  };
}

/** What a command sends, and how to tell that a node applied it. */
interface Order {
  readonly message: ControlMessage;
  readonly applied: (status: NodeStatus) => boolean;
  readonly describe: string;
}

/** The operator's login name, for the audit trail. */
function operator(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

function order(command: readonly string[], from: string, actor: string): Order | 'status' | 'traffic' {
  const [verb, ...rest] = command;
  const reason = rest.join(' ').trim();
  switch (verb) {
    case 'status':
      if (rest.length > 0) throw new UsageError(`status takes no arguments, got: ${rest.join(' ')}`);
      return 'status';
    case 'halt': {
      const why = reason || `halted by ${from}`;
      return {
        message: { kind: 'halt', reason: why, from, actor },
        applied: (s) => s.halted !== null,
        describe: `halt (${why})`,
      };
    }
    case 'resume':
      if (rest.length > 0) throw new UsageError(`resume takes no arguments, got: ${rest.join(' ')}`);
      return { message: { kind: 'resume', from, actor }, applied: (s) => s.halted === null, describe: 'resume' };
    case 'traffic': {
      if (rest.length === 0 || (rest.length === 1 && rest[0] === 'get')) return 'traffic';
      if (rest[0] !== 'set' || rest.length !== 2)
        throw new UsageError('Expected `traffic set <percent>` (or `traffic` to show the split)');
      const text = rest[1]!.replace(/%$/, '');
      const percent = Number(text);
      if (text === '' || !isPercent(percent))
        throw new UsageError(`The percentage must be a number from 0 to 100, got ${rest[1]}`);
      return {
        message: { kind: 'traffic', value: { percent }, from, actor },
        applied: (s) => s.traffic?.percent === percent,
        describe: `traffic ${percent}% to unified`,
      };
    }
    case 'shadow': {
      if (rest.length !== 1 || (rest[0] !== 'on' && rest[0] !== 'off'))
        throw new UsageError('Expected `shadow on` or `shadow off`');
      const on = rest[0] === 'on';
      return {
        message: { kind: 'traffic', value: { shadow: on }, from, actor },
        applied: (s) => s.traffic?.shadow === on,
        describe: `shadow ${rest[0]}`,
      };
    }
    case 'rollback':
      return {
        message: { kind: 'rollback', ...(reason ? { reason } : {}), from, actor },
        applied: (s) => s.traffic !== null && s.traffic.percent === 0 && !s.traffic.shadow,
        describe: 'rollback (0% to unified, shadow off)',
      };
    case undefined:
      throw new UsageError('No command given');
    default:
      throw new UsageError(`Unknown command: ${verb}`);
  }
}

/** The cluster's standing halt and traffic setting, from its standing control messages. */
function standingOf(messages: readonly ControlMessage[]): { halted: string | null; traffic: TrafficSetting | null } {
  let halted: string | null = null;
  let traffic: TrafficSetting | null = null;
  for (const m of messages) {
    if (m.kind === 'halt') halted = m.reason ?? 'halted';
    else if (m.kind === 'resume') halted = null;
    else if (m.kind === 'rollback') traffic = { percent: 0, shadow: false };
    else if (m.kind === 'traffic') traffic = parseTraffic(m.value, traffic ?? undefined) ?? traffic;
  }
  return { halted, traffic };
}

async function secretOf(parsed: Parsed, env: CliIo['env']): Promise<string> {
  let secret = env['UO_SECRET'];
  if (parsed.secretFile !== undefined) {
    try {
      secret = (await readFile(parsed.secretFile, 'utf8')).trim();
    } catch (error) {
      throw new UsageError(`Cannot read the secret file ${parsed.secretFile}: ${(error as Error).message}`);
    }
  }
  if (secret === undefined || secret.length < 16) {
    throw new UsageError(
      'The cluster secret is needed to sign and read messages: set UO_SECRET (or pass --secret-file) to the secret the nodes share (at least 16 characters)',
    );
  }
  return secret;
}

/** Runs the CLI; resolves with the exit code. */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed: Parsed;
  let what: ReturnType<typeof order>;
  let secret: string;
  const from = `cli@${hostname()}:${process.pid}`;
  const actor = `cli:${operator()}@${hostname()}`;
  let runs: RunsCommand | undefined;
  let workflows: WorkflowsCommand | undefined;
  let usage = USAGE;
  try {
    const { values, positionals } = parseArgv(argv);
    const verb = positionals[0];
    usage = verb !== undefined && Object.hasOwn(COMMAND_HELP, verb) ? COMMAND_HELP[verb]! : USAGE;
    if (values['help'] === true) {
      io.write(`${usage}\n`);
      return EXIT.ok;
    }
    if (verb === 'runs') {
      refuseFlags(values, REDIS_ONLY_OPTIONS, 'runs');
      refuseFlags(values, WORKFLOWS_ONLY_OPTIONS, 'runs');
      runs = parseRuns(positionals.slice(1), values, io.env, timeoutOf(values));
    } else if (verb === 'workflows' || verb === 'signal') {
      refuseFlags(values, REDIS_ONLY_OPTIONS, verb);
      workflows = parseWorkflows(verb, positionals.slice(1), values, io.env, timeoutOf(values), actor);
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.error(`unified-orchestrator: ${error.message}\n\n${usage}\n`);
    return EXIT.usage;
  }
  if (runs) return runRuns(runs, io);
  if (workflows) return runWorkflows(workflows, io);
  try {
    const { values, positionals } = parseArgv(argv);
    parsed = parse(values, positionals, io.env);
    what = order(parsed.command, from, actor);
    secret = await secretOf(parsed, io.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.error(`unified-orchestrator: ${error.message}\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  const fail = (message: string, extra: object = {}): number => {
    if (parsed.json) io.write(`${JSON.stringify({ ok: false, error: message, ...extra })}\n`);
    else io.error(`unified-orchestrator: ${message}\n`);
    return EXIT.failed;
  };
  const signer = new MessageSigner(secret, parsed.namespace, 60_000, { encrypt: parsed.encrypt });
  // Entries that failed to open because the nodes and the CLI disagree on encryption (their signature checked).
  const mismatchHint = (): string =>
    signer.mismatch
      ? ` (some are ${signer.mismatch.encrypted ? 'encrypted: pass --encrypt' : 'not encrypted: drop --encrypt'}, as the nodes' \`encrypt\` option says)`
      : '';
  const { Redis } = await import('ioredis');
  const redis: Redis = new Redis(parsed.url, {
    lazyConnect: true,
    connectTimeout: Math.min(parsed.timeoutMs, 10_000),
    maxRetriesPerRequest: 1,
    retryStrategy: () => null, // an operator tool reports a dead Redis instead of waiting for it
    disconnectTimeout: 100, // and exits at once after (ioredis would keep a dead socket 2 s)
  });
  redis.on('error', () => {}); // reported by the failing command
  try {
    try {
      await redis.connect();
    } catch (error) {
      return fail(`cannot reach Redis at ${redactUrl(parsed.url)}: ${(error as Error).message}`);
    }
    const view = async (): Promise<ClusterView> => {
      const { nodes, rejected, standing: vouched } = await readNodes(redis, signer, parsed.namespace);
      // Per slot the newest among the standing hash and what live nodes applied: an old entry written back into the
      // hash does not show as the cluster's setting.
      const standing = await readStanding(redis, signer, parsed.namespace, vouched);
      return {
        redis: redactUrl(parsed.url),
        namespace: parsed.namespace,
        nodes,
        rejected: rejected + standing.rejected,
        standing: standingOf(standing.messages),
      };
    };
    if (what === 'status' || what === 'traffic') {
      const cluster = await view();
      const problems = what === 'status' && parsed.strict ? strictProblems(cluster) : [];
      if (parsed.json)
        io.write(
          `${JSON.stringify({ ok: problems.length === 0, ...(what === 'traffic' ? { traffic: cluster.standing.traffic, nodes: cluster.nodes.map((n) => ({ nodeId: n.nodeId, traffic: n.status?.traffic ?? null })) } : cluster), ...(problems.length > 0 ? { problems } : {}) })}\n`,
        );
      else
        io.write(
          formatStatus(cluster, what) +
            (problems.length > 0 ? `\nProblems:\n${problems.map((p) => `  - ${p}`).join('\n')}\n` : ''),
        );
      return problems.length === 0 ? EXIT.ok : EXIT.failed;
    }
    const before = await view();
    // Entries that do not verify mean another secret (or tampering): the nodes would drop this message, and
    // writing it would replace the cluster's standing state with one they cannot read.
    if (before.rejected > 0) {
      return fail(
        `${before.rejected} registry or control entr${before.rejected === 1 ? 'y' : 'ies'} in namespace ${parsed.namespace} failed the signature check: is UO_SECRET the secret the nodes share?${mismatchHint()} Nothing was sent.`,
      );
    }
    const targets = before.nodes;
    await publishControl(redis, signer, parsed.namespace, what.message);
    const pending = new Set(targets.map((n) => n.nodeId));
    // Nodes whose registry entry went away before they confirmed: gone, or alive but no longer heard (a lost
    // connection). Either way nobody saw them apply it, so they are not counted as confirmed.
    const left = new Set<string>();
    const deadline = Date.now() + parsed.timeoutMs;
    while (parsed.wait && pending.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const latest = (await readNodes(redis, signer, parsed.namespace)).nodes;
      const live = new Set(latest.map((n) => n.nodeId));
      for (const n of latest) if (n.status && what.applied(n.status)) pending.delete(n.nodeId);
      for (const id of pending) {
        if (live.has(id)) continue;
        pending.delete(id);
        left.add(id);
      }
    }
    const confirmed = targets.map((n) => n.nodeId).filter((id) => !pending.has(id) && !left.has(id));
    const result = {
      ok: !parsed.wait || (pending.size === 0 && left.size === 0),
      command: what.describe,
      sent: what.message,
      waited: parsed.wait,
      confirmed,
      unconfirmed: parsed.wait ? [...pending] : [],
      left: [...left],
    };
    if (parsed.json) io.write(`${JSON.stringify(result)}\n`);
    else {
      const lines = [`Sent ${what.describe} to namespace ${parsed.namespace}.`];
      if (targets.length === 0) lines.push('No live node now: the setting stands, and nodes apply it as they join.');
      else if (!parsed.wait) lines.push(`${targets.length} live node(s); not waiting for them to confirm.`);
      else
        lines.push(
          `Confirmed by ${confirmed.length} of ${targets.length} node(s)${confirmed.length > 0 ? `: ${confirmed.join(', ')}` : ''}.`,
        );
      if (parsed.wait && pending.size > 0)
        lines.push(`Not confirmed within ${parsed.timeoutMs} ms: ${[...pending].join(', ')}.`);
      if (left.size > 0)
        lines.push(
          `Left the registry before confirming: ${[...left].join(', ')}. The setting stands and a node applies it when it joins again; check that these nodes are really gone.`,
        );
      if (result.ok) io.write(`${lines.join('\n')}\n`);
      else io.error(`${lines.join('\n')}\n`);
    }
    return result.ok ? EXIT.ok : EXIT.failed;
  } catch (error) {
    return fail((error as Error).message);
  } finally {
    redis.disconnect();
  }
}

/** With --strict: what keeps the cluster from being healthy and in agreement. */
function strictProblems(cluster: ClusterView): string[] {
  const problems: string[] = [];
  if (cluster.nodes.length === 0) problems.push('no live node');
  for (const n of cluster.nodes) {
    const s = n.status;
    if (!s) {
      problems.push(`${n.nodeId} reports no status (an older version?)`);
      continue;
    }
    if (s.health === 'unhealthy') problems.push(`${n.nodeId} is unhealthy`);
    if ((s.halted === null) !== (cluster.standing.halted === null))
      problems.push(
        `${n.nodeId} is ${s.halted === null ? 'running' : 'halted'} but the cluster is ${cluster.standing.halted === null ? 'running' : 'halted'}`,
      );
    const want = cluster.standing.traffic;
    if (want && (s.traffic?.percent !== want.percent || s.traffic?.shadow !== want.shadow))
      problems.push(
        `${n.nodeId} applies traffic ${s.traffic ? `${s.traffic.percent}%` : 'none'}, the cluster's split is ${want.percent}%`,
      );
  }
  if (cluster.rejected > 0)
    problems.push(
      `${cluster.rejected} registry or control entr${cluster.rejected === 1 ? 'y' : 'ies'} failed the signature check (wrong secret, or tampering)`,
    );
  return problems;
}
