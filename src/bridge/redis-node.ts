/**
 * One RedisBridge node as the bridge's parts share it: who it is (id, namespace, resolved options, signer), its host
 * and whether it runs, its health status and its counts. The parts read it and add to the counts; only RedisBridge
 * sets the host and the running flag.
 *
 * The status is derived from a small set of troubles, each set and cleared by the part that sees it: `connection`
 * (a connection is reconnecting: redis-connections.ts), `writes` (Redis refused the node's last write, OOM or
 * WRONGTYPE say: cleared by its next write Redis takes) and `results` (results Redis refused wait to be written
 * again: cleared by the ResultWriter once none waits). Degraded while any is set, with its reason; healthy once none
 * is. So a reconnect does not hide refused writes, nor a successful write a reconnect or results still waiting.
 */
import type { BridgeHost, BridgeStats, BridgeStatus } from './bridge.js';
import { namespaceKey } from './redis-keys.js';
import type { ResolvedRedisBridgeOptions } from './redis-options.js';
import type { MessageSigner } from './signing.js';

/** The counts of {@link BridgeStats}, as the parts add to them. */
export type BridgeCounts = { -readonly [K in keyof BridgeStats]: number };

/** What can make a started node degraded: a connection reconnecting, Redis refusing its writes, or its results. */
export type NodeTrouble = 'connection' | 'writes' | 'results';

/** The identity, lifecycle, status and counts of one RedisBridge node. */
export class RedisNode {
  /** This node's id: names its registry entry, its results stream and its consumer in each task group. */
  readonly nodeId: string;
  /** The namespace, as configured (redis-keys.ts encodes it into keys). */
  readonly ns: string;
  readonly options: ResolvedRedisBridgeOptions;
  /** Seals and opens every message of the namespace. */
  readonly signer: MessageSigner;
  /** This node's counts since it was made. */
  readonly counts: BridgeCounts = { handedOff: 0, served: 0, reclaimed: 0, deadLettered: 0, rejected: 0 };
  /** The orchestrator, from `start()` on. */
  host: BridgeHost | undefined;
  /** Started and not stopped: the loops and the heartbeat go on while it is true. */
  running = false;
  /** The sealed standing entries this node applied, for its registry entry (see redis-standing.ts). */
  vouched: () => readonly string[] = () => [];
  #status: BridgeStatus = { status: 'healthy', detail: 'not started' };
  /** The troubles of the node now, with their reasons (see the file header). */
  readonly #troubles = new Map<NodeTrouble, string>();
  /** The namespace as it opens every key (see redis-keys.ts), and that followed by `:`. */
  readonly #nsKey: string;
  readonly #prefix: string;

  constructor(nodeId: string, options: ResolvedRedisBridgeOptions, signer: MessageSigner) {
    this.nodeId = nodeId;
    this.ns = options.namespace;
    this.#nsKey = namespaceKey(options.namespace);
    this.#prefix = `${this.#nsKey}:`;
    this.options = options;
    this.signer = signer;
  }

  /** Healthy while connected, degraded while reconnecting to Redis or while Redis refuses writes. */
  get status(): BridgeStatus {
    return this.#status;
  }

  /** Sets (or updates the reason of) one trouble: the node is degraded until every trouble is cleared. */
  trouble(trouble: NodeTrouble, reason: string): void {
    this.#troubles.set(trouble, reason);
    this.deriveStatus();
  }

  /** Clears one trouble: healthy again unless another is still set. */
  clear(trouble: NodeTrouble): void {
    if (this.#troubles.delete(trouble)) this.deriveStatus();
  }

  /** Clears every trouble (a new start) without changing the status. */
  clearAll(): void {
    this.#troubles.clear();
  }

  /**
   * A write Redis refused (`reply`, its error): degraded with the reason, until a write succeeds (`writes`) or until
   * the part that keeps what was refused clears it (`results`).
   */
  writeRefused(reply: string, trouble: 'writes' | 'results' = 'writes'): void {
    this.trouble(trouble, `Redis refuses writes: ${reply}`);
  }

  /** A write Redis took: clears the `writes` trouble. */
  writeTaken(): void {
    this.clear('writes');
  }

  /** Sets the status from the troubles now, once started (before that, nothing is reported). */
  deriveStatus(): void {
    if (!this.running) return;
    if (this.#troubles.size === 0) {
      this.setStatus({ status: 'healthy', detail: `connected as ${this.nodeId}` });
      return;
    }
    this.setStatus({ status: 'degraded', detail: [...new Set(this.#troubles.values())].join('; ') });
  }

  /** Sets the status and tells the host, when it changed. */
  setStatus(status: BridgeStatus): void {
    if (status.status === this.#status.status && status.detail === this.#status.detail) return;
    this.#status = status;
    this.host?.state(status);
  }

  /** The key `parts` under the namespace (joined with `:`; see redis-keys.ts). */
  key(...parts: string[]): string {
    // What keyOf(ns, ...parts) gives, with the namespace encoded once: every task makes keys (its `done` marker).
    return parts.length === 0 ? this.#nsKey : this.#prefix + parts.join(':');
  }
}
