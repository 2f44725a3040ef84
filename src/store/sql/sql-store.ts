/**
 * The RunStore over SQL, written once for both PostgreSQL forms: PostgresStore (a server, through `pg`) and
 * PGliteStore (embedded) extend it and only say how to connect (an {@link SqlExecutor}). The schema and its
 * functions are in src/store/migrations.ts; each store operation here is one statement or one transaction.
 *
 * Errors: a driver error that says the database cannot be reached becomes StoreUnavailableError naming the
 * operation (src/store/sql/errors.ts); a deadlock or serialization failure is retried (the transaction was rolled
 * back, so running it again is safe); anything else (a bug in the SQL, a constraint) passes through as it is.
 */
import { StoreUnavailableError } from '../../errors.js';
import { channelOf, checkSchemaName, claimable, dueAt, migrate, schemaNames, type SchemaNames } from '../migrations.js';
import {
  checkClaim,
  checkEvents,
  checkLease,
  checkLimit,
  checkTime,
  checkNewRuns,
  checkParks,
  checkSignal,
  checkScheduleName,
  checkSteps,
  checkTick,
  stepRecordOf,
  DEFAULT_PAGE,
  encodeCursor,
  jsonValue,
  listFilters,
  recoveryDeadLetterMessage,
} from '../store-support.js';
import type {
  UnclaimedRuns,
  ClaimRequest,
  ClaimResult,
  InsertOutcome,
  NewRun,
  ParkInput,
  ParkOutcome,
  RunEvent,
  RunEventInput,
  RunPage,
  RunQuery,
  RunRecord,
  RunStore,
  SignalInput,
  SignalOutcome,
  SignalRecord,
  StepInput,
  StepRecord,
  TerminalRunStatus,
  WorkflowHistory,
} from '../store.js';
import { isRetryable, isUnavailable, reasonOf } from './errors.js';
import type { SqlExecutor } from './executor.js';

/** The default schema of the SQL stores. */
export const DEFAULT_SCHEMA = 'unified_orchestrator';

/** How often a transaction that hit a deadlock or serialization failure runs again. */
const RETRIES = 3;

/** A row of `runs` as the queries below name its columns (RUN_COLUMNS); bigints may come as strings. */
interface RunRow extends Omit<
  RunRecord,
  'attempts' | 'recoveries' | 'createdAt' | 'updatedAt' | 'finishedAt' | 'notBefore' | 'waitingFor' | 'cost'
> {
  attempts: number | string;
  recoveries: number | string;
  createdAt: number | string | bigint;
  updatedAt: number | string | bigint;
  finishedAt: number | string | bigint | null;
  notBefore: number | string | bigint | null;
  waitingFor: readonly string[] | null;
  cost: number | string;
}

/** The columns of `runs` under the names of RunRecord. */
const RUN_COLUMNS = `id, type, tenant_id AS "tenantId", idempotency_key AS "idempotencyKey", status, task, attempts,
  recoveries, owner, result, error, created_at AS "createdAt", updated_at AS "updatedAt", finished_at AS "finishedAt",
  not_before AS "notBefore", waiting_for AS "waitingFor", cost, agent_id AS "agentId"`;

/** A row of `run_events`, as EVENT_COLUMNS names its columns. */
interface EventRow extends Omit<RunEvent, 'seq' | 'at'> {
  seq: number | string | bigint;
  at: number | string | bigint;
}

const EVENT_COLUMNS = `e.run_id AS "runId", e.seq, e.at, e.kind, e.attempt, e.agent_id AS "agentId",
  e.node_id AS "nodeId", e.error, e.detail`;

