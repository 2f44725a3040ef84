/**
 * Runs from the installed package (see scripts/check-package.ts): a pool, a task, an event, a typed error, the
 * metrics, and a stop after which the process exits on its own.
 */
import { strict as assert } from 'node:assert';
import { isOrchestratorError, UnifiedOrchestrator, ValidationError } from 'unified-orchestrator';

const orchestrator = new UnifiedOrchestrator({
  pools: [
    {
      role: 'upper',
      capabilities: ['text'],
      minAgents: 1,
      create: () => ({ execute: async ({ payload }) => String(payload).toUpperCase() }),
    },
  ],
});
let completed = 0;
orchestrator.on('task:completed', () => completed++);
await orchestrator.start();

assert.equal(
  await orchestrator.submit<string>({ type: 'upper', requires: ['text'], payload: 'installed' }),
  'INSTALLED',
);
assert.equal(await orchestrator.delegate<string>({ type: 'upper', requires: ['text'], payload: 'ok' }).result, 'OK');
assert.equal(completed, 2);

const refused = await orchestrator.submit({ type: '' }).catch((e: unknown) => e);
assert.ok(
  refused instanceof ValidationError && isOrchestratorError(refused) && refused.code === 'VALIDATION_ERROR',
  String(refused),
);

const metrics = await orchestrator.metricsRegistry!.metrics();
assert.match(metrics, /unified_orchestrator_tasks_total\{.*outcome="completed".*\} 2/);

await orchestrator.stop();
console.log('smoke ok');
