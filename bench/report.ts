/**
 * The figures beside their two targets (the seed's promises and the project's own), as a Markdown table for
 * stdout and the README, and as JSON for bench/results/latest.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { BridgeResult } from './bridge.js';
import type { CompatResult } from './compat.js';
import type { DelegationResult } from './delegation.js';
import type { LatencyStats } from './harness.js';
import type { MemoryResult } from './memory.js';
import type { RegistrationResult } from './registration.js';
import type { ScaleResult } from './scale.js';
import type { BenchSettings } from './settings.js';
import type { StressResult } from './stress.js';
import type { ThroughputResult } from './throughput.js';

export interface SuiteResults {
  registration?: RegistrationResult;
  delegation?: DelegationResult;
  throughput?: ThroughputResult;
  scale?: ScaleResult;
  stress?: StressResult;
  memory?: MemoryResult;
  bridge?: BridgeResult;
  compat?: CompatResult;
}

/** One target and whether the figure meets it. `measured` is the number compared, in the target's unit. */
export interface Verdict {
  readonly target: string;
  readonly measured: number;
  readonly pass: boolean;
}

export interface FigureRow {
  /** Stable key, e.g. `delegation.busy.submitToExecute`. */
  readonly id: string;
  readonly figure: string;
  /** The figure as printed. */
  readonly value: string;
  /** `null` where the seed or the project sets no target for this figure. */
  readonly seed: Verdict | null;
  readonly project: Verdict | null;
}

export interface BenchReport {
  readonly date: string;
  readonly quick: boolean;
  readonly durationMs: number;
  readonly environment: Record<string, unknown>;
  readonly settings: Record<string, unknown>;
  readonly results: SuiteResults;
  readonly figures: readonly FigureRow[];
}

/** The ids of every figure a full run reports (the quick test checks them all). */
export const FIGURE_IDS = [
  'registration.spawnAgentWarm',
  'registration.registerAgentCold',
  'delegation.idle.submitToExecute',
  'delegation.idle.roundTrip',
  'delegation.busy.submitToExecute',
  'delegation.busy.roundTrip',
  'delegation.busy.concurrentAgents',
  'throughput.noop',
  'throughput.backlog.sustained',
  'throughput.backlog.drain',
  'scale.routingP99',
  'stress.tasksPerMinute',
  'memory.baseOverhead',
  'memory.heapGrowth',
  'bridge.throughput',
  'bridge.roundTrip',
  'compat.adapter.roundTrip',
  'compat.router.passthrough',
  'compat.router.passthroughSteady',
  'compat.router.unifiedRoundTrip',
  'compat.router.sideOf',
] as const;

// --- Formatting -----------------------------------------------------------------------------------

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
export const us = (v: number): string =>
  v >= 1_000 ? `${(v / 1_000).toFixed(2)} ms` : v >= 100 ? `${v.toFixed(0)} µs` : `${v.toFixed(1)} µs`;
const rate = (perSec: number): string => `${int(perSec)}/s`;
const times = (r: number): string => `${r.toFixed(2)}×`;
const mb = (v: number): string => `${v >= 0 ? '+' : ''}${v.toFixed(2)} MB`;
const signedUs = (v: number): string => `${v >= 0 ? '+' : '−'}${us(Math.abs(v))}`;
const pcts = (s: LatencyStats): string => `p50 ${us(s.p50Us)} · p99 ${us(s.p99Us)}`;
const latency = (s: LatencyStats): string => `p50 ${us(s.p50Us)} · p99 ${us(s.p99Us)} · max ${us(s.maxUs)}`;

// --- Targets ---------------------------------------------------------------------------------------

const below = (target: string, measured: number, limit: number): Verdict => ({
  target,
  measured,
  pass: measured < limit,
});
const atMost = (target: string, measured: number, limit: number): Verdict => ({
  target,
  measured,
  pass: measured <= limit,
});
const atLeast = (target: string, measured: number, limit: number): Verdict => ({
  target,
  measured,
  pass: measured >= limit,
});

