/**
 * W3C trace context across the bridge: a task handed to another node carries the `traceparent` of the submitter's
 * active span, and the serving node opens the task's span as its child (a remote parent). Two orchestrators linked
 * by a MemoryBridge, then by a RedisBridge on a real redis-server; spans are recorded by a tracer the test passes
 * (as in tracing.test.ts), which derives each span's trace id from its parent as an SDK does.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { context, ROOT_CONTEXT, trace, type Context, type ContextManager } from '@opentelemetry/api';
import {
  MemoryBridge,
  MemoryHub,
  RedisBridge,
  UnifiedOrchestrator,
  type CommunicationBridge,
  type SpanLike,
  type TracerLike,
} from 'unified-orchestrator';
import { formatTraceparent, parseTraceparent, TracePropagation } from '../../src/health/tracing.js';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { FAST, SECRET } from '../bridge/helpers.js';

/** A span as the recording tracer saw it start. */
interface Started {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  parentRemote: boolean | undefined;
}

/** A tracer that records each span with the parent it was given (its trace id inherited, as an SDK's would be). */
function recordingTracer(): { tracer: TracerLike; spans: Started[] } {
  const spans: Started[] = [];
  const tracer: TracerLike = {
    startSpan(name, _options, ctx) {
      const parent = ctx === undefined ? undefined : trace.getSpanContext(ctx as Context);
      const rec: Started = {
        name,
        traceId: parent?.traceId ?? randomBytes(16).toString('hex'),
        spanId: randomBytes(8).toString('hex'),
        parentSpanId: parent?.spanId,
        parentRemote: parent?.isRemote,
      };
      spans.push(rec);
      const span: SpanLike = {
        addEvent: () => span,
        setAttributes: () => span,
        setStatus: () => span,
        recordException: () => span,
        spanContext: () => ({ traceId: rec.traceId, spanId: rec.spanId, traceFlags: 1 }),
        end: () => {},
      };
      return span;
    },
  };
  return { tracer, spans };
}

/** The smallest context manager: AsyncLocalStorage, so that `context.with` makes a context active. */
class StorageContextManager implements ContextManager {
  readonly #storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#storage.run(ctx, () => fn.call(thisArg, ...args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.#storage.disable();
    return this;
  }
}

const SUBMITTER = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 };

/** Runs `fn` with the submitter's span (SUBMITTER) active. */
function inSubmitterSpan<T>(fn: () => T): T {
  return context.with(trace.setSpanContext(ROOT_CONTEXT, SUBMITTER), fn);
}

const nodes: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
  context.disable();
});

/** A serving node B (capability `x`, tracing into `tracer`) and a producer A (no agents), on the given bridges. */
async function pair(
  a: CommunicationBridge,
  b: CommunicationBridge,
  tracers: { a: TracerLike; b: TracerLike },
  seen: string[] = [],
): Promise<{ a: UnifiedOrchestrator; b: UnifiedOrchestrator }> {
  context.setGlobalContextManager(new StorageContextManager());
  const serving = new UnifiedOrchestrator({
    bridge: b,
    tracing: { tracer: tracers.b },
    pools: [
      { role: 'w', capabilities: ['x'], minAgents: 1, create: () => ({ execute: (ctx) => seen.push(ctx.taskId) }) },
    ],
  });
  const producer = new UnifiedOrchestrator({ bridge: a, tracing: { tracer: tracers.a } });
  nodes.push(serving, producer);
  await serving.start();
  await producer.start();
  return { a: producer, b: serving };
}

