/**
 * A tour of unified-orchestrator, in memory, with no services to run.
 *
 * Three pools of simulated agents (researchers, coders, reviewers) take a few thousand tasks with mixed
 * requirements, preferences and priorities. Agents are a little slow, sometimes fail and now and then stall,
 * so you see retries, dead letters, timeouts and cancellations as well as successes. At the end it prints
 * what happened to every task, the throughput and latency, and which role did the work.
 *
 *   npm run demo                  # 3,000 tasks
 *   npm run demo -- --tasks 500   # or any other number
 *   npm run demo -- --http 9464   # also serve /metrics, /healthz and /readyz on that port, until Ctrl-C
 */
import { createServer } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import {
  UnifiedOrchestrator,
  type Agent,
  type AgentFactoryContext,
  type Task,
  type TaskContext,
  type TaskOutcome,
} from 'unified-orchestrator';

// --- Settings -------------------------------------------------------------------------------------

const { values: args } = parseArgs({
  options: { tasks: { type: 'string', default: '3000' }, http: { type: 'string' } },
});
const TASKS = Number(args.tasks);
if (!Number.isSafeInteger(TASKS) || TASKS < 1) {
  console.error(`Expected --tasks to be a whole number >= 1, got ${JSON.stringify(args.tasks)}`);
  process.exit(2);
}
const HTTP_PORT = args.http === undefined ? undefined : Number(args.http);
if (HTTP_PORT !== undefined && !(Number.isInteger(HTTP_PORT) && HTTP_PORT >= 0 && HTTP_PORT < 65_536)) {
  console.error(`Expected --http to be a port number, got ${JSON.stringify(args.http)}`);
  process.exit(2);
}

const FAILURE_RATE = 0.04; // an attempt throws; ten times as often for flaky tasks
const STALL_RATE = 0.01; // an attempt hangs past its timeout
const CANCEL_RATE = 0.01; // the caller gives up on a task
const TIMEOUT_MS = 50; // per attempt; a normal attempt takes 2–10 ms

// --- Simulated agents -----------------------------------------------------------------------------

/** Waits `ms`, or rejects with the abort reason (TaskTimeoutError, TaskCancelledError) as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch((error: unknown) => {
    throw signal.aborted ? signal.reason : error;
  });
}

interface Payload {
  n: number;
  flaky: boolean;
}

/** An agent that "works" for a few ms, fails now and then, and sometimes stalls until its timeout aborts it. */
function simulatedAgent(role: string): Agent<Payload, string> {
  return {
    async execute(ctx: TaskContext<Payload>) {
      if (Math.random() < STALL_RATE) await sleep(10 * TIMEOUT_MS, ctx.signal);
      else await sleep(2 + Math.random() * 8, ctx.signal);
      if (Math.random() < (ctx.payload.flaky ? 10 * FAILURE_RATE : FAILURE_RATE)) {
        throw new Error(`${ctx.agentId} hit a simulated error`);
      }
      return `${role} did ${ctx.type} #${ctx.payload.n}`;
    },
  };
}

/** A pool's factory: called at start to pre-warm, and again whenever the pool grows. */
const create = ({ role }: AgentFactoryContext): Agent => simulatedAgent(role);

const orchestrator = new UnifiedOrchestrator({
  pools: [
    { role: 'researcher', capabilities: ['search', 'summarise'], create, minAgents: 4, maxAgents: 16 },
    { role: 'coder', capabilities: ['code', 'typescript'], create, minAgents: 4, maxAgents: 16, concurrency: 2 },
    { role: 'reviewer', capabilities: ['review', 'code'], create, minAgents: 2, maxAgents: 8 },
  ],
  defaultTimeoutMs: TIMEOUT_MS,
  retry: { baseDelayMs: 10 }, // short backoff so retries show quickly
  agentBreaker: { resetTimeoutMs: 300 }, // a quarantined agent gets its probe task after 300 ms
});

/** One agent that is simply broken: its circuit breaker opens and keeps it out of routing. */
const brokenAgent: Agent = {
  execute: async () => {
    await delay(1);
    throw new Error('broken-scraper cannot reach the web');
  },
};

// --- The workload ---------------------------------------------------------------------------------

/** Kinds of work: what each requires, and what it would like. */
const KINDS: ReadonlyArray<Pick<Task, 'type' | 'requires' | 'prefers'>> = [
  { type: 'web-search', requires: ['search'], prefers: ['summarise'] },
  { type: 'summarise', requires: ['summarise'] },
  { type: 'implement', requires: ['code'], prefers: ['typescript'] }, // coders first, reviewers can help
  { type: 'fix-bug', requires: ['code'] }, // any coder or reviewer
  { type: 'port-to-ts', requires: ['code', 'typescript'] }, // coders only
  { type: 'review', requires: ['review'] },
  { type: 'review-code', requires: ['review', 'code'], prefers: ['typescript'] },
  { type: 'scrape-flaky-site', requires: ['search'] }, // fails often: retried, some end up dead-lettered
];

function randomTask(i: number): Task<Payload> {
  const kind = KINDS[i % KINDS.length]!;
  const flaky = kind.type === 'scrape-flaky-site';
  return {
    ...kind,
    payload: { n: i, flaky },
    priority: Math.random() < 0.05 ? 10 : Math.floor(Math.random() * 4), // a few urgent ones jump the queue
    maxAttempts: flaky || Math.random() < 0.3 ? 3 : 1, // these retry, then dead-letter
  };
}

