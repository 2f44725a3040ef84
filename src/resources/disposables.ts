/**
 * Tracked disposables: every long-lived timer, interval, listener, breaker and connection the library opens is
 * registered here by its owner and released with it, or all at once on `stop()`. `size` is what a leak test reads.
 */
import type { OrchestratorEvents, TypedEmitter } from '../events.js';

/** Something that must be released; `dispose` is idempotent. */
export interface Disposable {
  dispose(): void;
}

/** A timer handle that can be re-armed without re-registering. */
export interface TrackedTimer extends Disposable {
  /** Arms (or re-arms) the timer to fire once after `ms`. */
  arm(ms: number): void;
  /** Lets the armed timer hold the process open: someone now awaits it. Re-arming drops this again. */
  hold(): void;
  readonly armed: boolean;
}

export class Disposables {
  readonly #items = new Set<Disposable>();
  #closed = false;

  /** Registered disposables not yet released. */
  get size(): number {
    return this.#items.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Registers a release function; the returned handle releases it (once) and forgets it. After close, it runs at once. */
  add(release: () => void): Disposable {
    let done = false;
    const item: Disposable = {
      dispose: () => {
        if (done) return;
        done = true;
        this.#items.delete(item);
        release();
      },
    };
    if (this.#closed) item.dispose();
    else this.#items.add(item);
    return item;
  }

  /**
   * A one-shot timer that `stop()` clears. Unref'd unless `keepAlive`: background work must never hold the
   * process open, while a timer somebody awaits must.
   */
  timer(fn: () => void, options: { keepAlive?: boolean } = {}): TrackedTimer {
    let handle: NodeJS.Timeout | undefined;
    const entry = this.add(() => {
      clearTimeout(handle);
      handle = undefined;
    });
    return {
      arm: (ms: number) => {
        if (this.#closed) return;
        clearTimeout(handle);
        handle = setTimeout(() => {
          handle = undefined;
          fn();
        }, ms);
        if (!options.keepAlive) handle.unref();
      },
      hold: () => {
        handle?.ref();
      },
      get armed() {
        return handle !== undefined;
      },
      dispose: () => entry.dispose(),
    };
  }

  /** A repeating unref'd interval, cleared on dispose or close. */
  interval(fn: () => void, ms: number): Disposable {
    const handle = setInterval(fn, ms);
    handle.unref();
    return this.add(() => clearInterval(handle));
  }

  /** Listens to an orchestrator event; the listener comes off on dispose or close (the parts that observe use this). */
  listen<E extends keyof OrchestratorEvents>(
    events: TypedEmitter<OrchestratorEvents>,
    event: E,
    listener: (payload: OrchestratorEvents[E]) => void,
  ): Disposable {
    events.on(event, listener);
    return this.add(() => events.off(event, listener));
  }

  /** Releases everything, newest first; a release that throws does not stop the others. Idempotent. */
  close(): unknown[] {
    this.#closed = true;
    const errors: unknown[] = [];
    for (const item of [...this.#items].reverse()) {
      try {
        item.dispose();
      } catch (error) {
        errors.push(error);
      }
    }
    return errors;
  }
}
