import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const blocksOf = (file: string): string[] =>
  [...readFileSync(new URL(file, root), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);

describe('examples shown in the docs', () => {
  // The README and docs/usage.md show these files verbatim; `npm run typecheck` compiles the files and test/examples
  // runs them, so the code on those pages compiles and runs too.
  it.each([
    ['README.md', 'examples/readme-example.ts'],
    ['docs/usage.md', 'examples/readme-resources.ts'],
    ['docs/usage.md', 'examples/readme-http.ts'],
    ['docs/usage.md', 'examples/readme-bridge.ts'],
    ['docs/usage.md', 'examples/readme-compat.ts'],
  ])('%s shows %s exactly as it is in the repository', (page, file) => {
    expect(blocksOf(page)).toContain(readFileSync(new URL(file, root), 'utf8'));
  });

  it('the README example is at most 20 lines', () => {
    expect(
      readFileSync(new URL('examples/readme-example.ts', root), 'utf8').trimEnd().split('\n').length,
    ).toBeLessThanOrEqual(20);
  });
});
