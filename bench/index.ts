/**
 * The benchmark suite: the seed's promises, the project's own targets, and bare p-queue beside the orchestrator
 * in the same run.
 *
 *   npm run bench               # full run, one to two minutes on 2 cores
 *   npm run bench -- --quick    # short run, under a minute
 *   npm run bench -- --build    # the same against a tsc build (dist/) instead of src/ under tsx
 *
 * Prints a Markdown table (each figure beside its seed and project targets, pass/miss) and writes the same
 * figures with every detail to bench/results/latest.json (gitignored). Progress goes to stderr.
 * Every case runs no-op agents, so what is measured is the orchestrator's own overhead.
 *
 * Suites, one file each: registration, delegation, throughput (and p-queue), scale, stress, memory (child process),
 * bridge (RedisBridge beside BullMQ across processes, on a redis-server of its own: needs `redis-server` on PATH),
 * compat (the legacy adapter and traffic router beside submit and a direct legacy call).
 */
import { cpus, loadavg } from 'node:os';
import { benchBridge } from './bridge.js';
import { benchCompat } from './compat.js';
import { benchDelegation } from './delegation.js';
import { progress } from './harness.js';
import { benchMemory } from './memory.js';
import { benchRegistration } from './registration.js';
import {
  figureRows,
  renderTable,
  settingsForReport,
  summaryLine,
  writeReport,
  type BenchReport,
  type SuiteResults,
} from './report.js';
import { benchScale } from './scale.js';
import { readSettings, type BenchSettings, type SuiteName } from './settings.js';
import { benchStress } from './stress.js';
import { measuringBuild, rerunAgainstBuild, subjectPath } from './subject.js';
import { benchThroughput } from './throughput.js';

const settings = readSettings();
if (settings.build && !measuringBuild()) process.exit(await rerunAgainstBuild(process.argv.slice(2)));
const subject = subjectPath();
const environment = {
  node: process.version,
  platform: process.platform,
  arch: process.arch,
  cpu: cpus()[0]?.model ?? null,
  cores: cpus().length,
  loadavgAtStart: loadavg(),
  /** The file `unified-orchestrator` resolved to: src/index.ts (tsx) or dist/index.js (tsc build). */
  subject,
};

const runners: { [S in SuiteName]: (s: BenchSettings) => Promise<NonNullable<SuiteResults[S]>> } = {
  registration: benchRegistration,
  delegation: benchDelegation,
  throughput: benchThroughput,
  scale: benchScale,
  stress: benchStress,
  memory: benchMemory,
  bridge: benchBridge,
  compat: benchCompat,
};

process.stderr.write(
  `unified-orchestrator bench${settings.quick ? ' (quick)' : ''} of ${subject}: node ${environment.node}, ${environment.cores} × ${environment.cpu ?? 'unknown CPU'}, load ${environment.loadavgAtStart.map((l) => l.toFixed(2)).join(' ')}\n`,
);
const started = performance.now();
const results: SuiteResults = {};
for (const name of Object.keys(runners) as SuiteName[]) {
  if (!settings.suites.has(name)) continue;
  const t0 = performance.now();
  progress(`${name}…`);
  // The mapped type pairs each suite with its own result type; TypeScript cannot follow that through the loop.
  (results as Record<SuiteName, unknown>)[name] = await runners[name](settings);
  progress(`${name} done in ${((performance.now() - t0) / 1_000).toFixed(1)} s`);
}
const durationMs = performance.now() - started;

const figures = figureRows(results);
const report: BenchReport = {
  date: new Date().toISOString(),
  quick: settings.quick,
  durationMs,
  environment: { ...environment, loadavgAtEnd: loadavg() },
  settings: settingsForReport(settings),
  results,
  figures,
};
await writeReport(settings.outFile, report);

console.log(renderTable(figures));
console.log();
console.log(summaryLine(figures));
console.log(
  `${settings.quick ? 'quick' : 'full'} run of ${subject}, ${(durationMs / 1_000).toFixed(0)} s; node ${environment.node}, ${environment.cores} × ${environment.cpu ?? 'unknown CPU'}; wrote ${settings.outFile}`,
);
