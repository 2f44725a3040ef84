/**
 * The RunStore contract (src/store/store.ts), as one suite every store runs: MemoryStore, the embedded PGlite store
 * and PostgresStore on a real server. Each test gets a store of its own (a new MemoryStore, or a new schema of the
 * shared database) and, for the rules that involve several nodes, a peer: another store on the same data (another
 * instance, with its own connections, for the SQL stores). Leases are short and `advance` lets them run out: the
 * MemoryStore's suite moves its clock, the SQL stores really wait (their leases are on the database's clock).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { StoreUnavailableError, ValidationError } from '../../src/errors.js';
import type {
  NewRun,
  ParkInput,
  RunEventInput,
  RunRecord,
  RunStore,
  SignalInput,
  StepInput,
  StepRecord,
  StoredTask,
} from '../../src/store/store.js';

/** What a store under test brings. */
export interface ContractStores {
  /** A store of its own, opened. */
  readonly store: RunStore;
  /** Another store, opened, on the same data as `store` (another instance where the store has instances). */
  readonly peer: RunStore;
  /** Lets `ms` pass on the store's clock. */
  readonly advance: (ms: number) => Promise<void>;
}

export interface ContractOptions {
  /** The lease the lease tests use (ms); the SQL stores need it long enough to outlast a few statements. */
  readonly leaseMs?: number;
  /** Timeout of each test (ms). */
  readonly timeout?: number;
}

let serial = 0;

