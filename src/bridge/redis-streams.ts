/**
 * The stream layer a RedisBridge's parts share: the consumer group, the body of a task stream entry (the signed
 * hand-offs of one origin), readers for the reply shapes of XREAD/XREADGROUP and XINFO (RESP2 or RESP3), and the
 * group and consumer commands that serving, reclaim and stop all use.
 */
import { constants } from 'node:buffer';
import type { Redis } from 'ioredis';
import type { WireTask } from './bridge.js';
import type { MessageSigner } from './signing.js';

/** The consumer group of every task stream. */
export const GROUP = 'workers';
/** Tasks per stream entry at most. */
export const BATCH = 16;
/**
 * Characters of JSON (UTF-16 units, what V8 bounds a string by) that the items of one message hold at most, unless a
 * single item is larger: it then goes alone. V8's longest string is about 512 Mi units on 64-bit (`MAX_STRING_LENGTH`),
 * so sixteen tasks each under a large `maxPayloadBytes` could not be joined into one; 32 Mi is a sixteenth of it, so
 * the joined message, its signature stamp and the copies the client makes stay far from that limit and from Redis's
 * 512 MB bulk limit, while the batches of ordinary tasks (kilobytes) are only ever cut by count.
 */
export const BATCH_CHARS = 32 * 1024 * 1024;
/** The longest item one message can carry: V8's longest string less room for the message around it. */
export const MAX_ITEM_CHARS = constants.MAX_STRING_LENGTH - 64 * 1024;

/**
 * The group consumer that holds entries no node runs: a node that holds one it does not run (it refused it, or an
 * earlier run of the node under the same id took it) hands it here, and any node may claim it (see reclaim in
 * redis-heartbeat.ts). No node may take this id.
 */
export const RELEASED = '~released';

/**
 * Keeps fresh the entries (ARGV[3..]) of a stream (KEYS[1]) still pending under this node's consumer (ARGV[2]) in the
 * group (ARGV[1]): resets their idle time (XCLAIM JUSTID: the delivery count stays). Returns `[taken, gone]`: the
 * entries pending under another consumer (another node took them over), and those no longer pending at all (acked or
 * dead-lettered by a node that took them over, acked here, or lost with a Redis restart).
 */
export const KEEP_FRESH =
  'local mine, taken, gone = {}, {}, {} ' +
  'for i = 3, #ARGV do ' +
  "local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1) " +
  'if #p == 0 then gone[#gone + 1] = ARGV[i] ' +
  'elseif p[1][2] == ARGV[2] then mine[#mine + 1] = ARGV[i] ' +
  'else taken[#taken + 1] = ARGV[i] end ' +
  'end ' +
  "if #mine > 0 then mine[#mine + 1] = 'JUSTID' redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine)) end " +
  'return {taken, gone}';

/**
 * Adds the task entries of one stream once (KEYS[1] the stream, KEYS[2] the mark of this call; ARGV the sealed
 * messages as pairs of message and signature, then the mark's TTL in ms): a second call with the same mark adds
 * nothing and returns false, a first one returns the ids of the entries it added. One call carries every entry a
 * flush adds to its stream, so that the script's own cost in Redis (several times an XADD's) is paid per stream and
 * flush, not per entry. The mark lives twice `maxMessageAgeMs`; an entry Redis takes later than `maxMessageAgeMs` after
 * it was sealed is refused by the nodes anyway (see `openBatch`). At maxmemory Redis refuses only a script's first
 * write (the mark): once that went in, the entries do too.
 */
export const ADD_ONCE =
  "if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[#ARGV]) then return false end " +
  'local ids = {} ' +
  "for i = 1, #ARGV - 1, 2 do ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'm', ARGV[i], 's', ARGV[i + 1]) end " +
  'return ids';

/** Deletes a group consumer (KEYS[1] stream, ARGV group, consumer) unless entries are still pending under it. */
export const DEL_IDLE_CONSUMER =
  "if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end " +
  "return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])";

