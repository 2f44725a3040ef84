import { UnifiedOrchestrator, type Agent } from 'unified-orchestrator';

// Stands in for a vendor SDK call that may answer 429 with a retry-after.
const callModel = async (prompt: string): Promise<{ text: string; tokens: number }> => ({ text: prompt.toUpperCase(), tokens: prompt.length });

const orchestrator = new UnifiedOrchestrator({
  pools: [{ role: 'llm', capabilities: ['llm'], create: (): Agent<string, string> => ({
    async execute(ctx) {
      const { text, tokens } = await callModel(ctx.payload);
      ctx.reportCost(tokens); // counts against the tenant's budget and the capability's unit limit
      return text;
    },
  }) }],
  agentBreaker: { errorThresholdPercentage: 50, volumeThreshold: 5, resetTimeoutMs: 10_000 }, // quarantines failing agents
  pressure: { memoryLimitBytes: 1024 ** 3, priorityFloor: 0 }, // critical pressure sheds tasks with priority < 0
  budgets: { windowMs: 3_600_000, limits: { acme: 50_000 } }, // units per tenant per hour
  rateLimits: { llm: { requests: 60, units: 90_000, intervalMs: 60_000 } }, // tasks over the limit wait
});
orchestrator.on('budget:exceeded', ({ tenantId, spent, limit }) => console.warn(`${tenantId} spent ${spent}/${limit}`));
orchestrator.on('breaker:state', ({ breaker, to }) => console.info(`breaker ${breaker} is ${to}`));
await orchestrator.start();

// The host's own dependencies get a breaker (and optionally a rate limit and a fallback) too.
const search = orchestrator.resources.breaker('search', async (q: string) => [`result for ${q}`], {
  fallback: () => [] as string[], // answers while the breaker is open
});

console.log(await orchestrator.submit<string>({ type: 'complete', requires: ['llm'], payload: 'hello', tenantId: 'acme' }));
console.log(await search('orchestrators'), orchestrator.resources.spend('acme'), orchestrator.stats().resources.breakers);
await orchestrator.stop();
