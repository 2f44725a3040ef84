/**
 * RedisBridge: one fleet across processes and machines, on Redis Streams with consumer groups.
 *
 * Keys, all under `namespace`:
 * - `node:<id>` (string, TTL): a node's registry entry, refreshed by its heartbeat; `nodes` (set) lists ids.
 * - `classes` (set): requirement classes tasks were handed off for; `tasks:<class>` (stream, group `workers`):
 *   the hand-offs of one class, consumed by every node that can serve it.
 * - `results:<node>` (stream): results for the tasks a node handed off, read by that node only.
 * - `done:<task>` (string, TTL): a task that has a result, so a redelivery or a replayed message is not run again.
 * - `dead` (stream): entries dropped after `maxDeliveries` deliveries that ended without a result or a refusal (they
 *   kept killing their nodes); `tasks:<class>:refused:<entry>` (counter, TTL): refusals of a pending entry.
 * - `control` (pub/sub channel): halt, resume, drain, traffic, rollback, configuration; `control:standing` (hash):
 *   the latest halt/resume and traffic setting, replayed to nodes that join later.
 *
 * Connections, a fixed set per node: commands, a subscriber, and two blocking readers (tasks, results).
 * Delivery is at least once; a node that dies leaves its entries pending, and a live node claims them with
 * XAUTOCLAIM once they are idle for `reclaimIdleMs` (live nodes keep their own in-flight entries fresh).
 */
import { randomBytes } from 'node:crypto';
// Types only: ioredis itself is loaded in start(), so a host that never makes a RedisBridge never loads it.
import type { Redis, RedisOptions } from 'ioredis';
import { OrchestratorStoppedError } from '../errors.js';
import type { RetryPolicy } from '../resources/retry-policy.js';
import {
  classKey,
  RemoteTaskError,
  type BridgeHost,
  type BridgeStats,
  type BridgeStatus,
  type CommunicationBridge,
  type ControlMessage,
  type HandOff,
  type HandOffResult,
  type NodeInfo,
  type WireTask,
} from './bridge.js';
import { publishControl, readNodes, readStanding, removeNode, writeNode } from './redis-control.js';
import {
  resolveRedisBridgeOptions,
  type RedisBridgeOptions,
  type ResolvedRedisBridgeOptions,
} from './redis-options.js';
import { MessageSigner } from './signing.js';

export type { RedisBridgeOptions } from './redis-options.js';

const GROUP = 'workers';
/** Tasks per stream entry at most. */
const BATCH = 16;

/** A hand-off on its way out (kept until its result arrives, to resend it if Redis lost it). */
interface Outgoing {
  readonly taskId: string;
  readonly key: string;
  readonly stream: string;
  readonly task: WireTask;
}

/** A delivered stream entry while its tasks run. */
interface Entry {
  readonly stream: string;
  readonly id: string;
  /** Tasks of the entry that have not reported yet. */
  open: number;
  /** One was refused here: the entry is left pending for reclaim instead of acked. */
  refused: boolean;
}

/** The body of one stream entry: hand-offs of one origin. */
interface TaskBatch {
  readonly origin: string;
  readonly tasks: ReadonlyArray<{ readonly taskId: string; readonly task: WireTask }>;
}
/** Sets every KEYS[i] to 1 with a TTL of ARGV[1] ms: the `done` markers of a flush in one call. */
const SET_DONE = "for i = 1, #KEYS do redis.call('SET', KEYS[i], '1', 'PX', ARGV[1]) end return #KEYS";
/** Reclaim passes (one per heartbeat) between two sweeps of the consumers of nodes gone for good. */
const CONSUMER_SWEEP_EVERY = 30;
/** Deletes a group consumer (KEYS[1] stream, ARGV group, consumer) unless entries are still pending under it. */
const DEL_IDLE_CONSUMER =
  "if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end " +
  "return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])";
type Fields = string[];
type StreamEntries = Array<[id: string, fields: Fields]>;

/**
 * The streams of an XREAD/XREADGROUP reply: RESP2 gives `[[key, entries], ...]`, RESP3 (ioredis 6's default) a map,
 * which arrives flattened as `[key, entries, key, entries, ...]`. A host's own client may use either.
 */
