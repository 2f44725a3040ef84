/**
 * A node's side of the registry (`nodes` and `node:<id>`, see redis-control.ts): it writes its own entry, on each
 * heartbeat and after a control message changed what it reports, re-reads everyone's on each heartbeat, and answers
 * `canAnyServe` and `isLive` from that read without a round trip.
 *
 * Leases. A node is live while its lease runs: `nodeTtlMs` from its last heartbeat, as its registry entry's TTL says.
 * Here that time is counted on this node's monotonic clock, and only while Redis answers this node: time lost to a
 * stall (Redis paused or asleep, this node's event loop blocked, its connection cut) is not counted, since no node
 * could renew its lease meanwhile. After such a stall, or a Redis restart, a node missing from the registry is not
 * taken for gone at once: for one `nodeTtlMs` the nodes known before keep counting until their lease runs out (DEBUG
 * SLEEP expires every entry at once, CLIENT PAUSE as it ends, a restart without persistence loses them all). Outside
 * that grace a node missing from a read is gone at once: it left, or its entry expired in Redis.
 */
import type { Redis } from 'ioredis';
import type { BridgeHost, NodeInfo } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import { readNodes, removeNode, writeNode } from './redis-control.js';
import type { RedisNode } from './redis-node.js';

/** A node as a registry read listed it, and the lease it had then. */
interface Lease {
  readonly info: NodeInfo;
  /** When the read that listed it came back (performance.now()). */
  readonly readAt: number;
  /** The stalled time counted so far, at that read. */
  readonly stalledAt: number;
  /** Ms its lease had left at that read: `nodeTtlMs` less the age of its heartbeat. */
  readonly leftMs: number;
}

/** This node's registry entry and its view of the others'. */
export class RedisRegistry {
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  /** A gap between two answers from Redis longer than this is a stall. */
  readonly #stallMs: number;
  /** The nodes of the last read, this one included, and (during a grace) those known before it. */
  #known = new Map<string, Lease>();
  /** Until when (performance.now()) a node missing from a read keeps its lease: after a stall or a restart. */
  #graceUntil = -Infinity;
  /** When Redis last answered this node (performance.now()), once it did. */
  #lastContact: number | undefined;
  /** Ms of stalls so far: leases do not run during them. */
  #stalledMs = 0;

  constructor(node: RedisNode, connections: RedisConnections) {
    this.#node = node;
    this.#connections = connections;
    // A beat answers every heartbeatMs; halfway to a node's TTL something held this node or Redis up.
    this.#stallMs = (node.options.heartbeatMs + node.options.nodeTtlMs) / 2;
  }

  /** The live nodes as of the last read, this one included (and, right after a stall or restart, those known before). */
  get nodes(): NodeInfo[] {
    return [...this.#known.values()].map((lease) => lease.info);
  }

  /** Whether a grace runs: a stall or a Redis restart was seen less than `nodeTtlMs` ago. */
  get inGrace(): boolean {
    return performance.now() < this.#graceUntil;
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

  /**
   * Redis answered this node just now. A gap since its answer before longer than `(heartbeatMs + nodeTtlMs) / 2`
   * was a stall (of Redis, or of this node): it does not count against leases, and a grace starts.
   */
  contact(): void {
    const now = performance.now();
    const last = this.#lastContact;
    this.#lastContact = now;
    if (last !== undefined && now - last > this.#stallMs) {
      this.#stalledMs += now - last;
      this.#graceUntil = now + this.#node.options.nodeTtlMs;
    }
  }

  /** Redis restarted and may have lost the registry: the nodes known before keep their leases for a while. */
  restarted(): void {
    this.#graceUntil = performance.now() + this.#node.options.nodeTtlMs;
  }

  /** Reads the registry. */
  async refresh(): Promise<void> {
    const { nodes, rejected } = await readNodes(this.#connections.redis, this.#node.signer, this.#node.ns);
    this.contact(); // first: a read that came back late may miss nodes that are live
    this.#node.counts.rejected += rejected;
    const now = performance.now();
    const wall = Date.now();
    const known = new Map<string, Lease>();
    for (const info of nodes) {
      // Its heartbeat's age on the wall clock (clocks differ between machines: one ahead counts as just now).
      const age = Math.max(0, wall - info.heartbeatAt);
      const lease = { info, readAt: now, stalledAt: this.#stalledMs, leftMs: this.#node.options.nodeTtlMs - age };
      // A heartbeat written before a stall lands after it, with its old time: the lease known before still runs.
      const before = this.#known.get(info.nodeId);
      const longer = before !== undefined && this.#leftMs(before, now) > lease.leftMs;
      known.set(info.nodeId, longer ? { ...before, info } : lease);
    }
    // A connection was lost and whether Redis restarted is not known yet (the next beat asks): this read may come
    // from a restarted, empty Redis, so it is treated as one right after a restart.
    if (now < this.#graceUntil || this.#connections.restartUnknown) {
      // Right after a stall or a restart, the registry may miss nodes that are live but could not write their entry
      // again yet: those known before keep counting until their lease runs out, so that work for them is handed off
      // (it waits in its stream) rather than refused with NO_CAPABLE_AGENT, and their entries are not reclaimed.
      for (const [id, lease] of this.#known) if (!known.has(id) && this.#leftMs(lease, now) > 0) known.set(id, lease);
    }
    this.#known = known;
  }

  /**
   * Whether the node `nodeId` holds a lease: this one, or one listed by the last read (or kept through a grace)
   * whose lease has not run out. Reclaim takes entries only from the group consumers of nodes that do not.
   */
  isLive(nodeId: string): boolean {
    if (nodeId === this.#node.nodeId) return true;
    const lease = this.#known.get(nodeId);
    return lease !== undefined && this.#leftMs(lease, performance.now()) > 0;
  }

  /**
   * Whether another node that holds a lease has an agent (or pool) that holds all of `requires`, as of the last
   * read.
   */
  canAnyServe(requires: readonly string[]): boolean {
    const now = performance.now();
    for (const lease of this.#known.values()) {
      if (
        lease.info.nodeId !== this.#node.nodeId &&
        this.#leftMs(lease, now) > 0 &&
        lease.info.serves.some((set) => requires.every((c) => set.includes(c)))
      )
        return true;
    }
    return false;
  }

  /** Ms left of `lease` at `now`: what it had at its read, less the time since then that was not a stall. */
  #leftMs(lease: Lease, now: number): number {
    let stalled = this.#stalledMs;
    // A stall under way (no answer from Redis for a while) counts already: this node is the one that cannot see.
    if (this.#lastContact !== undefined && now - this.#lastContact > this.#stallMs) stalled += now - this.#lastContact;
    return lease.leftMs - (now - lease.readAt - (stalled - lease.stalledAt));
  }
}
