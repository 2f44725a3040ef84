/**
 * A model-based property test of a RunStore: random sequences of submit, start, retry, complete, fail, cancel,
 * release, heartbeat, crash (a lease ended), leave, claim (adoption) and prune, run against the store and against a
 * plain model of what the store must hold (written here, independently of MemoryStore). After every step each run's
 * status, owner, attempts and recoveries must match the model, claims must take exactly the runs the model says in
 * its order, and at the end every run that ended has exactly one terminal event in its timeline, its status.
 *
 * Every property run uses its own capability, ids, tenants, keys and node names, so one store instance serves every
 * run of a file: a claim only sees the runs of its own property run.
 */
import fc from 'fast-check';
import type { RunEventInput, RunStatus, RunStore } from '../../src/store/store.js';

type Kind = 'completed' | 'failed' | 'cancelled';

export type Command =
  | {
      readonly op: 'submit';
      readonly node: number;
      readonly tenant: number;
      readonly key: number | null;
      readonly priority: number;
      readonly needsX: boolean;
      readonly maxAttempts: number;
    }
  | { readonly op: 'start' | 'retry' | 'release'; readonly run: number; readonly node: number }
  | { readonly op: 'end'; readonly run: number; readonly node: number; readonly kind: Kind }
  | { readonly op: 'heartbeat' | 'crash' | 'leave'; readonly node: number }
  | { readonly op: 'claim'; readonly node: number; readonly limit: number }
  | { readonly op: 'prune'; readonly back: number };

const NODES = 3;

export const commandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('submit' as const),
      node: fc.nat(NODES - 1),
      tenant: fc.nat(1),
      key: fc.option(fc.nat(2), { nil: null }),
      priority: fc.constantFrom(0, 5),
      needsX: fc.boolean(),
      maxAttempts: fc.constantFrom(1, 4),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constantFrom('start' as const, 'retry' as const, 'release' as const),
      run: fc.nat(20),
      node: fc.nat(NODES - 1),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('end' as const),
      run: fc.nat(20),
      node: fc.nat(NODES - 1),
      kind: fc.constantFrom<Kind>('completed', 'failed', 'cancelled'),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom('heartbeat' as const, 'crash' as const, 'leave' as const),
      node: fc.nat(NODES - 1),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('claim' as const),
      node: fc.nat(NODES - 1),
      limit: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('prune' as const), back: fc.nat(30) }) },
);

interface ModelRun {
  readonly id: string;
  readonly tenantId: string;
  readonly key: string | null;
  readonly priority: number;
  readonly requires: readonly string[];
  readonly maxAttempts: number;
  readonly createdAt: number;
  status: RunStatus;
  owner: string | null;
  attempts: number;
  recoveries: number;
  /** The synthetic time of the event that ended it (claims dead-letter at the store's own, real, time: null). */
  endedAt: number | null;
  pruned: boolean;
}

const LIVE: ReadonlySet<RunStatus> = new Set(['queued', 'running']);
const HOLDS_KEY: ReadonlySet<RunStatus> = new Set(['queued', 'running', 'completed']);
const BASE = 1_600_000_000_000;
const MAX_RECOVERIES = 2;

let sequence = 0;

