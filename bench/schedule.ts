/**
 * What the schedule functions (src/workflow/schedule.ts) cost per call: a node's scheduler calls `dueTicks` when a
 * schedule's `nextMs` comes, and once per schedule after an outage, so these figures bound its CPU per tick.
 *
 * - `nextTick` of a cron schedule in UTC and in Europe/Berlin (croner steps the pattern), and of an interval one;
 * - `dueTicks` on time (one tick due), the usual case;
 * - `dueTicks` after a year down: `{ catchUp: 100 }` on a 15-minute cron in Berlin (a walk back of 100 ticks and a
 *   count of the 100 skipped ticks it stops at), and `'skip'` on an interval (arithmetic only).
 *
 *   npx tsx bench/schedule.ts            # about ten seconds on 2 cores
 *   npx tsx bench/schedule.ts --quick
 *
 * Prints a Markdown table on stdout (progress on stderr).
 */
import { cpus } from 'node:os';
import { progress, sampleLatency, summarise } from './harness.js';
import { dueTicks, nextTick, resolveSchedule } from '../src/workflow/schedule.js';

const quick = process.argv.includes('--quick');
const budget = { timeMs: quick ? 300 : 1_500, minSamples: quick ? 10 : 30, warmupMs: quick ? 50 : 200 };

const T0 = Date.UTC(2026, 0, 1);
const DAY = 86_400_000;
const YEAR = 365 * DAY;

const utc = resolveSchedule('utc', { cron: '*/15 * * * *' });
const berlin = resolveSchedule('berlin', { cron: '*/15 * * * *', timezone: 'Europe/Berlin' });
const berlinCatchUp = resolveSchedule('catch-up', {
  cron: '*/15 * * * *',
  timezone: 'Europe/Berlin',
  missed: { catchUp: 100 },
});
const interval = resolveSchedule('interval', { everyMs: 15 * 60_000 });

/** One timed call per sample, at a time that moves on each call so no answer is reused. */
function timed(fn: (i: number) => unknown): () => number {
  let i = 0;
  return () => {
    const t0 = performance.now();
    fn(i++);
    return performance.now() - t0;
  };
}

const cases: ReadonlyArray<readonly [string, () => number]> = [
  ['nextTick, cron */15, UTC', timed((i) => nextTick(utc, T0 + i * 61_000))],
  ['nextTick, cron */15, Europe/Berlin', timed((i) => nextTick(berlin, T0 + i * 61_000))],
  ['nextTick, everyMs 15 min', timed((i) => nextTick(interval, T0 + i * 61_000))],
  [
    'dueTicks on time, cron */15, Europe/Berlin',
    timed((i) => dueTicks(berlin, T0 + i * 900_000, T0 + (i + 1) * 900_000 + 5)),
  ],
  ['dueTicks after a year down, catchUp 100, cron, Berlin', timed((i) => dueTicks(berlinCatchUp, T0 + i, T0 + YEAR))],
  ['dueTicks after a year down, skip, everyMs', timed((i) => dueTicks(interval, T0 + i, T0 + YEAR))],
];

const rows: string[] = [];
for (const [name, measure] of cases) {
  progress(name);
  const stats = summarise(await sampleLatency(name, measure, budget));
  rows.push(`| ${name} | ${stats.p50Us.toFixed(1)} | ${stats.p99Us.toFixed(1)} | ${stats.samples} |`);
}
process.stdout.write(
  `Schedules, ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}\n\n` +
    '| case | p50 µs | p99 µs | samples |\n|---|---:|---:|---:|\n' +
    `${rows.join('\n')}\n`,
);