/** The seed promised each registration under 100 ms and each delegation under 500 ms: checked against the max. */
const seedRegistration = (s: LatencyStats): Verdict => below('< 100 ms (max)', s.maxUs / 1_000, 100);
const seedDelegation = (s: LatencyStats): Verdict => below('< 500 ms (max)', s.maxUs / 1_000, 500);
const seedRate = (perSec: number): Verdict => atLeast('≥ 1,000 tasks/min', perSec * 60, 1_000);

export function figureRows(r: SuiteResults): FigureRow[] {
  const rows: FigureRow[] = [];
  const add = (
    id: (typeof FIGURE_IDS)[number],
    figure: string,
    value: string,
    seed: Verdict | null,
    project: Verdict | null,
  ): void => {
    rows.push({ id, figure, value, seed, project });
  };

  if (r.registration) {
    const { spawnAgentWarm: spawn, registerAgentCold: reg } = r.registration;
    add(
      'registration.spawnAgentWarm',
      'Registration: warm `spawnAgent(role)`',
      latency(spawn),
      seedRegistration(spawn),
      atMost('p99 ≤ 50 µs', spawn.p99Us, 50),
    );
    add(
      'registration.registerAgentCold',
      'Registration: cold `registerAgent` (factory excluded)',
      latency(reg),
      seedRegistration(reg),
      null,
    );
  }
  if (r.delegation) {
    const { idle, busy } = r.delegation;
    add(
      'delegation.idle.submitToExecute',
      'Delegation, idle: submit → execute',
      latency(idle.submitToExecute),
      seedDelegation(idle.submitToExecute),
      atMost('p99 ≤ 20 µs', idle.submitToExecute.p99Us, 20),
    );
    add(
      'delegation.idle.roundTrip',
      'Delegation, idle: round trip (no-op)',
      latency(idle.roundTrip),
      seedDelegation(idle.roundTrip),
      null,
    );
    add(
      'delegation.busy.submitToExecute',
      'Delegation, 75 agents busy: submit → execute',
      latency(busy.submitToExecute),
      seedDelegation(busy.submitToExecute),
      atMost('p99 ≤ 50 µs', busy.submitToExecute.p99Us, 50),
    );
    add(
      'delegation.busy.roundTrip',
      'Delegation, 75 agents busy: round trip (no-op)',
      latency(busy.roundTrip),
      seedDelegation(busy.roundTrip),
      null,
    );
    add(
      'delegation.busy.concurrentAgents',
      'Concurrent agents (busy at once, under load)',
      `${busy.peakBusyAgents} (load ${rate(busy.loadTasksPerSec)})`,
      atLeast('50+', busy.peakBusyAgents, 50),
      null,
    );
  }
  if (r.throughput) {
    const { noop, backlog } = r.throughput;
    add(
      'throughput.noop',
      'Throughput, no-op, 75 agents vs p-queue (concurrency 75)',
      `${rate(noop.orchestratorTasksPerSec)} vs ${rate(noop.pQueueTasksPerSec)} = ${times(noop.ratio)}`,
      seedRate(noop.orchestratorTasksPerSec),
      atLeast('≥ 1.0× p-queue', noop.ratio, 1),
    );
    add(
      'throughput.backlog.sustained',
      `Throughput, ${int(backlog.size)} waiting (random priorities), sustained`,
      `${rate(backlog.sustained.orchestratorTasksPerSec)} vs ${rate(backlog.sustained.pQueueTasksPerSec)} = ${times(backlog.sustained.ratio)}`,
      seedRate(backlog.sustained.orchestratorTasksPerSec),
      atLeast('≥ 10× p-queue', backlog.sustained.ratio, 10),
    );
    add(
      'throughput.backlog.drain',
      `Throughput, draining ${int(backlog.size)} (no arrivals; info)`,
      `${rate(backlog.drain.orchestratorTasksPerSec)} vs ${rate(backlog.drain.pQueueTasksPerSec)} = ${times(backlog.drain.ratio)}`,
      seedRate(backlog.drain.orchestratorTasksPerSec),
      null,
    );
  }
  if (r.scale) {
    const fleets = r.scale.fleets;
    const largest = fleets[fleets.length - 1]!;
    add(
      'scale.routingP99',
      `Routing p99 (submit → execute), ${fleets.map((f) => int(f.agents)).join(' / ')} agents, ${r.scale.classes} classes`,
      `${fleets.map((f) => us(f.p99Us)).join(' / ')} (${int(largest.agents)}/${int(fleets[0]!.agents)}: ${times(r.scale.p99Growth)})`,
      seedDelegation(largest),
      atMost(`p99 at ${int(largest.agents)} ≤ 2× at ${int(fleets[0]!.agents)}`, r.scale.p99Growth, 2),
    );
  }
  if (r.stress) {
    const s = r.stress;
    add(
      'stress.tasksPerMinute',
      `Stress: ${int(s.tasks)} tasks, ${Math.round(s.failureRate * 100)}% of attempts fail, ≤ ${s.maxAttempts} attempts`,
      `${int(s.tasksPerMinute)} tasks/min (${int(s.outcomes.completed)} completed, ${int(s.outcomes['dead-lettered'])} dead-lettered); terminal once: ${s.everyTaskTerminalOnce ? 'yes' : 'NO'}`,
      seedRate(s.tasksPerSec),
      {
        target: 'every task exactly one terminal state',
        measured: s.everyTaskTerminalOnce ? 1 : 0,
        pass: s.everyTaskTerminalOnce,
      },
    );
  }
  if (r.memory) {
    const m = r.memory;
    add(
      'memory.baseOverhead',
      `Memory: base overhead, ${m.agents} idle agents over bare Node`,
      `heap ${mb(m.baseOverhead.heapMB)} · RSS ${mb(m.baseOverhead.rssMB)}`,
      below('< 50 MB (RSS)', m.baseOverhead.rssMB, 50),
      atMost('heap ≤ 10 MB', m.baseOverhead.heapMB, 10),
    );
    add(
      'memory.heapGrowth',
      `Memory: heap growth after ${int(m.tasks)} tasks + GC`,
      mb(m.heapGrowthMB),
      null,
      atMost('≤ 5 MB', m.heapGrowthMB, 5),
    );
  }
  if (r.bridge) {
    const b = r.bridge;
    const rb = b.redisBridge.roundTrip;
    const bq = b.bullmq.roundTrip;
    add(
      'bridge.throughput',
      `Bridge throughput, no-op, 1 worker node (${b.concurrency} agents) vs BullMQ (concurrency ${b.concurrency}), ≤ ${int(b.window)} in flight`,
      `${rate(b.redisBridge.tasksPerSec)} vs ${rate(b.bullmq.tasksPerSec)} = ${times(b.throughputRatio)}`,
      seedRate(b.redisBridge.tasksPerSec),
      atLeast('≥ 4× BullMQ', b.throughputRatio, 4),
    );
    add(
      'bridge.roundTrip',
      'Bridge round trip (submit → result), sequential, RedisBridge vs BullMQ',
      `p50 ${us(rb.p50Us)} · p99 ${us(rb.p99Us)} vs p50 ${us(bq.p50Us)} · p99 ${us(bq.p99Us)} (BullMQ p50 / RedisBridge p50 = ${times(b.roundTripP50Ratio)})`,
      seedDelegation(rb),
      below('p50 < 0.5 ms', rb.p50Us / 1_000, 0.5),
    );
  }
  if (r.compat) {
    const c = r.compat;
    add(
      'compat.adapter.roundTrip',
      `Compat: adapter \`delegateTaskToAgent\` + \`waitForTask\` vs \`submit\` (no-op, ${c.agents} idle agents; adapter past ${int(c.adapterWindow.maxFinishedTasks)} finished tasks)`,
      `${pcts(c.adapter.roundTrip)} vs ${pcts(c.submit)} = ${times(c.adapter.ratio)} (p50)`,
      seedDelegation(c.adapter.roundTrip),
      atMost('p50 ≤ 2× submit', c.adapter.ratio, 2),
    );
    const { direct, fresh, freshNoMetrics, steady } = c.passthrough;
    add(
      'compat.router.passthrough',
      `Compat: router at 0% (flags off) → trivial legacy, vs legacy directly; router < ${int(c.passthrough.freshLimit)} ids handed out`,
      `${signedUs(fresh.addedUs)}/call p50 (${pcts(fresh.router)} vs ${pcts(direct)} = ${times(fresh.ratio)}; metrics off: ${signedUs(freshNoMetrics.addedUs)})`,
      null,
      atMost('p50 overhead ≤ 5 µs', fresh.addedUs, 5),
    );
    add(
      'compat.router.passthroughSteady',
      `Compat: the same, router past its ${int(c.passthrough.maxOwnedIds)}-id cap (${int(steady.idsBefore)} ids handed out before sampling)`,
      `${signedUs(steady.addedUs)}/call p50 (${pcts(steady.router)} vs ${pcts(direct)} = ${times(steady.ratio)})`,
      null,
      atMost('p50 overhead ≤ 5 µs', steady.addedUs, 5),
    );
    add(
      'compat.router.unifiedRoundTrip',
      `Compat: router at 100% → adapter (delegate + \`waitForTask\`), vs adapter directly (router < ${int(c.passthrough.freshLimit)} ids)`,
      `${pcts(c.routed.roundTrip)} vs ${pcts(c.adapter.roundTrip)} = ${times(c.routed.ratio)} (p50 ${signedUs(c.routed.addedUs)})`,
      seedDelegation(c.routed.roundTrip),
      atMost('p50 ≤ adapter + 10 µs (2 calls × 5 µs)', c.routed.addedUs, 10),
    );
    add(
      'compat.router.sideOf',
      `Compat: routing decision \`sideOf(key)\`, ${int(c.routing.keys)} distinct ${c.routing.keyLength}-char keys`,
      `${c.routing.sideOfNs.toFixed(1)} ns/call (\`bucketOf\` ${c.routing.bucketOfNs.toFixed(1)} ns; ${(c.routing.unifiedShare * 100).toFixed(1)}% unified at 50%)`,
      null,
      atMost('≤ 500 ns/call (a tenth of the passthrough budget)', c.routing.sideOfNs, 500),
    );
  }
  return rows;
}

