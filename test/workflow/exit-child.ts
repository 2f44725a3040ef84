/**
 * Child process for the workflow clean-exit test: starts workflow runs that park (a signal wait, a long sleep), hold
 * timers in memory (a short sleep, a signal wait with a timeout, a run deadline) and are mid-step (a local step on a
 * timer, a step that never settles, a task on an agent that never returns), stops, and then must exit on its own. `store` runs on a MemoryStore,
 * `memory` without a store; `drain` stops with drain: true.
 */
import { MemoryStore, UnifiedOrchestrator } from '../../src/index.js';

const mode = process.argv[2] ?? 'store';
const o = new UnifiedOrchestrator({
  metrics: false,
  ...(mode === 'memory' ? {} : { store: new MemoryStore(), durability: { claimIntervalMs: 20, pollMs: 20 } }),
  // An agent that never returns and ignores its signal.
  pools: [
    {
      role: 'hang',
      capabilities: ['hang'],
      minAgents: 1,
      maxAgents: 1,
      create: () => ({ execute: () => new Promise(() => {}) }),
    },
  ],
});
const inStep = new Set<string>();
o.workflow('parks-on-signal', {}, async (run) => run.signal('never'));
o.workflow('parks-on-sleep', {}, async (run) => run.sleep('an hour', 3_600_000));
o.workflow('short-sleep', {}, async (run) => run.sleep('short', 1_500));
o.workflow('signal-timeout', { deadlineMs: 3_600_000 }, async (run) => run.signal('soon', { timeoutMs: 1_500 }));
o.workflow('mid-step', {}, async (run) =>
  run.step('slow', ({ signal }) => {
    inStep.add('step');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, 60_000);
      signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason as Error)));
    });
  }),
);
// A step that never settles and ignores its signal, in a run with an hour's deadline (its timer must not outlive stop).
o.workflow('stuck-step', { deadlineMs: 3_600_000 }, async (run) =>
  run.step('stuck', () => {
    inStep.add('stuck');
    return new Promise(() => {});
  }),
);
o.workflow('mid-task', {}, async (run) => {
  inStep.add('task');
  return run.task('hang', { type: 'hang', requires: ['hang'] });
});
await o.start();
const names = [
  'parks-on-signal',
  'parks-on-sleep',
  'short-sleep',
  'signal-timeout',
  'mid-step',
  'stuck-step',
  'mid-task',
];
const handles = names.map((name) => o.startWorkflow(name, null));
const deadline = Date.now() + 5_000;
while ((o.stats().workflows?.parked ?? 0) < 2 || inStep.size < 3) {
  if (Date.now() > deadline) {
    console.log(`not ready: ${JSON.stringify(o.stats().workflows)}`);
    process.exit(2);
  }
  await new Promise((resolve) => setTimeout(resolve, 10));
}
const { parked, active } = o.stats().workflows!;
await o.stop(mode === 'drain' ? { drain: true, timeoutMs: 300 } : { drain: false });
const settled = await Promise.allSettled(handles.map((h) => h.result));
console.log(`stopped parked=${parked} active=${active} settled=${settled.length} state=${o.state}`);
const stoppedAt = performance.now();
process.on('exit', () => console.log(`exited ${Math.round(performance.now() - stoppedAt)} ms after stop`));
