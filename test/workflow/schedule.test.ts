/**
 * Schedules (src/workflow/schedule.ts): ticks of cron and interval schedules, across daylight saving time, the
 * missed-tick policies, run ids and validation. Every function takes its times as arguments, so no timers are faked.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import {
  dueTicks,
  MAX_TICK_MS,
  nextTick,
  resolveSchedule,
  tickRunId,
  ticksBetween,
  type Schedule,
  type ScheduleSpec,
} from '../../src/workflow/schedule.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const iso = (ms: number): string => new Date(ms).toISOString();

/** The wall-clock time of `ms` in `timeZone`, as `YYYY-MM-DD HH:mm:ss`. */
function wallClock(ms: number, timeZone: string): string {
  return new Intl.DateTimeFormat('sv-SE', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  }).format(ms);
}

function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).code).toBe('VALIDATION_ERROR');
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

describe('cron schedules across daylight saving time (Europe/Berlin)', () => {
  const daily = resolveSchedule('daily-0230', { cron: '30 2 * * *', timezone: 'Europe/Berlin' });

  it('fires once on the spring-forward day, at 03:00 when 02:30 does not exist', () => {
    // 2026-03-29: the clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC).
    const ticks = ticksBetween(daily, Date.UTC(2026, 2, 26, 12), Date.UTC(2026, 2, 31, 12), 10);
    expect(ticks.map(iso)).toEqual([
      '2026-03-27T01:30:00.000Z', // 02:30 CET
      '2026-03-28T01:30:00.000Z',
      '2026-03-29T01:00:00.000Z', // 03:00 CEST: the first valid time after the gap
      '2026-03-30T00:30:00.000Z', // 02:30 CEST
      '2026-03-31T00:30:00.000Z',
    ]);
    expect(ticks.map((t) => wallClock(t, 'Europe/Berlin'))).toEqual([
      '2026-03-27 02:30:00',
      '2026-03-28 02:30:00',
      '2026-03-29 03:00:00',
      '2026-03-30 02:30:00',
      '2026-03-31 02:30:00',
    ]);
  });

  it('fires once on the fall-back day, at the first of the two 02:30s', () => {
    // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC), so 02:30 happens at 00:30 and again at 01:30 UTC.
    const ticks = ticksBetween(daily, Date.UTC(2026, 9, 23, 12), Date.UTC(2026, 9, 27, 12), 10);
    expect(ticks.map(iso)).toEqual([
      '2026-10-24T00:30:00.000Z',
      '2026-10-25T00:30:00.000Z', // 02:30 CEST, the first occurrence
      '2026-10-26T01:30:00.000Z', // 02:30 CET
      '2026-10-27T01:30:00.000Z',
    ]);
    expect(nextTick(daily, Date.UTC(2026, 9, 25, 0, 30))).toBe(Date.UTC(2026, 9, 26, 1, 30)); // not 01:30 the 25th
  });

  it('fires a list of fixed times once each on the fall-back day too', () => {
    const twice = resolveSchedule('twice-daily', { cron: '30 2,14 * * *', timezone: 'Europe/Berlin' });
    const ticks = ticksBetween(twice, Date.UTC(2026, 9, 24, 22), Date.UTC(2026, 9, 25, 23), 10);
    expect(ticks.map((t) => wallClock(t, 'Europe/Berlin'))).toEqual(['2026-10-25 02:30:00', '2026-10-25 14:30:00']);
  });

  it('fires "every 15 minutes" every 15 real minutes across both changes: 92 ticks on the short day, 100 on the long', () => {
    const quarter = resolveSchedule('quarter', { cron: '*/15 * * * *', timezone: 'Europe/Berlin' });
    // Local midnight to local midnight: 23 hours on 2026-03-29, 25 hours on 2026-10-25.
    for (const [from, to, count] of [
      [Date.UTC(2026, 2, 28, 23), Date.UTC(2026, 2, 29, 22), 92],
      [Date.UTC(2026, 9, 24, 22), Date.UTC(2026, 9, 25, 23), 100],
    ] as const) {
      const ticks = ticksBetween(quarter, from - 1, to - 1, 1_000);
      expect(ticks).toHaveLength(count);
      expect(ticks[0]).toBe(from);
      ticks.forEach((t, i) => expect(t).toBe(from + i * 15 * MINUTE));
      // No two ticks share an instant, and no tick falls in the skipped hour (none could: it has no instants).
      expect(new Set(ticks).size).toBe(count);
    }
    // The repeated hour has its ticks twice (wall clock 02:00 … 02:45, once in CEST, once in CET).
    const autumn = ticksBetween(quarter, Date.UTC(2026, 9, 24, 22), Date.UTC(2026, 9, 25, 23), 1_000);
    const at0200 = autumn.filter((t) => wallClock(t, 'Europe/Berlin') === '2026-10-25 02:00:00');
    expect(at0200.map(iso)).toEqual(['2026-10-25T00:00:00.000Z', '2026-10-25T01:00:00.000Z']);
  });

  it('fires an hourly cron 25 times on the fall-back day, in real hours', () => {
    const hourly = resolveSchedule('hourly', { cron: '0 * * * *', timezone: 'Europe/Berlin' });
    const ticks = ticksBetween(hourly, Date.UTC(2026, 9, 24, 22) - 1, Date.UTC(2026, 9, 25, 23) - 1, 100);
    expect(ticks).toHaveLength(25);
    ticks.forEach((t, i) => expect(t).toBe(Date.UTC(2026, 9, 24, 22) + i * HOUR));
  });

  it('reads the expression in UTC when no timezone is given, whatever the host zone', () => {
    const utc = resolveSchedule('utc', { cron: '30 2 * * *' });
    expect(utc.kind === 'cron' && utc.timezone).toBe('UTC');
    expect(ticksBetween(utc, Date.UTC(2026, 2, 28), Date.UTC(2026, 2, 30), 5).map(iso)).toEqual([
      '2026-03-28T02:30:00.000Z',
      '2026-03-29T02:30:00.000Z',
    ]);
  });

  it('keeps the canonical spelling of the timezone', () => {
    const s = resolveSchedule('tz', { cron: '0 0 * * *', timezone: 'europe/berlin' });
    expect(s.kind === 'cron' && s.timezone).toBe('Europe/Berlin');
  });
});

