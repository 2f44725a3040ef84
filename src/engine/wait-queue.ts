/**
 * The waiting queue of one requirement class.
 *
 * Priority levels (highest first), each a ring of tenant lanes served round-robin, each lane a FIFO list
 * linked through the task records themselves. Push, remove and take are O(1) within a level plus a binary
 * search over the few distinct levels, so a deep backlog of random priorities stays fast (no sorted-array
 * insert). Aging: a task that has sat in its level for `agingIntervalMs` moves up one level; the pass runs
 * lazily when the queue is read, costs O(lanes + tasks moved), and keeps every lane in arrival order.
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
  /** Levels by descending priority; only non-empty levels are kept. */
  readonly #levels: Level[] = [];
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
    return this.#levels[0]!.current!.head;
  }

  /** Removes and returns the next task: highest level, next tenant in turn, oldest of that tenant. */
  take(now: number): TaskRecord | undefined {
    const task = this.peek(now);
    if (!task) return undefined;
    const lane = task.lane as Lane;
    const level = lane.level;
    // Advance the ring before unlinking, so the next tenant is served next.
    level.current = lane.nextLane;
    this.#unlink(task, lane);
    this.#size--;
    return task;
  }

  /** Removes and returns every waiting task (stop without drain). */
  drain(): TaskRecord[] {
    const out: TaskRecord[] = [];
    for (const level of this.#levels) {
      for (const lane of level.lanes.values()) {
        for (let t = lane.head; t; t = t.next) out.push(t);
      }
    }
    for (const t of out) {
      t.lane = undefined;
      t.prev = t.next = undefined;
    }
    this.#levels.length = 0;
    this.#size = 0;
    this.#nextAgingAt = Infinity;
    return out;
  }

  /** Effective level of the next task (its priority plus what it gained by aging), for comparing classes. */
  headLevel(): number {
    return this.#levels[0]?.priority ?? -Infinity;
  }

  #level(priority: number): Level {
    const levels = this.#levels;
    // Binary search for the first level with priority <= the wanted one (levels are descending).
    let lo = 0;
    let hi = levels.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (levels[mid]!.priority > priority) lo = mid + 1;
      else hi = mid;
    }
    const found = levels[lo];
    if (found && found.priority === priority) return found;
    const level = new Level(priority);
    levels.splice(lo, 0, level);
    return level;
  }

  #append(task: TaskRecord, level: Level): void {
    task.queueLevel = level.priority;
    let lane = level.lanes.get(task.tenant);
    if (!lane) {
      lane = new Lane(task.tenant, level);
      level.lanes.set(task.tenant, lane);
    }
    if (!lane.head) this.#linkLane(lane, level);
    task.lane = lane;
    task.next = undefined;
    task.prev = lane.tail;
    if (lane.tail) lane.tail.next = task;
    else lane.head = task;
    lane.tail = task;
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
      if (level.size === 0) {
        const i = this.#levels.indexOf(level);
        if (i >= 0) this.#levels.splice(i, 1);
      }
    }
    if (this.#levels.length === 0) this.#nextAgingAt = Infinity;
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

  /** Moves every task that sat a full interval in its level up one level. Highest level first, so none moves twice. */
  #age(now: number): void {
    const interval = this.#agingIntervalMs;
    const threshold = now - interval;
    let oldest = Infinity;
    for (const level of [...this.#levels]) {
      for (const lane of [...level.lanes.values()]) {
        while (lane.head && lane.head.queuedAt <= threshold) {
          const task = lane.head;
          this.#unlink(task, lane);
          task.queuedAt = now;
          this.#append(task, this.#level(level.priority + 1));
        }
        if (lane.head && lane.head.queuedAt < oldest) oldest = lane.head.queuedAt;
      }
    }
    this.#nextAgingAt = this.#size === 0 ? Infinity : Math.min(oldest, now) + interval;
  }
}
