/**
 * The waiting queue of one requirement class.
 *
 * Priority levels, each a ring of tenant lanes served round-robin, each lane a FIFO list linked through the
 * task records themselves. Levels live in a map, and their priorities in a binary max-heap with lazy deletion:
 * push, remove and take cost O(1) within a level plus O(log L) for a new or emptied level, so a deep backlog
 * of random priorities stays fast (no sorted-array insert). Aging: a task gains one level for every
 * `agingIntervalMs` it waited; the pass runs lazily when the queue is read (at most once per interval) and
 * costs O(levels + lanes + tasks moved).
 */
import type { TaskRecord } from './task.js';

class Lane {
  readonly tenant: string;
  readonly level: Level;
  head: TaskRecord | undefined;
  tail: TaskRecord | undefined;
  // Ring of non-empty lanes within the level.
  prevLane: Lane = this;
  nextLane: Lane = this;

  constructor(tenant: string, level: Level) {
    this.tenant = tenant;
    this.level = level;
  }
}

class Level {
  readonly priority: number;
  readonly lanes = new Map<string, Lane>();
  /** The lane whose head is served next; undefined when the level is empty. */
  current: Lane | undefined;
  size = 0;

  constructor(priority: number) {
    this.priority = priority;
  }
}

export class WaitQueue {
  readonly #levels = new Map<number, Level>();
  /** Max-heap of the priorities in `#levels`; may hold stale entries of emptied levels, skipped on read. */
  readonly #heap: number[] = [];
  readonly #agingIntervalMs: number;
  #size = 0;
  #nextAgingAt = Infinity;
  #seq = 0;

  constructor(agingIntervalMs: number) {
    this.#agingIntervalMs = agingIntervalMs;
  }

  get size(): number {
    return this.#size;
  }

  push(task: TaskRecord, now: number): void {
    task.queuedAt = now;
    task.seq = ++this.#seq;
    this.#append(task, this.#level(task.spec.priority));
    this.#size++;
    if (this.#nextAgingAt === Infinity) this.#nextAgingAt = now + this.#agingIntervalMs;
  }

  /** Unlinks a waiting task (cancel, timeout while waiting). O(1). */
  remove(task: TaskRecord): void {
    const lane = task.lane as Lane | undefined;
    if (!lane) return;
    this.#unlink(task, lane);
    this.#size--;
  }

  /** The task that `take` would return, without removing it. */
  peek(now: number): TaskRecord | undefined {
    if (this.#size === 0) return undefined;
    if (now >= this.#nextAgingAt) this.#age(now);
    return this.#top()?.current?.head;
  }

  /** Removes and returns the next task: highest level, next tenant in turn, oldest of that tenant. */
  take(now: number): TaskRecord | undefined {
    const task = this.peek(now);
    if (!task) return undefined;
    const lane = task.lane as Lane;
    // Advance the ring before unlinking, so the next tenant is served next.
    lane.level.current = lane.nextLane;
    this.#unlink(task, lane);
    this.#size--;
    return task;
  }

  /** Removes and returns every waiting task (stop without drain, stranded tasks). */
  drain(): TaskRecord[] {
    const out: TaskRecord[] = [];
    for (const level of this.#levels.values()) {
      for (const lane of level.lanes.values()) {
        for (let t = lane.head; t; t = t.next) out.push(t);
      }
    }
    for (const t of out) {
      t.lane = undefined;
      t.prev = t.next = undefined;
    }
    this.#levels.clear();
    this.#heap.length = 0;
    this.#size = 0;
    this.#nextAgingAt = Infinity;
    return out;
  }

  /** Effective level of the next task (its priority plus what it gained by aging). */
  headLevel(): number {
    return this.#top()?.priority ?? -Infinity;
  }

  /** The highest non-empty level, dropping stale heap entries on the way. */
  #top(): Level | undefined {
    const heap = this.#heap;
    while (heap.length > 0) {
      const level = this.#levels.get(heap[0]!);
      if (level && level.size > 0) return level;
      this.#heapPop();
    }
    return undefined;
  }

  #level(priority: number): Level {
    let level = this.#levels.get(priority);
    if (!level) {
      level = new Level(priority);
      this.#levels.set(priority, level);
      if (this.#heap.length > 2 * this.#levels.size + 64) {
        // Too many stale entries of emptied levels (churn below the top): rebuild from the live levels.
        this.#heap.length = 0;
        for (const p of this.#levels.keys()) this.#heapPush(p);
      } else {
        this.#heapPush(priority);
      }
    }
    return level;
  }

  /** Links a task into its tenant's lane, keeping the lane in `queuedAt` order (aged tasks may be older than the tail). */
  #append(task: TaskRecord, level: Level, hint?: TaskRecord): void {
    task.queueLevel = level.priority;
    let lane = level.lanes.get(task.tenant);
    if (!lane) {
      lane = new Lane(task.tenant, level);
      level.lanes.set(task.tenant, lane);
    }
    if (!lane.head) this.#linkLane(lane, level);
    task.lane = lane;
    // Aged tasks from one lane arrive in `queuedAt` order: walking on from the last one placed keeps a pass
    // O(lane + moved) instead of O(lane × moved).
    let after: TaskRecord | undefined;
    if (hint && hint.lane === lane && hint.queuedAt <= task.queuedAt) {
      after = hint;
      while (after.next && after.next.queuedAt <= task.queuedAt) after = after.next;
    } else {
      after = lane.tail;
      while (after && after.queuedAt > task.queuedAt) after = after.prev;
    }
    task.prev = after;
    task.next = after ? after.next : lane.head;
    if (task.next) task.next.prev = task;
    else lane.tail = task;
    if (after) after.next = task;
    else lane.head = task;
    level.size++;
  }

  #unlink(task: TaskRecord, lane: Lane): void {
    if (task.prev) task.prev.next = task.next;
    else lane.head = task.next;
    if (task.next) task.next.prev = task.prev;
    else lane.tail = task.prev;
    task.prev = task.next = undefined;
    task.lane = undefined;
    const level = lane.level;
    level.size--;
    if (!lane.head) {
      this.#unlinkLane(lane, level);
      level.lanes.delete(lane.tenant);
      // The heap entry goes stale and is dropped when it reaches the top: O(1) here.
      if (level.size === 0) this.#levels.delete(level.priority);
    }
    if (this.#levels.size === 0) {
      this.#heap.length = 0;
      this.#nextAgingAt = Infinity;
    }
  }

