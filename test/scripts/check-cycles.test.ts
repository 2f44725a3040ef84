import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { buildGraph, findCycles, formatChain, specifiersOf } from '../../scripts/check-cycles.js';

const execFileAsync = promisify(execFile);
const repo = fileURLToPath(new URL('../../', import.meta.url));
const temp = mkdtempSync(join(tmpdir(), 'uo-cycles-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** Writes a tree of files under a fresh directory and returns its path. */
function tree(name: string, files: Record<string, string>): string {
  const root = join(temp, name);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

/** Runs the script as `npm run lint` does, on `root`; resolves with its exit code and output. */
async function check(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      ['--import', 'tsx', 'scripts/check-cycles.ts', ...args],
      { cwd: repo, timeout: 30_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw error;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

// A layered tree: every edge kind the checker follows, all pointing one way (top → mid → base).
const layered = {
  'base.ts': 'export type Id = string;\nexport const BASE = 1;\n',
  'mid/index.ts': "export * from './values.js';\nexport type { Id } from '../base.js';\n",
  'mid/values.ts': "import { BASE } from '../base.js';\nexport const mid = BASE + 1;\n",
  'top.ts': [
    "import type { Id } from './base.js';",
    "import { mid } from './mid';",
    "export const load = () => import('./mid/values.js');",
    "export type Other = import('./base.js').Id;",
    'export const top = (id: Id): string => `${id}${mid}`;',
    "export { helper } from 'some-package';",
    '',
  ].join('\n'),
};

// The same tree plus one cycle, closed by type-level imports: base → util (import type) → extra → base (import() type).
const cyclic = {
  ...layered,
  'base.ts':
    "import type { Util } from './util.js';\nexport type Id = string;\nexport const BASE = 1;\nexport type U = Util;\n",
  'util.ts': "import { extra } from './extra.js';\nexport type Util = typeof extra;\n",
  'extra.ts': "export const extra = 1;\nexport type E = import('./base.js').Id;\n",
};

describe('scripts/check-cycles.ts', () => {
  it('passes a tree without a cycle (exit 0), counting the files and the imports it followed', async () => {
    const { code, stdout } = await check(tree('clean', layered));
    expect(code).toBe(0);
    // top: import type, import (./mid → mid/index.ts), import(), import() type; mid/index: export from, export type
    // from; mid/values: import. The package specifier is not followed.
    expect(stdout).toMatch(/^No import cycles in .*clean \(4 files, 7 imports\)\.$/m);
  });

  it('fails a tree whose one cycle is closed by a type-only import and an inline import() type (exit 1)', async () => {
    const { code, stdout } = await check(tree('cyclic', cyclic));
    expect(code).toBe(1);
    expect(stdout).toContain('1 import cycle(s)');
    expect(stdout).toContain('1. 3 file(s): base.ts, extra.ts, util.ts');
    // The shortest chain round it from its first file, each edge labelled with how it imports.
    expect(stdout).toContain('   base.ts → util.ts (import type) → extra.ts → base.ts (import() type)\n');
  });

  it('follows each kind of edge: without the inline import() type the same tree is clean', async () => {
    const { code, stdout } = await check(
      tree('broken-by-one-edge', { ...cyclic, 'extra.ts': 'export const extra = 1;\nexport type E = string;\n' }),
    );
    expect(code, stdout).toBe(0);
  });

  it('refuses a root that is not a directory (exit 2)', async () => {
    const { code, stderr } = await check(join(temp, 'missing'));
    expect(code).toBe(2);
    expect(stderr).toContain('is not a directory');
  });

  it('names every specifier form with its kind', () => {
    const found = specifiersOf(
      'x.ts',
      [
        "import a from './a.js';",
        "import type { B } from './b.js';",
        "import { type C, type D } from './c.js';",
        "import { type E, e } from './e.js';",
        "import './side-effect.js';",
        "export * from './f.js';",
        "export type { G } from './g.js';",
        "import h = require('./h.js');",
        "const i = await import('./i.js');",
        "let j: import('./j.js').J;",
      ].join('\n'),
    );
    expect(found).toEqual([
      { specifier: './a.js', kind: 'import' },
      { specifier: './b.js', kind: 'import type' },
      { specifier: './c.js', kind: 'import type' },
      { specifier: './e.js', kind: 'import' },
      { specifier: './side-effect.js', kind: 'import' },
      { specifier: './f.js', kind: 'export from' },
      { specifier: './g.js', kind: 'export type from' },
      { specifier: './h.js', kind: 'import' },
      { specifier: './i.js', kind: 'import()' },
      { specifier: './j.js', kind: 'import() type' },
    ]);
  });

  it('finds separate cycles separately, a self-import included, and a chain through each file of a larger one', () => {
    const root = tree('many', {
      'self.ts': "export type S = import('./self.js').T;\nexport type T = 1;\n",
      'p.ts': "import { q } from './q.js';\nexport const p = q;\n",
      'q.ts':
        "import { r } from './r.js';\nimport { p } from './p.js';\n" +
        'export const q = 1;\nexport const f = () => [p, r];\n',
      'r.ts': "import { q } from './q.js';\nexport const r = () => q;\n",
      'free.ts': "import { p } from './p.js';\nexport const free = p;\n",
    });
    const graph = buildGraph(root);
    const cycles = findCycles(graph);
    expect(cycles.map((c) => c.files.map((f) => f.slice(root.length + 1)))).toEqual([
      ['p.ts', 'q.ts', 'r.ts'],
      ['self.ts'],
    ]);
    expect(cycles[0]!.chains.map((chain) => formatChain(root, chain))).toEqual([
      'p.ts → q.ts → p.ts',
      'r.ts → q.ts → r.ts',
    ]);
    expect(cycles[1]!.chains.map((chain) => formatChain(root, chain))).toEqual(['self.ts → self.ts (import() type)']);
  });
});
