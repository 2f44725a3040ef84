/**
 * The serving side of the bridge suite, in a process of its own (bench/bridge.ts starts one of each kind):
 *
 *   node --import tsx bench/bridge-worker.ts redis-bridge <redis-url> <namespace> <concurrency>
 *   node --import tsx bench/bridge-worker.ts bullmq <redis-url> <queue-name> <concurrency>
 *
 * - `redis-bridge`: a worker node, an orchestrator on a RedisBridge with one pool of no-op agents for capability
 *   `work` (`concurrency` agents of concurrency 1, all warm); library defaults otherwise.
 * - `bullmq`: a BullMQ Worker on the queue with a no-op processor and that concurrency.
 *
 * The bridge secret comes in the environment (BENCH_BRIDGE_SECRET), shared with the producer. Prints "ready" on
 * stdout once it serves. Exits on SIGTERM after closing cleanly (so `--cpu-prof` writes its profile), or when its
 * stdin closes (the bench process went away without killing it).
 */
import { noop } from './load.js';
import { loadBullMQ } from './peers.js';

/** The capability the bridge tasks require (the producer in bench/bridge.ts sends `requires: ['work']`). */
const CAPABILITY = 'work';

type Mode = 'redis-bridge' | 'bullmq';

async function serveRedisBridge(url: string, namespace: string, concurrency: number): Promise<() => Promise<void>> {
  const { RedisBridge, UnifiedOrchestrator } = await import('unified-orchestrator');
  const orchestrator = new UnifiedOrchestrator({
    bridge: new RedisBridge({
      url,
      namespace,
      nodeId: 'bench-worker',
      secret: process.env['BENCH_BRIDGE_SECRET'] ?? '',
    }),
    pools: [
      {
        role: 'worker',
        capabilities: [CAPABILITY],
        create: () => ({ execute: noop }),
        minAgents: concurrency,
        maxAgents: concurrency,
        concurrency: 1,
        warmSpares: 0,
      },
    ],
  });
  await orchestrator.start();
  return () => orchestrator.stop();
}

async function serveBullMQ(url: string, queueName: string, concurrency: number): Promise<() => Promise<void>> {
  const { Worker } = loadBullMQ();
  const { hostname, port } = new URL(url);
  const worker = new Worker(queueName, noop, { connection: { host: hostname, port: Number(port) }, concurrency });
  worker.on('error', (error) => process.stderr.write(`bullmq worker: ${error.message}\n`));
  await worker.waitUntilReady();
  return () => worker.close();
}

const [mode, url, name, concurrencyArg] = process.argv.slice(2) as [Mode, string, string, string];
const concurrency = Number(concurrencyArg);
if (
  (mode !== 'redis-bridge' && mode !== 'bullmq') ||
  !url ||
  !name ||
  !Number.isInteger(concurrency) ||
  concurrency < 1
) {
  process.stderr.write('usage: bridge-worker.ts redis-bridge|bullmq <redis-url> <namespace-or-queue> <concurrency>\n');
  process.exit(2);
}
let close: (() => Promise<void>) | undefined;
let closing = false;
// Installed before serving starts, so a child still connecting also goes when it is told to or its parent is gone.
const shutdown = (): void => {
  if (closing) return;
  closing = true;
  if (!close) process.exit(1);
  const force = setTimeout(() => process.exit(1), 5_000);
  force.unref();
  void close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
process.stdin.on('data', () => {});
process.stdin.once('end', shutdown);
close =
  mode === 'redis-bridge' ? await serveRedisBridge(url, name, concurrency) : await serveBullMQ(url, name, concurrency);
if (closing) await close().finally(() => process.exit(1));
process.stdout.write('ready\n');
