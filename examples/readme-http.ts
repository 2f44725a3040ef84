import { createServer } from 'node:http';
import { UnifiedOrchestrator } from 'unified-orchestrator';

const orchestrator = new UnifiedOrchestrator({ health: { sla: { default: { p99Ms: 2_000, errorRate: 0.05 } } } });
await orchestrator.start();
createServer(orchestrator.httpHandler()).listen(9464); // GET /metrics, /healthz, /readyz
