/**
 * `npm run chaos`: every chaos scenario at full scale, one after the other, then a Markdown table of the figures.
 *
 *   npm run chaos                              # full scale (a few minutes on 2 cores)
 *   npm run chaos -- --ci                      # the CI scale (what `npx vitest run test/chaos` runs)
 *   npm run chaos -- --only mixed-random,breaker-storm
 *   npm run chaos -- --seed 12345              # replay a run's faults (the same as CHAOS_SEED=12345)
 *
 * Progress and one line per scenario go to stderr, the table to stdout. Exits 1 when any scenario lost or
 * duplicated a task, saw an unhandled rejection, crashed, broke an invariant or missed an expectation; 2 on bad
 * usage. It exits on its own: a scenario that leaves a timer or a socket behind shows as a hang, reported by the
 * watchdog below.
 */
import { cpus } from 'node:os';
import { baseSeed, oneLine, passed, table, type ScenarioResult } from './harness.js';
import { scenarios } from './scenarios.js';

function usage(message: string): never {
  console.error(
    `chaos: ${message}\nusage: tsx test/chaos/run.ts [--ci] [--only name,name] [--seed n]\nscenarios: ${scenarios.map((s) => s.name).join(', ')}`,
  );
  process.exit(2);
}

const args = process.argv.slice(2);
let scale: 'ci' | 'full' = 'full';
let only: string[] | undefined;
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--ci') scale = 'ci';
  else if (a === '--full') scale = 'full';
  else if (a === '--only' || a.startsWith('--only=')) {
    const v = a.startsWith('--only=') ? a.slice(7) : args[++i];
    if (!v) usage('--only needs a comma-separated list of scenario names');
    only = v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  } else if (a === '--seed' || a.startsWith('--seed=')) {
    const v = a.startsWith('--seed=') ? a.slice(7) : args[++i];
    if (!v || !/^\d+$/.test(v)) usage('--seed needs a non-negative integer');
    process.env['CHAOS_SEED'] = v;
  } else if (a === '--help' || a === '-h') usage('help');
  else usage(`unknown argument ${JSON.stringify(a)}`);
}
const unknown = only?.filter((n) => !scenarios.some((s) => s.name === n)) ?? [];
if (unknown.length > 0) usage(`unknown scenario(s): ${unknown.join(', ')}`);
const chosen = only ? scenarios.filter((s) => only.includes(s.name)) : scenarios;

const seed = baseSeed();
const started = Date.now();
console.error(
  `chaos: ${chosen.length} scenario(s) at ${scale} scale, seed ${seed} (replay: CHAOS_SEED=${seed}), Node ${process.version}, ${cpus().length} cores`,
);
const results: ScenarioResult[] = [];
for (const s of chosen) {
  console.error(`chaos: running ${s.name} ...`);
  const r = await s.run(scale);
  results.push(r);
  console.error(oneLine(r));
}
const seconds = ((Date.now() - started) / 1000).toFixed(1);
const failed = results.filter((r) => !passed(r));
console.log(table(results));
console.log('');
console.log(
  `${results.length} scenario(s), ${scale} scale, seed ${seed}, ${seconds} s: ` +
    (failed.length === 0
      ? 'every accepted task ended exactly once; nothing lost, duplicated or unhandled.'
      : `FAILED: ${failed.map((r) => r.name).join(', ')}`),
);
for (const r of failed) {
  for (const v of r.violations) console.log(`- ${r.name}: violation: ${v}`);
  for (const e of r.expectations.filter((x) => !x.ok))
    console.log(`- ${r.name}: unmet: ${e.what}${e.detail ? ` (${e.detail})` : ''}`);
  if (r.crash) console.log(`- ${r.name}: crash: ${r.crash}`);
  if (r.figures['unhandled sample']) console.log(`- ${r.name}: ${r.figures['unhandled sample']}`);
}
process.exitCode = failed.length === 0 ? 0 : 1;

// Everything was stopped: the process should now exit by itself. If something still holds it, say what and fail.
const watchdog = setTimeout(() => {
  console.error(
    `chaos: the process did not exit on its own 15 s after the run; still active: ${process.getActiveResourcesInfo().join(', ')}`,
  );
  process.exit(process.exitCode === 0 ? 3 : (process.exitCode ?? 3));
}, 15_000);
watchdog.unref();
