/**
 * TrafficRouter's polling wait in a real process: a script that awaits `wait_for_task` at its top level, against a
 * legacy object without `waitForTask`, must get the status and exit 0; the poll was the only thing holding the
 * process (an unref'd poll let Node exit with code 13, "unsettled top-level await", without a word). Once the router
 * is closed, a wait still polling no longer holds the process.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

interface Run {
  /** The exit code; `null` when the process was killed at the timeout (it did not exit on its own). */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runChild(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'test/fixtures/router-wait-child.ts', ...args],
      { cwd: root, timeout: 30_000 },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr });
      },
    );
  });
}

describe('TrafficRouter wait_for_task in a real process', () => {
  it('a top-level await of a polling wait gets the status and exits 0', async () => {
    const run = await runChild(['wait', '600']);
    expect(run.stderr).not.toMatch(/unsettled top-level await/i);
    expect(run.code).toBe(0);
    const line = run.stdout.split('\n').find((l) => l.startsWith('status '));
    expect(line, `the child printed:\n${run.stdout}${run.stderr}`).toBeDefined();
    expect(JSON.parse(line!.slice('status '.length))).toMatchObject({
      task_id: 't-1',
      status: 'completed',
      result: { answer: 42 },
    });
    expect(run.stdout).toContain('exit 0');
  }, 40_000);

  it('a closed router does not hold the process for a wait still polling', async () => {
    const run = await runChild(['close']);
    expect(run.code).toBe(0); // not killed at the timeout: it exited by itself
    expect(run.stdout).toContain('closed');
    expect(run.stdout).not.toContain('never settled');
  }, 40_000);
});