function toRun(row: RunRow): RunRecord {
  return {
    ...row,
    result: row.result ?? null,
    error: row.error ?? null,
    attempts: Number(row.attempts),
    recoveries: Number(row.recoveries),
    createdAt: Number(row.createdAt),
    updatedAt: Number(row.updatedAt),
    finishedAt: row.finishedAt === null ? null : Number(row.finishedAt),
    notBefore: row.notBefore === null ? null : Number(row.notBefore),
    waitingFor: [...(row.waitingFor ?? [])],
    cost: Number(row.cost),
    agentId: row.agentId ?? null,
  };
}

/** A time as the SQL stores hold it: whole milliseconds (the checks keep it within ±2^53). */
function ms(value: number): number;
function ms(value: number | null | undefined): number | null;
function ms(value: number | null | undefined): number | null {
  return value === null || value === undefined ? null : Math.round(value);
}

/** A step as `write_steps` reads it. */
function stepInput(step: StepInput, ord: number): Record<string, unknown> {
  const record = stepRecordOf(step);
  return {
    ord,
    ...record,
    error: jsonValue(record.error),
    startedAt: ms(step.startedAt),
    endedAt: ms(step.endedAt),
    wakeAt: ms(step.wakeAt),
    signalId: step.signalId ?? null,
  };
}

function toEvent(row: EventRow): RunEvent {
  return { ...row, seq: Number(row.seq), at: Number(row.at), error: row.error ?? null, detail: row.detail ?? null };
}

/** Options both SQL stores take. */
export interface SqlStoreOptions {
  /**
   * The PostgreSQL schema holding the store's tables, made by the migrations when missing: a lower-case identifier
   * of at most 48 characters. Two stores with different schemas in one database share nothing.
   * @default 'unified_orchestrator'
   */
  readonly schema?: string;
}

/**
 * A {@link RunStore} on PostgreSQL, whichever way it is reached. Not used directly: see PostgresStore and
 * PGliteStore.
 */
export abstract class SqlRunStore implements RunStore {
  abstract readonly kind: string;
  /** True: what it holds is in the database. */
  readonly durable = true;
  /** The schema holding the store's tables. */
  readonly schema: string;

  readonly #names: SchemaNames;
  readonly #channel: string;
  #executor: SqlExecutor | undefined;
  #opening: Promise<SqlExecutor> | undefined;
  readonly #listeners = new Set<(ids: readonly string[]) => void>();
  #unlisten: Promise<() => Promise<void>> | undefined;

