/**
 * RedisBridge: one fleet across processes and machines, on Redis Streams with consumer groups. This file holds the
 * public class, which composes the parts of a node, each in its own file:
 * - redis-node.ts: the node's identity, lifecycle flag, status and counts, shared by the parts;
 * - redis-connections.ts: the connections, their state, and telling a Redis restart from a reconnect;
 * - redis-registry.ts: the node registry, the nodes' leases and `canAnyServe`;
 * - redis-heartbeat.ts: the heartbeat, and the reclaim (or dead-lettering) of entries no live node holds;
 * - redis-serving.ts: reading and running the hand-offs of the classes this node serves;
 * - redis-results.ts: writing results back to their origins, and reading this node's own;
 * - redis-handoffs.ts: this node's hand-offs, waiting for their results; redis-backlog.ts: the task streams' backlog
 *   against `maxStreamBacklog`;
 * - redis-janitor.ts: deleting the results streams of nodes gone for good;
 * - redis-control.ts: the control channel and its standing state (shared with the CLI);
 * - redis-standing.ts: the standing entries this node applied, and reconciling with the standing state;
 * - redis-streams.ts: the stream format and replies; redis-keys.ts: key names; redis-options.ts: the options.
 *
 * Keys, all under `namespace` (`%` and `:` in it percent-encoded), names encoded as redis-keys.ts says:
 * - `node:<id>` (string, TTL): a node's registry entry, refreshed by its heartbeat; `nodes` (set) lists ids.
 * - `classes` (set): requirement classes tasks were handed off for (capabilities sorted, each percent-encoded, joined
 *   with `+`; `*` for none); `tasks:<class>` (stream, group `workers`): the hand-offs of one class, consumed by every
 *   node that can serve it.
 * - `results:<node>` (stream): results for the tasks a node handed off, read by that node only; `origins` (sorted set):
 *   the nodes that may have one, by when each was last seen, so that those of gone nodes are deleted (redis-janitor.ts).
 * - `done:<task>` (string, TTL): a task that has a result (or was dead-lettered, or its entry refused), so a
 *   redelivery or an old entry written back is not run again (redis-terminal.ts writes them; task entries are also
 *   bound to their delivery, see `openBatch` in redis-streams.ts).
 * - `sent:<mark>` (string, TTL twice `maxMessageAgeMs`): the task entries of one script call already added, named
 *   after the first one's signature, so that a command the client sends again after a lost reply adds nothing
 *   (ADD_ONCE in redis-streams.ts).
 * - `dead` (stream): entries dropped after `maxDeliveries` deliveries that ended without a result or a refusal (they
 *   kept killing their nodes); `tasks:<class>:refused:<entry>` (counter, TTL): refusals of a pending entry. In each
 *   group, consumer `~released` holds the entries no node runs (refused ones), for any node to claim.
 * - `control` (pub/sub channel): halt, resume, drain, traffic, rollback, configuration; `control:standing` (hash):
 *   the latest halt/resume and traffic setting, replayed to nodes that join later; `control:version` (counter): raised
 *   with each write to `control:standing`, read by every heartbeat (a node that missed a message reconciles).
 *
 * Connections, a fixed set per node: commands, a subscriber, and two blocking readers (tasks, results).
 * Delivery is at least once, by lease: a node that dies leaves its entries pending, and once its lease (`nodeTtlMs`,
 * not counting stalls) ran out a live node claims those idle for `reclaimIdleMs`; a live node's entries are never
 * taken, and one that comes back from a stall past its lease aborts its copies of what was taken over. A task runs
 * twice only when its node died mid-run or stalled past its lease, or Redis restarted without its data (then the
 * hand-offs still waiting are sent again; a mere reconnect sends nothing again).
 */