function streamsOf(reply: unknown): Array<[string, StreamEntries]> {
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
function fieldsOf(reply: unknown): Record<string, unknown> {
  if (Array.isArray(reply)) {
    const out: Record<string, unknown> = {};
    for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = reply[i + 1];
    return out;
  }
  return typeof reply === 'object' && reply !== null ? (reply as Record<string, unknown>) : {};
}

function field(fields: Fields, name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/**
 * The bridge across processes and machines: nodes that share a Redis and a `secret` (and `namespace`) form one
 * cluster. A node hands the tasks it cannot serve to a Redis stream per requirement class, which every node able to
 * serve that class consumes; results come back on the origin's own stream. Delivery is at least once: a task whose
 * node dies is claimed by a live node after `reclaimIdleMs`, and a task that has a result is not run again (for
 * `doneTtlMs`).
 * Every message is signed with `secret`; unsigned, forged or replayed ones are dropped and counted in `rejected`.
 * ioredis is imported by `start()` (unless you pass your own client), so a host that never starts one never loads it.
 *
 * @example
 * ```ts
 * const orchestrator = new UnifiedOrchestrator({
 *   pools: [{ role: 'writer', capabilities: ['text'], create: () => new WriterAgent() }],
 *   bridge: new RedisBridge({
 *     url: process.env.REDIS_URL, // rediss://user:password@redis.internal:6380
 *     secret: process.env.BRIDGE_SECRET!, // the same on every node, at least 16 characters
 *     nodeId: `${os.hostname()}-${process.pid}`,
 *   }),
 * });
 * await orchestrator.start(); // joins the cluster
 * ```
 */
export class RedisBridge implements CommunicationBridge {
  /** Always `'redis'`. */
  readonly kind = 'redis';
  /** This node's id: the `nodeId` option, or a random one. */
  readonly nodeId: string;
  readonly #options: ResolvedRedisBridgeOptions;
  readonly #signer: MessageSigner;
  readonly #ns: string;
  #own: Redis | undefined;
  /** The commands connection: the host's client, or ours (made in start()). */
  #commands: Redis | undefined;
  readonly #url: string | undefined;
  readonly #redisOptions: RedisOptions | undefined;
  #retry: RetryPolicy | undefined;
  #subscriber: Redis | undefined;
  #taskReader: Redis | undefined;
  #resultReader: Redis | undefined;
  #host: BridgeHost | undefined;
  #running = false;
  #heartbeat: NodeJS.Timeout | undefined;
  #loops: Promise<void>[] = [];
  /** Streams this node consumes (classes it can serve). */
  readonly #served = new Set<string>();
  /** Entries this node is running, per stream: their idle time is refreshed so nobody reclaims them. */
  readonly #inflight = new Map<string, Set<string>>();
  readonly #running_tasks = new Set<Promise<unknown>>();
  /** Hand-offs waiting for their result, with their sealed message (resent after Redis lost it). */
  readonly #pending = new Map<string, Outgoing & { resolve(v: unknown): void; reject(e: unknown): void }>();
  #nodes: NodeInfo[] = [];
  /** Classes this node has announced (the `classes` set and channel). */
  readonly #knownClasses = new Set<string>();
  #status: BridgeStatus = { status: 'healthy', detail: 'not started' };
  #lostConnection = false;
  #handedOff = 0;
  #served_count = 0;
  #reclaimed = 0;
  #deadLettered = 0;
  #rejected = 0;

  /**
   * Checks the options and makes the bridge; nothing connects until `start()`. Throws ValidationError (its `field`
   * names the option) without a `secret` of at least 16 characters, without a redis:// or rediss:// `url` or a
   * `redis` client, on an unknown option, on a timing that is not a whole number of ms >= 1, or when `nodeTtlMs` or
   * `reclaimIdleMs` is not above `heartbeatMs`.
   */
  constructor(options: RedisBridgeOptions) {
    this.#options = resolveRedisBridgeOptions(options);
    this.nodeId = options.nodeId ?? `node-${randomBytes(4).toString('hex')}`;
    this.#ns = this.#options.namespace;
    this.#signer = new MessageSigner(options.secret, this.#ns, this.#options.maxMessageAgeMs);
    this.#retry = options.retry;
    this.#url = options.url;
    this.#redisOptions = options.redisOptions;
    this.#commands = options.redis;
  }

  /** The commands connection; only used once started. */
  get #redis(): Redis {
    if (!this.#commands) throw new OrchestratorStoppedError('The bridge is not started');
    return this.#commands;
  }

  #key(...parts: string[]): string {
    return [this.#ns, ...parts].join(':');
  }

  /** How many times the entry `id` of `stream` was refused (a counter that expires with the `done` markers). */
  #refusalKey(stream: string, id: string): string {
    return `${stream}:refused:${id}`;
  }

  /**
   * Connects, subscribes to the control channel, replays the cluster's standing control state to `host`, registers
   * this node and starts its readers and heartbeat. Called by the orchestrator.
   */
  async start(host: BridgeHost): Promise<void> {
    this.#host = host;
    // Reconnects follow the orchestrator's retry policy unless the bridge was given its own.
    this.#retry ??= host.retry;
    try {
      await this.#open(host);
    } catch (error) {
      // Nothing it opened may outlive a failed start: a client left reconnecting would keep the host process alive.
      this.#running = false;
      clearTimeout(this.#heartbeat);
      for (const off of this.#unwatch.splice(0)) off();
      for (const c of [this.#subscriber, this.#taskReader, this.#resultReader, this.#own]) c?.disconnect();
      if (this.#own) this.#commands = this.#own = undefined;
      this.#subscriber = this.#taskReader = this.#resultReader = undefined;
      throw error;
    }
  }

  async #open(host: BridgeHost): Promise<void> {
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
      this.#watch(this.#own); // before connecting: a refused connection is not an "Unhandled error event"
      await this.#own.connect();
    } else {
      this.#watch(this.#commands);
    }
    this.#subscriber = this.#redis.duplicate({ lazyConnect: false });
    this.#taskReader = this.#redis.duplicate({ lazyConnect: false });
    this.#resultReader = this.#redis.duplicate({ lazyConnect: false });
    for (const c of [this.#subscriber, this.#taskReader, this.#resultReader]) this.#watch(c);
    const classes = this.#key('classes');
    this.#subscriber.on('message', (channel: string, raw: string) => {
      if (channel === classes)
        void this.#beat(); // a new class: consume it now if this node can serve it
      else this.#onControl(raw);
    });
    await this.#subscriber.subscribe(this.#key('control'), classes);
    this.#running = true;
    // Subscribed first, so that nothing sent meanwhile is missed; a message both replayed and heard is applied twice, harmlessly.
    this.#runId = await this.#serverRunId();
    const standing = await readStanding(this.#redis, this.#signer, this.#ns);
    this.#rejected += standing.rejected;
    for (const message of standing.messages) host.control(message);
    await this.#beat();
    this.#setStatus({ status: 'healthy', detail: `connected as ${this.nodeId}` });
    this.#loops = [this.#readTasks(), this.#readResults()];
    const tick = (): void => {
      this.#heartbeat = setTimeout(() => {
        void this.#beat().finally(() => {
          if (this.#running) tick();
        });
      }, this.#options.heartbeatMs);
      this.#heartbeat.unref();
    };
    tick();
  }

  /**
   * Waits for the hand-offs running here to report, rejects this node's hand-offs still waiting for a result with
   * OrchestratorStoppedError, removes this node from the registry and closes the connections it made. Called by the
   * orchestrator.
   */
  async stop(): Promise<void> {
    if (!this.#running) {
      await this.#close();
      return;
    }
    this.#running = false;
    clearTimeout(this.#heartbeat);
    // Served tasks finish and report first; their entries are then acked.
    await Promise.allSettled([...this.#running_tasks]);
    for (const [taskId, p] of this.#pending) {
      p.reject(
        new OrchestratorStoppedError(`The orchestrator stopped before the handed-off task ${taskId} reported back`),
      );
    }
    this.#pending.clear();
    try {
      const pipeline = this.#redis.pipeline();
      removeNode(pipeline, this.#ns, this.nodeId);
      // Only a consumer with nothing pending: entries left pending (refused here) must stay claimable by reclaim.
      for (const stream of this.#served) pipeline.eval(DEL_IDLE_CONSUMER, 1, stream, GROUP, this.nodeId);
      await pipeline.exec();
    } catch {
      // Redis gone: the entry expires by itself.
    }
    await this.#close();
  }

  /** Reads the registry: the live nodes, this one included. */
  async nodes(): Promise<NodeInfo[]> {
    await this.#refreshNodes();
    return this.#nodes;
  }

  /**
   * Whether another node, live by its last heartbeat, has an agent (or pool) that holds all of `requires`. Answers
   * from the registry as of this node's last heartbeat, without a round trip.
   */
  canAnyServe(requires: readonly string[]): boolean {
    const now = Date.now();
    return this.#nodes.some(
      (n) =>
        n.nodeId !== this.nodeId &&
        now - n.heartbeatAt < this.#options.nodeTtlMs &&
        n.serves.some((set) => requires.every((c) => set.includes(c))),
    );
  }

  /**
   * Adds a task to its class's stream and resolves with its result once a node reports it. Rejects with
   * {@link RemoteTaskError} when it failed there (TASK_DEAD_LETTERED after `maxDeliveries`), with the Redis error when
   * it could not be sent, and with OrchestratorStoppedError when this bridge is not started or stops first. No timeout
   * of its own: the task's `timeoutMs` bounds each attempt on the serving node.
   */
  handOff(taskId: string, task: WireTask): Promise<unknown> {
    if (!this.#running) return Promise.reject(new OrchestratorStoppedError());
    const key = classKey(task.requires);
    const outgoing: Outgoing = { taskId, key, stream: this.#key('tasks', key), task };
    this.#handedOff++;
    return new Promise<unknown>((resolve, reject) => {
      this.#pending.set(taskId, { ...outgoing, resolve, reject });
      this.#sendBox.push(outgoing);
      if (this.#sendBox.length === 1) setImmediate(() => this.#send(this.#sendBox.splice(0)));
    });
  }

  /** The submitter gave up on a hand-off (its deadline): it is neither waited for nor sent again after a reconnect. */
  forget(taskId: string): void {
    this.#pending.delete(taskId);
  }

  /** Hand-offs of this turn of the event loop, sent in one pipeline. */
  readonly #sendBox: Outgoing[] = [];

  /**
   * Sends hand-offs: per class stream, entries of up to BATCH tasks, each entry one signed message. Signatures and
   * commands per entry, not per task, is what lets a busy producer keep up. An entry is acked once all its tasks
   * reported; a reclaimed entry re-runs only the tasks without a `done` marker.
   */
  #send(items: readonly Outgoing[]): Promise<void> {
    const pipeline = this.#redis.pipeline();
    const byStream = new Map<string, Outgoing[]>();
    for (const item of items) {
      if (!this.#knownClasses.has(item.key)) {
        // A class no node may consume yet: tell them now instead of at their next heartbeat.
        this.#knownClasses.add(item.key);
        pipeline.sadd(this.#key('classes'), item.key);
        pipeline.publish(this.#key('classes'), item.key);
      }
      const list = byStream.get(item.stream);
      if (list) list.push(item);
      else byStream.set(item.stream, [item]);
    }
    for (const [stream, list] of byStream) {
      for (let i = 0; i < list.length; i += BATCH) {
        const tasks = list.slice(i, i + BATCH).map(({ taskId, task }) => ({ taskId, task }));
        const sealed = this.#signer.seal('tasks', { origin: this.nodeId, tasks } satisfies TaskBatch);
        pipeline.xadd(stream, '*', 'm', sealed.m, 's', sealed.s);
      }
    }
    return pipeline.exec().then(
      () => {},
      (error: unknown) => {
        for (const { taskId } of items) {
          const p = this.#pending.get(taskId);
          this.#pending.delete(taskId);
          p?.reject(error);
        }
      },
    );
  }

  /** Publishes a signed control message to every node, this one included, and keeps its standing state in Redis. */
  async control(message: ControlMessage): Promise<void> {
    await publishControl(this.#redis, this.#signer, this.#ns, { ...message, from: this.nodeId });
  }

  /** Healthy while connected, degraded while reconnecting to Redis. */
  status(): BridgeStatus {
    return this.#status;
  }

  /** This node's counts since it was made. */
  stats(): BridgeStats {
    return {
      handedOff: this.#handedOff,
      served: this.#served_count,
      reclaimed: this.#reclaimed,
      deadLettered: this.#deadLettered,
      rejected: this.#rejected,
    };
  }

  // --- Heartbeat: registry, classes, in-flight freshness, reclaim -----------------------------------

  async #beat(): Promise<void> {
    const host = this.#host;
    if (!host || !this.#running) return;
    try {
      const pipeline = this.#registryEntry();
      pipeline.smembers(this.#key('classes'));
      const results = await pipeline.exec();
      const classes = (results?.[2]?.[1] as string[] | undefined) ?? [];
      for (const key of classes) {
        const stream = this.#key('tasks', key);
        if (this.#served.has(stream)) continue;
        const requires = key === '*' ? [] : key.split('+');
        if (!host.canServe(requires)) continue;
        await this.#ensureGroup(stream);
        this.#served.add(stream);
      }
      await this.#keepFresh();
      await this.#reclaim();
      await this.#refreshNodes();
      if (this.#lostConnection) {
        this.#lostConnection = false;
        this.#knownClasses.clear(); // Redis may have lost them (a restart without persistence)
        await this.#resend();
      }
    } catch {
      // A failed beat (Redis down) is retried on the next one; the status says degraded meanwhile.
    }
  }

  /** A pipeline that writes this node's registry entry. */
  #registryEntry(): ReturnType<Redis['pipeline']> {
    const info: NodeInfo = {
      ...this.#host!.info(),
      nodeId: this.nodeId,
      heartbeatAt: Date.now(),
      status: this.#host!.status(),
    };
    return writeNode(this.#redis, this.#signer, this.#ns, info, this.#options.nodeTtlMs);
  }

  async #ensureGroup(stream: string): Promise<void> {
    try {
      await this.#redis.call('XGROUP', 'CREATE', stream, GROUP, '0', 'MKSTREAM');
    } catch (error) {
      if (!String(error).includes('BUSYGROUP')) throw error;
    }
  }

  /** Resets the idle time of the entries this node is running, so that reclaim only takes a dead node's. */
  async #keepFresh(): Promise<void> {
    if (this.#inflight.size === 0) return;
    const pipeline = this.#redis.pipeline();
    for (const [stream, ids] of this.#inflight) {
      if (ids.size > 0) pipeline.call('XCLAIM', stream, GROUP, this.nodeId, '0', ...ids, 'JUSTID');
    }
    await pipeline.exec();
  }

  async #reclaim(): Promise<void> {
    // Now and then, also the consumers that nodes gone for good left in the groups (see #dropGoneConsumers).
    const sweep = ++this.#reclaims % CONSUMER_SWEEP_EVERY === 0;
    for (const stream of this.#served) {
      if (sweep) await this.#dropGoneConsumers(stream).catch(() => {});
      let claimed: unknown;
      try {
        claimed = await this.#redis.call(
          'XAUTOCLAIM',
          stream,
          GROUP,
          this.nodeId,
          String(this.#options.reclaimIdleMs),
          '0-0',
          'COUNT',
          '32',
        );
      } catch (error) {
        if (String(error).includes('NOGROUP')) await this.#ensureGroup(stream);
        continue;
      }
      const entries = ((claimed as [string, StreamEntries] | undefined)?.[1] ?? []).filter((e) => e[1] !== null);
      for (const [id, fields] of entries) {
        const [pending, refusals] = await Promise.all([
          this.#redis.call('XPENDING', stream, GROUP, id, id, '1') as Promise<Array<[string, string, number, number]>>,
          this.#redis.get(this.#refusalKey(stream, id)),
        ]);
        // Deliveries that ended in a refusal (a node busy or stopping) do not count: only those that ended in silence.
        const deliveries = (pending[0]?.[3] ?? 1) - (Number(refusals) || 0);
        this.#reclaimed++;
        if (deliveries > this.#options.maxDeliveries) await this.#deadLetter(stream, id, fields, deliveries);
        else await this.#takeAll([[stream, id, fields]]);
      }
    }
  }

  #reclaims = 0;

  /**
   * A node that stopped with entries pending under its name keeps its group consumer (so that they stay claimable);
   * once they were claimed, the consumer is empty and its node gone. Deletes such consumers: nothing pending, idle
   * for two node TTLs, and no registry entry. Atomically, so one that took an entry meanwhile stays.
   */
  async #dropGoneConsumers(stream: string): Promise<void> {
    const consumers = (await this.#redis.call('XINFO', 'CONSUMERS', stream, GROUP)) as unknown[];
    const live = new Set(this.#nodes.map((n) => n.nodeId));
    live.add(this.nodeId);
    for (const c of consumers) {
      const info = fieldsOf(c);
      const name = String(info['name']);
      if (live.has(name) || Number(info['pending']) > 0 || Number(info['idle']) < 2 * this.#options.nodeTtlMs) continue;
      await this.#redis.eval(DEL_IDLE_CONSUMER, 1, stream, GROUP, name);
    }
  }

  async #deadLetter(stream: string, id: string, fields: Fields, deliveries: number): Promise<void> {
    this.#deadLettered++;
    const batch = this.#openBatch(fields);
    const pipeline = this.#redis.pipeline();
    pipeline.xadd(
      this.#key('dead'),
      '*',
      'stream',
      stream,
      'entry',
      id,
      'deliveries',
      String(deliveries),
      'm',
      field(fields, 'm') ?? '',
      's',
      field(fields, 's') ?? '',
    );
    pipeline.xack(stream, GROUP, id);
    pipeline.xdel(stream, id);
    if (batch) {
      const results: HandOffResult[] = batch.tasks.map(({ taskId }) => ({
        taskId,
        node: this.nodeId,
        ok: false,
        error: {
          name: 'TaskDeadLetteredError',
          code: 'TASK_DEAD_LETTERED',
          message: `Task ${taskId} was delivered ${deliveries} times without a result (it keeps killing its nodes) and was dead-lettered`,
        },
      }));
      const sealed = this.#signer.seal('results', { results });
      pipeline.xadd(this.#key('results', batch.origin), '*', 'm', sealed.m, 's', sealed.s);
    }
    await pipeline.exec();
  }

  /** A stream entry's hand-offs, or `undefined` when it is unsigned, forged or malformed. */
  #openBatch(fields: Fields): TaskBatch | undefined {
    const batch = this.#signer.open<TaskBatch>('tasks', field(fields, 'm'), field(fields, 's'));
    if (!batch || typeof batch.origin !== 'string' || !Array.isArray(batch.tasks) || batch.tasks.length === 0)
      return undefined;
    for (const t of batch.tasks) {
      if (
        typeof t !== 'object' ||
        t === null ||
        typeof t.taskId !== 'string' ||
        typeof t.task !== 'object' ||
        t.task === null
      )
        return undefined;
    }
    return batch;
  }

  async #refreshNodes(): Promise<void> {
    if (this.#checkRestart) {
      // After a reconnect: a new run id means Redis restarted and may have lost the registry (no persistence).
      this.#checkRestart = false;
      const runId = await this.#serverRunId();
      if (runId === undefined || runId !== this.#runId) this.#registryGraceUntil = Date.now() + this.#options.nodeTtlMs;
      this.#runId = runId;
    }
    const { nodes, rejected } = await readNodes(this.#redis, this.#signer, this.#ns);
    this.#rejected += rejected;
    if (Date.now() < this.#registryGraceUntil) {
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

  /** Until when a registry read keeps the nodes known before a Redis restart (see #refreshNodes). */
  #registryGraceUntil = 0;
  /** The Redis server's run id when last read; another one after a reconnect means it restarted. */
  #runId: string | undefined;
  /** A connection was lost: the next registry read first checks whether Redis restarted. */
  #checkRestart = false;

  async #serverRunId(): Promise<string | undefined> {
    try {
      return /run_id:(\w+)/.exec(await this.#redis.info('server'))?.[1];
    } catch {
      return undefined; // INFO not allowed (ACL): every reconnect then counts as a possible restart
    }
  }

  /** After Redis lost its data (a restart without persistence), hand-offs still waiting are published again. */
  async #resend(): Promise<void> {
    if (this.#pending.size === 0) return;
    await this.#send(
      [...this.#pending.values()].map(({ taskId, key, stream, task }) => ({ taskId, key, stream, task })),
    );
  }

  // --- Serving: the blocking task reader ------------------------------------------------------------

  async #readTasks(): Promise<void> {
    const reader = this.#taskReader!;
    while (this.#running) {
      const streams = [...this.#served];
      if (streams.length === 0) {
        await this.#pause(Math.min(this.#options.blockMs, this.#options.heartbeatMs));
        continue;
      }
      // Flow control: a node holds at most about four times its slots of bridge tasks (running or queued here); past
      // that it waits for some to report, so that it never sits on much work another node could run now.
      const info = this.#host?.info();
      const limit = Math.max(2 * BATCH, 4 * (info?.slots ?? 1));
      if (this.#backlog >= limit) {
        await new Promise<void>((resolve) => {
          this.#onCapacity = resolve;
          setTimeout(resolve, this.#options.blockMs).unref();
        });
        this.#onCapacity = undefined;
        continue;
      }
      const room = Math.min(64, Math.max(1, Math.ceil((limit - this.#backlog) / BATCH)));
      let reply: unknown;
      try {
        reply = await reader.call(
          'XREADGROUP',
          'GROUP',
          GROUP,
          this.nodeId,
          'COUNT',
          String(room),
          'BLOCK',
          String(this.#options.blockMs),
          'STREAMS',
          ...streams,
          ...streams.map(() => '>'),
        );
      } catch (error) {
        if (!this.#running) return;
        if (String(error).includes('NOGROUP')) {
          // Redis lost the group (a restart): make it again and go on.
          for (const s of streams) await this.#ensureGroup(s).catch(() => {});
        } else {
          await this.#pause(100);
        }
        continue;
      }
      if (!reply) continue;
      const batch: Array<[string, string, Fields]> = [];
      for (const [stream, entries] of streamsOf(reply)) {
        for (const [id, fields] of entries) if (fields) batch.push([stream, id, fields]);
      }
      await this.#takeAll(batch);
    }
  }

  /**
   * Runs delivered entries: checks their signatures and every task's `done` marker (one round trip for the read),
   * runs what has no result yet, and reports through the outbox. An entry is acked once all its tasks reported.
   */
  async #takeAll(batch: Array<[string, string, Fields]>): Promise<void> {
    const valid: Array<{ stream: string; id: string; batch: TaskBatch }> = [];
    const forged: Array<[string, string]> = [];
    for (const [stream, id, fields] of batch) {
      const opened = this.#openBatch(fields);
      if (!opened) {
        this.#rejected++;
        forged.push([stream, id]); // never executed; not worth redelivering either
      } else if (!this.#inflight.get(stream)?.has(id)) {
        valid.push({ stream, id, batch: opened });
      }
    }
    const pipeline = this.#redis.pipeline();
    for (const [stream, id] of forged) pipeline.xack(stream, GROUP, id).xdel(stream, id);
    const keys = valid.flatMap((v) => v.batch.tasks.map((t) => this.#key('done', t.taskId)));
    if (keys.length > 0) pipeline.mget(...keys);
    let replies: Array<[Error | null, unknown]> | null;
    try {
      replies = await pipeline.exec();
    } catch {
      return; // Redis went away: the entries stay pending and come back by reclaim
    }
    const done = (replies?.[forged.length * 2]?.[1] ?? []) as Array<string | null>;
    let k = 0;
    for (const { stream, id, batch: b } of valid) {
      let ids = this.#inflight.get(stream);
      if (!ids) this.#inflight.set(stream, (ids = new Set()));
      ids.add(id);
      const entry: Entry = { stream, id, open: b.tasks.length, refused: false };
      this.#backlog += b.tasks.length;
      for (const { taskId, task } of b.tasks) {
        if (done[k++] != null) {
          // Already has a result (a replay, or a redelivery after its node died between report and ack).
          this.#rejected++;
          this.#report(entry, undefined, b.origin, taskId);
        } else {
          this.#run(entry, { taskId, origin: b.origin, task });
        }
      }
    }
  }

  #run(entry: Entry, handOff: HandOff): void {
    const run = this.#host!.run(handOff).then(
      (result) => {
        this.#served_count++;
        this.#report(entry, result, handOff.origin, handOff.taskId);
        return this.#flushed;
      },
      () => {
        // Refused here (stopping, queue full): the entry stays pending for another node to claim once idle.
        entry.refused = true;
        this.#report(entry, undefined, handOff.origin, handOff.taskId);
      },
    );
    this.#running_tasks.add(run);
    run.catch(() => {}).finally(() => this.#running_tasks.delete(run));
  }

  #report(entry: Entry, result: HandOffResult | undefined, origin: string, taskId: string): void {
    this.#backlog--;
    this.#onCapacity?.();
    this.#outbox.push({ entry, result, origin, taskId });
    this.#flushSoon();
  }

  /** Bridge tasks taken and not reported yet, and the read loop's wake-up when that falls. */
  #backlog = 0;
  #onCapacity: (() => void) | undefined;

  /** Results to report and entries to ack, flushed in one pipeline per turn of the event loop. */
  readonly #outbox: Array<{ entry: Entry; result: HandOffResult | undefined; origin: string; taskId: string }> = [];
  #flushed: Promise<void> = Promise.resolve();
  #flushScheduled = false;

  #flushSoon(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    this.#flushed = new Promise<void>((resolve) => {
      setImmediate(() => {
        this.#flushScheduled = false;
        void this.#flush().finally(resolve);
      });
    });
  }

  /**
   * One pipeline per turn: per origin node one signed message carrying all its results, the `done` markers in one
   * script call, and per stream one XACK and one XDEL for the entries whose tasks have all reported. The commands
   * (and signatures) per task are what bounds a serving node, so they are shared by the batch.
   */
  async #flush(): Promise<void> {
    const items = this.#outbox.splice(0);
    if (items.length === 0) return;
    const pipeline = this.#redis.pipeline();
    const byOrigin = new Map<string, HandOffResult[]>();
    const finished = new Map<string, Entry[]>();
    const doneKeys: string[] = [];
    for (const { entry, result, origin, taskId } of items) {
      if (result) {
        const list = byOrigin.get(origin);
        if (list) list.push(result);
        else byOrigin.set(origin, [result]);
        doneKeys.push(this.#key('done', taskId));
      }
      if (--entry.open === 0) {
        const list = finished.get(entry.stream);
        if (list) list.push(entry);
        else finished.set(entry.stream, [entry]);
      }
    }
    for (const [origin, results] of byOrigin) {
      const sealed = this.#signer.seal('results', { results });
      pipeline.xadd(this.#key('results', origin), '*', 'm', sealed.m, 's', sealed.s);
    }
    if (doneKeys.length > 0) pipeline.eval(SET_DONE, doneKeys.length, ...doneKeys, String(this.#options.doneTtlMs));
    for (const [stream, entries] of finished) {
      // An entry with a refused task stays pending: reclaim gives it to a node that runs what has no result. The
      // refusal is counted apart, so that a busy cluster does not spend the deliveries meant for nodes that die.
      const ids: string[] = [];
      for (const e of entries) {
        if (!e.refused) ids.push(e.id);
        else
          pipeline
            .incr(this.#refusalKey(stream, e.id))
            .pexpire(this.#refusalKey(stream, e.id), this.#options.doneTtlMs);
      }
      if (ids.length > 0) {
        pipeline.xack(stream, GROUP, ...ids);
        pipeline.xdel(stream, ...ids);
      }
    }
    try {
      await pipeline.exec();
    } catch {
      // Redis went away mid-flush: the entries stay pending; their tasks run again elsewhere (at least once).
    } finally {
      for (const [stream, entries] of finished) for (const e of entries) this.#inflight.get(stream)?.delete(e.id);
    }
  }

  // --- Results of this node's hand-offs -------------------------------------------------------------

  async #readResults(): Promise<void> {
    const reader = this.#resultReader!;
    const stream = this.#key('results', this.nodeId);
    // From the start of the stream, never '$': a '$' read misses what arrives between two reads (or before the first
    // one reaches Redis), and that task would wait forever. Entries are deleted once read, so the stream stays short;
    // left-overs of an earlier node with this id match no pending hand-off and are dropped.
    let last = '0-0';
    while (this.#running) {
      let reply: unknown;
      try {
        reply = await reader.call(
          'XREAD',
          'COUNT',
          '256',
          'BLOCK',
          String(this.#options.blockMs),
          'STREAMS',
          stream,
          last,
        );
      } catch {
        if (!this.#running) return;
        await this.#pause(100);
        continue;
      }
      if (!reply) continue;
      const done: string[] = [];
      for (const [, entries] of streamsOf(reply)) {
        for (const [id, fields] of entries) {
          last = id;
          done.push(id);
          const message = this.#signer.open<{ results: HandOffResult[] }>(
            'results',
            field(fields, 'm'),
            field(fields, 's'),
          );
          if (!message || !Array.isArray(message.results)) {
            this.#rejected++;
            continue;
          }
          for (const result of message.results) {
            if (typeof result !== 'object' || result === null || typeof result.taskId !== 'string') {
              this.#rejected++;
              continue;
            }
            const pending = this.#pending.get(result.taskId);
            if (!pending) continue; // a duplicate result: the first one settled it
            this.#pending.delete(result.taskId);
            if (result.ok === true) pending.resolve(result.value);
            else pending.reject(new RemoteTaskError(remoteError(result.error), String(result.node)));
          }
        }
      }
      if (done.length > 0) void this.#redis.xdel(stream, ...done).catch(() => {});
    }
  }

  // --- Control -------------------------------------------------------------------------------------

  #onControl(raw: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      this.#rejected++;
      return;
    }
    // Anyone who can PUBLISH reaches this: only a signed object with a known kind goes on.
    const envelope = typeof parsed === 'object' && parsed !== null ? (parsed as { m?: unknown; s?: unknown }) : {};
    const message = this.#signer.open<ControlMessage>('control', envelope.m, envelope.s, true);
    if (!message || !CONTROL_KINDS.has(message.kind)) {
      this.#rejected++;
      return;
    }
    this.#host?.control({
      kind: message.kind,
      reason: message.reason,
      value: message.value,
      from: message.from,
      ...(typeof message.actor === 'string' ? { actor: message.actor } : {}),
    });
    // Operators (the CLI) read what each node applied from its registry entry: publish it now, not at the next beat.
    if (this.#host && this.#running)
      void this.#registryEntry()
        .exec()
        .catch(() => {});
  }

  // --- Connections ---------------------------------------------------------------------------------

  /** Listens to a connection's state; the listeners come off in #close (a host's own client outlives the bridge). */
  #watch(client: Redis): void {
    const onError = (): void => {}; // reported through the status; ioredis reconnects by itself
    const onReconnecting = (): void => {
      this.#lostConnection = true;
      this.#checkRestart = true;
      if (this.#running) this.#setStatus({ status: 'degraded', detail: 'reconnecting to Redis' });
    };
    const onReady = (): void => {
      if (this.#running) this.#setStatus({ status: 'healthy', detail: `connected as ${this.nodeId}` });
    };
    client.on('error', onError).on('reconnecting', onReconnecting).on('ready', onReady);
    this.#unwatch.push(() => client.off('error', onError).off('reconnecting', onReconnecting).off('ready', onReady));
  }

  readonly #unwatch: Array<() => void> = [];

  #setStatus(status: BridgeStatus): void {
    if (status.status === this.#status.status && status.detail === this.#status.detail) return;
    this.#status = status;
    this.#host?.state(status);
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms).unref());
  }

  async #close(): Promise<void> {
    for (const off of this.#unwatch.splice(0)) off();
    // Blocking readers are cut at once (their loops end with #running false); the host's own client stays open.
    for (const c of [this.#subscriber, this.#taskReader, this.#resultReader]) c?.disconnect();
    await Promise.allSettled(this.#loops);
    if (this.#own) {
      try {
        await this.#own.quit();
      } catch {
        this.#own.disconnect();
      }
    }
  }
}

const CONTROL_KINDS: ReadonlySet<unknown> = new Set(['halt', 'resume', 'drain', 'traffic', 'rollback', 'config']);

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