/** An item serialised on its own for a message, or why it cannot go in one. */
export type ItemJson = { readonly json: string } | { readonly error: string };

/**
 * Serialises one item of a message (a task or a result) on its own, so that a batch is measured once and joined as
 * strings, never stringified whole. Never throws: an item that does not serialise, or alone is longer than one
 * message holds, comes back as an `error` for its own hand-off or result.
 */
export function itemJson(item: unknown): ItemJson {
  let json: string | undefined;
  try {
    json = JSON.stringify(item);
  } catch (error) {
    let why = 'serialising it threw';
    try {
      why = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    } catch {
      // an error that cannot even be described: keep the generic reason
    }
    return { error: `it cannot be serialised as JSON (${why})` };
  }
  if (json === undefined) return { error: 'it serialises to nothing' };
  if (json.length > MAX_ITEM_CHARS) {
    return { error: `it is ${json.length} characters as JSON, more than one message holds (${MAX_ITEM_CHARS})` };
  }
  return { json };
}

/**
 * Cuts serialised items, in order, into the batches of one message each: at most `maxItems` items and BATCH_CHARS
 * characters, except that an item longer than that goes alone.
 */
export function cutBatches<T extends { readonly json: string }>(items: readonly T[], maxItems = BATCH): T[][] {
  const batches: T[][] = [];
  let batch: T[] = [];
  let chars = 0;
  for (const item of items) {
    if (batch.length > 0 && (batch.length >= maxItems || chars + item.json.length > BATCH_CHARS)) {
      batches.push(batch);
      batch = [];
      chars = 0;
    }
    batch.push(item);
    chars += item.json.length + 1;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/** A stream entry's fields, flat: `[name, value, name, value, ...]`. */
export type Fields = string[];
export type StreamEntries = Array<[id: string, fields: Fields]>;
/** One entry delivered to this node: its stream, its id and its fields. */
export type Delivered = [stream: string, id: string, fields: Fields, deliveries?: number];

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

/** The timings a task entry is checked against: see {@link openBatch}. */
export interface DeliveryLimits {
  /** Ms by which an entry's id time and its message's `ts` may differ. */
  readonly maxMessageAgeMs: number;
  /** Ms a task's `done` marker lives: an entry sealed longer ago is refused. */
  readonly doneTtlMs: number;
}

/** Why a genuine task entry is refused without running: a copy written back, or a delivery too late to trust. */
export interface Refusal {
  /** The time Redis added the entry (from its id) less the time its message was sealed, in ms. */
  readonly lateMs: number;
  /** Ms since its message was sealed. */
  readonly ageMs: number;
  /** What went wrong and what to fix, for the failure its tasks report to their origin. */
  readonly why: string;
}

/** A task entry whose signature checks: its hand-offs, and whether it is refused (see {@link openBatch}). */
export interface OpenedEntry {
  readonly batch: TaskBatch;
  readonly refusal: Refusal | undefined;
}

/** The time (ms) in a stream entry id `<ms>-<seq>`, or `undefined` when it is not one. */
export function idTime(id: string): number | undefined {
  const ms = Number(id.slice(0, id.indexOf('-')));
  return id.includes('-') && Number.isSafeInteger(ms) && ms >= 0 ? ms : undefined;
}

/**
 * Opens the task entry `id`: `undefined` when it is unsigned, forged or malformed. A genuine one is also bound to its
 * delivery, so that an old entry written back into a stream (by anyone with write access to Redis, without the
 * secret) never runs: it comes with a `refusal` when the time Redis added it (its id) and the time its message was
 * sealed (`ts`) differ by more than `maxMessageAgeMs` (a copy written back later, or clocks that disagree by more than
 * that), or when it was sealed more than `doneTtlMs` ago (its tasks' `done` markers may be gone: even a genuine entry
 * that old could run a second time). Entries are sealed when sent, and again when sent again after a Redis restart.
 */
export function openBatch(
  signer: MessageSigner,
  fields: Fields,
  id: string,
  limits: DeliveryLimits,
  now = Date.now(),
): OpenedEntry | undefined {
  const batch = signer.open<TaskBatch>('tasks', field(fields, 'm'), field(fields, 's'));
  if (!batch || typeof batch.origin !== 'string' || !Array.isArray(batch.tasks) || batch.tasks.length === 0)
    return undefined;
  for (const t of batch.tasks as readonly unknown[]) {
    if (typeof t !== 'object' || t === null) return undefined;
    const { taskId, task } = t as { taskId?: unknown; task?: unknown };
    if (typeof taskId !== 'string' || typeof task !== 'object' || task === null) return undefined;
  }
  const added = idTime(id);
  const lateMs = added === undefined ? Infinity : added - batch.ts;
  const ageMs = now - batch.ts;
  let why: string | undefined;
  if (!(Math.abs(lateMs) <= limits.maxMessageAgeMs)) {
    why =
      `its entry ${id} was added to Redis ${lateMs} ms after its message was sealed, beyond maxMessageAgeMs ` +
      `(${limits.maxMessageAgeMs}): a copy written back into the stream, or clocks of nodes and Redis that disagree by ` +
      'more than maxMessageAgeMs (synchronise them, or raise it)';
  } else if (ageMs > limits.doneTtlMs) {
    why =
      `it was handed off ${ageMs} ms ago, longer than doneTtlMs (${limits.doneTtlMs}) keeps a task from running twice: ` +
      'raise doneTtlMs above the longest time a task can wait in its stream (about maxDeliveries × reclaimIdleMs, plus ' +
      'its run time)';
  }
  return { batch, refusal: why === undefined ? undefined : { lateMs, ageMs, why } };
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

/** What a pipeline's `exec()` resolves with: per command, in order, `[error, reply]` (ioredis). */
export type Replies = ReadonlyArray<[Error | null, unknown]> | null;

/** A command for {@link send}: its name and arguments. */
export type Command = readonly [name: string, ...args: string[]];

/**
 * Sends `commands` in one write and resolves with each one's `[error, reply]`, as a pipeline's `exec()` does: in a
 * pipeline, or alone when there is one command (an ioredis pipeline costs its client about 10 µs of CPU more than the
 * command alone, which a short round trip pays up to three times). A single command never rejects (a failure, the
 * connection's included, comes back as its error); a pipeline rejects as `exec()` does.
 */
export function send(redis: Redis, commands: readonly Command[]): Promise<Replies> {
  if (commands.length === 1) {
    const [name, ...args] = commands[0]!;
    return redis.call(name, ...args).then(
      (reply): Replies => [[null, reply]],
      (error: unknown): Replies => [[error instanceof Error ? error : new Error(String(error)), null]],
    );
  }
  const pipeline = redis.pipeline();
  for (const [name, ...args] of commands) pipeline.call(name, ...args);
  return pipeline.exec();
}

/**
 * The error of the command at `index` of a pipeline's replies, or `undefined` when it succeeded. A reply that is
 * missing counts as an error: a pipeline's replies are never taken on trust.
 */
export function replyError(replies: Replies, index: number): Error | undefined {
  const reply = replies?.[index];
  if (!reply) return new Error(`no reply to command ${index} of the pipeline`);
  return reply[0] ?? undefined;
}

/** The text of a Redis error reply (`OOM command not allowed ...`, `WRONGTYPE ...`), or of any other error. */
export function replyText(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * Resolves in the event loop's next turn, after every immediate queued before this turn's immediates run (those
 * queued after the call included): a read loop that waits for it before its next read lets what the last read set off
 * (a flush of results, a caller's next hand-off) send its writes first.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

/** Waits `ms` without keeping the process alive: a read loop's back-off after a failed read. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
