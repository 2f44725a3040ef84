/**
 * The parts of the Redis layout that both a RedisBridge and the operator CLI read and write: the node registry and
 * the control channel with its standing state, and the check of a message heard on that channel. Every message is
 * signed (see signing.ts).
 *
 * Keys, under the namespace (encoded as redis-keys.ts says): `nodes` (set of ids) and `node:<id>` (a sealed NodeInfo with a TTL); `control`
 * (pub/sub channel); `control:standing` (hash: slot → the latest sealed message that set it, see `stickySlots`);
 * `control:version` (counter, raised with every write to the standing hash, so that a node re-reads the hash only
 * when it changed).
 *
 * The standing hash is not trusted to be the latest: anyone who can write to Redis can put an older (validly signed)
 * message back. So each entry is ordered by what it was sealed with (`standingAfter`), every live node vouches for
 * the entries it applied in its registry entry, and a reader takes per slot the newest among the hash and those.
 */
import type { Redis } from 'ioredis';
import {
  replayOrder,
  standingAfter,
  stickySlots,
  type ControlMessage,
  type NodeInfo,
  type StandingEntry,
} from './bridge.js';
import { keyOf } from './redis-keys.js';
import { MessageSigner } from './signing.js';

export const controlChannel = (ns: string): string => keyOf(ns, 'control');
export const standingKey = (ns: string): string => keyOf(ns, 'control', 'standing');
/** The counter raised with every write to the standing hash (a node compares it on each heartbeat). */
export const versionKey = (ns: string): string => keyOf(ns, 'control', 'version');
const nodesKey = (ns: string): string => keyOf(ns, 'nodes');
export const nodeKey = (ns: string, id: string): string => keyOf(ns, 'node', id);

const CONTROL_KINDS: ReadonlySet<unknown> = new Set(['halt', 'resume', 'drain', 'traffic', 'rollback', 'config']);
/** Standing entries read from one registry entry at most (one per slot). */
const MAX_VOUCHED = 3;

/** A standing-state slot: `halt` (halt or resume), `percent` and `shadow` (the parts of the traffic setting). */
export type StandingSlot = ReturnType<typeof stickySlots>[number];

/** A signed control message as read (from the channel, the standing hash or a node's registry entry). */
export interface SealedControl extends StandingEntry {
  /** The message's id, as sealed (its sender and place in the sender's sequence). */
  readonly id: string;
  /** The sealed text, as published and kept in the standing hash: what a node writes back to heal it. */
  readonly raw: string;
}

/**
 * Sends a control message to every node, keeping it as standing state where it sets one. A message that sets a slot
 * is stamped after the standing entry it replaces (even one sealed by a clock running ahead of this one), so that
 * every node orders it after that entry.
 */
export async function publishControl(
  redis: Redis,
  signer: MessageSigner,
  ns: string,
  message: ControlMessage,
): Promise<void> {
  const slots = stickySlots(message);
  let notBefore = 0;
  if (slots.length > 0) {
    for (const raw of await redis.hmget(standingKey(ns), ...slots)) {
      const current = raw === null ? undefined : openStandingText(signer, raw);
      if (current) notBefore = Math.max(notBefore, current.ts + 1);
    }
  }
  const raw = JSON.stringify(signer.seal('control', message, notBefore));
  const pipeline = redis.pipeline();
  // The hash before the version: a node that reads the new version (then the hash) cannot miss the new entry.
  for (const slot of slots) pipeline.hset(standingKey(ns), slot, raw);
  if (slots.length > 0) pipeline.incr(versionKey(ns));
  pipeline.publish(controlChannel(ns), raw);
  await execChecked(pipeline);
}

/**
 * Writes standing entries back into the hash (and raises the version): what a node does when it finds the hash
 * behind what it applied (an older entry written back, or Redis lost the hash).
 */
export async function writeStanding(
  redis: Redis,
  ns: string,
  entries: ReadonlyArray<readonly [StandingSlot, string]>,
): Promise<void> {
  if (entries.length === 0) return;
  const pipeline = redis.pipeline();
  for (const [slot, raw] of entries) pipeline.hset(standingKey(ns), slot, raw);
  pipeline.incr(versionKey(ns));
  await execChecked(pipeline);
}

