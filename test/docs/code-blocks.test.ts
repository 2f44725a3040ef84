/**
 * Every ```ts block in the README and the guides compiles, as strictly as the project's own code: each page's
 * blocks become the modules of one small project (a `<!-- file: name.ts -->` line before a block names its module,
 * so later blocks can import it), with the declarations a page takes as given in test/docs/context/<page>/.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const work = join(root, 'node_modules', '.cache', 'docs-code-blocks'); // inside the project: node_modules resolve

/** The ```ts blocks of a page with their module names. */
export function codeBlocks(markdown: string): Array<{ name: string; code: string }> {
  const blocks: Array<{ name: string; code: string }> = [];
  for (const m of markdown.matchAll(/(?:<!-- file: ([\w.-]+\.ts) -->\n)?```ts\n([\s\S]*?)```/g)) {
    blocks.push({ name: m[1] ?? `block-${blocks.length + 1}.ts`, code: m[2]! });
  }
  return blocks;
}

const pages = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((n) => n.endsWith('.md'))
    .map((n) => `docs/${n}`),
];

/** Writes each page's blocks (and its context) into a directory of its own; returns the files. */
function writePage(id: string, markdown: string): string[] {
  const dir = join(work, id);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  for (const { name, code } of codeBlocks(markdown)) {
    // A block without imports or exports is a script fragment: make it a module so that top-level await works.
    const source = /^\s*(import|export)\s/m.test(code) ? code : `${code}\nexport {};\n`;
    writeFileSync(join(dir, name), source);
    files.push(join(dir, name));
  }
  const context = join(root, 'test/docs/context', id);
  if (existsSync(context)) {
    cpSync(context, dir, { recursive: true });
    for (const f of readdirSync(context)) files.push(join(dir, f));
  }
  return files;
}

/** Compiles every page's blocks in one program; the errors per page id. */
function compile(pagesById: Map<string, string>): Map<string, string[]> {
  const files = [...pagesById].flatMap(([id, markdown]) => writePage(id, markdown));
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2023.d.ts'],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: ['node'],
    strict: true,
    noUncheckedIndexedAccess: true,
    skipLibCheck: true,
    noEmit: true,
    paths: { 'unified-orchestrator': [join(root, 'src/index.ts')] },
  });
  const errors = new Map([...pagesById.keys()].map((id) => [id, [] as string[]]));
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const file = d.file?.fileName ?? '';
    const id = file.startsWith(work) ? file.slice(work.length + 1).split('/')[0]! : '(program)';
    const list = errors.get(id) ?? errors.set(id, []).get(id)!;
    list.push(`${basename(file)}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
  }
  return errors;
}

const idOf = (page: string): string => basename(page, '.md');
let results: Map<string, string[]> | undefined;
const resultsFor = (): Map<string, string[]> =>
  (results ??= compile(
    new Map([
      ...pages.map((p) => [idOf(p), readFileSync(join(root, p), 'utf8')] as [string, string]),
      // A planted mistake, so that a pass means the blocks were really compiled.
      [
        '_planted',
        "```ts\nimport { UnifiedOrchestrator } from 'unified-orchestrator';\nnew UnifiedOrchestrator().submit({ priority: 1 });\n```\n",
      ],
    ]),
  ));

describe('code blocks in the README and the guides compile', () => {
  it('codeBlocks names blocks and numbers the rest', () => {
    expect(codeBlocks('<!-- file: a.ts -->\n```ts\nconst a = 1;\n```\n\n```ts\nb;\n```\n```sh\nnpm test\n```')).toEqual(
      [
        { name: 'a.ts', code: 'const a = 1;\n' },
        { name: 'block-2.ts', code: 'b;\n' },
      ],
    );
  });

  it('a block that does not compile is reported (a task without its type)', () => {
    expect(resultsFor().get('_planted')).toEqual([expect.stringMatching(/^block-1\.ts: [\s\S]*'type'/)]);
  }, 120_000);

  it('nothing outside the pages fails (the program itself)', () => {
    expect(resultsFor().get('(program)') ?? []).toEqual([]);
  });

  it.each(pages)('%s', (page) => {
    expect(resultsFor().get(idOf(page))).toEqual([]);
  });
});
