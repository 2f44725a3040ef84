/**
 * Schedules: when a schedule's ticks fall, which of them to fire after a pause, and the run id of each tick.
 *
 * Pure functions of their arguments (no clock, no timers, no store), so that every node sharing a store computes the
 * same ticks and the same run ids: a tick fired by two nodes is one run, because the store refuses the second insert
 * of the same id. Cron expressions are parsed and stepped by croner, in an IANA timezone (UTC unless given; never the
 * host's zone, which may differ between nodes).
 *
 * Daylight saving time, for cron schedules:
 * - a job at fixed times (`30 2 * * *`, `0 9,17 * * *`: no `*` and no step in the second, minute and hour fields)
 *   whose time falls in the hour skipped in spring fires once, at the first valid time after the gap (03:00 where
 *   the clocks jump from 02:00 to 03:00), and once only on the day an hour repeats in autumn, at the first occurrence;
 * - an interval job (`*\/15 * * * *`, `0 * * * *`) follows real time: no tick falls in the skipped hour, which does
 *   not exist, and the repeated hour has its ticks twice, so it fires every 15 (or 60) real minutes across both days.
 *
 * `everyMs` schedules are plain arithmetic on epoch milliseconds, `startAt + k × everyMs`, and know no timezones.
 */
import { Cron } from 'croner';
import { ValidationError } from '../errors.js';
import { describe, expectObject, keysOf, own, rejectUnknownKeys } from '../util/validate.js';

/**
 * What to do with the ticks that fell while no node was running the schedule (every node down, or the store
 * unreachable), found when the next node looks at it again:
 * - `'skip'`: fire only the latest of them, once, and report how many older ones were skipped;
 * - `{ catchUp: n }`: fire the `n` latest of them (1 to 100), oldest first, and report the older ones as skipped.
 *
 * Either way the work after an outage is bounded: a minute schedule after a day down starts one run (or `n`), never
 * 1,440. `{ catchUp: 1 }` is the same as `'skip'`.
 */
export type MissedTickPolicy =
  | 'skip'
  | {
      /** How many of the latest missed ticks to fire, 1 to {@link MAX_CATCH_UP}. */
      readonly catchUp: number;
    };

/** The most ticks `{ catchUp: n }` may fire at once after an outage. */
export const MAX_CATCH_UP = 100;

/** The latest tick a schedule can have: the last millisecond of the year 9999 (so every tick has a 24-character ISO form). */
export const MAX_TICK_MS = 253_402_300_799_999;

/** The longest schedule name, in UTF-16 code units. */
export const MAX_SCHEDULE_NAME_LENGTH = 200;

/** The most ticks one {@link ticksBetween} call may return. */
export const MAX_TICKS_PER_CALL = 10_000;

/**
 * How often a schedule ticks: a cron expression in a timezone, or a fixed interval.
 *
 * @example
 * ```ts
 * const nightly: ScheduleSpec = { cron: '30 2 * * *', timezone: 'Europe/Berlin', missed: { catchUp: 3 } };
 * const often: ScheduleSpec = { everyMs: 60_000 };
 * ```
 */
export type ScheduleSpec = (CronScheduleSpec | IntervalScheduleSpec) & ScheduleSpecCommon;

/** A schedule of a cron expression; see {@link ScheduleSpec}. */
export interface CronScheduleSpec {
  /**
   * Five fields (minute hour day-of-month month day-of-week) or six (a seconds field first), or a nickname such as
   * `@daily`. Names (`MON-FRI`, `JAN`), `L`, `W` and `#` are understood. A day-of-month and a day-of-week that are
   * both restricted match either one, as in Vixie cron.
   */
  readonly cron: string;
  /** The IANA timezone the expression's times are read in, such as `Europe/Berlin`. @default 'UTC' */
  readonly timezone?: string;
  /** Not with `cron`. */
  readonly everyMs?: never;
}

/** A schedule of a fixed interval; see {@link ScheduleSpec}. */
export interface IntervalScheduleSpec {
  /** The interval between ticks, in ms: an integer of at least 1,000. */
  readonly everyMs: number;
  /** Not with `everyMs`: an interval is the same in every timezone. */
  readonly cron?: never;
  /** Not with `everyMs`. */
  readonly timezone?: never;
}

/** The options of {@link ScheduleSpec} that both kinds have. */
export interface ScheduleSpecCommon {
  /** What to do with ticks missed while no node ran the schedule; see {@link MissedTickPolicy}. @default 'skip' */
  readonly missed?: MissedTickPolicy;
  /**
   * No tick falls before this time (epoch ms). An interval schedule ticks at `startAt`, `startAt + everyMs`, … : its
   * anchor, the same on every node whatever time each one started. @default 0 (the Unix epoch)
   */
  readonly startAt?: number;
}

