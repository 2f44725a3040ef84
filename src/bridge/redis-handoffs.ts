/**
 * This node's hand-offs to the cluster. The hand-offs of one turn of the event loop go out in one pipeline: into the
 * stream of their requirement class, entries of up to BATCH tasks and BATCH_CHARS of JSON, each one signed message (a
 * task that cannot be sent fails alone); a class no node consumes yet is announced first, in a pipeline of its own.
 * Every reply is checked: a hand-off whose class or entry Redis refused to write (OOM at maxmemory, a key of the wrong
 * type) rejects with BridgeWriteError, and the node is degraded while writes fail. Each waits for its result
 * (read by readResults in redis-results.ts) and is kept until then, to be sent again should Redis lose it (a restart
 * without persistence).
 */
import { BridgeWriteError, OrchestratorStoppedError, ValidationError } from '../errors.js';
import { RemoteTaskError, type HandOffNotice, type HandOffResult, type WireTask } from './bridge.js';
import type { RedisConnections } from './redis-connections.js';
import { classKey } from './redis-keys.js';
import type { RedisNode } from './redis-node.js';
import {
  ADD_ONCE,
  BATCH_CHARS,
  cutBatches,
  itemJson,
  replyError,
  replyText,
  send,
  type Command,
  type Replies,
} from './redis-streams.js';

/** A hand-off on its way out (kept until its result arrives, to resend it if Redis lost it). */
interface Outgoing {
  readonly taskId: string;
  /** Its requirement class. */
  readonly key: string;
  readonly stream: string;
  readonly task: WireTask;
}

/** A hand-off waiting for its result. */
interface Waiting extends Outgoing {
  /**
   * The commands connection's epoch when Redis took its XADD (see RedisConnections.epoch); `undefined` until then. A
   * Redis restart loses only what a server took before it.
   */
  stored: number | undefined;
  /** The submitter's listener for notices about it. */
  readonly onNotice: ((notice: HandOffNotice) => void) | undefined;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** The hand-offs of one node: sent in batches, settled by their results. */
export class RedisHandOffs {
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  /** Hand-offs waiting for their result, with their sealed message (resent after Redis lost it). */
  readonly #waiting = new Map<string, Waiting>();
  /** Hand-offs of this turn of the event loop, sent in one pipeline. */
  readonly #sendBox: Outgoing[] = [];
  /** Classes this node has announced (the `classes` set and channel). */
  readonly #knownClasses = new Set<string>();

  constructor(node: RedisNode, connections: RedisConnections) {
    this.#node = node;
    this.#connections = connections;
  }

