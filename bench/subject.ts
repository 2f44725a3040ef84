/**
 * Which build of the library the suite measures.
 *
 * By default the benches import `unified-orchestrator`, which tsconfig `paths` map to src/ under tsx. tsx compiles
 * with esbuild's `keepNames`, which wraps every named closure in a `__name()` call each time it is created; on the
 * no-op hot paths that is measurable. `--build` compiles src/ with tsc (`tsconfig.build.json` → dist/, as
 * `npm run build` does) and runs the suite again in a child process whose tsx uses bench/tsconfig.dist.json (no
 * `paths`), so the same by-name import resolves through package.json `exports` to dist/: what users run.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The file `unified-orchestrator` resolves to here, relative to the repository root. */
export function subjectPath(): string {
  return relative(root, fileURLToPath(import.meta.resolve('unified-orchestrator')));
}

/** Whether this process measures the tsc build. */
export function measuringBuild(): boolean {
  return subjectPath().startsWith('dist');
}

/** Builds dist/ with tsc, then runs this suite again against it; resolves with the child's exit code. */
export function rerunAgainstBuild(argv: readonly string[]): Promise<number> {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) return Promise.resolve(build.status ?? 1);
  const entry = fileURLToPath(new URL('./index.ts', import.meta.url));
  const tsconfig = fileURLToPath(new URL('./tsconfig.dist.json', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', entry, ...argv], {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig },
    });
    child.on('error', reject);
    child.on('exit', (code) => resolve(code ?? 1));
  });
}