/** Runs a pipeline; rejects with the first command's error (a pipeline resolves even when its commands fail). */
async function execChecked(pipeline: ReturnType<Redis['pipeline']>): Promise<void> {
  const results = await pipeline.exec();
  const failed = results?.find(([error]) => error)?.[0];
  if (failed) throw failed;
}

/**
 * A message heard on the control channel, to apply; `undefined` (to count as rejected) unless it is a signed object of
 * a known kind, fresh and not seen before. Anyone who can PUBLISH reaches this.
 */
export function openControl(signer: MessageSigner, raw: string): SealedControl | undefined {
  return openText(signer, raw, true);
}

function openText(signer: MessageSigner, raw: string, fresh: boolean): SealedControl | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const envelope = typeof parsed === 'object' && parsed !== null ? (parsed as { m?: unknown; s?: unknown }) : {};
  const opened = signer.open<ControlMessage>('control', envelope.m, envelope.s, fresh);
  if (!opened || !CONTROL_KINDS.has(opened.kind)) return undefined;
  const message: ControlMessage = {
    kind: opened.kind,
    ...(opened.reason !== undefined ? { reason: opened.reason } : {}),
    ...(opened.value !== undefined ? { value: opened.value } : {}),
    ...(opened.from !== undefined ? { from: opened.from } : {}),
    ...(typeof opened.actor === 'string' ? { actor: opened.actor } : {}),
  };
  return { message, ts: opened.ts, id: opened.id, raw, ...MessageSigner.origin(opened.id) };
}

/** A standing entry (from the hash or a registry entry): signed, of a known kind, setting a slot; of any age. */
function openStandingText(signer: MessageSigner, raw: string): SealedControl | undefined {
  const entry = openText(signer, raw, false);
  return entry && Number.isFinite(entry.ts) && stickySlots(entry.message).length > 0 ? entry : undefined;
}

/** The cluster's standing control state, as {@link readStanding} reads it. */
export interface Standing {
  /** The standing messages to apply, oldest first (each once, marked `replayed`). */
  readonly messages: ControlMessage[];
  /** The newest entry per slot, among the hash and what live nodes vouch for. */
  readonly slots: ReadonlyMap<StandingSlot, SealedControl>;
  /** Slots for which the hash holds an older entry than the newest known, or none: to write back. */
  readonly behind: StandingSlot[];
  /** Entries whose signature did not check out, or that sat under a slot they do not set. */
  readonly rejected: number;
}

/**
 * The cluster's standing control messages (halt or resume, traffic): per slot the newest among the hash and `vouched`
 * (the entries live nodes applied, from {@link readNodes}), so that an older entry written back into the hash does not
 * win. Unsigned or forged entries, and ones under a slot they do not set, are left out and counted.
 */
export async function readStanding(
  redis: Redis,
  signer: MessageSigner,
  ns: string,
  vouched: readonly string[] = [],
): Promise<Standing> {
  return pickStanding(signer, await redis.hgetall(standingKey(ns)), vouched);
}

/** {@link readStanding} on a hash already read (`hash`: slot → sealed text). */
export function pickStanding(
  signer: MessageSigner,
  hash: Readonly<Record<string, string>>,
  vouched: readonly string[],
): Standing {
  const slots = new Map<StandingSlot, SealedControl>();
  let rejected = 0;
  for (const [slot, raw] of Object.entries(hash)) {
    const entry = openStandingText(signer, raw);
    // A sealed message moved under another slot (a halt as the traffic percent, say) is tampering.
    if (entry && (stickySlots(entry.message) as string[]).includes(slot)) slots.set(slot as StandingSlot, entry);
    else rejected++;
  }
  const inHash = new Map(slots);
  for (const raw of vouched) {
    const entry = openStandingText(signer, raw);
    if (!entry) {
      rejected++;
      continue;
    }
    for (const slot of stickySlots(entry.message)) {
      const current = slots.get(slot);
      if (!current || standingAfter(entry, current)) slots.set(slot, entry);
    }
  }
  const behind = [...slots].filter(([slot, entry]) => inHash.get(slot)?.id !== entry.id).map(([slot]) => slot);
  return { messages: replayOrder(slots.values()), slots, behind, rejected };
}

