import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runToExit, type ChildExit } from '../support/exit-child.js';
import { POSTGRES_SERVER, postgresForSuite } from '../support/postgres.js';

const child = fileURLToPath(new URL('../fixtures/exit-child.ts', import.meta.url));

/** Runs the fixture in a real Node process; resolves with its exit code and output, or 'hung' if it does not exit. */
function run(mode: string, limitMs = 20_000, script = child): Promise<ChildExit> {
  return runToExit(script, mode === '' ? [] : [mode], limitMs);
}

describe('clean shutdown', () => {
  it.each(['drain', 'cancel'])(
    'a process that runs tasks and stops (%s) exits on its own',
    async (mode) => {
      const { code, out } = await run(mode);
      expect(out).toMatch(/stopped ok=300 state=stopped/);
      expect(code).toBe(0);
    },
    30_000,
  );

  it('a process with a durable store (MemoryStore) that runs tasks and stops exits on its own', async () => {
    const { code, out } = await run('durable');
    expect(out).toMatch(/stopped ok=300 state=stopped/);
    expect(code).toBe(0);
  }, 30_000);

  describe.skipIf(POSTGRES_SERVER.skip)('on a PostgreSQL server', () => {
    const server = postgresForSuite();

    it('a process with a PostgresStore (its pool and its LISTEN connection) exits on its own after stop()', async () => {
      process.env['UO_EXIT_DATABASE_URL'] = await server().createDatabase('uo_exit');
      try {
        const { code, out } = await run('durable');
        expect(out).toMatch(/stopped ok=300 state=stopped/);
        expect(code).toBe(0);
      } finally {
        delete process.env['UO_EXIT_DATABASE_URL'];
      }
    }, 60_000);
  });

  it('a process whose RedisBridge cannot reach Redis: start() rejects, and the process still exits on its own', async () => {
    const { code, out } = await run(
      '',
      20_000,
      fileURLToPath(new URL('../fixtures/bridge-unreachable-child.ts', import.meta.url)),
    );
    expect(out).toMatch(/start rejected: .*; state=stopped/);
    expect(out).not.toMatch(/Unhandled error event/);
    expect(code).toBe(0);
  }, 30_000);
});
