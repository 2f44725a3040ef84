/**
 * Throughput of no-op tasks through the orchestrator (75 agents) and through bare p-queue (concurrency 75), in
 * the same run so that machine noise hits both.
 *
 * - Short queue: rounds of N tasks with 1,000 in flight (75 running, the rest waiting); the sides alternate
 *   which goes first; figures are medians over rounds, the ratio the median of the rounds' ratios.
 * - Backlog: 200,000 waiting tasks of random priorities in [-1e6, 1e6]. Each side is filled with the same
 *   priorities (in descending order, which gives the same backlog without p-queue paying for 200,000 sorted
 *   inserts up front), then measured *sustained*: every completion submits one new task of random priority, so
 *   the backlog stays at 200,000 while M tasks complete. That is a service that keeps receiving work faster than
 *   it drains, and it is where a sorted-array queue pays O(n) per insert. Then the backlog is drained with no new
 *   arrivals; that figure is reported too, for information.
 */
import PQueue from 'p-queue';
import { UnifiedOrchestrator, type Task } from 'unified-orchestrator';
import { median, progress } from './harness.js';
import { noop, randomInt, runWindowed, seededRandom } from './load.js';
import { FLEET, type BenchSettings } from './settings.js';

export interface Comparison {
  readonly orchestratorTasksPerSec: number;
  readonly pQueueTasksPerSec: number;
  /** Orchestrator / p-queue. */
  readonly ratio: number;
}

export interface BacklogSide {
  /** Submitting the backlog (in descending priority order). */
  readonly fillTasksPerSec: number;
  /** Completions per second with the backlog held at its size. */
  readonly sustainedTasksPerSec: number;
  /** Completions per second draining the backlog with no new arrivals. */
  readonly drainTasksPerSec: number;
}

export interface ThroughputResult {
  readonly noop: Comparison & {
    readonly rounds: readonly { orchestrator: number; pQueue: number }[];
    readonly tasksPerRound: number;
    readonly window: number;
  };
  readonly backlog: {
    readonly size: number;
    readonly sustainedTasks: number;
    readonly sustained: Comparison;
    readonly drain: Comparison;
    readonly orchestrator: BacklogSide;
    readonly pQueue: BacklogSide;
  };
}

const NOOP_TASK: Task = { type: 'noop', requires: ['noop'] };

function fleet(maxQueueSize?: number): UnifiedOrchestrator {
  return new UnifiedOrchestrator({
    ...(maxQueueSize === undefined ? {} : { maxQueueSize }),
    pools: [
      {
        role: 'noop',
        capabilities: ['noop'],
        create: () => ({ execute: noop }),
        minAgents: FLEET,
        maxAgents: FLEET,
        warmSpares: 0,
      },
    ],
  });
}

export async function benchThroughput(settings: BenchSettings): Promise<ThroughputResult> {
  const noopResult = await shortQueue(settings);
  progress(`throughput: short queue done (${noopResult.ratio.toFixed(2)}× p-queue)`);
  const backlog = await backlogCase(settings);
  return { noop: noopResult, backlog };
}

// --- Short queue ----------------------------------------------------------------------------------

async function shortQueue(settings: BenchSettings): Promise<ThroughputResult['noop']> {
  const { rounds, tasksPerRound, window } = settings.throughput;
  const orchestrator = fleet();
  await orchestrator.start();
  const queue = new PQueue({ concurrency: FLEET });
  const sides = {
    orchestrator: (n: number) => runWindowed(n, window, () => orchestrator.submit(NOOP_TASK)),
    pQueue: (n: number) => runWindowed(n, window, () => queue.add(noop)),
  };
  const rate = async (side: keyof typeof sides, n: number): Promise<number> => {
    const run = await sides[side](n);
    if (run.rejected > 0) throw new Error(`${side}: ${run.rejected} no-op tasks failed`);
    return (n * 1_000) / run.elapsedMs;
  };
  try {
    // Warm-up, not counted: both sides' code paths compiled before the first measured round.
    await rate('pQueue', Math.min(20_000, tasksPerRound));
    await rate('orchestrator', Math.min(20_000, tasksPerRound));
    const results: { orchestrator: number; pQueue: number }[] = [];
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) {
        const pQueue = await rate('pQueue', tasksPerRound);
        const orch = await rate('orchestrator', tasksPerRound);
        results.push({ orchestrator: orch, pQueue });
      } else {
        const orch = await rate('orchestrator', tasksPerRound);
        const pQueue = await rate('pQueue', tasksPerRound);
        results.push({ orchestrator: orch, pQueue });
      }
    }
    return {
      orchestratorTasksPerSec: median(results.map((r) => r.orchestrator)),
      pQueueTasksPerSec: median(results.map((r) => r.pQueue)),
      ratio: median(results.map((r) => r.orchestrator / r.pQueue)),
      rounds: results,
      tasksPerRound,
      window,
    };
  } finally {
    await orchestrator.stop();
  }
}

