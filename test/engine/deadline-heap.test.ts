/** DeadlineHeap against a model: every scheduled entry expires once, in due order, no earlier; removed ones never. */
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DeadlineHeap, type HeapEntry } from '../../src/engine/deadline-heap.js';

afterEach(() => {
  vi.useRealTimers();
});

interface Entry extends HeapEntry {
  readonly id: number;
}

describe('DeadlineHeap', () => {
  it('expires each live entry once, at or after its time, in due order; removed entries never', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('add' as const), ms: fc.integer({ min: 1, max: 500 }) }),
            fc.record({ op: fc.constant('remove' as const), pick: fc.nat() }),
            fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 300 }) }),
          ),
          { maxLength: 200 },
        ),
        (ops) => {
          vi.useFakeTimers();
          const clock = { now: () => Date.now() };
          const expired: Array<{ id: number; at: number; dueAt: number }> = [];
          const heap = new DeadlineHeap<Entry>(clock, (e) =>
            expired.push({ id: e.id, at: clock.now(), dueAt: e.dueAt }),
          );
          const live = new Map<number, Entry>();
          const removed = new Set<number>();
          let next = 0;
          for (const step of ops) {
            if (step.op === 'add') {
              const e: Entry = { id: next++, dueAt: 0, heapIndex: -1 };
              heap.add(e, step.ms, clock.now());
              live.set(e.id, e);
            } else if (step.op === 'remove') {
              const ids = [...live.keys()];
              if (ids.length === 0) continue;
              const id = ids[step.pick % ids.length]!;
              heap.remove(live.get(id)!);
              heap.remove(live.get(id)!); // twice: a no-op
              live.delete(id);
              removed.add(id);
            } else {
              vi.advanceTimersByTime(step.ms);
            }
            for (const x of expired) live.delete(x.id);
            expect(heap.size).toBe(live.size);
          }
          vi.advanceTimersByTime(1_000);
          expect(live.size === 0 || heap.size === 0).toBe(true);
          const ids = expired.map((x) => x.id);
          expect(new Set(ids).size).toBe(ids.length); // once each
          for (const x of expired) {
            expect(removed.has(x.id)).toBe(false);
            expect(x.at).toBeGreaterThanOrEqual(x.dueAt);
          }
          for (let i = 1; i < expired.length; i++)
            expect(expired[i]!.dueAt).toBeGreaterThanOrEqual(expired[i - 1]!.dueAt);
          expect(heap.size).toBe(0);
          vi.useRealTimers();
        },
      ),
      { numRuns: 300 },
    );
  });

  it("holds the process only while an entry is scheduled (its timer is unref'd when empty)", () => {
    const heap = new DeadlineHeap<Entry>({ now: () => performance.now() }, () => {});
    const e: Entry = { id: 1, dueAt: 0, heapIndex: -1 };
    heap.add(e, 60_000, performance.now());
    const active = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const withEntry = active();
    heap.remove(e);
    expect(active()).toBe(withEntry - 1);
    heap.clear();
  });
});
