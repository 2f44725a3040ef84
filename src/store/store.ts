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
  /**
   * A live run is not claimed before this time (epoch ms; a delayed task, a scheduled run, a parked workflow's timer),
   * or `null`.
   */
  readonly notBefore: number | null;
  /**
   * The signal names a parked workflow run waits for: it is not claimed while this is non-empty (unless `notBefore`
   * is set and has passed: a wait with a timeout). Empty otherwise.
   */
  readonly waitingFor: readonly string[];
  /** Cost units reported by the run's attempts (`ctx.reportCost`), as its terminal event gave them; 0 until then. */
  readonly cost: number;
  /** The agent of the terminal event, when it named one (the agent that ran the last attempt), or `null`. */
  readonly agentId: string | null;
}

/**
 * What a run's timeline records. `parked` (a workflow run put aside until a signal or a time, by `park`) and
 * `signalled` (a signal delivered, by `signal`) are written by the store itself.
 */
export type RunEventKind =
  | 'queued'
  | 'started'
  | 'retrying'
  | 'deferred'
  | 'interrupted'
  | 'released'
  | 'adopted'
  | 'parked'
  | 'signalled'
  | TerminalRunStatus;

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
  /**
   * Not claimed before this time (epoch ms): a delayed task or a scheduled run. A run inserted with `notBefore` (not
   * null) is inserted with no owner, whatever node inserts it, so that any node claims it when it is due.
   */
  readonly notBefore?: number | null;
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
      /** Not stored: a run with the same id, or a live or completed run with the same key, is there. */
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
 * first end wins) and is ignored (not even recorded) once the run is terminal. `queued`, `adopted`, `parked` and
 * `signalled` are written by the store itself (`insert`, `claim`, `park`, `signal`); appending them is refused with ValidationError (and nothing of the batch is
 * written). An event of a run the store does not hold (never inserted, or pruned) is ignored.
 */