describe('traceparent', () => {
  it('parses valid headers and ignores malformed ones', () => {
    const valid = `00-${SUBMITTER.traceId}-${SUBMITTER.spanId}-01`;
    expect(parseTraceparent(valid)).toEqual({ ...SUBMITTER, isRemote: true });
    expect(parseTraceparent(`01-${SUBMITTER.traceId}-${SUBMITTER.spanId}-00-future`)).toMatchObject({ traceFlags: 0 });
    for (const bad of [
      undefined,
      42,
      '',
      'garbage',
      valid.toUpperCase(),
      `${valid}-extra`, // version 00 has exactly four fields
      `ff-${SUBMITTER.traceId}-${SUBMITTER.spanId}-01`,
      `00-${'0'.repeat(32)}-${SUBMITTER.spanId}-01`,
      `00-${SUBMITTER.traceId}-${'0'.repeat(16)}-01`,
      `00-${SUBMITTER.traceId.slice(1)}-${SUBMITTER.spanId}-01`,
      `00-${SUBMITTER.traceId}-${SUBMITTER.spanId}-1`,
      `x`.repeat(600),
    ]) {
      expect(parseTraceparent(bad), String(bad)).toBeUndefined();
    }
    expect(formatTraceparent(SUBMITTER)).toBe(valid);
    expect(formatTraceparent({ traceId: SUBMITTER.traceId })).toBeUndefined();
  });

  it('a malformed or missing header gives no remote parent; propagation is inert until tracing is on', () => {
    const traces = new TracePropagation();
    expect(traces.current()).toBeUndefined();
    expect(traces.within(`00-${SUBMITTER.traceId}-${SUBMITTER.spanId}-01`, () => traces.parent)).toBeUndefined();
  });

  it('over a MemoryBridge: the serving node’s task span is a child of the submitter’s active span', async () => {
    const hub = new MemoryHub();
    const aTracer = recordingTracer();
    const bTracer = recordingTracer();
    const wires: unknown[] = [];
    const aBridge = new MemoryBridge({ hub, nodeId: 'A' });
    const handOff = aBridge.handOff.bind(aBridge);
    aBridge.handOff = (id, task) => (wires.push(task), handOff(id, task));
    const { a } = await pair(aBridge, new MemoryBridge({ hub, nodeId: 'B' }), { a: aTracer.tracer, b: bTracer.tracer });
    expect(await inSubmitterSpan(() => a.submit({ type: 'traced', requires: ['x'] }))).toBe(1);
    expect(wires).toEqual([expect.objectContaining({ traceparent: `00-${SUBMITTER.traceId}-${SUBMITTER.spanId}-01` })]);
    const served = bTracer.spans.filter((s) => s.name === 'task traced');
    expect(served).toHaveLength(1);
    expect(served[0]).toMatchObject({
      traceId: SUBMITTER.traceId,
      parentSpanId: SUBMITTER.spanId,
      parentRemote: true,
    });
    // Without an active span: no header, and the serving span is a root of its own trace.
    await a.submit({ type: 'untraced', requires: ['x'] });
    expect(wires[1]).not.toHaveProperty('traceparent');
    const root = bTracer.spans.find((s) => s.name === 'task untraced')!;
    expect(root.parentSpanId).toBeUndefined();
    expect(root.traceId).not.toBe(SUBMITTER.traceId);
  });

  it('ignores a malformed traceparent on the serving node', async () => {
    const hub = new MemoryHub();
    const bTracer = recordingTracer();
    const aBridge = new MemoryBridge({ hub, nodeId: 'A' });
    const handOff = aBridge.handOff.bind(aBridge);
    aBridge.handOff = (id, task) => handOff(id, { ...task, traceparent: '00-not-a-header-01' });
    const { a } = await pair(aBridge, new MemoryBridge({ hub, nodeId: 'B' }), {
      a: recordingTracer().tracer,
      b: bTracer.tracer,
    });
    expect(await inSubmitterSpan(() => a.submit({ type: 'bad', requires: ['x'] }))).toBe(1);
    const span = bTracer.spans.find((s) => s.name === 'task bad')!;
    expect(span.parentSpanId).toBeUndefined();
  });
});

describe.skipIf(REDIS_SERVER.skip)('traceparent over a RedisBridge', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  }, 30_000);
  afterAll(async () => {
    if (redis?.owned) await redis.stop();
  });

  it('the serving node’s task span has the submitter’s trace id and parent span id', async () => {
    const ns = namespace();
    const bridge = (nodeId: string): RedisBridge =>
      new RedisBridge({ url: redis.url, secret: SECRET, namespace: ns, nodeId, ...FAST });
    const bTracer = recordingTracer();
    const { a } = await pair(bridge('A'), bridge('B'), { a: recordingTracer().tracer, b: bTracer.tracer });
    const deadline = Date.now() + 5_000;
    while (!a.bridge.canAnyServe(['x'])) {
      if (Date.now() > deadline) throw new Error('A never saw B');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await inSubmitterSpan(() => a.submit({ type: 'over-redis', requires: ['x'] }))).toBe(1);
    const span = bTracer.spans.find((s) => s.name === 'task over-redis')!;
    expect(span).toMatchObject({ traceId: SUBMITTER.traceId, parentSpanId: SUBMITTER.spanId, parentRemote: true });
  });
});
