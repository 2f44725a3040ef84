/**
 * The stream layer a RedisBridge's parts share: the consumer group, the body of a task stream entry (the signed
 * hand-offs of one origin), readers for the reply shapes of XREAD/XREADGROUP and XINFO (RESP2 or RESP3), and the
 * group and consumer commands that serving, reclaim and stop all use.
 */
import type { Redis } from 'ioredis';
import type { WireTask } from './bridge.js';
import type { MessageSigner } from './signing.js';

/** The consumer group of every task stream. */
export const GROUP = 'workers';
/** Tasks per stream entry at most. */
export const BATCH = 16;

/** Deletes a group consumer (KEYS[1] stream, ARGV group, consumer) unless entries are still pending under it. */
export const DEL_IDLE_CONSUMER =
  "if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end " +
  "return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])";

/** A stream entry's fields, flat: `[name, value, name, value, ...]`. */
export type Fields = string[];
export type StreamEntries = Array<[id: string, fields: Fields]>;
/** One entry delivered to this node: its stream, its id and its fields. */
export type Delivered = [stream: string, id: string, fields: Fields];

/** The body of one stream entry: hand-offs of one origin. */
export interface TaskBatch {
  readonly origin: string;
  readonly tasks: ReadonlyArray<{ readonly taskId: string; readonly task: WireTask }>;
}

/**
 * The streams of an XREAD/XREADGROUP reply: RESP2 gives `[[key, entries], ...]`, RESP3 (ioredis 6's default) a map,
 * which arrives flattened as `[key, entries, key, entries, ...]`. A host's own client may use either.
 */
export function streamsOf(reply: unknown): Array<[string, StreamEntries]> {
  if (reply !== null && typeof reply === 'object' && !Array.isArray(reply)) {
    // A client with `replyMapping: 'resp3'` maps the reply to an object of stream → entries.
    return Object.entries(reply as Record<string, StreamEntries>);
  }
  if (!Array.isArray(reply) || reply.length === 0) return [];
  if (typeof reply[0] === 'string') {
    const out: Array<[string, StreamEntries]> = [];
    for (let i = 0; i + 1 < reply.length; i += 2) out.push([reply[i] as string, reply[i + 1] as StreamEntries]);
    return out;
  }
  return reply as Array<[string, StreamEntries]>;
}

/** A map-shaped reply (XINFO): a flat `[name, value, ...]` array (RESP2), or an object (RESP3 mapped). */
export function fieldsOf(reply: unknown): Record<string, unknown> {
  if (Array.isArray(reply)) {
    const out: Record<string, unknown> = {};
    for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = reply[i + 1];
    return out;
  }
  return typeof reply === 'object' && reply !== null ? (reply as Record<string, unknown>) : {};
}

/** The value of the field `name` of a stream entry. */
export function field(fields: Fields, name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/** A stream entry's hand-offs, or `undefined` when it is unsigned, forged or malformed. */
export function openBatch(signer: MessageSigner, fields: Fields): TaskBatch | undefined {
  const batch = signer.open<TaskBatch>('tasks', field(fields, 'm'), field(fields, 's'));
  if (!batch || typeof batch.origin !== 'string' || !Array.isArray(batch.tasks) || batch.tasks.length === 0)
    return undefined;
  for (const t of batch.tasks as readonly unknown[]) {
    if (typeof t !== 'object' || t === null) return undefined;
    const { taskId, task } = t as { taskId?: unknown; task?: unknown };
    if (typeof taskId !== 'string' || typeof task !== 'object' || task === null) return undefined;
  }
  return batch;
}

/** How many times the entry `id` of `stream` was refused (a counter that expires with the `done` markers). */
export function refusalKey(stream: string, id: string): string {
  return `${stream}:refused:${id}`;
}

/** Makes the consumer group of a task stream (and the stream), unless it is there already. */
export async function ensureGroup(redis: Redis, stream: string): Promise<void> {
  try {
    await redis.call('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM');
  } catch (error) {
    if (!String(error).includes('BUSYGROUP')) throw error;
  }
}

/** Waits `ms` without keeping the process alive: a read loop's back-off after a failed read. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