describe('cron calendar', () => {
  it('fires a leap-day schedule only on 29 February', () => {
    const leap = resolveSchedule('leap', { cron: '0 12 29 2 *' });
    expect(ticksBetween(leap, Date.UTC(2026, 0, 1), Date.UTC(2037, 0, 1), 10).map(iso)).toEqual([
      '2028-02-29T12:00:00.000Z',
      '2032-02-29T12:00:00.000Z',
      '2036-02-29T12:00:00.000Z',
    ]);
  });

  it('understands a seconds field, nicknames and the last day of the month', () => {
    const secs = resolveSchedule('secs', { cron: '*/20 * * * * *' });
    expect(ticksBetween(secs, Date.UTC(2026, 0, 1), Date.UTC(2026, 0, 1, 0, 1), 10)).toHaveLength(3);
    const daily = resolveSchedule('daily', { cron: '@daily' });
    expect(nextTick(daily, Date.UTC(2026, 0, 1, 5))).toBe(Date.UTC(2026, 0, 2));
    const last = resolveSchedule('month-end', { cron: '0 0 L * *' });
    expect(ticksBetween(last, Date.UTC(2028, 0, 15), Date.UTC(2028, 2, 15), 5).map(iso)).toEqual([
      '2028-01-31T00:00:00.000Z',
      '2028-02-29T00:00:00.000Z',
    ]);
  });

  it('returns the first tick strictly after the time given, milliseconds included', () => {
    const quarter = resolveSchedule('q', { cron: '*/15 * * * *' });
    const t = Date.UTC(2026, 0, 1, 0, 15);
    expect(nextTick(quarter, t - 1)).toBe(t);
    expect(nextTick(quarter, t)).toBe(t + 15 * MINUTE);
    expect(nextTick(quarter, t + 500)).toBe(t + 15 * MINUTE);
    expect(ticksBetween(quarter, t, t, 10)).toEqual([]);
    expect(ticksBetween(quarter, t - 1, t, 10)).toEqual([t]);
  });

  it('honours startAt: no cron tick before it', () => {
    const startAt = Date.UTC(2026, 5, 1, 10, 7);
    const hourly = resolveSchedule('from-june', { cron: '0 * * * *', startAt });
    expect(nextTick(hourly, 0)).toBe(Date.UTC(2026, 5, 1, 11));
    expect(dueTicks(hourly, 0, Date.UTC(2026, 5, 1, 10, 30)).fire).toEqual([]);
  });
});

