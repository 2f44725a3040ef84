/**
 * MemoryStore: the {@link RunStore} that keeps everything in this process's memory (nothing survives it). It is the
 * default store, the store of tests, and the model the SQL stores are checked against (test/store/contract.ts), so
 * it does each rule of src/store/store.ts the plainest way, one run at a time.
 */
import { StoreUnavailableError } from '../errors.js';
import {
  checkClaim,
  checkEvents,
  checkLease,
  checkLimit,
  checkTime,
  checkNewRuns,
  checkParks,
  checkScheduleName,
  checkTick,
  stepRecordOf,
  checkSignal,
  checkSteps,
  DEFAULT_PAGE,
  encodeCursor,
  jsonValue,
  listFilters,
  recoveryDeadLetterError,
  terminalStatusOf,
} from './store-support.js';
import {
  isTerminal,
  type ClaimRequest,
  type ClaimResult,
  type InsertOutcome,
  type NewRun,
  type ParkInput,
  type ParkOutcome,
  type RunEvent,
  type RunEventInput,
  type RunPage,
  type RunQuery,
  type RunRecord,
  type WorkflowHistory,
  type RunStore,
  type SignalInput,
  type SignalOutcome,
  type SignalRecord,
  type StepInput,
  type StepRecord,
  type StoredTask,
  type UnclaimedRuns,
} from './store.js';

/** A clock in epoch milliseconds. */
export interface StoreClock {
  /** The current time in epoch milliseconds. */
  now(): number;
}

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /**
   * The store's clock: leases expire, and `updatedAt` and the store's own events are stamped, by it. Tests pass one
   * they move by hand.
   * @default Date
   */
  readonly clock?: StoreClock;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * A {@link RunStore} in this process's memory: fast and not durable (`durable` is false), for a single process's
 * history and for tests. Records handed out are copies (their JSON fields shared: treat them as read-only).
 *
 * @example
 * ```ts
 * const store = new MemoryStore();
 * await store.open();
 * await store.insert('node-1', [run]);
 * ```
 */
export class MemoryStore implements RunStore {
  /** Always `memory`. */
  readonly kind = 'memory';
  /** Always false: nothing outlives the process. */
  readonly durable = false;

