import { isLegacyError, OrchestratorsCompatibilityAdapter, TrafficRouter, UnifiedOrchestrator, type LegacyTask } from 'unified-orchestrator';

// The legacy implementation callers use today (any object with the legacy calls, camelCase or snake_case).
const done = new Map<string, string>();
const legacy = {
  async spawn_agent(role: string) { return `legacy-${role}`; },
  async delegate_task_to_agent(task: LegacyTask) { const id = `legacy-task-${done.size + 1}`; done.set(id, String(task.payload).toUpperCase()); return id; },
  async get_agent_status(id: string) { return { error: { code: 'AGENT_NOT_FOUND', message: `no agent ${id}` } }; },
  async get_task_status(id: string) {
    const result = done.get(id);
    return result === undefined ? { error: { code: 'TASK_NOT_FOUND', message: `no task ${id}` } }
      : { task_id: id, status: 'completed' as const, agent_id: null, attempts: 1, result, created_at: '', updated_at: '' };
  },
  async shutdown_agent(id: string) { return { agent_id: id, status: 'terminated' as const }; },
};

const orchestrator = new UnifiedOrchestrator({
  pools: [{ role: 'writer', capabilities: ['text'], minAgents: 2, create: () => ({ execute: async ({ payload }) => String(payload).toUpperCase() }) }],
});
await orchestrator.start();
const router = new TrafficRouter({ legacy, unified: new OrchestratorsCompatibilityAdapter(orchestrator), orchestrator });

// Flags off: every call goes to legacy, untouched.
const first = await router.delegate_task_to_agent({ role: 'writer', payload: 'hello', tenant_id: 'acme' });
console.log('answered by legacy:', first);

// Shadow mode: legacy answers, the unified side runs the same task, and the two are compared.
router.on('shadow:compared', (c) => console.log(`shadow ${c.method}: ${c.result}`, c.differences));
await router.setShadow(true);
await router.delegate_task_to_agent({ role: 'writer', payload: 'compare me', tenant_id: 'acme' });

// 10% of tenants, then everyone; a rollback sends every call back to legacy at once.
await router.setPercent(100);
const id = await router.delegate_task_to_agent({ role: 'writer', payload: 'now unified', priority: 'high', timeout: 30 });
if (!isLegacyError(id)) console.log('answered by unified:', await router.wait_for_task(id));
await router.rollback('example over');
console.log('after rollback:', router.percent, router.shadow);

await router.close();
await orchestrator.stop();
