/**
 * The store of record for durable runs: what a {@link RunStore} holds and the operations the orchestrator asks of it.
 * Three implementations share this contract (test/store/contract.ts checks it): MemoryStore (nothing durable; for
 * tests and for one process's history), the embedded PGlite store and PostgresStore on a PostgreSQL server.
 *
 * The model. A run is one accepted durable task. It is inserted once (`insert`), owned by the node that accepted it,
 * and moved along by that node's events (`append`) until one terminal event ends it. Nodes hold a lease
 * (`heartbeat`); the runs of a node whose lease expired, and runs that no node owns, are taken over by another node
 * (`claim`) and queued there again. Every timestamp here is epoch milliseconds.
 */

/** Where a run is. `queued` and `running` are live; the others are terminal and never change again. */
export type RunStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | 'timed-out' | 'dead-lettered';

/** The terminal statuses (the same names as the engine's task outcomes). */
export type TerminalRunStatus = Exclude<RunStatus, 'queued' | 'running'>;

/** Whether `status` is terminal. */
export function isTerminal(status: RunStatus): status is TerminalRunStatus {
  return status !== 'queued' && status !== 'running';
}

/** The task as stored: what a node needs to queue it again after its first node is gone. */
export interface StoredTask {
  /** The capabilities an agent must have to run it. */
  readonly requires: readonly string[];
  /** Capabilities that make an agent a better choice, not a requirement. */
  readonly prefers: readonly string[];
  /** Higher runs first (claims take the highest first too). */
  readonly priority: number;
  /** The payload, JSON-serialisable (the engine checks it at submit). */
  readonly payload: unknown;
  /** Per-attempt timeout in ms; `null` for none (Infinity). */
  readonly timeoutMs: number | null;
  /** Epoch ms by which the whole task must end (from its `deadlineMs`), or `null`. */
  readonly deadlineAt: number | null;
  /** Attempts before it gives up; also the least number of recoveries before a claim dead-letters it. */
  readonly maxAttempts: number;
  /** The affinity key that routes related tasks to the same agent, or `null`. */
  readonly affinityKey: string | null;
}

/** An error as stored: enough to rebuild a typed error for a caller that attaches later. */
export interface StoredError {
  /** The error's class name (`TaskTimeoutError`, `Error`, …). */
  readonly name: string;
  /** The error's message. */
  readonly message: string;
  /** The OrchestratorError code, when it had one. */
  readonly code: string | null;
}

/** One run as the store holds it. */
export interface RunRecord {
  /** The run id (the task id). */
  readonly id: string;
  /** The task's type. */
  readonly type: string;
  /** The tenant the run belongs to, or `null`. */
  readonly tenantId: string | null;
  /** The task's idempotency key, or `null`. */
  readonly idempotencyKey: string | null;
  /** Where the run is. */
  readonly status: RunStatus;
  /** The task, enough to queue it again on another node. */
  readonly task: StoredTask;
  /** Attempts started (the last `started` event's attempt number). */
  readonly attempts: number;
  /** Times the run was taken over from a node whose lease expired while it held it. */
  readonly recoveries: number;
  /** The node holding it, or `null` when none does (queued for any node with room). */
  readonly owner: string | null;
  /** The result of a `completed` run (JSON), else `null`. */
  readonly result: unknown;
  /** The error of a run that ended otherwise, else `null`. */
  readonly error: StoredError | null;
  /** When the run was accepted (the accepting node's clock). */
  readonly createdAt: number;
  /** When the store last changed it (the store's clock). */
  readonly updatedAt: number;
  /** When it ended (the terminal event's `at`), or `null` while live. */
  readonly finishedAt: number | null;
}

/** What a run's timeline records. */
export type RunEventKind =
  'queued' | 'started' | 'retrying' | 'deferred' | 'interrupted' | 'released' | 'adopted' | TerminalRunStatus;

/** One entry of a run's timeline. */
export interface RunEvent {
  /** The run it belongs to. */
  readonly runId: string;
  /** Increasing within a run (and across runs of one store); the timeline's order. */
  readonly seq: number;
  /** When it happened (the writing node's clock; the store's for `adopted`, `released` by `leave` and dead-letters by `claim`). */
  readonly at: number;
  /** What happened. */
  readonly kind: RunEventKind;
  /** The attempt it concerns, when it concerns one. */
  readonly attempt: number | null;
  /** The agent, for `started` and terminal events of an attempt. */
  readonly agentId: string | null;
  /** The node that wrote it. */
  readonly nodeId: string | null;
  /** The error of `retrying`, `deferred`, `interrupted` and failure outcomes; else `null`. */
  readonly error: StoredError | null;
  /** Small JSON details (`delayMs`, the reason of a recovery, …), or `null`. */
  readonly detail: Readonly<Record<string, unknown>> | null;
}

