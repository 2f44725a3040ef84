/**
 * One RedisBridge node as the bridge's parts share it: who it is (id, namespace, resolved options, signer), its host
 * and whether it runs, its health status and its counts. The parts read it and add to the counts; only RedisBridge
 * sets the host and the running flag.
 */
import type { BridgeHost, BridgeStats, BridgeStatus } from './bridge.js';
import { keyOf } from './redis-keys.js';
import type { ResolvedRedisBridgeOptions } from './redis-options.js';
import type { MessageSigner } from './signing.js';

/** The counts of {@link BridgeStats}, as the parts add to them. */
export type BridgeCounts = { -readonly [K in keyof BridgeStats]: number };

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

  constructor(nodeId: string, options: ResolvedRedisBridgeOptions, signer: MessageSigner) {
    this.nodeId = nodeId;
    this.ns = options.namespace;
    this.options = options;
    this.signer = signer;
  }

  /** Healthy while connected, degraded while reconnecting to Redis. */
  get status(): BridgeStatus {
    return this.#status;
  }

  /** Sets the status and tells the host, when it changed. */
  setStatus(status: BridgeStatus): void {
    if (status.status === this.#status.status && status.detail === this.#status.detail) return;
    this.#status = status;
    this.host?.state(status);
  }

  /** The key `parts` under the namespace (joined with `:`; see redis-keys.ts). */
  key(...parts: string[]): string {
    return keyOf(this.ns, ...parts);
  }
}
