/**
 * Registration: how long it takes to get an agent into the fleet.
 *
 * - Warm `spawnAgent(role)`: the pool hands over its warm spare. Every sample is a warm one: after each spawn the
 *   agent is unregistered and the case waits for the spare to be refilled, outside the sample. The spawn's own
 *   cost includes starting that refill (the factory runs later, outside the sample).
 * - Cold `registerAgent`: a new agent object, made before the clock starts (the user's factory is not the
 *   library's cost), registered into a running orchestrator. No warm-up: the first calls are in the sample, so
 *   `max` shows the cold start.
 */
import { UnifiedOrchestrator, type Agent } from 'unified-orchestrator';
import { sampleLatency, summarise, type LatencyStats } from './harness.js';
import { nextTurn, noop } from './load.js';
import type { BenchSettings } from './settings.js';

export interface RegistrationResult {
  readonly spawnAgentWarm: LatencyStats;
  readonly registerAgentCold: LatencyStats;
}

export async function benchRegistration(settings: BenchSettings): Promise<RegistrationResult> {
  return {
    spawnAgentWarm: await warmSpawn(settings),
    registerAgentCold: await coldRegister(settings),
  };
}

async function warmSpawn(settings: BenchSettings): Promise<LatencyStats> {
  const orchestrator = new UnifiedOrchestrator({
    // Room for far more agents than the case holds at once, so it never meets PoolAtCapacityError.
    pools: [
      {
        role: 'worker',
        capabilities: ['work'],
        create: () => ({ execute: noop }),
        minAgents: 1,
        maxAgents: 1_000,
        warmSpares: 1,
      },
    ],
  });
  await orchestrator.start();
  // Ready means parked and its creation fully settled: a spawn in between can leave the pool without a refill
  // (see the note in the bench report), and this case measures warm spawns only.
  const spareReady = (): boolean => {
    const pool = orchestrator.stats().pools[0];
    return pool !== undefined && pool.spares >= 1 && pool.creating === 0;
  };
  try {
    const samples = await sampleLatency(
      'spawnAgent (warm spare)',
      async () => {
        while (!spareReady()) await nextTurn();
        const t0 = performance.now();
        const id = await orchestrator.spawnAgent('worker');
        const elapsed = performance.now() - t0;
        await orchestrator.unregisterAgent(id);
        return elapsed;
      },
      settings.latency,
    );
    return summarise(samples);
  } finally {
    await orchestrator.stop();
  }
}

async function coldRegister(settings: BenchSettings): Promise<LatencyStats> {
  const orchestrator = new UnifiedOrchestrator();
  await orchestrator.start();
  const ids: string[] = [];
  const capabilities = Array.from({ length: 10 }, (_, k) => [`cap-${k}`]);
  try {
    const samples = await sampleLatency(
      'registerAgent (new agent, no factory)',
      () => {
        const agent: Agent = { execute: noop };
        const options = { capabilities: capabilities[ids.length % capabilities.length]! };
        const t0 = performance.now();
        const id = orchestrator.registerAgent(agent, options);
        const elapsed = performance.now() - t0;
        ids.push(id);
        return elapsed;
      },
      { timeMs: 0, minSamples: settings.registerSamples, warmupMs: 0, cold: true },
    );
    return summarise(samples);
  } finally {
    await Promise.all(ids.map((id) => orchestrator.unregisterAgent(id)));
    await orchestrator.stop();
  }
}