  /** Inserts a lane into the level's ring just before the current one (it is served last in this round). */
  #linkLane(lane: Lane, level: Level): void {
    const cur = level.current;
    if (!cur) {
      lane.prevLane = lane.nextLane = lane;
      level.current = lane;
      return;
    }
    lane.nextLane = cur;
    lane.prevLane = cur.prevLane;
    cur.prevLane.nextLane = lane;
    cur.prevLane = lane;
  }

  #unlinkLane(lane: Lane, level: Level): void {
    if (lane.nextLane === lane) {
      level.current = undefined;
    } else {
      lane.prevLane.nextLane = lane.nextLane;
      lane.nextLane.prevLane = lane.prevLane;
      if (level.current === lane) level.current = lane.nextLane;
    }
    lane.prevLane = lane.nextLane = lane;
  }

  /**
   * Gives every task one level per full interval it waited in its level, keeping the remainder, so a task is
   * promoted as often as it earned however rarely the queue is read. A promoted task's `queuedAt` moves forward
   * by the intervals it spent, so no task is promoted twice in one pass whatever the visiting order.
   */
  #age(now: number): void {
    const interval = this.#agingIntervalMs;
    const threshold = now - interval;
    const lastPlaced = new Map<unknown, TaskRecord>();
    for (const level of [...this.#levels.values()]) {
      for (const lane of [...level.lanes.values()]) {
        while (lane.head && lane.head.queuedAt <= threshold) {
          const task = lane.head;
          const earned = Math.floor((now - task.queuedAt) / interval);
          this.#unlink(task, lane);
          task.queuedAt += earned * interval;
          const target = this.#level(level.priority + earned);
          this.#append(task, target, lastPlaced.get(target.lanes.get(task.tenant)));
          lastPlaced.set(task.lane, task);
        }
      }
    }
    let oldest = Infinity;
    for (const level of this.#levels.values()) {
      for (const lane of level.lanes.values())
        if (lane.head && lane.head.queuedAt < oldest) oldest = lane.head.queuedAt;
    }
    this.#nextAgingAt = oldest === Infinity ? Infinity : oldest + interval;
  }

  #heapPush(priority: number): void {
    const heap = this.#heap;
    let i = heap.push(priority) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]! >= priority) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = priority;
  }

  #heapPop(): void {
    const heap = this.#heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let i = 0;
    const n = heap.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && heap[r]! > heap[l]! ? r : l;
      if (heap[child]! <= last) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
}