/** A validated schedule, from {@link resolveSchedule}; pass it to the other functions of this module. */
export type Schedule = CronSchedule | IntervalSchedule;

/** What both kinds of {@link Schedule} hold. */
export interface ScheduleBase {
  /** The schedule's name, unique among the schedules sharing a store. */
  readonly name: string;
  /** No tick falls before this time (epoch ms); an interval schedule's anchor. */
  readonly startAt: number;
  /** The policy for ticks missed while no node ran the schedule. */
  readonly missed: MissedTickPolicy;
}

/** A validated cron schedule. */
export interface CronSchedule extends ScheduleBase {
  /** Which kind of schedule. */
  readonly kind: 'cron';
  /** The cron expression, as given. */
  readonly cron: string;
  /** The IANA timezone, in its canonical spelling (`UTC` when none was given). */
  readonly timezone: string;
}

/** A validated interval schedule. */
export interface IntervalSchedule extends ScheduleBase {
  /** Which kind of schedule. */
  readonly kind: 'interval';
  /** The interval between ticks, in ms. */
  readonly everyMs: number;
}

/**
 * Ticks due but not fired under a schedule's {@link MissedTickPolicy}, reported so that an outage is visible (a log
 * line, a metric) even though its ticks did not run.
 */
export interface SkippedTicks {
  /** How many ticks were skipped; a lower bound when `exact` is false. */
  readonly count: number;
  /**
   * False when a cron schedule missed so many ticks that counting them all would be unbounded work: `count` is then
   * the first 100 counted. Interval schedules always count exactly.
   */
  readonly exact: boolean;
  /** The first tick skipped (epoch ms). */
  readonly firstMs: number;
  /** The last tick skipped (epoch ms). */
  readonly lastMs: number;
}

/** What {@link dueTicks} decided. */
export interface DueTicks {
  /** The ticks to fire now, oldest first (epoch ms); start each as the run {@link tickRunId} names. */
  readonly fire: readonly number[];
  /** The due ticks left unfired under the schedule's missed policy, or undefined when none was. */
  readonly skipped: SkippedTicks | undefined;
  /**
   * The value to store as the schedule's last tick once the runs of `fire` are stored: the latest tick fired, or,
   * when nothing was fired, the `lastTickMs` given (`nowMs` when none was given). Store it only when it is later than
   * the stored one (a compare-and-set, or `GREATEST` in SQL): two nodes may store theirs in either order.
   */
  readonly lastTickMs: number;
  /**
   * The next tick to fire, after both `nowMs` and the returned `lastTickMs`: when to look again. Undefined when the
   * schedule has no more ticks.
   */
  readonly nextMs: number | undefined;
}

/** Every field a {@link ScheduleSpec} may have, of either kind. */
type AnyScheduleSpec = Omit<CronScheduleSpec, 'everyMs'> &
  Omit<IntervalScheduleSpec, 'cron' | 'timezone'> &
  ScheduleSpecCommon;

const SPEC_KEYS = keysOf<AnyScheduleSpec>({
  cron: true,
  timezone: true,
  everyMs: true,
  missed: true,
  startAt: true,
});
const CATCH_UP_KEYS = new Set(['catchUp']);

/** How many skipped ticks of a cron schedule are counted one by one at most. */
const SKIP_COUNT_LIMIT = 100;

/** The croner instance of each cron schedule resolved here: schedules stay plain frozen data. */
const patterns = new WeakMap<Schedule, Cron>();

/**
 * Validates a schedule's name and spec and returns the schedule the other functions take. Throws
 * {@link ValidationError} naming the wrong field (`name`, `schedule.cron`, `schedule.timezone`, `schedule.everyMs`,
 * `schedule.startAt`, `schedule.missed`, …) with what to change.
 *
 * @example
 * ```ts
 * const schedule = resolveSchedule('nightly-digest', { cron: '30 2 * * *', timezone: 'Europe/Berlin' });
 * nextTick(schedule, Date.now()); // the next 02:30 in Berlin, as epoch ms
 * ```
 */
