/**
 * RedisBridge's sequential round trip across builds of this package, measured in one run (for
 * bench/results/bridge-ab.md):
 *
 *   npx tsx bench/bridge-ab.ts [--samples 4000] [--block 50] <checkout> <checkout> ...
 *
 * Each checkout is a directory of this package with a tsc build in dist/ (`npm run build`), such as a git worktree of
 * an older commit (with node_modules). Per checkout: a redis-server of its own, one worker node in a child process
 * (that checkout's bench/bridge-worker.ts on its dist/: 50 no-op agents of concurrency 1) and a producer in this
 * process (on its dist/), warmed with 300 round trips. The producers then take turns in blocks of sequential single
 * hand-offs, the order reversed every block, so that the machine's other load hits every checkout alike. Prints one
 * JSON line per checkout: p50, p90, p99 and mean of the round trip (submit → result, µs), and the CPU time per round
 * trip (µs) of its producer (this process, during its own blocks), its worker and its redis-server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pidusage from 'pidusage';
import type { Task, UnifiedOrchestrator } from 'unified-orchestrator';
import { startRedisServer, type BenchRedis } from './redis-server.js';

const SECRET = 'unified-orchestrator-bench-ab-shared-secret';
const TASK: Task = { type: 'noop', requires: ['work'] };
const WARMUP = 300;

interface Side {
  readonly dir: string;
  readonly redis: BenchRedis;
  readonly worker: ChildProcess;
  readonly producer: UnifiedOrchestrator;
  readonly samplesUs: number[];
  cpu: { producerUs: number; workerUs: number; redisUs: number };
}

function usage(message: string): never {
  console.error(`bridge-ab: ${message}\nusage: tsx bench/bridge-ab.ts [--samples N] [--block N] <checkout> ...`);
  process.exit(2);
}

const args = process.argv.slice(2);
let samples = 4_000;
let block = 50;
const dirs: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--samples' || a === '--block') {
    const n = Number(args[++i]);
    if (!Number.isInteger(n) || n < 1) usage(`${a} needs a positive integer`);
    if (a === '--samples') samples = n;
    else block = n;
  } else dirs.push(resolve(a));
}
if (dirs.length === 0) usage('name at least one checkout');

/** Starts `dir`'s bench/bridge-worker.ts on its dist/; resolves once it prints "ready". */
function startWorker(dir: string, url: string, namespace: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(dir, 'bench/bridge-worker.ts'), 'redis-bridge', url, namespace, '50'],
    {
      cwd: dir,
      stdio: ['pipe', 'pipe', 'inherit'],
      // Its tsconfig without the `paths` mapping: `unified-orchestrator` resolves to that checkout's dist/.
      env: { ...process.env, BENCH_BRIDGE_SECRET: SECRET, TSX_TSCONFIG_PATH: join(dir, 'bench/tsconfig.dist.json') },
    },
  );
  return new Promise((ready, fail) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.split('\n').includes('ready')) ready(child);
    });
    child.once('exit', (code, signal) => fail(new Error(`the worker of ${dir} exited (${signal ?? code}): ${out}`)));
  });
}

async function cpuOf(pid: number): Promise<number> {
  return (await pidusage(pid)).ctime * 1_000;
}

async function start(dir: string): Promise<Side> {
  const redis = await startRedisServer();
  const namespace = `uo-ab:${randomBytes(4).toString('hex')}`;
  const worker = await startWorker(dir, redis.url, namespace);
  const lib = (await import(pathToFileURL(join(dir, 'dist/index.js')).href)) as typeof import('unified-orchestrator');
  const producer = new lib.UnifiedOrchestrator({
    bridge: new lib.RedisBridge({ url: redis.url, namespace, nodeId: 'ab-producer', secret: SECRET }),
  });
  await producer.start();
  const deadline = Date.now() + 15_000;
  while (!producer.bridge.canAnyServe(['work'])) {
    if (Date.now() > deadline) throw new Error(`the producer of ${dir} does not see its worker`);
    await new Promise((r) => setTimeout(r, 20));
  }
  for (let i = 0; i < WARMUP; i++) await producer.submit(TASK);
  return { dir, redis, worker, producer, samplesUs: [], cpu: { producerUs: 0, workerUs: 0, redisUs: 0 } };
}

async function runBlock(side: Side): Promise<void> {
  const [worker0, redis0] = [await cpuOf(side.worker.pid!), await cpuOf(side.redis.pid)];
  const own0 = process.cpuUsage();
  for (let i = 0; i < block; i++) {
    const t0 = performance.now();
    await side.producer.submit(TASK);
    side.samplesUs.push((performance.now() - t0) * 1_000);
  }
  const own = process.cpuUsage(own0);
  side.cpu.producerUs += own.user + own.system;
  side.cpu.workerUs += (await cpuOf(side.worker.pid!)) - worker0;
  side.cpu.redisUs += (await cpuOf(side.redis.pid)) - redis0;
}

const sides: Side[] = [];
try {
  for (const dir of dirs) sides.push(await start(dir));
  for (let b = 0; b * block < samples; b++) {
    for (const side of b % 2 === 0 ? sides : [...sides].reverse()) await runBlock(side);
  }
  for (const side of sides) {
    const sorted = Float64Array.from(side.samplesUs).sort();
    const n = sorted.length;
    const at = (q: number): number => Math.round(sorted[Math.min(n - 1, Math.floor(q * n))]!);
    const per = (us: number): number => Math.round(us / n);
    console.log(
      JSON.stringify({
        checkout: side.dir,
        samples: n,
        p50Us: at(0.5),
        p90Us: at(0.9),
        p99Us: at(0.99),
        meanUs: Math.round(sorted.reduce((a, b) => a + b, 0) / n),
        cpuPerRoundTripUs: {
          producer: per(side.cpu.producerUs),
          worker: per(side.cpu.workerUs),
          redis: per(side.cpu.redisUs),
        },
        loadavg: loadavg().map((l) => Number(l.toFixed(2))),
      }),
    );
  }
} finally {
  for (const side of sides) {
    await side.producer.stop().catch(() => {});
    side.worker.kill('SIGTERM');
    await side.redis.stop();
  }
  pidusage.clear();
}
