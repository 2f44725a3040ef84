/**
 * The typed emitter every part emits its events on: eventemitter3 with typed names and payloads, where a listener
 * that throws cannot break the emitter or the other listeners.
 */
import { EventEmitter } from 'eventemitter3';
import { ValidationError } from '../errors.js';

/** The event every TypedEmitter emits itself. */
export interface EmitterEvents {
  /**
   * A listener threw. The orchestrator carried on; this reports it. (A `listener:error` listener that throws, or a
   * throw with nobody listening here, becomes a process warning with code `UNIFIED_ORCHESTRATOR_LISTENER`.)
   */
  'listener:error': {
    /** The name of the event whose listener threw. */
    readonly event: string;
    /** What it threw. */
    readonly error: unknown;
  };
}

/**
 * eventemitter3 with typed names and payloads, where a throwing listener is isolated: the error is reported
 * as `listener:error` (or a process warning when nobody listens for that) and the other listeners still run.
 */
/** A listener as the emitter stores it: any payload in, nothing out. */
type Listener = (payload: unknown) => void;

export class TypedEmitter<Events extends object> {
  readonly #ee = new EventEmitter();
  // listener → its guarded wrapper, per event, so `off` can find what `on` registered.
  readonly #wrappers = new Map<PropertyKey, Map<Listener, Listener[]>>();
  /** Listeners per event, kept alongside eventemitter3's so that `has` is one property read. */
  #counts: Record<string, number> = Object.create(null) as Record<string, number>;

  on<E extends keyof Events & string>(event: E, listener: (payload: Events[E]) => void): this {
    this.#ee.on(event, this.#wrap(event, listener as Listener, false));
    return this;
  }

  once<E extends keyof Events & string>(event: E, listener: (payload: Events[E]) => void): this {
    this.#ee.once(event, this.#wrap(event, listener as Listener, true));
    return this;
  }

  off<E extends keyof Events & string>(event: E, listener: (payload: Events[E]) => void): this {
    const wrappers = this.#wrappers.get(event)?.get(listener as Listener);
    const wrapper = wrappers?.pop();
    if (wrapper) {
      this.#counts[event] = (this.#counts[event] ?? 1) - 1;
      this.#ee.off(event, wrapper);
      if (wrappers!.length === 0) this.#wrappers.get(event)!.delete(listener as Listener);
    }
    return this;
  }

  /** Whether anyone listens: check it before building a payload on a hot path, so an unheard event costs nothing. */
  has(event: keyof Events & string): boolean {
    return this.#counts[event] !== undefined && this.#counts[event] > 0;
  }

  listenerCount(event: keyof Events & string): number {
    return this.#ee.listenerCount(event);
  }

  /** Emits to every listener; returns false at once (no allocation) when there is none. */
  emit<E extends keyof Events & string>(event: E, payload: Events[E]): boolean {
    return this.#ee.emit(event, payload);
  }

  removeAllListeners(): void {
    this.#ee.removeAllListeners();
    this.#wrappers.clear();
    this.#counts = Object.create(null) as Record<string, number>;
  }

  #wrap(event: string, listener: Listener, once: boolean): Listener {
    if (typeof listener !== 'function') {
      throw new ValidationError(
        'listener',
        `Expected the listener for "${event}" to be a function, got ${typeof listener}`,
      );
    }
    let perEvent = this.#wrappers.get(event);
    if (!perEvent) this.#wrappers.set(event, (perEvent = new Map<Listener, Listener[]>()));
    this.#counts[event] = (this.#counts[event] ?? 0) + 1;
    const wrapper: Listener = (payload) => {
      if (once) this.#forget(event, listener, wrapper);
      try {
        listener(payload);
      } catch (error) {
        this.#report(event, error);
      }
    };
    const list = perEvent.get(listener);
    if (list) list.push(wrapper);
    else perEvent.set(listener, [wrapper]);
    return wrapper;
  }

  #forget(event: string, listener: Listener, wrapper: Listener): void {
    const list = this.#wrappers.get(event)?.get(listener);
    if (!list) return;
    const i = list.indexOf(wrapper);
    if (i >= 0) {
      list.splice(i, 1);
      this.#counts[event] = (this.#counts[event] ?? 1) - 1;
    }
    if (list.length === 0) this.#wrappers.get(event)!.delete(listener);
  }

  #report(event: string, error: unknown): void {
    if (event !== 'listener:error' && this.#ee.listenerCount('listener:error') > 0) {
      this.#ee.emit('listener:error', { event, error });
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.emitWarning(`A listener for "${event}" threw: ${message}`, { code: 'UNIFIED_ORCHESTRATOR_LISTENER' });
  }
}