// --- Backlog --------------------------------------------------------------------------------------

/** A queue under test: submit one no-op task at a priority. */
type Submit = (priority: number) => Promise<unknown>;

/**
 * Fills `fill.length` tasks, then measures `arrivals.length` completions with one new arrival per completion, then
 * drains what is left. Every submitted task must complete.
 */
function runBacklog(submit: Submit, fill: Int32Array, arrivals: Int32Array): Promise<BacklogSide> {
  return new Promise((resolve, reject) => {
    let phase: 'fill' | 'sustained' | 'drain' = 'fill';
    let submitted = 0;
    let settled = 0;
    let arrived = 0;
    let completedInPhase = 0;
    let phaseStart = 0;
    let sustainedTasksPerSec = 0;
    let drainSize = 0;
    let fillTasksPerSec = 0;
    const onSettled = (): void => {
      settled++;
      completedInPhase++;
      if (phase === 'sustained') {
        if (arrived < arrivals.length) add(arrivals[arrived++]!);
        if (completedInPhase === arrivals.length) {
          const now = performance.now();
          sustainedTasksPerSec = (completedInPhase * 1_000) / (now - phaseStart);
          phase = 'drain';
          phaseStart = now;
          completedInPhase = 0;
          drainSize = submitted - settled;
        }
      }
      if (phase === 'drain' && settled === submitted) {
        const drainTasksPerSec = drainSize === 0 ? Number.NaN : (drainSize * 1_000) / (performance.now() - phaseStart);
        resolve({ fillTasksPerSec, sustainedTasksPerSec, drainTasksPerSec });
      }
    };
    const onFailed = (error: unknown): void => reject(error instanceof Error ? error : new Error(String(error)));
    const add = (priority: number): void => {
      submitted++;
      submit(priority).then(onSettled, onFailed);
    };
    const t0 = performance.now();
    for (const p of fill) add(p);
    fillTasksPerSec = (fill.length * 1_000) / (performance.now() - t0);
    // Nothing has completed yet: completions are promise callbacks, and the fill loop did not yield.
    phase = 'sustained';
    phaseStart = performance.now();
  });
}

async function backlogCase(settings: BenchSettings): Promise<ThroughputResult['backlog']> {
  const { size, sustainedTasks } = settings.backlog;
  const random = seededRandom(0xb10c);
  const fill = Int32Array.from({ length: size }, () => randomInt(random, -1_000_000, 1_000_000))
    .sort()
    .reverse();
  const arrivals = Int32Array.from({ length: sustainedTasks }, () => randomInt(random, -1_000_000, 1_000_000));

  const queue = new PQueue({ concurrency: FLEET });
  const pQueue = await runBacklog((priority) => queue.add(noop, { priority }), fill, arrivals);
  progress(
    `throughput: p-queue backlog done (${Math.round(pQueue.sustainedTasksPerSec).toLocaleString('en-US')} tasks/s sustained)`,
  );

  const orchestrator = fleet(size + sustainedTasks + 1_000);
  await orchestrator.start();
  let orch: BacklogSide;
  try {
    orch = await runBacklog(
      (priority) => orchestrator.submit({ type: 'noop', requires: ['noop'], priority }),
      fill,
      arrivals,
    );
  } finally {
    await orchestrator.stop();
  }
  const compare = (o: number, q: number): Comparison => ({
    orchestratorTasksPerSec: o,
    pQueueTasksPerSec: q,
    ratio: o / q,
  });
  return {
    size,
    sustainedTasks,
    sustained: compare(orch.sustainedTasksPerSec, pQueue.sustainedTasksPerSec),
    drain: compare(orch.drainTasksPerSec, pQueue.drainTasksPerSec),
    orchestrator: orch,
    pQueue,
  };
}
