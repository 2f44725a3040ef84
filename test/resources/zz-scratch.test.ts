import { it, expect, vi } from 'vitest';
import { setTimeout as delay } from 'node:timers/promises';
it('fake timers/promises', async () => {
  vi.useFakeTimers();
  let done = false;
  void delay(1000).then(() => { done = true; });
  await vi.advanceTimersByTimeAsync(1000);
  expect(done).toBe(true);
  vi.useRealTimers();
});
