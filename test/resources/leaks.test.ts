/**
 * Leaks: a process using every resource feature exits on its own after stop(); agent churn leaves no breakers,
 * rotation listeners or tracked handles behind; stop() releases everything it tracked.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { UnifiedOrchestrator, type Agent, type ResourceSample, type ResourceSampler } from 'unified-orchestrator';
import { echoAgent, failingAgent, rejectionOf } from '../engine/helpers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const child = fileURLToPath(new URL('../fixtures/resources-exit-child.ts', import.meta.url));

interface Run {
  code: number | null | 'hung';
  out: string;
  /** ms from the child printing "stopped" to its exit. */
  exitAfterStopMs: number | undefined;
}

/** Runs the fixture in a real Node process; 'hung' when it has not exited `limitMs` after it printed "stopped" (or at all). */
function run(mode: string, limitMs = 15_000, afterStopLimitMs = 4_000): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, mode], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let stoppedAt: number | undefined;
    let afterStop: NodeJS.Timeout | undefined;
    const hung = (): void => {
      p.kill('SIGKILL');
      resolve({ code: 'hung', out, exitAfterStopMs: undefined });
    };
    const timer = setTimeout(hung, limitMs);
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (stoppedAt === undefined && /^stopped$/m.test(out)) {
        stoppedAt = performance.now();
        afterStop = setTimeout(hung, afterStopLimitMs);
      }
    });
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => {
      clearTimeout(timer);
      clearTimeout(afterStop);
      resolve({ code, out, exitAfterStopMs: stoppedAt === undefined ? undefined : performance.now() - stoppedAt });
    });
  });
}

function summaryOf(out: string): Record<string, unknown> {
  const line = /^summary (.*)$/m.exec(out);
  if (!line) throw new Error(`no summary in the child's output:\n${out}`);
  return JSON.parse(line[1]!) as Record<string, unknown>;
}

describe('a process using the resource features exits on its own after stop()', () => {
  it.each(['drain', 'cancel'])(
    '%s',
    async (mode) => {
      const { code, out, exitAfterStopMs } = await run(mode);
      expect(code, out).toBe(0);
      expect(exitAfterStopMs).toBeDefined();
      const summary = summaryOf(out);
      expect(summary).toMatchObject({
        ok: 73, // every task, including those held by the rate limit and those paced by a retry-after
        vendorOk: 5,
        openError: 'BREAKER_OPEN',
        paced: 'paced',
        pacerCalls: 2,
        paused: true,
        fragileFailed: 3,
        agentBreakerOpened: true,
        vendorBreakerOpened: true,
        sampled: true,
        trackedAfter: 0,
        state: 'stopped',
      });
      expect(summary['trackedBefore']).toBeGreaterThan(0);
      if (mode === 'cancel') {
        // Tasks held by the rate limit are cancelled, dependency calls waiting for their turn rejected.
        expect(summary).toMatchObject({ leftover: 12, leftoverCodes: ['ORCHESTRATOR_STOPPED', 'TASK_CANCELLED'] });
      }
    },
    20_000,
  );
});

/** The internals a leak test reads. */
interface Internals {
  readonly breakerCounts: { readonly agents: number; readonly rotationListeners: number };
}
function internals(o: UnifiedOrchestrator): Internals {
  return o.resources;
}

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
});

class QuietSampler implements ResourceSampler {
  closed = 0;
  sample(): ResourceSample {
    return { rssBytes: 1, heapUsedBytes: 1, cpuPercent: 1 };
  }
  close(): void {
    this.closed++;
  }
}

