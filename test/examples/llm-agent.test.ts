import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

interface Run {
  /** The exit code; `null` when the process was killed (it did not exit on its own before the timeout). */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the example as a user would, in its own process, and resolves however it ends. */
function runExample(): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'examples/llm-agent.ts'],
      { cwd: root, timeout: 45_000 },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr });
      },
    );
  });
}

describe('examples/llm-agent.ts', () => {
  let run: Run;

  /** The capture groups of the summary line that matches `pattern`, as numbers under `names`, in order. */
  function figures<const K extends string>(pattern: RegExp, names: readonly K[]): Record<K, number> {
    const match = pattern.exec(run.stdout);
    if (!match) throw new Error(`No summary line matches ${pattern}; the example printed:\n${run.stdout}${run.stderr}`);
    return Object.fromEntries(names.map((name, i) => [name, Number(match[i + 1])])) as Record<K, number>;
  }

  /** A tenant's summary line: spend, limit, answered and refused requests, and the codes of the refusals. */
  function tenant(id: string): Record<'spent' | 'limit' | 'answered' | 'refused', number> & { codes: string } {
    const pattern = new RegExp(
      `^tenant ${id}: spent ([\\d.]+) of (\\d+) cents, (\\d+) answered, (\\d+) refused \\(([^)]*)\\)$`,
      'm',
    );
    return {
      ...figures(pattern, ['spent', 'limit', 'answered', 'refused']),
      codes: pattern.exec(run.stdout)?.[5] ?? '',
    };
  }

  const large = () =>
    figures(/^large model: (\d+) calls answered, (\d+) answered 429, (\d+) answered 503$/m, [
      'answered',
      'answered429',
      'answered503',
    ]);
  const small = () => figures(/^small model: (\d+) calls answered$/m, ['answered']);
  const fellBack = () =>
    figures(
      /^fell back to small: (\d+) \(breaker open (\d+), rate-limited (\d+), after a 5xx (\d+), after a 429 (\d+)\)$/m,
      ['total', 'breakerOpen', 'rateLimited', 'after5xx', 'after429'],
    );
  const tasks = () =>
    figures(/^tasks: (\d+) submitted = (\d+) completed \+ (\d+) failed \+ (\d+) refused$/m, [
      'submitted',
      'completed',
      'failed',
      'refused',
    ]);

  beforeAll(async () => {
    run = await runExample();
  }, 60_000);

  it('runs to the end, stops the orchestrator and exits on its own, without warnings', () => {
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^orchestrator: stopped, 0 timers and listeners left$/m);
  });

  it('gets answers from both models', () => {
    expect(large().answered).toBeGreaterThan(0);
    expect(small().answered).toBeGreaterThan(0);
  });

  it('falls back to the small model during the outage: after a 5xx, and while the breaker is open', () => {
    const breaker = figures(/^large breaker: opened (\d+) times, closed again (\d+) times$/m, ['opened', 'closed']);
    expect(large().answered503).toBeGreaterThan(0);
    expect(breaker.opened).toBeGreaterThan(0);
    expect(breaker.closed).toBeGreaterThan(0); // a half-open probe succeeded once the outage was over
    expect(fellBack().breakerOpen).toBeGreaterThan(0);
    // Every 503 failed its (single-attempt) task, and each of those was answered by the small model instead.
    expect(fellBack().after5xx).toBe(large().answered503);
    expect(fellBack().after429).toBe(0);
    expect(small().answered).toBe(fellBack().total); // the small model is only ever asked as a fallback
  });

  it('absorbs the 429s: each is re-queued without spending an attempt, and no task fails because of one', () => {
    const absorbed = figures(
      /^429s absorbed: (\d+) of \d+ re-queued without spending an attempt; tasks failed by a 429: (\d+)$/m,
      ['deferred', 'failedBy429'],
    );
    expect(large().answered429).toBeGreaterThan(0);
    expect(absorbed.deferred).toBe(large().answered429);
    expect(absorbed.failedBy429).toBe(0);
    expect(tasks().failed).toBe(fellBack().after5xx); // the only failed tasks are the 503s that fell back
  });

  it('refuses the tenant that spent its budget with BUDGET_EXCEEDED, and not the other', () => {
    const acme = tenant('acme');
    const globex = tenant('globex');
    expect(acme.spent).toBeGreaterThanOrEqual(acme.limit);
    expect(acme.answered).toBeGreaterThan(0);
    expect(acme.refused).toBeGreaterThan(0);
    expect(acme.codes).toBe('BUDGET_EXCEEDED');
    expect(globex.spent).toBeLessThan(globex.limit);
    expect(globex.answered).toBeGreaterThan(0);
    expect(globex.refused).toBe(0);
    expect(globex.codes).toBe('none');
  });

  it('accounts for every request and every task: each accepted task ended exactly once', () => {
    const requests = figures(/^requests: (\d+) asked = (\d+) answered \+ (\d+) refused$/m, [
      'asked',
      'answered',
      'refused',
    ]);
    const { submitted, completed, failed, refused } = tasks();
    const once = figures(/^every accepted task ended exactly once: yes \((\d+) accepted, (\d+) ended\)$/m, [
      'accepted',
      'ended',
    ]);
    expect(requests.asked).toBeGreaterThan(0);
    expect(requests.answered + requests.refused).toBe(requests.asked);
    expect(completed + failed + refused).toBe(submitted);
    expect(refused).toBe(requests.refused); // every refusal reached a caller
    expect(completed).toBe(requests.answered); // one completed task per answered request
    expect(once.accepted).toBe(completed + failed);
    expect(once.ended).toBe(once.accepted);
  });
});