export function resolveSchedule(name: string, spec: ScheduleSpec): Schedule {
  checkName(name, 'name');
  const field = 'schedule';
  const o = expectObject(spec, field);
  rejectUnknownKeys(o, SPEC_KEYS, field);
  const cron = own(o, 'cron');
  const everyMs = own(o, 'everyMs');
  if ((cron === undefined) === (everyMs === undefined)) {
    throw new ValidationError(
      field,
      cron === undefined
        ? 'Give `schedule.cron` (a cron expression such as "30 2 * * *") or `schedule.everyMs` (an interval in ms)'
        : 'Give either `schedule.cron` or `schedule.everyMs`, not both',
    );
  }
  const startAt = own(o, 'startAt') === undefined ? 0 : checkTime(own(o, 'startAt'), `${field}.startAt`);
  const missed = resolveMissed(own(o, 'missed'), `${field}.missed`);
  const timezone = own(o, 'timezone');
  if (everyMs !== undefined) {
    if (timezone !== undefined) {
      throw new ValidationError(
        `${field}.timezone`,
        '`schedule.timezone` applies to `schedule.cron` only: an interval is the same in every timezone; remove it',
      );
    }
    if (typeof everyMs !== 'number' || !Number.isSafeInteger(everyMs) || everyMs < 1_000 || everyMs > MAX_TICK_MS) {
      throw new ValidationError(
        `${field}.everyMs`,
        `Expected \`${field}.everyMs\` to be a whole number of milliseconds of at least 1000 (a schedule ticks at ` +
          `most once a second), got ${describe(everyMs)}`,
      );
    }
    return Object.freeze({ kind: 'interval', name, everyMs, startAt, missed });
  }
  if (typeof cron !== 'string' || cron.trim().length === 0) {
    throw new ValidationError(
      `${field}.cron`,
      `Expected \`${field}.cron\` to be a cron expression such as "30 2 * * *", got ${describe(cron)}`,
    );
  }
  const zone = resolveTimezone(timezone, `${field}.timezone`);
  const pattern = parseCron(cron, zone, `${field}.cron`);
  const schedule: CronSchedule = Object.freeze({ kind: 'cron', name, cron, timezone: zone, startAt, missed });
  patterns.set(schedule, pattern);
  if (nextTick(schedule, startAt - 1) === undefined) {
    throw new ValidationError(
      `${field}.cron`,
      `The cron expression ${describe(cron)} matches no time from startAt on (a day the month never has, such as ` +
        'the 31st of February?); change its day-of-month or month field',
    );
  }
  return schedule;
}

/**
 * The schedule's first tick strictly after `afterMs` (epoch ms), or undefined when it has none (after
 * {@link MAX_TICK_MS}).
 *
 * @example
 * ```ts
 * const every5 = resolveSchedule('poll', { everyMs: 5_000 });
 * nextTick(every5, 12_000); // 15_000
 * nextTick(every5, 15_000); // 20_000: strictly after
 * ```
 */
export function nextTick(schedule: Schedule, afterMs: number): number | undefined {
  const after = checkInstant(afterMs, 'afterMs');
  return next(schedule, after);
}

/**
 * The schedule's ticks strictly after `fromMs` and at or before `toMs` (epoch ms), in increasing order, the first
 * `limit` of them (at most {@link MAX_TICKS_PER_CALL}).
 *
 * @example
 * ```ts
 * const hourly = resolveSchedule('hourly', { cron: '0 * * * *' });
 * ticksBetween(hourly, Date.UTC(2026, 0, 1), Date.UTC(2026, 0, 1, 3), 10); // 01:00, 02:00 and 03:00 UTC
 * ```
 */
export function ticksBetween(schedule: Schedule, fromMs: number, toMs: number, limit: number): number[] {
  const from = checkInstant(fromMs, 'fromMs');
  const to = checkInstant(toMs, 'toMs');
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0 || limit > MAX_TICKS_PER_CALL) {
    throw new ValidationError(
      'limit',
      `Expected \`limit\` to be an integer from 0 to ${MAX_TICKS_PER_CALL}, got ${describe(limit)}`,
    );
  }
  const out: number[] = [];
  let t = next(schedule, from);
  while (t !== undefined && t <= to && out.length < limit) {
    out.push(t);
    t = next(schedule, t);
  }
  return out;
}

