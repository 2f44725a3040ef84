/** `maxPayloadBytes`: an oversized payload is refused with ValidationError before it is queued or handed off. */
import { afterEach, describe, expect, it } from 'vitest';
import {
  MemoryBridge,
  MemoryHub,
  OrchestratorsCompatibilityAdapter,
  UnifiedOrchestrator,
  ValidationError,
  type OrchestratorOptions,
} from 'unified-orchestrator';

const live: UnifiedOrchestrator[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false })));
});

async function start(options: OrchestratorOptions): Promise<{ o: UnifiedOrchestrator; ran: unknown[] }> {
  const ran: unknown[] = [];
  const o = new UnifiedOrchestrator({
    pressure: false,
    pools: [
      {
        role: 'w',
        capabilities: ['x'],
        minAgents: 1,
        create: () => ({ execute: async (ctx) => void ran.push(ctx.payload) }),
      },
    ],
    ...options,
  });
  live.push(o);
  await o.start();
  return { o, ran };
}

describe('maxPayloadBytes', () => {
  it('accepts a payload at the limit and refuses one byte over, naming task.payload, its size and the fix', async () => {
    const { o, ran } = await start({ maxPayloadBytes: 100 });
    const fits = 'a'.repeat(98); // JSON adds the two quotes: 100 bytes
    await o.submit({ type: 't', requires: ['x'], payload: fits });
    let error: unknown;
    try {
      o.delegate({ type: 't', requires: ['x'], payload: `${fits}a` });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'VALIDATION_ERROR', field: 'task.payload' });
    expect((error as Error).message).toMatch(/101 bytes as JSON, over maxPayloadBytes \(100\).*reference/);
    await expect(o.submit({ type: 't', requires: ['x'], payload: { big: 'b'.repeat(200) } })).rejects.toMatchObject({
      field: 'task.payload',
    });
    // Nothing refused was queued or run, and the refusals are counted.
    expect(ran).toEqual([fits]);
    expect(o.stats()).toMatchObject({ completed: 1, rejected: 2, waiting: 0 });
  });

  it('counts UTF-8 bytes, not characters', async () => {
    const { o } = await start({ maxPayloadBytes: 30 });
    await o.submit({ type: 't', requires: ['x'], payload: 'é'.repeat(14) }); // 28 bytes + 2 quotes
    expect(() => o.delegate({ type: 't', requires: ['x'], payload: 'é'.repeat(15) })).toThrow(/32 bytes as JSON/);
    expect(() => o.delegate({ type: 't', requires: ['x'], payload: '😀'.repeat(8) })).toThrow(/34 bytes as JSON/);
  });

  it('with a limit, a payload that cannot be measured (a cycle, a BigInt) is refused; without one, any payload runs in-process', async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    const limited = await start({ maxPayloadBytes: 1_000 });
    expect(() => limited.o.delegate({ type: 't', requires: ['x'], payload: cyclic })).toThrow(
      /JSON-serialisable, to measure it against maxPayloadBytes/,
    );
    expect(() => limited.o.delegate({ type: 't', requires: ['x'], payload: 10n })).toThrow(ValidationError);
    const open = await start({});
    await open.o.submit({ type: 't', requires: ['x'], payload: cyclic });
    await open.o.submit({ type: 't', requires: ['x'], payload: 'z'.repeat(1_000_000) });
    expect(open.ran).toHaveLength(2);
  });

  it('is checked before a task is handed to another node', async () => {
    const hub = new MemoryHub();
    const producer = new UnifiedOrchestrator({
      pressure: false,
      maxPayloadBytes: 50,
      bridge: new MemoryBridge({ hub }),
    });
    live.push(producer);
    const { ran } = await start({ bridge: new MemoryBridge({ hub }) });
    await producer.start();
    await producer.submit({ type: 't', requires: ['x'], payload: 'small' });
    await expect(producer.submit({ type: 't', requires: ['x'], payload: 'L'.repeat(60) })).rejects.toMatchObject({
      code: 'VALIDATION_ERROR',
      field: 'task.payload',
    });
    expect(producer.bridge.stats().handedOff).toBe(1);
    expect(ran).toEqual(['small']);
  });

  it('reaches legacy callers as INVALID_REQUEST', async () => {
    const { o } = await start({ maxPayloadBytes: 20 });
    const adapter = new OrchestratorsCompatibilityAdapter(o);
    expect(await adapter.delegateTaskToAgent({ role: 'w', payload: 'p'.repeat(40) })).toEqual({
      error: {
        code: 'INVALID_REQUEST',
        message: expect.stringMatching(/42 bytes as JSON, over maxPayloadBytes \(20\)/),
      },
    });
  });

  it('is validated as an option: a positive integer or Infinity', () => {
    for (const bad of [0, -1, 1.5, '10', null]) {
      expect(() => new UnifiedOrchestrator({ maxPayloadBytes: bad as never })).toThrow(
        expect.objectContaining({ field: 'options.maxPayloadBytes' }),
      );
    }
    expect(() => new UnifiedOrchestrator({ maxPayloadBytes: Infinity, pressure: false })).not.toThrow();
  });
});
