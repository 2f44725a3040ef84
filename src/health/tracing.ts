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
    /** The span id, 16 hex digits (an OpenTelemetry span always has it). */
    spanId?: string;
    /** The W3C trace flags (bit 0: sampled). */
    traceFlags?: number;
  };
  /** Ends the span. */
  end(): void;
}

/** An OpenTelemetry `Tracer`, structurally. */
export interface TracerLike {
  /**
   * Starts a span: one per task, named `task <type>`, of kind INTERNAL, started when the task was accepted. `context`
   * is OpenTelemetry's parent context: the submitter's span context for a task handed over from another node
   * (a remote parent, from the hand-off's W3C `traceparent`), else absent (the active context).
   */
  startSpan(
    name: string,
    options?: { kind?: number; startTime?: number; attributes?: SpanAttributes },
    context?: unknown,
  ): SpanLike;
}

/** A span context as the W3C `traceparent` header carries it. */
interface RemoteSpanContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  isRemote?: boolean;
}

/** What the tracing needs of `@opentelemetry/api`. */
interface OtelApi {
  trace: {
    getTracer(name: string, version?: string): TracerLike;
    setSpan(context: unknown, span: SpanLike): unknown;
    setSpanContext(context: unknown, spanContext: RemoteSpanContext): unknown;
    getSpanContext(context: unknown): RemoteSpanContext | undefined;
  };
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
  propagation?: TracePropagation,
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
  propagation?.enable(api);
  disposables.add(() => propagation?.disable());
  const listen = <E extends keyof Events>(event: E, fn: (p: Events[E]) => void): void =>
    void disposables.listen(events, event, fn);
  const open = (taskId: string, type: string, startedMsAgo: number): SpanLike => {
    let span = spans.get(taskId);
    if (!span) {
      span = t.startSpan(
        `task ${type}`,
        {
          kind: api.SpanKind.INTERNAL,
          startTime: Date.now() - startedMsAgo,
          attributes: { 'task.id': taskId, 'task.type': type },
        },
        propagation?.parent,
      );
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

// --- Trace context across the bridge (W3C traceparent) --------------------------------------------

/** `version-traceid-parentid-flags`, lower-case hex; a later version may append fields after a `-`. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_SPAN_ID = '0000000000000000';

/**
 * The span context a W3C `traceparent` header carries, or `undefined` when it is malformed: not a string, not
 * `version-traceid-parentid-flags` in lower-case hex, version `ff`, extra fields on version `00`, or an all-zero
 * trace or span id (https://www.w3.org/TR/trace-context/#traceparent-header).
 */
export function parseTraceparent(header: unknown): RemoteSpanContext | undefined {
  if (typeof header !== 'string' || header.length > 512) return undefined;
  const m = TRACEPARENT.exec(header);
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === INVALID_TRACE_ID || spanId === ZERO_SPAN_ID) return undefined;
  return { traceId: traceId!, spanId: spanId!, traceFlags: parseInt(flags!, 16), isRemote: true };
}

/** The W3C `traceparent` of a span context, or `undefined` when it is not a valid one. */
export function formatTraceparent(context: {
  traceId: string;
  spanId?: string;
  traceFlags?: number;
}): string | undefined {
  const flags = ((context.traceFlags ?? 0) & 0xff).toString(16).padStart(2, '0');
  const header = `00-${context.traceId}-${context.spanId ?? ''}-${flags}`;
  return parseTraceparent(header) ? header : undefined;
}

/**
 * Trace context for tasks that cross the bridge, per orchestrator: on the submitting node, the `traceparent` of the
 * caller's active span goes into the wire task; on the serving node, the span of the task run for a hand-off is a
 * child of it (a remote parent). Inert (no header, no parent) until tracing is on (`startTracing`).
 */
export class TracePropagation {
  #api: OtelApi | undefined;
  /** The parent context of a span opened now: set only while `within` runs. */
  #parent: unknown;

  /** Tracing is on, through `api`. */
  enable(api: OtelApi): void {
    this.#api = api;
  }

  /** Tracing stopped. */
  disable(): void {
    this.#api = undefined;
    this.#parent = undefined;
  }

  /** The parent context for a task span opened now (inside `within`), or `undefined` for the active context. */
  get parent(): unknown {
    return this.#parent;
  }

  /** The `traceparent` of the caller's active span, or `undefined` (tracing off, no active span, an invalid one). */
  current(): string | undefined {
    const api = this.#api;
    if (!api) return undefined;
    const context = api.trace.getSpanContext(api.context.active());
    return context ? formatTraceparent(context) : undefined;
  }

  /**
   * Runs `fn` (which accepts a task) with `traceparent` as the remote parent of the task spans it opens; a missing or
   * malformed header is ignored (the spans open as they would without it).
   */
  within<T>(traceparent: unknown, fn: () => T): T {
    const api = this.#api;
    const remote = api && traceparent !== undefined ? parseTraceparent(traceparent) : undefined;
    if (!api || !remote) return fn();
    const before = this.#parent;
    this.#parent = api.trace.setSpanContext(api.context.active(), remote);
    try {
      return fn();
    } finally {
      this.#parent = before;
    }
  }
}
