/**
 * The orchestrator's own durable workflows as subjects of the workflow bench (bench/workflow-peers.ts): a workflow of
 * WORKFLOW_STEPS no-op steps, on a PostgresStore (the server, the same one DBOS uses) or a PGliteStore (embedded, in a
 * temporary directory of its own). Two kinds of step:
 *
 * - `run.step(name, noop)`: a function in the host, its result checkpointed (the same work as DBOS's `runStep`);
 * - `run.task(name, task)`: a task on a no-op agent of the fleet, a durable child run of its own (stored, claimed,
 *   completed) whose result is then checkpointed: more work per step than DBOS does, reported as a row of its own.
 *
 * A workflow is complete when its end is committed: the handle's `result` settles as the run ends on this node, and
 * the store's `onFinished` announces the run after its terminal event is committed (PostgreSQL delivers its NOTIFY
 * only after the commit; PGlite the same, in process). `runOne` waits for both.
 *
 * `startMany(n)` calls `startWorkflow` n times in one event-loop turn: the store writer groups the n inserts into one
 * statement, and the checkpoint lane groups the runs' checkpoints of each turn into one.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGliteStore, PostgresStore, UnifiedOrchestrator, type RunStore } from 'unified-orchestrator';
import { WORKFLOW_STEPS, type WorkflowSubject } from './workflow-harness.js';

/** This package's version. */
const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;

/** No-op agents for the `run.task` variant (as many as the throughput run has workflows in flight, and some). */
const AGENTS = 8;

/** What the bench's workflow calls per step. */
export type StepKind = 'step' | 'task';

const noop = (): null => null;

/** The orchestrator on `store` with the bench's ten-step workflow registered (and no-op agents for `task`). */
function orchestratorOn(store: RunStore, kind: StepKind): UnifiedOrchestrator {
  const orchestrator = new UnifiedOrchestrator({
    pools:
      kind === 'task'
        ? [
            {
              role: 'noop',
              capabilities: ['noop'],
              minAgents: AGENTS,
              maxAgents: AGENTS,
              warmSpares: 0,
              create: () => ({ execute: () => null }),
            },
          ]
        : [],
    metrics: false,
    maxQueueSize: 1_000_000,
    store,
    durability: { pruneIntervalMs: Infinity },
  });
  if (kind === 'step') {
    orchestrator.workflow('tenSteps', { version: '1' }, async (run) => {
      for (let i = 0; i < WORKFLOW_STEPS; i++) await run.step(`step${i}`, noop);
    });
  } else {
    orchestrator.workflow('tenSteps', { version: '1' }, async (run) => {
      for (let i = 0; i < WORKFLOW_STEPS; i++) await run.task(`step${i}`, { type: 'noop', requires: ['noop'] });
    });
  }
  return orchestrator;
}

/**
 * unified-orchestrator's workflows of WORKFLOW_STEPS `kind` steps, on the server (`postgres`) or embedded
 * (`pglite`).
 */
export function orchestratorWorkflowSubject(store: 'postgres' | 'pglite', kind: StepKind = 'step'): WorkflowSubject {
  let orchestrator: UnifiedOrchestrator | undefined;
  let stopListening: (() => Promise<void>) | undefined;
  let dir: string | undefined;
  /** Runs started and not yet announced as committed, with what to call when they are. */
  const waiting = new Map<string, () => void>();
  /** Runs announced before their caller registered (cannot happen with ids chosen up front; kept for safety). */
  const early = new Set<string>();
  let next = 0;

  const committed = (id: string): Promise<void> => {
    if (early.delete(id)) return Promise.resolve();
    return new Promise<void>((resolve) => waiting.set(id, resolve));
  };

  const start = (): Promise<void> => {
    const id = `wf-${++next}`;
    const done = committed(id);
    const handle = orchestrator!.startWorkflow('tenSteps', null, { id });
    return Promise.all([handle.result, done]).then(() => undefined);
  };

  const where = store === 'postgres' ? 'server' : 'embedded';
  return {
    name: `unified-orchestrator ${VERSION} (${where})${kind === 'task' ? ', run.task steps' : ''}`,
    settings:
      (store === 'postgres'
        ? 'PostgresStore (pg pool of 10, LISTEN/NOTIFY)'
        : 'PGliteStore (embedded PGlite in this process, a temporary directory)') +
      `, ${WORKFLOW_STEPS} ${kind === 'step' ? 'run.step(noop)' : `run.task on ${AGENTS} no-op agents`} per workflow, ` +
      'grouped checkpoints per event-loop turn; startWorkflow + handle.result + the store’s onFinished per workflow',
    async setup(url) {
      let runStore: RunStore;
      if (store === 'postgres') runStore = new PostgresStore({ connectionString: url });
      else {
        dir = mkdtempSync(join(tmpdir(), 'uo-bench-wf-pglite-'));
        runStore = new PGliteStore({ dataDir: dir });
      }
      orchestrator = orchestratorOn(runStore, kind);
      await orchestrator.start();
      stopListening = await runStore.onFinished((ids) => {
        for (const id of ids) {
          const resolve = waiting.get(id);
          if (resolve === undefined) {
            if (id.startsWith('wf-')) early.add(id);
          } else {
            waiting.delete(id);
            resolve();
          }
        }
      });
    },
    runOne: start,
    async startMany(n) {
      const all: Promise<void>[] = [];
      for (let i = 0; i < n; i++) all.push(start());
      await Promise.all(all);
    },
    async teardown() {
      await stopListening?.();
      stopListening = undefined;
      await orchestrator?.stop();
      orchestrator = undefined;
      if (dir) rmSync(dir, { recursive: true, force: true });
      dir = undefined;
    },
  };
}