/** A run to insert: the fields the store does not set itself. */
export interface NewRun {
  /** The run id (the task id), unique in the store. */
  readonly id: string;
  /** The task's type. */
  readonly type: string;
  /** The tenant, or `null`. */
  readonly tenantId: string | null;
  /** The idempotency key, or `null` for none. */
  readonly idempotencyKey: string | null;
  /** The task as stored. */
  readonly task: StoredTask;
  /** When the node accepted it. */
  readonly createdAt: number;
}

/**
 * What `insert` did with one run: stored it, or found a live or completed run with the same tenant and idempotency
 * key (then nothing was written, and the caller follows `existing`). A run that failed, was cancelled, timed out or
 * was dead-lettered does not hold its key: a new run with it is inserted.
 */
export type InsertOutcome =
  | {
      /** Stored. */
      readonly kind: 'inserted';
    }
  | {
      /** Not stored: a live or completed run holds the key. */
      readonly kind: 'duplicate';
      /** The run holding the key. */
      readonly existing: RunRecord;
    };

/**
 * One event of a run, as a node appends it. The store records it in the timeline and moves the run:
 * - `started`: status `running`, `attempts` = `attempt`;
 * - `retrying`, `deferred`, `interrupted`: status `queued`;
 * - `released`: status `queued` and `owner` null (the node gave it back: stopping, or no room);
 * - a terminal kind: that status, `result` (for `completed`) or `error`, `finishedAt` = `at`.
 * A non-terminal event moves the run only while `nodeId` owns it and it is not terminal (a node that lost the run
 * to another records history but changes nothing). A terminal event applies to any live run whoever owns it (the
 * first end wins) and is ignored (not even recorded) once the run is terminal. `queued` and `adopted` are written by
 * the store itself (`insert`, `claim`); appending them is refused with ValidationError (and nothing of the batch is
 * written). An event of a run the store does not hold (never inserted, or pruned) is ignored.
 */
export interface RunEventInput {
  /** The run it moves. */
  readonly runId: string;
  /** What happened. */
  readonly kind: Exclude<RunEventKind, 'queued' | 'adopted'>;
  /** When (the node's clock); a terminal event's `at` becomes the run's `finishedAt`. */
  readonly at: number;
  /** The node writing it. */
  readonly nodeId: string;
  /** The attempt it concerns (for `started`, the new `attempts`). */
  readonly attempt?: number | null;
  /** The agent, for `started` and terminal events of an attempt. */
  readonly agentId?: string | null;
  /** The error of `retrying`, `deferred`, `interrupted` and failure outcomes. */
  readonly error?: StoredError | null;
  /** Small JSON details (`delayMs`, a reason). */
  readonly detail?: Readonly<Record<string, unknown>> | null;
  /** For `completed`: the result (JSON-serialisable; a value JSON cannot hold is stored as `null`). */
  readonly result?: unknown;
}

/** A node's claim on work: its capabilities (a run is claimed only if they cover its `requires`) and how many. */
export interface ClaimRequest {
  /** The claiming node: it owns what it claims. */
  readonly nodeId: string;
  /** Claim at most this many (at least 1); runs dead-lettered instead (`ClaimResult.deadLettered`) do not count. */
  readonly limit: number;
  /** The capabilities of the node's agents, all pools together. */
  readonly capabilities: readonly string[];
  /**
   * A run taken over from a dead node (not one that was unowned) whose `recoveries` would reach this is not returned
   * but ended `dead-lettered` (its node died with it that often: a poison task). The run's own `maxAttempts` is used
   * when it is larger.
   */
  readonly maxRecoveries: number;
  /**
   * Only runs this node held (a dead node's: its lease ended or expired). A node restarted under the same name takes
   * its previous process's runs back with one such claim (its lease ended with `heartbeat(name, 0)` first), without
   * sweeping up other runs; a run it claims is then its own, so it must renew its lease before it claims again.
   */
  readonly from?: string;
}

/** What `claim` hands back: runs now owned by the claiming node, and those it dead-lettered instead. */
export interface ClaimResult {
  /** Now owned by the node, status `queued`, each with an `adopted` event; `recoveries` counts this take-over. */
  readonly runs: readonly RunRecord[];
  /**
   * Taken from a dead node once too often: ended `dead-lettered` (their terminal event is written, by and now owned
   * by the claiming node; `recoveries` counts this take-over too).
   */
  readonly deadLettered: readonly RunRecord[];
}

