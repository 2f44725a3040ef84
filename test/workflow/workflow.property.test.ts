/**
 * Crash recovery of workflows, as a property: random workflows (local steps, task steps, parallel groups, signal
 * waits, sleeps) run on a node that is stopped (with or without draining) at random moments ("crashes"), each time
 * followed by a new node on the same store, which replays the run and goes on. The test sends each signal when the
 * run waits for it (or, for some, before). Whatever the crash points:
 * - the run ends exactly once, completed;
 * - its result is the uncrashed run's (each step's value is a function of its position, so it is known beforehand;
 *   the case without crashes checks that);
 * - no step whose checkpoint was committed runs again: a step (or a task step's agent) runs on a later node only if
 *   the store held no completed record of it when that node started, and at most once per node.
 * Every store of WORKFLOW_STORES runs it; the number of cases is bounded to keep the file to seconds.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { UnifiedOrchestrator, type RunStore, type WorkflowContext } from '../../src/index.js';
import { eventually, wait } from '../support/agents.js';
import { WORKFLOW_STORES } from './helpers.js';

// --- Random workflows ----------------------------------------------------------------------------------------------

type Leaf = { readonly kind: 'step' | 'task'; readonly ms: number };
type Op =
  | Leaf
  | { readonly kind: 'parallel'; readonly items: readonly Leaf[] }
  | { readonly kind: 'signal'; readonly early: boolean }
  | { readonly kind: 'sleep'; readonly ms: number };

const leaf: fc.Arbitrary<Leaf> = fc.record({
  kind: fc.constantFrom('step' as const, 'task' as const),
  ms: fc.integer({ min: 0, max: 12 }),
});
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: leaf },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('parallel' as const),
      items: fc.array(leaf, { minLength: 2, maxLength: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('signal' as const), early: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sleep' as const), ms: fc.integer({ min: 0, max: 25 }) }) },
);

/** A step of a program with its position (`seq`: the order of the calls). */
type Placed =
  | { readonly kind: 'step' | 'task'; readonly seq: number; readonly ms: number }
  | { readonly kind: 'parallel'; readonly items: readonly { kind: 'step' | 'task'; seq: number; ms: number }[] }
  | { readonly kind: 'signal' | 'sleep'; readonly seq: number; readonly ms: number; readonly early: boolean };

/** Numbers the steps in call order (a parallel group's items are called one after the other, synchronously). */
function place(ops: readonly Op[]): Placed[] {
  let seq = 0;
  return ops.map((o): Placed => {
    if (o.kind === 'parallel') return { kind: 'parallel', items: o.items.map((i) => ({ ...i, seq: seq++ })) };
    if (o.kind === 'signal') return { kind: 'signal', seq: seq++, ms: 0, early: o.early };
    if (o.kind === 'sleep') return { kind: 'sleep', seq: seq++, ms: o.ms, early: false };
    return { kind: o.kind, seq: seq++, ms: o.ms };
  });
}

/** What a step at `seq` returns (signals: the payload the test sends). */
const valueOf = (kind: string, seq: number): unknown =>
  kind === 'sleep' ? null : kind === 'signal' ? `sig${seq}!` : `${kind[0]}${seq}`;

/** The result of the program's run: known without running it. */
function expected(program: readonly Placed[]): unknown[] {
  return program.map((p) =>
    p.kind === 'parallel' ? p.items.map((i) => valueOf(i.kind, i.seq)) : valueOf(p.kind, p.seq),
  );
}

// --- Nodes ------------------------------------------------------------------------------------------------------

/** An execution of a step's code: which step, on which node (0 is the first). */
interface Execution {
  readonly seq: number;
  readonly node: number;
}

/** The workflow function interpreting `program`; `ran` records each execution of a local step. */
function workflowOf(program: readonly Placed[], ran: Execution[], nodeIndex: number) {
  const leafCall = (run: WorkflowContext, l: { kind: 'step' | 'task'; seq: number; ms: number }): Promise<unknown> =>
    l.kind === 'step'
      ? run.step(`step${l.seq}`, async ({ signal }) => {
          ran.push({ seq: l.seq, node: nodeIndex });
          await wait(l.ms, signal);
          return valueOf('step', l.seq);
        })
      : run.task(`task${l.seq}`, { type: 'work', requires: ['work'], payload: { seq: l.seq, ms: l.ms } });
  return async (run: WorkflowContext): Promise<unknown[]> => {
    const out: unknown[] = [];
    for (const p of program) {
      if (p.kind === 'parallel') out.push(await Promise.all(p.items.map((i) => leafCall(run, i))));
      else if (p.kind === 'step' || p.kind === 'task') out.push(await leafCall(run, p));
      else if (p.kind === 'signal') out.push(await run.signal(`sig${p.seq}`));
      else out.push((await run.sleep(`sleep${p.seq}`, p.ms)) ?? null);
    }
    return out;
  };
}

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 }).catch(() => {})));
});

