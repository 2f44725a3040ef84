/**
 * The shape every durable-queue subject takes in the durable bench (bench/durable-peers.ts), and the measurement the
 * bench makes of each, the same for all: the peers (graphile-worker, pg-boss) today, the orchestrator's own durable
 * store when it exists.
 *
 * A subject knows how to start its workers on a database, how to enqueue no-op jobs, and tells the harness when a
 * job's completion has been written back. The harness owns the clock: it enqueues, timestamps and waits, so every
 * subject is timed by the same code.
 */
import { median, summarise } from './harness.js';
import { rotated } from './rounds.js';

/** One durable queue under test, with its knobs fixed. */
export interface DurableSubject {
  /** The column name in the table, with the package version and the enqueue path (say "pg-boss 10.4.2, send"). */
  readonly name: string;
  /** The knobs in plain words, for the notes under the table (concurrency, batch sizes, polling). */
  readonly settings: string;
  /**
   * Jobs per enqueue call: 1 enqueues one job per call (as an application adding a job per request does); more
   * gives `enqueue` up to that many keys at once, for the subject's batch insert.
   */
  readonly batch: number;
  /** Jobs per throughput run, when the subject is too slow for the bench's default (the table shows the number). */
  readonly jobs?: number;
  /**
   * Installs the subject's schema in the (fresh, empty) database at `url` and starts its workers. Each job runs a
   * no-op and, once the job's completion is written to the database, the subject calls `completed` with the job's
   * key (exactly once per job).
   */
  setup(url: string, completed: (key: number) => void): Promise<void>;
  /** Enqueues one job per key (1 to `batch` keys); resolves once the jobs are committed. */
  enqueue(keys: readonly number[]): Promise<void>;
  /** Stops the workers and closes every connection; nothing of the subject keeps the process alive after. */
  teardown(): Promise<void>;
}

/** What one run of a subject measured. */
export interface DurableResult {
  readonly subject: string;
  /** Jobs in the throughput run. */
  readonly jobs: number;
  /** Jobs completed per second, from the first enqueue call to the last completion. */
  readonly jobsPerSecond: number;
  /** Jobs enqueued per second, from the first enqueue call to the last one resolved (workers running meanwhile). */
  readonly enqueuePerSecond: number;
  /** Enqueue-to-complete of the throughput run's jobs, ms: a backlog forms, so this is latency under load. */
  readonly loadedP50Ms: number;
  readonly loadedP99Ms: number;
  /** Enqueue-to-complete of one job at a time on idle workers, ms. */
  readonly idleP50Ms: number;
  readonly idleP99Ms: number;
}

/** How a run goes; the same for every subject. */
export interface DurableOptions {
  /** Jobs per throughput run, unless the subject sets `jobs`. */
  readonly jobs: number;
  /** Enqueue calls in flight at once (callers in parallel, as request handlers would be). */
  readonly producers: number;
  /** Jobs enqueued and completed before the throughput run, not measured. */
  readonly warmup: number;
  /** One-at-a-time jobs for the idle latency. */
  readonly idleSamples: number;
  /** A run that does not complete within this fails. */
  readonly timeoutMs: number;
}

/** Tracks completions by key and wakes whoever waits for a count of them. */
class Completions {
  private readonly at = new Map<number, number>();
  private waiter: { count: number; resolve: () => void } | undefined;

  readonly completed = (key: number): void => {
    if (this.at.has(key)) throw new Error(`job ${key} reported complete twice`);
    this.at.set(key, performance.now());
    if (this.waiter && this.at.size >= this.waiter.count) this.waiter.resolve();
  };

  time(key: number): number {
    const t = this.at.get(key);
    if (t === undefined) throw new Error(`job ${key} did not complete`);
    return t;
  }

  /** Resolves once `count` jobs in all have completed; rejects after `timeoutMs`. */
  async until(count: number, timeoutMs: number, what: string): Promise<void> {
    if (this.at.size >= count) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        this.waiter = { count, resolve };
        timer = setTimeout(
          () => reject(new Error(`${what}: ${this.at.size} of ${count} jobs completed in ${timeoutMs} ms`)),
          timeoutMs,
        );
      });
    } finally {
      clearTimeout(timer);
      this.waiter = undefined;
    }
  }
}

/**
 * Enqueues keys `from` to `to - 1` in calls of `batch` keys, `producers` calls in flight at once; records each key's
 * enqueue time (when its call started) in `sentAt`.
 */
