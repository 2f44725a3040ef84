import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Examples and tests import the package by name, as a user would; point that at the source.
    alias: { 'unified-orchestrator': fileURLToPath(new URL('./src/index.ts', import.meta.url)) },
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Says once per run, in one line each, which outside program is missing (promtool, redis-server, PostgreSQL's
    // initdb) and so which tests skip; with CI set they fail instead (test/support/binaries.ts).
    globalSetup: ['test/support/binaries.ts'],
    // `npm run coverage` (or `npm test -- --coverage`): V8 coverage of the library's source, checked against the
    // thresholds below. Reports in coverage/ (index.html, coverage-summary.json).
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts'],
      // The bin only runs as a child process (test/cli spawns it, check:package runs the installed one), where the
      // test workers' V8 coverage cannot see it; importing it in a test would run the CLI on vitest's own argv.
      exclude: ['src/bin.ts'],
      reporter: ['text-summary', 'json-summary', 'html'],
      reportsDirectory: 'coverage',
      // The figures are printed (and the thresholds checked) even when a test fails: a red run still says where it is.
      reportOnFailure: true,
      thresholds: { lines: 85, branches: 85 },
    },
  },
});
