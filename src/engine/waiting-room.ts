/**
 * The waiting room: where tasks that found no free agent sit, and which of them a freed agent takes next.
 *
 * Tasks wait by requirement class (one per set of required capabilities, in any order), each class a
 * {@link WaitQueue} (priority levels, tenants round-robin, aging). Late binding: when an agent frees, it takes the
 * best head among the classes it can serve (highest effective level, then longest waiting), so no task waits behind
 * a busy agent while a matching one idles. Which classes an agent can serve is cached per agent until a class is
 * added or swept. A class whose capabilities carry rate limits is gated: its tasks start only while every one of its
 * limiters has room. Whether any agent or pool could ever serve a class is cached per pool generation.
 *
 * The room keeps the tasks and the count; the engine decides when a task enters or leaves it.
 */
import type { AgentPoolManager } from '../pool/agent-pool-manager.js';
import type { AgentRecord } from '../pool/agent-record.js';
import type { RateLimiter } from '../resources/rate-limiter.js';
import type { ResourceManager } from '../resources/resource-manager.js';
import { requirementSignature, type TaskRecord } from './task.js';
import { WaitQueue } from './wait-queue.js';
import type { WaitingDemand } from '../pool/pool.js';

/** Requirement classes kept before the empty ones are swept. */
const MAX_IDLE_CLASSES = 1_024;

/** One requirement class: the tasks waiting for agents that hold the same set of capabilities. */
export class TaskClass {
  readonly signature: string;
  readonly requires: readonly string[];
  readonly queue: WaitQueue;
  /** Rate limits on its capabilities: a task of this class starts only when every one has room. */
  readonly limiters: readonly RateLimiter[];
  /** The pool generation at which `servable` was last asked. */
  servableAt = -1;
  /** Whether an agent or a pool could serve the class, as of `servableAt`. */
  servable = false;

  constructor(
    signature: string,
    requires: readonly string[],
    agingIntervalMs: number,
    limiters: readonly RateLimiter[],
  ) {
    this.signature = signature;
    this.requires = requires;
    this.queue = new WaitQueue(agingIntervalMs);
    this.limiters = limiters;
  }
}

/** The classes an agent can serve, as of a version of the class set. */
interface ServableClasses {
  readonly version: number;
  readonly classes: TaskClass[];
}

export class WaitingRoom {
  readonly #agingIntervalMs: number;
  readonly #pools: Pick<AgentPoolManager, 'generation' | 'canEverServe'>;
  readonly #resources: Pick<ResourceManager, 'limitersFor'>;
  readonly #classes = new Map<string, TaskClass>();
  /** Bumped when a class is added or swept: invalidates every agent's `#servable` entry. */
  #classesVersion = 0;
  /** Per agent, the classes it can serve, as of `#classesVersion`. */
  readonly #servable = new WeakMap<AgentRecord, ServableClasses>();
  /** Tasks in the room; a class being drained counts its tasks until each is handed out. */
  #waiting = 0;

  constructor(
    agingIntervalMs: number,
    pools: Pick<AgentPoolManager, 'generation' | 'canEverServe'>,
    resources: Pick<ResourceManager, 'limitersFor'>,
  ) {
    this.#agingIntervalMs = agingIntervalMs;
    this.#pools = pools;
    this.#resources = resources;
  }

  /** Tasks waiting now (held ones included). */
  get waiting(): number {
    return this.#waiting;
  }

  /** Every class, empty ones included, in the order they were made. */
  classes(): IterableIterator<TaskClass> {
    return this.#classes.values();
  }

