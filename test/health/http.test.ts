/**
 * The operational HTTP endpoints, mounted on a real `node:http` server on an ephemeral port and called with fetch:
 * `/metrics`, `/healthz`, `/readyz`, the methods they allow, and a failing registry that must not take the server down.
 */
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { DEFAULT_METRIC_PREFIX, METRIC_NAMES, UnifiedOrchestrator, type HealthReport } from 'unified-orchestrator';

const servers: Server[] = [];
const orchestrators: UnifiedOrchestrator[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  await Promise.all(orchestrators.splice(0).map((o) => o.stop()));
});

/** Serves `handler` on 127.0.0.1 at a free port; returns the base URL. */
async function serve(handler: RequestListener): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  // fetch keeps connections alive; let close() end them at once.
  server.keepAliveTimeout = 1;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function orchestrator(options: ConstructorParameters<typeof UnifiedOrchestrator>[0] = {}): UnifiedOrchestrator {
  const o = new UnifiedOrchestrator({ pressure: false, ...options });
  orchestrators.push(o);
  return o;
}

async function mount(o: UnifiedOrchestrator): Promise<string> {
  return serve(o.httpHandler());
}

const PROM_CONTENT_TYPE = /^text\/plain; version=0\.0\.4; charset=utf-8$/;

describe('GET /metrics', () => {
  it('answers 200 with the Prometheus exposition and its content type', async () => {
    const o = orchestrator();
    o.registerAgent({ execute: () => 'ok' }, { capabilities: [] });
    await o.start();
    await o.submit({ type: 'ping' });
    const base = await mount(o);
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(PROM_CONTENT_TYPE);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = await res.text();
    for (const name of Object.values(METRIC_NAMES)) expect(body).toContain(`# TYPE ${DEFAULT_METRIC_PREFIX}${name} `);
    expect(body).toContain(`${DEFAULT_METRIC_PREFIX}tasks_total{type="ping",outcome="completed"} 1`);
    // The same text orchestrator.metrics() gives (gauges aside, nothing moved in between).
    const direct = await o.metrics()!;
    expect(res.headers.get('content-type')).toBe(direct.contentType);
  });

  it('accepts a query string', async () => {
    const base = await mount(orchestrator());
    const res = await fetch(`${base}/metrics?name[]=x`);
    expect(res.status).toBe(200);
    await res.text();
  });

  it('is 404 when metrics are off', async () => {
    const base = await mount(orchestrator({ metrics: false }));
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(404);
    expect(await res.text()).toMatch(/metrics are off/);
  });

  it('answers 500 when the registry throws, and the server keeps serving', async () => {
    class BrokenRegistry extends Registry {
      calls = 0;
      override metrics(): Promise<string> {
        this.calls++;
        if (this.calls === 1) throw new Error('collector exploded');
        return Promise.reject(new Error('collector rejected'));
      }
    }
    const registry = new BrokenRegistry();
    const o = orchestrator({ metrics: { registry } });
    await o.start();
    const base = await mount(o);
    const first = await fetch(`${base}/metrics`);
    expect(first.status).toBe(500);
    expect(await first.text()).toMatch(/collector exploded/);
    const second = await fetch(`${base}/metrics`);
    expect(second.status).toBe(500);
    expect(await second.text()).toMatch(/collector rejected/);
    expect(registry.calls).toBe(2);
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    await health.text();
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    await ready.text();
  });
});