describe('agent churn', () => {
  it('registering and unregistering 10,000 agents leaves no breaker, rotation listener or tracked handle behind', async () => {
    const o = new UnifiedOrchestrator({
      pools: [],
      pressure: { sampler: new QuietSampler(), sampleIntervalMs: 60_000 },
      rateLimits: { llm: { requests: 1_000_000, intervalMs: 1_000 } },
      agentBreaker: { volumeThreshold: 1_000, windowMs: 10_000 },
    });
    live.push(o);
    await o.start();

    // Warm up: one agent that fails a task (so its breaker is made, and with it the rotation clock that every
    // breaker of that window shares), then leaves. The shared clock stays: it is one per window length, not per agent.
    const trackedAtStart = o.stats().resources.tracked;
    o.registerAgent(failingAgent(), { id: 'warm', capabilities: ['warm'] });
    await rejectionOf(o.submit({ type: 't', requires: ['warm'] }));
    await o.unregisterAgent('warm');
    const baseline = o.stats().resources.tracked;
    expect(baseline - trackedAtStart).toBeLessThanOrEqual(1);
    expect(internals(o).breakerCounts).toMatchObject({ agents: 0, rotationListeners: 0 });

    const listenersBefore = process.listenerCount('warning') + process.listenerCount('exit');
    const BATCH = 1_000;
    let peak = { agents: 0, rotationListeners: 0 };
    for (let batch = 0; batch < 10; batch++) {
      const ids: string[] = [];
      for (let i = 0; i < BATCH; i++) {
        const n = batch * BATCH + i;
        // Every 50th agent fails a task before it leaves, so its breaker (and rotation listener) exists.
        const failing = n % 50 === 0;
        const agent: Agent = failing ? failingAgent() : echoAgent();
        ids.push(o.registerAgent(agent, { id: `agent-${n}`, capabilities: failing ? [`fails-${n}`] : ['x'] }));
      }
      const failures = ids
        .filter((_, i) => (batch * BATCH + i) % 50 === 0)
        .map((id) => rejectionOf(o.submit({ type: 't', requires: [`fails-${id.slice(6)}`] })));
      await Promise.all(failures);
      await o.submit({ type: 't', requires: ['x'], payload: batch });
      const counts = internals(o).breakerCounts;
      if (counts.agents > peak.agents) peak = { agents: counts.agents, rotationListeners: counts.rotationListeners };
      expect(o.stats().agents.IDLE).toBe(BATCH);
      await Promise.all(ids.map((id) => o.unregisterAgent(id)));
    }
    // The churn did make breakers (so the counts below could have caught a leak).
    expect(peak.agents).toBe(BATCH);
    expect(peak.rotationListeners).toBeGreaterThanOrEqual(BATCH / 50);

    expect(internals(o).breakerCounts).toMatchObject({ agents: 0, rotationListeners: 0 });
    expect(o.stats().resources.breakers.agents).toEqual({ closed: 0, open: 0, 'half-open': 0 });
    expect(o.stats().resources.tracked).toBe(baseline);
    expect(o.agents()).toEqual([]);
    expect(Object.values(o.stats().agents).every((n) => n === 0)).toBe(true);
    expect(process.listenerCount('warning') + process.listenerCount('exit')).toBe(listenersBefore);

    // Still fully working afterwards.
    o.registerAgent(echoAgent(), { id: 'after', capabilities: ['x'] });
    await expect(o.submit({ type: 't', requires: ['x'], payload: 'ok' })).resolves.toBe('after:ok');
    await o.stop();
  }, 20_000);
});

describe('stop() releases what it tracked', () => {
  it('after stop(), stats().resources.tracked is 0 and no breaker is left', async () => {
    const sampler = new QuietSampler();
    const o = new UnifiedOrchestrator({
      pools: [
        { role: 'w', capabilities: ['x'], minAgents: 2, maxAgents: 3, warmSpares: 1, create: () => failingAgent() },
      ],
      pressure: { sampler, sampleIntervalMs: 20 },
      rateLimits: { llm: { requests: 1, intervalMs: 60_000 } },
      agentBreaker: { volumeThreshold: 1 },
      retry: { baseDelayMs: 1, maxDelayMs: 5 },
    });
    live.push(o);
    await o.start();
    o.registerAgent(echoAgent(), { id: 'llm-agent', capabilities: ['llm'] });
    const vendor = o.resources.breaker('vendor', async () => 1, { rateLimit: { requests: 1, intervalMs: 60_000 } });
    o.resources.breaker('other', async () => 2, { windowMs: 5_000 });
    await vendor();
    const waitingCall = vendor();
    await o.submit({ type: 't', requires: ['llm'] });
    const heldTask = o.submit({ type: 't', requires: ['llm'] });
    await rejectionOf(o.submit({ type: 't', requires: ['x'] })); // a pool agent fails: its breaker is made
    expect(o.stats().resources.tracked).toBeGreaterThan(0);
    expect(internals(o).breakerCounts.agents).toBeGreaterThan(0);

    await o.stop({ drain: false });
    expect(o.stats().resources.tracked).toBe(0);
    expect(internals(o).breakerCounts).toMatchObject({ agents: 0, rotationListeners: 0 });
    expect(o.stats().resources.breakers.agents).toEqual({ closed: 0, open: 0, 'half-open': 0 });
    expect(sampler.closed).toBe(1);
    expect(await rejectionOf(waitingCall)).toMatchObject({ code: 'ORCHESTRATOR_STOPPED' });
    expect(await rejectionOf(heldTask)).toMatchObject({ code: 'TASK_CANCELLED' });
    // Nothing is tracked again after stop: no new breaker can be made.
    expect(() => o.resources.breaker('late', async () => 3)).toThrow(
      expect.objectContaining({ code: 'ORCHESTRATOR_STOPPED' }),
    );
    expect(o.stats().resources.tracked).toBe(0);
  });
});