  /** The class of a task, made on first use. */
  classFor(task: TaskRecord): TaskClass {
    let klass = this.#classes.get(task.requireSig);
    if (!klass) {
      if (this.#classes.size >= MAX_IDLE_CLASSES) {
        // Ad-hoc requirement sets must not grow memory without end: forget the classes nobody waits in.
        for (const [sig, c] of this.#classes) if (c.queue.size === 0) this.#classes.delete(sig);
      }
      klass = new TaskClass(
        task.requireSig,
        task.spec.requires,
        this.#agingIntervalMs,
        this.#resources.limitersFor(task.spec.requires),
      );
      this.#classes.set(task.requireSig, klass);
      this.#classesVersion++;
    }
    return klass;
  }

  /** Tasks waiting in the class of requirement signature `signature`. */
  waitingIn(signature: string): number {
    return this.#classes.get(signature)?.queue.size ?? 0;
  }

  /** Tasks waiting in the class of `requires` (any order of the capabilities). */
  waitingFor(requires: readonly string[]): number {
    return this.waitingIn(requirementSignature(requires));
  }

  /** Waiting tasks per requirement class (signature `''` is "no requirement"). */
  depths(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const c of this.#classes.values()) if (c.queue.size > 0) out[c.requires.join('+') || '*'] = c.queue.size;
    return out;
  }

  /** Whether an agent or a pool could ever serve the class (cached per pool generation). */
  canEverServe(klass: TaskClass): boolean {
    const generation = this.#pools.generation;
    if (klass.servableAt !== generation) {
      klass.servable = this.#pools.canEverServe(klass.requires);
      klass.servableAt = generation;
    }
    return klass.servable;
  }

  /** Puts a task in its class's queue; returns the class. */
  add(task: TaskRecord, now: number): TaskClass {
    const klass = this.classFor(task);
    klass.queue.push(task, now);
    this.#waiting++;
    return klass;
  }

  /** Takes a waiting task out of its queue (cancel, deadline); a no-op for one not in a queue. */
  remove(task: TaskRecord): void {
    const klass = this.#classes.get(task.requireSig);
    if (klass && task.lane !== undefined) {
      klass.queue.remove(task);
      this.#waiting--;
    }
  }

  /** Takes the next task of a class (its queue must not be empty). */
  take(klass: TaskClass, now: number): TaskRecord {
    const task = klass.queue.take(now)!;
    this.#waiting--;
    return task;
  }

  /**
   * Late binding: takes the best waiting task that `agent` can serve and whose limits have room (highest effective
   * level, then longest waiting in it), or `undefined` when there is none.
   */
  takeFor(agent: AgentRecord, now: number): TaskRecord | undefined {
    let cached = this.#servable.get(agent);
    if (!cached || cached.version !== this.#classesVersion) {
      const classes: TaskClass[] = [];
      for (const c of this.#classes.values()) if (agent.holdsAll(c.requires)) classes.push(c);
      cached = { version: this.#classesVersion, classes };
      this.#servable.set(agent, cached);
    }
    let bestClass: TaskClass | undefined;
    let bestTask: TaskRecord | undefined;
    for (const c of cached.classes) {
      const head = c.queue.peek(now);
      if (!head) continue;
      if (c.limiters.length > 0 && !this.limitsAllow(c, now)) continue;
      // Highest effective level first; on a tie, the task that has waited longest in that level.
      if (
        !bestTask ||
        head.queueLevel > bestTask.queueLevel ||
        (head.queueLevel === bestTask.queueLevel && head.queuedAt < bestTask.queuedAt)
      ) {
        bestTask = head;
        bestClass = c;
      }
    }
    if (!bestClass) return undefined;
    return this.take(bestClass, now);
  }

  /**
   * Empties a class, handing out its tasks one at a time: each leaves the waiting count as it is handed out, so the
   * count stays true while the caller ends the tasks one by one.
   */
  *drain(klass: TaskClass): Generator<TaskRecord, void, undefined> {
    for (const task of klass.queue.drain()) {
      this.#waiting--;
      yield task;
    }
  }

  /** Classes with tasks that could start now if an agent were free: their limits have room. */
  *demand(now: number): Generator<WaitingDemand, void, undefined> {
    for (const c of this.#classes.values()) {
      if (c.queue.size > 0 && !this.heldByLimits(c, now)) yield { requires: c.requires, waiting: c.queue.size };
    }
  }

  /** Whether every rate limit of the class has room now; if not, asks the blocking limiter for a wake-up. */
  limitsAllow(klass: TaskClass, now: number): boolean {
    for (const limiter of klass.limiters) {
      if (!limiter.ready(now)) {
        limiter.want(now);
        return false;
      }
    }
    return true;
  }

  /** Whether a rate limit of the class has no room now (without asking for a wake-up). */
  heldByLimits(klass: TaskClass, now: number): boolean {
    for (const limiter of klass.limiters) if (!limiter.ready(now)) return true;
    return false;
  }
}