describe('interval schedules', () => {
  it('tick at startAt + k × everyMs, so every node computes the same ticks', () => {
    const s = resolveSchedule('every10', { everyMs: 10_000, startAt: 7_000 });
    expect(nextTick(s, -50_000)).toBe(7_000);
    expect(nextTick(s, 6_999)).toBe(7_000);
    expect(nextTick(s, 7_000)).toBe(17_000);
    expect(nextTick(s, 12_345)).toBe(17_000);
    expect(ticksBetween(s, 0, 40_000, 10)).toEqual([7_000, 17_000, 27_000, 37_000]);
    // Two nodes that look at different moments agree on the grid.
    const nodeA = ticksBetween(s, 1_000_003, 1_100_000, 100);
    const nodeB = ticksBetween(s, 1_050_001, 1_100_000, 100);
    expect(nodeA.slice(nodeA.indexOf(nodeB[0]!))).toEqual(nodeB);
  });

  it('anchor at the epoch by default, and ignore daylight saving time', () => {
    const s = resolveSchedule('quarter', { everyMs: 15 * MINUTE });
    expect(nextTick(s, Date.UTC(2026, 2, 29, 0, 50))).toBe(Date.UTC(2026, 2, 29, 1));
    const cron = resolveSchedule('quarter-cron', { cron: '*/15 * * * *', timezone: 'Europe/Berlin' });
    const window = [Date.UTC(2026, 9, 24, 22), Date.UTC(2026, 9, 25, 23)] as const;
    expect(ticksBetween(s, ...window, 1_000)).toEqual(ticksBetween(cron, ...window, 1_000));
  });

  it('end at MAX_TICK_MS', () => {
    const s = resolveSchedule('end', { everyMs: DAY });
    expect(nextTick(s, MAX_TICK_MS)).toBeUndefined();
    expect(nextTick(s, MAX_TICK_MS - DAY)).toBeLessThanOrEqual(MAX_TICK_MS);
  });
});

