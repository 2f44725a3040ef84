/**
 * The contract between the orchestrator and user code: what an agent is, what it receives per task,
 * and how a pool makes one.
 */

/** What an agent receives for one attempt of a task. */
export interface TaskContext<TPayload = unknown> {
  /** The task's id, the same across attempts. */
  readonly taskId: string;
  /** The task's `type`. */
  readonly type: string;
  /** The task's `payload`, as submitted (not copied: do not change it if the task may run again). */
  readonly payload: TPayload;
  /** 1 for the first attempt, 2 for the next, and so on (a re-run after a halt or a rate limit's retry-after counts). */
  readonly attempt: number;
  /**
   * Epoch ms by which this attempt must finish: its `timeoutMs` or the task's `deadlineMs`, whichever comes first
   * (`Infinity` when it has neither). Pass it on to the calls the agent makes.
   */
  readonly deadline: number;
  /**
   * Aborted when the attempt times out, the task is cancelled, the orchestrator stops without draining, or an
   * operator halts it; `signal.reason` is the TaskTimeoutError, TaskCancelledError or OrchestratorHaltedError (after a
   * halt the task runs again on resume). Pass it to `fetch` and friends.
   * It is made on first read, so it is an accessor: a `{ ...ctx }` copy does not carry it. Read `ctx.signal`
   * from the context itself (or copy it explicitly: `{ ...ctx, signal: ctx.signal }`).
   */
  readonly signal: AbortSignal;
  /** The agent running this attempt. */
  readonly agentId: string;
  /** The task's tenant, if it has one. */
  readonly tenantId: string | undefined;
  /**
   * For a durable task (a `store` is configured): how many times it was taken over from a node that died while
   * holding it; 0 otherwise. Above 0, an earlier attempt may have done part of the work before its node died: this
   * attempt is a recovery, so make side effects idempotent (check before you charge, send or write again).
   */
  readonly recoveries: number;
  /**
   * Reports cost units (tokens, cents) spent on this task. They add to the task's sum, to its tenant's budget
   * (`budgets`; a tenant over budget has new tasks refused) and to the `units` of the rate limits on its required
   * capabilities. Throws ValidationError unless `units` is a finite number >= 0. Bound to the attempt, so it may be
   * destructured: `execute({ payload, reportCost })`.
   */
  readonly reportCost: (units: number) => void;
  /**
   * Reports progress or a partial result (tokens streamed so far, a step done): the task's handle yields it from
   * `handle.progress`, and the orchestrator emits `task:progress` when someone listens. The value is passed by
   * reference on this node (not copied) and must be able to cross a bridge: an object, array, string, number,
   * boolean or null (`undefined`, a function, a symbol or a bigint throws ValidationError). Returns true when it was
   * passed on, false when this attempt is over (it returned, timed out, or its task was cancelled or ended): a late
   * report is dropped, never thrown. Bound to the attempt, so it may be destructured: `execute({ progress })`.
   */
  readonly progress: (value: unknown) => boolean;
}

/**
 * An agent: user code that does tasks. Only `execute` is required.
 *
 * @example
 * ```ts
 * const agent: Agent<{ text: string }, string> = {
 *   async execute({ payload, signal }) {
 *     const res = await fetch(url, { method: 'POST', body: payload.text, signal });
 *     return res.text();
 *   },
 * };
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- public API: an untyped agent reads its payload without a cast
export interface Agent<TPayload = any, TResult = unknown> {
  /** Does one attempt of a task. Reject (or throw) to fail it; honour `ctx.signal` to stop early. */
  execute(ctx: TaskContext<TPayload>): Promise<TResult> | TResult;
  /** Resolves `true`/`undefined` while healthy; `false`, a rejection or a throw marks the agent unhealthy. */
  healthCheck?(): Promise<boolean | void> | boolean | void;
  /** Releases what the agent holds. Called once, after its last task, when it leaves the fleet. */
  dispose?(): Promise<void> | void;
}

/** What a pool's factory is told about the agent it makes. */
export interface AgentFactoryContext {
  /** The pool's role. */
  readonly role: string;
  /** The id the new agent will have. */
  readonly agentId: string;
  /** Aborted when creation timed out or the orchestrator is stopping: give up and clean up. */
  readonly signal: AbortSignal;
}

/** Makes one agent of a pool. May be async; a throw or rejection is retried with backoff. */
export type AgentFactory = (ctx: AgentFactoryContext) => Promise<Agent> | Agent;
