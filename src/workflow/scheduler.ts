/**
 * Schedules: runs started on a cron expression or an interval, exactly once per tick across every node sharing the
 * store. Each node looks at each schedule when its next tick is due: it reads the schedule's last tick from the store,
 * works out the due ticks under the schedule's missed-tick policy (src/workflow/schedule.ts), starts each tick's run
 * under the tick's own run id (`schedule:<name>:<tick ISO>`: a second node's start of the same tick finds that run
 * and starts nothing), then records the last tick. No leader, no lock: the run id is the lock.
 */
import type { Task } from '../engine/task.js';
import { ValidationError } from '../errors.js';
import type { RunStore } from '../store/store.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import type { WorkflowEvents } from './events.js';
import { dueTicks, nextTick, resolveSchedule, tickRunId, type Schedule, type ScheduleSpec } from './schedule.js';

/** What a schedule starts at each tick. */
export type ScheduleTarget =
  | {
      /** A registered workflow's name. */
      readonly workflow: string;
      /** Its input (JSON), the same at every tick. */
      readonly input?: unknown;
      /** Which version. @default the one registered last */
      readonly version?: string;
      /** The runs' tenant. */
      readonly tenantId?: string;
    }
  | {
      /** A task (durable with a `store`): submitted at each tick. */
      readonly task: Task;
    };

/** A schedule as `schedules()` reports it. */
export interface ScheduleInfo {
  /** Its name. */
  readonly name: string;
  /** The schedule, validated. */
  readonly schedule: Schedule;
  /** Its next tick (epoch ms) as this node sees it, or `undefined` when it has no more. */
  readonly nextMs: number | undefined;
  /** Ticks this node started runs for. */
  readonly fired: number;
  /** Ticks skipped under the missed policy (seen by this node). */
  readonly skipped: number;
}

export interface SchedulerParts {
  readonly store: RunStore;
  readonly events: TypedEmitter<WorkflowEvents>;
  /** Starts a tick's run under `id`; resolves once it is stored (or found). */
  readonly startWorkflow: (
    name: string,
    input: unknown,
    options: { id: string; version?: string; tenantId?: string },
  ) => Promise<unknown>;
  /** Submits a tick's task under `id`; resolves once it is stored (or found). */
  readonly submitTask: (task: Task, id: string) => Promise<unknown>;
}

interface Entry {
  readonly schedule: Schedule;
  readonly target: ScheduleTarget;
  timer: NodeJS.Timeout | undefined;
  nextMs: number | undefined;
  fired: number;
  skipped: number;
  busy: boolean;
  retryMs: number;
}

/** Looked at again at least this often, whatever its next tick (clock changes, a tick recorded by another node). */
const MAX_WAIT_MS = 60_000;
const MAX_RETRY_MS = 30_000;

export class Scheduler {
  readonly #parts: SchedulerParts;
  readonly #entries = new Map<string, Entry>();
  #running = false;

  constructor(parts: SchedulerParts) {
    this.#parts = parts;
  }

  /** Adds a schedule (ValidationError for a bad name, spec or target, or a name taken). */
  add(name: string, spec: ScheduleSpec, target: ScheduleTarget): void {
    const schedule = resolveSchedule(name, spec);
    if (this.#entries.has(name)) {
      throw new ValidationError('name', `A schedule named '${name}' is registered already: give each its own name`);
    }
    if (target === null || typeof target !== 'object' || (!('workflow' in target) && !('task' in target))) {
      throw new ValidationError('target', 'A schedule starts { workflow, input } or { task } at each tick');
    }
    if ('workflow' in target && (typeof target.workflow !== 'string' || target.workflow === '')) {
      throw new ValidationError('target.workflow', "A schedule's workflow is a registered workflow's name");
    }
    const entry: Entry = {
      schedule,
      target,
      timer: undefined,
      nextMs: undefined,
      fired: 0,
      skipped: 0,
      busy: false,
      retryMs: 0,
    };
    this.#entries.set(name, entry);
    if (this.#running) void this.#look(entry);
  }

  /** Removes a schedule from this node (other nodes that have it still fire it). */
  remove(name: string): boolean {
    const entry = this.#entries.get(name);
    if (!entry) return false;
    clearTimeout(entry.timer);
    this.#entries.delete(name);
    return true;
  }

  start(): void {
    this.#running = true;
    for (const entry of this.#entries.values()) void this.#look(entry);
  }

  stop(): void {
    this.#running = false;
    for (const entry of this.#entries.values()) {
      clearTimeout(entry.timer);
      entry.timer = undefined;
    }
  }

  list(): ScheduleInfo[] {
    return [...this.#entries.values()].map((e) => ({
      name: e.schedule.name,
      schedule: e.schedule,
      nextMs: e.nextMs,
      fired: e.fired,
      skipped: e.skipped,
    }));
  }

  /** Fires what is due now, records the last tick, and sets the timer for the next. */
  async #look(entry: Entry): Promise<void> {
    if (!this.#running || entry.busy || this.#entries.get(entry.schedule.name) !== entry) return;
    entry.busy = true;
    clearTimeout(entry.timer);
    entry.timer = undefined;
    const { schedule } = entry;
    let wait: number;
    try {
      const last = await this.#parts.store.lastTick(schedule.name);
      const now = Date.now();
      const due = dueTicks(schedule, last, now);
      for (const tick of due.fire) {
        const runId = tickRunId(schedule.name, tick);
        await this.#fire(entry.target, runId);
        entry.fired++;
        this.#parts.events.emit('schedule:fired', { schedule: schedule.name, tick, runId });
      }
      if (due.skipped) {
        entry.skipped += due.skipped.count;
        this.#parts.events.emit('schedule:skipped', { schedule: schedule.name, ...due.skipped });
      }
      if (last === undefined || due.lastTickMs > last)
        await this.#parts.store.recordTick(schedule.name, due.lastTickMs);
      entry.nextMs = due.nextMs ?? nextTick(schedule, Math.max(now, due.lastTickMs));
      entry.retryMs = 0;
      wait = entry.nextMs === undefined ? MAX_WAIT_MS : Math.min(MAX_WAIT_MS, Math.max(0, entry.nextMs - Date.now()));
    } catch (error) {
      this.#parts.events.emit('schedule:failed', { schedule: schedule.name, error });
      entry.retryMs = Math.min(MAX_RETRY_MS, entry.retryMs === 0 ? 500 : entry.retryMs * 2);
      wait = entry.retryMs;
    } finally {
      entry.busy = false;
    }
    if (!this.#running || this.#entries.get(schedule.name) !== entry) return;
    // Not unref'd: a process whose only work is its schedules (a cron service) stays up until stop().
    entry.timer = setTimeout(() => void this.#look(entry), wait);
  }

  #fire(target: ScheduleTarget, runId: string): Promise<unknown> {
    if ('workflow' in target) {
      return this.#parts.startWorkflow(target.workflow, target.input, {
        id: runId,
        ...(target.version === undefined ? {} : { version: target.version }),
        ...(target.tenantId === undefined ? {} : { tenantId: target.tenantId }),
      });
    }
    return this.#parts.submitTask(target.task, runId);
  }
}
