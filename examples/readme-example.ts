import { UnifiedOrchestrator, isOrchestratorError, type Agent } from 'unified-orchestrator';

// An agent is any object with execute(ctx): here a stand-in for a model call that honours ctx.signal.
const createWriter = (): Agent<{ text: string }, string> => ({
  async execute({ payload, signal }) {
    signal.throwIfAborted(); // timeouts and cancels abort it
    return payload.text.split('.')[0] ?? '';
  },
});

const orchestrator = new UnifiedOrchestrator({ pools: [{ role: 'writer', capabilities: ['summarise'], create: createWriter, minAgents: 2 }] });
await orchestrator.start(); // pools are warm before the first task

try {
  console.log(await orchestrator.submit<string>({ type: 'summarise', requires: ['summarise'], payload: { text: 'Pools first. Then the rest.' }, maxAttempts: 3 }));
} catch (err) {
  if (isOrchestratorError(err)) console.error(err.code, err.message); // stable codes: TASK_DEAD_LETTERED, QUEUE_FULL, ...
} finally {
  await orchestrator.stop({ drain: true }); // nothing keeps the process alive after this
}