export interface RunEventInput {
  /** The run it moves. */
  readonly runId: string;
  /** What happened. */
  readonly kind: Exclude<RunEventKind, 'queued' | 'adopted' | 'parked' | 'signalled'>;
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
  /** For a terminal event: the cost units its attempts reported (the run's `cost`). @default 0 */
  readonly cost?: number;
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
  /**
   * With `from` only: take the node's runs whatever they require (`capabilities` ignored), so that a restarted node
   * can give back at once, as released, what it cannot serve any more instead of holding it under its name.
   */
  readonly anyCapabilities?: boolean;
  /**
   * `true`: only workflow runs (type starting with `workflow:`); `false` or absent: only the other runs. A node claims
   * for its agents and for its registered workflows separately, each as its room allows.
   */
  readonly workflows?: boolean;
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

// --- Workflow steps and signals ------------------------------------------------------------------------------------

/** What a workflow step is: a task on the fleet, a local function, a wait for a signal, a durable timer. */
export type StepKind = 'task' | 'step' | 'signal' | 'sleep';

/**
 * Where a step is: `running` (a task step under way: a record for the timeline), `waiting` (a signal or sleep not
 * satisfied yet: its `wakeAt` is fixed by its first call), or ended: `completed` (a checkpoint: replays return its
 * result) or `failed` (replays throw its error).
 */
export type StepStatus = 'running' | 'waiting' | 'completed' | 'failed';

/** One step of a workflow run, identified by its position `seq` (the order the workflow called its steps). */
export interface StepRecord {
  /** The workflow run. */
  readonly runId: string;
  /** Its position in the run (0, 1, 2, …), unique per run. */
  readonly seq: number;
  /** The name the workflow gave it. */
  readonly name: string;
  /** What it is. */
  readonly kind: StepKind;
  /** Where it is. */
  readonly status: StepStatus;
  /** The result of a `completed` step (JSON), else `null`. */
  readonly result: unknown;
  /** The error of a `failed` step, else `null`. */
  readonly error: StoredError | null;
  /** Cost units the step reported (a task step: its agents' `ctx.reportCost`), 0 if none. */
  readonly cost: number;
  /** A task step's run id (the child run), else `null`. */
  readonly childId: string | null;
  /** The agent that ran a task step's last attempt, else `null`. */
  readonly agentId: string | null;
  /** A task step's attempts, else 0. */
  readonly attempts: number;
  /** When it started (the workflow's node clock). */
  readonly startedAt: number;
  /** When it ended, or `null`. */
  readonly endedAt: number | null;
  /** A sleep's wake time, or a signal wait's timeout, fixed at the first call (epoch ms), or `null`. */
  readonly wakeAt: number | null;
}

/** A step as a node writes it (`checkpoint`, `park`): every field of {@link StepRecord} but the run's own. */
export interface StepInput {
  /** The workflow run. */
  readonly runId: string;
  /** Its position in the run. */
  readonly seq: number;
  /** The name the workflow gave it. */
  readonly name: string;
  /** What it is. */
  readonly kind: StepKind;
  /** Where it is. */
  readonly status: StepStatus;
  /** For `completed` (JSON-serialisable; a value JSON cannot hold is stored as `null`). */
  readonly result?: unknown;
  /** For `failed`: its error. */
  readonly error?: StoredError | null;
  /** Cost units it reported. @default 0 */
  readonly cost?: number;
  /** A task step's run id. */
  readonly childId?: string | null;
  /** The agent of a task step's last attempt. */
  readonly agentId?: string | null;
  /** A task step's attempts. @default 0 */
  readonly attempts?: number;
  /** When it started (epoch ms). */
  readonly startedAt: number;
  /** When it ended (epoch ms). */
  readonly endedAt?: number | null;
  /** A wait's wake time or timeout (epoch ms). */
  readonly wakeAt?: number | null;
  /** The id of the signal this (signal) step consumes: it is marked consumed by this step, in the same transaction. */
  readonly signalId?: number | null;
}

/** A signal sent to a workflow run. */
export interface SignalRecord {
  /** Increasing across the store: the order signals were delivered. */
  readonly id: number;
  /** The run it was sent to. */
  readonly runId: string;
  /** The signal's name (what `run.signal(name)` waits for). */
  readonly name: string;
  /** Its payload (JSON). */
  readonly payload: unknown;
  /** Who sent it, as the sender's API said (an operator's verified identity where there is one), or `null`. */
  readonly actor: string | null;
  /** When it was sent (the sending node's clock). */
  readonly at: number;
  /** The step (`seq`) that consumed it, or `null` while unconsumed. */
  readonly consumedBy: number | null;
}

/** A signal to deliver. */
export interface SignalInput {
  /** The run it is sent to. */
  readonly runId: string;
  /** When given, a run of another tenant is treated as unknown. */
  readonly tenantId?: string;
  /** The signal's name. */
  readonly name: string;
  /** JSON-serialisable (a value JSON cannot hold is stored as `null`). */
  readonly payload: unknown;
  /** Who sends it, or `null`. */
  readonly actor: string | null;
  /** When it is sent (the sending node's clock). */
  readonly at: number;
  /** The sending node (for the `signalled` event). */
  readonly nodeId: string;
}

/**
 * What `signal` did: `delivered` (stored; if the run was parked waiting for this name, its `waitingFor` and
 * `notBefore` are cleared so that it is claimable at once, and a `signalled` event records it with the actor);
 * `unknown` (no such run, another tenant's, or not a workflow run: nothing written); `ended` (the run is terminal: nothing written).
 */
export type SignalOutcome =
  | {
      /** Stored. */
      readonly kind: 'delivered';
      /** The signal's id. */
      readonly id: number;
    }
  | {
      /** No such run (or another tenant's, or not a workflow's). */
      readonly kind: 'unknown';
    }
  | {
      /** The run had ended. */
      readonly kind: 'ended';
      /** How it ended. */
      readonly status: TerminalRunStatus;
    };

/** A workflow run that cannot go on now, put aside by its owner. */
export interface ParkInput {
  /** The run to park. */
  readonly runId: string;
  /** The owner parking it (refused otherwise). */
  readonly nodeId: string;
  /** When (the node's clock), for the `parked` event. */
  readonly at: number;
  /** Claimable again at this time (a timer, a wait's timeout, the run's deadline), or `null` for no time. */
  readonly notBefore: number | null;
  /** Claimable again when a signal of one of these names arrives (empty: time only). */
  readonly waitingFor: readonly string[];
  /** Steps to write in the same transaction (the waits' records, with their `wakeAt`). */
  readonly steps: readonly StepInput[];
}

/**
 * What `park` did with one run: `parked` (owner null, status `queued`, `notBefore` and `waitingFor` set, a `parked`
 * event); `signalled` (an unconsumed signal of a `waitingFor` name was already there: the run was not parked and
 * stays with its owner, which reads its signals again and goes on; the steps were written); `lost` (the node does
 * not own the run, or it is terminal: nothing written, the node must stop its copy).
 */
export type ParkOutcome = 'parked' | 'signalled' | 'lost';

/** Runs that wait for a node to take them, grouped by what they need (see `RunStore.unclaimed`). */
export interface UnclaimedRuns {
  /** Their type (`workflow:<name>` for a workflow's runs). */
  readonly type: string;
  /** The capabilities they require (`workflow:<name>@<version>` for a workflow's). */
  readonly requires: readonly string[];
  /** How many. */
  readonly count: number;
  /** The oldest `updatedAt` among them: since when at least one has waited. */
  readonly since: number;
}

/** A workflow run's history: what a replay needs. */
export interface WorkflowHistory {
  /** Its steps, by `seq`. */
  readonly steps: readonly StepRecord[];
  /** Every signal sent to it, consumed or not, by `id`. */
  readonly signals: readonly SignalRecord[];
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
   * the tenant `''` are one). A run id the store already holds is not inserted: its outcome is `duplicate`
   * with the run holding the id, whatever its status (a workflow started twice under one id is one run). An id given
   * twice in one batch is refused with ValidationError (nothing of the batch is written).
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
   * Runs not due are skipped: `notBefore` in the future, or `waitingFor` non-empty with no `notBefore` or one in the
   * future. A claimed run's `notBefore` and `waitingFor` are cleared (its new owner replays it, and parks it again if
   * it still must wait). Only workflow runs, or only the others, as `request.workflows` says.
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
   * Deletes up to `limit` terminal runs (with their events, steps and signals) that finished before `before`; returns
   * how many. Live runs are never deleted.
   */
  prune(before: number, limit: number): Promise<number>;

  // --- Workflows ---

  /**
   * Writes steps in one transaction, upserting by (runId, seq): a new row is inserted; an existing row is replaced
   * unless it is ended (`completed` or `failed`: the first end wins, and stays). A step of a run that `nodeId` does
   * not own, or that is terminal or unknown, is not written: its run id is in the returned list (the node lost the
   * run and must stop its copy). A step with `signalId` marks that signal consumed by it (if it is unconsumed).
   */
  checkpoint(nodeId: string, steps: readonly StepInput[]): Promise<string[]>;
  /** Parks runs, each as {@link ParkOutcome} says, in one transaction; one outcome per input, in order. */
  park(parks: readonly ParkInput[]): Promise<ParkOutcome[]>;
  /** Delivers a signal to a run ({@link SignalOutcome}). */
  signal(signal: SignalInput): Promise<SignalOutcome>;
  /** A run's steps and signals; empty when the run is unknown (or another tenant's, with `tenantId`). */
  history(runId: string, tenantId?: string): Promise<WorkflowHistory>;

  /**
   * Live runs that are due and that no live node holds (unowned, or their owner's lease expired), unchanged since
   * before `before` (their `updatedAt`): work no node has claimed for a while, because no node that can serve it is
   * up (no agent with its capabilities, no node with its workflow version). Grouped by type and requires, the
   * longest waiting first, at most `limit` groups.
   */
  unclaimed(before: number, limit: number): Promise<UnclaimedRuns[]>;

  // --- Schedules ---

  /** The last tick recorded for schedule `name` (epoch ms), or `undefined` when it never fired. */
  lastTick(name: string): Promise<number | undefined>;
  /**
   * Records `tickMs` as schedule `name`'s last tick, unless a later one is recorded (nodes may record theirs in either
   * order: the latest stays).
   */
  recordTick(name: string, tickMs: number): Promise<void>;
}
