/**
 * Finds import cycles among the TypeScript files under a directory (default `src`), type-only imports included: a
 * type a lower layer needs lives in that layer (docs: DESIGN.md, "Dependency direction").
 *
 *   npx tsx scripts/check-cycles.ts [root]     # exits 1 and prints each cycle when there is any, 2 on a bad root
 *
 * Every way one file names another counts as an edge: `import` (values, `import type`, `import { type X }`),
 * `export … from`, `import x = require(…)`, `import('…')` calls and inline `import('…').X` type expressions.
 * Relative specifiers are resolved as NodeNext does for TypeScript sources (`./x.js` is `./x.ts`); package and
 * `node:` specifiers are not followed. The graph's strongly connected components (Tarjan) are the cycles; for each,
 * the script prints its files and the shortest chains that go round it, each edge labelled with how it imports.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** How one file names another. */
export type EdgeKind = 'import' | 'import type' | 'export from' | 'export type from' | 'import()' | 'import() type';

/** One file's reference to another, both as absolute paths. */
export interface Edge {
  readonly from: string;
  readonly to: string;
  readonly kind: EdgeKind;
}

/** The import graph of the files under one root. */
export interface ImportGraph {
  readonly root: string;
  readonly files: readonly string[];
  /** Edges by source file, in source order, one per (target, kind). */
  readonly edges: ReadonlyMap<string, readonly Edge[]>;
}

/** A strongly connected component of more than one file (or one file that imports itself). */
export interface Cycle {
  /** Its files, sorted. */
  readonly files: readonly string[];
  /** Closed chains that go round it (first file = last file); together they visit every file of the cycle. */
  readonly chains: ReadonlyArray<readonly Edge[]>;
}

const SOURCE = /\.(?:ts|tsx|mts|cts)$/;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.isFile() && SOURCE.test(entry.name)) out.push(path);
  }
  return out.sort();
}

/** The source file a relative specifier names, or undefined when it names none under the graph. */
function resolveSpecifier(from: string, specifier: string, known: ReadonlySet<string>): string | undefined {
  if (!specifier.startsWith('./') && !specifier.startsWith('../') && specifier !== '.' && specifier !== '..')
    return undefined;
  const base = resolve(dirname(from), specifier);
  const candidates: string[] = [];
  const swap = (js: string, ...tsExts: string[]): void => {
    if (base.endsWith(js)) candidates.push(...tsExts.map((ext) => base.slice(0, -js.length) + ext));
  };
  swap('.js', '.ts', '.tsx', '.d.ts');
  swap('.jsx', '.tsx');
  swap('.mjs', '.mts', '.d.mts');
  swap('.cjs', '.cts', '.d.cts');
  if (SOURCE.test(base)) candidates.push(base);
  candidates.push(`${base}.ts`, `${base}.tsx`, join(base, 'index.ts'), join(base, 'index.tsx'));
  return candidates.find((c) => known.has(c));
}

function literal(node: ts.Node | undefined): string | undefined {
  return node && ts.isStringLiteralLike(node) ? node.text : undefined;
}

/** Every module specifier a file names, with how it names it. */
export function specifiersOf(fileName: string, text: string): Array<{ specifier: string; kind: EdgeKind }> {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const found: Array<{ specifier: string; kind: EdgeKind }> = [];
  const add = (specifier: string | undefined, kind: EdgeKind): void => {
    if (specifier !== undefined) found.push({ specifier, kind });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined &&
            named !== undefined &&
            ts.isNamedImports(named) &&
            named.elements.length > 0 &&
            named.elements.every((e) => e.isTypeOnly)));
      add(literal(node.moduleSpecifier), typeOnly ? 'import type' : 'import');
    } else if (ts.isExportDeclaration(node)) {
      add(literal(node.moduleSpecifier), node.isTypeOnly ? 'export type from' : 'export from');
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(literal(node.moduleReference.expression), node.isTypeOnly ? 'import type' : 'import');
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(literal(node.argument.literal), 'import() type');
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(literal(node.arguments[0]), 'import()');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Reads every TypeScript file under `root` and links the relative imports between them. */
export function buildGraph(root: string): ImportGraph {
  const absolute = resolve(root);
  const files = sourceFiles(absolute);
  const known = new Set(files);
  const edges = new Map<string, Edge[]>();
  for (const from of files) {
    const out: Edge[] = [];
    const seen = new Set<string>();
    for (const { specifier, kind } of specifiersOf(from, readFileSync(from, 'utf8'))) {
      const to = resolveSpecifier(from, specifier, known);
      if (to === undefined || seen.has(`${to}\0${kind}`)) continue;
      seen.add(`${to}\0${kind}`);
      out.push({ from, to, kind });
    }
    edges.set(from, out);
  }
  return { root: absolute, files, edges };
}

/** Tarjan's strongly connected components, iterative (no recursion limit on deep chains). */
export function stronglyConnected(files: readonly string[], next: (file: string) => readonly string[]): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let counter = 0;
  for (const start of files) {
    if (index.has(start)) continue;
    const work: Array<{ node: string; successors: readonly string[]; i: number }> = [];
    const enter = (node: string): void => {
      index.set(node, counter);
      low.set(node, counter);
      counter++;
      stack.push(node);
      onStack.add(node);
      work.push({ node, successors: next(node), i: 0 });
    };
    enter(start);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      if (frame.i < frame.successors.length) {
        const w = frame.successors[frame.i++]!;
        if (!index.has(w)) enter(w);
        else if (onStack.has(w)) low.set(frame.node, Math.min(low.get(frame.node)!, index.get(w)!));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!));
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          component.push(w);
        } while (w !== frame.node);
        components.push(component);
      }
    }
  }
  return components;
}

