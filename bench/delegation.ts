/**
 * Delegation: time from `submit` to the agent's `execute` being called (stamped inside `execute`), and the full
 * round trip of a no-op task, on an idle fleet and on a fleet whose 75 agents are busy under load.
 *
 * Busy: 76 agents, 75 load loops each keeping one task in flight; a load task lasts one turn of the event loop,
 * so the 75 agents stay busy and the engine turns over 75 tasks per turn. Between probes the case yields one
 * turn, so the load keeps moving; the probe itself must find the one free agent among 75 busy ones.
 */
import { UnifiedOrchestrator, type Agent, type Task, type TaskContext } from 'unified-orchestrator';
import { progress, sampleLatency, summarise, type LatencyStats } from './harness.js';
import { nextTurn } from './load.js';
import { FLEET, type BenchSettings } from './settings.js';

export interface DelegationCase {
  readonly submitToExecute: LatencyStats;
  readonly roundTrip: LatencyStats;
}

export interface DelegationResult {
  readonly idle: DelegationCase;
  readonly busy: DelegationCase & {
    /** Agents busy at once, the most seen while the load ran (from `stats().agents.BUSY`). */
    readonly peakBusyAgents: number;
    /** Load tasks completed per second while the probes ran: evidence that the fleet really was under load. */
    readonly loadTasksPerSec: number;
  };
}

const PROBE: Task = { type: 'probe', requires: ['work'] };
const LOAD: Task = { type: 'load', requires: ['work'] };

export async function benchDelegation(settings: BenchSettings): Promise<DelegationResult> {
  const idle = await idleCase(settings);
  progress('delegation: idle done');
  const busy = await busyCase(settings);
  return { idle, busy };
}

/** Agents that stamp the time `execute` was called for probes, and hold load tasks for one event-loop turn. */
function stampingFleet(size: number): {
  orchestrator: UnifiedOrchestrator;
  executedAt: () => number;
  loadDone: () => number;
} {
  let executedAt = Number.NaN;
  let loadDone = 0;
  const agent: Agent = {
    async execute(ctx: TaskContext) {
      if (ctx.type === 'probe') {
        executedAt = performance.now();
        return;
      }
      await nextTurn();
      loadDone++;
    },
  };
  const orchestrator = new UnifiedOrchestrator({
    pools: [
      { role: 'worker', capabilities: ['work'], create: () => agent, minAgents: size, maxAgents: size, warmSpares: 0 },
    ],
  });
  return { orchestrator, executedAt: () => executedAt, loadDone: () => loadDone };
}

/** Samples probe tasks: submit → execute, then submit → result. `between` runs before each probe, outside its sample. */
async function measureProbes(
  orchestrator: UnifiedOrchestrator,
  executedAt: () => number,
  settings: BenchSettings,
  label: string,
  between?: () => Promise<void>,
): Promise<DelegationCase> {
  const toExecute = await sampleLatency(
    `${label}: submit → execute`,
    async () => {
      if (between) await between();
      const t0 = performance.now();
      await orchestrator.submit(PROBE);
      return executedAt() - t0;
    },
    settings.latency,
  );
  const roundTrip = await sampleLatency(
    `${label}: submit → result`,
    async () => {
      if (between) await between();
      const t0 = performance.now();
      await orchestrator.submit(PROBE);
      return performance.now() - t0;
    },
    settings.latency,
  );
  return { submitToExecute: summarise(toExecute), roundTrip: summarise(roundTrip) };
}

async function idleCase(settings: BenchSettings): Promise<DelegationCase> {
  const { orchestrator, executedAt } = stampingFleet(FLEET);
  await orchestrator.start();
  try {
    return await measureProbes(orchestrator, executedAt, settings, 'idle');
  } finally {
    await orchestrator.stop();
  }
}

async function busyCase(settings: BenchSettings): Promise<DelegationResult['busy']> {
  const { orchestrator, executedAt, loadDone } = stampingFleet(FLEET + 1);
  await orchestrator.start();
  let running = true;
  const loops = Array.from({ length: FLEET }, async () => {
    while (running) await orchestrator.submit(LOAD);
  });
  try {
    let peakBusyAgents = 0;
    for (let i = 0; i < 50; i++) {
      await nextTurn();
      peakBusyAgents = Math.max(peakBusyAgents, orchestrator.stats().agents.BUSY);
    }
    const load0 = loadDone();
    const t0 = performance.now();
    const probes = await measureProbes(orchestrator, executedAt, settings, 'busy', nextTurn);
    const loadTasksPerSec = ((loadDone() - load0) * 1_000) / (performance.now() - t0);
    return { ...probes, peakBusyAgents, loadTasksPerSec };
  } finally {
    running = false;
    await Promise.all(loops);
    await orchestrator.stop();
  }
}
