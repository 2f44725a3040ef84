/**
 * The connections of one RedisBridge node, a fixed set: commands (the host's own client, or one made from `url`), and
 * its duplicates for the control subscriber and the two blocking readers (tasks, results). Their state drives the
 * node's status (degraded while reconnecting). After a lost connection the server's run id tells a restarted Redis,
 * which may have lost its data, from a mere reconnect (which lost nothing: see {@link RedisConnections.restarted}).
 */
// Types only: ioredis itself is loaded in open(), so a host that never makes a RedisBridge never loads it.
import type { Redis, RedisOptions } from 'ioredis';
import { OrchestratorStoppedError } from '../errors.js';
import type { RetryPolicy } from '../resources/retry-policy.js';
import { settleWithin } from '../util/timers.js';
import type { RedisBridgeOptions } from './redis-options.js';
import type { RedisNode } from './redis-node.js';

/** The connections of a node, from `open()` to `close()`. */
export class RedisConnections {
  readonly #node: RedisNode;
  readonly #url: string | undefined;
  readonly #redisOptions: RedisOptions | undefined;
  #retry: RetryPolicy | undefined;
  /** The client made from `url` (ours to close), or `undefined` with the host's own. */
  #own: Redis | undefined;
  /** The commands connection: the host's client, or ours (made in open()). */
  #commands: Redis | undefined;
  #subscriber: Redis | undefined;
  #taskReader: Redis | undefined;
  #resultReader: Redis | undefined;
  /** Take the listeners off the connections (a host's own client outlives the bridge). */
  readonly #unwatch: Array<() => void> = [];
  /** A connection was lost: the next heartbeat first checks whether Redis restarted (see restarted). */
  #checkRestart = false;
  /**
   * Raised each time the commands connection is ready again after a lost one: a reply that came in an earlier epoch
   * came from the server as it was before (see RedisHandOffs.resend).
   */
  #epoch = 0;
  /** The Redis server's run id when last read; another one after a reconnect means it restarted. */
  #runId: string | undefined;

  constructor(node: RedisNode, options: Pick<RedisBridgeOptions, 'url' | 'redis' | 'redisOptions' | 'retry'>) {
    this.#node = node;
    this.#url = options.url;
    this.#redisOptions = options.redisOptions;
    this.#retry = options.retry;
    this.#commands = options.redis;
  }

