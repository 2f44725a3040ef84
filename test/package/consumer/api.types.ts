/**
 * Type-level tests of the public API: what a TypeScript user may write compiles, and the usual mistakes do not (each
 * `@ts-expect-error` fails the build when the line it marks starts compiling). Checked twice: against the source by
 * `npm run typecheck`, and against the installed package's published types by `npm run check:package`.
 */
import {
  BudgetExceededError,
  isOrchestratorError,
  LEGACY_PRIORITIES,
  MemoryBridge,
  MemoryHub,
  OrchestratorError,
  OrchestratorsCompatibilityAdapter,
  ORCHESTRATOR_DEFAULTS,
  QueueFullError,
  TRAFFIC_ROUTER_DEFAULTS,
  RedisBridge,
  TaskTimeoutError,
  TrafficRouter,
  UnifiedOrchestrator,
  ValidationError,
  type Agent,
  type CommunicationBridge,
  type LegacyOrchestrator,
  type LegacyTask,
  type OrchestratorErrorCode,
  type OrchestratorEvents,
  type OrchestratorOptions,
  type PoolOptions,
  type Task,
  type TaskContext,
  type TaskFailureOutcome,
  type TaskHandle,
} from 'unified-orchestrator';

/** `true` exactly when A and B are the same type (not merely assignable). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | void {}

declare const orchestrator: UnifiedOrchestrator;

// --- Tasks and results -------------------------------------------------------------------------------------------

// submit: the result type is the caller's, `unknown` when not given.
expectType<Equal<ReturnType<typeof orchestrator.submit<{ summary: string }>>, Promise<{ summary: string }>>>();
expectType<Equal<ReturnType<typeof orchestrator.submit>, Promise<unknown>>>();

// delegate: a handle with an id, the typed result and cancel.
const handle = orchestrator.delegate<number>({ type: 'count', requires: ['math'], payload: [1, 2] });
expectType<Equal<typeof handle, TaskHandle<number>>>();
expectType<Equal<typeof handle.id, string>>();
expectType<Equal<typeof handle.result, Promise<number>>>();
expectType<Equal<ReturnType<typeof handle.cancel>, boolean>>();

// Every optional field of a task, as a user writes it.
const full: Task = {
  type: 'summarize',
  requires: ['llm'],
  prefers: ['gpu'],
  priority: 10,
  payload: { text: '...' },
  timeoutMs: 5_000,
  deadlineMs: 30_000,
  maxAttempts: 3,
  idempotencyKey: 'order-17',
  tenantId: 'acme',
  affinityKey: 'session-1',
  signal: new AbortController().signal,
};
void full;

// @ts-expect-error a task needs a `type`
const untyped: Task = { requires: ['llm'] };
// @ts-expect-error priority is a number (the legacy adapter is the one that takes 'high')
const wordy: Task = { type: 't', priority: 'high' };
// @ts-expect-error requirements are a list of capabilities
const single: Task = { type: 't', requires: 'llm' };
void [untyped, wordy, single];

// --- Agents and pools ----------------------------------------------------------------------------------------------

// An agent's payload and result types reach its context.
const summarizer: Agent<{ text: string }, string> = {
  async execute(ctx) {
    expectType<Equal<typeof ctx, TaskContext<{ text: string }>>>();
    expectType<Equal<typeof ctx.signal, AbortSignal>>();
    expectType<Equal<typeof ctx.attempt, number>>();
    return ctx.payload.text.slice(0, 10);
  },
};

const pool: PoolOptions = {
  role: 'summarizer',
  capabilities: ['llm'],
  minAgents: 1,
  maxAgents: 4,
  create: () => summarizer,
};
// @ts-expect-error a pool needs a factory
const noFactory: PoolOptions = { role: 'summarizer', capabilities: ['llm'] };
void noFactory;

const options: OrchestratorOptions = {
  pools: [pool],
  maxQueueSize: 1_000,
  bridge: new MemoryBridge({ hub: new MemoryHub() }),
};
void new UnifiedOrchestrator(options);
// @ts-expect-error an unknown option is a compile error (and a ValidationError at run time)
void new UnifiedOrchestrator({ pools: [pool], poolz: [] });

// --- Events ----------------------------------------------------------------------------------------------------------

orchestrator.on('task:completed', (e) => {
  expectType<Equal<typeof e, OrchestratorEvents['task:completed']>>();
  expectType<Equal<typeof e.durationMs, number>>();
  expectType<Equal<typeof e.taskId, string>>();
});
orchestrator.once('task:failed', (e) => {
  expectType<Equal<typeof e.outcome, TaskFailureOutcome>>();
});
// @ts-expect-error no such event
orchestrator.on('task:finished', () => {});
// @ts-expect-error the payload of task:completed has no `outcome`
orchestrator.on('task:completed', (e) => e.outcome); // eslint-disable-line @typescript-eslint/no-unsafe-return -- the error is the test

// --- Errors ------------------------------------------------------------------------------------------------------------

declare const caught: unknown;
if (isOrchestratorError(caught)) {
  expectType<Equal<typeof caught, OrchestratorError>>();
  expectType<Equal<typeof caught.code, OrchestratorErrorCode>>();
}
if (caught instanceof TaskTimeoutError) {
  expectType<Equal<typeof caught.timeoutMs, number>>();
  expectType<Equal<typeof caught.scope, 'attempt' | 'task'>>();
}
const codes: OrchestratorErrorCode[] = ['QUEUE_FULL', 'TASK_TIMEOUT', 'BUDGET_EXCEEDED', 'VALIDATION_ERROR'];
// @ts-expect-error codes are a closed set
const wrongCode: OrchestratorErrorCode = 'QUEUE_OVERFLOW';
void [codes, wrongCode];
const classes: Array<typeof OrchestratorError> = [QueueFullError, ValidationError, BudgetExceededError] as Array<
  typeof OrchestratorError
>;
void classes;

// Defaults are read-only.
// @ts-expect-error ORCHESTRATOR_DEFAULTS is frozen
ORCHESTRATOR_DEFAULTS.maxQueueSize = 1;
// @ts-expect-error TRAFFIC_ROUTER_DEFAULTS is frozen, its nested objects too
TRAFFIC_ROUTER_DEFAULTS.latencyTolerance.ratio = 1;

// --- Bridges ---------------------------------------------------------------------------------------------------------

const bridges: CommunicationBridge[] = [
  new MemoryBridge({ hub: new MemoryHub() }),
  new RedisBridge({ url: 'redis://127.0.0.1:6379', secret: 'at-least-sixteen-chars' }),
];
void bridges;
// @ts-expect-error a RedisBridge needs the cluster's secret
void new RedisBridge({ url: 'redis://127.0.0.1:6379' });

// --- Compat ------------------------------------------------------------------------------------------------------------

const adapter = new OrchestratorsCompatibilityAdapter(orchestrator, { roles: { coder: ['code'] } });
const asLegacy: LegacyOrchestrator = adapter;
const legacyTask: LegacyTask = { role: 'coder', priority: 'high', payload: { file: 'a.ts' }, timeout: 30 };
void asLegacy.delegateTaskToAgent(legacyTask);
void adapter.delegate_task_to_agent({ capabilities: ['code'], priority: LEGACY_PRIORITIES.critical });
const router = new TrafficRouter({ legacy: adapter, unified: adapter, percent: 10 });
void router.setPercent(50);
// @ts-expect-error the router needs both sides
void new TrafficRouter({ unified: adapter });
