/**
 * One fleet across two processes through Redis. This process runs researchers; a second one (this file with
 * `--worker`) runs coders. Tasks that need a coder are handed to the other process through RedisBridge and come
 * back as if they had run here.
 *
 *   npx tsx examples/redis-cluster.ts redis://127.0.0.1:6379
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RedisBridge, UnifiedOrchestrator, type Agent } from 'unified-orchestrator';

const url = process.argv[2] ?? process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const worker = process.argv.includes('--worker');
const namespace = process.argv.find((a) => a.startsWith('--ns='))?.slice(5) ?? `uo-example-${process.pid}`;
const secret = process.env['BRIDGE_SECRET'] ?? 'example-secret-change-me-in-production';

const agent = (role: string): Agent<number, string> => ({
  async execute({ payload }) {
    await new Promise((resolve) => setTimeout(resolve, 2));
    return `${role}@${process.pid} did #${payload}`;
  },
});

const orchestrator = new UnifiedOrchestrator({
  pressure: false,
  bridge: new RedisBridge({ url, secret, namespace, nodeId: worker ? 'coders' : 'researchers', heartbeatMs: 200 }),
  pools: [
    worker
      ? { role: 'coder', capabilities: ['code'], minAgents: 4, create: () => agent('coder') }
      : { role: 'researcher', capabilities: ['search'], minAgents: 4, create: () => agent('researcher') },
  ],
});
await orchestrator.start();

if (worker) {
  process.stdout.write('ready\n');
  process.once('SIGTERM', () => void orchestrator.stop().then(() => process.exit(0)));
} else {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), url, '--worker', `--ns=${namespace}`],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  while (!orchestrator.bridge.canAnyServe(['code'])) await new Promise((resolve) => setTimeout(resolve, 50));
  console.log(
    'cluster:',
    (await orchestrator.cluster()).map((n) => `${n.nodeId} [${n.capabilities.join(', ')}]`).join(' + '),
  );
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      orchestrator.submit<string>({ type: 'job', requires: [i % 2 ? 'code' : 'search'], payload: i }),
    ),
  );
  for (const r of results) console.log(r);
  const elsewhere = results.filter((r) => !r.includes(`@${process.pid} `)).length;
  console.log(`${elsewhere} of ${results.length} ran in the other process`);
  await orchestrator.stop();
  child.kill('SIGTERM');
}
