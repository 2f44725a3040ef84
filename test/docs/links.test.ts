/**
 * Every relative link in the README and the guides points at a file that exists, and every `#anchor` at a heading
 * of the page it names (GitHub's heading ids), so that no guide link rots when a page or heading moves.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

function markdownFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'api' ? [] : markdownFiles(path); // docs/api is generated
    return name.endsWith('.md') ? [path] : [];
  });
}

/** Heading ids as GitHub makes them: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
export function headingIds(markdown: string): Set<string> {
  const ids = new Set<string>();
  const seen = new Map<string, number>();
  const withoutCode = markdown.replace(/^```[\s\S]*?^```/gm, '');
  for (const [, text] of withoutCode.matchAll(/^#{1,6} (.+)$/gm)) {
    const base = text!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  }
  return ids;
}

const pages = [join(root, 'README.md'), join(root, 'CHANGELOG.md'), ...markdownFiles(join(root, 'docs'))];

describe('links in the README and the guides', () => {
  it('headingIds follows GitHub', () => {
    expect([
      ...headingIds(
        '## Resources: breakers, pressure, budgets, rate limits\n## `new UnifiedOrchestrator(options)`: top level\n## Notes\n## Notes',
      ),
    ]).toEqual([
      'resources-breakers-pressure-budgets-rate-limits',
      'new-unifiedorchestratoroptions-top-level',
      'notes',
      'notes-1',
    ]);
  });

  it.each(pages.map((p) => [relative(root, p), p]))('%s: every relative link resolves', (_name, page) => {
    const text = readFileSync(page, 'utf8').replace(/^```[\s\S]*?^```/gm, '');
    const broken: string[] = [];
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/i.test(target!)) continue; // https:, mailto:
      const [path, anchor] = target!.split('#') as [string, string | undefined];
      const file = path === '' ? page : join(dirname(page), decodeURIComponent(path));
      if (!existsSync(file)) {
        broken.push(`${target}: no such file`);
        continue;
      }
      if (anchor !== undefined && file.endsWith('.md') && !headingIds(readFileSync(file, 'utf8')).has(anchor)) {
        broken.push(`${target}: no heading #${anchor}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('the README links to every guide', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const guides = readdirSync(join(root, 'docs')).filter((n) => n.endsWith('.md'));
    expect(guides.length).toBeGreaterThanOrEqual(8);
    expect(guides.filter((g) => !readme.includes(`](docs/${g}`))).toEqual([]);
  });
});
