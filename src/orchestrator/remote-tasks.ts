/**
 * The submitter's side of the tasks this node handed to the cluster: each keeps the promises a local task keeps.
 * - **Bounded.** A delivery running on a node (its `started` notice came) is bounded by what its attempts may take
 *   there (`maxAttempts` x `timeoutMs` and the backoffs between, plus a grace for the result's way back): past it the
 *   task ends with TaskTimeoutError. A delivery whose node dies (its lease lapses) is over: the task waits for its
 *   next delivery (RedisBridge dead-letters it after `maxDeliveries`), as a task that was never taken does. Its
 *   `deadlineMs` bounds it all (TaskTimeoutError, scope `task`).
 * - **Waiting for a node.** While no live node serves its `requires`, it waits at most `waitForNodeMs`, then ends
 *   with NoCapableNodeError.
 * - **Cancellable.** `cancel()`, or the caller's AbortSignal, ends it with TaskCancelledError at once.
 * Whatever ends it here (and not a result) cancels it across the cluster (`bridge.cancel`): no node runs it
 * afterwards, and the node running it aborts its `ctx.signal`.
 *
 * The checks run on one sweep timer for all of them (every SWEEP_MS while any waits), not a timer each.
 */
import type { CommunicationBridge, HandOffNotice } from '../bridge/bridge.js';
import { NoCapableNodeError, TaskCancelledError, TaskTimeoutError } from '../errors.js';
import { MAX_TIMER_MS } from '../util/timers.js';

/** How often the bounds are checked, in ms. */
export const SWEEP_MS = 250;

/**
 * What a delivery's bound adds to the time its attempts may take: the notice comes on the serving node's next
 * heartbeat, and the result may wait out a reconnect on its way back.
 */
export const RESULT_GRACE_MS = 10_000;

/** What the supervisor needs to know of a remote task. */
export interface RemoteTaskSpec {
  readonly id: string;
  readonly requires: readonly string[];
  /** Per-attempt timeout in ms (`Infinity`: none). */
  readonly timeoutMs: number;
  readonly maxAttempts: number;
  /** The task's deadline in ms from now (`Infinity`: none). */
  readonly deadlineMs: number;
  /** The caller's signal, if any: aborting it cancels the task. */
  readonly signal: AbortSignal | undefined;
  /** The task's tenant, for calls by id with a tenant (see `cancel`). */
  readonly tenantId?: string;
}

/** A remote task waiting for its result. */
interface Tracked {
  readonly spec: RemoteTaskSpec;
  readonly reject: (error: unknown) => void;
  /** The node running its current delivery (from its notice), or `undefined` while it waits in the cluster. */
  node: string | undefined;
  /** The highest delivery heard of (0: none yet). */
  delivery: number;
  /** When the current delivery's notice came (performance.now()). */
  startedAt: number;
  /** When the current delivery is given up on (performance.now()); `Infinity` without a timeout. */
  runDue: number;
  /** Since when no live node serves its `requires` (performance.now()), or `undefined`. */
  noNodeSince: number | undefined;
}

/** The handle parts the supervisor adds to a hand-off. */
export interface Supervised {
  /** The task's result: the hand-off's, or the error a bound, a cancel or the deadline ended it with. */
  readonly result: Promise<unknown>;
  /** Cancels the task (see the file header); false once it ended. */
  cancel(reason?: unknown): boolean;
}

/** The remote tasks of one node (see the file header). */
export class RemoteTasks {
  readonly #bridge: CommunicationBridge;
  readonly #waitForNodeMs: () => number;
  /** The longest backoff between two attempts, in ms. */
  readonly #backoffMs: () => number;
  readonly #tracked = new Map<string, Tracked>();
  #timer: NodeJS.Timeout | undefined;

  /** What a delivery's bound adds for the notice's and the result's way (see RESULT_GRACE_MS). */
  readonly #graceMs: number;

  constructor(
    bridge: CommunicationBridge,
    waitForNodeMs: () => number,
    backoffMs: () => number,
    graceMs = RESULT_GRACE_MS,
  ) {
    this.#bridge = bridge;
    this.#waitForNodeMs = waitForNodeMs;
    this.#backoffMs = backoffMs;
    this.#graceMs = graceMs;
  }

  /** Remote tasks waiting for their result. */
  get size(): number {
    return this.#tracked.size;
  }