async function enqueueAll(
  subject: DurableSubject,
  from: number,
  to: number,
  producers: number,
  sentAt: Map<number, number>,
): Promise<void> {
  let next = from;
  const producer = async (): Promise<void> => {
    while (next < to) {
      const keys: number[] = [];
      while (keys.length < subject.batch && next < to) keys.push(next++);
      const t = performance.now();
      for (const key of keys) sentAt.set(key, t);
      await subject.enqueue(keys);
    }
  };
  await Promise.all(Array.from({ length: producers }, producer));
}

/** One run of `subject` on the fresh database at `url`: set up, warm up, throughput, idle latency, tear down. */
export async function runDurable(
  subject: DurableSubject,
  url: string,
  options: DurableOptions,
): Promise<DurableResult> {
  const done = new Completions();
  const sentAt = new Map<number, number>();
  await subject.setup(url, done.completed);
  try {
    let key = 0;
    await enqueueAll(subject, key, options.warmup, options.producers, sentAt);
    key = options.warmup;
    await done.until(key, options.timeoutMs, `${subject.name} warm-up`);

    const jobs = subject.jobs ?? options.jobs;
    const first = key;
    const t0 = performance.now();
    await enqueueAll(subject, first, first + jobs, options.producers, sentAt);
    const enqueuedMs = performance.now() - t0;
    key += jobs;
    await done.until(key, options.timeoutMs, `${subject.name} throughput`);
    let last = 0;
    const loaded: number[] = [];
    for (let k = first; k < key; k++) {
      const t = done.time(k);
      last = Math.max(last, t);
      loaded.push(t - sentAt.get(k)!);
    }
    const loadedStats = summarise(loaded);

    const idle: number[] = [];
    for (let i = 0; i < options.idleSamples; i++) {
      const t = performance.now();
      await subject.enqueue([key]);
      await done.until(++key, options.timeoutMs, `${subject.name} idle latency`);
      idle.push(done.time(key - 1) - t);
    }
    const idleStats = summarise(idle);

    return {
      subject: subject.name,
      jobs,
      jobsPerSecond: (jobs * 1_000) / (last - t0),
      enqueuePerSecond: (jobs * 1_000) / enqueuedMs,
      loadedP50Ms: loadedStats.p50Us / 1_000,
      loadedP99Ms: loadedStats.p99Us / 1_000,
      idleP50Ms: idleStats.p50Us / 1_000,
      idleP99Ms: idleStats.p99Us / 1_000,
    };
  } finally {
    await subject.teardown();
  }
}

/**
 * `rounds` rounds of every subject, in a rotating order, each run on a database of its own from `newDatabase`.
 * `makers` make a fresh subject per run; `onResult` hears each result as it comes (for progress lines).
 */
export async function durableRounds(
  makers: ReadonlyArray<() => DurableSubject>,
  rounds: number,
  newDatabase: () => Promise<string>,
  options: DurableOptions,
  onResult: (result: DurableResult) => void = () => {},
): Promise<DurableResult[]> {
  const results: DurableResult[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const make of rotated(makers, round)) {
      const result = await runDurable(make(), await newDatabase(), options);
      onResult(result);
      results.push(result);
    }
  }
  return results;
}

/** A Markdown table of the medians over rounds, one row per subject in the order of `subjects`. */
export function renderDurable(results: readonly DurableResult[], subjects: readonly string[]): string {
  const fixed = (v: number, digits: number): string => v.toFixed(digits);
  const whole = (v: number): string => Math.round(v).toLocaleString('en');
  const lines = [
    '| subject | jobs | rounds | jobs/s | enqueue/s | latency under load p50 / p99 (ms) | idle latency p50 / p99 (ms) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const name of subjects) {
    const of = results.filter((r) => r.subject === name);
    if (of.length === 0) continue;
    const m = (pick: (r: DurableResult) => number): number => median(of.map(pick));
    lines.push(
      `| ${name} | ${of[0]!.jobs} | ${of.length} | ${whole(m((r) => r.jobsPerSecond))} | ` +
        `${whole(m((r) => r.enqueuePerSecond))} | ${fixed(
          m((r) => r.loadedP50Ms),
          0,
        )} / ${fixed(
          m((r) => r.loadedP99Ms),
          0,
        )} | ` +
        `${fixed(
          m((r) => r.idleP50Ms),
          1,
        )} / ${fixed(
          m((r) => r.idleP99Ms),
          1,
        )} |`,
    );
  }
  return lines.join('\n');
}
