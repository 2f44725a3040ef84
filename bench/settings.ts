/**
 * Command line and the sizes of every case, full and quick, in one place.
 *
 *   npm run bench                          # full: a few minutes on 2 cores
 *   npm run bench -- --quick               # short: under a minute
 *   npm run bench -- --only scale,stress   # some suites only (the others show as not run)
 *   npm run bench -- --only bridge         # RedisBridge vs BullMQ on a redis-server of its own
 *   npm run bench -- --only compat         # the legacy adapter and traffic router beside their baselines
 *   npm run bench -- --out /tmp/b.json     # write the JSON elsewhere (the test does)
 *   npm run bench -- --build               # measure a tsc build (dist/) instead of src/ under tsx
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export const SUITES = [
  'registration',
  'delegation',
  'throughput',
  'scale',
  'stress',
  'memory',
  'bridge',
  'compat',
] as const;
export type SuiteName = (typeof SUITES)[number];

/** Agents in the reference fleet, and p-queue's concurrency beside it: the seed's "tested to 75". */
export const FLEET = 75;

export interface LatencyBudget {
  /** Time budget per case in ms (tinybench `time`). */
  readonly timeMs: number;
  /** Minimum samples per case (tinybench `iterations`). */
  readonly minSamples: number;
  readonly warmupMs: number;
}

export interface BenchSettings {
  readonly quick: boolean;
  /** Measure a tsc build of the library rather than src/ under tsx (see bench/subject.ts). */
  readonly build: boolean;
  readonly suites: ReadonlySet<SuiteName>;
  readonly outFile: string;
  readonly latency: LatencyBudget;
  /** registerAgent calls sampled (no warm-up: the first, cold calls are in the sample). */
  readonly registerSamples: number;
  readonly throughput: {
    /** Rounds, alternating which side goes first; figures are medians over rounds. */
    readonly rounds: number;
    readonly tasksPerRound: number;
    /** Tasks in flight at once: a short queue (75 running, the rest waiting). */
    readonly window: number;
  };
  readonly backlog: {
    /** Waiting tasks held while measuring. */
    readonly size: number;
    /** Completions measured with the backlog held at `size` (each completion submits one new task). */
    readonly sustainedTasks: number;
  };
  readonly scale: {
    readonly fleets: readonly number[];
    readonly classes: number;
    /** Interleaved passes over the fleets, so machine noise hits every fleet alike. */
    readonly passes: number;
    readonly latency: LatencyBudget;
  };
  readonly stress: {
    readonly tasks: number;
    /** Tasks in flight at most. */
    readonly window: number;
    /** Share of attempts that fail. */
    readonly failureRate: number;
    readonly maxAttempts: number;
  };
  readonly memory: {
    /** Completed tasks between the two heap readings of the growth figure. */
    readonly tasks: number;
    /** Tasks run (and JIT-compiled) before the first reading. */
    readonly warmupTasks: number;
  };
  readonly bridge: {
    /** Throughput rounds per side (RedisBridge, BullMQ), alternating which goes first; figures are medians. */
    readonly rounds: number;
    readonly tasksPerRound: number;
    /** Tasks per side before the first round, not counted (connections, JIT, consumer groups settled). */
    readonly warmupTasks: number;
    /** Tasks in flight at most, on both sides. */
    readonly window: number;
    /** Tasks run at once on the serving side: agents of the worker node, BullMQ Worker concurrency. */
    readonly concurrency: number;
    /** BullMQ jobs per `addBulk` call (at most; never more than the window has room for). */
    readonly bulkChunk: number;
    /** Sequential single round trips (submit → result) sampled per side. */
    readonly roundTripSamples: number;
  };
  readonly compat: {
    /** Interleaved passes over the latency cases (alternating order); each case's samples are pooled. */
    readonly passes: number;
    /** Budget per round-trip case (submit, adapter, router at 100%) per pass. */
    readonly latency: LatencyBudget;
    /**
     * Budget per single-call case (legacy directly, router passthrough) per pass: smaller, as sub-µs calls give
     * hundreds of thousands of samples a second and tinybench's processing of them is not in its time budget.
     */
    readonly callLatency: LatencyBudget;
    /** Distinct keys the routing decision is timed over. */
    readonly routingKeys: number;
    /** Timed passes over every key; the figure is the median pass. */
    readonly routingRounds: number;
  };
}

export function readSettings(argv: readonly string[] = process.argv.slice(2)): BenchSettings {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean', default: false },
      build: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
    },
  });
  const quick = values.quick;
  let suites: Set<SuiteName> = new Set(SUITES);
  if (values.only !== undefined) {
    const names = values.only
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const unknown = names.filter((n) => !(SUITES as readonly string[]).includes(n));
    if (unknown.length > 0 || names.length === 0) {
      throw new Error(`Expected --only to list suites from ${SUITES.join(', ')}, got ${JSON.stringify(values.only)}`);
    }
    suites = new Set(names as SuiteName[]);
  }
  const outFile = values.out ?? fileURLToPath(new URL('./results/latest.json', import.meta.url));

  return {
    quick,
    build: values.build,
    suites,
    outFile,
    latency: quick
      ? { timeMs: 300, minSamples: 500, warmupMs: 50 }
      : { timeMs: 2_000, minSamples: 2_000, warmupMs: 250 },
    registerSamples: quick ? 5_000 : 20_000,
    throughput: quick
      ? { rounds: 3, tasksPerRound: 60_000, window: 1_000 }
      : { rounds: 7, tasksPerRound: 300_000, window: 1_000 },
    backlog: quick ? { size: 200_000, sustainedTasks: 10_000 } : { size: 200_000, sustainedTasks: 50_000 },
    scale: {
      fleets: [FLEET, 1_000, 10_000],
      classes: 10,
      passes: quick ? 2 : 4,
      latency: quick
        ? { timeMs: 150, minSamples: 300, warmupMs: 30 }
        : { timeMs: 600, minSamples: 1_000, warmupMs: 100 },
    },
    stress: { tasks: quick ? 50_000 : 1_000_000, window: 20_000, failureRate: 0.2, maxAttempts: 3 },
    memory: { tasks: quick ? 100_000 : 1_000_000, warmupTasks: 20_000 },
    bridge: quick
      ? {
          rounds: 1,
          tasksPerRound: 5_000,
          warmupTasks: 2_000,
          window: 1_000,
          concurrency: 50,
          bulkChunk: 100,
          roundTripSamples: 300,
        }
      : {
          rounds: 3,
          tasksPerRound: 20_000,
          warmupTasks: 5_000,
          window: 1_000,
          concurrency: 50,
          bulkChunk: 100,
          roundTripSamples: 2_000,
        },
    compat: quick
      ? {
          passes: 2,
          latency: { timeMs: 120, minSamples: 200, warmupMs: 20 },
          callLatency: { timeMs: 40, minSamples: 500, warmupMs: 10 },
          routingKeys: 10_000,
          routingRounds: 50,
        }
      : {
          passes: 2,
          latency: { timeMs: 800, minSamples: 1_000, warmupMs: 100 },
          callLatency: { timeMs: 200, minSamples: 2_000, warmupMs: 50 },
          routingKeys: 10_000,
          routingRounds: 200,
        },
  };
}
