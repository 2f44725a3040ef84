/** How a turn's items are cut into messages (count and size) and how a message joined from them is signed. */
import { describe, expect, it } from 'vitest';
import { BATCH, BATCH_CHARS, cutBatches, itemJson, MAX_ITEM_CHARS } from '../../src/bridge/redis-streams.js';
import { MessageSigner } from '../../src/bridge/signing.js';

const item = (chars: number, tag = ''): { json: string; tag: string } => ({ json: 'x'.repeat(chars), tag });
const sizes = (batches: Array<Array<{ json: string }>>): number[][] => batches.map((b) => b.map((i) => i.json.length));

describe('cutBatches', () => {
  it('cuts by count: at most BATCH items a message by default, any number with Infinity', () => {
    const items = Array.from({ length: 2 * BATCH + 1 }, () => item(10));
    expect(sizes(cutBatches(items)).map((b) => b.length)).toEqual([BATCH, BATCH, 1]);
    expect(cutBatches(items, Infinity)).toHaveLength(1);
  });

  it('cuts by size: a message stays within BATCH_CHARS, and an item larger than that goes alone, in order', () => {
    const third = Math.floor(BATCH_CHARS / 3) + 1; // three of them (and their commas) are over BATCH_CHARS
    const items = [item(third, 'a'), item(third, 'b'), item(third, 'c'), item(BATCH_CHARS + 1, 'big'), item(5, 'd')];
    const batches = cutBatches(items, Infinity);
    expect(batches.map((b) => b.map((i) => i.tag))).toEqual([['a', 'b'], ['c'], ['big'], ['d']]);
    for (const b of batches.filter((b) => b.length > 1)) {
      expect(b.map((i) => i.json).join(',').length).toBeLessThanOrEqual(BATCH_CHARS);
    }
  });

  it('cuts nothing out of nothing', () => {
    expect(cutBatches([])).toEqual([]);
  });
});

describe('itemJson', () => {
  it('serialises an item, or says why it cannot go in a message', () => {
    expect(itemJson({ a: 1 })).toEqual({ json: '{"a":1}' });
    expect(itemJson({ n: 1n })).toEqual({
      error: expect.stringMatching(/^it cannot be serialised as JSON \(TypeError: /),
    });
    expect(itemJson(undefined)).toEqual({ error: 'it serialises to nothing' });
    expect(MAX_ITEM_CHARS).toBeGreaterThan(BATCH_CHARS);
  });
});

describe('MessageSigner.sealJson', () => {
  it('signs a joined body as seal signs the object, and open reads it back', () => {
    const signer = new MessageSigner('a-secret-of-some-length-for-tests', 'ns', 60_000);
    const body = `{"origin":"A","tasks":[${[itemJson({ taskId: 't1' }), itemJson({ taskId: 't2' })].map((i) => ('json' in i ? i.json : '')).join(',')}]}`;
    const sealed = signer.sealJson('tasks', body);
    expect(signer.open('tasks', sealed.m, sealed.s)).toMatchObject({
      origin: 'A',
      tasks: [{ taskId: 't1' }, { taskId: 't2' }],
      id: expect.any(String),
      ts: expect.any(Number),
    });
    const empty = signer.sealJson('results', '{}');
    expect(signer.open('results', empty.m, empty.s)).toEqual({ id: expect.any(String), ts: expect.any(Number) });
    // Ids keep one sequence across seal and sealJson.
    const next = signer.seal('results', {});
    expect(MessageSigner.origin((JSON.parse(next.m) as { id: string }).id).seq).toBe(3);
  });
});