// --- Output -----------------------------------------------------------------------------------------

const verdict = (v: Verdict | null): string => (v === null ? '—' : v.pass ? 'pass' : 'miss');
const escapeCell = (s: string): string => s.replaceAll('|', '\\|');

/** A Markdown table: one row per figure, both targets, and pass/miss for each (seed / project). */
export function renderTable(rows: readonly FigureRow[]): string {
  const header = ['Figure', 'Measured', 'Seed target', 'Project target', 'Pass/miss (seed / project)'];
  const lines = rows.map((r) => [
    r.figure,
    r.value,
    r.seed?.target ?? '—',
    r.project?.target ?? '—',
    `${verdict(r.seed)} / ${verdict(r.project)}`,
  ]);
  const out = [header, header.map(() => '---'), ...lines].map((cells) => `| ${cells.map(escapeCell).join(' | ')} |`);
  return out.join('\n');
}

export function summaryLine(rows: readonly FigureRow[]): string {
  const count = (pick: (r: FigureRow) => Verdict | null): string => {
    const vs = rows.map(pick).filter((v): v is Verdict => v !== null);
    const missed = vs.filter((v) => !v.pass).length;
    return `${vs.length - missed}/${vs.length} pass`;
  };
  const misses = rows.filter((r) => r.project && !r.project.pass).map((r) => r.id);
  return `seed targets: ${count((r) => r.seed)}; project targets: ${count((r) => r.project)}${misses.length > 0 ? ` (missed: ${misses.join(', ')})` : ''}`;
}

export async function writeReport(file: string, report: BenchReport): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
}

/** Settings as plain JSON (the suite set as a list, no output path). */
export function settingsForReport(settings: BenchSettings): Record<string, unknown> {
  const { suites, outFile: _outFile, ...rest } = settings;
  return { ...rest, suites: [...suites] };
}