import { randomBytes } from 'node:crypto';
import { OrchestratorStoppedError } from '../errors.js';
import type {
  BridgeHost,
  BridgeStats,
  BridgeStatus,
  CommunicationBridge,
  ControlMessage,
  HandOffOptions,
  NodeInfo,
  WireTask,
} from './bridge.js';
import { RedisConnections } from './redis-connections.js';
import { openControl, publishControl } from './redis-control.js';
import { StreamBacklog } from './redis-backlog.js';
import { RedisHandOffs } from './redis-handoffs.js';
import { RedisHeartbeat } from './redis-heartbeat.js';
import { RedisJanitor } from './redis-janitor.js';
import { RedisLimits } from './redis-limits.js';
import type { ClusterLimitsBackend } from '../resources/cluster-limits.js';
import { classKey } from './redis-keys.js';
import { RedisNode } from './redis-node.js';
import { resolveRedisBridgeOptions, type RedisBridgeOptions } from './redis-options.js';
import { RedisRegistry } from './redis-registry.js';
import { readResults } from './redis-results.js';
import { RedisServing } from './redis-serving.js';
import { RedisStanding } from './redis-standing.js';
import { MessageSigner } from './signing.js';
import { settleWithin } from '../util/timers.js';

export type { RedisBridgeOptions } from './redis-options.js';

