/**
 * A review pipeline as a durable workflow: research → draft → critique and revise (at most two rounds) → a person's
 * approval → publish, on simulated model agents that take a moment per call and report what it cost.
 *
 * Every step's outcome is checkpointed in the store as it ends. Kill the process (`kill -9`) at any point and run it
 * again: the run goes on from its last completed step, and no model call whose result was checkpointed is made, or
 * paid for, again. While the run waits for the approval it is parked: a row in the store, nothing in memory.
 *
 * In a clone, after `npm install`:
 *
 *   npx tsx examples/review-pipeline.ts                               embedded store in ./data/review-pipeline
 *   DATABASE_URL=postgres://user@host/db npx tsx examples/review-pipeline.ts      a PostgreSQL server instead
 *
 * Options:
 *   --run-id <id>       the run to start, or to go on with after a crash [review:launch-notes]
 *   --data-dir <dir>    the embedded store's directory (PGlite) [./data/review-pipeline]
 *   --no-approve        do not send the approval: wait until someone sends it (`orchestrator.signal(runId,
 *                       'approval', { approved: true })` from any process on the same store)
 *   --call-log <file>   append one JSON line per model call and per publish (the test counts calls across processes)
 *   --work-ms <ms>      how long a simulated model call takes [300]
 *
 * Run it a second time with the same run id and it prints the finished run again: starting a workflow with an id the
 * store holds returns that run, it does not start another.
 */
import { appendFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import {
  PGliteStore,
  PostgresStore,
  UnifiedOrchestrator,
  type TaskContext,
  type WorkflowContext,
} from 'unified-orchestrator';

const { values: args } = parseArgs({
  options: {
    'run-id': { type: 'string', default: 'review:launch-notes' },
    'data-dir': { type: 'string', default: './data/review-pipeline' },
    'no-approve': { type: 'boolean', default: false },
    'call-log': { type: 'string' },
    'work-ms': { type: 'string', default: '300' },
  },
});
const runId = args['run-id'];
const workMs = Number(args['work-ms']);
if (!(Number.isFinite(workMs) && workMs >= 0)) {
  console.error(`--work-ms takes a number of milliseconds ≥ 0, not '${args['work-ms']}'`);
  process.exit(2);
}
const callLog = args['call-log'];

/** Appends a line to the call log, synchronously: a `kill -9` right after loses nothing written. */
function logCall(entry: Record<string, unknown>): void {
  if (callLog) appendFileSync(callLog, `${JSON.stringify({ pid: process.pid, ...entry })}\n`);
}

// --- Simulated model agents ---------------------------------------------------------------------------

interface Brief {
  readonly topic: string;
  readonly step: string;
}
interface Draft {
  readonly text: string;
  readonly revisions: number;
}
interface Critique {
  readonly accept: boolean;
  readonly notes: string;
}

/** Cost of one call, in cents, by task type (a bigger model drafts; a small one researches and critiques). */
const CENTS: Record<string, number> = { research: 4, draft: 12, critique: 3, revise: 8 };

/**
 * A model call: takes `workMs`, reports its cost, and answers from the payload alone (so that a call made again
 * after a crash answers the same). A real agent would call a provider here, with `ctx.signal` and a deadline.
 */
async function modelCall(ctx: TaskContext<Brief & Partial<Draft>>): Promise<unknown> {
  const { topic, step, text = '', revisions = 0 } = ctx.payload;
  logCall({ event: 'call', step, type: ctx.type, agent: ctx.agentId, recoveries: ctx.recoveries });
  await delay(workMs, undefined, { signal: ctx.signal });
  ctx.reportCost(CENTS[ctx.type] ?? 0);
  logCall({ event: 'done', step, type: ctx.type });
  switch (ctx.type) {
    case 'research':
      return { facts: [`${topic} ships on 1 March`, `${topic} halves start-up time`] };
    case 'draft':
      return { text: `${topic}: what is new. ${text}`, revisions: 0 } satisfies Draft;
    case 'critique':
      // A strict critic: it asks for more until the text has been revised three times (the loop stops at two).
      return revisions >= 3
        ? ({ accept: true, notes: 'good to go' } satisfies Critique)
        : ({ accept: false, notes: `round ${revisions + 1}: tighten the opening` } satisfies Critique);
    case 'revise':
      return { text: `${text} [revised: ${step}]`, revisions: revisions + 1 } satisfies Draft;
    default:
      throw new Error(`no model for ${ctx.type}`);
  }
}

const store = process.env['DATABASE_URL']
  ? new PostgresStore({ connectionString: process.env['DATABASE_URL'] })
  : new PGliteStore({ dataDir: args['data-dir'] });

const orchestrator = new UnifiedOrchestrator({
  pools: [
    {
      role: 'researcher',
      capabilities: ['search'],
      minAgents: 1,
      maxAgents: 2,
      create: () => ({ execute: modelCall }),
    },
    { role: 'writer', capabilities: ['write'], minAgents: 1, maxAgents: 2, create: () => ({ execute: modelCall }) },
    { role: 'critic', capabilities: ['review'], minAgents: 1, maxAgents: 1, create: () => ({ execute: modelCall }) },
  ],
  metrics: false,
  store,
  // A process that dies holding the run is taken for dead once its lease (3 s here) runs out; the next process
  // then takes the run over and replays it from its checkpoints.
  durability: { leaseMs: 3_000, claimIntervalMs: 250 },
});

// --- The workflow -------------------------------------------------------------------------------------

interface Input {
  readonly topic: string;
}
interface Outcome {
  readonly published: boolean;
  readonly rounds: number;
  readonly text: string;
  readonly approvedBy?: string;
  readonly url?: string;
}

const MAX_ROUNDS = 2;

/**
 * The pipeline. It runs again from the top after a crash or a wait (a replay): each step with a checkpoint returns
 * its stored result at once, so the code must call the same steps in the same order every time. It branches only on
 * its input and on step results.
 */
async function reviewPipeline(run: WorkflowContext<Input>, input: Input): Promise<Outcome> {
  const { topic } = input;
  const research = await run.task<{ facts: string[] }>('research', {
    type: 'research',
    requires: ['search'],
    payload: { topic, step: 'research' },
  });
  let draft = await run.task<Draft>('draft', {
    type: 'draft',
    requires: ['write'],
    payload: { topic, step: 'draft', text: research.facts.join('. ') },
  });

  let rounds = 0;
  while (rounds < MAX_ROUNDS) {
    rounds++;
    const critique = await run.task<Critique>(`critique ${rounds}`, {
      type: 'critique',
      requires: ['review'],
      payload: { topic, step: `critique ${rounds}`, ...draft },
    });
    if (critique.accept) break;
    draft = await run.task<Draft>(`revise ${rounds}`, {
      type: 'revise',
      requires: ['write'],
      payload: { topic, step: `revise ${rounds}`, ...draft },
    });
  }

  // A person decides. The run parks here (a row in the store, nothing in memory) until the signal comes.
  const approval = await run.signal<{ approved: boolean; by: string }>('approval', { timeoutMs: 7 * 86_400_000 });
  if (!approval.approved) return { published: false, rounds, text: draft.text, approvedBy: approval.by };

  // A local step: the side effect happens here, in this process; `key` is the same on every replay, so a publisher
  // that honours idempotency keys publishes once even if this step runs again after a crash.
  const url = await run.step('publish', ({ key }) => {
    logCall({ event: 'publish', key });
    return `https://blog.example.com/${encodeURIComponent(topic)}`;
  });
  return { published: true, rounds, text: draft.text, approvedBy: approval.by, url };
}

// Guards checked before every step: at most 12 steps (the loop is bounded twice over) and 60¢ per run; a run past
// either ends `failed` with WorkflowLimitError instead of running, or paying, on.
orchestrator.workflow('review', { version: '1', maxSteps: 12, budget: 60 }, reviewPipeline);

// --- Running it -------------------------------------------------------------------------------------

await orchestrator.start();
const before = await orchestrator.runs.get(runId);
if (before) {
  const done = (await orchestrator.runs.steps(runId)).steps.filter((s) => s.status === 'completed').length;
  console.log(`run ${runId} found in the store (${before.status}, ${done} steps done): going on from there`);
}
// Starting with an id the store holds returns that run. A run that a killed process still held is taken over here
// once that process's lease has run out (3 s).
const handle = orchestrator.startWorkflow<Outcome>('review', { topic: 'Widget 2.0' }, { id: runId });
await handle.stored; // committed: from here on a crash does not lose the run
if (!before) console.log(`run ${runId} started`);

/** Polls the store until the run is parked on its approval; sends it unless `--no-approve`. */
async function approveWhenWaiting(): Promise<void> {
  for (;;) {
    const record = await orchestrator.runs.get(runId);
    if (!record || ['completed', 'failed', 'cancelled', 'timed-out', 'dead-lettered'].includes(record.status)) return;
    if (record.waitingFor.includes('approval')) break;
    await delay(200);
  }
  console.log(`run ${runId} is waiting for approval${args['no-approve'] ? ' (send it from another process)' : ''}`);
  if (args['no-approve']) return;
  const { signals } = await orchestrator.runs.steps(runId);
  if (signals.some((s) => s.name === 'approval')) return; // sent already, before a crash
  await delay(500); // a person reads the draft
  await orchestrator.signal(runId, 'approval', { approved: true, by: 'editor@example.com' }, { actor: 'editor' });
  console.log('approval sent');
}
approveWhenWaiting().catch((error: unknown) => console.error('could not send the approval:', error));

const outcome = await handle.result;
console.log('\ntimeline:');
const { steps, signals } = await orchestrator.runs.steps(runId);
for (const step of steps) {
  const took = step.endedAt === null ? 'running' : `${step.endedAt - step.startedAt} ms`;
  const agent = step.agentId === null ? '' : ` on ${step.agentId}`;
  const cost = step.cost > 0 ? `, ${step.cost}¢` : '';
  console.log(`  ${step.seq}. ${step.name} (${step.kind}${agent}): ${step.status}, ${took}${cost}`);
}
for (const signal of signals) console.log(`  signal ${signal.name} from ${signal.actor ?? 'nobody'}`);
const record = await orchestrator.runs.get(runId);
console.log(`\nresult: ${JSON.stringify(outcome)}`);
console.log(`cost: ${record?.cost ?? 0}¢ of a 60¢ budget`);
await orchestrator.stop();