  readonly #clock: StoreClock;
  readonly #runs = new Map<string, Mutable<RunRecord>>();
  readonly #events = new Map<string, RunEvent[]>();
  readonly #leases = new Map<string, number>();
  readonly #steps = new Map<string, Map<number, StepRecord>>();
  readonly #signals = new Map<string, Mutable<SignalRecord>[]>();
  readonly #ticks = new Map<string, number>();
  #signalSeq = 0;
  readonly #listeners = new Set<(ids: readonly string[]) => void>();
  #seq = 0;
  #open = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.#clock = options.clock ?? Date;
  }

  /** Makes the store usable (again, after `close()`: what it held is still there). */
  async open(): Promise<void> {
    this.#open = true;
  }

  /** Makes the store refuse calls (StoreUnavailableError) until `open()`; what it holds stays. */
  async close(): Promise<void> {
    this.#open = false;
    this.#listeners.clear();
  }

  async insert(nodeId: string, runs: readonly NewRun[]): Promise<InsertOutcome[]> {
    this.#check('insert');
    checkNewRuns(runs);
    return runs.map((run): InsertOutcome => {
      const existing =
        this.#runs.get(run.id) ??
        (run.idempotencyKey === null ? undefined : this.#holderOf(run.tenantId, run.idempotencyKey));
      if (existing) return { kind: 'duplicate', existing: copy(existing) };
      const task = jsonValue(run.task) as StoredTask;
      this.#runs.set(run.id, {
        id: run.id,
        type: run.type,
        tenantId: run.tenantId,
        idempotencyKey: run.idempotencyKey,
        status: 'queued',
        task,
        attempts: 0,
        recoveries: 0,
        owner: run.notBefore == null ? nodeId : null,
        result: null,
        error: null,
        createdAt: run.createdAt,
        updatedAt: run.createdAt,
        finishedAt: null,
        notBefore: run.notBefore ?? null,
        waitingFor: [],
        cost: 0,
        agentId: null,
      });
      this.#record({ runId: run.id, at: run.createdAt, kind: 'queued', nodeId });
      return { kind: 'inserted' };
    });
  }

  async append(events: readonly RunEventInput[]): Promise<void> {
    this.#check('append');
    checkEvents(events);
    const finished: string[] = [];
    for (const event of events) {
      const run = this.#runs.get(event.runId);
      if (!run) continue; // Unknown (or pruned): nothing to record it against.
      const terminal = terminalStatusOf(event.kind);
      if (terminal) {
        if (isTerminal(run.status)) continue; // The first end won; later ones are not even recorded.
        run.status = terminal;
        run.result = terminal === 'completed' ? jsonValue(event.result ?? null) : null;
        run.error = terminal === 'completed' ? null : (event.error ?? null);
        run.finishedAt = event.at;
        run.cost = event.cost ?? 0;
        run.agentId = event.agentId ?? null;
        run.notBefore = null;
        run.waitingFor = [];
        run.updatedAt = this.#clock.now();
        finished.push(run.id);
      } else if (run.owner === event.nodeId && !isTerminal(run.status)) {
        if (event.kind === 'started') {
          run.status = 'running';
          run.attempts = event.attempt ?? run.attempts;
        } else {
          run.status = 'queued';
          if (event.kind === 'released') run.owner = null;
        }
        run.updatedAt = this.#clock.now();
      }
      this.#record(event);
    }
    this.#announce(finished);
  }

  async heartbeat(nodeId: string, leaseMs: number): Promise<void> {
    this.#check('heartbeat');
    checkLease(leaseMs);
    this.#leases.set(nodeId, this.#clock.now() + leaseMs);
  }

  async claim(request: ClaimRequest): Promise<ClaimResult> {
    this.#check('claim');
    checkClaim(request.limit, request.maxRecoveries);
    const now = this.#clock.now();
    const capabilities = new Set(request.capabilities);
    const candidates = [...this.#runs.values()]
      .filter(
        (run) =>
          !isTerminal(run.status) &&
          run.type.startsWith('workflow:') === (request.workflows === true) &&
          isDue(run, now) &&
          (request.from === undefined || run.owner === request.from) &&
          (run.owner === null || !((this.#leases.get(run.owner) ?? -Infinity) > now)) &&
          ((request.anyCapabilities === true && request.from !== undefined) ||
            run.task.requires.every((capability) => capabilities.has(capability))),
      )
      .sort((a, b) => b.task.priority - a.task.priority || a.createdAt - b.createdAt || compare(a.id, b.id));
    const runs: RunRecord[] = [];
    const deadLettered: RunRecord[] = [];
    for (const run of candidates) {
      if (runs.length >= request.limit) break;
      const from = run.owner;
      run.updatedAt = now;
      if (from !== null) {
        run.recoveries += 1;
        if (run.recoveries >= Math.max(request.maxRecoveries, run.task.maxAttempts)) {
          run.status = 'dead-lettered';
          run.owner = request.nodeId;
          run.error = recoveryDeadLetterError(run.recoveries);
          run.finishedAt = now;
          this.#record({
            runId: run.id,
            at: now,
            kind: 'dead-lettered',
            nodeId: request.nodeId,
            error: run.error,
            detail: { from, recoveries: run.recoveries },
          });
          deadLettered.push(copy(run));
          continue;
        }
      }
      run.owner = request.nodeId;
      run.status = 'queued';
      run.notBefore = null;
      run.waitingFor = [];
      this.#record({ runId: run.id, at: now, kind: 'adopted', nodeId: request.nodeId, detail: { from } });
      runs.push(copy(run));
    }
    this.#announce(deadLettered.map((run) => run.id));
    return { runs, deadLettered };
  }

  async leave(nodeId: string): Promise<void> {
    this.#check('leave');
    this.#leases.delete(nodeId);
    const now = this.#clock.now();
    for (const run of this.#runs.values()) {
      if (run.owner !== nodeId || isTerminal(run.status)) continue;
      run.owner = null;
      run.status = 'queued';
      run.updatedAt = now;
      this.#record({ runId: run.id, at: now, kind: 'released', nodeId });
    }
  }

  async get(id: string, tenantId?: string): Promise<RunRecord | undefined> {
    this.#check('get');
    const run = this.#visible(id, tenantId);
    return run && copy(run);
  }

  async getMany(ids: readonly string[]): Promise<RunRecord[]> {
    this.#check('getMany');
    return [...new Set(ids)].flatMap((id) => {
      const run = this.#runs.get(id);
      return run ? [copy(run)] : [];
    });
  }

  async events(id: string, tenantId?: string): Promise<RunEvent[]> {
    this.#check('events');
    if (!this.#visible(id, tenantId)) return [];
    return (this.#events.get(id) ?? []).map((event) => ({ ...event }));
  }

  async list(query?: RunQuery): Promise<RunPage> {
    this.#check('list');
    const f = listFilters(query);
    const matching = [...this.#runs.values()]
      .filter(
        (run) =>
          (f.tenantId === undefined || run.tenantId === f.tenantId) &&
          (f.type === undefined || run.type === f.type) &&
          (f.idempotencyKey === undefined || run.idempotencyKey === f.idempotencyKey) &&
          (f.statuses === undefined || f.statuses.includes(run.status)) &&
          (f.since === undefined || run.createdAt >= f.since) &&
          (f.until === undefined || run.createdAt < f.until) &&
          (f.after === undefined ||
            run.createdAt < f.after.createdAt ||
            (run.createdAt === f.after.createdAt && compare(run.id, f.after.id) < 0)),
      )
      .sort((a, b) => b.createdAt - a.createdAt || compare(b.id, a.id));
    const runs = matching.slice(0, f.limit).map(copy);
    const last = runs[runs.length - 1];
    return { runs, cursor: matching.length > f.limit && last ? encodeCursor(last) : null };
  }

  async deadLetters(tenantId?: string, limit = DEFAULT_PAGE): Promise<RunRecord[]> {
    this.#check('deadLetters');
    checkLimit(limit);
    return [...this.#runs.values()]
      .filter((run) => run.status === 'dead-lettered' && (tenantId === undefined || run.tenantId === tenantId))
      .sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0) || compare(a.id, b.id))
      .slice(0, limit)
      .map(copy);
  }

  async onFinished(listener: (ids: readonly string[]) => void): Promise<() => Promise<void>> {
    this.#check('onFinished');
    // Wrapped, so that the same function registered twice is called twice and each stop ends its own.
    const own = (ids: readonly string[]): void => listener(ids);
    this.#listeners.add(own);
    return async () => {
      this.#listeners.delete(own);
    };
  }

  async prune(before: number, limit: number): Promise<number> {
    this.#check('prune');
    checkLimit(limit);
    checkTime(before, 'before');
    const old = [...this.#runs.values()]
      .filter((run) => isTerminal(run.status) && run.finishedAt !== null && run.finishedAt < before)
      .sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0) || compare(a.id, b.id))
      .slice(0, limit);
    for (const run of old) {
      this.#runs.delete(run.id);
      this.#events.delete(run.id);
      this.#steps.delete(run.id);
      this.#signals.delete(run.id);
    }
    return old.length;
  }

  async checkpoint(nodeId: string, steps: readonly StepInput[]): Promise<string[]> {
    this.#check('checkpoint');
    checkSteps(steps);
    const refused = new Set<string>();
    for (const step of steps) {
      const run = this.#runs.get(step.runId);
      if (!run || run.owner !== nodeId || isTerminal(run.status)) {
        refused.add(step.runId);
        continue;
      }
      this.#writeStep(step);
    }
    return [...refused];
  }

  async park(parks: readonly ParkInput[]): Promise<ParkOutcome[]> {
    this.#check('park');
    checkParks(parks);
    return parks.map((park): ParkOutcome => {
      const run = this.#runs.get(park.runId);
      if (!run || run.owner !== park.nodeId || isTerminal(run.status)) return 'lost';
      for (const step of park.steps) this.#writeStep(step);
      const waited = new Set(park.waitingFor);
      if ((this.#signals.get(run.id) ?? []).some((sig) => sig.consumedBy === null && waited.has(sig.name))) {
        return 'signalled';
      }
      run.owner = null;
      run.status = 'queued';
      run.notBefore = park.notBefore;
      run.waitingFor = [...park.waitingFor];
      run.updatedAt = this.#clock.now();
      this.#record({
        runId: run.id,
        at: park.at,
        kind: 'parked',
        nodeId: park.nodeId,
        detail: { notBefore: park.notBefore, waitingFor: [...park.waitingFor] },
      });
      return 'parked';
    });
  }

  async signal(signal: SignalInput): Promise<SignalOutcome> {
    this.#check('signal');
    checkSignal(signal);
    const run = this.#visible(signal.runId, signal.tenantId);
    if (!run || !run.type.startsWith('workflow:')) return { kind: 'unknown' };
    if (isTerminal(run.status)) return { kind: 'ended', status: run.status };
    const record: Mutable<SignalRecord> = {
      id: ++this.#signalSeq,
      runId: run.id,
      name: signal.name,
      payload: jsonValue(signal.payload ?? null),
      actor: signal.actor,
      at: signal.at,
      consumedBy: null,
    };
    const list = this.#signals.get(run.id);
    if (list) list.push(record);
    else this.#signals.set(run.id, [record]);
    if (run.waitingFor.includes(signal.name)) {
      run.waitingFor = [];
      run.notBefore = null;
      run.updatedAt = this.#clock.now();
    }
    this.#record({
      runId: run.id,
      at: signal.at,
      kind: 'signalled',
      nodeId: signal.nodeId,
      detail: { name: signal.name, actor: signal.actor, signalId: record.id },
    });
    return { kind: 'delivered', id: record.id };
  }

  async history(runId: string, tenantId?: string): Promise<WorkflowHistory> {
    this.#check('history');
    if (!this.#visible(runId, tenantId)) return { steps: [], signals: [] };
    const steps = [...(this.#steps.get(runId)?.values() ?? [])].sort((a, b) => a.seq - b.seq).map((s) => ({ ...s }));
    const signals = (this.#signals.get(runId) ?? []).map((sig) => ({ ...sig }));
    return { steps, signals };
  }

  async unclaimed(before: number, limit: number): Promise<UnclaimedRuns[]> {
    this.#check('unclaimed');
    checkTime(before, 'before');
    checkLimit(limit);
    const now = this.#clock.now();
    const groups = new Map<string, Mutable<UnclaimedRuns>>();
    for (const run of this.#runs.values()) {
      if (isTerminal(run.status) || !isDue(run, now) || run.updatedAt >= before) continue;
      if (run.owner !== null && (this.#leases.get(run.owner) ?? -Infinity) > now) continue;
      const key = JSON.stringify([run.type, run.task.requires]);
      const group = groups.get(key);
      if (group) {
        group.count++;
        group.since = Math.min(group.since, run.updatedAt);
      } else {
        groups.set(key, { type: run.type, requires: [...run.task.requires], count: 1, since: run.updatedAt });
      }
    }
    return [...groups.values()].sort((a, b) => a.since - b.since || compare(a.type, b.type)).slice(0, limit);
  }

  async lastTick(name: string): Promise<number | undefined> {
    this.#check('lastTick');
    checkScheduleName(name);
    return this.#ticks.get(name);
  }

  async recordTick(name: string, tickMs: number): Promise<void> {
    this.#check('recordTick');
    checkScheduleName(name);
    checkTick(tickMs);
    this.#ticks.set(name, Math.max(tickMs, this.#ticks.get(name) ?? -Infinity));
  }

  /** Upserts one step, keeping an ended one; consumes the signal it names. */
  #writeStep(step: StepInput): void {
    let steps = this.#steps.get(step.runId);
    if (!steps) this.#steps.set(step.runId, (steps = new Map<number, StepRecord>()));
    const existing = steps.get(step.seq);
    if (existing && (existing.status === 'completed' || existing.status === 'failed')) return;
    steps.set(step.seq, stepRecordOf(step));
    if (step.signalId != null) {
      const signal = this.#signals.get(step.runId)?.find((sig) => sig.id === step.signalId);
      if (signal && signal.consumedBy === null) signal.consumedBy = step.seq;
    }
  }

  #check(operation: string): void {
    if (!this.#open) throw new StoreUnavailableError(operation, 'the store is not open: call open() first');
  }

  /** The run with `id`, unless `tenantId` is given and the run is another tenant's. */
  #visible(id: string, tenantId: string | undefined): Mutable<RunRecord> | undefined {
    const run = this.#runs.get(id);
    return run && (tenantId === undefined || run.tenantId === tenantId) ? run : undefined;
  }

  /** The live or completed run holding `key` for `tenantId` (no tenant and the empty tenant are one). */
  #holderOf(tenantId: string | null, key: string): RunRecord | undefined {
    for (const run of this.#runs.values()) {
      if (
        run.idempotencyKey === key &&
        (run.tenantId ?? '') === (tenantId ?? '') &&
        (!isTerminal(run.status) || run.status === 'completed')
      ) {
        return run;
      }
    }
    return undefined;
  }

  #record(
    event: RunEventInput | (Omit<RunEventInput, 'kind'> & { kind: 'queued' | 'adopted' | 'parked' | 'signalled' }),
  ): void {
    const entry: RunEvent = {
      runId: event.runId,
      seq: ++this.#seq,
      at: event.at,
      kind: event.kind,
      attempt: event.attempt ?? null,
      agentId: event.agentId ?? null,
      nodeId: event.nodeId,
      error: event.error ?? null,
      detail: (jsonValue(event.detail ?? null) as RunEvent['detail']) ?? null,
    };
    const timeline = this.#events.get(event.runId);
    if (timeline) timeline.push(entry);
    else this.#events.set(event.runId, [entry]);
  }

  /** Tells the listeners, after the caller's turn, which runs ended. */
  #announce(ids: readonly string[]): void {
    if (ids.length === 0 || this.#listeners.size === 0) return;
    const listeners = [...this.#listeners];
    queueMicrotask(() => {
      for (const listener of listeners) {
        try {
          listener(ids);
        } catch {
          // A listener's failure is its own; the others are still told.
        }
      }
    });
  }
}

function copy(run: RunRecord): RunRecord {
  return { ...run, waitingFor: [...run.waitingFor] };
}

/** Whether a live run may be claimed now: not before its time, and not while it waits for a signal with no time. */
function isDue(run: RunRecord, now: number): boolean {
  if (run.notBefore !== null) return run.notBefore <= now;
  return run.waitingFor.length === 0;
}

/** Compares strings by code unit, as PostgreSQL's `C` collation does for ASCII ids. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