/** The shortest closed chain from `start` back to it, staying inside `members`. */
function shortestChain(graph: ImportGraph, start: string, members: ReadonlySet<string>): Edge[] {
  const via = new Map<string, Edge>();
  const queue = [start];
  for (let q = 0; q < queue.length; q++) {
    for (const edge of graph.edges.get(queue[q]!) ?? []) {
      if (!members.has(edge.to)) continue;
      if (edge.to === start) {
        const chain = [edge];
        for (let at = edge.from; at !== start; at = via.get(at)!.from) chain.unshift(via.get(at)!);
        return chain;
      }
      if (!via.has(edge.to)) {
        via.set(edge.to, edge);
        queue.push(edge.to);
      }
    }
  }
  throw new Error(`internal: no chain from ${start} back to itself inside its component`);
}

/** The import cycles of a graph: its strongly connected components with more than one file, or a self-import. */
export function findCycles(graph: ImportGraph): Cycle[] {
  const targets = (file: string): string[] => [...new Set((graph.edges.get(file) ?? []).map((e) => e.to))];
  const cycles: Cycle[] = [];
  for (const component of stronglyConnected(graph.files, targets)) {
    const [only] = component;
    if (component.length === 1 && !targets(only!).includes(only!)) continue;
    const members = new Set(component);
    const files = [...component].sort();
    const covered = new Set<string>();
    const chains: Edge[][] = [];
    for (const file of files) {
      if (covered.has(file)) continue;
      const chain = shortestChain(graph, file, members);
      for (const edge of chain) covered.add(edge.from);
      chains.push(chain);
    }
    cycles.push({ files, chains });
  }
  return cycles.sort((a, b) => (a.files[0]! < b.files[0]! ? -1 : 1));
}

/** A chain as one line: `a.ts → b.ts (import type) → a.ts`. */
export function formatChain(root: string, chain: readonly Edge[]): string {
  const name = (file: string): string => relative(root, file).split(sep).join('/');
  return [name(chain[0]!.from), ...chain.map((e) => `${name(e.to)}${e.kind === 'import' ? '' : ` (${e.kind})`}`)].join(
    ' → ',
  );
}

/** The report for one root and whether it is clean. */
export function report(root: string): { ok: boolean; text: string } {
  const graph = buildGraph(root);
  const cycles = findCycles(graph);
  const edges = [...graph.edges.values()].reduce((n, list) => n + list.length, 0);
  const fromHere = relative(process.cwd(), graph.root);
  const label = fromHere === '' ? '.' : fromHere.startsWith('..') ? graph.root : fromHere;
  if (cycles.length === 0)
    return { ok: true, text: `No import cycles in ${label} (${graph.files.length} files, ${edges} imports).` };
  const lines = [`${cycles.length} import cycle(s) in ${label} (${graph.files.length} files, ${edges} imports):`];
  cycles.forEach((cycle, i) => {
    const names = cycle.files.map((f) => relative(graph.root, f).split(sep).join('/'));
    lines.push('', `${i + 1}. ${names.length} file(s): ${names.join(', ')}`);
    for (const chain of cycle.chains) lines.push(`   ${formatChain(graph.root, chain)}`);
  });
  lines.push('', '(an edge without a label is a value import; every kind counts, type-only ones included)');
  return { ok: false, text: lines.join('\n') };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args.length > 1 || args[0]?.startsWith('-')) {
    process.stderr.write('usage: tsx scripts/check-cycles.ts [root-directory]   (default: src)\n');
    process.exit(2);
  }
  const root = args[0] ?? 'src';
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    process.stderr.write(`check-cycles: ${root} is not a directory\n`);
    process.exit(2);
  }
  const { ok, text } = report(root);
  process.stdout.write(`${text}\n`);
  process.exitCode = ok ? 0 : 1;
}
