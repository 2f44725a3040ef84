/**
 * A profiling aid for the workflow bench, not part of it: runs one subject of bench/workflow-ours.ts (the
 * orchestrator's ten-step workflow) for a fixed number of workflows, one at a time or `--in-flight=N` at once, so
 * that `node --cpu-prof` sees the per-step path and little else.
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/wfprof --import tsx bench/workflow-profile.ts --store=postgres --workflows=2000
 *   node --import tsx bench/workflow-profile.ts --store=pglite --in-flight=8
 *
 * Prints the rate and the idle per-step time; the server (postgres) is one of the bench's own, as in the bench.
 */
import { newDatabase, startPostgresServer } from './postgres-server.js';
import { orchestratorWorkflowSubject, type StepKind } from './workflow-ours.js';
import { WORKFLOW_STEPS } from './workflow-harness.js';

const arg = (name: string, fallback: string): string =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const store = arg('store', 'postgres') as 'postgres' | 'pglite';
const kind = arg('kind', 'step') as StepKind;
const workflows = Number(arg('workflows', '1000'));
const inFlight = Number(arg('in-flight', '1'));

const server = await startPostgresServer();
try {
  const subject = orchestratorWorkflowSubject(store, kind);
  await subject.setup(await newDatabase(server.url, 'profile'));
  try {
    for (let i = 0; i < 100; i++) await subject.runOne();
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < workflows) {
          next++;
          await subject.runOne();
        }
      }),
    );
    const ms = performance.now() - t0;
    console.log(
      `${subject.name}: ${workflows} workflows, ${inFlight} in flight: ${((workflows * 1000) / ms).toFixed(0)} workflows/s, ` +
        `${((ms * 1000 * inFlight) / workflows / WORKFLOW_STEPS).toFixed(0)} µs per step (span × in flight / steps)`,
    );
  } finally {
    await subject.teardown();
  }
} finally {
  server.stop();
}
