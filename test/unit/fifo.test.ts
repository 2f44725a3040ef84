/** Fifo and BoundedSet against a plain-array model, past the Fifo's compaction point (1,024 shifted items). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BoundedSet, Fifo } from '../../src/util/fifo.js';

describe('Fifo', () => {
  it('pushes and shifts in order, like an array, across compactions', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer(), fc.constant('shift' as const)), { maxLength: 5_000 }), (ops) => {
        const fifo = new Fifo<number>();
        const model: number[] = [];
        for (const op of ops) {
          if (op === 'shift') expect(fifo.shift()).toBe(model.shift());
          else {
            fifo.push(op);
            model.push(op);
          }
          expect(fifo.size).toBe(model.length);
          expect(fifo.peek()).toBe(model[0]);
        }
      }),
      { numRuns: 100 },
    );
  });

  it('keeps order through a long run of pushes and shifts (compaction moves the items)', () => {
    const fifo = new Fifo<number>();
    for (let i = 0; i < 10_000; i++) fifo.push(i);
    for (let i = 0; i < 9_000; i++) expect(fifo.shift()).toBe(i);
    for (let i = 10_000; i < 12_000; i++) fifo.push(i);
    for (let i = 9_000; i < 12_000; i++) expect(fifo.shift()).toBe(i);
    expect(fifo.shift()).toBeUndefined();
    expect(fifo.size).toBe(0);
  });
});

describe('BoundedSet', () => {
  it('holds the most recent `max` distinct keys, like a model that forgets the oldest first', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 100 }), { maxLength: 2_000 }),
        (max, keys) => {
          const set = new BoundedSet<number>(max);
          const model: number[] = [];
          for (const k of keys) {
            set.add(k);
            if (!model.includes(k)) {
              model.push(k);
              if (model.length > max) model.shift();
            }
            expect(set.size).toBe(model.length);
          }
          for (let k = 0; k <= 100; k++) expect(set.has(k)).toBe(model.includes(k));
        },
      ),
      { numRuns: 200 },
    );
  });
});
