/**
 * The operational endpoints on plain node:http: `/metrics` for Prometheus, `/healthz` for liveness and `/readyz`
 * for readiness. The orchestrator's metrics go on the host's own prom-client registry, next to its other metrics.
 *
 *   npx tsx examples/http-server.ts               # serves on :9464 until Ctrl-C
 *   npx tsx examples/http-server.ts --self-check  # starts on a free port, fetches each endpoint, exits 0 if all answer
 */
import { createServer } from 'node:http';
import { Counter, Registry } from 'prom-client';
import { UnifiedOrchestrator } from 'unified-orchestrator';

const registry = new Registry();
const requests = new Counter({
  name: 'my_service_requests_total',
  help: 'The host service’s own metric.',
  registers: [registry],
});

const orchestrator = new UnifiedOrchestrator({
  pools: [
    {
      role: 'echo',
      capabilities: ['echo'],
      minAgents: 2,
      create: () => ({ execute: async ({ payload }): Promise<unknown> => payload }),
    },
  ],
  metrics: { registry }, // the host's registry: one /metrics for everything
  health: { sla: { default: { p99Ms: 1_000, errorRate: 0.05 } } },
});
await orchestrator.start();

const server = createServer(orchestrator.httpHandler());
const selfCheck = process.argv.includes('--self-check');
server.listen(selfCheck ? 0 : 9464);
await new Promise((resolve) => server.once('listening', resolve));
const { port } = server.address() as { port: number };

requests.inc();
await orchestrator.submit({ type: 'echo', requires: ['echo'], payload: 'hello' });

if (selfCheck) {
  let ok = true;
  for (const path of ['/metrics', '/healthz', '/readyz']) {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    const body = await res.text();
    console.log(`${path} ${res.status} ${body.split('\n').length} lines`);
    ok &&= res.status === 200;
    if (path === '/metrics')
      ok &&= body.includes('unified_orchestrator_tasks_total') && body.includes('my_service_requests_total');
  }
  server.close();
  await orchestrator.stop();
  process.exitCode = ok ? 0 : 1;
} else {
  console.log(`Serving http://localhost:${port}/metrics, /healthz and /readyz; Ctrl-C to stop.`);
  process.once('SIGINT', () => {
    server.close();
    void orchestrator.stop();
  });
}
