/**
 * Cross-process hand-offs through RedisBridge beside BullMQ, on one redis-server this suite starts itself, in the
 * same run so that machine noise hits both.
 *
 * - RedisBridge: a producer orchestrator here (no pools, so every task goes to the cluster) hands no-op tasks
 *   requiring `work` to ONE worker node in a child process (bench/bridge-worker.ts: 50 no-op agents of
 *   concurrency 1). Library defaults otherwise (heartbeat, block time, pressure sampling).
 * - BullMQ: a Queue here adds no-op jobs (`addBulk` in chunks), ONE Worker of concurrency 50 in a child process
 *   runs them, and a QueueEvents here observes each completion. Jobs are removed on completion (the usual setting
 *   for a work queue; it also keeps Redis from growing over the run).
 *
 * Both sides are measured end to end in the producer: submit → result seen back in this process.
 * - Throughput: rounds of N tasks with at most 1,000 in flight; the sides alternate which goes first; figures are
 *   medians over rounds, the ratio the median of the rounds' ratios. Beside it, the CPU time per task of each
 *   process (producer, worker, redis-server): on a small shared machine the three compete for cores, and CPU per
 *   task is what a change to either side moves whatever else runs.
 * - Round trip: sequential single hand-offs (one task in flight), p50 / p99 over the samples.
 *
 * Each run uses a fresh key namespace and queue name; both children are stopped at the end, then redis-server.
 * `BENCH_BRIDGE_CPU_PROF=<dir>` starts the children with `node --cpu-prof --cpu-prof-dir <dir>` (profiles are
 * written when they exit; the children's pids are printed to tell them apart).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { BULLMQ_VERSION, loadBullMQ, type BullMQ } from './peers.js';
import pidusage from 'pidusage';
import { RedisBridge, UnifiedOrchestrator, type BridgeStats, type Task } from 'unified-orchestrator';
import { median, progress, sampleLatency, summarise, type LatencyStats } from './harness.js';
import { runWindowed } from './load.js';
import { startRedisServer, type BenchRedis } from './redis-server.js';
import type { BenchSettings } from './settings.js';

/** CPU time (user + system) each process spent per task over a throughput round, in µs. */
export interface CpuPerTask {
  /** This process: the producer orchestrator, or the BullMQ Queue and QueueEvents. */
  readonly producerUs: number;
  /** The child serving the tasks. */
  readonly workerUs: number;
  readonly redisUs: number;
}

export interface BridgeSide {
  /** Median over rounds, tasks completed end to end per second. */
  readonly tasksPerSec: number;
  /** Medians over rounds, per process: what a task costs, whatever the machine's other load. */
  readonly cpuPerTask: CpuPerTask;
  /** Sequential single hand-offs, submit → result in the producer. */
  readonly roundTrip: LatencyStats;
}

export interface BridgeResult {
  readonly redisServerVersion: string;
  readonly bullmqVersion: string;
  /** Agents of the worker node / BullMQ Worker concurrency. */
  readonly concurrency: number;
  readonly window: number;
  readonly tasksPerRound: number;
  readonly warmupTasks: number;
  readonly rounds: readonly Round[];
  readonly redisBridge: BridgeSide & { readonly producerStats: BridgeStats };
  readonly bullmq: BridgeSide & { readonly bulkChunk: number };
  /** RedisBridge / BullMQ throughput (median of the rounds' ratios). */
  readonly throughputRatio: number;
  /** BullMQ p50 / RedisBridge p50 of the sequential round trip. */
  readonly roundTripP50Ratio: number;
}

/** One throughput round: tasks per second and CPU per task of each side. */
export interface Round {
  readonly redisBridge: number;
  readonly bullmq: number;
  readonly cpu: { readonly redisBridge: CpuPerTask; readonly bullmq: CpuPerTask };
}

const root = fileURLToPath(new URL('..', import.meta.url));
const workerScript = fileURLToPath(new URL('./bridge-worker.ts', import.meta.url));
const SECRET = 'unified-orchestrator-bench-shared-secret';
/** The children's bench/bridge-worker.ts serves this capability. */
const TASK: Task = { type: 'noop', requires: ['work'] };
/** A phase that takes longer than this is stuck (a lost task, a dead child): fail instead of hanging. */
const PHASE_TIMEOUT_MS = 120_000;

