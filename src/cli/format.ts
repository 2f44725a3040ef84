/** Human-readable output of the operator CLI. */
import type { NodeInfo, TrafficSetting } from '../bridge/bridge.js';
import type { RunEvent, RunPage, RunRecord, StoredError, WorkflowHistory } from '../store/store.js';

/** What `status` reads: the live nodes and the cluster's standing halt and split. */
export interface ClusterView {
  readonly redis: string;
  readonly namespace: string;
  readonly nodes: readonly NodeInfo[];
  /** Registry or control entries that failed the signature check. */
  readonly rejected: number;
  readonly standing: { readonly halted: string | null; readonly traffic: TrafficSetting | null };
}

const traffic = (t: TrafficSetting | null | undefined): string =>
  t ? `${t.percent}% unified, shadow ${t.shadow ? 'on' : 'off'}` : 'not set (all legacy)';

/** Columns padded to their widest cell. */
function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function formatStatus(cluster: ClusterView, what: 'status' | 'traffic'): string {
  const out: string[] = [];
  const { standing } = cluster;
  out.push(`Cluster ${cluster.namespace} at ${cluster.redis}: ${cluster.nodes.length} live node(s)`);
  out.push(
    `Cluster setting: ${standing.halted === null ? 'running' : `HALTED (${standing.halted})`}; traffic ${traffic(standing.traffic)}`,
  );
  if (cluster.rejected > 0)
    out.push(
      `Warning: ${cluster.rejected} entr${cluster.rejected === 1 ? 'y' : 'ies'} failed the signature check (wrong secret, or tampering)`,
    );
  if (cluster.nodes.length === 0) return `${out.join('\n')}\n`;
  if (what === 'traffic') {
    out.push('', table([['NODE', 'TRAFFIC'], ...cluster.nodes.map((n) => [n.nodeId, traffic(n.status?.traffic)])]));
    return `${out.join('\n')}\n`;
  }
  const now = Date.now();
  const rows = [
    ['NODE', 'STATE', 'HEALTH', 'HALTED', 'TRAFFIC', 'RUNNING', 'WAITING', 'FREE/SLOTS', 'BREAKERS', 'BEAT'],
  ];
  for (const n of cluster.nodes) {
    const s = n.status;
    rows.push([
      n.nodeId,
      s?.state ?? '?',
      s?.health ?? '?',
      s ? (s.halted === null ? 'no' : `yes: ${s.halted}`) : '?',
      s?.traffic ? `${s.traffic.percent}%${s.traffic.shadow ? ' +shadow' : ''}` : '-',
      String(s?.running ?? '?'),
      String(s?.waiting ?? '?'),
      `${n.freeSlots}/${n.slots}`,
      s
        ? `${s.breakers.open} open, ${s.breakers.halfOpen} half-open${s.breakers.dependenciesOpen.length > 0 ? `; deps open: ${s.breakers.dependenciesOpen.join(', ')}` : ''}`
        : '?',
      `${Math.max(0, Math.round((now - n.heartbeatAt) / 100) / 10)}s ago`,
    ]);
  }
  out.push('', table(rows));
  const pools = cluster.nodes.flatMap((n) =>
    (n.status?.pools ?? []).map((p) => [
      n.nodeId,
      p.role,
      String(p.members),
      String(p.busy),
      `${p.minAgents}-${p.maxAgents}`,
    ]),
  );
  if (pools.length > 0) out.push('', 'Pools', table([['NODE', 'ROLE', 'MEMBERS', 'BUSY', 'MIN-MAX'], ...pools]));
  const queues = cluster.nodes.flatMap((n) =>
    Object.entries(n.status?.queues ?? {})
      .filter(([, depth]) => depth > 0)
      .map(([klass, depth]) => [n.nodeId, klass, String(depth)]),
  );
  out.push('', queues.length > 0 ? `Queues\n${table([['NODE', 'CLASS', 'WAITING'], ...queues])}` : 'Queues: empty');
  return `${out.join('\n')}\n`;
}

// --- runs ---------------------------------------------------------------------------------------------

const time = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString());

const errorText = (e: StoredError): string => `${e.code ?? e.name}: ${e.message}`;

/** A JSON value on one line, cut at `max` characters. */
function jsonLine(value: unknown, max = 200): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? 'null';
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** `runs list`: one row per run, and how to ask for the next page. */
export function formatRunPage(page: RunPage): string {
  if (page.runs.length === 0) return 'No runs match.\n';
  const rows = [['ID', 'TYPE', 'TENANT', 'STATUS', 'ATTEMPTS', 'OWNER', 'CREATED', 'FINISHED']];
  for (const r of page.runs) {
    rows.push([
      r.id,
      r.type,
      r.tenantId ?? '-',
      r.status,
      String(r.attempts),
      r.owner ?? '-',
      time(r.createdAt),
      time(r.finishedAt),
    ]);
  }
  const next = page.cursor === null ? '' : `\nMore runs: add --cursor ${page.cursor}\n`;
  return `${table(rows)}\n${next}`;
}

