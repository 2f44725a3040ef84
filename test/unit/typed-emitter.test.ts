import { describe, expect, it } from 'vitest';
import { TypedEmitter } from '../../src/util/typed-emitter.js';

interface Events {
  ping: { n: number };
  pong: { n: number };
}

describe('TypedEmitter', () => {
  it('has() follows on, once, off and a fired once', () => {
    const e = new TypedEmitter<Events>();
    const a = (): void => {};
    const b = (): void => {};
    expect(e.has('ping')).toBe(false);
    e.on('ping', a);
    e.on('ping', a); // the same listener twice counts twice, as in eventemitter3
    e.once('ping', b);
    expect(e.listenerCount('ping')).toBe(3);
    e.emit('ping', { n: 1 }); // the once listener leaves
    expect(e.listenerCount('ping')).toBe(2);
    e.off('ping', b); // already gone: no change
    e.off('ping', a);
    expect(e.has('ping')).toBe(true);
    e.off('ping', a);
    expect(e.has('ping')).toBe(false);
    expect(e.has('pong')).toBe(false);
    e.on('pong', a);
    e.removeAllListeners();
    expect(e.has('pong')).toBe(false);
  });

  it('delivers to the listeners after one that throws, and reports the throw', () => {
    const e = new TypedEmitter<Events & { 'listener:error': { event: string; error: unknown } }>();
    const got: number[] = [];
    const reported: string[] = [];
    e.on('ping', () => {
      throw new Error('bad listener');
    });
    e.on('ping', ({ n }) => got.push(n));
    e.on('listener:error', ({ event }) => reported.push(event));
    e.emit('ping', { n: 7 });
    expect(got).toEqual([7]);
    expect(reported).toEqual(['ping']);
  });
});

describe('TypedEmitter input', () => {
  it('refuses a listener that is not a function, up front', () => {
    const e = new TypedEmitter<Events>();
    expect(() => e.on('ping', 'nope' as never)).toThrow(
      expect.objectContaining({ code: 'VALIDATION_ERROR', field: 'listener' }),
    );
    expect(e.has('ping')).toBe(false);
  });
});