export async function benchBridge(settings: BenchSettings): Promise<BridgeResult> {
  const s = settings.bridge;
  const redis = await startRedisServer();
  const id = randomBytes(6).toString('hex');
  const namespace = `uo-bench:${id}`;
  const queueName = `uo-bench-${id}`;
  progress(`bridge: redis-server ${redis.version} on ${redis.port}; namespace ${namespace}, queue ${queueName}`);

  const children: ChildProcess[] = [];
  const killAll = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.once('exit', killAll); // last resort, should this process die before the clean-up below
  let producer: UnifiedOrchestrator | undefined;
  let bull: BullMQProducer | undefined;
  try {
    const [uoWorker, bullWorker] = await Promise.all([
      startWorker('redis-bridge', redis.url, namespace, s.concurrency, children),
      startWorker('bullmq', redis.url, queueName, s.concurrency, children),
    ]);
    progress(`bridge: worker processes: RedisBridge node pid ${uoWorker.pid}, BullMQ Worker pid ${bullWorker.pid}`);

    producer = new UnifiedOrchestrator({
      bridge: new RedisBridge({ url: redis.url, namespace, nodeId: 'bench-producer', secret: SECRET }),
    });
    await producer.start();
    await until(() => producer!.bridge.canAnyServe(TASK.requires!), 15_000, 'the producer to see the worker node');
    bull = new BullMQProducer(redis, queueName);
    await bull.ready();

    const orch = producer;
    const b = bull;
    const workerPid = { redisBridge: uoWorker.pid!, bullmq: bullWorker.pid! };
    const rate = async (side: 'redisBridge' | 'bullmq', n: number): Promise<{ perSec: number; cpu: CpuPerTask }> => {
      const before = await cpuTimes(workerPid[side], redis.pid);
      const elapsedMs =
        side === 'redisBridge' ? await runBridge(orch, n, s.window) : await b.run(n, s.window, s.bulkChunk);
      const after = await cpuTimes(workerPid[side], redis.pid);
      const perTask = (k: keyof CpuPerTask): number => (after[k] - before[k]) / n;
      return {
        perSec: (n * 1_000) / elapsedMs,
        cpu: { producerUs: perTask('producerUs'), workerUs: perTask('workerUs'), redisUs: perTask('redisUs') },
      };
    };

    // Warm-up, not counted: the class announced and its consumer group made, connections and code paths warm.
    await rate('redisBridge', s.warmupTasks);
    await rate('bullmq', s.warmupTasks);
    const rounds: Round[] = [];
    const cpuLine = (c: CpuPerTask): string =>
      `${c.producerUs.toFixed(0)} + ${c.workerUs.toFixed(0)} + ${c.redisUs.toFixed(0)} µs CPU`;
    for (let r = 0; r < s.rounds; r++) {
      const order = r % 2 === 0 ? (['redisBridge', 'bullmq'] as const) : (['bullmq', 'redisBridge'] as const);
      const measured: Partial<Record<'redisBridge' | 'bullmq', { perSec: number; cpu: CpuPerTask }>> = {};
      for (const side of order) measured[side] = await rate(side, s.tasksPerRound);
      const uo = measured.redisBridge!;
      const bq = measured.bullmq!;
      rounds.push({ redisBridge: uo.perSec, bullmq: bq.perSec, cpu: { redisBridge: uo.cpu, bullmq: bq.cpu } });
      progress(
        `bridge: round ${r + 1}/${s.rounds}: RedisBridge ${Math.round(uo.perSec).toLocaleString('en-US')}/s (${cpuLine(uo.cpu)}), BullMQ ${Math.round(bq.perSec).toLocaleString('en-US')}/s (${cpuLine(bq.cpu)}) per task (producer + worker + redis)`,
      );
    }
    const medianCpu = (side: 'redisBridge' | 'bullmq'): CpuPerTask => ({
      producerUs: median(rounds.map((r) => r.cpu[side].producerUs)),
      workerUs: median(rounds.map((r) => r.cpu[side].workerUs)),
      redisUs: median(rounds.map((r) => r.cpu[side].redisUs)),
    });

    const budget = { timeMs: 100, minSamples: s.roundTripSamples, warmupMs: 100 };
    const uoRoundTrip = summarise(
      await sampleLatency(
        'bridge round trip (RedisBridge)',
        async () => {
          const t0 = performance.now();
          await orch.submit(TASK);
          return performance.now() - t0;
        },
        budget,
      ),
    );
    const bullRoundTrip = summarise(await sampleLatency('bridge round trip (BullMQ)', () => b.roundTrip(), budget));
    progress(
      `bridge: round trip p50 RedisBridge ${(uoRoundTrip.p50Us / 1_000).toFixed(3)} ms, BullMQ ${(bullRoundTrip.p50Us / 1_000).toFixed(3)} ms`,
    );

    return {
      redisServerVersion: redis.version,
      bullmqVersion: BULLMQ_VERSION,
      concurrency: s.concurrency,
      window: s.window,
      tasksPerRound: s.tasksPerRound,
      warmupTasks: s.warmupTasks,
      rounds,
      redisBridge: {
        tasksPerSec: median(rounds.map((r) => r.redisBridge)),
        cpuPerTask: medianCpu('redisBridge'),
        roundTrip: uoRoundTrip,
        producerStats: orch.bridge.stats(),
      },
      bullmq: {
        tasksPerSec: median(rounds.map((r) => r.bullmq)),
        cpuPerTask: medianCpu('bullmq'),
        roundTrip: bullRoundTrip,
        bulkChunk: s.bulkChunk,
      },
      throughputRatio: median(rounds.map((r) => r.redisBridge / r.bullmq)),
      roundTripP50Ratio: bullRoundTrip.p50Us / uoRoundTrip.p50Us,
    };
  } finally {
    await producer?.stop().catch(() => {});
    await bull?.close().catch(() => {});
    await Promise.all(children.map((c) => stopChild(c)));
    process.off('exit', killAll);
    await redis.stop();
    pidusage.clear(); // its CPU history sits behind an interval of its own
  }
}