/** Runs `commands` against `store` and the model, checking after every step; throws on the first difference. */
export async function runModel(store: RunStore, commands: readonly Command[]): Promise<void> {
  const tag = `m${process.pid}x${++sequence}x${Math.random().toString(36).slice(2, 8)}`;
  const cap = `cap-${tag}`;
  const capX = `capx-${tag}`;
  const nodeName = (i: number): string => `${tag}-node${i}`;
  // Node 0 holds both capabilities; the others only the plain one.
  const capsOf = (i: number): string[] => (i === 0 ? [cap, capX] : [cap]);
  const alive = new Set<string>();
  const runs: ModelRun[] = [];
  let clock = BASE;
  const tick = (): number => (clock += 10);

  const pick = (i: number): ModelRun | undefined => (runs.length === 0 ? undefined : runs[i % runs.length]);
  const fail = (message: string): never => {
    throw new Error(`${message}\ncommands: ${JSON.stringify(commands)}`);
  };

  for (const [step, c] of commands.entries()) {
    const where = `step ${step} ${JSON.stringify(c)}`;
    switch (c.op) {
      case 'submit': {
        const tenantId = `${tag}-t${c.tenant}`;
        const key = c.key === null ? null : `${tag}-k${c.key}`;
        const run: ModelRun = {
          id: `${tag}-r${runs.length}`,
          tenantId,
          key,
          priority: c.priority,
          requires: c.needsX ? [cap, capX] : [cap],
          maxAttempts: c.maxAttempts,
          createdAt: tick(),
          status: 'queued',
          owner: nodeName(c.node),
          attempts: 0,
          recoveries: 0,
          endedAt: null,
          pruned: false,
        };
        const holder =
          key === null
            ? undefined
            : runs.find((r) => !r.pruned && r.tenantId === tenantId && r.key === key && HOLDS_KEY.has(r.status));
        const [outcome] = await store.insert(nodeName(c.node), [
          {
            id: run.id,
            type: 'model',
            tenantId,
            idempotencyKey: key,
            createdAt: run.createdAt,
            task: {
              requires: run.requires,
              prefers: [],
              priority: run.priority,
              payload: null,
              timeoutMs: null,
              deadlineAt: null,
              maxAttempts: run.maxAttempts,
              affinityKey: null,
            },
          },
        ]);
        if (holder) {
          if (outcome?.kind !== 'duplicate' || outcome.existing.id !== holder.id)
            fail(`${where}: expected a duplicate of ${holder.id}, got ${JSON.stringify(outcome)}`);
        } else {
          if (outcome?.kind !== 'inserted') fail(`${where}: expected inserted, got ${JSON.stringify(outcome)}`);
          runs.push(run);
        }
        break;
      }
      case 'start':
      case 'retry':
      case 'release':
      case 'end': {
        const run = pick(c.run);
        if (!run || run.pruned) break;
        const nodeId = nodeName(c.node);
        const at = tick();
        let event: RunEventInput;
        if (c.op === 'start') event = { runId: run.id, kind: 'started', at, nodeId, attempt: run.attempts + 1 };
        else if (c.op === 'retry') event = { runId: run.id, kind: 'retrying', at, nodeId, attempt: run.attempts };
        else if (c.op === 'release') event = { runId: run.id, kind: 'released', at, nodeId };
        else if (c.op === 'end' && c.kind === 'completed')
          event = { runId: run.id, kind: 'completed', at, nodeId, result: { ok: step } };
        else if (c.op === 'end')
          event = { runId: run.id, kind: c.kind, at, nodeId, error: { name: 'Error', message: 'boom', code: null } };
        else throw new Error('unreachable');
        await store.append([event]);
        if (!LIVE.has(run.status)) break;
        if (c.op === 'end') {
          run.status = c.kind;
          run.endedAt = at;
        } else if (run.owner === nodeId) {
          if (c.op === 'start') {
            run.status = 'running';
            run.attempts += 1;
          } else {
            run.status = 'queued';
            if (c.op === 'release') run.owner = null;
          }
        }
        break;
      }
      case 'heartbeat':
        await store.heartbeat(nodeName(c.node), 600_000);
        alive.add(nodeName(c.node));
        break;
      case 'crash':
        await store.heartbeat(nodeName(c.node), 0);
        alive.delete(nodeName(c.node));
        break;
      case 'leave': {
        const nodeId = nodeName(c.node);
        await store.leave(nodeId);
        alive.delete(nodeId);
        for (const run of runs) {
          if (!run.pruned && LIVE.has(run.status) && run.owner === nodeId) {
            run.owner = null;
            run.status = 'queued';
          }
        }
        break;
      }
      case 'claim': {
        const nodeId = nodeName(c.node);
        const caps = new Set(capsOf(c.node));
        const candidates = runs
          .filter(
            (r) =>
              !r.pruned &&
              LIVE.has(r.status) &&
              (r.owner === null || !alive.has(r.owner)) &&
              r.requires.every((x) => caps.has(x)),
          )
          .sort((a, b) => b.priority - a.priority || a.createdAt - b.createdAt);
        const taken: string[] = [];
        const poisoned: string[] = [];
        for (const r of candidates) {
          if (taken.length >= c.limit) break;
          if (r.owner !== null) {
            r.recoveries += 1;
            if (r.recoveries >= Math.max(MAX_RECOVERIES, r.maxAttempts)) {
              r.status = 'dead-lettered';
              poisoned.push(r.id);
              continue;
            }
          }
          r.owner = nodeId;
          r.status = 'queued';
          taken.push(r.id);
        }
        const result = await store.claim({
          nodeId,
          limit: c.limit,
          capabilities: [...caps],
          maxRecoveries: MAX_RECOVERIES,
        });
        const got = result.runs.map((r) => r.id);
        const gotPoisoned = result.deadLettered.map((r) => r.id).sort();
        if (JSON.stringify(got) !== JSON.stringify(taken))
          fail(`${where}: claim took ${JSON.stringify(got)}, the model ${JSON.stringify(taken)}`);
        if (JSON.stringify(gotPoisoned) !== JSON.stringify(poisoned.sort()))
          fail(`${where}: claim dead-lettered ${JSON.stringify(gotPoisoned)}, the model ${JSON.stringify(poisoned)}`);
        break;
      }
      case 'prune': {
        const before = clock - c.back * 10;
        await store.prune(before, 100_000);
        for (const r of runs) if (r.endedAt !== null && r.endedAt < before) r.pruned = true;
        break;
      }
    }
    await check(store, runs, where, fail);
  }
  // Every run that ended has one terminal event in its timeline: the one that ended it.
  for (const run of runs) {
    if (run.pruned || LIVE.has(run.status)) continue;
    const kinds = (await store.events(run.id)).map((e) => e.kind);
    const terminal = kinds.filter((k) =>
      ['completed', 'failed', 'cancelled', 'timed-out', 'dead-lettered'].includes(k),
    );
    // (A node that lost the run may still record what it did after the end: history, not a second end.)
    if (terminal.length !== 1 || terminal[0] !== run.status)
      fail(`run ${run.id} (${run.status}) has the timeline ${JSON.stringify(kinds)}`);
  }
}

async function check(
  store: RunStore,
  runs: readonly ModelRun[],
  where: string,
  fail: (message: string) => never,
): Promise<void> {
  const held = new Map((await store.getMany(runs.map((r) => r.id))).map((r) => [r.id, r]));
  for (const run of runs) {
    const got = held.get(run.id);
    if (run.pruned) {
      if (got) fail(`${where}: ${run.id} should have been pruned`);
      continue;
    }
    if (!got) return fail(`${where}: ${run.id} is missing`);
    const want = { status: run.status, attempts: run.attempts, recoveries: run.recoveries };
    const have = { status: got.status, attempts: got.attempts, recoveries: got.recoveries };
    if (JSON.stringify(want) !== JSON.stringify(have))
      fail(`${where}: ${run.id} is ${JSON.stringify(have)}, the model says ${JSON.stringify(want)}`);
    if (LIVE.has(run.status) && got.owner !== run.owner)
      fail(`${where}: ${run.id} is owned by ${got.owner}, the model says ${run.owner}`);
  }
}
