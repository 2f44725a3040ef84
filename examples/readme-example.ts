import { UnifiedOrchestrator, isOrchestratorError, type Agent } from 'unified-orchestrator';

// An agent is any object with execute(ctx); honour ctx.signal so that timeouts and cancels stop the work.
const createWriter = (): Agent<{ text: string }, string> => ({
  async execute({ payload, signal }) {
    signal.throwIfAborted();
    return payload.text.split('.')[0] ?? ''; // stands in for a call to your model
  },
});

const orchestrator = new UnifiedOrchestrator({
  pools: [{ role: 'writer', capabilities: ['text', 'summarise'], create: createWriter, minAgents: 2, maxAgents: 10 }],
});
await orchestrator.start();

try {
  const task = { type: 'summarise', requires: ['summarise'], payload: { text: 'Pools first. Then the rest.' }, maxAttempts: 3 };
  console.log(await orchestrator.submit<string>(task)); // failed attempts are retried on another agent
} catch (err) {
  if (isOrchestratorError(err)) console.error(err.code, err.message); // e.g. TASK_DEAD_LETTERED after 3 failures
  else throw err;
} finally {
  await orchestrator.stop({ drain: true });
}
