/**
 * Scale: routing latency (submit → execute, every agent free) with 75, 1,000 and 10,000 registered agents spread
 * over 10 capability classes (agent i holds `cap-(i mod 10)`; probes cycle through the classes). All fleets are
 * built first and sampled in interleaved passes, so a noisy moment on a shared machine hits every fleet alike.
 */
import { UnifiedOrchestrator, type Agent, type Task } from 'unified-orchestrator';
import { progress, sampleLatency, summarise, type LatencyStats } from './harness.js';
import type { BenchSettings } from './settings.js';

export interface ScaleResult {
  readonly classes: number;
  /** Per fleet size: submit → execute with free agents. */
  readonly fleets: readonly (LatencyStats & { readonly agents: number; readonly registerMs: number })[];
  /** p99 at the largest fleet / p99 at the smallest. */
  readonly p99Growth: number;
}

interface Fleet {
  readonly agents: number;
  readonly orchestrator: UnifiedOrchestrator;
  readonly executedAt: () => number;
  readonly registerMs: number;
  readonly samples: Float64Array[];
}

async function buildFleet(agents: number, classes: number): Promise<Fleet> {
  let executedAt = Number.NaN;
  const orchestrator = new UnifiedOrchestrator();
  await orchestrator.start();
  const made: Agent[] = Array.from({ length: agents }, () => ({
    async execute() {
      executedAt = performance.now();
    },
  }));
  const t0 = performance.now();
  for (let i = 0; i < agents; i++) orchestrator.registerAgent(made[i]!, { capabilities: [`cap-${i % classes}`] });
  const registerMs = performance.now() - t0;
  return { agents, orchestrator, executedAt: () => executedAt, registerMs, samples: [] };
}

export async function benchScale(settings: BenchSettings): Promise<ScaleResult> {
  const { fleets: sizes, classes, passes, latency } = settings.scale;
  const probes: Task[] = Array.from({ length: classes }, (_, k) => ({ type: 'probe', requires: [`cap-${k}`] }));
  const fleets: Fleet[] = [];
  try {
    for (const n of sizes) fleets.push(await buildFleet(n, classes));
    for (let pass = 0; pass < passes; pass++) {
      // Alternate the order too, so no fleet always runs right after the largest one's garbage.
      const order = pass % 2 === 0 ? fleets : [...fleets].reverse();
      for (const fleet of order) {
        let k = 0;
        const samples = await sampleLatency(
          `${fleet.agents} agents: submit → execute`,
          async () => {
            const probe = probes[k++ % probes.length]!;
            const t0 = performance.now();
            await fleet.orchestrator.submit(probe);
            return fleet.executedAt() - t0;
          },
          latency,
        );
        fleet.samples.push(samples);
      }
      progress(`scale: pass ${pass + 1}/${passes} done`);
    }
  } finally {
    await Promise.all(fleets.map((f) => f.orchestrator.stop()));
  }
  const results = fleets.map((f) => {
    const all = new Float64Array(f.samples.reduce((n, s) => n + s.length, 0));
    let at = 0;
    for (const s of f.samples) {
      all.set(s, at);
      at += s.length;
    }
    return { agents: f.agents, registerMs: f.registerMs, ...summarise(all) };
  });
  const first = results[0]!;
  const last = results[results.length - 1]!;
  return { classes, fleets: results, p99Growth: last.p99Us / first.p99Us };
}