/** `runs show`: the run's fields, one per line. */
export function formatRun(run: RunRecord): string {
  const t = run.task;
  const lines: [string, string][] = [
    ['Run', run.id],
    ['Type', run.type],
    ['Tenant', run.tenantId ?? '-'],
    ['Status', run.status],
    [
      'Attempts',
      `${run.attempts} of ${t.maxAttempts}${run.recoveries > 0 ? ` (taken over ${run.recoveries}x from a dead node)` : ''}`,
    ],
    ['Owner', run.owner ?? '- (queued for any node)'],
    ['Idempotency key', run.idempotencyKey ?? '-'],
    ['Requires', t.requires.length > 0 ? t.requires.join(', ') : '-'],
    ['Prefers', t.prefers.length > 0 ? t.prefers.join(', ') : '-'],
    ['Priority', String(t.priority)],
    ['Timeout', t.timeoutMs === null ? 'none' : `${t.timeoutMs} ms per attempt`],
    ['Deadline', time(t.deadlineAt)],
    ['Created', time(run.createdAt)],
    ['Updated', time(run.updatedAt)],
    ['Finished', time(run.finishedAt)],
    ['Payload', jsonLine(t.payload)],
  ];
  if (run.type.startsWith('workflow:') && t.requires.length === 1) {
    // A workflow run requires `workflow:<name>@<version>`: the version of the code that runs it.
    lines.splice(2, 0, ['Workflow', t.requires[0]!.slice('workflow:'.length)]);
  }
  if (run.waitingFor.length > 0) {
    lines.push([
      'Waiting for',
      `signal ${run.waitingFor.join(' or ')}${run.notBefore === null ? '' : `, or until ${time(run.notBefore)}`}`,
    ]);
  } else if (run.notBefore !== null) {
    lines.push(['Not before', time(run.notBefore)]);
  }
  if (run.agentId !== null) lines.push(['Agent', run.agentId]);
  if (run.cost > 0) lines.push(['Cost', String(run.cost)]);
  if (run.status === 'completed') lines.push(['Result', jsonLine(run.result)]);
  if (run.error) lines.push(['Error', errorText(run.error)]);
  const width = Math.max(...lines.map(([k]) => k.length)) + 1;
  return `${lines.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n')}\n`;
}

/** `runs events`: the run's timeline, one event a line, with the time since the run was queued. */
export function formatTimeline(run: RunRecord, events: readonly RunEvent[]): string {
  const out = [`Run ${run.id} (${run.type}${run.tenantId === null ? '' : `, tenant ${run.tenantId}`}): ${run.status}`];
  const start = events[0]?.at ?? run.createdAt;
  const rows = events.map((e) => {
    const what: string[] = [];
    if (e.attempt !== null) what.push(`attempt ${e.attempt}`);
    if (e.agentId !== null) what.push(`on agent ${e.agentId}`);
    if (e.nodeId !== null) what.push(`node ${e.nodeId}`);
    if (e.error) what.push(`error ${errorText(e.error)}`);
    if (e.detail && Object.keys(e.detail).length > 0) what.push(jsonLine(e.detail, 120));
    return [time(e.at), `+${Math.max(0, e.at - start)}ms`, e.kind, what.join(', ')];
  });
  out.push(rows.length === 0 ? 'No events.' : table([['AT', 'SINCE', 'EVENT', 'DETAIL'], ...rows]));
  return `${out.join('\n')}\n`;
}

/** A duration for people: `850ms`, `12.3s`, `4m05s`, `2h07m`. */
export function duration(ms: number): string {
  const n = Math.max(0, Math.round(ms));
  if (n < 1_000) return `${n}ms`;
  if (n < 60_000) return `${(Math.floor(n / 100) / 10).toFixed(1)}s`;
  const s = Math.floor(n / 1_000);
  if (s < 3_600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3_600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

/**
 * `runs show` of a workflow run, after the run's fields: its steps in the order the workflow called them (kind,
 * status, how long, the agent, attempts and cost of a task step and its child run, a wait's wake time), the errors of
 * failed steps, then the signals sent to it and the step that consumed each. `now` times the steps still under way.
 */
export function formatWorkflowHistory(run: RunRecord, history: WorkflowHistory, now: number): string {
  const out: string[] = [''];
  const { steps, signals } = history;
  if (steps.length === 0) {
    out.push(isLive(run) ? 'Steps: none yet' : 'Steps: none');
  } else {
    const rows = [['#', 'KIND', 'NAME', 'STATUS', 'DURATION', 'AGENT', 'ATTEMPTS', 'COST', 'CHILD RUN', 'WAKES AT']];
    for (const s of steps) {
      rows.push([
        String(s.seq),
        s.kind,
        s.name,
        s.status,
        s.endedAt === null ? `${duration(now - s.startedAt)} so far` : duration(s.endedAt - s.startedAt),
        s.agentId ?? '-',
        s.kind === 'task' ? String(s.attempts) : '-',
        s.cost > 0 ? String(s.cost) : '-',
        s.childId ?? '-',
        time(s.wakeAt),
      ]);
    }
    out.push(`Steps (${steps.length})`, table(rows));
    const failed = steps.filter((s) => s.status === 'failed' && s.error);
    for (const s of failed) out.push(`Step ${s.seq} (${s.name}) failed: ${errorText(s.error!)}`);
  }
  out.push('');
  if (signals.length === 0) {
    out.push('Signals: none');
  } else {
    const names = new Map(steps.map((s) => [s.seq, s.name]));
    const rows = [['ID', 'NAME', 'ACTOR', 'SENT AT', 'CONSUMED BY', 'PAYLOAD']];
    for (const sig of signals) {
      rows.push([
        String(sig.id),
        sig.name,
        sig.actor ?? '-',
        time(sig.at),
        sig.consumedBy === null
          ? isLive(run)
            ? '- (kept for a wait)'
            : '- (never consumed)'
          : `step ${sig.consumedBy}${names.has(sig.consumedBy) ? ` (${names.get(sig.consumedBy)})` : ''}`,
        jsonLine(sig.payload, 80),
      ]);
    }
    out.push(`Signals (${signals.length})`, table(rows));
  }
  return `${out.join('\n')}\n`;
}

const isLive = (run: RunRecord): boolean => run.status === 'queued' || run.status === 'running';
