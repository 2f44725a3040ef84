/**
 * MemoryStore as the model of the SQL store: random sequences of inserts (with clashing idempotency keys), events of
 * every kind from owners and strangers, heartbeats, claims (from nodes with and without a lease), leaves and prunes,
 * applied to a MemoryStore and to a PGliteStore side by side. Each step must give the same answer on both, and after
 * each step both must hold the same runs and timelines. What depends on whose clock stamped it (`updatedAt`, the
 * time of the store's own events and of a claim's dead-letter) is left out of the comparison; leases are either
 * long or absent, so that no expiry depends on timing.
 */
import { PGlite } from '@electric-sql/pglite';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MemoryStore } from '../../src/store/memory-store.js';
import { PGliteStore } from '../../src/store/pglite-store.js';
import type { RunEvent, RunEventInput, RunRecord, RunStore } from '../../src/store/store.js';

let db: PGlite;
let schemas = 0;

beforeAll(async () => {
  db = await PGlite.create('memory://');
}, 120_000);

afterAll(async () => {
  await db.close();
});

const NODES = ['alive-1', 'alive-2', 'dead-1', 'dead-2'] as const;
const CAPS = ['x', 'y'] as const;

type Op =
  | {
      op: 'insert';
      node: string;
      runs: { tenant: string | null; key: string | null; priority: number; requires: string[]; maxAttempts: number }[];
    }
  | {
      op: 'append';
      events: { run: number; kind: RunEventInput['kind']; node: string; attempt: number; at: number }[];
    }
  | { op: 'heartbeat'; node: string }
  | { op: 'claim'; node: string; limit: number; caps: string[]; maxRecoveries: number }
  | { op: 'leave'; node: string }
  | { op: 'prune'; before: number; limit: number };

const node = fc.constantFrom(...NODES);
const caps = fc.subarray([...CAPS]);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('insert' as const),
      node,
      runs: fc.array(
        fc.record({
          tenant: fc.constantFrom(null, 'a', 'b'),
          key: fc.constantFrom(null, null, 'k1', 'k2'),
          priority: fc.integer({ min: 0, max: 2 }),
          requires: caps,
          maxAttempts: fc.integer({ min: 1, max: 3 }),
        }),
        { minLength: 1, maxLength: 4 },
      ),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('append' as const),
      events: fc.array(
        fc.record({
          run: fc.nat(),
          kind: fc.constantFrom<RunEventInput['kind']>(
            'started',
            'started',
            'retrying',
            'deferred',
            'interrupted',
            'released',
            'completed',
            'failed',
            'cancelled',
            'timed-out',
            'dead-lettered',
          ),
          node,
          attempt: fc.integer({ min: 1, max: 3 }),
          at: fc.integer({ min: 1, max: 1_000 }),
        }),
        { minLength: 1, maxLength: 4 },
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('heartbeat' as const), node: fc.constantFrom('alive-1', 'alive-2') }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('claim' as const),
      node,
      limit: fc.integer({ min: 1, max: 3 }),
      caps,
      maxRecoveries: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('leave' as const), node }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('prune' as const),
      before: fc.constantFrom(500, Number.MAX_SAFE_INTEGER),
      limit: fc.integer({ min: 1, max: 3 }),
    }),
  },
);

/** A run without what depends on the clock of the store that stamped it. */
function comparable(run: RunRecord): unknown {
  const { updatedAt: _updated, finishedAt, ...rest } = run;
  const byClaim = run.status === 'dead-lettered' && run.error?.code === 'TASK_DEAD_LETTERED' && run.recoveries > 0;
  return { ...rest, finishedAt: byClaim ? finishedAt !== null : finishedAt };
}

function comparableEvent(event: RunEvent): unknown {
  const { seq: _seq, at, ...rest } = event;
  // The generated events are stamped 1 to 1000 and runs created at 1, 2, …: a larger time is the store's own clock
  // (adopted, released by leave, dead-lettered by claim).
  return { ...rest, at: at > 1_000_000 ? 'store' : at };
}

async function state(store: RunStore): Promise<unknown> {
  const { runs } = await store.list({ limit: 1000 });
  const sorted = [...runs].sort((a, b) => (a.id < b.id ? -1 : 1));
  return Promise.all(
    sorted.map(async (run) => ({ run: comparable(run), events: (await store.events(run.id)).map(comparableEvent) })),
  );
}

async function apply(store: RunStore, op: Op, ids: string[], created: { n: number }): Promise<unknown> {
  switch (op.op) {
    case 'insert': {
      const runs = op.runs.map((r) => {
        created.n += 1;
        return {
          id: `run-${String(created.n).padStart(3, '0')}`,
          type: 't',
          tenantId: r.tenant,
          idempotencyKey: r.key,
          createdAt: created.n,
          task: {
            requires: r.requires,
            prefers: [],
            priority: r.priority,
            payload: { n: created.n },
            timeoutMs: null,
            deadlineAt: null,
            maxAttempts: r.maxAttempts,
            affinityKey: null,
          },
        };
      });
      ids.push(...runs.map((r) => r.id));
      const outcomes = await store.insert(op.node, runs);
      return outcomes.map((o) => (o.kind === 'inserted' ? o : { kind: o.kind, existing: o.existing.id }));
    }
    case 'append':
      if (ids.length === 0) return null;
      await store.append(
        op.events.map((e) => ({
          runId: ids[e.run % ids.length]!,
          kind: e.kind,
          nodeId: e.node,
          at: e.at,
          attempt: e.attempt,
          ...(e.kind === 'completed' ? { result: { at: e.at } } : {}),
          ...(e.kind === 'failed' ? { error: { name: 'Error', message: 'no', code: null } } : {}),
        })),
      );
      return null;
    case 'heartbeat':
      await store.heartbeat(op.node, 600_000);
      return null;
    case 'claim': {
      const result = await store.claim({
        nodeId: op.node,
        limit: op.limit,
        capabilities: op.caps,
        maxRecoveries: op.maxRecoveries,
      });
      return { runs: result.runs.map(comparable), deadLettered: result.deadLettered.map(comparable) };
    }
    case 'leave':
      await store.leave(op.node);
      return null;
    case 'prune':
      return store.prune(op.before, op.limit);
  }
}

it('PGliteStore does what MemoryStore does, step by step', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
      const model = new MemoryStore();
      const real = new PGliteStore({ pglite: db, schema: `model_${++schemas}` });
      await model.open();
      await real.open();
      try {
        const modelIds: string[] = [];
        const realIds: string[] = [];
        const modelCreated = { n: 0 };
        const realCreated = { n: 0 };
        for (const [i, op] of ops.entries()) {
          const expected = await apply(model, op, modelIds, modelCreated);
          const actual = await apply(real, op, realIds, realCreated);
          expect(actual, `step ${i}: ${JSON.stringify(op)}`).toEqual(expected);
          expect(await state(real), `state after step ${i}`).toEqual(await state(model));
        }
      } finally {
        await real.close();
        await model.close();
      }
    }),
    { numRuns: 60 },
  );
}, 300_000);
