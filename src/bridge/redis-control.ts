/**
 * The parts of the Redis layout that both a RedisBridge and the operator CLI read and write: the node registry and
 * the control channel with its standing state, and the check of a message heard on that channel. Every message is
 * signed (see signing.ts).
 *
 * Keys, under the namespace (encoded as redis-keys.ts says): `nodes` (set of ids) and `node:<id>` (a sealed NodeInfo with a TTL); `control`
 * (pub/sub channel); `control:standing` (hash: slot → the latest sealed message that set it, see `stickySlots`).
 */
import type { Redis } from 'ioredis';
import { replayOrder, stickySlots, type ControlMessage, type NodeInfo, type StandingEntry } from './bridge.js';
import { keyOf } from './redis-keys.js';
import { MessageSigner } from './signing.js';

export const controlChannel = (ns: string): string => keyOf(ns, 'control');
const standingKey = (ns: string): string => keyOf(ns, 'control', 'standing');
const nodesKey = (ns: string): string => keyOf(ns, 'nodes');
export const nodeKey = (ns: string, id: string): string => keyOf(ns, 'node', id);

const CONTROL_KINDS: ReadonlySet<unknown> = new Set(['halt', 'resume', 'drain', 'traffic', 'rollback', 'config']);

/** Sends a control message to every node, keeping it as standing state where it sets one. */
export async function publishControl(
  redis: Redis,
  signer: MessageSigner,
  ns: string,
  message: ControlMessage,
): Promise<void> {
  const raw = JSON.stringify(signer.seal('control', message));
  const pipeline = redis.pipeline();
  for (const slot of stickySlots(message)) pipeline.hset(standingKey(ns), slot, raw);
  pipeline.publish(controlChannel(ns), raw);
  const results = await pipeline.exec();
  const failed = results?.find(([error]) => error)?.[0];
  if (failed) throw failed;
}

/**
 * A message heard on the control channel, to apply; `undefined` (to count as rejected) unless it is a signed object of
 * a known kind, fresh and not seen before. Anyone who can PUBLISH reaches this.
 */
export function openControl(signer: MessageSigner, raw: string): ControlMessage | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const envelope = typeof parsed === 'object' && parsed !== null ? (parsed as { m?: unknown; s?: unknown }) : {};
  const message = signer.open<ControlMessage>('control', envelope.m, envelope.s, true);
  if (!message || !CONTROL_KINDS.has(message.kind)) return undefined;
  return {
    kind: message.kind,
    reason: message.reason,
    value: message.value,
    from: message.from,
    ...(typeof message.actor === 'string' ? { actor: message.actor } : {}),
  };
}

/** The cluster's standing control messages (halt or resume, traffic), oldest first; unsigned or forged ones are left out. */
export async function readStanding(
  redis: Redis,
  signer: MessageSigner,
  ns: string,
): Promise<{ messages: ControlMessage[]; rejected: number }> {
  const raw = await redis.hgetall(standingKey(ns));
  const entries: StandingEntry[] = [];
  let rejected = 0;
  for (const value of Object.values(raw)) {
    const opened = openSealed<ControlMessage>(signer, 'control', value);
    if (opened && typeof opened.kind === 'string') {
      const message: ControlMessage = {
        kind: opened.kind,
        ...(opened.reason !== undefined ? { reason: opened.reason } : {}),
        ...(opened.value !== undefined ? { value: opened.value } : {}),
        ...(opened.from !== undefined ? { from: opened.from } : {}),
        ...(typeof opened.actor === 'string' ? { actor: opened.actor } : {}),
      };
      entries.push({ message, ts: opened.ts, ...MessageSigner.origin(opened.id) });
    } else rejected++;
  }
  return { messages: replayOrder(entries), rejected };
}

/**
 * The live nodes of the registry; entries that expired are taken out of the `nodes` set. `rejected` counts entries
 * whose signature did not check out.
 */
export async function readNodes(
  redis: Redis,
  signer: MessageSigner,
  ns: string,
): Promise<{ nodes: NodeInfo[]; rejected: number }> {
  const ids = await redis.smembers(nodesKey(ns));
  if (ids.length === 0) return { nodes: [], rejected: 0 };
  const raw = await redis.mget(...ids.map((id) => nodeKey(ns, id)));
  const nodes: NodeInfo[] = [];
  const gone: string[] = [];
  let rejected = 0;
  raw.forEach((value, i) => {
    if (value === null) {
      gone.push(ids[i]!);
      return;
    }
    const info = openSealed<NodeInfo>(signer, 'node', value);
    if (!info || !wellFormed(info)) {
      rejected++;
      return;
    }
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
  return { nodes, rejected };
}

/** Writes a node's registry entry (expiring after `ttlMs` unless refreshed). Returns the pipeline for more commands. */
export function writeNode(
  redis: Redis,
  signer: MessageSigner,
  ns: string,
  info: NodeInfo,
  ttlMs: number,
): ReturnType<Redis['pipeline']> {
  const pipeline = redis.pipeline();
  pipeline.set(nodeKey(ns, info.nodeId), JSON.stringify(signer.seal('node', info)), 'PX', ttlMs);
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
