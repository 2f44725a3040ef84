/**
 * Bounded messages (issue 16): the hand-offs and the results of one turn are cut into stream messages by size as well
 * as by count, so that no message outgrows what one V8 string holds, and a task or result that cannot be sent fails
 * alone instead of crashing the process and stranding the others. A producer A and a serving node B on a real
 * redis-server. Errors that escape to the process (uncaught exceptions, unhandled rejections) are captured, so that
 * the test that caused one fails by name.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RedisBridge, UnifiedOrchestrator, type Agent } from 'unified-orchestrator';
import { namespace, REDIS_SERVER, startRedis, type TestRedis } from '../support/redis.js';
import { eventually, FAST, Fleet, runLog, SECRET } from './helpers.js';

let redis: TestRedis;
const fleet = new Fleet();
/** What escaped to the process during the current test. */
const escaped: unknown[] = [];
/** Fails the waiting test at once with what escaped, rather than at its timeout. */
let onEscape: ((error: unknown) => void) | undefined;
const capture = (error: unknown): void => {
  escaped.push(error);
  onEscape?.(error);
};

beforeAll(async () => {
  redis = await startRedis();
  process.on('uncaughtException', capture);
  process.on('unhandledRejection', capture);
}, 30_000);
beforeEach(() => {
  escaped.length = 0;
  onEscape = undefined;
});
afterEach(async () => {
  await fleet.stopAll();
});
afterAll(async () => {
  process.off('uncaughtException', capture);
  process.off('unhandledRejection', capture);
  if (redis?.owned) await redis.stop();
});

/**
 * JSON characters per large payload or result: twelve of them are more than V8's longest string (about 512 Mi units
 * on 64-bit), so the old single message of a turn could not be built; each is under the producer's maxPayloadBytes.
 */
const LARGE = 45_000_000;
const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;

/**
 * Timings for large messages: serialising and sending them holds the event loop for a while, so nodes must not drop
 * out of the registry nor have their entries reclaimed meanwhile.
 */
const LARGE_TIMINGS = { ...FAST, nodeTtlMs: 30_000, reclaimIdleMs: 30_000 } as const;

function bridge(ns: string, nodeId: string): RedisBridge {
  return new RedisBridge({ url: redis.url, secret: SECRET, namespace: ns, nodeId, ...LARGE_TIMINGS });
}

/** A producer A (maxPayloadBytes 64 MiB) and a started node B serving `x` with `agent`. */
async function pair(ns: string, agent: () => Agent): Promise<UnifiedOrchestrator> {
  const b = fleet.add(
    new UnifiedOrchestrator({
      pressure: false,
      bridge: bridge(ns, 'B'),
      pools: [{ role: 'w', capabilities: ['x'], minAgents: 2, maxAgents: 4, concurrency: 16, create: agent }],
    }),
  );
  const a = fleet.producer(bridge(ns, 'A'), { maxPayloadBytes: MAX_PAYLOAD_BYTES });
  await b.start();
  await a.start();
  await eventually(() => a.bridge.canAnyServe(['x']), 5_000, 'A sees B');
  return a;
}

/**
 * Each promise's outcome, once all settled: the value, or the error. Rejects with the first error that escapes to the
 * process meanwhile (the old crash path), which would otherwise strand the promises until the test's timeout.
 */
async function outcomes(results: ReadonlyArray<Promise<unknown>>) {
  const escape = new Promise<never>((_, reject) => (onEscape = reject));
  try {
    const settled = await Promise.race([Promise.allSettled(results), escape]);
    return settled.map((s) =>
      s.status === 'fulfilled'
        ? { ok: true as const, value: s.value }
        : { ok: false as const, error: s.reason as Error },
    );
  } finally {
    onEscape = undefined;
  }
}

const describeRedis = describe.skipIf(REDIS_SERVER.skip);