describe('dueTicks: which ticks fire', () => {
  const T0 = Date.UTC(2026, 0, 1);

  it('fires nothing for a schedule that has never fired, and returns now as its starting point', () => {
    const s = resolveSchedule('new', { everyMs: MINUTE });
    const due = dueTicks(s, undefined, T0 + 30_000);
    expect(due).toEqual({ fire: [], skipped: undefined, lastTickMs: T0 + 30_000, nextMs: T0 + MINUTE });
    expect(dueTicks(s, due.lastTickMs, T0 + MINUTE).fire).toEqual([T0 + MINUTE]);
  });

  it('fires nothing before the next tick, and a tick exactly at now', () => {
    const s = resolveSchedule('m', { everyMs: MINUTE });
    expect(dueTicks(s, T0, T0 + MINUTE - 1)).toEqual({
      fire: [],
      skipped: undefined,
      lastTickMs: T0,
      nextMs: T0 + MINUTE,
    });
    expect(dueTicks(s, T0, T0 + MINUTE)).toEqual({
      fire: [T0 + MINUTE],
      skipped: undefined,
      lastTickMs: T0 + MINUTE,
      nextMs: T0 + 2 * MINUTE,
    });
  });

  it('fires nothing when the last tick is ahead of now (a node whose clock runs ahead fired it)', () => {
    const s = resolveSchedule('m', { everyMs: MINUTE });
    expect(dueTicks(s, T0 + 5 * MINUTE, T0 + 2 * MINUTE)).toEqual({
      fire: [],
      skipped: undefined,
      lastTickMs: T0 + 5 * MINUTE,
      nextMs: T0 + 6 * MINUTE,
    });
  });

  it("'skip' fires only the latest missed tick and reports the skipped ones", () => {
    const s = resolveSchedule('hourly', { cron: '0 * * * *' });
    const due = dueTicks(s, T0 + HOUR, T0 + 5 * HOUR + 30 * MINUTE);
    expect(due.fire).toEqual([T0 + 5 * HOUR]);
    expect(due.skipped).toEqual({ count: 3, exact: true, firstMs: T0 + 2 * HOUR, lastMs: T0 + 4 * HOUR });
    expect(due.lastTickMs).toBe(T0 + 5 * HOUR);
    expect(due.nextMs).toBe(T0 + 6 * HOUR);
  });

  it('catchUp n fires the n latest missed ticks, oldest first, and reports the older ones', () => {
    const s = resolveSchedule('hourly', { cron: '0 * * * *', missed: { catchUp: 2 } });
    const due = dueTicks(s, T0 + HOUR, T0 + 5 * HOUR + 30 * MINUTE);
    expect(due.fire).toEqual([T0 + 4 * HOUR, T0 + 5 * HOUR]);
    expect(due.skipped).toEqual({ count: 2, exact: true, firstMs: T0 + 2 * HOUR, lastMs: T0 + 3 * HOUR });
    expect(due.lastTickMs).toBe(T0 + 5 * HOUR);
  });

  it('catchUp n fires every missed tick when there are at most n, and skips none', () => {
    const s = resolveSchedule('hourly', { everyMs: HOUR, missed: { catchUp: 5 } });
    const due = dueTicks(s, T0 + HOUR, T0 + 4 * HOUR);
    expect(due.fire).toEqual([T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR]);
    expect(due.skipped).toBeUndefined();
  });

  it('bounds the work after a year down: at most catchUp runs, and an exact count of the rest for intervals', () => {
    const s = resolveSchedule('secondly', { everyMs: 1_000, missed: { catchUp: 100 } });
    const year = 365 * DAY;
    const due = dueTicks(s, T0, T0 + year);
    expect(due.fire).toHaveLength(100);
    expect(due.fire[0]).toBe(T0 + year - 99_000);
    expect(due.fire.at(-1)).toBe(T0 + year);
    expect(due.skipped).toEqual({
      count: year / 1_000 - 100,
      exact: true,
      firstMs: T0 + 1_000,
      lastMs: T0 + year - 100_000,
    });
  });

  it('counts at most 100 skipped ticks of a cron schedule, and says the count is a lower bound', () => {
    const s = resolveSchedule('secondly-cron', { cron: '* * * * * *' });
    const due = dueTicks(s, T0, T0 + DAY);
    expect(due.fire).toEqual([T0 + DAY]);
    expect(due.skipped).toEqual({ count: 100, exact: false, firstMs: T0 + 1_000, lastMs: T0 + DAY - 1_000 });
  });

  it('skips across the spring-forward gap with the 03:00 tick counted once', () => {
    const s = resolveSchedule('daily', { cron: '30 2 * * *', timezone: 'Europe/Berlin' });
    // Last fired 2026-03-27 02:30 CET; down until 2026-03-30 12:00 UTC.
    const due = dueTicks(s, Date.UTC(2026, 2, 27, 1, 30), Date.UTC(2026, 2, 30, 12));
    expect(due.fire).toEqual([Date.UTC(2026, 2, 30, 0, 30)]);
    expect(due.skipped).toEqual({
      count: 2,
      exact: true,
      firstMs: Date.UTC(2026, 2, 28, 1, 30),
      lastMs: Date.UTC(2026, 2, 29, 1),
    });
  });

  it('fires each tick once across nodes polling at random moments while no outage exceeds the catch-up', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<ScheduleSpec>(
          { everyMs: 7_000, startAt: 3_000, missed: { catchUp: 10 } },
          { cron: '*/15 * * * *', timezone: 'Europe/Berlin', missed: { catchUp: 10 } },
          { cron: '30 2 * * *', timezone: 'Europe/Berlin', missed: { catchUp: 10 } },
        ),
        fc.integer({ min: Date.UTC(2026, 2, 20), max: Date.UTC(2026, 10, 1) }),
        fc.array(fc.record({ node: fc.integer({ min: 0, max: 2 }), gap: fc.integer({ min: 0, max: 9 }) }), {
          minLength: 1,
          maxLength: 40,
        }),
        (spec, start, polls) => {
          const s = resolveSchedule('poll', spec);
          // The store: the runs started (by id) and the last tick. A node may read a stale last tick.
          const started = new Map<string, number>();
          let stored = dueTicks(s, undefined, start).lastTickMs;
          const seen = [stored, stored, stored];
          let now = start;
          for (const { node, gap } of polls) {
            const first = nextTick(s, now) ?? now;
            now = first + gap * ((nextTick(s, first) ?? first) - first) * 0.99; // under 10 ticks apart
            now = Math.floor(now);
            const due = dueTicks(s, seen[node], now);
            for (const t of due.fire) {
              const id = tickRunId(s.name, t);
              started.set(id, (started.get(id) ?? 0) + 1);
            }
            stored = Math.max(stored, due.lastTickMs);
            seen[node] = stored;
          }
          // Every tick up to the last one handled was started once: the store refuses a second insert of an id, so
          // a node reading a stale last tick asks again for ticks already started, and no tick is lost.
          const expected = ticksBetween(s, start, stored, 10_000).map((t) => tickRunId(s.name, t));
          expect([...started.keys()].sort()).toEqual(expected.sort());
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('tickRunId', () => {
  it('is schedule:<name>:<ISO tick>, the same on every call', () => {
    const t = Date.UTC(2026, 2, 29, 1);
    expect(tickRunId('nightly-digest', t)).toBe('schedule:nightly-digest:2026-03-29T01:00:00.000Z');
    expect(tickRunId('nightly-digest', t)).toBe(tickRunId('nightly-digest', t));
    expect(tickRunId('x', 0)).toBe('schedule:x:1970-01-01T00:00:00.000Z');
    expect(tickRunId('x', MAX_TICK_MS)).toBe('schedule:x:9999-12-31T23:59:59.999Z');
  });

  it('differs for names that look alike once joined, and stays at most 234 characters', () => {
    const t = Date.UTC(2026, 0, 1);
    const a = tickRunId('a', t);
    const b = tickRunId(`a:${iso(t)}`, t);
    const c = tickRunId('a:', t);
    expect(new Set([a, b, c]).size).toBe(3);
    expect(tickRunId('n'.repeat(200), MAX_TICK_MS)).toHaveLength(234);
  });

  it('refuses a bad name or tick', () => {
    expect(validationError(() => tickRunId('', 0)).field).toBe('scheduleName');
    expect(validationError(() => tickRunId('x', -1)).field).toBe('tickMs');
    expect(validationError(() => tickRunId('x', 1.5)).field).toBe('tickMs');
    expect(validationError(() => tickRunId('x', MAX_TICK_MS + 1)).field).toBe('tickMs');
  });
});

describe('resolveSchedule validation', () => {
  const cases: Array<[string, string, unknown, string, RegExp]> = [
    ['empty name', '', { everyMs: 1_000 }, 'name', /1 to 200 characters, got 0 characters/],
    ['long name', 'n'.repeat(201), { everyMs: 1_000 }, 'name', /1 to 200 characters, got 201/],
    ['control character in name', 'a\nb', { everyMs: 1_000 }, 'name', /control characters/],
    ['lone surrogate in name', 'a\uD800', { everyMs: 1_000 }, 'name', /unpaired surrogates/],
    ['spec not an object', 'n', '* * * * *', 'schedule', /to be an object/],
    ['neither cron nor everyMs', 'n', {}, 'schedule', /Give `schedule.cron` .* or `schedule.everyMs`/],
    ['both', 'n', { cron: '* * * * *', everyMs: 1_000 }, 'schedule', /either .* not both/],
    ['unknown key', 'n', { everyMs: 1_000, every: 5 }, 'schedule.every', /Unknown field/],
    ['cron out of range', 'n', { cron: '61 * * * *' }, 'schedule.cron', /"61 \* \* \* \*" is not: .*minute: 61/],
    ['cron with 4 fields', 'n', { cron: '* * * *' }, 'schedule.cron', /five, six, or seven/],
    ['cron with a year field', 'n', { cron: '0 0 0 1 1 * 2027' }, 'schedule.cron', /is not:/],
    ['cron empty', 'n', { cron: ' ' }, 'schedule.cron', /a cron expression such as/],
    ['cron not a string', 'n', { cron: 5 }, 'schedule.cron', /got 5/],
    ['cron a date', 'n', { cron: '2026-01-01T00:00:00Z' }, 'schedule.cron', /is a date, not a repeating/],
    ['cron never matches', 'n', { cron: '0 0 31 2 *' }, 'schedule.cron', /matches no time/],
    ['unknown timezone', 'n', { cron: '* * * * *', timezone: 'Mars/Olympus' }, 'schedule.timezone', /IANA/],
    [
      'timezone with everyMs',
      'n',
      { everyMs: 1_000, timezone: 'UTC' },
      'schedule.timezone',
      /applies to `schedule.cron` only/,
    ],
    ['everyMs too small', 'n', { everyMs: 999 }, 'schedule.everyMs', /at least 1000.*got 999/],
    ['everyMs fractional', 'n', { everyMs: 1_000.5 }, 'schedule.everyMs', /whole number/],
    ['everyMs a string', 'n', { everyMs: '1000' }, 'schedule.everyMs', /got "1000"/],
    ['startAt negative', 'n', { everyMs: 1_000, startAt: -1 }, 'schedule.startAt', /epoch milliseconds/],
    ['missed unknown', 'n', { everyMs: 1_000, missed: 'all' }, 'schedule.missed', /'skip' or \{ catchUp: n \}/],
    ['catchUp 0', 'n', { everyMs: 1_000, missed: { catchUp: 0 } }, 'schedule.missed.catchUp', /1 to 100/],
    ['catchUp 101', 'n', { everyMs: 1_000, missed: { catchUp: 101 } }, 'schedule.missed.catchUp', /got 101/],
    ['catchUp misspelt', 'n', { everyMs: 1_000, missed: { catchup: 3 } }, 'schedule.missed.catchup', /Unknown/],
  ];

  for (const [title, name, spec, field, message] of cases) {
    it(`refuses ${title}`, () => {
      const err = validationError(() => resolveSchedule(name, spec as ScheduleSpec));
      expect(err.field).toBe(field);
      expect(err.message).toMatch(message);
    });
  }

  it('applies the defaults and freezes the result', () => {
    const s = resolveSchedule('n', { everyMs: 5_000 });
    expect(s).toEqual({ kind: 'interval', name: 'n', everyMs: 5_000, startAt: 0, missed: 'skip' });
    expect(Object.isFrozen(s)).toBe(true);
    const c = resolveSchedule('c', { cron: '0 * * * *', missed: { catchUp: 3 } });
    expect(c).toEqual({
      kind: 'cron',
      name: 'c',
      cron: '0 * * * *',
      timezone: 'UTC',
      startAt: 0,
      missed: { catchUp: 3 },
    });
  });

  it('refuses a copy of a cron schedule and bad times or limits', () => {
    const c = resolveSchedule('c', { cron: '0 * * * *' });
    expect(validationError(() => nextTick({ ...c }, 0)).field).toBe('schedule');
    expect(validationError(() => nextTick(c, Number.NaN)).field).toBe('afterMs');
    expect(validationError(() => ticksBetween(c, 0, 1, -1)).field).toBe('limit');
    expect(validationError(() => ticksBetween(c, 0, 1, 10_001)).field).toBe('limit');
    expect(validationError(() => dueTicks(c, 0, Infinity)).field).toBe('nowMs');
    expect(validationError(() => dueTicks(c, 0.5, 0)).field).toBe('lastTickMs');
  });
});

describe('properties', () => {
  const specArb: fc.Arbitrary<ScheduleSpec> = fc.oneof(
    fc.record({
      everyMs: fc.integer({ min: 1_000, max: 3 * DAY }),
      startAt: fc.integer({ min: 0, max: Date.UTC(2030, 0, 1) }),
    }),
    fc.record({
      cron: fc.constantFrom(
        '*/15 * * * *',
        '0 * * * *',
        '30 2 * * *',
        '0 9-17 * * 1-5',
        '0 0 L * *',
        '0 12 29 2 *',
        '*/7 */3 * * *',
        '15 10 * * SUN',
        '0 0,12 1,15 * *',
        '*/20 * * * * *',
        '30 1,2,3 * * *',
      ),
      timezone: fc.constantFrom(
        'UTC',
        'Europe/Berlin',
        'America/New_York',
        'Australia/Lord_Howe', // a 30-minute daylight saving shift
        'Asia/Kolkata',
        'America/Santiago',
      ),
    }),
  );

  it('ticksBetween is increasing, inside the window, each tick is nextTick(tick - 1), ids are unique', () => {
    fc.assert(
      fc.property(
        specArb,
        fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2032, 0, 1) }),
        fc.integer({ min: 0, max: 40 * DAY }),
        (spec, from, width) => {
          const s: Schedule = resolveSchedule('prop', spec);
          const to = from + width;
          const ticks = ticksBetween(s, from, to, 50);
          const ids = new Set<string>();
          let prev = from;
          for (const t of ticks) {
            expect(t).toBeGreaterThan(prev);
            expect(t).toBeLessThanOrEqual(to);
            expect(nextTick(s, t - 1)).toBe(t);
            expect(nextTick(s, prev)).toBe(t); // no tick between two consecutive ones
            ids.add(tickRunId(s.name, t));
            prev = t;
          }
          expect(ids.size).toBe(ticks.length);
          if (ticks.length < 50) expect(nextTick(s, prev) ?? Infinity).toBeGreaterThan(to);
        },
      ),
      { numRuns: 150 },
    );
  });

  /** The instants (to the hour) in 2026 at which the zone's UTC offset changes. */
  function offsetChanges(timeZone: string): number[] {
    const format = new Intl.DateTimeFormat('en-US', { timeZone, timeZoneName: 'longOffset' });
    const offset = (ms: number): string => format.format(ms).split(' ').at(-1) ?? '';
    const out: number[] = [];
    for (let t = Date.UTC(2026, 0, 1); t < Date.UTC(2027, 0, 1); t += HOUR) {
      if (offset(t) !== offset(t + HOUR)) out.push(t + HOUR);
    }
    return out;
  }
  const transitions = ['Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'America/Santiago'].flatMap(
    (timeZone) => offsetChanges(timeZone).map((at) => ({ timeZone, at })),
  );

  it('finds the daylight saving changes it tests around', () => {
    expect(transitions.filter((x) => x.timeZone === 'Europe/Berlin').map((x) => iso(x.at))).toEqual([
      '2026-03-29T01:00:00.000Z',
      '2026-10-25T01:00:00.000Z',
    ]);
    expect(transitions).toHaveLength(8);
  });

  it('around daylight saving changes, stepping forward and back agree, and a fixed time never fires twice', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...transitions),
        fc.constantFrom('*/15 * * * *', '0 * * * *', '30 2 * * *', '30 1,2,3 * * *', '0,30 2 * * *', '45 1-3 * * *'),
        fc.integer({ min: -2 * DAY, max: DAY }),
        fc.integer({ min: 0, max: 2 * DAY }),
        fc.integer({ min: 1, max: 30 }),
        ({ timeZone, at }, cron, offset, width, catchUp) => {
          const s = resolveSchedule('dst', { cron, timezone: timeZone, missed: { catchUp } });
          const from = at + offset;
          const all = ticksBetween(s, from, from + width, 10_000);
          for (let i = 1; i < all.length; i++) expect(all[i]).toBeGreaterThan(all[i - 1]!);
          // No wall-clock time fires twice unless the pattern is an interval one (a step or a wildcard in the time).
          const fixed = !/[*/]/.test(cron.split(' ').slice(0, 2).join(' '));
          if (fixed) {
            const walls = all.map((t) => wallClock(t, timeZone));
            expect(new Set(walls).size).toBe(walls.length);
          }
          const due = dueTicks(s, from, from + width);
          expect(due.fire).toEqual(all.slice(-catchUp));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('dueTicks walking back from now agrees with ticksBetween walking forward', () => {
    fc.assert(
      fc.property(
        specArb,
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2032, 0, 1) }),
        fc.integer({ min: 0, max: DAY }),
        (spec, catchUp, last, width) => {
          const s = resolveSchedule('prop', { ...spec, missed: { catchUp } });
          const now = last + width;
          const all = ticksBetween(s, last, now, 10_000);
          fc.pre(all.length < 10_000);
          const due = dueTicks(s, last, now);
          expect(due.fire).toEqual(all.slice(-catchUp));
          if (all.length > catchUp) {
            const skipped = all.length - catchUp;
            const exact = s.kind === 'interval' || skipped <= 100;
            expect(due.skipped).toEqual({
              count: exact ? skipped : 100,
              exact,
              firstMs: all[0],
              lastMs: all[all.length - catchUp - 1],
            });
          } else {
            expect(due.skipped).toBeUndefined();
          }
          expect(due.lastTickMs).toBe(all.at(-1) ?? last);
          expect(due.nextMs).toBe(nextTick(s, Math.max(now, due.lastTickMs)));
        },
      ),
      { numRuns: 100 },
    );
  });
});
