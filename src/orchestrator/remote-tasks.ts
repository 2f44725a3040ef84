/**
 * The submitter's side of the tasks this node handed to the cluster: each keeps the promises a local task keeps.
 * - **Bounded.** An attempt running on a node (its `started` notice came; a task queued there for an agent gets none)
 *   is bounded by what it and the attempts left after it may take there (`timeoutMs` each and the backoffs between,
 *   plus a grace for the result's way back); each attempt's notice starts the bound again. Past it the task ends
 *   with TaskTimeoutError. A delivery whose node dies (its lease lapses) is over: the task waits for its
 *   next delivery (RedisBridge dead-letters it after `maxDeliveries`), as a task that was never taken does. Its
 *   `deadlineMs` bounds it all (TaskTimeoutError, scope `task`).
 * - **Waiting for a node.** While no live node serves its `requires`, it waits at most `waitForNodeMs`, then ends
 *   with NoCapableNodeError.
 * - **Cancellable.** `cancel()`, the caller's AbortSignal or `orchestrator.cancel(id)` end it with TaskCancelledError
 *   at once.
 * - **Progress.** The serving node's progress notices reach the handle's `progress` and `task:progress`.
 * Whatever ends it here (and not a result) cancels it across the cluster (`bridge.cancel`): no node runs it
 * afterwards, and the node running it aborts its `ctx.signal`.
 *
 * Cheap per hand-off: one record and one promise settled straight from the bridge's; notices go to one listener
 * shared by all (looked up by task id); the checks run on one sweep timer for all of them (every SWEEP_MS while any
 * waits), not a timer each; the progress feed is made only when progress comes or the handle's `progress` is read.
 */
import type { CommunicationBridge, HandOffNotice, HandOffOptions, WireTask } from '../bridge/bridge.js';
import { ProgressFeed, type ProgressStream, type ProgressUpdate } from '../engine/progress.js';
import type { TaskHandle } from '../engine/task.js';
import { NoCapableNodeError, TaskCancelledError, TaskTimeoutError } from '../errors.js';
import { MAX_TIMER_MS } from '../util/timers.js';

/** How often the bounds are checked, in ms. */
export const SWEEP_MS = 250;

/**
 * What a delivery's bound adds to the time its attempts may take: the notice comes on the serving node's next
 * heartbeat, and the result may wait out a reconnect on its way back.
 */
export const RESULT_GRACE_MS = 10_000;

const noop = (): void => {};

/** What the supervisor needs to know of a remote task: its checked task (a TaskSpec has these fields). */
export interface RemoteTaskSpec {
  /** The task's `type` (for `task:progress`). */
  readonly type: string;
  readonly requires: readonly string[];
  /** Per-attempt timeout in ms (`Infinity`: none). */
  readonly timeoutMs: number;
  readonly maxAttempts: number;
  /** The task's deadline in ms from now (`Infinity`: none). */
  readonly deadlineMs: number;
  /** The caller's signal, if any: aborting it cancels the task. */
  readonly signal?: AbortSignal | undefined;
  /** The task's tenant, for calls by id with a tenant (see `cancel`). */
  readonly tenantId?: string | undefined;
}

/** What a RemoteTasks tells its node. */
export interface RemoteTasksHooks {
  /** The cluster's `waitForNodeMs`, read on each sweep. */
  waitForNodeMs(): number;
  /** The longest backoff between two attempts, in ms. */
  backoffMs(): number;
  /** A progress update of a remote task reached its handle (for `task:progress`); must not throw. */
  progress(update: ProgressUpdate, type: string): void;
}

/** A remote task waiting for its result, and then its handle's state. */
class Tracked implements TaskHandle {
  readonly id: string;
  readonly result: Promise<unknown>;
  readonly spec: RemoteTaskSpec;
  readonly #owner: RemoteTasks;
  resolve!: (value: unknown) => void;
  reject!: (error: unknown) => void;
  /** Settled (by its result, or ended here). */
  done = false;
  /** The node running its current delivery (from its notice), or `undefined` while it waits in the cluster. */
  node: string | undefined = undefined;
  /** The highest delivery heard of (0: none yet). */
  delivery = 0;
  /** The attempt of that delivery heard of last. */
  attempt = 0;
  /** When the current delivery is given up on (performance.now()); `Infinity` without a timeout. */
  runDue = Infinity;
  /** Since when no live node serves its `requires` (performance.now()), or -1. */
  noNodeSince = -1;
  /** When its deadline passes (performance.now()), or `Infinity`. */
  deadlineAt = Infinity;
  deadlineTimer: NodeJS.Timeout | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;
  feed: ProgressFeed | undefined = undefined;