/** Cumulative CPU time (user + system) of this process, a worker child and redis-server, in µs. */
async function cpuTimes(workerPid: number, redisPid: number): Promise<CpuPerTask> {
  const own = process.cpuUsage();
  const stats = await pidusage([workerPid, redisPid]);
  return {
    producerUs: own.user + own.system,
    workerUs: stats[workerPid]!.ctime * 1_000,
    redisUs: stats[redisPid]!.ctime * 1_000,
  };
}

// --- RedisBridge --------------------------------------------------------------------------------------

/** `n` hand-offs through the producer with `window` in flight; every one must come back fulfilled. */
async function runBridge(producer: UnifiedOrchestrator, n: number, window: number): Promise<number> {
  const run = await withTimeout(
    runWindowed(n, window, () => producer.submit(TASK)),
    PHASE_TIMEOUT_MS,
    `RedisBridge: ${n} hand-offs`,
  );
  if (run.rejected > 0) throw new Error(`RedisBridge: ${run.rejected} of ${n} no-op hand-offs failed`);
  return run.elapsedMs;
}

// --- BullMQ --------------------------------------------------------------------------------------------

/** The producer side of BullMQ: a Queue to add jobs and a QueueEvents to see them finish. */
class BullMQProducer {
  readonly queue: InstanceType<BullMQ['Queue']>;
  readonly events: InstanceType<BullMQ['QueueEvents']>;
  /** Who hears job completions now (one phase at a time). */
  #onFinished: ((jobId: string, failedReason: string | undefined) => void) | undefined;

