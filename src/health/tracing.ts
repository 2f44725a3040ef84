/**
 * Optional OpenTelemetry tracing: when `@opentelemetry/api` is installed (an optional peer dependency) every task
 * is a span, from acceptance to its terminal state, with its routing decisions and attempts as span events.
 * Without the package nothing is loaded and nothing changes. The span goes to whatever tracer provider the host
 * registered with its OpenTelemetry SDK (none: the API's no-op).
 */
import type { EngineEvents } from '../engine/events.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import type { WorkflowEvents } from '../workflow/events.js';

/** The events tracing hears: a task's, and a workflow run's. */
type Events = EngineEvents & WorkflowEvents;
import type { Disposables } from '../resources/disposables.js';

/** Attributes of a span or span event: what OpenTelemetry's `Attributes` accepts, restricted to scalar values. */
export type SpanAttributes = Record<string, string | number | boolean>;

/** The part of an OpenTelemetry span the tracing uses (structural, so the types need no OpenTelemetry install). */
export interface SpanLike {
  /** Adds a timed event (queued, attempt, retry) to the span. */
  addEvent(name: string, attributes?: SpanAttributes): unknown;
  /** Sets attributes on the span (outcome, attempts, agent). */
  setAttributes(attributes: SpanAttributes): unknown;
  /** Sets the status: OpenTelemetry's `SpanStatusCode` OK or ERROR, with the error's message. */
  setStatus(status: { code: number; message?: string }): unknown;
  /** Records the error a task failed with. */
  recordException(error: Error): unknown;
  /** The span's context; an all-zero `traceId` means no SDK is registered (the API's no-op tracer). */
  spanContext(): {
    /** The trace id, 32 hex digits. */
    traceId: string;
  };
  /** Ends the span. */
  end(): void;
}

/** An OpenTelemetry `Tracer`, structurally. */
export interface TracerLike {
  /** Starts a span: one per task, named `task <type>`, of kind INTERNAL, started when the task was accepted. */
  startSpan(
    name: string,
    options?: { kind?: number; startTime?: number; attributes?: SpanAttributes },
    context?: unknown,
  ): SpanLike;
}

/** What the tracing needs of `@opentelemetry/api`. */
interface OtelApi {
  trace: { getTracer(name: string, version?: string): TracerLike; setSpan(context: unknown, span: SpanLike): unknown };
  context: { active(): unknown };
  SpanStatusCode: { OK: number; ERROR: number };
  SpanKind: { INTERNAL: number };
}

/** The trace id of a span from the API's no-op tracer: no SDK is registered. */
const INVALID_TRACE_ID = '00000000000000000000000000000000';

/**
 * Whether to trace: `true` always (when `@opentelemetry/api` is installed), `false` never, `'auto'` when an SDK is
 * registered, or `{ tracer }` through that tracer (the package must still be installed).
 */
export type TracingMode =
  | boolean
  | 'auto'
  | {
      /** The tracer to start task spans on, instead of the API's global one. */
      readonly tracer: TracerLike;
    };

/** Open spans at most: a task that never ends (it always does) cannot grow memory without bound. */
const MAX_OPEN_SPANS = 100_000;

/**
 * Loads `@opentelemetry/api` if it is installed and traces tasks through it. Resolves with whether tracing is on.
 * With `auto`, only when an SDK is registered (a probe span gets a real trace id): the API's no-op tracer would
 * cost every task an event payload for nothing.
 */