// --- What we measure ------------------------------------------------------------------------------

const outcomes: Record<TaskOutcome, number> = {
  completed: 0,
  failed: 0,
  'dead-lettered': 0,
  'timed-out': 0,
  cancelled: 0,
};
const completedByRole = new Map<string, number>();
const latenciesMs: number[] = [];

orchestrator.on('task:completed', ({ role = 'outside a pool' }) => {
  outcomes.completed++;
  completedByRole.set(role, (completedByRole.get(role) ?? 0) + 1);
});
orchestrator.on('task:failed', ({ outcome }) => {
  outcomes[outcome]++;
});
// Flaky agents trip their circuit breakers: quarantined, probed after resetTimeoutMs, returned when the probe passes.
let breakerTrips = 0;
let probes = 0;
orchestrator.on('breaker:state', ({ to }) => {
  if (to === 'open') breakerTrips++;
  if (to === 'half-open') probes++;
});

const progress = createProgress(TASKS);

// --- Run ------------------------------------------------------------------------------------------

await orchestrator.start();
// With --http: the operational endpoints, on node:http with no framework (see also examples/http-server.ts).
const server = HTTP_PORT === undefined ? undefined : createServer(orchestrator.httpHandler()).listen(HTTP_PORT);
if (server) {
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as { port: number };
  console.log(`Serving http://localhost:${port}/metrics, /healthz and /readyz`);
}
orchestrator.registerAgent(brokenAgent, { id: 'broken-scraper', capabilities: ['search'], role: 'outside a pool' });
const startedAt = performance.now();
const settled: Promise<unknown>[] = [];

for (let i = 0; i < TASKS; i++) {
  const submittedAt = performance.now();
  const handle = orchestrator.delegate(randomTask(i));
  if (Math.random() < CANCEL_RATE) setTimeout(() => handle.cancel('the caller lost interest'), Math.random() * 5);
  settled.push(
    handle.result
      .catch(() => {}) // a failed task is part of the demo; its outcome was counted from the events
      .finally(() => {
        latenciesMs.push(performance.now() - submittedAt);
        progress.tick();
      }),
  );
  // Tasks arrive in bursts of 100 rather than all at once.
  if (i % 100 === 99) await delay(1);
}

await Promise.all(settled);
const elapsedMs = performance.now() - startedAt;
const stats = orchestrator.stats();
const brokenBreaker = orchestrator.agent('broken-scraper')?.breaker;
if (!server) await orchestrator.stop({ drain: true });
progress.done();

// --- Report ---------------------------------------------------------------------------------------

latenciesMs.sort((a, b) => a - b);
const ms = (v: number): string => `${v.toFixed(1)} ms`;

console.log(`\n${TASKS} tasks in ${(elapsedMs / 1000).toFixed(2)} s\n`);
const share = (n: number): string => `${((100 * n) / TASKS).toFixed(1)}%`;
const ended = Object.values(outcomes).reduce((a, b) => a + b, 0); // every task ends exactly once: this equals TASKS
console.table({
  ...Object.fromEntries(Object.entries(outcomes).map(([outcome, n]) => [outcome, { tasks: n, share: share(n) }])),
  total: { tasks: ended, share: share(ended) },
});
console.table({
  throughput: { value: `${Math.round((TASKS * 1000) / elapsedMs)} tasks/s` },
  'latency p50': { value: ms(percentile(latenciesMs, 0.5)) },
  'latency p99': { value: ms(percentile(latenciesMs, 0.99)) },
  retries: { value: stats.retries },
  'dead letters kept': { value: stats.deadLetters },
  'agent breakers opened': { value: breakerTrips },
  'half-open probes': { value: probes },
  'broken-scraper breaker': { value: brokenBreaker },
  'memory/CPU pressure': { value: stats.resources.pressure.level },
});
console.table(
  Object.fromEntries(
    stats.pools.map((p) => [
      p.role,
      {
        capabilities: p.capabilities.join(', '),
        'min–max': `${p.minAgents}–${p.maxAgents}`,
        agents: p.members,
        completed: completedByRole.get(p.role) ?? 0,
      },
    ]),
  ),
);

if (server) {
  console.log('\nStill serving /metrics, /healthz and /readyz; Ctrl-C to stop.');
  await new Promise((resolve) => process.once('SIGINT', resolve));
  await orchestrator.stop({ drain: true });
  server.close();
}

// --- Helpers --------------------------------------------------------------------------------------

/** The value below which `q` of the sorted samples fall (nearest rank). */
function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

/** A progress line: redrawn in place on a terminal, one line per quarter otherwise (CI logs). */
function createProgress(total: number): { tick(): void; done(): void } {
  const tty = process.stdout.isTTY === true;
  let count = 0;
  let lastDrawn = 0;
  let nextQuarter = 1;
  const line = (): string => `  settled ${count}/${total} (${Math.floor((100 * count) / total)}%)`;
  return {
    tick() {
      count++;
      if (tty) {
        const now = performance.now();
        if (now - lastDrawn > 50 || count === total) {
          lastDrawn = now;
          process.stdout.write(`\r${line()}`);
        }
      } else {
        const quarter = Math.floor((4 * count) / total);
        if (quarter >= nextQuarter) {
          console.log(line());
          nextQuarter = quarter + 1;
        }
      }
    },
    done() {
      if (tty) process.stdout.write('\n');
    },
  };
}
