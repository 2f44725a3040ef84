/**
 * Grouped checkpoints: every step record written in one event-loop turn, by any workflow run of this node, goes to
 * the store in one `checkpoint` call (one transaction), with one call in flight at a time, so a step costs a share of
 * a round trip rather than one. Records keep their order. While the store fails, the batch is written again with
 * backoff (the steps wait: a checkpoint is what makes a step's outcome exactly-once), until the lane is closed.
 */
import { unavailable } from '../store/run-writer.js';
import { backoffTimer } from '../util/backoff-timer.js';
import type { RunStore, StepInput } from '../store/store.js';

interface Pending {
  readonly step: StepInput;
  readonly resolve: (written: boolean) => void;
  readonly reject: (error: unknown) => void;
}

/** At most this many records in one call. */
const MAX_BATCH = 1_000;
/** The longest wait between two tries while the store fails, in ms. */
const MAX_RETRY_MS = 2_000;

/** Counts of the lane, for stats. */
export interface CheckpointStats {
  /** Calls written. */
  readonly batches: number;
  /** Step records written. */
  readonly written: number;
  /** Calls that failed (and were tried again). */
  readonly failures: number;
}

export class CheckpointLane {
  readonly #store: RunStore;
  readonly #nodeId: string;
  #queue: Pending[] = [];
  #scheduled = false;
  #busy = false;
  #retryMs = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #batches = 0;
  #written = 0;
  #failures = 0;
  /** Told of each failure (the store is down), and of each success after one. */
  onTrouble: ((error: unknown) => void) | undefined;

  constructor(store: RunStore, nodeId: string) {
    this.#store = store;
    this.#nodeId = nodeId;
  }

  /**
   * Writes `step` with the others of this turn. Resolves true once committed, false when the store refused it
   * because this node does not hold the run (any more); rejects with StoreUnavailableError once the lane is closed.
   */
  write(step: StepInput): Promise<boolean> {
    if (this.#closed) return Promise.reject(unavailable('checkpoint', 'the orchestrator is stopping'));
    return new Promise<boolean>((resolve, reject) => {
      this.#queue.push({ step, resolve, reject });
      this.#schedule();
    });
  }

  /** Stops: what is queued is rejected (its runs are replayed from their last checkpoint elsewhere). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const queue = this.#queue;
    this.#queue = [];
    const error = unavailable('checkpoint', 'the orchestrator stopped');
    for (const p of queue) p.reject(error);
  }

  stats(): CheckpointStats {
    return { batches: this.#batches, written: this.#written, failures: this.#failures };
  }

  #schedule(): void {
    if (this.#scheduled || this.#busy || this.#retryTimer || this.#closed || this.#queue.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      while (!this.#closed && this.#queue.length > 0) {
        const batch = this.#queue.slice(0, MAX_BATCH);
        let refused: string[];
        try {
          refused = await this.#store.checkpoint(
            this.#nodeId,
            batch.map((p) => p.step),
          );
        } catch (error) {
          if (this.#closed) return;
          this.#failures++;
          this.onTrouble?.(error);
          ({ ms: this.#retryMs, timer: this.#retryTimer } = backoffTimer(this.#retryMs, MAX_RETRY_MS, () => {
            this.#retryTimer = undefined;
            this.#schedule();
          }));
          return;
        }
        this.#retryMs = 0;
        this.#queue.splice(0, batch.length);
        this.#batches++;
        this.#written += batch.length;
        const lost = refused.length === 0 ? undefined : new Set(refused);
        for (const p of batch) p.resolve(!lost?.has(p.step.runId));
      }
    } finally {
      this.#busy = false;
    }
  }
}