/**
 * The bridge across processes and machines: nodes that share a Redis and a `secret` (and `namespace`) form one
 * cluster. A node hands the tasks it cannot serve to a Redis stream per requirement class, which every node able to
 * serve that class consumes; results come back on the origin's own stream. Delivery is at least once: a task whose
 * node dies is claimed by a live node once that node's lease (`nodeTtlMs`) ran out and the task sat idle for
 * `reclaimIdleMs`, and a task that has a result is not run again (for `doneTtlMs`).
 * Every message is signed with `secret` (and, with `encrypt`, sealed as AES-256-GCM ciphertext); unsigned, forged or
 * replayed ones are dropped and counted in `rejected`.
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
  readonly #node: RedisNode;
  readonly #connections: RedisConnections;
  readonly #registry: RedisRegistry;
  readonly #handOffs: RedisHandOffs;
  readonly #serving: RedisServing;
  readonly #heartbeat: RedisHeartbeat;
  readonly #standing: RedisStanding;
  readonly #backlog: StreamBacklog;
  readonly #janitor: RedisJanitor;
  /** Classes and task streams of one capability, by its name (see #classOf). */
  readonly #streams = new Map<string, { readonly stream: string; readonly key: string }>();
  /** The same, for classes of several capabilities, by their JSON. */
  readonly #multiStreams = new Map<string, { readonly stream: string; readonly key: string }>();
  /** The blocking read loops (tasks, results) while started. */
  #loops: Promise<void>[] = [];
  /** The stop under way or done, since the last start. */
  #stopping: Promise<void> | undefined;

  /**
   * Checks the options and makes the bridge; nothing connects until `start()`. Throws ValidationError (its `field`
   * names the option) without a `secret` of at least 16 characters, without a redis:// or rediss:// `url` or a
   * `redis` client, on an unknown option, on a timing that is not a whole number of ms >= 1, or when `nodeTtlMs` or
   * `reclaimIdleMs` is not above `heartbeatMs`.
   */
  constructor(options: RedisBridgeOptions) {
    const resolved = resolveRedisBridgeOptions(options);
    this.nodeId = options.nodeId ?? `node-${randomBytes(4).toString('hex')}`;
    const signer = new MessageSigner(options.secret, resolved.namespace, resolved.maxMessageAgeMs, {
      encrypt: resolved.encrypt,
    });
    this.#node = new RedisNode(this.nodeId, resolved, signer);
    this.#connections = new RedisConnections(this.#node, options);
    this.#registry = new RedisRegistry(this.#node, this.#connections);
    this.#handOffs = new RedisHandOffs(this.#node, this.#connections);
    this.#serving = new RedisServing(this.#node, this.#connections);
    this.#standing = new RedisStanding(this.#node, this.#connections, () => this.#announce());
    this.#node.vouched = () => this.#standing.vouched;
    this.#backlog = new StreamBacklog(resolved.maxStreamBacklog);
    this.#janitor = new RedisJanitor(this.#node, this.#connections, this.#registry);
    this.#heartbeat = new RedisHeartbeat(this.#node, this.#connections, {
      registry: this.#registry,
      serving: this.#serving,
      handOffs: this.#handOffs,
      standing: this.#standing,
      backlog: this.#backlog,
      janitor: this.#janitor,
    });
  }

  /**
   * Connects, subscribes to the control channel, replays the cluster's standing control state to `host`, registers
   * this node and starts its readers and heartbeat. Called by the orchestrator.
   */
  async start(host: BridgeHost): Promise<void> {
    this.#stopping = undefined;
    this.#node.host = host;
    this.#node.clearAll();
    this.#standing.reset(); // before subscribing: what is heard from then on counts as applied
    try {
      await this.#open(host);
    } catch (error) {
      // Nothing it opened may outlive a failed start: a client left reconnecting would keep the host process alive.
      this.#node.running = false;
      this.#heartbeat.stop();
      this.#connections.abort();
      throw error;
    }
  }

  async #open(host: BridgeHost): Promise<void> {
    // Reconnects follow the orchestrator's retry policy unless the bridge was given its own.
    await this.#connections.open(host.retry);
    const node = this.#node;
    const subscriber = this.#connections.subscriber;
    const classes = node.key('classes');
    const cancels = node.key('cancel');
    subscriber.on('message', (channel: string, raw: string) => {
      if (channel === classes)
        void this.#heartbeat.beat(); // a new class: consume it now if this node can serve it
      else if (channel === cancels) this.#onCancel(raw);
      else this.#onControl(raw);
    });
    const channels = [node.key('control'), classes, cancels];
    await subscriber.subscribe(...channels);
    // Back after a lost connection: what was published meanwhile never reaches this subscriber. Once subscribed
    // again (ioredis resubscribes; subscribing twice is harmless and says when it is done), reconcile.
    subscriber.on('ready', () => {
      if (!node.running) return;
      subscriber
        .subscribe(...channels)
        .then(() => this.#standing.reconcile())
        .catch(() => {}); // the next heartbeat reconciles
    });
    node.running = true;
    // Subscribed first, so that nothing sent meanwhile is missed; a message both replayed and heard is applied once.
    await this.#connections.readRunId();
    await this.#standing.reconcile();
    await this.#heartbeat.beat();
    // Healthy, unless the first beat found that Redis refuses writes (or a connection is already reconnecting).
    node.deriveStatus();
    this.#loops = [
      this.#serving.read(),
      readResults(
        node,
        this.#connections,
        (result) => this.#handOffs.settle(result),
        (notice) => this.#handOffs.notice(notice),
      ),
    ];
    this.#heartbeat.start();
  }

  /**
   * Waits for the hand-offs running here to report, rejects this node's hand-offs still waiting for a result with
   * OrchestratorStoppedError, removes this node from the registry and closes the connections it made. Called by the
   * orchestrator, with what is left of its stop timeout as `timeoutMs`.
   *
   * Bounded whatever Redis does (down, paused, slow): after `timeoutMs` or `stopTimeoutMs`, whichever is shorter, it
   * stops waiting, rejects what still waits with OrchestratorStoppedError and cuts the connections it made (entries
   * still running here stay pending, for another node to reclaim). Idempotent: later calls share the first one's
   * promise.
   */
  stop(timeoutMs?: number): Promise<void> {
    this.#stopping ??= this.#stop(timeoutMs);
    return this.#stopping;
  }

  async #stop(timeoutMs: number | undefined): Promise<void> {
    // A caller's bound that is not a number of ms >= 0 (NaN, say) leaves the bridge's own.
    const given = typeof timeoutMs === 'number' && timeoutMs >= 0 ? timeoutMs : Infinity;
    const bound = Math.min(given, this.#node.options.stopTimeoutMs);
    const deadline = performance.now() + bound;
    if (this.#node.running) {
      this.#node.running = false;
      this.#heartbeat.stop();
      // Commands wait out a reconnect (maxRetriesPerRequest: null): with Redis away, these wait for ever.
      await settleWithin(this.#leave(), bound);
      this.#handOffs.rejectWaiting(); // past the bound, those #leave() did not get to
    }
    await this.#connections.close(this.#loops, Math.max(0, deadline - performance.now()));
  }

  /** The graceful part of stop(): served tasks report (and their entries are acked), then the node leaves. */
  async #leave(): Promise<void> {
    await this.#serving.settled();
    this.#handOffs.rejectWaiting();
    try {
      const pipeline = this.#connections.redis.pipeline();
      this.#registry.remove(pipeline);
      this.#serving.leave(pipeline);
      this.#janitor.leave(pipeline);
      await pipeline.exec();
    } catch {
      // Redis gone: the entry expires by itself.
    }
  }

  /** Reads the registry: the live nodes, this one included. */
  async nodes(): Promise<NodeInfo[]> {
    await this.#registry.refresh();
    return this.#registry.nodes;
  }

  /**
   * Whether another node, live by its last heartbeat, has an agent (or pool) that holds all of `requires`. Answers
   * from the registry as of this node's last heartbeat, without a round trip.
   */
  canAnyServe(requires: readonly string[]): boolean {
    return this.#registry.canAnyServe(requires);
  }

  /**
   * Adds a task to its class's stream and resolves with its result once a node reports it. Rejects with
   * {@link RemoteTaskError} when it failed there (TASK_DEAD_LETTERED after `maxDeliveries`), with the Redis error when
   * it could not be sent, and with OrchestratorStoppedError when this bridge is not started or stops first. No timeout
   * of its own: the task's `timeoutMs` bounds each attempt on the serving node.
   */
  handOff(taskId: string, task: WireTask, options?: HandOffOptions): Promise<unknown> {
    if (!this.#node.running) return Promise.reject(new OrchestratorStoppedError());
    const { stream, key } = this.#classOf(task.requires);
    const refusal = this.#backlog.refusal(stream, task.requires);
    if (refusal) return Promise.reject(refusal);
    this.#backlog.add(stream);
    return this.#handOffs.handOff(taskId, task, key, stream, options?.onNotice);
  }

  /**
   * Gives up on the hand-off `taskId`: no longer waited for, its `done` marker set (a delivery still to come is acked
   * without running) and a signed cancel published to every node (the one running it cancels it; one that misses the
   * message finds the marker on its next heartbeat). Best effort, never throws: with Redis away, the task may still
   * run, and its result is dropped.
   */
  cancel(taskId: string, reason: string): void {
    this.#handOffs.forget(taskId);
    if (!this.#node.running) return;
    const { signer, options } = this.#node;
    const sealed = signer.seal('cancel', { taskId, reason: reason.slice(0, 500) });
    this.#connections.redis
      .pipeline()
      .set(this.#node.key('done', taskId), '1', 'PX', options.doneTtlMs)
      .publish(this.#node.key('cancel'), JSON.stringify(sealed))
      .exec()
      .catch(() => {});
  }

  /** Whether the node `nodeId` holds its lease, as of this node's last registry read (no round trip). */
  isLive(nodeId: string): boolean {
    return this.#registry.isLive(nodeId);
  }

  /** A cancel on the channel: passed to the host when it checks out (signed, fresh, not seen before). */
  #onCancel(raw: string): void {
    let sealed: { m?: unknown; s?: unknown };
    try {
      sealed = JSON.parse(raw) as { m?: unknown; s?: unknown };
    } catch {
      this.#node.counts.rejected++;
      return;
    }
    const message = this.#node.signer.open<{ taskId?: unknown; reason?: unknown }>(
      'cancel',
      sealed?.m,
      sealed?.s,
      true,
    );
    if (!message || typeof message.taskId !== 'string') {
      this.#node.counts.rejected++;
      return;
    }
    const reason = typeof message.reason === 'string' ? message.reason : 'cancelled by its origin';
    this.#node.host?.cancel?.(message.taskId, reason);
  }

  /**
   * QueueFullError when the task stream of `requires` holds `maxStreamBacklog` entries or more (as of this node's last
   * heartbeat, plus what it added since), else `undefined`. Synchronous, without a round trip.
   */
  refusal(requires: readonly string[]): Error | undefined {
    return this.#backlog.refusal(this.#classOf(requires).stream, requires);
  }

  /**
   * The requirement class of `requires` and its task stream, cached: asked twice per hand-off, and encoding a class
   * (sorting, percent-encoding) costs more than the lookup.
   */
  #classOf(requires: readonly string[]): { readonly stream: string; readonly key: string } {
    // One capability (the common case) is its own lookup key; several are looked up by their JSON in a map apart, so
    // that no name can stand for another list.
    const single = requires.length === 1;
    const cache = single ? this.#streams : this.#multiStreams;
    const name = single ? requires[0]! : JSON.stringify(requires);
    let found = cache.get(name);
    if (found === undefined) {
      if (cache.size >= 1_000) cache.clear();
      const key = classKey(requires);
      found = { stream: this.#node.key('tasks', key), key };
      cache.set(name, found);
    }
    return found;
  }

  /**
   * @internal The cluster-wide rate limits and tenant budgets of this namespace (redis-limits.ts), for the
   * orchestrator's ResourceManager; only used once started.
   */
  clusterLimits(): ClusterLimitsBackend {
    return new RedisLimits(this.#node, this.#connections);
  }

  /** The submitter gave up on a hand-off (its deadline): it is neither waited for nor sent again after a reconnect. */
  forget(taskId: string): void {
    this.#handOffs.forget(taskId);
  }

  /** Publishes a signed control message to every node, this one included, and keeps its standing state in Redis. */
  async control(message: ControlMessage): Promise<void> {
    const { signer, ns } = this.#node;
    await publishControl(this.#connections.redis, signer, ns, { ...message, from: this.nodeId });
  }

  /**
   * Healthy while connected; degraded (with the reason) while reconnecting to Redis or while Redis refuses writes, and
   * for `maxMessageAgeMs` after refusing a genuine message sealed by a node that does not agree on `encrypt` (the
   * detail says which way).
   */
  status(): BridgeStatus {
    const status = this.#node.status;
    const mismatch = this.#node.signer.mismatch;
    if (status.status !== 'healthy' || !mismatch || Date.now() - mismatch.at > this.#node.options.maxMessageAgeMs)
      return status;
    const theirs = mismatch.encrypted ? 'encrypted' : 'unencrypted';
    return {
      status: 'degraded',
      detail: `${status.detail}; refused an ${theirs} ${mismatch.kind} message: every node (and the CLI, with --encrypt) must set the same \`encrypt\` option as this one (${String(this.#node.options.encrypt)})`,
    };
  }

  /** This node's counts since it was made. */
  stats(): BridgeStats {
    const { handedOff, served, reclaimed, deadLettered, rejected } = this.#node.counts;
    return { handedOff, served, reclaimed, deadLettered, rejected };
  }

  /**
   * A message on the control channel: applied when it checks out (see openControl) and is not older than what was
   * applied for its slots (see RedisStanding), else counted as rejected (forged, stale, replayed) or dropped (older).
   */
  #onControl(raw: string): void {
    const entry = openControl(this.#node.signer, raw);
    if (!entry) {
      this.#node.counts.rejected++;
      return;
    }
    if (this.#standing.heard(entry)) this.#announce();
  }

  /** Operators (the CLI) read what each node applied from its registry entry: publishes it now, not at the next beat. */
  #announce(): void {
    const host = this.#node.host;
    if (host && this.#node.running)
      void this.#registry
        .write(host)
        .exec()
        .catch(() => {});
  }
}