describe('GET /healthz', () => {
  it('is 200 with the health report as JSON while healthy', async () => {
    const o = orchestrator();
    await o.start();
    const base = await mount(o);
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const report = (await res.json()) as HealthReport;
    expect(report.status).toBe('healthy');
    expect(report.components.orchestrator).toEqual({ status: 'healthy', state: 'running', halted: null });
    expect(Object.keys(report.components).sort()).toEqual([
      'breakers',
      'bridge',
      'orchestrator',
      'pools',
      'pressure',
      'queue',
      'sla',
    ]);
  });

  it('is 200 while degraded (an open dependency breaker)', async () => {
    const o = orchestrator();
    await o.start();
    const dep = o.resources.breaker(
      'llm',
      async (): Promise<never> => {
        throw new Error('down');
      },
      { volumeThreshold: 1, errorThresholdPercentage: 1 },
    );
    await dep().catch(() => {});
    expect(dep.state).toBe('open');
    const base = await mount(o);
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    const report = (await res.json()) as HealthReport;
    expect(report.status).toBe('degraded');
    expect(report.components.breakers.dependenciesOpen).toEqual(['llm']);
  });

  it('is 200 (degraded) before start', async () => {
    const base = await mount(orchestrator());
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as HealthReport).status).toBe('degraded');
  });

  it('is 503 when unhealthy: after stop()', async () => {
    const o = orchestrator();
    await o.start();
    const base = await mount(o);
    await o.stop();
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(503);
    const report = (await res.json()) as HealthReport;
    expect(report.status).toBe('unhealthy');
    expect(report.components.orchestrator).toEqual({ status: 'unhealthy', state: 'stopped', halted: null });
  });

  it('is 503 when a pool is below its minimum with its recovery budget spent', async () => {
    let sick = false;
    const o = orchestrator({
      health: { checkIntervalMs: 60_000, recovery: { maxReplacements: 0 } },
      pools: [
        {
          role: 'p',
          capabilities: ['p'],
          minAgents: 1,
          warmSpares: 0,
          create: () => ({ execute: () => 'ok', healthCheck: () => !sick }),
        },
      ],
    });
    await o.start();
    const base = await mount(o);
    sick = true;
    await o.checkHealth();
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(503);
    const report = (await res.json()) as HealthReport;
    expect(report.components.pools['p']?.status).toBe('unhealthy');
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ ready: false, status: 'unhealthy', state: 'running' });
  });
});

describe('GET /readyz', () => {
  it('is 503 before start, 200 while running, 503 after stop', async () => {
    const o = orchestrator();
    const base = await mount(o);
    let res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ ready: false, status: 'degraded', state: 'created' });
    await o.start();
    res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({ ready: true, status: 'healthy', state: 'running' });
    await o.stop();
    res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ ready: false, status: 'unhealthy', state: 'stopped' });
  });

  it('is 200 while running degraded', async () => {
    const o = orchestrator();
    await o.start();
    const dep = o.resources.breaker(
      'db',
      async (): Promise<never> => {
        throw new Error('down');
      },
      { volumeThreshold: 1, errorThresholdPercentage: 1 },
    );
    await dep().catch(() => {});
    const base = await mount(o);
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ready: true, status: 'degraded', state: 'running' });
  });
});

describe('paths and methods', () => {
  it('answers 404 on an unknown path', async () => {
    const base = await mount(orchestrator());
    for (const path of ['/', '/metric', '/healthz/extra', '/METRICS']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(404);
      expect(await res.text()).toMatch(/not found/);
    }
  });

  it.each(['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])('answers %s with 405 and an Allow header', async (method) => {
    const base = await mount(orchestrator());
    for (const path of ['/metrics', '/healthz', '/readyz', '/nope']) {
      const res = await fetch(`${base}${path}`, {
        method,
        body: method === 'POST' || method === 'PUT' || method === 'PATCH' ? 'x' : undefined,
      });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD');
      await res.text();
    }
  });

  it('answers HEAD like GET, without a body', async () => {
    const o = orchestrator();
    await o.start();
    const base = await mount(o);
    for (const [path, status, type] of [
      ['/metrics', 200, PROM_CONTENT_TYPE],
      ['/healthz', 200, /^application\/json/],
      ['/readyz', 200, /^application\/json/],
      ['/nope', 404, /^text\/plain/],
    ] as const) {
      const res = await fetch(`${base}${path}`, { method: 'HEAD' });
      expect(res.status, path).toBe(status);
      expect(res.headers.get('content-type'), path).toMatch(type);
      expect(await res.text(), path).toBe('');
    }
  });

  it('serves many concurrent scrapes', async () => {
    const o = orchestrator();
    await o.start();
    const base = await mount(o);
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => fetch(`${base}/${['metrics', 'healthz', 'readyz'][i % 3]}`)),
    );
    expect(responses.map((r) => r.status)).toEqual(Array.from({ length: 20 }, () => 200));
    await Promise.all(responses.map((r) => r.text()));
  });
});