  protected constructor(options: SqlStoreOptions) {
    this.schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA);
    this.#names = schemaNames(this.schema, recoveryDeadLetterMessage('%s'));
    this.#channel = channelOf(this.schema);
  }

  /**
   * Connects to the database (the executor).
   * @internal
   */
  protected abstract connect(): Promise<SqlExecutor>;

  async open(): Promise<void> {
    if (this.#executor) return;
    this.#opening ??= this.#connectAndMigrate().finally(() => {
      this.#opening = undefined;
    });
    this.#executor = await this.#opening;
  }

  async #connectAndMigrate(): Promise<SqlExecutor> {
    const executor = await this.#unavailable('open', () => this.connect());
    try {
      await this.#unavailable('open', () => executor.transaction((tx) => migrate(tx, this.schema, this.#names)));
      return executor;
    } catch (error) {
      await executor.close().catch(() => undefined);
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.#opening?.catch(() => undefined);
    const executor = this.#executor;
    if (!executor) return;
    this.#executor = undefined;
    this.#listeners.clear();
    const unlisten = this.#unlisten;
    this.#unlisten = undefined;
    if (unlisten) await unlisten.then((stop) => stop()).catch(() => undefined);
    await executor.close();
  }

  async insert(nodeId: string, runs: readonly NewRun[]): Promise<InsertOutcome[]> {
    this.#ready('insert');
    checkNewRuns(runs);
    if (runs.length === 0) return [];
    const input = runs.map((run, ord) => ({
      ord,
      id: run.id,
      type: run.type,
      tenantId: run.tenantId,
      idempotencyKey: run.idempotencyKey,
      task: jsonValue(run.task),
      createdAt: run.createdAt,
      notBefore: ms(run.notBefore),
    }));
    const rows = await this.#run('insert', (executor) =>
      executor.query<RunRow & { dupOrd: number }>(
        `SELECT d.dup_ord AS "dupOrd", ${RUN_COLUMNS}
         FROM ${this.#names.s}.insert_runs($1, $2::text::jsonb) d,
           jsonb_populate_record(NULL::${this.#names.s}.runs, d.existing) r`,
        [nodeId, JSON.stringify(input)],
      ),
    );
    const outcomes: InsertOutcome[] = runs.map(() => ({ kind: 'inserted' }));
    for (const { dupOrd, ...row } of rows) outcomes[dupOrd] = { kind: 'duplicate', existing: toRun(row) };
    return outcomes;
  }

  async append(events: readonly RunEventInput[]): Promise<void> {
    this.#ready('append');
    checkEvents(events);
    if (events.length === 0) return;
    const input = events.map((event, ord) => ({
      ord,
      runId: event.runId,
      kind: event.kind,
      at: event.at,
      nodeId: event.nodeId,
      attempt: event.attempt ?? null,
      agentId: event.agentId ?? null,
      error: jsonValue(event.error ?? null),
      detail: jsonValue(event.detail ?? null),
      result: event.kind === 'completed' ? jsonValue(event.result ?? null) : null,
      cost: event.cost ?? 0,
    }));
    await this.#run('append', (executor) =>
      executor.query(`SELECT ${this.#names.s}.append_events($1::text::jsonb)`, [JSON.stringify(input)]),
    );
  }

  async heartbeat(nodeId: string, leaseMs: number): Promise<void> {
    checkLease(leaseMs);
    await this.#run('heartbeat', (executor) =>
      executor.query(
        `INSERT INTO ${this.#names.s}.nodes (id, lease_until) VALUES ($1, ${this.#names.s}.now_ms() + $2::bigint)
         ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until`,
        [nodeId, Math.ceil(leaseMs)],
      ),
    );
  }

  async claim(request: ClaimRequest): Promise<ClaimResult> {
    checkClaim(request.limit, request.maxRecoveries);
    const rows = await this.#run('claim', (executor) =>
      executor.query<RunRow & { dead: boolean }>(
        `SELECT c.dead, ${RUN_COLUMNS}
         FROM ${this.#names.s}.claim_runs($1, $2::integer, $3::text[], $4::integer, $5::text, $6::boolean) c,
           jsonb_populate_record(NULL::${this.#names.s}.runs, c.run) r`,
        [
          request.nodeId,
          request.limit,
          request.anyCapabilities === true && request.from !== undefined ? null : [...request.capabilities],
          request.maxRecoveries,
          request.from ?? null,
          request.workflows === true,
        ],
      ),
    );
    const runs: RunRecord[] = [];
    const deadLettered: RunRecord[] = [];
    for (const { dead, ...row } of rows) (dead ? deadLettered : runs).push(toRun(row));
    return { runs, deadLettered };
  }

  async leave(nodeId: string): Promise<void> {
    await this.#run('leave', (executor) => executor.query(`SELECT ${this.#names.s}.leave_node($1)`, [nodeId]));
  }

  async get(id: string, tenantId?: string): Promise<RunRecord | undefined> {
    const rows = await this.#run('get', (executor) =>
      executor.query<RunRow>(
        `SELECT ${RUN_COLUMNS} FROM ${this.#names.s}.runs WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2::text)`,
        [id, tenantId ?? null],
      ),
    );
    return rows[0] && toRun(rows[0]);
  }

  async getMany(ids: readonly string[]): Promise<RunRecord[]> {
    this.#ready('getMany');
    if (ids.length === 0) return [];
    const rows = await this.#run('getMany', (executor) =>
      executor.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM ${this.#names.s}.runs WHERE id = ANY ($1::text[])`, [
        [...new Set(ids)],
      ]),
    );
    return rows.map(toRun);
  }

  async events(id: string, tenantId?: string): Promise<RunEvent[]> {
    const rows = await this.#run('events', (executor) =>
      executor.query<EventRow>(
        `SELECT ${EVENT_COLUMNS} FROM ${this.#names.s}.run_events e JOIN ${this.#names.s}.runs r ON r.id = e.run_id
         WHERE e.run_id = $1 AND ($2::text IS NULL OR r.tenant_id = $2::text) ORDER BY e.seq`,
        [id, tenantId ?? null],
      ),
    );
    return rows.map(toEvent);
  }

  async list(query?: RunQuery): Promise<RunPage> {
    const f = listFilters(query);
    const params: unknown[] = [];
    const where: string[] = [];
    const param = (value: unknown): string => `$${params.push(value)}`;
    if (f.tenantId !== undefined) where.push(`tenant_id = ${param(f.tenantId)}::text`);
    if (f.type !== undefined) where.push(`type = ${param(f.type)}::text`);
    if (f.idempotencyKey !== undefined) where.push(`idempotency_key = ${param(f.idempotencyKey)}::text`);
    if (f.statuses !== undefined) where.push(`status = ANY (${param([...f.statuses])}::text[])`);
    if (f.since !== undefined) where.push(`created_at >= ${param(f.since)}::bigint`);
    if (f.until !== undefined) where.push(`created_at < ${param(f.until)}::bigint`);
    if (f.after !== undefined) {
      where.push(`(created_at, id) < (${param(f.after.createdAt)}::bigint, ${param(f.after.id)}::text)`);
    }
    const sql =
      `SELECT ${RUN_COLUMNS} FROM ${this.#names.s}.runs` +
      (where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '') +
      ` ORDER BY created_at DESC, id DESC LIMIT ${f.limit + 1}`;
    const rows = await this.#run('list', (executor) => executor.query<RunRow>(sql, params));
    const runs = rows.slice(0, f.limit).map(toRun);
    const last = runs[runs.length - 1];
    return { runs, cursor: rows.length > f.limit && last ? encodeCursor(last) : null };
  }

  async deadLetters(tenantId?: string, limit = DEFAULT_PAGE): Promise<RunRecord[]> {
    checkLimit(limit);
    const rows = await this.#run('deadLetters', (executor) =>
      executor.query<RunRow>(
        `SELECT ${RUN_COLUMNS} FROM ${this.#names.s}.runs WHERE status = 'dead-lettered' AND ($1::text IS NULL OR tenant_id = $1::text)
         ORDER BY finished_at, id LIMIT $2::integer`,
        [tenantId ?? null, limit],
      ),
    );
    return rows.map(toRun);
  }

  async onFinished(listener: (ids: readonly string[]) => void): Promise<() => Promise<void>> {
    const executor = this.#ready('onFinished');
    const own = (ids: readonly string[]): void => listener(ids);
    this.#listeners.add(own);
    if (!this.#unlisten) {
      const listening = executor.listen(this.#channel, (payload) => this.#deliver(payload));
      this.#unlisten = listening;
      listening.catch(() => {
        if (this.#unlisten === listening) this.#unlisten = undefined;
      });
    }
    try {
      await this.#unavailable('onFinished', () => this.#unlisten!);
    } catch (error) {
      this.#listeners.delete(own);
      throw error;
    }
    return async () => {
      if (!this.#listeners.delete(own) || this.#listeners.size > 0) return;
      const unlisten = this.#unlisten;
      this.#unlisten = undefined;
      if (unlisten) await unlisten.then((stop) => stop()).catch(() => undefined);
    };
  }

  async prune(before: number, limit: number): Promise<number> {
    checkLimit(limit);
    checkTime(before, 'before');
    const rows = await this.#run('prune', (executor) =>
      executor.query<{ n: number | string }>(
        `WITH doomed AS (
           SELECT id FROM ${this.#names.s}.runs
           WHERE status IN ('completed', 'failed', 'cancelled', 'timed-out', 'dead-lettered') AND finished_at < $1::bigint
           ORDER BY finished_at, id LIMIT $2::integer FOR UPDATE SKIP LOCKED
         ), gone AS (
           DELETE FROM ${this.#names.s}.runs WHERE id IN (SELECT id FROM doomed) RETURNING 1
         )
         SELECT count(*) AS n FROM gone`,
        [Math.min(before, Number.MAX_SAFE_INTEGER), limit],
      ),
    );
    return Number(rows[0]?.n ?? 0);
  }

  async checkpoint(nodeId: string, steps: readonly StepInput[]): Promise<string[]> {
    this.#ready('checkpoint');
    checkSteps(steps);
    if (steps.length === 0) return [];
    const rows = await this.#run('checkpoint', (executor) =>
      executor.query<{ refused: string[] }>(
        `SELECT ${this.#names.s}.checkpoint_steps($1, $2::text::jsonb) AS refused`,
        [nodeId, JSON.stringify(steps.map(stepInput))],
      ),
    );
    return [...(rows[0]?.refused ?? [])];
  }

  async park(parks: readonly ParkInput[]): Promise<ParkOutcome[]> {
    this.#ready('park');
    checkParks(parks);
    if (parks.length === 0) return [];
    const input = parks.map((park, ord) => ({
      ord,
      runId: park.runId,
      nodeId: park.nodeId,
      at: ms(park.at),
      notBefore: ms(park.notBefore),
      waitingFor: [...park.waitingFor],
      steps: park.steps.map(stepInput),
    }));
    const rows = await this.#run('park', (executor) =>
      executor.query<{ outcomes: ParkOutcome[] }>(`SELECT ${this.#names.s}.park_runs($1::text::jsonb) AS outcomes`, [
        JSON.stringify(input),
      ]),
    );
    return [...(rows[0]?.outcomes ?? [])];
  }

  async signal(signal: SignalInput): Promise<SignalOutcome> {
    this.#ready('signal');
    checkSignal(signal);
    const rows = await this.#run('signal', (executor) =>
      executor.query<{ outcome: string; signalId: number | string | null; status: TerminalRunStatus | null }>(
        `SELECT outcome, signal_id AS "signalId", run_status AS status
         FROM ${this.#names.s}.signal_run($1, $2::text, $3, $4::text::jsonb, $5::text, $6::bigint, $7)`,
        [
          signal.runId,
          signal.tenantId ?? null,
          signal.name,
          JSON.stringify(jsonValue(signal.payload ?? null)),
          signal.actor,
          ms(signal.at),
          signal.nodeId,
        ],
      ),
    );
    const row = rows[0];
    if (row?.outcome === 'delivered') return { kind: 'delivered', id: Number(row.signalId) };
    if (row?.outcome === 'ended' && row.status !== null) return { kind: 'ended', status: row.status };
    return { kind: 'unknown' };
  }

  async history(runId: string, tenantId?: string): Promise<WorkflowHistory> {
    // One statement (one snapshot), the records built as JSON: bigints come back as JSON numbers.
    const rows = await this.#run('history', (executor) =>
      executor.query<{ steps: StepRecord[]; signals: SignalRecord[] }>(
        `SELECT
           (SELECT coalesce(jsonb_agg(jsonb_build_object(
              'runId', t.run_id, 'seq', t.seq, 'name', t.name, 'kind', t.kind, 'status', t.status,
              'result', t.result, 'error', t.error, 'cost', t.cost, 'childId', t.child_id, 'agentId', t.agent_id,
              'attempts', t.attempts, 'startedAt', t.started_at, 'endedAt', t.ended_at, 'wakeAt', t.wake_at)
              ORDER BY t.seq), '[]')
            FROM ${this.#names.s}.steps t WHERE t.run_id = r.id) AS steps,
           (SELECT coalesce(jsonb_agg(jsonb_build_object(
              'id', g.id, 'runId', g.run_id, 'name', g.name, 'payload', g.payload, 'actor', g.actor, 'at', g.at,
              'consumedBy', g.consumed_by)
              ORDER BY g.id), '[]')
            FROM ${this.#names.s}.signals g WHERE g.run_id = r.id) AS signals
         FROM ${this.#names.s}.runs r WHERE r.id = $1 AND ($2::text IS NULL OR r.tenant_id = $2::text)`,
        [runId, tenantId ?? null],
      ),
    );
    const row = rows[0];
    return { steps: row?.steps ?? [], signals: row?.signals ?? [] };
  }

  async unclaimed(before: number, limit: number): Promise<UnclaimedRuns[]> {
    checkTime(before, 'before');
    checkLimit(limit);
    const s = this.#names.s;
    const rows = await this.#run('unclaimed', (executor) =>
      executor.query<{ type: string; requires: string[]; count: number; since: number | string }>(
        `SELECT x.type, x.requires, count(*)::integer AS count, min(x.updated_at) AS since
         FROM ${s}.runs x
         WHERE x.status IN ('queued', 'running') AND ${claimable('x.')} AND (${dueAt('x.')}) <= ${s}.now_ms()
           AND x.updated_at < $1::bigint
           AND (x.owner IS NULL
                OR NOT EXISTS (SELECT 1 FROM ${s}.nodes n WHERE n.id = x.owner AND n.lease_until > ${s}.now_ms()))
         GROUP BY x.type, x.requires
         ORDER BY since, x.type
         LIMIT $2::integer`,
        [before === Infinity ? '9223372036854775807' : Math.floor(before), limit],
      ),
    );
    return rows.map((r) => ({ type: r.type, requires: r.requires, count: r.count, since: Number(r.since) }));
  }

  async lastTick(name: string): Promise<number | undefined> {
    checkScheduleName(name);
    const rows = await this.#run('lastTick', (executor) =>
      executor.query<{ tick: number | string }>(`SELECT tick FROM ${this.#names.s}.schedule_ticks WHERE name = $1`, [
        name,
      ]),
    );
    return rows[0] === undefined ? undefined : Number(rows[0].tick);
  }

  async recordTick(name: string, tickMs: number): Promise<void> {
    checkScheduleName(name);
    checkTick(tickMs);
    await this.#run('recordTick', (executor) =>
      executor.query(
        `INSERT INTO ${this.#names.s}.schedule_ticks AS t (name, tick) VALUES ($1, $2::bigint)
         ON CONFLICT (name) DO UPDATE SET tick = greatest(t.tick, excluded.tick)`,
        [name, ms(tickMs)],
      ),
    );
  }

  #deliver(payload: string): void {
    let ids: unknown;
    try {
      ids = JSON.parse(payload);
    } catch {
      return; // Not ours: someone else's NOTIFY on the channel.
    }
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) return;
    for (const listener of [...this.#listeners]) {
      try {
        listener(ids);
      } catch {
        // A listener's failure is its own; the others are still told.
      }
    }
  }

  #ready(operation: string): SqlExecutor {
    if (!this.#executor) throw new StoreUnavailableError(operation, 'the store is not open: call open() first');
    return this.#executor;
  }

  /** Runs one operation: unavailability becomes StoreUnavailableError, deadlocks run it again. */
  async #run<T>(operation: string, fn: (executor: SqlExecutor) => Promise<T>): Promise<T> {
    const executor = this.#ready(operation);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#unavailable(operation, () => fn(executor));
      } catch (error) {
        if (attempt >= RETRIES || !isRetryable(error)) throw error;
      }
    }
  }

  async #unavailable<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof StoreUnavailableError || !isUnavailable(error)) throw error;
      throw new StoreUnavailableError(operation, reasonOf(error), error);
    }
  }
}
