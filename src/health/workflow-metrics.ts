/**
 * The metrics of workflow runs (WORKFLOW_METRIC_NAMES), fed by the workflow runner's observer: runs by outcome, parks,
 * step durations by kind, replayed steps, and the runs executing now.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { WorkflowObserver } from '../workflow/workflow-runner.js';
import { WORKFLOW_METRIC_NAMES } from './metric-names.js';
import { checkFreeName } from './metrics.js';

/** Steps are model calls, local functions and human waits: milliseconds to days. */
const STEP_BUCKETS = [0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1_800, 3_600, 21_600, 86_400];

/** Registers the workflow metrics on `registry` and returns the observer the runner reports to. */
export function workflowMetrics(registry: Registry, prefix: string, active: () => number): WorkflowObserver {
  const name = (key: keyof typeof WORKFLOW_METRIC_NAMES): string => {
    const full = prefix + WORKFLOW_METRIC_NAMES[key];
    checkFreeName(registry, full);
    return full;
  };
  // Every name is checked before any is registered: a clash leaves nothing half-registered.
  for (const key of Object.keys(WORKFLOW_METRIC_NAMES) as (keyof typeof WORKFLOW_METRIC_NAMES)[]) name(key);
  const registers = [registry];
  const runs = new Counter({
    name: name('runs'),
    help: 'Workflow runs that ended on this node, by workflow and outcome.',
    labelNames: ['workflow', 'outcome'],
    registers,
  });
  const parks = new Counter({
    name: name('parks'),
    help: 'Times a workflow run parked on this node to wait for a signal or a timer.',
    labelNames: ['workflow'],
    registers,
  });
  const steps = new Histogram({
    name: name('stepDuration'),
    help: 'Seconds a workflow step took when it ran (not replayed), by workflow, kind and whether it succeeded.',
    labelNames: ['workflow', 'kind', 'ok'],
    buckets: STEP_BUCKETS,
    registers,
  });
  const replayed = new Counter({
    name: name('stepsReplayed'),
    help: 'Workflow steps returned from their checkpoints on a replay.',
    labelNames: ['workflow'],
    registers,
  });
  new Gauge({
    name: name('active'),
    help: 'Workflow runs executing on this node now.',
    registers,
    collect() {
      this.set(active());
    },
  });
  return {
    registered(workflow) {
      // Every series from 0, so that increase() sees a workflow's first failure.
      for (const outcome of ['completed', 'failed', 'cancelled', 'timed-out']) runs.labels(workflow, outcome).inc(0);
      parks.labels(workflow).inc(0);
      replayed.labels(workflow).inc(0);
    },
    runEnded(workflow, outcome) {
      if (outcome === 'parked') parks.inc({ workflow });
      else if (outcome !== 'lost' && outcome !== 'stopping') runs.inc({ workflow, outcome });
    },
    stepEnded(workflow, kind, wasReplayed, ms, ok) {
      if (wasReplayed) replayed.inc({ workflow });
      else steps.observe({ workflow, kind, ok: ok ? 'true' : 'false' }, ms / 1_000);
    },
  };
}