  constructor(owner: RemoteTasks, id: string, spec: RemoteTaskSpec) {
    this.#owner = owner;
    this.id = id;
    this.spec = spec;
    this.result = new Promise<unknown>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // Handled like local results: a late handler never meets an unhandled rejection.
    this.result.catch(noop);
  }

  cancel(reason?: unknown): boolean {
    return this.#owner.cancelTracked(this, reason);
  }

  /** Made on first read, or when progress first comes (over already when the task is). */
  get progress(): ProgressStream {
    return (this.feed ??= new ProgressFeed(this.done));
  }
}

/** The remote tasks of one node (see the file header). */
export class RemoteTasks {
  readonly #bridge: CommunicationBridge;
  readonly #hooks: RemoteTasksHooks;
  readonly #graceMs: number;
  readonly #tracked = new Map<string, Tracked>();
  /** One listener for the notices of every hand-off (see the file header). */
  readonly #handOffOptions: HandOffOptions;
  #timer: NodeJS.Timeout | undefined;
  /** Callers of `settled()` waiting for none to be left. */
  #drained: Array<() => void> = [];

  constructor(bridge: CommunicationBridge, hooks: RemoteTasksHooks, graceMs = RESULT_GRACE_MS) {
    this.#bridge = bridge;
    this.#hooks = hooks;
    this.#graceMs = graceMs;
    this.#handOffOptions = { onNotice: (notice) => this.#notice(notice) };
  }

  /** Remote tasks waiting for their result. */
  get size(): number {
    return this.#tracked.size;
  }

  /** Hands `wire` to the cluster as the task `id` and returns its handle, bounded (see the file header). */
  supervise(id: string, spec: RemoteTaskSpec, wire: WireTask): TaskHandle {
    const tracked = new Tracked(this, id, spec);
    this.#tracked.set(id, tracked);
    // A deadline past what one Node timer holds is left to the result (it will have settled long before). Set before
    // the hand-off: the serving node's own deadline (a MemoryBridge node's, in this process) fires after this one.
    if (spec.deadlineMs !== Infinity) {
      tracked.deadlineAt = performance.now() + spec.deadlineMs;
      if (spec.deadlineMs <= MAX_TIMER_MS) {
        tracked.deadlineTimer = setTimeout(() => this.#deadline(tracked), spec.deadlineMs);
        tracked.deadlineTimer.unref(); // the bridge holds the process while the hand-off is out; stop() settles it
      }
    }
    if (spec.signal) {
      const signal = spec.signal;
      tracked.onAbort = () => this.#end(tracked, new TaskCancelledError(id, signal.reason));
      signal.addEventListener('abort', tracked.onAbort, { once: true });
    }
    this.#timer ??= setInterval(() => this.#sweep(), SWEEP_MS).unref();
    this.#bridge.handOff(id, wire, this.#handOffOptions).then(
      (value) => this.#settle(tracked, value, false),
      (error: unknown) => this.#settle(tracked, error, true),
    );
    return tracked;
  }

  /**
   * Cancels the remote task `id` (see the file header); false when none waits with that id, or (with `tenantId`) it
   * is another tenant's.
   */
  cancel(id: string, reason?: unknown, tenantId?: string): boolean {
    const tracked = this.#tracked.get(id);
    if (!tracked || (tenantId !== undefined && tracked.spec.tenantId !== tenantId)) return false;
    return this.cancelTracked(tracked, reason);
  }

  /** A handle's `cancel()`: false once it settled. */
  cancelTracked(tracked: Tracked, reason?: unknown): boolean {
    if (tracked.done) return false;
    this.#end(tracked, new TaskCancelledError(tracked.id, reason));
    return true;
  }

  /** Settles once no remote task waits, or after `ms` (real time), whichever comes first. */
  async settled(ms: number): Promise<void> {
    if (this.#tracked.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.#drained.push(resolve);
      if (Number.isFinite(ms)) timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
  }

  /** Stops the sweep (the node stops: what still waits is settled by the bridge). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The hand-off's own outcome (its result, or the bridge's rejection), unless it ended here first. */
  #settle(tracked: Tracked, outcome: unknown, failed: boolean): void {
    if (tracked.done) return;
    this.#close(tracked);
    if (!failed) return tracked.resolve(outcome);
    // The serving node's end at the same deadline (a node in this process may fire first): the task's deadline.
    const code = (outcome as { code?: unknown } | null)?.code;
    if (code === 'TASK_TIMEOUT' && performance.now() >= tracked.deadlineAt - 5) {
      return tracked.reject(new TaskTimeoutError(tracked.id, tracked.spec.deadlineMs, tracked.delivery, 'task'));
    }
    tracked.reject(outcome);
  }

