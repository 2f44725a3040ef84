import { RedisBridge, UnifiedOrchestrator } from 'unified-orchestrator';

const orchestrator = new UnifiedOrchestrator({
  pools: [{ role: 'researcher', capabilities: ['search'], create: () => ({ execute: async ({ payload }) => `found ${String(payload)}` }) }],
  bridge: new RedisBridge({
    url: process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379',
    secret: process.env['BRIDGE_SECRET'] ?? 'change-me-to-a-long-shared-secret', // the same on every node
    namespace: 'prod',
  }),
});
await orchestrator.start();
// No coder on this node: the task runs on a node that has one, and its result comes back here.
console.log(await orchestrator.submit({ type: 'fix', requires: ['code'], payload: 'issue-42' }));
await orchestrator.stop();