  constructor(redis: BenchRedis, name: string) {
    const connection = { host: redis.host, port: redis.port };
    const { Queue, QueueEvents } = loadBullMQ();
    this.queue = new Queue(name, { connection, defaultJobOptions: { removeOnComplete: true, removeOnFail: true } });
    // From the start of the (fresh) events stream, not from `$`: no completion is missed while it connects.
    this.events = new QueueEvents(name, { connection, lastEventId: '0' });
    this.queue.on('error', (error) => progress(`bridge: BullMQ queue error: ${error.message}`));
    this.events.on('error', (error) => progress(`bridge: BullMQ events error: ${error.message}`));
    this.events.on('completed', ({ jobId }) => this.#onFinished?.(jobId, undefined));
    this.events.on('failed', ({ jobId, failedReason }) => this.#onFinished?.(jobId, failedReason || 'failed'));
  }

  async ready(): Promise<void> {
    await Promise.all([this.queue.waitUntilReady(), this.events.waitUntilReady()]);
  }

  /** Adds `n` jobs (in `addBulk` chunks, at most `window` unfinished) and resolves with the ms until all finished. */
  run(n: number, window: number, chunk: number): Promise<number> {
    const run = new Promise<number>((resolve, reject) => {
      let added = 0;
      let finished = 0;
      let inFlight = 0;
      const t0 = performance.now();
      const fail = (error: unknown): void => {
        this.#onFinished = undefined;
        reject(error instanceof Error ? error : new Error(String(error)));
      };
      const topUp = (): void => {
        for (;;) {
          const room = Math.min(window - inFlight, n - added, chunk);
          // Fill in whole chunks unless the remainder is smaller: fewer, larger addBulk calls.
          if (room <= 0 || (room < chunk && room < n - added)) return;
          const jobs = Array.from({ length: room }, () => ({ name: 'noop', data: {} }));
          added += room;
          inFlight += room;
          this.queue.addBulk(jobs).catch(fail);
        }
      };
      this.#onFinished = (_jobId, failedReason) => {
        if (failedReason !== undefined) return fail(new Error(`BullMQ: a no-op job failed: ${failedReason}`));
        finished++;
        inFlight--;
        if (finished === n) {
          this.#onFinished = undefined;
          resolve(performance.now() - t0);
        } else topUp();
      };
      if (n === 0) resolve(0);
      else topUp();
    });
    return withTimeout(run, PHASE_TIMEOUT_MS, `BullMQ: ${n} jobs`);
  }

  /** One job added and its completion seen, alone in flight; resolves with the ms it took. */
  async roundTrip(): Promise<number> {
    let target: string | undefined;
    const early = new Map<string, string | undefined>();
    let settle!: (failedReason: string | undefined) => void;
    // The time is taken when the completion is seen, so the timeout guard below is not in the sample.
    const finished = new Promise<number>((resolve, reject) => {
      settle = (failedReason) =>
        failedReason === undefined
          ? resolve(performance.now())
          : reject(new Error(`BullMQ: a no-op job failed: ${failedReason}`));
    });
    // The completion may be read before `add` resolves (another connection): keep it until the id is known.
    this.#onFinished = (jobId, failedReason) => {
      if (target === undefined) early.set(jobId, failedReason);
      else if (jobId === target) settle(failedReason);
    };
    const t0 = performance.now();
    const job = await this.queue.add('noop', {});
    target = job.id!;
    if (early.has(target)) settle(early.get(target));
    const finishedAt = await withTimeout(finished, PHASE_TIMEOUT_MS, 'BullMQ: a round trip');
    this.#onFinished = undefined;
    return finishedAt - t0;
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.events.close(), this.queue.close()]);
  }
}

// --- Children, timing -------------------------------------------------------------------------------------

/** Starts bench/bridge-worker.ts in `mode` (added to `children` at once, for clean-up); resolves once it prints "ready". */
function startWorker(
  mode: 'redis-bridge' | 'bullmq',
  url: string,
  name: string,
  concurrency: number,
  children: ChildProcess[],
): Promise<ChildProcess> {
  const profDir = process.env['BENCH_BRIDGE_CPU_PROF'];
  // Node's default profile names (pid and thread): tsx's loader thread writes one too, and must not overwrite this one.
  const profile = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
  const child = spawn(
    process.execPath,
    [...profile, '--import', 'tsx', workerScript, mode, url, name, String(concurrency)],
    {
      cwd: root,
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, BENCH_BRIDGE_SECRET: SECRET },
    },
  );
  children.push(child);
  return withTimeout(
    new Promise<ChildProcess>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.split('\n').includes('ready')) resolve(child);
      });
      child.once('error', reject);
      child.once('exit', (code, signal) =>
        reject(
          new Error(`bench/bridge-worker.ts ${mode} exited (${signal ?? code}) before it was ready: ${out.trim()}`),
        ),
      );
    }),
    30_000,
    `the ${mode} worker to start`,
  ).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });
}

/** SIGTERM (the child closes cleanly and exits), SIGKILL if it has not exited within 5 s. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
  child.stdin?.destroy();
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`bridge suite: timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`bridge suite: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