  /** The commands connection; only used once started. */
  get redis(): Redis {
    if (!this.#commands) throw new OrchestratorStoppedError('The bridge is not started');
    return this.#commands;
  }

  /** The control subscriber; only used once opened. */
  get subscriber(): Redis {
    return this.#opened(this.#subscriber);
  }

  /** The blocking reader of the task streams; only used once opened. */
  get taskReader(): Redis {
    return this.#opened(this.#taskReader);
  }

  /** The blocking reader of this node's results stream; only used once opened. */
  get resultReader(): Redis {
    return this.#opened(this.#resultReader);
  }

  /**
   * Connects the commands client (unless it is the host's own) and makes its duplicates. Reconnects of the client made
   * from `url` follow `retry` (the orchestrator's policy) unless the bridge was given its own.
   */
  async open(retry: RetryPolicy | undefined): Promise<void> {
    this.#retry ??= retry;
    if (!this.#commands) {
      const { Redis } = await import('ioredis');
      this.#own = new Redis(this.#url!, {
        lazyConnect: true,
        maxRetriesPerRequest: null, // commands wait for the reconnect instead of failing: accepted work is not dropped
        retryStrategy: (times) =>
          this.#retry ? Math.max(50, this.#retry.delay(times)) : Math.min(2_000, 50 * 2 ** times),
        ...this.#redisOptions,
      });
      this.#commands = this.#own;
      this.#watch(this.#own, true); // before connecting: a refused connection is not an "Unhandled error event"
      await this.#own.connect();
    } else {
      this.#watch(this.#commands, true);
    }
    this.#subscriber = this.redis.duplicate({ lazyConnect: false });
    this.#taskReader = this.redis.duplicate({ lazyConnect: false });
    this.#resultReader = this.redis.duplicate({ lazyConnect: false });
    for (const c of [this.#subscriber, this.#taskReader, this.#resultReader]) this.#watch(c);
  }

  /** The commands connection's epoch: raised each time it is ready again after a lost connection. */
  get epoch(): number {
    return this.#epoch;
  }

  /** Reads the server's run id, to compare with after a reconnect. */
  async readRunId(): Promise<void> {
    this.#runId = await this.#serverRunId().catch(() => undefined);
  }

  /** A connection was lost and the heartbeat has not checked yet whether Redis restarted (see restarted). */
  get restartUnknown(): boolean {
    return this.#checkRestart;
  }

  /**
   * Whether Redis may have restarted (and lost its data, without persistence) since the run id was last read: only
   * after a lost connection, when the run id changed or cannot be read (INFO refused by an ACL: every reconnect then
   * counts as a restart). Answers each lost connection once; the heartbeat is its one caller.
   *
   * A mere reconnect (the same run id: a killed connection, a network blip) lost nothing in Redis: what was written
   * is there, and ioredis sends the commands it had written without a reply again on the new connection
   * (`autoResendUnfulfilledCommands`), the queued ones after them. One of those may have run already; the task entries'
   * script adds nothing the second time (ADD_ONCE in redis-streams.ts).
   */
  async restarted(): Promise<boolean> {
    if (!this.#checkRestart) return false;
    // Throws when Redis does not answer (the connection is down again): the next beat asks again.
    const runId = await this.#serverRunId();
    this.#checkRestart = false;
    const restarted = runId === undefined || runId !== this.#runId;
    this.#runId = runId;
    return restarted;
  }

  /** After a failed start: drops every connection at once, so that none left reconnecting keeps the host alive. */
  abort(): void {
    for (const off of this.#unwatch.splice(0)) off();
    for (const c of [this.#subscriber, this.#taskReader, this.#resultReader, this.#own]) c?.disconnect();
    if (this.#own) this.#commands = this.#own = undefined;
    this.#subscriber = this.#taskReader = this.#resultReader = undefined;
  }

  /**
   * Cuts the blocking readers at once, quits the client made from `url` (cut instead when Redis is not there, or
   * when the quit does not come back within `timeoutMs`: QUIT waits behind the commands queued for a reconnect), and
   * waits for `loops` (the read loops, which end with the node no longer running) at most what is left of
   * `timeoutMs`. The host's own client stays open.
   */
  async close(loops: ReadonlyArray<Promise<void>>, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (const c of [this.#subscriber, this.#taskReader, this.#resultReader]) c?.disconnect();
    const own = this.#own;
    if (own) {
      let quit = false;
      if (own.status === 'ready')
        await settleWithin(
          own.quit().then(() => (quit = true)),
          timeoutMs,
        );
      // Not quit (Redis away, or slow): cut. The commands still queued then reject, and no reconnect stays scheduled.
      if (!quit) own.disconnect();
    }
    await settleWithin(Promise.allSettled(loops), Math.max(0, deadline - performance.now()));
    // Last: a connection cut above may still report an error, which must not go unheard.
    for (const off of this.#unwatch.splice(0)) off();
  }

  #opened(client: Redis | undefined): Redis {
    if (!client) throw new OrchestratorStoppedError('The bridge is not started');
    return client;
  }

  /** Listens to a connection's state; the listeners come off in close() or abort(). */
  #watch(client: Redis, commands = false): void {
    let lost = false;
    const onError = (): void => {}; // reported through the status; ioredis reconnects by itself
    const onReconnecting = (): void => {
      lost = true;
      this.#checkRestart = true;
      if (this.#node.running) this.#node.trouble('connection', 'reconnecting to Redis');
    };
    const onReady = (): void => {
      if (commands && lost) this.#epoch++;
      lost = false;
      // Healthy again unless Redis still refuses writes (see RedisNode).
      if (this.#node.running) this.#node.clear('connection');
    };
    client.on('error', onError).on('reconnecting', onReconnecting).on('ready', onReady);
    this.#unwatch.push(() => client.off('error', onError).off('reconnecting', onReconnecting).off('ready', onReady));
  }

  /** The server's run id; `undefined` when Redis refuses INFO (an ACL); throws when Redis does not answer. */
  async #serverRunId(): Promise<string | undefined> {
    try {
      return /run_id:(\w+)/.exec(await this.redis.info('server'))?.[1];
    } catch (error) {
      // INFO not allowed (ACL): every reconnect then counts as a possible restart.
      if ((error as { name?: unknown } | null)?.name === 'ReplyError') return undefined;
      throw error;
    }
  }
}