  /**
   * Supervises the hand-off `spec.id`, started by `handOff` (which gets the listener of its notices): returns its
   * result, bounded, and its cancel.
   */
  supervise(
    spec: RemoteTaskSpec,
    handOff: (onNotice: (notice: HandOffNotice) => void) => Promise<unknown>,
    onProgress?: (notice: HandOffNotice) => void,
  ): Supervised {
    let reject!: (error: unknown) => void;
    const ended = new Promise<never>((_, r) => (reject = r));
    const now = performance.now();
    const tracked: Tracked = {
      spec,
      reject,
      node: undefined,
      delivery: 0,
      startedAt: now,
      runDue: Infinity,
      noNodeSince: undefined,
    };
    this.#tracked.set(spec.id, tracked);
    let deadline: NodeJS.Timeout | undefined;
    // A deadline past what one Node timer holds is left to the result (it will have settled long before). Set before
    // the hand-off: the serving node's own deadline (a MemoryBridge node's, in this process) fires after this one.
    if (spec.deadlineMs !== Infinity && spec.deadlineMs <= MAX_TIMER_MS) {
      deadline = setTimeout(() => {
        this.#end(tracked, new TaskTimeoutError(spec.id, spec.deadlineMs, tracked.delivery, 'task'));
      }, spec.deadlineMs);
      deadline.unref(); // the bridge holds the process while the hand-off is out; stop() settles it
    }
    const deadlineAt = now + spec.deadlineMs;
    const result = handOff((notice) => {
      if (this.#tracked.get(spec.id) !== tracked) return; // ended here: what its node still says is not heard
      if (notice.kind === 'progress') {
        // A delivery that reports progress runs: its started notice may not have come yet.
        if (tracked.node === undefined || notice.delivery > tracked.delivery) this.#started(tracked, notice);
        onProgress?.(notice);
      } else this.#started(tracked, notice);
    }).catch((error: unknown) => {
      // The serving node's end at the same deadline (a node in this process may fire first): the task's deadline.
      if ((error as { code?: unknown } | null)?.code === 'TASK_TIMEOUT' && performance.now() >= deadlineAt - 5)
        throw new TaskTimeoutError(spec.id, spec.deadlineMs, tracked.delivery, 'task');
      throw error;
    });
    result.catch(() => {});
    const onAbort = (): void => {
      this.#end(tracked, new TaskCancelledError(spec.id, spec.signal?.reason));
    };
    spec.signal?.addEventListener('abort', onAbort, { once: true });
    const settled = Promise.race([result, ended]).finally(() => {
      clearTimeout(deadline);
      spec.signal?.removeEventListener('abort', onAbort);
      if (this.#tracked.get(spec.id) === tracked) this.#tracked.delete(spec.id);
      if (this.#tracked.size === 0) this.#stopSweep();
    });
    settled.catch(() => {});
    this.#startSweep();
    return {
      result: settled,
      cancel: (reason?: unknown) => {
        if (this.#tracked.get(spec.id) !== tracked) return false;
        this.#end(tracked, new TaskCancelledError(spec.id, reason));
        return true;
      },
    };
  }

  /**
   * Cancels the remote task `id` (see the file header); false when none waits with that id, or (with `tenantId`) it
   * is another tenant's.
   */
  cancel(id: string, reason?: unknown, tenantId?: string): boolean {
    const tracked = this.#tracked.get(id);
    if (!tracked || (tenantId !== undefined && tracked.spec.tenantId !== tenantId)) return false;
    this.#end(tracked, new TaskCancelledError(id, reason));
    return true;
  }

  /** Stops the sweep (the node stops: what still waits is settled by the bridge). */
  stop(): void {
    this.#stopSweep();
  }

  /** Ends a task here with `error` and cancels it across the cluster. */
  #end(tracked: Tracked, error: Error): void {
    const { id } = tracked.spec;
    if (this.#tracked.get(id) !== tracked) return;
    this.#tracked.delete(id);
    tracked.reject(error);
    if (this.#bridge.cancel) this.#bridge.cancel(id, error.message);
    else this.#bridge.forget?.(id);
  }

  /** A delivery of the task runs on `notice.node`: it is bounded from now on (see the file header). */
  #started(tracked: Tracked, notice: HandOffNotice): void {
    if (notice.delivery < tracked.delivery) return; // an earlier delivery's notice, late
    const now = performance.now();
    tracked.node = notice.node;
    tracked.delivery = notice.delivery;
    tracked.startedAt = now;
    tracked.noNodeSince = undefined;
    const { timeoutMs, maxAttempts } = tracked.spec;
    // This delivery's attempts: numbered after one per earlier delivery (as the serving node numbers them).
    const attempts = Math.max(1, maxAttempts - (notice.delivery - 1));
    tracked.runDue =
      timeoutMs === Infinity
        ? Infinity
        : now + attempts * timeoutMs + (attempts - 1) * this.#backoffMs() + this.#graceMs;
  }

  #startSweep(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.#sweep(), SWEEP_MS);
    this.#timer.unref();
  }

  #stopSweep(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Checks every task's bounds (see the file header). */
  #sweep(): void {
    const now = performance.now();
    const waitForNodeMs = this.#waitForNodeMs();
    /** Whether a live node serves a class, asked once per class per sweep. */
    const served = new Map<string, boolean>();
    const isLive = this.#bridge.isLive?.bind(this.#bridge);
    for (const tracked of [...this.#tracked.values()]) {
      const { spec } = tracked;
      if (tracked.node !== undefined) {
        if (isLive && !isLive(tracked.node)) {
          this.#nodeLost(tracked);
        } else {
          if (now >= tracked.runDue) {
            this.#end(tracked, new TaskTimeoutError(spec.id, spec.timeoutMs, tracked.delivery, 'attempt'));
          }
          continue;
        }
      }
      const key = spec.requires.join('\u0000');
      let serves = served.get(key);
      if (serves === undefined) served.set(key, (serves = this.#bridge.canAnyServe(spec.requires)));
      if (serves) {
        tracked.noNodeSince = undefined;
        continue;
      }
      tracked.noNodeSince ??= now;
      if (now - tracked.noNodeSince >= waitForNodeMs) {
        this.#end(tracked, new NoCapableNodeError(spec.id, spec.requires, now - tracked.noNodeSince));
      }
    }
  }

  /**
   * The node running the task's current delivery died (its lease lapsed): the task waits again, for the delivery the
   * bridge makes once that node's lease ran out (RedisBridge: to a live node, up to `maxDeliveries`, then it
   * dead-letters it), or for a node that serves it (`waitForNodeMs`).
   */
  #nodeLost(tracked: Tracked): void {
    tracked.node = undefined;
    tracked.runDue = Infinity;
  }
}
