/**
 * Runs examples/fastify-service.ts as a real child process, as a service team would, and talks to it over HTTP:
 * the example is what they copy, so it must keep working.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as wait } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The value of the sample of `name` whose labels include `labels`, or `undefined` when there is none. */
function sample(exposition: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of exposition.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const found = new Map([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(([, k, v]) => [k, v]));
    if (Object.entries(labels).every(([k, v]) => found.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

describe('examples/fastify-service.ts', () => {
  let child: ChildProcess;
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  let stdout = '';
  let stderr = '';
  let base = '';
  /** Responses the tests saw, by status: what /metrics must agree with. */
  const seen = new Map<number, number>();

  /** POSTs `body` (a string as it is) to /summarize as `tenant` (`null`: no header); counts the response's status. */
  const summarize = async (body: unknown, tenant: string | null = 'acme', signal?: AbortSignal): Promise<Response> => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (tenant !== null) headers['x-tenant-id'] = tenant;
    const res = await fetch(`${base}/summarize`, {
      method: 'POST',
      headers,
      body: typeof body === 'string' ? body : JSON.stringify(body),
      signal,
    });
    seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
    return res;
  };
  const metrics = async (): Promise<string> => (await fetch(`${base}/metrics`)).text();
  /** Polls /metrics until `ready` holds; fails with the last exposition after `timeoutMs`. */
  const metricsUntil = async (ready: (text: string) => boolean, timeoutMs = 15_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await metrics();
      if (ready(text)) return text;
      if (Date.now() > deadline) throw new Error(`metrics never got there:\n${text}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const running = (text: string): number => sample(text, 'unified_orchestrator_tasks_running') ?? 0;
  const tasks = (text: string, outcome: string): number =>
    sample(text, 'unified_orchestrator_tasks_total', { type: 'summarize', outcome }) ?? 0;

  beforeAll(async () => {
    child = spawn(process.execPath, ['--import', 'tsx', 'examples/fastify-service.ts'], {
      cwd: root,
      env: { ...process.env, PORT: '0', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    base = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no listening line after 45 s\nstdout: ${stdout}\nstderr: ${stderr}`)),
        45_000,
      );
      const check = (): void => {
        // PORT=0 asks for a free port: the line must name the real one.
        const m = /^listening on (http:\/\/127\.0\.0\.1:[1-9]\d*)$/m.exec(stdout);
        if (!m) return;
        clearTimeout(timer);
        resolve(m[1]!);
      };
      child.stdout!.on('data', check);
      void exited.then(({ code }) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${code} before listening\nstdout: ${stdout}\nstderr: ${stderr}`));
      });
    });
  }, 60_000);

  afterAll(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  it('answers good requests with 200 and the summary, one task per request', async () => {
    const texts = ['Pools first. Then the rest.', 'Queues wait! Agents work.', 'One sentence only'];
    const responses = await Promise.all(
      texts.map((text, i) => summarize({ text, timeoutMs: 10_000 }, i === 1 ? 'globex' : 'acme')),
    );
    for (const [i, res] of responses.entries()) {
      expect(res.status).toBe(200);
      const body = (await res.json()) as { summary: string; words: number; agentId: string };
      expect(body.summary).toBe(texts[i]!.split(/(?<=[.!?])\s/)[0]);
      expect(body.words).toBe(texts[i]!.split(' ').length);
      expect(body.agentId).toMatch(/^summarizer-\d+$/);
    }
  }, 30_000);

  it('answers a bad body or a missing tenant with 400 and VALIDATION_ERROR, malformed JSON with 400', async () => {
    const cases: Array<[unknown, string | null, string, RegExp]> = [
      [{ delayMs: 10 }, 'acme', 'VALIDATION_ERROR', /text/],
      [{ text: 'Fine.', timeoutMs: 1 }, 'acme', 'VALIDATION_ERROR', /timeoutMs/],
      [{ text: 'Fine.' }, null, 'VALIDATION_ERROR', /x-tenant-id/],
      ['{"text": "cut sho', 'acme', 'FST_ERR_CTP_INVALID_JSON_BODY', /JSON/], // Fastify's own error, not an agent failure
    ];
    for (const [body, tenant, code, message] of cases) {
      const res = await summarize(body, tenant);
      expect(res.status).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe(code);
      expect(error.message).toMatch(message);
    }
  }, 30_000);

  it('answers 504 with TASK_TIMEOUT when the task runs past its timeoutMs', async () => {
    const res = await summarize({ text: 'Too slow.', delayMs: 5_000, timeoutMs: 100 });
    expect(res.status).toBe(504);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('TASK_TIMEOUT');
  }, 30_000);

  it('answers 429 with Retry-After once a tenant spent its budget', async () => {
    const long = Array.from({ length: 150 }, () => 'word').join(' '); // 150 words against the trial's 100
    const first = await summarize({ text: long, delayMs: 10, timeoutMs: 10_000 }, 'trial');
    expect(first.status).toBe(200);
    const refused = await summarize({ text: 'One more.', delayMs: 10, timeoutMs: 10_000 }, 'trial');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('BUDGET_EXCEEDED');
  }, 30_000);

  it('cancels the task when the client disconnects', async () => {
    const before = await metrics();
    expect(tasks(before, 'cancelled')).toBe(0);
    const client = new AbortController();
    const request = summarize(
      { text: 'Nobody waits for this.', delayMs: 10_000, timeoutMs: 10_000 },
      'acme',
      client.signal,
    ).catch((e: unknown) => e);
    await metricsUntil((text) => running(text) === 1); // accepted and running on an agent
    client.abort();
    expect(await request).toMatchObject({ name: 'AbortError' });
    const after = await metricsUntil((text) => tasks(text, 'cancelled') === 1 && running(text) === 0, 8_000); // long before its 10 s
    expect(tasks(after, 'timed-out')).toBe(1); // the cancel was not a timeout
  }, 30_000);

  it('serves the orchestrator metrics and the host metric on one /metrics', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toContain('# TYPE unified_orchestrator_tasks_total counter');
    expect(tasks(text, 'completed')).toBe(seen.get(200)); // every 200 was one completed task, nothing else was
    expect(tasks(text, 'timed-out')).toBe(1);
    expect(tasks(text, 'cancelled')).toBe(1);
    expect(sample(text, 'unified_orchestrator_pool_healthy', { role: 'summarizer' })).toBe(1);
    expect(text).toContain('# TYPE summarizer_http_responses_total counter');
    for (const status of [200, 400, 429, 504]) {
      expect(sample(text, 'summarizer_http_responses_total', { route: '/summarize', status: String(status) })).toBe(
        seen.get(status),
      );
    }
  }, 30_000);

  it('answers /healthz and /readyz with 200 from the orchestrator health', async () => {
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    const report = (await health.json()) as {
      status: string;
      components: { pools: Record<string, { minAgents: number }> };
    };
    expect(['healthy', 'degraded']).toContain(report.status); // degraded is still alive (e.g. pressure on a busy machine)
    expect(report.components.pools['summarizer']?.minAgents).toBe(2);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, state: 'running' });
  }, 30_000);

  it('on SIGTERM finishes the request in flight, then exits with 0 on its own', async () => {
    const slow = summarize({ text: 'Draining works. Really.', delayMs: 2_000, timeoutMs: 10_000 });
    await metricsUntil((text) => running(text) === 1); // in flight: accepted and running
    expect(child.kill('SIGTERM')).toBe(true);
    await wait(100);
    expect(child.kill('SIGTERM')).toBe(true); // a supervisor's second SIGTERM does not cut the drain short
    const res = await slow;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ summary: 'Draining works.' });
    expect(res.headers.get('connection')).toBe('close'); // answered during the drain, not before the SIGTERM landed
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([
      exited,
      new Promise((resolve) => (timer = setTimeout(resolve, 20_000, 'still running after 20 s'))),
    ]);
    clearTimeout(timer);
    expect(exit).toEqual({ code: 0, signal: null }); // by itself: nothing left holding its event loop
    expect(stdout).toMatch(/^SIGTERM: no longer accepting/m);
    expect(stdout).toMatch(/^SIGTERM: already draining$/m);
    expect(stdout).toMatch(/^stopped$/m);
  }, 40_000);
});