/**
 * Which of the schedule's ticks to fire at `nowMs`, given the last tick fired (as read from the store): the ticks
 * strictly after `lastTickMs` and at or before `nowMs`, cut down by the schedule's {@link MissedTickPolicy} to the
 * latest one (`'skip'`) or the latest `n` (`{ catchUp: n }`), oldest first. The rest are reported in `skipped`.
 *
 * A schedule that has never fired has no last tick: pass undefined, and nothing is due yet (its earlier ticks fell
 * before it existed); store the `lastTickMs` returned (`nowMs`) so that the next call fires the ticks after it. A
 * `lastTickMs` later than `nowMs` (another node whose clock runs ahead fired it) makes nothing due.
 *
 * Several nodes may call this with the same arguments at once: they fire the same ticks, whose run ids
 * ({@link tickRunId}) are the same, so the store starts each run once.
 *
 * @example
 * ```ts
 * const schedule = resolveSchedule('report', { cron: '0 * * * *', missed: { catchUp: 2 } });
 * // Last fired at 01:00, looked at again at 05:30 after an outage:
 * const due = dueTicks(schedule, Date.UTC(2026, 0, 1, 1), Date.UTC(2026, 0, 1, 5, 30));
 * // due.fire: 04:00 and 05:00; due.skipped: { count: 2, exact: true, firstMs: 02:00, lastMs: 03:00 }
 * for (const tick of due.fire) await startRun(tickRunId(schedule.name, tick));
 * await saveLastTick(schedule.name, due.lastTickMs);
 * ```
 */
export function dueTicks(schedule: Schedule, lastTickMs: number | undefined, nowMs: number): DueTicks {
  const now = checkInstant(nowMs, 'nowMs');
  if (lastTickMs === undefined) {
    return { fire: [], skipped: undefined, lastTickMs: now, nextMs: next(schedule, now) };
  }
  const last = checkInstant(lastTickMs, 'lastTickMs');
  const first = next(schedule, last);
  if (first === undefined || first > now) {
    return { fire: [], skipped: undefined, lastTickMs: last, nextMs: first };
  }
  const second = next(schedule, first);
  if (second === undefined || second > now) {
    // The usual case, a node looking soon after a tick: that tick alone is due.
    return { fire: [first], skipped: undefined, lastTickMs: first, nextMs: second };
  }
  // Walk back from now: the work is bounded by the policy's count, however long the outage was.
  const limit = schedule.missed === 'skip' ? 1 : schedule.missed.catchUp;
  const fire: number[] = [];
  let t = previous(schedule, now + 1);
  while (t !== undefined && t > last && fire.length < limit) {
    fire.push(t);
    t = previous(schedule, t);
  }
  fire.reverse();
  const oldestFired = fire[0] ?? first; // fire is never empty here: `first` is due
  let skipped: SkippedTicks | undefined;
  if (first < oldestFired) {
    const { count, exact } = countTicks(schedule, last, oldestFired);
    skipped = { count, exact, firstMs: first, lastMs: previous(schedule, oldestFired) ?? first };
  }
  return { fire, skipped, lastTickMs: fire[fire.length - 1] ?? last, nextMs: next(schedule, now) };
}

/**
 * The run id of one tick of a schedule: `schedule:<name>:<tick as ISO 8601 UTC>`, such as
 * `schedule:nightly-digest:2026-03-29T00:30:00.000Z`. The same on every node and in every version, different for
 * every (name, tick) pair (the ISO form has a fixed length, so the name is what comes before it), and at most 234
 * characters of text: a valid primary key for every store.
 *
 * @example
 * ```ts
 * tickRunId('nightly-digest', Date.UTC(2026, 2, 29, 0, 30)); // 'schedule:nightly-digest:2026-03-29T00:30:00.000Z'
 * ```
 */
export function tickRunId(scheduleName: string, tickMs: number): string {
  checkName(scheduleName, 'scheduleName');
  const tick = checkTime(tickMs, 'tickMs');
  return `schedule:${scheduleName}:${new Date(tick).toISOString()}`;
}

/** The first tick strictly after `after`, if any. */
function next(schedule: Schedule, after: number): number | undefined {
  const from = Math.max(after, schedule.startAt - 1);
  if (schedule.kind === 'interval') {
    const k = from < schedule.startAt ? 0 : Math.floor((from - schedule.startAt) / schedule.everyMs) + 1;
    const t = schedule.startAt + k * schedule.everyMs;
    return t <= MAX_TICK_MS ? t : undefined;
  }
  if (from >= MAX_TICK_MS) return undefined;
  const date = patternOf(schedule).nextRun(new Date(from));
  if (date === null || date === undefined) return undefined;
  const t = date.getTime();
  return t <= MAX_TICK_MS ? t : undefined;
}

/** The last tick strictly before `before`, if any. */
function previous(schedule: Schedule, before: number): number | undefined {
  if (before <= schedule.startAt) return undefined;
  if (schedule.kind === 'interval') {
    const to = Math.min(before, MAX_TICK_MS + 1);
    return schedule.startAt + (Math.ceil((to - schedule.startAt) / schedule.everyMs) - 1) * schedule.everyMs;
  }
  const [date] = patternOf(schedule).previousRuns(1, new Date(Math.min(before, MAX_TICK_MS + 1)));
  if (date === undefined) return undefined;
  const t = date.getTime();
  return t >= schedule.startAt && t < before ? t : undefined;
}

