/** Human-readable output of the operator CLI. */
import type { NodeInfo, TrafficSetting } from '../bridge/bridge.js';

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