describeRedis('RedisBridge: bounded messages', () => {
  it('twelve 45 MB tasks handed off in one turn all run once and settle, nothing escapes', async () => {
    const ns = namespace();
    const log = runLog();
    const a = await pair(ns, () => ({
      execute(ctx) {
        const { id, pad } = ctx.payload as { id: string; pad: string };
        log.runs.push(id);
        return Promise.resolve({ id, chars: pad.length });
      },
    }));
    const pad = 'p'.repeat(LARGE);
    const ids = Array.from({ length: 12 }, (_, i) => `large-${i}`);
    const results = ids.map((id) => a.submit({ type: 't', requires: ['x'], payload: { id, pad } }));
    const settled = await outcomes(results);
    expect(settled).toEqual(ids.map((id) => ({ ok: true, value: { id, chars: LARGE } })));
    for (const id of ids) expect(log.count(id)).toBe(1);
    expect(escaped).toEqual([]);
  }, 240_000);

  it('a task that cannot be serialised when its turn is sent fails alone with VALIDATION_ERROR; the others run', async () => {
    const ns = namespace();
    const log = runLog();
    const a = await pair(ns, () => ({
      execute(ctx) {
        const { id } = ctx.payload as { id: string };
        log.runs.push(id);
        return Promise.resolve({ id });
      },
    }));
    // Faithful at submit (the checks), then changed under the bridge: it throws when the turn's message is built.
    const payload: Record<string, unknown> = { id: 'bad' };
    const bad = a.submit({ type: 't', requires: ['x'], payload });
    const good = ['good-1', 'good-2', 'good-3'].map((id) => a.submit({ type: 't', requires: ['x'], payload: { id } }));
    payload['late'] = 10n;
    const settled = await outcomes([bad, ...good]);
    expect(settled[0]).toMatchObject({ ok: false, error: { name: 'ValidationError', code: 'VALIDATION_ERROR' } });
    expect(settled[0]!.error!.message).toMatch(/task .* cannot be sent to another node: .*pass a reference/);
    expect(settled.slice(1)).toEqual(['good-1', 'good-2', 'good-3'].map((id) => ({ ok: true, value: { id } })));
    expect(log.runs.sort()).toEqual(['good-1', 'good-2', 'good-3']);
    expect(escaped).toEqual([]);
  });

  it('twelve 45 MB results reported in one turn all reach the producer, nothing escapes', async () => {
    const ns = namespace();
    const log = runLog();
    const large = 'r'.repeat(LARGE);
    const a = await pair(ns, () => ({
      async execute(ctx) {
        const { id } = ctx.payload as { id: string };
        log.runs.push(id);
        await log.gate; // all twelve finish in the same turn: their results share one flush
        return large;
      },
    }));
    const ids = Array.from({ length: 12 }, (_, i) => `result-${i}`);
    const results = ids.map((id) => a.submit({ type: 't', requires: ['x'], payload: { id } }));
    await eventually(() => log.runs.length === 12, 10_000, 'B runs all twelve');
    log.open();
    const settled = await outcomes(results);
    expect(settled.map((s) => s.ok && typeof s.value === 'string' && s.value.length)).toEqual(ids.map(() => LARGE));
    for (const id of ids) expect(log.count(id)).toBe(1);
    expect(escaped).toEqual([]);
  }, 240_000);

  it('a result that cannot be serialised when its turn is flushed fails alone with VALIDATION_ERROR; the others arrive', async () => {
    const ns = namespace();
    const log = runLog();
    const a = await pair(ns, () => ({
      async execute(ctx) {
        const { id } = ctx.payload as { id: string };
        log.runs.push(id);
        await log.gate;
        if (id !== 'bad') return id;
        // Faithful when the serving node checks it (in the same run of microtasks as this return), then changed
        // before the flush (a later turn of the event loop): it throws there.
        const result: Record<string, unknown> = { id };
        process.nextTick(() => (result['late'] = 10n));
        return result;
      },
    }));
    const ids = ['bad', 'good-1', 'good-2', 'good-3'];
    const results = ids.map((id) => a.submit({ type: 't', requires: ['x'], payload: { id } }));
    await eventually(() => log.runs.length === 4, 10_000, 'B runs all four');
    log.open();
    const settled = await outcomes(results);
    expect(settled[0]).toMatchObject({ ok: false, error: { name: 'ValidationError', code: 'VALIDATION_ERROR' } });
    expect(settled[0]!.error!.message).toMatch(/result of .* cannot be sent back: .*return a reference/);
    expect(settled.slice(1)).toEqual(['good-1', 'good-2', 'good-3'].map((id) => ({ ok: true, value: id })));
    for (const id of ids) expect(log.count(id)).toBe(1);
    expect(escaped).toEqual([]);
  });
});