  /** Ends a task here with `error` and cancels it across the cluster. */
  #end(tracked: Tracked, error: Error): void {
    if (tracked.done) return;
    this.#close(tracked);
    tracked.reject(error);
    if (this.#bridge.cancel) this.#bridge.cancel(tracked.id, error.message);
    else this.#bridge.forget?.(tracked.id);
  }

  #deadline(tracked: Tracked): void {
    this.#end(tracked, new TaskTimeoutError(tracked.id, tracked.spec.deadlineMs, tracked.delivery, 'task'));
  }

  /** What settling a task releases: its entry, timer, listener and feed; wakes `settled()` once none is left. */
  #close(tracked: Tracked): void {
    tracked.done = true;
    if (this.#tracked.get(tracked.id) === tracked) this.#tracked.delete(tracked.id);
    if (tracked.deadlineTimer) clearTimeout(tracked.deadlineTimer);
    if (tracked.onAbort) tracked.spec.signal?.removeEventListener('abort', tracked.onAbort);
    tracked.feed?.end();
    if (this.#tracked.size === 0 && this.#drained.length > 0) for (const wake of this.#drained.splice(0)) wake();
  }

  /** A serving node's notice about one of the hand-offs waiting here (others' and late ones are dropped). */
  #notice(notice: HandOffNotice): void {
    const tracked = this.#tracked.get(notice.taskId);
    if (!tracked) return;
    if (notice.kind !== 'progress') return this.#started(tracked, notice);
    // A delivery that reports progress runs: its started notice may not have come yet.
    if (tracked.node === undefined || notice.delivery > tracked.delivery) this.#started(tracked, notice);
    const { attempt, at, value } = notice;
    if (!Number.isSafeInteger(attempt) || (attempt as number) < 1) return;
    if (typeof at !== 'number' || !Number.isFinite(at)) return;
    const update: ProgressUpdate = { taskId: tracked.id, attempt: attempt as number, value, at };
    tracked.feed ??= new ProgressFeed();
    if (tracked.feed.push(update)) this.#hooks.progress(update, tracked.spec.type);
  }

  /** A delivery of the task runs on `notice.node`: it is bounded from now on (see the file header). */
  #started(tracked: Tracked, notice: HandOffNotice): void {
    // The attempt that runs (numbered after one per earlier delivery, as the serving node does).
    const attempt = notice.attempt ?? notice.delivery;
    // An earlier delivery's or attempt's notice, late. Not while the task waits again (its node died): then whatever
    // runs it is its current delivery, even one counted from 1 again (a hand-off sent again after a Redis restart).
    const late =
      notice.delivery < tracked.delivery || (notice.delivery === tracked.delivery && attempt < tracked.attempt);
    if (late && tracked.node !== undefined) return;
    const now = performance.now();
    tracked.node = notice.node;
    tracked.delivery = notice.delivery;
    tracked.attempt = attempt;
    tracked.noNodeSince = -1;
    const { timeoutMs, maxAttempts } = tracked.spec;
    const attempts = Math.max(1, maxAttempts - attempt + 1);
    tracked.runDue =
      timeoutMs === Infinity
        ? Infinity
        : now + attempts * timeoutMs + (attempts - 1) * this.#hooks.backoffMs() + this.#graceMs;
  }

  /** Checks every task's bounds (see the file header); stops itself once none waits. */
  #sweep(): void {
    if (this.#tracked.size === 0) return this.stop();
    const now = performance.now();
    const waitForNodeMs = this.#hooks.waitForNodeMs();
    /** Whether a live node serves a class, asked once per class per sweep. */
    const served = new Map<string, boolean>();
    const bridge = this.#bridge;
    for (const tracked of [...this.#tracked.values()]) {
      const { spec } = tracked;
      if (tracked.node !== undefined) {
        if (!bridge.isLive || bridge.isLive(tracked.node)) {
          if (now >= tracked.runDue) {
            this.#end(tracked, new TaskTimeoutError(tracked.id, spec.timeoutMs, tracked.delivery, 'attempt'));
          }
          continue;
        }
        // Its node died (its lease lapsed): it waits again for the bridge's next delivery, or for a node.
        tracked.node = undefined;
        tracked.runDue = Infinity;
      }
      const key = spec.requires.join('\u0000');
      let serves = served.get(key);
      if (serves === undefined) served.set(key, (serves = bridge.canAnyServe(spec.requires)));
      if (serves) {
        tracked.noNodeSince = -1;
        continue;
      }
      if (tracked.noNodeSince < 0) tracked.noNodeSince = now;
      if (now - tracked.noNodeSince >= waitForNodeMs) {
        this.#end(tracked, new NoCapableNodeError(tracked.id, spec.requires, now - tracked.noNodeSince));
      }
    }
  }
}