export async function startTracing(
  events: TypedEmitter<Events>,
  disposables: Disposables,
  mode: TracingMode,
): Promise<boolean> {
  if (mode === false) return false;
  let api: OtelApi;
  try {
    api = await import('@opentelemetry/api');
  } catch {
    return false; // not installed: tracing stays off
  }
  const t = typeof mode === 'object' ? mode.tracer : api.trace.getTracer('unified-orchestrator');
  if (mode === 'auto') {
    const probe = t.startSpan('unified-orchestrator.probe');
    const registered = probe.spanContext().traceId !== INVALID_TRACE_ID;
    probe.end();
    if (!registered) return false;
  }
  const spans = new Map<string, SpanLike>();
  const listen = <E extends keyof Events>(event: E, fn: (p: Events[E]) => void): void =>
    void disposables.listen(events, event, fn);
  const open = (taskId: string, type: string, startedMsAgo: number): SpanLike => {
    let span = spans.get(taskId);
    if (!span) {
      span = t.startSpan(`task ${type}`, {
        kind: api.SpanKind.INTERNAL,
        startTime: Date.now() - startedMsAgo,
        attributes: { 'task.id': taskId, 'task.type': type },
      });
      if (spans.size < MAX_OPEN_SPANS) spans.set(taskId, span);
    }
    return span;
  };
  listen('task:queued', (e) => {
    const span = open(e.taskId, e.type, 0);
    span.addEvent('queued', {
      'task.priority': e.priority,
      'queue.waiting': e.waiting,
      ...(e.tenantId ? { 'task.tenant': e.tenantId } : {}),
    });
  });
  listen('task:started', (e) => {
    const span = open(e.taskId, e.type, e.waitedMs);
    span.addEvent('attempt', {
      'task.attempt': e.attempt,
      'agent.id': e.agentId,
      'agent.role': e.role ?? '',
      'queue.waited_ms': e.waitedMs,
    });
  });
  listen('task:retrying', (e) => {
    spans.get(e.taskId)?.addEvent('retry', {
      'task.attempt': e.attempt,
      'retry.delay_ms': e.delayMs,
      'retry.reason': e.reason,
      'error.message': e.error instanceof Error ? e.error.message : String(e.error),
    });
  });
  listen('task:completed', (e) => {
    const span = open(e.taskId, e.type, e.latencyMs);
    spans.delete(e.taskId);
    span.setAttributes({
      'task.outcome': 'completed',
      'task.attempts': e.attempt,
      'agent.id': e.agentId,
      'agent.role': e.role ?? '',
    });
    span.setStatus({ code: api.SpanStatusCode.OK });
    span.end();
  });
  listen('task:failed', (e) => {
    const span = open(e.taskId, e.type, e.latencyMs);
    spans.delete(e.taskId);
    const message = e.error instanceof Error ? e.error.message : String(e.error);
    span.setAttributes({ 'task.outcome': e.outcome, 'task.attempts': e.attempts });
    if (e.error instanceof Error) span.recordException(e.error);
    span.setStatus({ code: api.SpanStatusCode.ERROR, message });
    span.end();
  });
  // A workflow run's execution on this node is a span (`workflow <name>`), each step it ran a child span.
  const runs = new Map<string, SpanLike>();
  listen('workflow:started', (e) => {
    if (runs.size >= MAX_OPEN_SPANS) return;
    runs.set(
      e.runId,
      t.startSpan(`workflow ${e.workflow}`, {
        kind: api.SpanKind.INTERNAL,
        attributes: {
          'workflow.run_id': e.runId,
          'workflow.name': e.workflow,
          'workflow.version': e.version,
          'workflow.checkpointed': e.checkpointed,
        },
      }),
    );
  });
  listen('workflow:step', (e) => {
    const parent = runs.get(e.runId);
    if (!parent) return;
    const step = t.startSpan(
      `step ${e.name}`,
      {
        kind: api.SpanKind.INTERNAL,
        startTime: Date.now() - e.durationMs,
        attributes: { 'workflow.step.seq': e.seq, 'workflow.step.name': e.name, 'workflow.step.kind': e.kind },
      },
      api.trace.setSpan(api.context.active(), parent),
    );
    step.setStatus({ code: e.ok ? api.SpanStatusCode.OK : api.SpanStatusCode.ERROR });
    step.end();
  });
  listen('workflow:paused', (e) => {
    const span = runs.get(e.runId);
    if (!span) return;
    runs.delete(e.runId);
    span.setAttributes({ 'workflow.outcome': e.reason });
    span.end();
  });
  listen('workflow:ended', (e) => {
    const span = runs.get(e.runId);
    if (!span) return;
    runs.delete(e.runId);
    span.setAttributes({ 'workflow.outcome': e.outcome, 'workflow.cost': e.cost });
    if (e.outcome === 'completed') span.setStatus({ code: api.SpanStatusCode.OK });
    else {
      if (e.error instanceof Error) span.recordException(e.error);
      span.setStatus({
        code: api.SpanStatusCode.ERROR,
        message: e.error instanceof Error ? e.error.message : e.outcome,
      });
    }
    span.end();
  });
  disposables.add(() => {
    for (const span of spans.values()) span.end();
    spans.clear();
    for (const span of runs.values()) span.end();
    runs.clear();
  });
  return true;
}
