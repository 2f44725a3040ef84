/**
 * Compares two V8 heap snapshots by constructor: how many objects of each kind, and their self size, in each, and
 * the difference. For attributing growth the soak found (`soak.ts --snapshots <dir>` writes the two snapshots).
 *
 *   node --import tsx test/soak/heap-diff.ts before.heapsnapshot after.heapsnapshot [--top 30] [--match <regex>]
 *
 * --match also lists every kind whose name matches (say `AgentRecord|TaskRecord|Timeout`), grown or not.
 *
 * Rows are keyed by node type and name (`object Foo`, `closure bar`, `string`, `array`...); strings, numbers and
 * code are grouped by type only. Sorted by the growth in self size.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Snapshot {
  readonly snapshot: {
    // eslint-disable-next-line @typescript-eslint/naming-convention -- the V8 heap snapshot's own field names
    readonly meta: { readonly node_fields: string[]; readonly node_types: [string[], ...unknown[]] };
  };
  readonly nodes: number[];
  readonly strings: string[];
}

interface Row {
  count: number;
  size: number;
}

/** Per-kind object counts and self sizes of one snapshot. */
function summarise(file: string): Map<string, Row> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const byName = new Set(['object', 'closure', 'native', 'hidden', 'object shape']);
  const out = new Map<string, Row>();
  const { nodes, strings } = snap;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]!] ?? 'unknown';
    const key = byName.has(type) ? `${type} ${strings[nodes[i + nameAt]!] ?? '?'}` : type;
    let row = out.get(key);
    if (!row) out.set(key, (row = { count: 0, size: 0 }));
    row.count++;
    row.size += nodes[i + sizeAt]!;
  }
  return out;
}

function main(): number {
  const { values, positionals } = parseArgs({
    options: { top: { type: 'string', default: '30' }, match: { type: 'string' } },
    allowPositionals: true,
  });
  if (positionals.length !== 2) {
    process.stderr.write(
      'usage: node --import tsx test/soak/heap-diff.ts before.heapsnapshot after.heapsnapshot [--top 30]\n',
    );
    return 2;
  }
  const top = Number(values.top) || 30;
  const [a, b] = positionals.map(summarise) as [Map<string, Row>, Map<string, Row>];
  const keys = new Set([...a.keys(), ...b.keys()]);
  const rows = [...keys].map((key) => {
    const x = a.get(key) ?? { count: 0, size: 0 };
    const y = b.get(key) ?? { count: 0, size: 0 };
    return {
      key,
      countA: x.count,
      countB: y.count,
      dCount: y.count - x.count,
      sizeA: x.size,
      sizeB: y.size,
      dSize: y.size - x.size,
    };
  });
  const total = (m: Map<string, Row>): Row =>
    [...m.values()].reduce((s, r) => ({ count: s.count + r.count, size: s.size + r.size }), { count: 0, size: 0 });
  const ta = total(a);
  const tb = total(b);
  const n = (v: number): string => v.toLocaleString('en-US');
  const signed = (v: number): string => (v > 0 ? `+${n(v)}` : n(v));
  process.stdout.write(
    `total: ${n(ta.count)} → ${n(tb.count)} objects (${signed(tb.count - ta.count)}), ${n(ta.size)} → ${n(tb.size)} bytes (${signed(tb.size - ta.size)})\n\n`,
  );
  const print = (title: string, list: typeof rows): void => {
    process.stdout.write(
      `${title}\n${'kind'.padEnd(60)} ${'count'.padStart(21)} ${'Δcount'.padStart(9)} ${'Δbytes'.padStart(11)}\n`,
    );
    for (const r of list) {
      process.stdout.write(
        `${r.key.slice(0, 60).padEnd(60)} ${`${n(r.countA)} → ${n(r.countB)}`.padStart(21)} ${signed(r.dCount).padStart(9)} ${signed(r.dSize).padStart(11)}\n`,
      );
    }
    process.stdout.write('\n');
  };
  print(`Top ${top} by growth in bytes`, [...rows].sort((x, y) => y.dSize - x.dSize).slice(0, top));
  print(`Top ${top} by growth in count`, [...rows].sort((x, y) => y.dCount - x.dCount).slice(0, top));
  if (values.match !== undefined) {
    const re = new RegExp(values.match);
    print(
      `Kinds matching /${values.match}/`,
      rows.filter((r) => re.test(r.key)).sort((x, y) => x.key.localeCompare(y.key)),
    );
  }
  return 0;
}

process.exitCode = main();
