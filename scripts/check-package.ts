/**
 * The package as a user gets it: packs it, checks what the tarball holds, runs publint and Are the Types Wrong on it,
 * installs it into an empty project next to nothing but TypeScript, type-checks the type-level tests of the public
 * API there (strict, skipLibCheck off, under both `nodenext` and `bundler` resolution) and runs a smoke test and the
 * CLI from the installed package.
 *
 *   npm run check:package             # in CI after the build; exits non-zero on any failure
 */
import { execFileSync, type ExecFileSyncOptions } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'uo-package-'));
const failures: string[] = [];

function step(name: string, f: () => void): void {
  const t0 = Date.now();
  try {
    f();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (error) {
    const e = error as { stdout?: Buffer | string; stderr?: Buffer | string; message: string };
    failures.push(name);
    console.log(
      `FAIL ${name}\n${String(e.stdout ?? '')}${String(e.stderr ?? '')}${e.stdout || e.stderr ? '' : e.message}`,
    );
  }
}

function run(command: string, args: string[], options: ExecFileSyncOptions = {}): string {
  return String(execFileSync(command, args, { cwd: root, stdio: 'pipe', encoding: 'utf8', ...options }));
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
let tarball = '';

step('npm pack', () => {
  const [packed] = JSON.parse(run(npm, ['pack', '--json', '--pack-destination', work])) as Array<{
    filename: string;
    files: Array<{ path: string }>;
  }>;
  tarball = join(work, packed!.filename);
  const paths = packed!.files.map((f) => f.path);
  const allowed = (p: string): boolean =>
    ['package.json', 'README.md', 'LICENSE'].includes(p) || /^dist\/.+\.(js|d\.ts|js\.map)$/.test(p);
  const stray = paths.filter((p) => !allowed(p));
  if (stray.length > 0) throw new Error(`the tarball holds files a user does not need: ${stray.join(', ')}`);
  for (const needed of ['dist/index.js', 'dist/index.d.ts', 'dist/bin.js', 'README.md', 'LICENSE']) {
    if (!paths.includes(needed)) throw new Error(`the tarball lacks ${needed}`);
  }
  console.log(`     ${packed!.filename}: ${paths.length} files`);
});

step('publint --strict', () => {
  console.log(
    run(process.execPath, [join(root, 'node_modules/publint/src/cli.js'), 'run', tarball, '--strict'])
      .trim()
      .replace(/^/gm, '     '),
  );
});

step('attw (Are the Types Wrong), ESM-only profile', () => {
  // The package is ESM only (no `require` condition): CommonJS and node10 resolution are out of scope by design.
  run(process.execPath, [
    join(root, 'node_modules/@arethetypeswrong/cli/dist/index.js'),
    tarball,
    '--profile',
    'esm-only',
    '--format',
    'table-flipped',
    '--no-color',
  ]);
});

const app = join(work, 'app');
step('npm install into an empty project', () => {
  cpSync(join(root, 'test/package/consumer'), app, { recursive: true });
  const version = (name: string): string =>
    (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  run(
    npm,
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      tarball,
      `typescript@${version('typescript')}`,
      `@types/node@${version('@types/node')}`,
    ],
    { cwd: app },
  );
});

for (const resolution of ['nodenext', 'bundler'] as const) {
  step(`type-level tests against the installed types (moduleResolution ${resolution})`, () => {
    const module = resolution === 'bundler' ? 'esnext' : 'nodenext';
    run(
      process.execPath,
      [
        join(app, 'node_modules/typescript/bin/tsc'),
        '--strict',
        '--noEmit',
        '--skipLibCheck',
        'false',
        '--target',
        'es2022',
        '--module',
        module,
        '--moduleResolution',
        resolution,
        '--types',
        'node',
        'api.types.ts',
        'smoke.ts',
      ],
      { cwd: app },
    );
  });
}

step('smoke test runs from the installed package', () => {
  run(
    process.execPath,
    [
      join(app, 'node_modules/typescript/bin/tsc'),
      '--strict',
      '--target',
      'es2022',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--types',
      'node',
      '--outDir',
      'out',
      'smoke.ts',
    ],
    { cwd: app },
  );
  const out = run(process.execPath, ['out/smoke.js'], { cwd: app, timeout: 30_000 });
  if (!out.includes('smoke ok')) throw new Error(`unexpected output: ${out}`);
});

step('the CLI runs from the installed package (bin)', () => {
  const out = run(join(app, 'node_modules/.bin/unified-orchestrator'), ['--help'], { cwd: app });
  if (!/halt/.test(out) || !/rollback/.test(out)) throw new Error(`--help does not list the commands: ${out}`);
});

rmSync(work, { recursive: true, force: true });
if (failures.length > 0) {
  console.log(`\n${failures.length} package check(s) failed: ${failures.join('; ')}`);
  process.exitCode = 1;
} else {
  console.log('\nall package checks passed');
}