/**
 * The live nodes of the registry; entries that expired are taken out of the `nodes` set. `rejected` counts entries
 * whose signature did not check out.
 */
export async function readNodes(
  redis: Redis,
  signer: MessageSigner,
  ns: string,
): Promise<{ nodes: NodeInfo[]; rejected: number; standing: string[] }> {
  const ids = await redis.smembers(nodesKey(ns));
  if (ids.length === 0) return { nodes: [], rejected: 0, standing: [] };
  const raw = await redis.mget(...ids.map((id) => nodeKey(ns, id)));
  const nodes: NodeInfo[] = [];
  const gone: string[] = [];
  const standing = new Set<string>();
  let rejected = 0;
  raw.forEach((value, i) => {
    if (value === null) {
      gone.push(ids[i]!);
      return;
    }
    const info = openSealed<NodeInfo & { standing?: unknown }>(signer, 'node', value);
    if (!info || !wellFormed(info)) {
      rejected++;
      return;
    }
    // The standing entries the node applied (at most one per slot), checked by whoever reads them.
    if (isStrings(info.standing)) for (const raw of info.standing.slice(0, MAX_VOUCHED)) standing.add(raw);
    nodes.push({
      nodeId: info.nodeId,
      roles: info.roles,
      capabilities: info.capabilities,
      serves: Array.isArray(info.serves) ? info.serves : [],
      freeSlots: info.freeSlots,
      slots: typeof info.slots === 'number' ? info.slots : info.freeSlots,
      heartbeatAt: info.heartbeatAt,
      ...(typeof info.status === 'object' && info.status !== null ? { status: info.status } : {}),
    });
  });
  if (gone.length > 0) await redis.srem(nodesKey(ns), ...gone);
  return { nodes, rejected, standing: [...standing] };
}

/**
 * Writes a node's registry entry (expiring after `ttlMs` unless refreshed), with the sealed standing entries it
 * applied (`standing`, one per slot at most) for nodes that start later to check the standing hash against. Returns
 * the pipeline for more commands.
 */
export function writeNode(
  redis: Redis,
  signer: MessageSigner,
  ns: string,
  info: NodeInfo,
  ttlMs: number,
  standing: readonly string[] = [],
): ReturnType<Redis['pipeline']> {
  const pipeline = redis.pipeline();
  const body = standing.length > 0 ? { ...info, standing } : info;
  pipeline.set(nodeKey(ns, info.nodeId), JSON.stringify(signer.seal('node', body)), 'PX', ttlMs);
  pipeline.sadd(nodesKey(ns), info.nodeId);
  return pipeline;
}

/** Adds to `pipeline` the commands that take a node out of the registry. */
export function removeNode(pipeline: ReturnType<Redis['pipeline']>, ns: string, id: string): void {
  pipeline.del(nodeKey(ns, id));
  pipeline.srem(nodesKey(ns), id);
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** A registry entry a node could act on: routing reads `serves`, flow control the slot counts. */
function wellFormed(info: NodeInfo): boolean {
  return (
    typeof info.nodeId === 'string' &&
    isStrings(info.roles) &&
    isStrings(info.capabilities) &&
    (info.serves === undefined || (Array.isArray(info.serves) && info.serves.every(isStrings))) &&
    Number.isFinite(info.freeSlots) &&
    Number.isFinite(info.heartbeatAt) &&
    (info.slots === undefined || Number.isFinite(info.slots)) &&
    (info.status === undefined || (typeof info.status === 'object' && info.status !== null))
  );
}

function openSealed<T>(signer: MessageSigner, kind: string, raw: string): (T & { id: string; ts: number }) | undefined {
  try {
    const { m, s } = JSON.parse(raw) as { m: unknown; s: unknown };
    return signer.open<T>(kind, m, s);
  } catch {
    return undefined;
  }
}