/** Filters of `list`; every one optional. Newest first. */
export interface RunQuery {
  /** Only this tenant's runs. */
  readonly tenantId?: string;
  /** Only runs of this task type. */
  readonly type?: string;
  /** Only runs in this status, or in one of these. */
  readonly status?: RunStatus | readonly RunStatus[];
  /** Only runs with this `idempotencyKey` (newest first: a key freed by a failure may have been used again). */
  readonly idempotencyKey?: string;
  /** `createdAt` at or after. */
  readonly since?: number;
  /** `createdAt` before. */
  readonly until?: number;
  /** 1 to 1000. @default 100 */
  readonly limit?: number;
  /** The `cursor` of the previous page. */
  readonly cursor?: string;
}

/** A page of `list`. */
export interface RunPage {
  /** The runs of this page, newest first. */
  readonly runs: readonly RunRecord[];
  /** Pass it back as `cursor` for the next page; `null` on the last page. */
  readonly cursor: string | null;
}

/**
 * A store of record for durable runs. Every method may reject with StoreUnavailableError (`STORE_UNAVAILABLE`) when
 * the store cannot be reached, and then wrote nothing: each method is one transaction. Methods taking a `tenantId`
 * treat another tenant's run as unknown.
 */
export interface RunStore {
  /** `memory`, `pglite` or `postgres`. */
  readonly kind: string;
  /** Whether what it holds survives the process (false for MemoryStore). */
  readonly durable: boolean;

  /**
   * Connects and applies pending migrations (under an advisory lock on PostgreSQL). Idempotent. Until it resolves,
   * and after `close()`, the other methods reject with StoreUnavailableError.
   */
  open(): Promise<void>;
  /** Releases connections and timers; what it holds stays. Idempotent. */
  close(): Promise<void>;

  /**
   * Inserts runs owned by `nodeId`, status `queued`, each with a `queued` event, in one transaction; one outcome
   * per run in order. Idempotency keys are unique per tenant among runs that are live or completed (no tenant and
   * the tenant `''` are one). A run id the store already holds, or given twice, is refused with ValidationError
   * (nothing of the batch is written).
   */
  insert(nodeId: string, runs: readonly NewRun[]): Promise<InsertOutcome[]>;
  /** Appends events in order, in one transaction, moving runs as {@link RunEventInput} says. */
  append(events: readonly RunEventInput[]): Promise<void>;

  /**
   * Records that `nodeId` is alive until `leaseMs` from now (the store's clock). `0` ends its lease at once: its runs
   * become a dead node's, for `claim` to take over as recoveries (a node restarted under the same name does this for
   * the runs its previous process held).
   */
  heartbeat(nodeId: string, leaseMs: number): Promise<void>;
  /**
   * Takes over live runs that no node owns, or whose owner's lease expired (or who has none), that `capabilities`
   * can serve: highest priority first, then oldest; rows another claim holds are skipped (`FOR UPDATE SKIP LOCKED`).
   */
  claim(request: ClaimRequest): Promise<ClaimResult>;
  /** Ends `nodeId`'s lease and gives back its live runs (owner null, status queued, a `released` event). */
  leave(nodeId: string): Promise<void>;

  /** One run, or `undefined`. */
  get(id: string, tenantId?: string): Promise<RunRecord | undefined>;
  /** Several runs by id (unknown ids are left out), in no particular order. */
  getMany(ids: readonly string[]): Promise<RunRecord[]>;
  /** A run's timeline, oldest first; empty when the run is unknown. */
  events(id: string, tenantId?: string): Promise<RunEvent[]>;
  /** Runs matching `query`, newest first, a page at a time. */
  list(query?: RunQuery): Promise<RunPage>;
  /** Dead-lettered runs, oldest first. */
  deadLetters(tenantId?: string, limit?: number): Promise<RunRecord[]>;

  /**
   * Calls `listener` with the ids of runs that ended (any node), soon after their terminal event is committed; a
   * store that cannot tell (or while its connection is down) may call it late or miss ids: callers also poll with
   * `getMany`. Resolves to a function that stops listening.
   */
  onFinished(listener: (ids: readonly string[]) => void): Promise<() => Promise<void>>;

  /**
   * Deletes up to `limit` terminal runs (with their events) that finished before `before`; returns how many. Live
   * runs are never deleted.
   */
  prune(before: number, limit: number): Promise<number>;
}
