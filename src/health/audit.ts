/**
 * The audit trail: critical operations as `audit` events (and entries for the configured sink), each with its time,
 * its actor and the node it happened on.
 */
import type { ResolvedAuditOptions } from '../config.js';
import type { OrchestratorEvents, TypedEmitter } from '../events.js';

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
  | 'deadletter.retry';

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

/** Options of the calls that are audited: who acts. */
export interface ActorOptions {
  /** Recorded as the entry's actor. @default the `audit.actor` option */
  readonly actor?: string;
}

export class AuditLog {
  readonly #events: TypedEmitter<OrchestratorEvents>;
  readonly #options: ResolvedAuditOptions;
  readonly #node: () => string;

  constructor(events: TypedEmitter<OrchestratorEvents>, options: ResolvedAuditOptions, node: () => string) {
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