  /**
   * Queues a hand-off for this turn's pipeline; resolves or rejects with its result. `key` and `stream`, its class and
   * task stream, when the caller has them already.
   */
  handOff(
    taskId: string,
    task: WireTask,
    key = classKey(task.requires),
    stream = this.#node.key('tasks', key),
    onNotice?: (notice: HandOffNotice) => void,
  ): Promise<unknown> {
    const outgoing: Outgoing = { taskId, key, stream, task };
    this.#node.counts.handedOff++;
    return new Promise<unknown>((resolve, reject) => {
      // `stored` from the start: one shape for every waiting hand-off (added later, it costs a map per object).
      this.#waiting.set(taskId, { ...outgoing, resolve, reject, stored: undefined, onNotice });
      this.#sendBox.push(outgoing);
      // #send settles every hand-off it takes, failures included: nothing is left to await here.
      if (this.#sendBox.length === 1) setImmediate(() => void this.#send(this.#sendBox.splice(0)));
    });
  }

  /** Stops waiting for a hand-off: it is neither settled nor sent again. */
  forget(taskId: string): void {
    this.#waiting.delete(taskId);
  }

  /** Passes a notice to the submitter of the hand-off it is about, while it waits for the result. */
  notice(notice: HandOffNotice): void {
    this.#waiting.get(notice.taskId)?.onNotice?.(notice);
  }

  /** Settles the hand-off a result is for; a duplicate (the first one settled it) is dropped. */
  settle(result: HandOffResult): void {
    const waiting = this.#waiting.get(result.taskId);
    if (!waiting) return;
    this.#waiting.delete(result.taskId);
    if (result.ok === true) waiting.resolve(result.value);
    else waiting.reject(new RemoteTaskError(remoteError(result.error), String(result.node)));
  }

  /** Rejects every hand-off still waiting with OrchestratorStoppedError (the bridge stops). */
  rejectWaiting(): void {
    for (const [taskId, waiting] of this.#waiting) {
      waiting.reject(
        new OrchestratorStoppedError(`The orchestrator stopped before the handed-off task ${taskId} reported back`),
      );
    }
    this.#waiting.clear();
  }

  /**
   * After a Redis restart (a new run id: it may have lost its data, without persistence), announces the classes again
   * as they are used and publishes the hand-offs still waiting again. Not after a mere reconnect: Redis lost nothing
   * then, and sending again would run the tasks still running elsewhere a second time. Only the hand-offs the server
   * took before the restart are sent again (see `stored`). A hand-off whose entry survived the restart (persistence)
   * is then in the stream twice; the `done` marker keeps the second from running once the first reported.
   */
  async resend(): Promise<void> {
    this.#knownClasses.clear();
    // Only what the server took before the connection was last ready again: the rest reached Redis as it is now (a
    // hand-off taken after the restart), or has not reached it yet (ioredis sends it there itself).
    const epoch = this.#connections.epoch;
    const lost = [...this.#waiting.values()].filter((w) => w.stored !== undefined && w.stored < epoch);
    if (lost.length === 0) return;
    await this.#send(lost.map(({ taskId, key, stream, task }) => ({ taskId, key, stream, task })));
  }

  /**
   * Sends hand-offs: per class stream, entries of up to BATCH tasks and BATCH_CHARS of JSON, each entry one signed
   * message. Signatures per entry and a script call per stream, not per task, is what lets a busy producer keep up. An entry is acked
   * once all its tasks reported; a reclaimed entry re-runs only the tasks without a `done` marker. Never throws and
   * never rejects: every hand-off it takes is sent, or rejected (alone when only it cannot be sent).
   */
  #send(items: readonly Outgoing[]): Promise<void> {
    try {
      return this.#pipeline(items);
    } catch (error) {
      // Building the pipeline threw (a bug, or the client's own check): fail this turn's hand-offs, not the process.
      this.#reject(items, error);
      return Promise.resolve();
    }
  }

  #pipeline(items: readonly Outgoing[]): Promise<void> {
    const byStream = new Map<string, Array<Outgoing & { json: string }>>();
    /** Classes no node may consume yet, announced before their hand-offs go out. */
    const unknown = new Set<string>();
    for (const item of items) {
      // Each task is serialised on its own: the entry is joined from these, so its size is known before it is built.
      const serialised = itemJson({ taskId: item.taskId, task: item.task });
      if ('error' in serialised) {
        this.#reject(
          [item],
          new ValidationError(
            'task.payload',
            `The handed-off task ${item.taskId} cannot be sent to another node: ${serialised.error}; pass a reference to the data (a URL, a key) instead of the data`,
          ),
        );
        continue;
      }
      if (!this.#knownClasses.has(item.key)) unknown.add(item.key);
      const list = byStream.get(item.stream);
      const entry = { ...item, json: serialised.json };
      if (list) list.push(entry);
      else byStream.set(item.stream, [entry]);
    }
    if (byStream.size === 0) return Promise.resolve();
    if (unknown.size === 0) return this.#add(byStream);
    return this.#announce(unknown).then((refused) => {
      // A class that could not be announced is not known to the nodes that could serve it: its hand-offs would wait
      // for ever in their stream. They are not sent, and reject with the reason.
      for (const [stream, list] of byStream) {
        const error = refused.get(list[0]!.key);
        if (!error) continue;
        byStream.delete(stream);
        this.#reject(list, error);
      }
      return this.#add(byStream);
    });
  }

  /**
   * Announces classes no node may consume yet: added to the `classes` set (read by every heartbeat) and published
   * (heard at once). A class is known once the set took it; a failed PUBLISH only delays the nodes until their next
   * heartbeat. Resolves with the error of each class that could not be announced; never rejects.
   */
  async #announce(classes: ReadonlySet<string>): Promise<Map<string, BridgeWriteError>> {
    const key = this.#node.key('classes');
    const refused = new Map<string, BridgeWriteError>();
    let replies: Replies;
    try {
      const pipeline = this.#connections.redis.pipeline();
      for (const c of classes) pipeline.sadd(key, c).publish(key, c);
      replies = await pipeline.exec();
    } catch (error) {
      for (const c of classes) refused.set(c, new BridgeWriteError('SADD', key, replyText(error), error));
      return refused;
    }
    let i = 0;
    for (const c of classes) {
      const error = replyError(replies, i);
      i += 2;
      if (error) refused.set(c, new BridgeWriteError('SADD', key, replyText(error), error));
      else this.#knownClasses.add(c);
    }
    this.#noteWrites(refused.values().next().value);
    return refused;
  }

  /**
   * Adds the hand-offs to their class streams: per stream, entries of up to BATCH tasks and BATCH_CHARS of JSON, each
   * one signed message, all added by one ADD_ONCE call (one per BATCH_CHARS of messages). A hand-off whose entry Redis
   * refused (or that did not reach Redis) rejects with BridgeWriteError; never rejects itself.
   */
  #add(byStream: ReadonlyMap<string, ReadonlyArray<Outgoing & { json: string }>>): Promise<void> {
    if (byStream.size === 0) return Promise.resolve();
    const commands: Command[] = [];
    /** The hand-offs of each ADD_ONCE call and its stream, by its place among the commands. */
    const sent: Array<{ stream: string; items: Outgoing[] }> = [];
    const origin = JSON.stringify(this.#node.nodeId);
    const ttl = String(2 * this.#node.options.maxMessageAgeMs);
    let callStream = '';
    let callItems: Outgoing[] = [];
    let messages: string[] = [];
    let chars = 0;
    const call = (): void => {
      if (messages.length === 0) return;
      sent.push({ stream: callStream, items: callItems });
      // Once, whatever the client does: a connection lost after Redis added the entries but before its reply came
      // back makes ioredis send the command again, and the entries would be in the stream twice (two nodes could run
      // their tasks at once). The first signature names the call; its mark outlives any such resend (see ADD_ONCE).
      commands.push([
        'EVAL',
        ADD_ONCE,
        '2',
        callStream,
        this.#node.key('sent', messages[1]!.slice(0, 32)),
        ...messages,
        ttl,
      ]);
      callItems = [];
      messages = [];
      chars = 0;
    };
    for (const [stream, list] of byStream) {
      callStream = stream;
      for (const batch of cutBatches(list)) {
        const body = `{"origin":${origin},"tasks":[${batch.map((t) => t.json).join(',')}]}`;
        // A call carries up to BATCH_CHARS of messages (one larger message goes alone), as one message does.
        if (chars > 0 && chars + body.length > BATCH_CHARS) call();
        const sealed = this.#node.signer.sealJson('tasks', body);
        messages.push(sealed.m, sealed.s);
        chars += body.length;
        for (const t of batch) callItems.push(t);
      }
      call();
    }
    let sending: Promise<Replies>;
    try {
      sending = send(this.#connections.redis, commands);
    } catch (error) {
      sending = Promise.reject(error);
    }
    return sending.then(
      (replies) => {
        let refusal: BridgeWriteError | undefined;
        for (const [index, { stream, items }] of sent.entries()) {
          const error = replyError(replies, index);
          if (!error) {
            this.#stored(items);
            continue;
          }
          const failure = new BridgeWriteError('XADD', stream, replyText(error), error);
          refusal ??= failure;
          this.#reject(items, failure);
        }
        this.#noteWrites(refusal);
      },
      (error: unknown) => {
        for (const { stream, items } of sent)
          this.#reject(items, new BridgeWriteError('XADD', stream, replyText(error), error));
      },
    );
  }

  /** The node's `writes` trouble after writes that Redis answered: set with the first refusal, or cleared. */
  #noteWrites(refusal: BridgeWriteError | undefined): void {
    if (refusal) this.#node.writeRefused(refusal.reply);
    else this.#node.writeTaken();
  }

  /** Notes that Redis, as it is in this epoch, holds the hand-offs of `items`. */
  #stored(items: readonly Outgoing[]): void {
    const epoch = this.#connections.epoch;
    for (const { taskId } of items) {
      const waiting = this.#waiting.get(taskId);
      if (waiting) waiting.stored = epoch;
    }
  }

  /** Rejects the hand-offs of `items` still waiting with `error`. */
  #reject(items: readonly Outgoing[], error: unknown): void {
    for (const { taskId } of items) {
      const waiting = this.#waiting.get(taskId);
      this.#waiting.delete(taskId);
      waiting?.reject(error);
    }
  }
}

/** The error of a remote result, as far as it is well-formed. */
function remoteError(error: unknown): NonNullable<HandOffResult['error']> {
  if (typeof error !== 'object' || error === null) return { name: 'Error', message: 'remote failure' };
  const { name, code, message } = error as { name?: unknown; code?: unknown; message?: unknown };
  return {
    name: typeof name === 'string' ? name : 'Error',
    message: typeof message === 'string' ? message : 'remote failure',
    ...(typeof code === 'string' ? { code } : {}),
  };
}
