/**
 * OpenTelemetry tracing through @opentelemetry/api (installed here as a dev dependency, optional for users): a span
 * per task with its attempts as events, through the tracer the test passes; 'auto' stays off with no SDK registered.
 */
import { describe, expect, it } from 'vitest';
import type { SpanLike, TracerLike } from 'unified-orchestrator';
import { startEach } from '../engine/helpers.js';

interface RecordedSpan {
  name: string;
  startTime: number | undefined;
  attributes: Record<string, unknown>;
  events: Array<{ name: string; attributes: Record<string, unknown> | undefined }>;
  status: { code: number; message?: string } | undefined;
  exceptions: Error[];
  ended: boolean;
}

function recordingTracer(): { tracer: TracerLike; spans: RecordedSpan[] } {
  const spans: RecordedSpan[] = [];
  const tracer: TracerLike = {
    startSpan(name, options) {
      const rec: RecordedSpan = {
        name,
        startTime: options?.startTime,
        attributes: { ...options?.attributes },
        events: [],
        status: undefined,
        exceptions: [],
        ended: false,
      };
      spans.push(rec);
      const span: SpanLike = {
        addEvent: (n, a) => rec.events.push({ name: n, attributes: a }),
        setAttributes: (a) => Object.assign(rec.attributes, a),
        setStatus: (s) => (rec.status = s),
        recordException: (e) => rec.exceptions.push(e),
        spanContext: () => ({ traceId: '1'.repeat(32) }),
        end: () => {
          if (rec.ended) throw new Error('span ended twice');
          rec.ended = true;
        },
      };
      return span;
    },
  };
  return { tracer, spans };
}

const start = startEach();

describe('tracing', () => {
  it('makes one span per task: attempts and retries as events, outcome and status at the end', async () => {
    const { tracer, spans } = recordingTracer();
    const o = await start({ pools: [], tracing: { tracer }, retry: { baseDelayMs: 1, maxDelayMs: 1 } });
    expect(o.tracing).toBe(true);
    let calls = 0;
    o.registerAgent(
      { execute: async () => (++calls === 1 ? Promise.reject(new Error('first fails')) : 'ok') },
      { id: 'a', role: 'r', capabilities: ['x'] },
    );
    await expect(o.submit({ type: 'job', requires: ['x'], maxAttempts: 2 })).resolves.toBe('ok');
    const job = spans.find((s) => s.attributes['task.type'] === 'job')!;
    expect(job.name).toBe('task job');
    expect(job.ended).toBe(true);
    expect(job.events.map((e) => e.name)).toEqual(['attempt', 'retry', 'attempt']);
    expect(job.events[0]!.attributes).toMatchObject({ 'task.attempt': 1, 'agent.id': 'a', 'agent.role': 'r' });
    expect(job.attributes).toMatchObject({ 'task.outcome': 'completed', 'task.attempts': 2 });
    expect(job.status).toEqual({ code: 1 });
    expect(typeof job.startTime).toBe('number');
  });

  it('ends the span of a task that never ran, with an error status', async () => {
    const { tracer, spans } = recordingTracer();
    const o = await start({ pools: [], tracing: { tracer } });
    o.registerAgent(
      {
        execute: (ctx) =>
          new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))),
      },
      { id: 'busy', capabilities: ['x'] },
    );
    void o.submit({ type: 'hold', requires: ['x'] }).catch(() => {});
    const waiting = o.delegate({ type: 'waits', requires: ['x'] });
    waiting.result.catch(() => {});
    waiting.cancel('not needed');
    await expect(waiting.result).rejects.toMatchObject({ code: 'TASK_CANCELLED' });
    const span = spans.find((s) => s.attributes['task.type'] === 'waits')!;
    expect(span.events.map((e) => e.name)).toEqual(['queued']);
    expect(span.attributes['task.outcome']).toBe('cancelled');
    expect(span.status).toMatchObject({ code: 2, message: expect.stringContaining('not needed') });
    expect(span.ended).toBe(true);
  });

  it("'auto' stays off when no OpenTelemetry SDK is registered, and false is off", async () => {
    expect((await start({ pools: [] })).tracing).toBe(false);
    expect((await start({ pools: [], tracing: false })).tracing).toBe(false);
  });
});
