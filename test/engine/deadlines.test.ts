import { afterEach, describe, expect, it, vi } from 'vitest';
import { Deadlines, type DeadlineEntry } from '../../src/engine/deadlines.js';

function entry(name: string): DeadlineEntry & { name: string } {
  return { name, dueAt: 0, deadlinePrev: undefined, deadlineNext: undefined, deadlineList: undefined };
}

describe('Deadlines (shared attempt timer)', () => {
  afterEach(() => vi.useRealTimers());

  it('expires entries of several durations in deadline order, and not before', () => {
    vi.useFakeTimers();
    const clock = { now: () => Date.now() };
    const expired: string[] = [];
    const d = new Deadlines<ReturnType<typeof entry>>(clock, (e) => expired.push(e.name));
    d.add(entry('a100'), 100, clock.now());
    vi.advanceTimersByTime(10);
    d.add(entry('b30'), 30, clock.now()); // due at 40: earlier than a100, re-arms the timer
    d.add(entry('c100'), 100, clock.now()); // due at 110
    vi.advanceTimersByTime(29);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(['b30']);
    vi.advanceTimersByTime(60);
    expect(expired).toEqual(['b30', 'a100']);
    vi.advanceTimersByTime(10);
    expect(expired).toEqual(['b30', 'a100', 'c100']);
    expect(d.size).toBe(0);
  });

  it('never expires a removed entry, and removal from the middle keeps the rest in order', () => {
    vi.useFakeTimers();
    const clock = { now: () => Date.now() };
    const expired: string[] = [];
    const d = new Deadlines<ReturnType<typeof entry>>(clock, (e) => expired.push(e.name));
    const [x, y, z] = [entry('x'), entry('y'), entry('z')];
    d.add(x, 50, clock.now());
    vi.advanceTimersByTime(1);
    d.add(y, 50, clock.now());
    vi.advanceTimersByTime(1);
    d.add(z, 50, clock.now());
    d.remove(y);
    d.remove(y); // twice is a no-op
    vi.advanceTimersByTime(100);
    expect(expired).toEqual(['x', 'z']);
  });

  it("leaves no ref'd timer behind once every entry is removed", () => {
    const d = new Deadlines<ReturnType<typeof entry>>({ now: () => performance.now() }, () => {});
    const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const e = entry('e');
    d.add(e, 60_000, performance.now());
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBe(before + 1);
    d.remove(e);
    // Unref'd timers are not reported as active resources: nothing keeps the process alive.
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBe(before);
    d.clear();
  });
});

describe('Deadlines with many distinct durations', () => {
  it('still expires every entry in order after empty lists were swept', () => {
    vi.useFakeTimers();
    const clock = { now: () => Date.now() };
    const expired: string[] = [];
    const d = new Deadlines<ReturnType<typeof entry>>(clock, (e) => expired.push(e.name));
    // 1,000 distinct durations that finish early (their lists empty out), then three that must still fire.
    for (let i = 0; i < 1_000; i++) {
      const e = entry(`gone-${i}`);
      d.add(e, 10_000 + i, clock.now());
      d.remove(e);
    }
    d.add(entry('late'), 300, clock.now());
    d.add(entry('early'), 100, clock.now());
    d.add(entry('mid'), 200, clock.now());
    vi.advanceTimersByTime(400);
    expect(expired).toEqual(['early', 'mid', 'late']);
    vi.useRealTimers();
  });
});
