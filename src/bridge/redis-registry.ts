/**
 * A node's side of the registry (`nodes` and `node:<id>`, see redis-control.ts): it writes its own entry, on each
 * heartbeat and after a control message changed what it reports, re-reads everyone's on each heartbeat, and answers
 * `canAnyServe` from that read without a round trip. Right after Redis restarted (and may have lost the registry),
 * the nodes known before keep counting until their last heartbeat is a node TTL old.
 */
import type { Redis } from 'ioredis';
import type { BridgeHost, NodeInfo } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import { readNodes, removeNode, writeNode } from './redis-control.js';
import type { RedisNode } from './redis-node.js';

/** This node's registry entry and its view of the others'. */
export class RedisRegistry {
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  /** The live nodes as of the last read, this one included. */
  #nodes: NodeInfo[] = [];
  /** Until when a registry read keeps the nodes known before a Redis restart (see refresh). */
  #graceUntil = 0;

  constructor(node: RedisNode, connections: RedisConnections) {
    this.#node = node;
    this.#connections = connections;
  }

  /** The live nodes as of the last read, this one included. */
  get nodes(): NodeInfo[] {
    return this.#nodes;
  }

  /** A pipeline that writes this node's registry entry, as `host` describes it now. */
  write(host: BridgeHost): ReturnType<Redis['pipeline']> {
    const info: NodeInfo = {
      ...host.info(),
      nodeId: this.#node.nodeId,
      heartbeatAt: Date.now(),
      status: host.status(),
    };
    const { signer, ns, options } = this.#node;
    return writeNode(this.#connections.redis, signer, ns, info, options.nodeTtlMs, this.#node.vouched());
  }

  /** Adds to `pipeline` the commands that take this node out of the registry. */
  remove(pipeline: ReturnType<Redis['pipeline']>): void {
    removeNode(pipeline, this.#node.ns, this.#node.nodeId);
  }

  /** Reads the registry. */
  async refresh(): Promise<void> {
    // After a reconnect: a new run id means Redis restarted and may have lost the registry (no persistence).
    if (await this.#connections.restarted()) this.#graceUntil = Date.now() + this.#node.options.nodeTtlMs;
    const { nodes, rejected } = await readNodes(this.#connections.redis, this.#node.signer, this.#node.ns);
    this.#node.counts.rejected += rejected;
    if (Date.now() < this.#graceUntil) {
      // Redis restarted, so the registry may be empty until the other nodes write theirs again. Meanwhile nodes
      // known before keep counting until their last heartbeat is nodeTtlMs old, so that work for them is handed off
      // (it waits in its stream) rather than refused with NO_CAPABLE_AGENT. Not after a mere reconnect: there the
      // registry is intact, and a node that left cleanly must stop getting work at once.
      const fresh = new Set(nodes.map((n) => n.nodeId));
      this.#nodes = [...nodes, ...this.#nodes.filter((n) => !fresh.has(n.nodeId))];
    } else {
      this.#nodes = nodes;
    }
  }

  /**
   * Whether another node, live by its last heartbeat, has an agent (or pool) that holds all of `requires`, as of the
   * last read.
   */
  canAnyServe(requires: readonly string[]): boolean {
    const now = Date.now();
    return this.#nodes.some(
      (n) =>
        n.nodeId !== this.#node.nodeId &&
        now - n.heartbeatAt < this.#node.options.nodeTtlMs &&
        n.serves.some((set) => requires.every((c) => set.includes(c))),
    );
  }
}
