/**
 * A node's hold on the cluster's standing control state (halt or resume, the traffic setting): which standing entry
 * it applied per slot, and reconciling with Redis so that no halt, resume, traffic change or rollback is missed.
 *
 * A message can be missed: the subscriber connection drops and Redis does not keep pub/sub messages for it. So the
 * node reconciles with the standing hash (see redis-control.ts) when it starts, when its subscriber connection is
 * back, and whenever the heartbeat reads a `control:version` other than the one it last read; a missed message
 * applies within one heartbeat.
 *
 * Applying is idempotent per slot: an entry is passed to the host only when it comes after the one applied for its
 * slot (`standingAfter`), whether heard on the channel or read back, so a message heard and read back is applied
 * once, and an older entry written back into the hash is refused. The node vouches for what it applied in its registry
 * entry (nodes that start later take per slot the newest among the hash and those), and writes back what it applied
 * when it finds the hash behind it (self-healing).
 */
import { standingAfter, stickySlots, type ControlMessage } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import {
  pickStanding,
  readNodes,
  standingKey,
  versionKey,
  writeStanding,
  type SealedControl,
  type StandingSlot,
} from './redis-control.js';
import type { RedisNode } from './redis-node.js';

/** The standing entries one node applied, and its reconciling with the cluster's standing state. */
export class RedisStanding {
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  /** Called after a reconcile applied something: publishes this node's registry entry (what it applied) at once. */
  readonly #announce: () => void;
  /** The entry applied per slot. */
  readonly #applied = new Map<StandingSlot, SealedControl>();
  /** `control:version` as of the last reconcile (`undefined`: none yet, so the next check reads the hash). */
  #version: string | null | undefined;
  /** The reconcile under way, and whether another was asked for meanwhile (it then reads again once done). */
  #reading: Promise<void> | undefined;
  #again = false;

  constructor(node: RedisNode, connections: RedisConnections, announce: () => void) {
    this.#node = node;
    this.#connections = connections;
    this.#announce = announce;
  }

  /** The key the heartbeat reads (GET) to tell whether the standing state changed. */
  get versionKey(): string {
    return versionKey(this.#node.ns);
  }

  /** The sealed entries this node applied, one per slot at most (a message setting two slots once): its vouching. */
  get vouched(): string[] {
    return [...new Set([...this.#applied.values()].map((e) => e.raw))];
  }

  /** Forgets what was applied (a new start: the host may be a new one, to which the standing state is replayed). */
  reset(): void {
    this.#applied.clear();
    this.#version = undefined;
  }

  /**
   * A message heard on the channel: passes it to the host unless it sets only slots for which the host already
   * applied that entry or a later one. Messages that set no slot (drain, config) always pass.
   */
  heard(entry: SealedControl): boolean {
    return this.#apply(entry, false);
  }

  /** The heartbeat read `version` (GET `control:version`): reconciles when it is not the one last read. */
  async check(version: string | null): Promise<void> {
    if (version !== this.#version) await this.reconcile();
  }

  /**
   * Reads the standing hash and the entries live nodes vouch for, applies per slot the newest when it comes after what
   * was applied here (oldest first, marked `replayed`), and writes back into the hash the slots it is behind on.
   * One at a time: a call during one under way reads again after it.
   */
  reconcile(): Promise<void> {
    if (this.#reading) {
      this.#again = true;
      return this.#reading;
    }
    const reading = (async () => {
      do {
        this.#again = false;
        await this.#read();
      } while (this.#again && this.#node.running);
    })();
    this.#reading = reading.finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  async #read(): Promise<void> {
    const { signer, ns } = this.#node;
    const redis = this.#connections.redis;
    // The version first: a write landing between the two reads raises it again, and the next check reads again.
    const results = await redis.pipeline().get(versionKey(ns)).hgetall(standingKey(ns)).exec();
    const failed = results?.find(([error]) => error)?.[0];
    if (failed || !results) throw failed ?? new Error('The standing state could not be read');
    const version = results[0]![1] as string | null;
    const hash = results[1]![1] as Record<string, string>;
    const peers = await readNodes(redis, signer, ns);
    const standing = pickStanding(signer, hash, [...peers.standing, ...this.vouched]);
    this.#node.counts.rejected += standing.rejected;
    if (!this.#node.running) return;
    // One delivery per message, oldest first (a message may hold two slots).
    const entries = [...new Map([...standing.slots.values()].map((e) => [e.id, e])).values()].sort((a, b) =>
      standingAfter(a, b) ? 1 : standingAfter(b, a) ? -1 : 0,
    );
    let applied = false;
    for (const entry of entries) applied = this.#apply(entry, true) || applied;
    if (standing.behind.length > 0) {
      await writeStanding(
        redis,
        ns,
        standing.behind.map((slot) => [slot, standing.slots.get(slot)!.raw] as const),
      );
    } else {
      this.#version = version;
    }
    // Operators (the CLI) read what each node applied from its registry entry: publish it now, not at the next beat.
    if (applied) this.#announce();
  }

  /** Passes `entry` to the host for the slots it comes after the applied entry in; whether it passed it. */
  #apply(entry: SealedControl, replayed: boolean): boolean {
    const host = this.#node.host;
    if (!host) return false;
    const slots = stickySlots(entry.message);
    const newer = slots.filter((slot) => {
      const current = this.#applied.get(slot);
      return !current || standingAfter(entry, current);
    });
    if (slots.length > 0 && newer.length === 0) return false; // applied already, or older than what was
    for (const slot of newer) this.#applied.set(slot, entry);
    const message = newer.length === slots.length ? entry.message : narrow(entry.message, newer);
    host.control(replayed ? { ...message, replayed: true } : message);
    return true;
  }
}

/**
 * The part of a traffic or rollback message that sets only `slots` (the other slot has a later entry applied
 * already): a traffic message with only those fields, so that the later setting is not undone.
 */
function narrow(message: ControlMessage, slots: readonly StandingSlot[]): ControlMessage {
  const rollback = message.kind === 'rollback';
  const v = (typeof message.value === 'object' && message.value !== null ? message.value : {}) as {
    percent?: unknown;
    shadow?: unknown;
  };
  const value = {
    ...(slots.includes('percent') ? { percent: rollback ? 0 : v.percent } : {}),
    ...(slots.includes('shadow') ? { shadow: rollback ? false : v.shadow } : {}),
  };
  const { reason, from, actor } = message;
  return {
    kind: 'traffic',
    value,
    ...(reason !== undefined ? { reason } : {}),
    ...(from !== undefined ? { from } : {}),
    ...(actor !== undefined ? { actor } : {}),
  };
}