/** How many ticks fall strictly between `after` and `before`; cron schedules count at most SKIP_COUNT_LIMIT. */
function countTicks(schedule: Schedule, after: number, before: number): { count: number; exact: boolean } {
  if (schedule.kind === 'interval') {
    const first = next(schedule, after);
    const last = previous(schedule, before);
    if (first === undefined || last === undefined || last < first) return { count: 0, exact: true };
    return { count: (last - first) / schedule.everyMs + 1, exact: true };
  }
  let count = 0;
  let t = next(schedule, after);
  while (t !== undefined && t < before) {
    if (count === SKIP_COUNT_LIMIT) return { count, exact: false };
    count++;
    t = next(schedule, t);
  }
  return { count, exact: true };
}

function patternOf(schedule: CronSchedule): Cron {
  const pattern = patterns.get(schedule);
  if (pattern === undefined) {
    throw new ValidationError('schedule', 'Expected a schedule returned by resolveSchedule(), not a copy of one');
  }
  return pattern;
}

function parseCron(cron: string, timezone: string, field: string): Cron {
  let pattern: Cron;
  try {
    // 'no-wildcard': lists and ranges of fixed times (`0 2,14 * * *`) fire once on the day an hour repeats, as in
    // Vixie cron. 5 or 6 fields only: a seventh (years) would let a schedule end.
    pattern = new Cron(cron, { timezone, mode: '5-or-6-parts', fixedTimeRule: 'no-wildcard' });
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(/^CronPattern: /, '') : String(error);
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a cron expression of five fields (minute hour day-of-month month day-of-week) or ` +
        `six (seconds first), such as "30 2 * * *"; ${describe(cron)} is not: ${reason}`,
    );
  }
  // croner reads a string without fields as a one-off date ("2026-01-01T00:00:00Z"); a schedule repeats.
  if (pattern.getPattern() === undefined) {
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a cron expression such as "30 2 * * *"; ${describe(cron)} is a date, not a ` +
        'repeating schedule',
    );
  }
  return pattern;
}

function resolveTimezone(value: unknown, field: string): string {
  if (value === undefined) return 'UTC';
  if (typeof value !== 'string' || value.length === 0) {
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be an IANA timezone such as "Europe/Berlin", got ${describe(value)}`,
    );
  }
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: value }).resolvedOptions().timeZone;
  } catch {
    throw new ValidationError(
      field,
      `Unknown timezone ${describe(value)} in \`${field}\`; use an IANA name such as "Europe/Berlin", ` +
        '"America/New_York" or "UTC"',
    );
  }
}

function resolveMissed(value: unknown, field: string): MissedTickPolicy {
  if (value === undefined || value === 'skip') return 'skip';
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    rejectUnknownKeys(o, CATCH_UP_KEYS, field);
    const n = own(o, 'catchUp');
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > MAX_CATCH_UP) {
      throw new ValidationError(
        `${field}.catchUp`,
        `Expected \`${field}.catchUp\` to be an integer from 1 to ${MAX_CATCH_UP} (the most missed ticks fired ` +
          `after an outage), got ${describe(n)}`,
      );
    }
    return Object.freeze({ catchUp: n });
  }
  throw new ValidationError(
    field,
    `Expected \`${field}\` to be 'skip' or { catchUp: n } with n from 1 to ${MAX_CATCH_UP}, got ${describe(value)}`,
  );
}

/** A name is text a store can hold in a key: 1 to 200 characters, no control characters, no lone surrogates. */
function checkName(value: unknown, field: string): asserts value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_SCHEDULE_NAME_LENGTH) {
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a schedule name of 1 to ${MAX_SCHEDULE_NAME_LENGTH} characters, got ` +
        (typeof value === 'string' ? `${value.length} characters` : describe(value)),
    );
  }
  if (/[\p{Cc}\p{Cs}]/u.test(value)) {
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be printable text: remove its control characters (or unpaired surrogates)`,
    );
  }
}

/** A tick time or an anchor: an integer number of epoch ms from 0 to MAX_TICK_MS. */
function checkTime(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > MAX_TICK_MS) {
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a time in epoch milliseconds (an integer from 0 to ${MAX_TICK_MS}), got ` +
        describe(value),
    );
  }
  return value;
}

/** A time to compare ticks with: any integer number of epoch ms (before 1970 too). */
function checkInstant(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a time in epoch milliseconds (an integer, such as Date.now()), got ${describe(value)}`,
    );
  }
  return value;
}
