// What the runbook's snippets take as given: a running orchestrator, a dead-lettered task's id, a workflow run's id and a logger.
declare const orchestrator: import('unified-orchestrator').UnifiedOrchestrator;
declare const taskId: string;
declare const runId: string;
declare const log: { info(fields: object): void; error(fields: object): void };