async function startNode(
  store: RunStore,
  program: readonly Placed[],
  ran: Execution[],
  nodeIndex: number,
): Promise<UnifiedOrchestrator> {
  const o = new UnifiedOrchestrator({
    metrics: false,
    pools: [
      {
        role: 'worker',
        capabilities: ['work'],
        minAgents: 4,
        maxAgents: 4,
        create: () => ({
          async execute(ctx) {
            const { seq, ms } = ctx.payload as { seq: number; ms: number };
            ran.push({ seq, node: nodeIndex });
            await wait(ms, ctx.signal);
            return valueOf('task', seq);
          },
        }),
      },
    ],
    store,
    durability: { leaseMs: 2_000, heartbeatMs: 500, claimIntervalMs: 20, pollMs: 20 },
  });
  o.workflow('random', {}, workflowOf(program, ran, nodeIndex));
  live.push(o);
  await o.start();
  return o;
}

/** The store shared by a case's nodes: their stop() does not close it (a database server outlives its clients). */
function sharedView(store: RunStore): RunStore {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'close') return async () => {};
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'timed-out', 'dead-lettered']);

describe.each(WORKFLOW_STORES)('workflow crash recovery on $name (property)', (storeCase) => {
  it('random workflows with random crash points end once, with the uncrashed result, and never rerun a checkpointed step', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { minLength: 2, maxLength: 7 }),
        fc.array(fc.record({ delay: fc.integer({ min: 0, max: 30 }), drain: fc.boolean() }), { maxLength: 3 }),
        async (ops, crashes) => {
          const program = place(ops);
          const raw = await storeCase.make();
          await raw.open();
          const store = sharedView(raw);
          const ran: Execution[] = [];
          /** Per node (from the second), the steps the store held completed when it started. */
          const completedAtStart: Set<number>[] = [new Set()];
          const nodes: UnifiedOrchestrator[] = [];
          let current: UnifiedOrchestrator | undefined = await startNode(store, program, ran, 0);
          nodes.push(current);
          const handle = current.startWorkflow('random', null, { id: 'prop-run' });
          const id = await handle.stored;

          // Signals: some before their wait, the rest once the run waits for them.
          const sent = new Set<string>();
          const send = async (name: string): Promise<void> => {
            const o = current;
            if (!o || sent.has(name)) return;
            sent.add(name);
            try {
              await o.signal(id, name, `${name}!`);
            } catch {
              sent.delete(name); // the node stopped meanwhile: send it again through the next
            }
          };
          for (const p of program) if (p.kind === 'signal' && p.early) await send(`sig${p.seq}`);
          let done = false;
          const driver = (async () => {
            while (!done) {
              const run = await raw.get(id).catch(() => undefined);
              for (const name of run?.waitingFor ?? []) await send(name);
              await wait(5);
            }
          })();

          try {
            for (const { delay, drain } of crashes) {
              await wait(delay);
              if ((await raw.get(id))?.finishedAt != null) break;
              const stopping = current;
              current = undefined;
              // Without draining, running tasks are cancelled; with it, they finish (their runs' steps are unwound
              // at once either way, so the task's end may be stored while its step's checkpoint is not).
              await stopping.stop({ drain, timeoutMs: 1_000 });
              const { steps } = await raw.history(id);
              completedAtStart.push(new Set(steps.filter((s) => s.status === 'completed').map((s) => s.seq)));
              current = await startNode(store, program, ran, nodes.length);
              nodes.push(current);
            }
            const result = await Promise.race([
              current.attach(id).result,
              wait(8_000).then(() =>
                Promise.reject(new Error(`run did not end: ${JSON.stringify(ops)} ${JSON.stringify(crashes)}`)),
              ),
            ]);

            // The uncrashed run's result.
            expect(result).toEqual(expected(program));
            // Ended exactly once (its end is written with the node's next batch).
            await eventually(async () => (await raw.get(id))?.finishedAt != null, 2_000, 'the end to be stored');
            const events = await raw.events(id);
            expect(events.filter((e) => TERMINAL.has(e.kind)).map((e) => e.kind)).toEqual(['completed']);
            const ends = nodes.reduce((n, o) => n + (o.stats().workflows?.completed ?? 0), 0);
            expect(ends).toBe(1);
            // Every step has its checkpoint.
            const { steps } = await raw.history(id);
            const seqs = program.flatMap((p) => (p.kind === 'parallel' ? p.items.map((i) => i.seq) : [p.seq]));
            expect(steps.map((s) => [s.seq, s.status])).toEqual(seqs.map((s) => [s, 'completed']));
            // No checkpointed step ran again; each ran at least once, and at most once per node.
            const leaves = program.flatMap((p) =>
              p.kind === 'parallel' ? p.items : p.kind === 'step' || p.kind === 'task' ? [p] : [],
            );
            for (const l of leaves) {
              const runs = ran.filter((r) => r.seq === l.seq);
              expect(runs.length, `step ${l.seq} ran`).toBeGreaterThanOrEqual(1);
              expect(new Set(runs.map((r) => r.node)).size, `step ${l.seq} ran twice on one node`).toBe(runs.length);
              for (const r of runs) {
                if (r.node === 0) continue;
                expect(
                  completedAtStart[r.node]!.has(l.seq),
                  `step ${l.seq} ran again on node ${r.node} after its checkpoint`,
                ).toBe(false);
              }
            }
          } finally {
            done = true;
            await driver;
            await Promise.all(nodes.map((o) => o.stop({ drain: false, timeoutMs: 1_000 }).catch(() => {})));
            live.splice(0);
            await raw.close();
          }
        },
      ),
      { numRuns: 60, timeout: 10_000 },
    );
  }, 60_000);
});