/** Ids no other test uses, even on a shared database. */
function unique(prefix: string): string {
  serial += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${serial}`;
}

function task(overrides: Partial<StoredTask> = {}): StoredTask {
  return {
    requires: [],
    prefers: [],
    priority: 0,
    payload: { n: 1, text: 'hello' },
    timeoutMs: null,
    deadlineAt: null,
    maxAttempts: 3,
    affinityKey: null,
    ...overrides,
  };
}

function newRun(overrides: Omit<Partial<NewRun>, 'task'> & { task?: Partial<StoredTask> } = {}): NewRun {
  const { task: taskOverrides, ...rest } = overrides;
  return {
    id: unique('run'),
    type: 'summarise',
    tenantId: null,
    idempotencyKey: null,
    createdAt: 1_700_000_000_000,
    ...rest,
    task: task(taskOverrides),
  };
}

function ev(run: { id: string }, kind: RunEventInput['kind'], nodeId: string, extra: Partial<RunEventInput> = {}) {
  return { runId: run.id, kind, nodeId, at: 1_700_000_001_000, ...extra } satisfies RunEventInput;
}

/** A workflow run (type `workflow:…`). */
function workflowRun(overrides: Parameters<typeof newRun>[0] = {}): NewRun {
  return newRun({ type: 'workflow:review', ...overrides });
}

function step(run: { id: string }, seq: number, extra: Partial<StepInput> = {}): StepInput {
  return {
    runId: run.id,
    seq,
    name: `step-${seq}`,
    kind: 'step',
    status: 'running',
    startedAt: 1_700_000_002_000,
    ...extra,
  };
}

function park(run: { id: string }, nodeId: string, extra: Partial<ParkInput> = {}): ParkInput {
  return {
    runId: run.id,
    nodeId,
    at: 1_700_000_003_000,
    notBefore: null,
    waitingFor: ['approval'],
    steps: [],
    ...extra,
  };
}

function signalOf(run: { id: string }, name: string, extra: Partial<SignalInput> = {}): SignalInput {
  return { runId: run.id, name, payload: { ok: true }, actor: 'alice', at: 1_700_000_004_000, nodeId: 'n9', ...extra };
}

/** The store's clock now (what its claims compare `notBefore` with): the `updatedAt` a node's event stamps. */
async function storeNow(store: RunStore): Promise<number> {
  const probe = newRun();
  await store.insert('clock', [probe]);
  await store.append([ev(probe, 'started', 'clock', { attempt: 1 })]);
  const now = (await store.get(probe.id))!.updatedAt;
  await store.append([ev(probe, 'completed', 'clock')]); // Not a run for the test's claims.
  return now;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

/** Runs the contract against the stores `make` gives (one call per test; `close` is called after each). */
export function runStoreContract(
  name: string,
  make: () => Promise<ContractStores>,
  options: ContractOptions = {},
): void {
  const leaseMs = options.leaseMs ?? 300;
  const timeout = options.timeout ?? 20_000;
  let current: ContractStores | undefined;

  const setup = async (): Promise<ContractStores> => {
    current = await make();
    return current;
  };

  describe(`RunStore contract: ${name}`, () => {
    afterEach(async () => {
      const stores = current;
      current = undefined;
      if (stores) {
        await stores.peer.close();
        await stores.store.close();
      }
    });

    describe('open and close', () => {
      it(
        'opens idempotently, refuses calls once closed, and keeps what it holds across close and open',
        async () => {
          const { store } = await setup();
          await store.open();
          const run = newRun();
          await store.insert('n1', [run]);
          await store.close();
          await store.close();
          const error = await rejection(store.get(run.id));
          expect(error).toBeInstanceOf(StoreUnavailableError);
          expect((error as StoreUnavailableError).operation).toBe('get');
          await store.open();
          expect((await store.get(run.id))?.id).toBe(run.id);
        },
        timeout,
      );
    });

    describe('insert', () => {
      it(
        'stores a queued run owned by the node, with a queued event',
        async () => {
          const { store } = await setup();
          const run = newRun({ tenantId: 'acme', idempotencyKey: 'k1', createdAt: 1_700_000_000_123 });
          expect(await store.insert('n1', [run])).toEqual([{ kind: 'inserted' }]);
          const stored = await store.get(run.id);
          expect(stored).toEqual({
            id: run.id,
            type: 'summarise',
            tenantId: 'acme',
            idempotencyKey: 'k1',
            status: 'queued',
            task: run.task,
            attempts: 0,
            recoveries: 0,
            owner: 'n1',
            result: null,
            error: null,
            createdAt: 1_700_000_000_123,
            updatedAt: expect.any(Number) as number,
            finishedAt: null,
            notBefore: null,
            waitingFor: [],
            cost: 0,
            agentId: null,
          } satisfies RunRecord);
          const events = await store.events(run.id);
          expect(events).toHaveLength(1);
          expect(events[0]).toMatchObject({
            runId: run.id,
            kind: 'queued',
            at: 1_700_000_000_123,
            nodeId: 'n1',
            attempt: null,
            agentId: null,
            error: null,
            detail: null,
          });
        },
        timeout,
      );

      it(
        'keeps a task of every shape: nested payloads, nulls, deadlines, affinity',
        async () => {
          const { store } = await setup();
          const run = newRun({
            task: {
              requires: ['gpu', 'llm'],
              prefers: ['fast'],
              priority: 7,
              payload: { list: [1, 'two', null, { deep: true }], unicode: 'é ✓ 🚀', n: 1.5 },
              timeoutMs: 30_000,
              deadlineAt: 1_700_000_100_000,
              maxAttempts: 5,
              affinityKey: 'user-9',
            },
          });
          await store.insert('n1', [run]);
          expect((await store.get(run.id))?.task).toEqual(run.task);
        },
        timeout,
      );

      it(
        'gives one outcome per run in order, and a duplicate follows the live run with the same tenant and key',
        async () => {
          const { store } = await setup();
          const first = newRun({ tenantId: 't1', idempotencyKey: 'order-1' });
          const sameBatch = newRun({ tenantId: 't1', idempotencyKey: 'order-1' });
          const otherTenant = newRun({ tenantId: 't2', idempotencyKey: 'order-1' });
          const noTenant = newRun({ tenantId: null, idempotencyKey: 'order-1' });
          const noKey = newRun({ tenantId: 't1' });
          const outcomes = await store.insert('n1', [first, sameBatch, otherTenant, noTenant, noKey]);
          expect(outcomes.map((o) => o.kind)).toEqual(['inserted', 'duplicate', 'inserted', 'inserted', 'inserted']);
          expect(outcomes[1]).toMatchObject({ kind: 'duplicate', existing: { id: first.id, tenantId: 't1' } });
          expect(await store.get(sameBatch.id)).toBeUndefined();
          expect(await store.events(sameBatch.id)).toEqual([]);

          const later = newRun({ tenantId: 't1', idempotencyKey: 'order-1' });
          const again = newRun({ tenantId: null, idempotencyKey: 'order-1' });
          const [l, a] = await store.insert('n2', [later, again]);
          expect(l).toMatchObject({ kind: 'duplicate', existing: { id: first.id, owner: 'n1' } });
          expect(a).toMatchObject({ kind: 'duplicate', existing: { id: noTenant.id } });
        },
        timeout,
      );

      it(
        'a completed run keeps its key; a failed, cancelled, timed-out or dead-lettered one frees it',
        async () => {
          const { store } = await setup();
          const ends = ['completed', 'failed', 'cancelled', 'timed-out', 'dead-lettered'] as const;
          const runs = ends.map((end) => newRun({ tenantId: 'acme', idempotencyKey: `key-${end}` }));
          await store.insert('n1', runs);
          await store.append(runs.map((run, i) => ev(run, ends[i]!, 'n1', { result: i === 0 ? 42 : undefined })));
          const retries = ends.map((end) => newRun({ tenantId: 'acme', idempotencyKey: `key-${end}` }));
          const outcomes = await store.insert('n1', retries);
          expect(outcomes[0]).toMatchObject({ kind: 'duplicate', existing: { id: runs[0]!.id, result: 42 } });
          expect(outcomes.slice(1)).toEqual(ends.slice(1).map(() => ({ kind: 'inserted' })));
          // Now the new live run holds the key.
          const third = await store.insert('n1', [newRun({ tenantId: 'acme', idempotencyKey: 'key-failed' })]);
          expect(third[0]).toMatchObject({ kind: 'duplicate', existing: { id: retries[1]!.id } });
        },
        timeout,
      );

      it(
        'refuses a run id given twice in one batch, writing nothing; an id already stored is a duplicate of that run',
        async () => {
          const { store } = await setup();
          const run = newRun();
          const twice = await rejection(store.insert('n1', [run, { ...run }]));
          expect(twice).toBeInstanceOf(ValidationError);
          expect(await store.get(run.id)).toBeUndefined();
          await store.insert('n1', [run]);
          await store.append([ev(run, 'failed', 'n1', { error: { name: 'Error', message: 'x', code: null } })]);
          const other = newRun();
          const outcomes = await store.insert('n2', [other, { ...run, type: 'changed' }]);
          expect(outcomes[0]).toEqual({ kind: 'inserted' });
          // Whatever its status (here failed, which frees an idempotency key), a stored id stays that run's.
          expect(outcomes[1]).toMatchObject({
            kind: 'duplicate',
            existing: { id: run.id, type: run.type, status: 'failed' },
          });
          expect(await store.get(other.id)).toMatchObject({ owner: 'n2' });
          expect((await store.events(run.id)).map((e) => e.kind)).toEqual(['queued', 'failed']);
        },
        timeout,
      );

      it(
        'inserts nothing for an empty batch',
        async () => {
          const { store } = await setup();
          expect(await store.insert('n1', [])).toEqual([]);
          expect((await store.list()).runs).toEqual([]);
        },
        timeout,
      );
    });

    describe('append', () => {
      it(
        'moves the run: started, retrying, deferred, interrupted, released, then a terminal outcome',
        async () => {
          const { store } = await setup();
          const run = newRun();
          await store.insert('n1', [run]);
          await store.append([ev(run, 'started', 'n1', { attempt: 1, agentId: 'agent-a' })]);
          expect(await store.get(run.id)).toMatchObject({ status: 'running', attempts: 1, owner: 'n1' });
          const error = { name: 'Error', message: 'boom', code: null };
          await store.append([ev(run, 'retrying', 'n1', { attempt: 1, error, detail: { delayMs: 100 } })]);
          expect(await store.get(run.id)).toMatchObject({ status: 'queued', attempts: 1 });
          await store.append([ev(run, 'started', 'n1', { attempt: 2 }), ev(run, 'deferred', 'n1', { attempt: 2 })]);
          expect(await store.get(run.id)).toMatchObject({ status: 'queued', attempts: 2 });
          await store.append([ev(run, 'started', 'n1', { attempt: 3 }), ev(run, 'interrupted', 'n1')]);
          expect(await store.get(run.id)).toMatchObject({ status: 'queued', attempts: 3, owner: 'n1' });
          await store.append([ev(run, 'released', 'n1')]);
          expect(await store.get(run.id)).toMatchObject({ status: 'queued', owner: null });
          // Unowned now: a node's non-terminal event records history but moves nothing.
          await store.append([ev(run, 'started', 'n1', { attempt: 4 })]);
          expect(await store.get(run.id)).toMatchObject({ status: 'queued', attempts: 3, owner: null });
          await store.append([
            ev(run, 'completed', 'n1', {
              attempt: 4,
              agentId: 'agent-b',
              at: 1_700_000_009_000,
              result: { ok: [1, 2] },
            }),
          ]);
          expect(await store.get(run.id)).toMatchObject({
            status: 'completed',
            result: { ok: [1, 2] },
            error: null,
            finishedAt: 1_700_000_009_000,
          });
          const events = await store.events(run.id);
          expect(events.map((e) => e.kind)).toEqual([
            'queued',
            'started',
            'retrying',
            'started',
            'deferred',
            'started',
            'interrupted',
            'released',
            'started',
            'completed',
          ]);
          expect(events[1]).toMatchObject({ attempt: 1, agentId: 'agent-a', nodeId: 'n1' });
          expect(events[2]).toMatchObject({ error, detail: { delayMs: 100 } });
          expect(events[9]).toMatchObject({ attempt: 4, agentId: 'agent-b', at: 1_700_000_009_000 });
          for (let i = 1; i < events.length; i++) expect(events[i]!.seq).toBeGreaterThan(events[i - 1]!.seq);
        },
        timeout,
      );

      it(
        'a node that does not own the run records history but moves nothing',
        async () => {
          const { store } = await setup();
          const run = newRun();
          await store.insert('n1', [run]);
          await store.append([ev(run, 'started', 'n2', { attempt: 1 }), ev(run, 'released', 'n2')]);
          expect(await store.get(run.id)).toMatchObject({ status: 'queued', attempts: 0, owner: 'n1' });
          expect((await store.events(run.id)).map((e) => [e.kind, e.nodeId])).toEqual([
            ['queued', 'n1'],
            ['started', 'n2'],
            ['released', 'n2'],
          ]);
        },
        timeout,
      );

      it(
        'a terminal event ends a live run whoever owns it; the first end wins and later ones are not recorded',
        async () => {
          const { store } = await setup();
          const run = newRun();
          await store.insert('n1', [run]);
          const error = { name: 'TaskCancelledError', message: 'cancelled by the caller', code: 'TASK_CANCELLED' };
          await store.append([
            ev(run, 'cancelled', 'n2', { error, at: 1_700_000_002_000 }),
            ev(run, 'completed', 'n1', { result: 1 }),
          ]);
          await store.append([ev(run, 'failed', 'n1', { error: { name: 'Error', message: 'x', code: null } })]);
          expect(await store.get(run.id)).toMatchObject({
            status: 'cancelled',
            error,
            result: null,
            finishedAt: 1_700_000_002_000,
            owner: 'n1',
          });
          expect((await store.events(run.id)).map((e) => e.kind)).toEqual(['queued', 'cancelled']);
          // A non-terminal event after the end is history only.
          await store.append([ev(run, 'started', 'n1', { attempt: 9 })]);
          expect(await store.get(run.id)).toMatchObject({ status: 'cancelled', attempts: 0 });
          expect((await store.events(run.id)).map((e) => e.kind)).toEqual(['queued', 'cancelled', 'started']);
        },
        timeout,
      );

      it(
        'stores a result JSON cannot hold as null, and every failure outcome with its error',
        async () => {
          const { store } = await setup();
          const runs = [newRun(), newRun(), newRun(), newRun()];
          await store.insert('n1', runs);
          const error = { name: 'TaskTimeoutError', message: 'too slow', code: 'TASK_TIMEOUT' };
          await store.append([
            ev(runs[0]!, 'completed', 'n1', { result: 10n }),
            ev(runs[1]!, 'completed', 'n1'),
            ev(runs[2]!, 'timed-out', 'n1', { error }),
            ev(runs[3]!, 'dead-lettered', 'n1', { error }),
          ]);
          const got = await Promise.all(runs.map((r) => store.get(r.id)));
          expect(got.map((r) => [r?.status, r?.result, r?.error])).toEqual([
            ['completed', null, null],
            ['completed', null, null],
            ['timed-out', null, error],
            ['dead-lettered', null, error],
          ]);
        },
        timeout,
      );

      it(
        "refuses 'queued' and 'adopted' events, writing nothing of the batch",
        async () => {
          const { store } = await setup();
          const run = newRun();
          await store.insert('n1', [run]);
          for (const kind of ['queued', 'adopted'] as const) {
            const error = await rejection(
              store.append([ev(run, 'started', 'n1', { attempt: 1 }), { ...ev(run, 'started', 'n1'), kind } as never]),
            );
            expect(error).toBeInstanceOf(ValidationError);
            expect((error as ValidationError).field).toBe('events[1].kind');
          }
          expect(await store.get(run.id)).toMatchObject({ status: 'queued', attempts: 0 });
          expect(await store.events(run.id)).toHaveLength(1);
        },
        timeout,
      );

      it(
        'ignores events of unknown runs and an empty batch',
        async () => {
          const { store } = await setup();
          await store.append([]);
          await store.append([ev({ id: unique('nobody') }, 'completed', 'n1')]);
          expect((await store.list()).runs).toEqual([]);
        },
        timeout,
      );

      it(
        'applies a large batch across many runs in order',
        async () => {
          const { store } = await setup();
          const runs = Array.from({ length: 200 }, (_, i) => newRun({ createdAt: 1_700_000_000_000 + i }));
          await store.insert('n1', runs);
          const events = runs.flatMap((run, i) => [
            ev(run, 'started', 'n1', { attempt: 1 }),
            i % 2 === 0 ? ev(run, 'completed', 'n1', { result: i }) : ev(run, 'retrying', 'n1', { attempt: 1 }),
          ]);
          await store.append(events);
          const stored = await store.getMany(runs.map((r) => r.id));
          expect(stored).toHaveLength(200);
          const byId = new Map(stored.map((r) => [r.id, r]));
          runs.forEach((run, i) => {
            expect(byId.get(run.id)).toMatchObject(
              i % 2 === 0 ? { status: 'completed', result: i, attempts: 1 } : { status: 'queued', attempts: 1 },
            );
          });
        },
        timeout,
      );
    });

    describe('heartbeat, claim and leave', () => {
      it(
        "does not claim a live node's runs; once its lease expires, another node adopts them as a recovery",
        async () => {
          const { store, peer, advance } = await setup();
          const cap = unique('cap');
          const runs = [newRun({ task: { requires: [cap] } }), newRun({ task: { requires: [cap] } })];
          await store.heartbeat('n1', leaseMs);
          await store.insert('n1', runs);
          await store.append([ev(runs[0]!, 'started', 'n1', { attempt: 1 })]);
          const request = { nodeId: 'n2', limit: 10, capabilities: [cap], maxRecoveries: 5 };
          expect(await peer.claim(request)).toEqual({ runs: [], deadLettered: [] });
          await advance(leaseMs + 200);
          const { runs: adopted, deadLettered } = await peer.claim(request);
          expect(deadLettered).toEqual([]);
          expect(adopted.map((r) => r.id).sort()).toEqual(runs.map((r) => r.id).sort());
          for (const run of adopted) expect(run).toMatchObject({ owner: 'n2', status: 'queued', recoveries: 1 });
          expect(adopted.find((r) => r.id === runs[0]!.id)?.attempts).toBe(1);
          expect(await store.get(runs[0]!.id)).toMatchObject({ owner: 'n2', status: 'queued', recoveries: 1 });
          const events = await store.events(runs[0]!.id);
          expect(events.map((e) => e.kind)).toEqual(['queued', 'started', 'adopted']);
          expect(events[2]).toMatchObject({ nodeId: 'n2', detail: { from: 'n1' } });
          // The old owner's late events no longer move it.
          await store.append([ev(runs[0]!, 'started', 'n1', { attempt: 2 })]);
          expect(await store.get(runs[0]!.id)).toMatchObject({ status: 'queued', attempts: 1, owner: 'n2' });
          // Claimed runs are the claimer's while its lease holds.
          await peer.heartbeat('n2', 60_000);
          expect((await store.claim({ ...request, nodeId: 'n3' })).runs).toEqual([]);
        },
        timeout,
      );

      it(
        "a claim `from` a dead node takes only that node's runs, not unowned ones or another dead node's",
        async () => {
          const { store } = await setup();
          const cap = unique('cap');
          const mine = newRun({ task: { requires: [cap] } });
          const theirs = newRun({ task: { requires: [cap] } });
          const unowned = newRun({ task: { requires: [cap] } });
          const me = unique('node');
          const other = unique('node');
          await store.insert(me, [unowned]);
          await store.leave(me); // gives `unowned` back
          await store.insert(me, [mine]);
          await store.insert(other, [theirs]); // `other` never took a lease: a dead node's run too
          await store.heartbeat(me, 0);
          const { runs } = await store.claim({
            nodeId: me,
            limit: 10,
            capabilities: [cap],
            maxRecoveries: 5,
            from: me,
          });
          expect(runs.map((r) => [r.id, r.owner, r.recoveries])).toEqual([[mine.id, me, 1]]);
          expect(await store.get(unowned.id)).toMatchObject({ owner: null, recoveries: 0 });
          expect(await store.get(theirs.id)).toMatchObject({ owner: other, recoveries: 0 });
        },
        timeout,
      );

      it(
        "a claim `from` with anyCapabilities takes all that node's runs whatever they require; without `from` it is ignored",
        async () => {
          const { store } = await setup();
          const [cap, gone] = [unique('cap'), unique('cap')];
          const me = unique('node');
          const served = newRun({ task: { requires: [cap] } });
          const unserved = newRun({ task: { requires: [gone] } });
          const stranger = newRun({ task: { requires: [gone] } });
          await store.insert(me, [served, unserved]);
          await store.insert(unique('node'), [stranger]); // a dead node's (no lease)
          await store.heartbeat(me, 0);
          const blind = await store.claim({
            nodeId: unique('node'),
            limit: 10,
            capabilities: [cap],
            anyCapabilities: true,
            maxRecoveries: 5,
          });
          expect(blind.runs.map((r) => r.id).filter((id) => [unserved.id, stranger.id].includes(id))).toEqual([]);
          // The blind claim took `served` (its requires are covered, its node dead); the rest is `me`'s to take back.
          const { runs } = await store.claim({
            nodeId: me,
            limit: 10,
            capabilities: [cap],
            anyCapabilities: true,
            maxRecoveries: 5,
            from: me,
          });
          expect(runs.map((r) => r.id)).toEqual([unserved.id]);
          expect(await store.get(stranger.id)).toMatchObject({ recoveries: 0 });
        },
        timeout,
      );

      it(
        'renews a lease with each heartbeat',
        async () => {
          const { store, advance } = await setup();
          const cap = unique('cap');
          const run = newRun({ task: { requires: [cap] } });
          await store.heartbeat('n1', leaseMs * 2);
          await store.insert('n1', [run]);
          await advance(leaseMs);
          await store.heartbeat('n1', leaseMs * 2);
          await advance(leaseMs + 100);
          const request = { nodeId: 'n2', limit: 10, capabilities: [cap], maxRecoveries: 5 };
          expect((await store.claim(request)).runs).toEqual([]);
          await advance(leaseMs + 200);
          expect((await store.claim(request)).runs.map((r) => r.id)).toEqual([run.id]);
        },
        timeout,
      );

      it(
        'takes runs of an owner that never had a lease, and unowned runs without counting a recovery',
        async () => {
          const { store } = await setup();
          const cap = unique('cap');
          const orphan = newRun({ task: { requires: [cap] }, createdAt: 1 });
          const released = newRun({ task: { requires: [cap] }, createdAt: 2 });
          await store.heartbeat('n1', 60_000);
          await store.insert('ghost', [orphan]);
          await store.insert('n1', [released]);
          await store.append([ev(released, 'released', 'n1')]);
          const { runs } = await store.claim({ nodeId: 'n2', limit: 10, capabilities: [cap], maxRecoveries: 5 });
          expect(runs.map((r) => [r.id, r.owner, r.recoveries])).toEqual([
            [orphan.id, 'n2', 1],
            [released.id, 'n2', 0],
          ]);
          expect((await store.events(released.id)).at(-1)).toMatchObject({ kind: 'adopted', detail: { from: null } });
          expect((await store.events(orphan.id)).at(-1)).toMatchObject({ kind: 'adopted', detail: { from: 'ghost' } });
        },
        timeout,
      );

      it(
        'claims only runs the capabilities cover, highest priority first, then oldest, up to the limit',
        async () => {
          const { store } = await setup();
          const a = unique('cap-a');
          const b = unique('cap-b');
          const runs = [
            newRun({ task: { requires: [a], priority: 1 }, createdAt: 10 }),
            newRun({ task: { requires: [a, b], priority: 5 }, createdAt: 20 }),
            newRun({ task: { requires: [a], priority: 5 }, createdAt: 5 }),
            newRun({ task: { requires: [b], priority: 9 }, createdAt: 1 }),
            newRun({ task: { requires: [a, unique('cap-c')], priority: 100 }, createdAt: 1 }),
            newRun({ task: { requires: [a], priority: 0 }, createdAt: 0 }),
          ];
          await store.insert('gone', runs);
          await store.append([ev(runs[5]!, 'completed', 'gone')]);
          const first = await store.claim({ nodeId: 'n2', limit: 2, capabilities: [a, b], maxRecoveries: 5 });
          expect(first.runs.map((r) => r.id)).toEqual([runs[3]!.id, runs[2]!.id]);
          const rest = await store.claim({ nodeId: 'n3', limit: 10, capabilities: [b, a, 'other'], maxRecoveries: 5 });
          // n2 has no lease either: its runs are claimable again, with another recovery.
          expect(rest.runs.map((r) => r.id)).toEqual([runs[3]!.id, runs[2]!.id, runs[1]!.id, runs[0]!.id]);
          expect(rest.runs.map((r) => r.recoveries)).toEqual([2, 2, 1, 1]);
          const onlyA = await store.claim({ nodeId: 'n4', limit: 10, capabilities: [a], maxRecoveries: 5 });
          expect(onlyA.runs.map((r) => r.id)).toEqual([runs[2]!.id, runs[0]!.id]);
        },
        timeout,
      );

      it(
        'two claims at once never take the same run',
        async () => {
          const { store, peer } = await setup();
          const cap = unique('cap');
          const runs = Array.from({ length: 40 }, (_, i) => newRun({ task: { requires: [cap] }, createdAt: i }));
          await store.insert('gone', runs);
          const request = (nodeId: string) => ({ nodeId, limit: 15, capabilities: [cap], maxRecoveries: 5 });
          await store.heartbeat('n1', 60_000);
          await peer.heartbeat('n2', 60_000);
          const results = await Promise.all([
            store.claim(request('n1')),
            peer.claim(request('n2')),
            store.claim(request('n1')),
            peer.claim(request('n2')),
          ]);
          const ids = results.flatMap((r) => r.runs.map((run) => run.id));
          expect(new Set(ids).size).toBe(ids.length);
          expect(ids.length).toBe(40);
          const stored = await store.getMany(runs.map((r) => r.id));
          const owners = new Map(results.flatMap((r) => r.runs.map((run) => [run.id, run.owner])));
          for (const run of stored) {
            expect(run.owner).toBe(owners.get(run.id));
            expect((await store.events(run.id)).filter((e) => e.kind === 'adopted')).toHaveLength(1);
          }
        },
        timeout,
      );

      it(
        'dead-letters a run taken from a dead node as often as max(maxRecoveries, maxAttempts)',
        async () => {
          const { store, advance } = await setup();
          const cap = unique('cap');
          const poison = newRun({ task: { requires: [cap], maxAttempts: 1 }, createdAt: 1 });
          const stubborn = newRun({ task: { requires: [cap], maxAttempts: 3 }, createdAt: 2 });
          await store.insert('dead-0', [poison, stubborn]);
          const claim = (nodeId: string) => store.claim({ nodeId, limit: 1, capabilities: [cap], maxRecoveries: 2 });
          const c1 = await claim('dead-1');
          expect(c1.runs.map((r) => [r.id, r.recoveries])).toEqual([[poison.id, 1]]);
          const c2 = await claim('dead-2');
          // poison reaches 2 = max(2, 1): dead-lettered, and the limit still gives the claimer a run.
          expect(c2.deadLettered.map((r) => [r.id, r.status, r.recoveries, r.owner])).toEqual([
            [poison.id, 'dead-lettered', 2, 'dead-2'],
          ]);
          expect(c2.runs.map((r) => [r.id, r.recoveries])).toEqual([[stubborn.id, 1]]);
          const dead = await store.get(poison.id);
          expect(dead).toMatchObject({ status: 'dead-lettered', error: { code: 'TASK_DEAD_LETTERED' } });
          expect(dead?.finishedAt).toEqual(expect.any(Number));
          const last = (await store.events(poison.id)).at(-1);
          expect(last).toMatchObject({ kind: 'dead-lettered', nodeId: 'dead-2', detail: { from: 'dead-1' } });
          await advance(5);
          expect((await claim('dead-3')).runs.map((r) => [r.id, r.recoveries])).toEqual([[stubborn.id, 2]]);
          const c4 = await claim('dead-4');
          expect(c4.runs).toEqual([]);
          expect(c4.deadLettered.map((r) => [r.id, r.recoveries])).toEqual([[stubborn.id, 3]]);
          expect((await store.deadLetters()).map((r) => r.id)).toEqual([poison.id, stubborn.id]);
        },
        timeout,
      );

      it(
        "leave gives back the node's live runs and ends its lease",
        async () => {
          const { store } = await setup();
          const cap = unique('cap');
          const live = newRun({ task: { requires: [cap] } });
          const running = newRun({ task: { requires: [cap] } });
          const done = newRun({ task: { requires: [cap] } });
          const others = newRun({ task: { requires: [cap] } });
          await store.heartbeat('n1', 60_000);
          await store.heartbeat('n9', 60_000);
          await store.insert('n1', [live, running, done]);
          await store.insert('n9', [others]);
          await store.append([ev(running, 'started', 'n1', { attempt: 1 }), ev(done, 'completed', 'n1')]);
          await store.leave('n1');
          await store.heartbeat('n2', 60_000);
          expect(await store.get(live.id)).toMatchObject({ owner: null, status: 'queued' });
          expect(await store.get(running.id)).toMatchObject({ owner: null, status: 'queued', attempts: 1 });
          expect(await store.get(done.id)).toMatchObject({ owner: 'n1', status: 'completed' });
          expect(await store.get(others.id)).toMatchObject({ owner: 'n9' });
          expect((await store.events(running.id)).at(-1)).toMatchObject({ kind: 'released', nodeId: 'n1' });
          expect((await store.events(done.id)).map((e) => e.kind)).toEqual(['queued', 'completed']);
          const { runs } = await store.claim({ nodeId: 'n2', limit: 10, capabilities: [cap], maxRecoveries: 5 });
          expect(runs.map((r) => r.id).sort()).toEqual([live.id, running.id].sort());
          expect(runs.every((r) => r.recoveries === 0)).toBe(true);
          // A node that left and comes back without a heartbeat has no lease: its new runs are claimable.
          const fresh = newRun({ task: { requires: [cap] }, createdAt: 1_800_000_000_000 });
          await store.insert('n1', [fresh]);
          expect(
            (await store.claim({ nodeId: 'n2', limit: 10, capabilities: [cap], maxRecoveries: 5 })).runs.map(
              (r) => r.id,
            ),
          ).toEqual([fresh.id]);
        },
        timeout,
      );

      it(
        'refuses a claim limit below 1 and a negative lease',
        async () => {
          const { store } = await setup();
          expect(
            await rejection(store.claim({ nodeId: 'n', limit: 0, capabilities: [], maxRecoveries: 3 })),
          ).toBeInstanceOf(ValidationError);
          expect(await rejection(store.heartbeat('n', -1))).toBeInstanceOf(ValidationError);
          expect(await rejection(store.heartbeat('n', Number.NaN))).toBeInstanceOf(ValidationError);
        },
        timeout,
      );

      it(
        "a lease of 0 ends the lease at once: the node's live runs are taken over as recoveries",
        async () => {
          const { store } = await setup();
          await store.heartbeat('n1', 60_000);
          const run = newRun();
          await store.insert('n1', [run]);
          expect((await store.claim({ nodeId: 'n2', limit: 5, capabilities: [], maxRecoveries: 3 })).runs).toEqual([]);
          await store.heartbeat('n1', 0);
          const { runs } = await store.claim({ nodeId: 'n2', limit: 5, capabilities: [], maxRecoveries: 3 });
          expect(runs.map((r) => [r.id, r.owner, r.recoveries])).toEqual([[run.id, 'n2', 1]]);
        },
        timeout,
      );
    });

    describe('reading', () => {
      it(
        "get, events and getMany; another tenant's run looks unknown",
        async () => {
          const { store } = await setup();
          const mine = newRun({ tenantId: 'acme' });
          const theirs = newRun({ tenantId: 'globex' });
          const shared = newRun({ tenantId: null });
          await store.insert('n1', [mine, theirs, shared]);
          expect((await store.get(mine.id, 'acme'))?.id).toBe(mine.id);
          expect(await store.get(theirs.id, 'acme')).toBeUndefined();
          expect(await store.get(shared.id, 'acme')).toBeUndefined();
          expect((await store.get(theirs.id))?.id).toBe(theirs.id);
          expect(await store.events(theirs.id, 'acme')).toEqual([]);
          expect(await store.events(mine.id, 'acme')).toHaveLength(1);
          expect(await store.get(unique('none'))).toBeUndefined();
          expect(await store.events(unique('none'))).toEqual([]);
          const many = await store.getMany([mine.id, unique('none'), shared.id, mine.id]);
          expect(many.map((r) => r.id).sort()).toEqual([mine.id, shared.id].sort());
          expect(await store.getMany([])).toEqual([]);
        },
        timeout,
      );

      it(
        'lists newest first with filters, a page at a time',
        async () => {
          const { store } = await setup();
          const runs = Array.from({ length: 25 }, (_, i) =>
            newRun({
              id: `list-${String(i).padStart(2, '0')}`,
              type: i % 3 === 0 ? 'translate' : 'summarise',
              idempotencyKey: i % 5 === 0 ? `key-${i}` : null,
              tenantId: i % 2 === 0 ? 'even' : 'odd',
              // Pairs share a createdAt: the id orders them.
              createdAt: 1_000 + Math.floor(i / 2),
            }),
          );
          await store.insert('n1', runs);
          await store.append([
            ev(runs[0]!, 'completed', 'n1'),
            ev(runs[3]!, 'failed', 'n1'),
            ev(runs[6]!, 'started', 'n1', { attempt: 1 }),
          ]);
          const expected = [...runs].reverse().map((r) => r.id);

          const seen: string[] = [];
          let cursor: string | undefined;
          for (let page = 0; page < 10; page++) {
            const result = await store.list({ limit: 7, ...(cursor === undefined ? {} : { cursor }) });
            seen.push(...result.runs.map((r) => r.id));
            if (result.cursor === null) break;
            cursor = result.cursor;
          }
          expect(seen).toEqual(expected);
          expect((await store.list()).runs.map((r) => r.id)).toEqual(expected);
          expect((await store.list({ limit: 25 })).cursor).toBeNull();

          const ids = async (query: Parameters<RunStore['list']>[0]) => (await store.list(query)).runs.map((r) => r.id);
          expect(await ids({ tenantId: 'odd' })).toEqual(expected.filter((id) => Number(id.slice(5)) % 2 === 1));
          expect(await ids({ type: 'translate', tenantId: 'even' })).toEqual([
            'list-24',
            'list-18',
            'list-12',
            'list-06',
            'list-00',
          ]);
          expect(await ids({ status: 'completed' })).toEqual(['list-00']);
          // By key, whatever the status (list-00 completed).
          expect(await ids({ idempotencyKey: 'key-0' })).toEqual(['list-00']);
          expect(await ids({ idempotencyKey: 'key-15', tenantId: 'odd' })).toEqual(['list-15']);
          expect(await ids({ idempotencyKey: 'key-15', tenantId: 'even' })).toEqual([]);
          expect(await ids({ status: ['failed', 'running'] })).toEqual(['list-06', 'list-03']);
          expect(await ids({ since: 1_010, until: 1_012 })).toEqual(['list-23', 'list-22', 'list-21', 'list-20']);
          const firstOdd = await store.list({ tenantId: 'odd', limit: 3 });
          expect(firstOdd.runs.map((r) => r.id)).toEqual(['list-23', 'list-21', 'list-19']);
          expect(await ids({ tenantId: 'odd', limit: 3, cursor: firstOdd.cursor! })).toEqual([
            'list-17',
            'list-15',
            'list-13',
          ]);
        },
        timeout,
      );

      it(
        'refuses a bad limit, status or cursor',
        async () => {
          const { store } = await setup();
          for (const query of [{ limit: 0 }, { limit: 1001 }, { status: 'done' as never }, { cursor: 'nonsense' }]) {
            expect(await rejection(store.list(query))).toBeInstanceOf(ValidationError);
          }
        },
        timeout,
      );

      it(
        'lists dead letters oldest first, by tenant, up to a limit',
        async () => {
          const { store } = await setup();
          const runs = [
            newRun({ tenantId: 'a' }),
            newRun({ tenantId: 'b' }),
            newRun({ tenantId: 'a' }),
            newRun({ tenantId: 'a' }),
          ];
          await store.insert('n1', runs);
          const error = { name: 'TaskDeadLetteredError', message: 'gave up', code: 'TASK_DEAD_LETTERED' };
          await store.append([
            ev(runs[2]!, 'dead-lettered', 'n1', { error, at: 100 }),
            ev(runs[0]!, 'dead-lettered', 'n1', { error, at: 200 }),
            ev(runs[1]!, 'dead-lettered', 'n1', { error, at: 150 }),
            ev(runs[3]!, 'failed', 'n1', { error, at: 50 }),
          ]);
          expect((await store.deadLetters()).map((r) => r.id)).toEqual([runs[2]!.id, runs[1]!.id, runs[0]!.id]);
          expect((await store.deadLetters('a')).map((r) => r.id)).toEqual([runs[2]!.id, runs[0]!.id]);
          expect((await store.deadLetters(undefined, 1)).map((r) => r.id)).toEqual([runs[2]!.id]);
          expect(await store.deadLetters('nobody')).toEqual([]);
        },
        timeout,
      );
    });

    describe('onFinished', () => {
      it(
        'tells a listener the ids of runs that ended, whichever store wrote the end, until it stops',
        async () => {
          const { store, peer } = await setup();
          const seen: string[] = [];
          const stop = await store.onFinished((ids) => seen.push(...ids));
          const runs = [newRun(), newRun(), newRun()];
          await peer.insert('n1', runs);
          await peer.append([
            ev(runs[0]!, 'started', 'n1', { attempt: 1 }),
            ev(runs[0]!, 'completed', 'n1'),
            ev(runs[1]!, 'failed', 'n1'),
          ]);
          await waitFor(() => seen.length >= 2);
          expect(seen.sort()).toEqual([runs[0]!.id, runs[1]!.id].sort());
          // A terminal event on a terminal run is ignored: no second notice.
          await peer.append([ev(runs[0]!, 'cancelled', 'n1')]);
          await stop();
          await peer.append([ev(runs[2]!, 'completed', 'n1')]);
          await new Promise((resolve) => setTimeout(resolve, 200));
          expect(seen.sort()).toEqual([runs[0]!.id, runs[1]!.id].sort());
        },
        timeout,
      );

      it(
        'tells of every run of a large batch (more ids than one notification holds)',
        async () => {
          const { store, peer } = await setup();
          const seen = new Set<string>();
          const stop = await store.onFinished((ids) => ids.forEach((id) => seen.add(id)));
          const runs = Array.from({ length: 400 }, (_, i) => newRun({ id: `${unique('a-rather-long-run-id')}-${i}` }));
          await peer.insert('n1', runs);
          await peer.append(runs.map((run) => ev(run, 'completed', 'n1')));
          await waitFor(() => seen.size >= 400);
          expect([...seen].sort()).toEqual(runs.map((r) => r.id).sort());
          await stop();
        },
        timeout,
      );

      it(
        'tells a listener of runs that claim dead-lettered',
        async () => {
          const { store, peer } = await setup();
          const cap = unique('cap');
          const run = newRun({ task: { requires: [cap], maxAttempts: 1 } });
          await store.insert('gone', [run]);
          const seen: string[] = [];
          const stop = await store.onFinished((ids) => seen.push(...ids));
          const result = await peer.claim({ nodeId: 'n2', limit: 1, capabilities: [cap], maxRecoveries: 1 });
          expect(result.deadLettered.map((r) => r.id)).toEqual([run.id]);
          await waitFor(() => seen.length >= 1);
          expect(seen).toEqual([run.id]);
          await stop();
        },
        timeout,
      );
    });

    describe('workflows', () => {
      it(
        'a run inserted with notBefore has no owner and is claimed by any node once due, its notBefore cleared',
        async () => {
          const { store, peer, advance } = await setup();
          const cap = unique('cap');
          const now = await storeNow(store);
          // Every node here is alive: a claim takes only what is unowned.
          for (const node of ['n1', 'n2']) await store.heartbeat(node, 60_000);
          const later = newRun({ task: { requires: [cap] }, notBefore: now + leaseMs });
          const past = newRun({ task: { requires: [cap] }, notBefore: now - 60_000 });
          const plain = newRun({ task: { requires: [cap] }, notBefore: null });
          await store.insert('n1', [later, past, plain]);
          expect(await store.get(later.id)).toMatchObject({ owner: null, notBefore: now + leaseMs, status: 'queued' });
          expect(await store.get(plain.id)).toMatchObject({ owner: 'n1', notBefore: null });
          expect((await store.events(later.id))[0]).toMatchObject({ kind: 'queued', nodeId: 'n1' });
          const request = { nodeId: 'n2', limit: 10, capabilities: [cap], maxRecoveries: 5 };
          // n1 is alive: only the run that is due and unowned is claimed.
          const first = await peer.claim(request);
          expect(first.runs.map((r) => [r.id, r.owner, r.recoveries, r.notBefore])).toEqual([[past.id, 'n2', 0, null]]);
          await advance(leaseMs + 200);
          const second = await peer.claim(request);
          expect(second.runs.map((r) => [r.id, r.owner, r.notBefore])).toEqual([[later.id, 'n2', null]]);
          expect(await store.get(later.id)).toMatchObject({ owner: 'n2', notBefore: null, waitingFor: [] });
          expect((await store.events(later.id)).at(-1)).toMatchObject({ kind: 'adopted', detail: { from: null } });
        },
        timeout,
      );

      it(
        'claims skip a run waiting for a signal (with no time, or one not passed) and take it once its time passed',
        async () => {
          const { store, advance } = await setup();
          const cap = unique('cap');
          const now = await storeNow(store);
          for (const node of ['n1', 'n2', 'n3']) await store.heartbeat(node, 60_000);
          const [forever, notYet, passed, timer] = [0, 1, 2, 3].map(() => workflowRun({ task: { requires: [cap] } }));
          await store.insert('n1', [forever!, notYet!, passed!, timer!]);
          expect(
            await store.park([
              park(forever!, 'n1', { notBefore: null, waitingFor: ['approval'] }),
              park(notYet!, 'n1', { notBefore: now + 3_600_000, waitingFor: ['approval'] }),
              park(passed!, 'n1', { notBefore: now - 1, waitingFor: ['approval', 'veto'] }),
              park(timer!, 'n1', { notBefore: now + leaseMs, waitingFor: [] }),
            ]),
          ).toEqual(['parked', 'parked', 'parked', 'parked']);
          const request = { nodeId: 'n2', limit: 10, capabilities: [cap], maxRecoveries: 5, workflows: true };
          const first = await store.claim(request);
          expect(first.runs.map((r) => [r.id, r.notBefore, r.waitingFor])).toEqual([[passed!.id, null, []]]);
          expect(await store.get(passed!.id)).toMatchObject({ owner: 'n2', notBefore: null, waitingFor: [] });
          await advance(leaseMs + 200);
          const second = await store.claim({ ...request, nodeId: 'n3' });
          expect(second.runs.map((r) => r.id)).toEqual([timer!.id]);
          expect(await store.get(forever!.id)).toMatchObject({
            owner: null,
            waitingFor: ['approval'],
            notBefore: null,
          });
          expect(await store.get(notYet!.id)).toMatchObject({ owner: null, notBefore: now + 3_600_000 });
        },
        timeout,
      );

      it(
        'claims workflow runs only with `workflows: true`, and the other runs only without it',
        async () => {
          const { store } = await setup();
          const cap = unique('cap');
          const wf = workflowRun({ task: { requires: [cap] }, createdAt: 1 });
          const plain = newRun({ type: 'workflowish', task: { requires: [cap] }, createdAt: 2 });
          await store.insert('gone', [wf, plain]);
          const request = { nodeId: 'n2', limit: 10, capabilities: [cap], maxRecoveries: 5 };
          expect((await store.claim({ ...request, workflows: false })).runs.map((r) => r.id)).toEqual([plain.id]);
          await store.insert('gone2', [{ ...plain, id: unique('run') }]);
          const tasks = await store.claim({ ...request, nodeId: 'n3' });
          expect(tasks.runs.map((r) => r.type)).toEqual(['workflowish', 'workflowish']);
          const workflows = await store.claim({ ...request, nodeId: 'n4', workflows: true });
          expect(workflows.runs.map((r) => [r.id, r.owner])).toEqual([[wf.id, 'n4']]);
        },
        timeout,
      );

      it(
        "a terminal event gives the run its cost and agent; a live run's are 0 and null",
        async () => {
          const { store } = await setup();
          const [paid, free, early] = [newRun(), newRun(), newRun()];
          await store.insert('n1', [paid, free, early]);
          await store.append([
            ev(paid, 'started', 'n1', { attempt: 1, agentId: 'agent-s' }),
            ev(early, 'started', 'n1', { attempt: 1, agentId: 'agent-s' }),
          ]);
          expect(await store.get(paid.id)).toMatchObject({ cost: 0, agentId: null });
          await store.append([
            ev(paid, 'completed', 'n1', { attempt: 1, agentId: 'agent-a', cost: 2.5, result: 'ok' }),
            ev(free, 'failed', 'n1', { error: { name: 'Error', message: 'x', code: null } }),
            // The first end wins: a later one's cost and agent are ignored too.
            ev(paid, 'failed', 'n1', { agentId: 'agent-b', cost: 9 }),
          ]);
          expect(await store.get(paid.id)).toMatchObject({ status: 'completed', cost: 2.5, agentId: 'agent-a' });
          expect(await store.get(free.id)).toMatchObject({ status: 'failed', cost: 0, agentId: null });
          expect(await store.get(early.id)).toMatchObject({ status: 'running', cost: 0, agentId: null });
        },
        timeout,
      );

      it(
        'checkpoint upserts steps by (run, seq), the first end wins, and history gives them by seq',
        async () => {
          const { store } = await setup();
          const run = workflowRun();
          await store.insert('n1', [run]);
          const error = { name: 'Error', message: 'no', code: 'E_NO' };
          expect(
            await store.checkpoint('n1', [
              step(run, 2, { kind: 'task', name: 'draft', childId: 'child-2', attempts: 1 }),
              step(run, 0, { name: 'research' }),
              step(run, 1, { kind: 'sleep', name: 'nap', status: 'waiting', wakeAt: 1_700_000_009_000 }),
              step(run, 3, { name: 'bad' }),
            ]),
          ).toEqual([]);
          expect(
            await store.checkpoint('n1', [
              step(run, 0, { name: 'research', status: 'completed', result: { facts: [1, 2] }, cost: 0.5, endedAt: 7 }),
              step(run, 2, {
                kind: 'task',
                name: 'draft',
                status: 'completed',
                result: 'text',
                cost: 1.25,
                childId: 'child-2',
                agentId: 'agent-a',
                attempts: 2,
                endedAt: 8,
              }),
              step(run, 3, { name: 'bad', status: 'failed', error, endedAt: 9 }),
              // Later writes of ended steps change nothing.
              step(run, 0, { name: 'research', status: 'failed', error, endedAt: 10 }),
              step(run, 3, { name: 'bad', status: 'completed', result: 1, endedAt: 11 }),
            ]),
          ).toEqual([]);
          await store.checkpoint('n1', [step(run, 2, { kind: 'task', name: 'draft', status: 'running' })]);
          const { steps, signals } = await store.history(run.id);
          expect(signals).toEqual([]);
          expect(steps).toEqual([
            {
              runId: run.id,
              seq: 0,
              name: 'research',
              kind: 'step',
              status: 'completed',
              result: { facts: [1, 2] },
              error: null,
              cost: 0.5,
              childId: null,
              agentId: null,
              attempts: 0,
              startedAt: 1_700_000_002_000,
              endedAt: 7,
              wakeAt: null,
            },
            {
              runId: run.id,
              seq: 1,
              name: 'nap',
              kind: 'sleep',
              status: 'waiting',
              result: null,
              error: null,
              cost: 0,
              childId: null,
              agentId: null,
              attempts: 0,
              startedAt: 1_700_000_002_000,
              endedAt: null,
              wakeAt: 1_700_000_009_000,
            },
            {
              runId: run.id,
              seq: 2,
              name: 'draft',
              kind: 'task',
              status: 'completed',
              result: 'text',
              error: null,
              cost: 1.25,
              childId: 'child-2',
              agentId: 'agent-a',
              attempts: 2,
              startedAt: 1_700_000_002_000,
              endedAt: 8,
              wakeAt: null,
            },
            expect.objectContaining({ seq: 3, status: 'failed', error, result: null, endedAt: 9 }) as StepRecord,
          ] satisfies StepRecord[]);
          // A waiting step is replaced when it ends.
          await store.checkpoint('n1', [
            step(run, 1, { kind: 'sleep', name: 'nap', status: 'completed', endedAt: 12 }),
          ]);
          expect((await store.history(run.id)).steps[1]).toMatchObject({
            status: 'completed',
            endedAt: 12,
            wakeAt: null,
          });
        },
        timeout,
      );

      it(
        'checkpoint refuses the steps of runs the node does not own, that ended or that it does not know',
        async () => {
          const { store } = await setup();
          const [mine, theirs, ended, parked] = [0, 1, 2, 3].map(() => workflowRun());
          await store.insert('n1', [mine!, ended!, parked!]);
          await store.insert('n2', [theirs!]);
          await store.append([ev(ended!, 'cancelled', 'n1')]);
          await store.park([park(parked!, 'n1')]);
          const unknown = { id: unique('nobody') };
          const refused = await store.checkpoint('n1', [
            step(theirs!, 0),
            step(mine!, 0),
            step(ended!, 0),
            step(unknown, 0),
            step(theirs!, 1),
            step(parked!, 0),
            step(mine!, 1),
          ]);
          expect(refused).toEqual([theirs!.id, ended!.id, unknown.id, parked!.id]);
          expect((await store.history(mine!.id)).steps.map((s) => s.seq)).toEqual([0, 1]);
          for (const run of [theirs!, ended!, parked!]) expect((await store.history(run.id)).steps).toEqual([]);
          expect(await store.checkpoint('n1', [])).toEqual([]);
        },
        timeout,
      );

      it(
        'a step with signalId consumes that signal once; history gives every signal by id',
        async () => {
          const { store } = await setup();
          const run = workflowRun();
          await store.insert('n1', [run]);
          const first = await store.signal(signalOf(run, 'approval', { payload: { approved: true }, actor: 'alice' }));
          const second = await store.signal(signalOf(run, 'approval', { payload: [1, 'two'], actor: null, at: 5 }));
          expect(first.kind).toBe('delivered');
          expect(second.kind).toBe('delivered');
          const [a, b] = [first, second].map((o) => (o.kind === 'delivered' ? o.id : -1));
          expect(b!).toBeGreaterThan(a!);
          await store.checkpoint('n1', [
            step(run, 0, { kind: 'signal', name: 'approval', status: 'completed', signalId: a }),
          ]);
          // Another step naming the consumed signal does not take it over.
          await store.checkpoint('n1', [
            step(run, 4, { kind: 'signal', name: 'approval', status: 'completed', signalId: a }),
          ]);
          expect((await store.history(run.id)).signals).toEqual([
            {
              id: a,
              runId: run.id,
              name: 'approval',
              payload: { approved: true },
              actor: 'alice',
              at: 1_700_000_004_000,
              consumedBy: 0,
            },
            { id: b, runId: run.id, name: 'approval', payload: [1, 'two'], actor: null, at: 5, consumedBy: null },
          ]);
        },
        timeout,
      );

      it(
        'park: parked (no owner, queued, its time and names, a parked event), or lost, with one outcome per park',
        async () => {
          const { store } = await setup();
          const [run, other, ended] = [workflowRun(), workflowRun(), workflowRun()];
          await store.insert('n1', [run, ended]);
          await store.insert('n2', [other]);
          await store.append([ev(run, 'started', 'n1', { attempt: 1 }), ev(ended, 'completed', 'n1')]);
          const wait = step(run, 0, { kind: 'signal', name: 'approval', status: 'waiting', wakeAt: 1_800_000_000_000 });
          const outcomes = await store.park([
            park(other, 'n1', { steps: [step(other, 0)] }),
            park(run, 'n1', { notBefore: 1_800_000_000_000, waitingFor: ['approval', 'veto'], steps: [wait] }),
            park(ended, 'n1', { steps: [step(ended, 0)] }),
            park({ id: unique('nobody') }, 'n1'),
            // Parked already: no longer n1's.
            park(run, 'n1', { steps: [step(run, 1)] }),
          ]);
          expect(outcomes).toEqual(['lost', 'parked', 'lost', 'lost', 'lost']);
          expect(await store.get(run.id)).toMatchObject({
            owner: null,
            status: 'queued',
            notBefore: 1_800_000_000_000,
            waitingFor: ['approval', 'veto'],
          });
          expect((await store.events(run.id)).at(-1)).toMatchObject({
            kind: 'parked',
            nodeId: 'n1',
            at: 1_700_000_003_000,
          });
          expect((await store.history(run.id)).steps).toEqual([
            expect.objectContaining({ seq: 0, status: 'waiting', wakeAt: 1_800_000_000_000 }) as StepRecord,
          ]);
          expect((await store.history(other.id)).steps).toEqual([]);
          expect((await store.history(ended.id)).steps).toEqual([]);
          expect(await store.get(other.id)).toMatchObject({ owner: 'n2', waitingFor: [], notBefore: null });
          expect((await store.events(ended.id)).map((e) => e.kind)).toEqual(['queued', 'completed']);
          expect(await store.park([])).toEqual([]);
        },
        timeout,
      );

      it(
        'park: signalled when an unconsumed signal of a waited name is there (the steps written, the run kept)',
        async () => {
          const { store } = await setup();
          const [run, consumed, otherName] = [workflowRun(), workflowRun(), workflowRun()];
          await store.insert('n1', [run, consumed, otherName]);
          await store.signal(signalOf(run, 'veto'));
          const sent = await store.signal(signalOf(consumed, 'approval'));
          await store.signal(signalOf(otherName, 'something-else'));
          await store.checkpoint('n1', [
            step(consumed, 0, {
              kind: 'signal',
              name: 'approval',
              status: 'completed',
              signalId: sent.kind === 'delivered' ? sent.id : null,
            }),
          ]);
          const outcomes = await store.park([
            park(run, 'n1', { waitingFor: ['approval', 'veto'], steps: [step(run, 0, { status: 'waiting' })] }),
            park(consumed, 'n1', { waitingFor: ['approval'] }),
            park(otherName, 'n1', { waitingFor: ['approval'] }),
          ]);
          expect(outcomes).toEqual(['signalled', 'parked', 'parked']);
          expect(await store.get(run.id)).toMatchObject({ owner: 'n1', waitingFor: [], notBefore: null });
          expect((await store.events(run.id)).map((e) => e.kind)).not.toContain('parked');
          expect((await store.history(run.id)).steps.map((s) => [s.seq, s.status])).toEqual([[0, 'waiting']]);
        },
        timeout,
      );

      it(
        'signal: delivered wakes only a run waiting for that name, with a signalled event; unknown; ended',
        async () => {
          const { store } = await setup();
          const cap = unique('cap');
          const [waiting, other, live, ended] = [0, 1, 2, 3].map(() =>
            workflowRun({ tenantId: 'acme', task: { requires: [cap] } }),
          );
          await store.heartbeat('n1', 60_000);
          await store.insert('n1', [waiting!, other!, live!, ended!]);
          await store.append([ev(ended!, 'timed-out', 'n1')]);
          await store.park([
            park(waiting!, 'n1', { waitingFor: ['approval', 'veto'], notBefore: 1_900_000_000_000_000 }),
            park(other!, 'n1', { waitingFor: ['approval'] }),
          ]);
          const delivered = await store.signal(signalOf(waiting!, 'veto', { tenantId: 'acme', actor: 'bob' }));
          expect(delivered).toEqual({ kind: 'delivered', id: expect.any(Number) as number });
          expect(await store.get(waiting!.id)).toMatchObject({ owner: null, waitingFor: [], notBefore: null });
          expect((await store.events(waiting!.id)).at(-1)).toMatchObject({
            kind: 'signalled',
            nodeId: 'n9',
            at: 1_700_000_004_000,
            detail: { name: 'veto', actor: 'bob' },
          });
          // Another name: stored, but the run waits on.
          expect((await store.signal(signalOf(other!, 'veto'))).kind).toBe('delivered');
          expect(await store.get(other!.id)).toMatchObject({ waitingFor: ['approval'] });
          expect((await store.history(other!.id)).signals.map((g) => g.name)).toEqual(['veto']);
          // A run that is not parked keeps its signal for later.
          expect((await store.signal(signalOf(live!, 'approval'))).kind).toBe('delivered');
          expect(await store.get(live!.id)).toMatchObject({ owner: 'n1', waitingFor: [] });
          // The woken run is claimable at once; the other is not.
          const { runs } = await store.claim({
            nodeId: 'n2',
            limit: 10,
            capabilities: [cap],
            maxRecoveries: 5,
            workflows: true,
          });
          expect(runs.map((r) => r.id)).toEqual([waiting!.id]);

          const before = (await store.events(other!.id)).length;
          expect(await store.signal(signalOf(other!, 'approval', { tenantId: 'globex' }))).toEqual({ kind: 'unknown' });
          expect(await store.signal(signalOf({ id: unique('nobody') }, 'approval'))).toEqual({ kind: 'unknown' });
          // A task's run takes no signals.
          const task = newRun();
          await store.insert('n1', [task]);
          expect(await store.signal(signalOf(task, 'approval'))).toEqual({ kind: 'unknown' });
          expect((await store.history(task.id)).signals).toEqual([]);
          expect((await store.events(task.id)).map((e) => e.kind)).toEqual(['queued']);
          expect(await store.get(other!.id)).toMatchObject({ waitingFor: ['approval'] });
          expect(await store.events(other!.id)).toHaveLength(before);
          expect(await store.signal(signalOf(ended!, 'approval'))).toEqual({ kind: 'ended', status: 'timed-out' });
          expect((await store.history(ended!.id)).signals).toEqual([]);
        },
        timeout,
      );

      it(
        'a park and a signal at the same moment never leave a run parked beside an unconsumed signal it waits for',
        async () => {
          const { store, peer } = await setup();
          const runs = Array.from({ length: 20 }, () => workflowRun());
          await store.insert('n1', runs);
          const outcomes = await Promise.all(
            runs.map(async (run) => {
              const [[parked], sent] = await Promise.all([
                store.park([park(run, 'n1', { waitingFor: ['go'] })]),
                peer.signal(signalOf(run, 'go')),
              ]);
              return { run, parked, sent };
            }),
          );
          for (const { run, parked, sent } of outcomes) {
            expect(sent.kind).toBe('delivered');
            const record = await store.get(run.id);
            // Either the park saw the signal, or the signal came after and woke the parked run.
            if (parked === 'signalled') expect(record).toMatchObject({ owner: 'n1', waitingFor: [] });
            else expect(record).toMatchObject({ owner: null, waitingFor: [], notBefore: null });
          }
        },
        timeout,
      );

      it(
        "history is empty for an unknown run and for another tenant's",
        async () => {
          const { store } = await setup();
          const run = workflowRun({ tenantId: 'acme' });
          await store.insert('n1', [run]);
          await store.checkpoint('n1', [step(run, 0)]);
          await store.signal(signalOf(run, 'approval'));
          expect((await store.history(run.id, 'acme')).steps).toHaveLength(1);
          expect(await store.history(run.id, 'globex')).toEqual({ steps: [], signals: [] });
          expect(await store.history(unique('nobody'))).toEqual({ steps: [], signals: [] });
        },
        timeout,
      );

      it(
        'prune deletes the steps and signals of the runs it deletes',
        async () => {
          const { store } = await setup();
          const [old, kept] = [workflowRun(), workflowRun()];
          await store.insert('n1', [old, kept]);
          for (const run of [old, kept]) {
            await store.signal(signalOf(run, 'approval'));
            await store.checkpoint('n1', [step(run, 0, { status: 'completed', result: 1 })]);
          }
          await store.append([ev(old, 'completed', 'n1', { at: 100 })]);
          expect(await store.prune(1_000, 10)).toBe(1);
          // The same id again starts with no history.
          await store.insert('n1', [{ ...old }]);
          expect(await store.history(old.id)).toEqual({ steps: [], signals: [] });
          const left = await store.history(kept.id);
          expect([left.steps.length, left.signals.length]).toEqual([1, 1]);
        },
        timeout,
      );

      it(
        'refuses bad steps, parks, signals, notBefore and cost with ValidationError, writing nothing',
        async () => {
          const { store } = await setup();
          const run = workflowRun();
          await store.insert('n1', [run]);
          const badSteps: [Partial<StepInput>, string][] = [
            [{ seq: -1 }, 'steps[1].seq'],
            [{ seq: 1.5 }, 'steps[1].seq'],
            [{ kind: 'timer' as never }, 'steps[1].kind'],
            [{ status: 'done' as never }, 'steps[1].status'],
            [{ name: '' }, 'steps[1].name'],
            [{ startedAt: Number.NaN }, 'steps[1].startedAt'],
            [{ endedAt: Number.POSITIVE_INFINITY }, 'steps[1].endedAt'],
            [{ wakeAt: Number.NaN }, 'steps[1].wakeAt'],
            [{ cost: -1 }, 'steps[1].cost'],
          ];
          for (const [bad, field] of badSteps) {
            const error = await rejection(store.checkpoint('n1', [step(run, 0), step(run, 1, bad)]));
            expect(error, field).toBeInstanceOf(ValidationError);
            expect((error as ValidationError).field).toBe(field);
          }
          expect((await store.history(run.id)).steps).toEqual([]);

          const badParks: [Partial<ParkInput>, string][] = [
            [{ waitingFor: [''] }, 'parks[0].waitingFor'],
            [{ notBefore: Number.NaN }, 'parks[0].notBefore'],
            [{ at: Number.NaN }, 'parks[0].at'],
            [{ steps: [step(run, 0, { seq: -1 })] }, 'parks[0].steps[0].seq'],
          ];
          for (const [bad, field] of badParks) {
            const error = await rejection(store.park([park(run, 'n1', bad)]));
            expect(error, field).toBeInstanceOf(ValidationError);
            expect((error as ValidationError).field).toBe(field);
          }
          expect(await store.get(run.id)).toMatchObject({ owner: 'n1', waitingFor: [] });

          const badSignals: [Partial<SignalInput>, string][] = [
            [{ name: '' }, 'name'],
            [{ at: Number.NaN }, 'at'],
            [{ runId: '' }, 'runId'],
          ];
          for (const [bad, field] of badSignals) {
            const error = await rejection(store.signal(signalOf(run, 'approval', bad)));
            expect(error, field).toBeInstanceOf(ValidationError);
            expect((error as ValidationError).field).toBe(field);
          }
          expect((await store.history(run.id)).signals).toEqual([]);

          const late = newRun({ notBefore: Number.NaN });
          expect(await rejection(store.insert('n1', [late]))).toBeInstanceOf(ValidationError);
          expect(await store.get(late.id)).toBeUndefined();
          expect(await rejection(store.append([ev(run, 'completed', 'n1', { cost: Number.NaN })]))).toBeInstanceOf(
            ValidationError,
          );
          expect(await store.get(run.id)).toMatchObject({ status: 'queued', cost: 0 });
        },
        timeout,
      );
    });

    describe('unclaimed', () => {
      it(
        'reports due runs no live node holds, grouped by type and requires; not parked, delayed, held or ended ones',
        async () => {
          const { store, peer, advance } = await setup();
          const type = unique('orphan');
          const cap = unique('cap');
          const now = await storeNow(store);
          await store.heartbeat('alive', 60_000);
          await store.heartbeat('dying', leaseMs);
          const released = [newRun({ type }), newRun({ type })];
          const otherNeeds = newRun({ type, task: { requires: [cap] } });
          const held = newRun({ type });
          const ofDeadNode = newRun({ type });
          const delayed = newRun({ type, notBefore: now + 3_600_000 });
          const ended = newRun({ type });
          const parked = workflowRun({ type: `workflow:${type}` });
          await store.insert('alive', [...released, otherNeeds, held, delayed, ended, parked]);
          await store.insert('dying', [ofDeadNode]);
          await store.append([
            ...[...released, otherNeeds].map((r) => ev(r, 'released', 'alive')),
            ev(ended, 'released', 'alive'),
            ev(ended, 'failed', 'alive', { error: { name: 'Error', message: 'x', code: null } }),
          ]);
          expect(await store.park([park(parked, 'alive', { notBefore: null, waitingFor: ['go'] })])).toEqual([
            'parked',
          ]);
          await advance(leaseMs + 200); // 'dying' stops renewing its lease
          await store.heartbeat('alive', 60_000);
          const mine = async (before: number) =>
            (await peer.unclaimed(before, 1_000)).filter((g) => g.type === type || g.type === `workflow:${type}`);
          const groups = await mine(Infinity);
          expect(groups.map((g) => [g.requires, g.count]).sort()).toEqual(
            [
              [[], 3], // the two released and the dead node's
              [[cap], 1],
            ].sort(),
          );
          for (const g of groups) expect(g.since).toBeGreaterThan(0);
          // Only runs unchanged since before `before`.
          expect(await mine(0)).toEqual([]);
          for (const [call, field] of [
            [() => store.unclaimed(Number.NaN, 10), 'before'],
            [() => store.unclaimed(Infinity, 0), 'limit'],
          ] as const) {
            const error = await rejection(call());
            expect(error).toBeInstanceOf(ValidationError);
            expect((error as ValidationError).field).toBe(field);
          }
        },
        timeout,
      );
    });

    describe('schedule ticks', () => {
      it(
        'keeps the latest tick recorded for each schedule, whichever order nodes record them in',
        async () => {
          const { store, peer } = await setup();
          const [daily, hourly] = [unique('daily'), unique('hourly')];
          expect(await store.lastTick(daily)).toBeUndefined();
          await store.recordTick(daily, 1_700_000_060_000);
          await peer.recordTick(daily, 1_700_000_000_000);
          await peer.recordTick(hourly, 5);
          expect(await store.lastTick(daily)).toBe(1_700_000_060_000);
          expect(await peer.lastTick(hourly)).toBe(5);
          await store.recordTick(daily, 1_700_000_120_000);
          expect(await peer.lastTick(daily)).toBe(1_700_000_120_000);
          for (const [call, field] of [
            [() => store.recordTick('', 1), 'name'],
            [() => store.lastTick(''), 'name'],
            [() => store.recordTick(daily, Number.NaN), 'tickMs'],
          ] as const) {
            const error = await rejection(call());
            expect(error).toBeInstanceOf(ValidationError);
            expect((error as ValidationError).field).toBe(field);
          }
          expect(await store.lastTick(daily)).toBe(1_700_000_120_000);
        },
        timeout,
      );
    });

    describe('prune', () => {
      it(
        'deletes terminal runs that finished before a time, with their events, a batch at a time; never live ones',
        async () => {
          const { store } = await setup();
          const old = [newRun({ idempotencyKey: 'k-old' }), newRun(), newRun()];
          const recent = newRun();
          const live = newRun();
          const running = newRun();
          await store.insert('n1', [...old, recent, live, running]);
          await store.append([
            ev(old[0]!, 'completed', 'n1', { at: 100 }),
            ev(old[1]!, 'failed', 'n1', { at: 200 }),
            ev(old[2]!, 'dead-lettered', 'n1', { at: 300 }),
            ev(recent, 'completed', 'n1', { at: 5_000 }),
            ev(running, 'started', 'n1', { attempt: 1, at: 10 }),
          ]);
          expect(await store.prune(1_000, 2)).toBe(2);
          expect(await store.get(old[0]!.id)).toBeUndefined();
          expect(await store.get(old[1]!.id)).toBeUndefined();
          expect(await store.events(old[0]!.id)).toEqual([]);
          expect(await store.prune(1_000, 10)).toBe(1);
          expect(await store.prune(1_000, 10)).toBe(0);
          const left = (await store.list()).runs.map((r) => r.id).sort();
          expect(left).toEqual([recent.id, live.id, running.id].sort());
          expect(await store.events(recent.id)).toHaveLength(2);
          expect(await store.prune(Number.MAX_SAFE_INTEGER, 100)).toBe(1);
          expect((await store.list()).runs.map((r) => r.id).sort()).toEqual([live.id, running.id].sort());
          expect(await rejection(store.prune(Number.NaN, 10))).toBeInstanceOf(ValidationError);
          expect(await rejection(store.prune(1_000, 0))).toBeInstanceOf(ValidationError);
          // The pruned completed run no longer holds its key.
          expect(await store.insert('n1', [newRun({ idempotencyKey: 'k-old' })])).toEqual([{ kind: 'inserted' }]);
        },
        timeout,
      );
    });
  });
}

/** Waits until `condition` holds (checking every 10 ms), failing after 5 s. */
export async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('the condition did not hold in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
