/**
 * The audit trail: critical operations as `audit` events (and entries for the configured sink), each with its time,
 * its actor and the node it happened on.
 */
import type { ResourceEvents } from '../resources/events.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import {
  expectFunction,
  expectObject,
  expectString,
  keysOf,
  optional,
  own,
  rejectUnknownKeys,
} from '../util/validate.js';

/** The operations the audit trail records. */
export type AuditAction =
  | 'agent.spawn'
  | 'agent.register'
  | 'agent.terminate'
  | 'orchestrator.halt'
  | 'orchestrator.resume'
  | 'orchestrator.drain'
  | 'orchestrator.stop'
  | 'traffic.change'
  | 'traffic.rollback'
  | 'budget.halt'
  | 'deadletter.retry'
  | 'workflow.signal';

/** One audited operation. */
export interface AuditEntry {
  /** Epoch ms. */
  readonly at: number;
  /** What was done. */
  readonly action: AuditAction;
  /**
   * Who did it: the `actor` the call was given, else `audit.actor` (`'local'`); for a control message from the
   * cluster the sender's actor (the CLI sends `cli:<user>@<host>`) or node id; `'system'` for the orchestrator's own
   * decisions (a budget halt).
   */
  readonly actor: string;
  /** The node it happened on (the bridge's node id). */
  readonly node: string;
  /** What was done: ids, reasons, settings. */
  readonly detail: Readonly<Record<string, unknown>>;
}

/** The audit trail's events, with their payloads (part of `OrchestratorEvents`). */
export interface AuditEvents {
  /** A critical operation, for the audit trail (also given to the `audit.sink` option). */
  audit: AuditEntry;
  /** The `audit.sink` threw or rejected for an entry; the operation itself went ahead. */
  'audit:sink-failed': {
    /** The entry the sink was given. */
    readonly entry: AuditEntry;
    /** What the sink threw or rejected with. */
    readonly error: unknown;
  };
}

/**
 * The audit trail: every critical operation (agent spawn and terminate, halt, resume, drain, stop, traffic change,
 * rollback, budget halt, dead-letter retry) is an `audit` event with its time, actor and node, and goes to `sink`.
 */
export interface AuditOptions {
  /**
   * Receives every entry, in order (append it to a file, a table, a log pipeline): agent spawn, register and
   * terminate; halt, resume, drain and stop; traffic change and rollback; budget halt; dead-letter retry. A sink that throws or rejects is
   * reported as an `audit:sink-failed` event; the operation itself is not affected.
   */
  sink?: (entry: AuditEntry) => void | Promise<void>;
  /** Who acts when a call does not say (`{ actor }` on the call). @default 'local' */
  actor?: string;
}

/** {@link AuditOptions} with every default applied. */
export interface ResolvedAuditOptions {
  readonly sink: ((entry: AuditEntry) => void | Promise<void>) | undefined;
  readonly actor: string;
}

/** The defaults of {@link AuditOptions} (no sink: entries are only `audit` events). */
export const AUDIT_DEFAULTS = Object.freeze({
  /** The actor of a call that names none. */
  actor: 'local',
});

const AUDIT_KEYS = keysOf<AuditOptions>({ sink: true, actor: true });

/** Validates the audit options. */
export function resolveAuditOptions(input: unknown): ResolvedAuditOptions {
  if (input === undefined) return { sink: undefined, actor: AUDIT_DEFAULTS.actor };
  const o = expectObject(input, 'options.audit');
  rejectUnknownKeys(o, AUDIT_KEYS, 'options.audit');
  return {
    sink: optional(own(o, 'sink'), undefined, (v) =>
      expectFunction<ResolvedAuditOptions['sink']>(v, 'options.audit.sink'),
    ),
    actor: optional(own(o, 'actor'), AUDIT_DEFAULTS.actor, (v) => expectString(v, 'options.audit.actor')),
  };
}

/** Options of the calls that are audited: who acts. */
export interface ActorOptions {
  /** Recorded as the entry's actor. @default the `audit.actor` option */
  readonly actor?: string;
}

export class AuditLog {
  readonly #events: TypedEmitter<AuditEvents & ResourceEvents>;
  readonly #options: ResolvedAuditOptions;
  readonly #node: () => string;

  constructor(events: TypedEmitter<AuditEvents & ResourceEvents>, options: ResolvedAuditOptions, node: () => string) {
    this.#events = events;
    this.#options = options;
    this.#node = node;
    // The orchestrator's own decisions that an operator must be able to trace.
    events.on('budget:exceeded', (e) => {
      if (e.halted > 0)
        this.record(
          'budget.halt',
          { tenantId: e.tenantId, spent: e.spent, limit: e.limit, halted: e.halted },
          'system',
        );
    });
  }

  /** The actor of a call: its own, else the configured default. */
  actorOf(options: ActorOptions | null | undefined): string {
    const actor = options?.actor;
    return typeof actor === 'string' && actor !== '' ? actor : this.#options.actor;
  }

  record(action: AuditAction, detail: Record<string, unknown>, actor: string): void {
    const entry: AuditEntry = { at: Date.now(), action, actor, node: this.#node(), detail };
    this.#events.emit('audit', entry);
    const sink = this.#options.sink;
    if (!sink) return;
    try {
      const done = sink(entry);
      if (done && typeof done.then === 'function') done.then(undefined, (error: unknown) => this.#failed(entry, error));
    } catch (error) {
      this.#failed(entry, error);
    }
  }

  #failed(entry: AuditEntry, error: unknown): void {
    this.#events.emit('audit:sink-failed', { entry, error });
  }
}
