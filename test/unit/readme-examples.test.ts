import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const readme = readFileSync(new URL('README.md', root), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);

describe('README examples', () => {
  // The README shows these files verbatim; `npm run typecheck` compiles the files, so the README's code compiles too.
  it.each(['examples/readme-example.ts', 'examples/readme-resources.ts', 'examples/readme-http.ts', 'examples/readme-bridge.ts', 'examples/readme-compat.ts'])('shows %s exactly as it is in the repository', (file) => {
    const source = readFileSync(new URL(file, root), 'utf8');
    expect(blocks).toContain(source);
  });
});
