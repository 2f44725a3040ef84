/**
 * Making one pool agent: a creation queued on its pool's create queue (counted against `maxAgents` until it is
 * placed or fails), the `create()` call with its timeout, retries with backoff, the first `healthCheck()`, and
 * placement as a member or a warm spare. Until it is placed a creation owns its INITIALIZING record: a stop or an
 * unregisterAgent meanwhile withdraws it, and the creation disposes and removes it.
 * The AgentPoolManager owns the registry; it reaches it through {@link CreationHost}.
 */
import { setMaxListeners } from 'node:events';
import { AgentCreationError, AgentNotFoundError, ValidationError } from '../errors.js';
import type { TypedEmitter } from '../util/typed-emitter.js';
import type { PoolEvents } from './events.js';
import type { ResourceManager } from '../resources/resource-manager.js';
import type { Agent } from './agent.js';
import type { AgentRecord } from './agent-record.js';
import type { Pool } from './pool.js';

/** Whether a creation makes a routable member or a warm spare held outside routing. */
export type CreationKind = 'member' | 'spare';

/** Why a creation was started, as `pool:scaled` reports it when the member is placed. */
export type CreationReason = 'demand' | 'spawn' | 'replace';

/** What a creation needs of the AgentPoolManager, which owns the registry. */
export interface CreationHost {
  /** Whether an agent id is already taken. */
  isTaken(agentId: string): boolean;
  /** Registers a new INITIALIZING record of `pool`, owned by its creation (see {@link AgentCreator.own}). */
  newRecord(agentId: string, pool: Pool, agent: Agent): AgentRecord;
  /** Takes a record out of the registry and of `pool`. */
  remove(record: AgentRecord, pool: Pool): void;
  /** Disposes an agent, reporting a failure as `agent:error`. */
  dispose(agent: Agent, agentId: string, role: string | undefined): Promise<void>;
  /** A creation placed its agent (the autoscaler reports it or sheds the spare). */
  created(pool: Pool, kind: CreationKind, reason: CreationReason, record: AgentRecord): void;
}

/** The agent being created was unregistered before it was ready: not a failure to retry. */
class AgentWithdrawnError extends AgentNotFoundError {
  constructor(agentId: string) {
    super(agentId, `Agent ${JSON.stringify(agentId)} was unregistered while it was being created`);
  }
}

const noop = (): void => {};

/** Starts and runs agent creations for every pool; `stop()` aborts them all and waits for them. */
export class AgentCreator {
  /** Records still INITIALIZING (owned by their #create), with a promise that settles when that creation is over. */
  readonly #initializing = new Map<AgentRecord, { readonly over: Promise<void>; readonly end: () => void }>();
  /** INITIALIZING records whose removal was asked for: their #create disposes and removes them instead of placing them. */
  readonly #withdrawn = new Set<AgentRecord>();
  /** Creations queued or running, awaited by stop() so none finishes after it. */
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #abort = new AbortController();
  readonly #host: CreationHost;
  readonly #events: TypedEmitter<PoolEvents>;
  readonly #resources: ResourceManager;

  constructor(host: CreationHost, events: TypedEmitter<PoolEvents>, resources: ResourceManager) {
    this.#host = host;
    this.#events = events;
    this.#resources = resources;
    // Every queued and running creation listens on this one stop signal; that is by design, not a leak.
    setMaxListeners(0, this.#abort.signal);
  }

  /** Whether `stop()` was called. */
  get stopped(): boolean {
    return this.#abort.signal.aborted;
  }

  /** Queues one creation on the pool's create queue; resolves with the ready record. */
  start(pool: Pool, kind: CreationKind, reason: CreationReason): Promise<AgentRecord> {
    if (kind === 'member') pool.creatingMembers++;
    else pool.creatingSpares++;
    // The count drops in the same step that places the agent (so `total` never counts it twice, and a spawn in
    // between sees the true spare count), or when the creation fails.
    let counted = true;
    const uncount = (): void => {
      if (!counted) return;
      counted = false;
      if (kind === 'member') pool.creatingMembers--;
      else pool.creatingSpares--;
    };
    const created = pool.createQueue.add(
      () => {
        // Tracked so that stop() waits for it: p-queue rejects `created` at once on abort, the creation runs on.
        const run = this.#create(pool, kind, uncount);
        this.#inflight.add(run);
        run.then(noop, noop).finally(() => this.#inflight.delete(run));
        return run;
      },
      { signal: this.#abort.signal },
    );
    return created
      .then((record) => {
        this.#host.created(pool, kind, reason, record);
        return record;
      })
      .finally(uncount);
  }

  /**
   * Marks a record just registered by {@link CreationHost.newRecord} as owned by its creation, before its first
   * event: a listener that unregisters it at once withdraws it.
   */
  own(record: AgentRecord): void {
    let end!: () => void;
    const over = new Promise<void>((resolve) => (end = resolve));
    this.#initializing.set(record, { over, end });
  }

  /**
   * Asks the creation that owns an INITIALIZING record to dispose and remove it instead of placing it. Returns a
   * promise that settles when that creation is over, or `undefined` when no creation owns the record.
   */
  withdraw(record: AgentRecord): Promise<void> | undefined {
    const initializing = this.#initializing.get(record);
    if (!initializing) return undefined;
    this.#withdrawn.add(record);
    return initializing.over;
  }

  /**
   * Aborts every queued and running creation with `reason`; the promise settles once each has cleaned up after
   * itself (never rejects).
   */
  stop(reason: unknown): Promise<unknown> {
    // Queued creations reject at once (p-queue removes an item whose signal aborts); running ones see the signal.
    this.#abort.abort(reason);
    // Creations in flight see the abort (factory, health check and backoff all listen) and clean up after themselves.
    return Promise.allSettled([...this.#inflight]);
  }

  async #create(pool: Pool, kind: CreationKind, placed: () => void): Promise<AgentRecord> {
    const { options } = pool;
    let attempts = 0;
    try {
      return await this.#resources.retry.run(
        async () => {
          // A fresh id per attempt: a failed attempt's agent may have been seen (events) and must not be confused with its successor.
          const agentId = pool.nextAgentId((id) => this.#host.isTaken(id));
          const agent = await this.#callFactory(pool, agentId);
          const record = this.#host.newRecord(agentId, pool, agent);
          return await this.#initialize(pool, kind, placed, record);
        },
        {
          attempts: options.createAttempts,
          signal: this.#abort.signal,
          onFailure: (error, attempt, willRetry) => {
            attempts = attempt;
            // Unregistered while initialising: not a failure, so neither reported nor retried.
            if (!(error instanceof AgentWithdrawnError))
              this.#events.emit('pool:create-failed', { role: pool.role, attempt, willRetry, error });
          },
          retryable: (error) => !(error instanceof AgentWithdrawnError),
        },
      );
    } catch (error) {
      if (this.#abort.signal.aborted) throw this.#abort.signal.reason;
      if (error instanceof AgentWithdrawnError) throw error;
      throw new AgentCreationError(pool.role, attempts, error);
    }
  }

  /**
   * INITIALIZING → IDLE for a freshly made agent: its first health check, then placement. Until it is placed this
   * creation owns the record: a stop or an unregisterAgent meanwhile is honoured here, with one dispose.
   */
  async #initialize(pool: Pool, kind: CreationKind, placed: () => void, record: AgentRecord): Promise<AgentRecord> {
    try {
      const healthy = await this.#initialCheck(record, pool.options.createTimeoutMs);
      const withdrawn = this.#withdrawn.has(record);
      if (!healthy || withdrawn || this.#abort.signal.aborted) {
        record.transition(healthy ? 'TERMINATED' : 'FAILED');
        await this.#host.dispose(record.agent, record.id, record.role);
        if (record.state === 'FAILED') record.transition('TERMINATED');
        this.#host.remove(record, pool);
        if (this.#abort.signal.aborted) throw this.#abort.signal.reason;
        if (withdrawn) throw new AgentWithdrawnError(record.id);
        throw new Error(`Agent ${record.id} failed its health check after creation`);
      }
      placed();
      if (kind === 'spare') {
        record.parked = true;
        pool.spares.push(record);
      } else {
        pool.members.add(record);
      }
      record.transition('IDLE');
      return record;
    } finally {
      const entry = this.#initializing.get(record);
      this.#initializing.delete(record);
      this.#withdrawn.delete(record);
      entry?.end();
    }
  }

  /** Runs the factory with a timeout and the stop signal; an agent that arrives too late is disposed. */
  #callFactory(pool: Pool, agentId: string): Promise<Agent> {
    const { create, createTimeoutMs } = pool.options;
    const role = pool.role;
    const stop = this.#abort.signal;
    const controller = new AbortController();
    return new Promise<Agent>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const onStop = (): void => fail(stop.reason);
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        stop.removeEventListener('abort', onStop);
        return true;
      };
      const fail = (error: unknown): void => {
        if (!finish()) return;
        controller.abort(error);
        reject(error);
      };
      if (Number.isFinite(createTimeoutMs)) {
        timer = setTimeout(
          () =>
            fail(new Error(`create() for role ${JSON.stringify(role)} did not settle within ${createTimeoutMs} ms`)),
          createTimeoutMs,
        );
      }
      stop.addEventListener('abort', onStop, { once: true });
      Promise.resolve()
        .then(() => create({ role, agentId, signal: controller.signal }))
        .then((agent) => {
          if (settled) {
            void this.#host.dispose(agent, agentId, role);
            return;
          }
          if (typeof agent !== 'object' || agent === null || typeof (agent as Partial<Agent>).execute !== 'function') {
            fail(
              new ValidationError(
                `pools[${role}].create`,
                `Expected create() of role ${JSON.stringify(role)} to return an agent with an execute(ctx) function`,
              ),
            );
            return;
          }
          if (finish()) resolve(agent);
        }, fail);
    });
  }

  async #initialCheck(record: AgentRecord, timeoutMs: number): Promise<boolean> {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- read once, called below as check.call(record.agent)
    const check = record.agent.healthCheck;
    if (typeof check !== 'function') return true;
    let timer: NodeJS.Timeout | undefined;
    let onStop: (() => void) | undefined;
    const stop = this.#abort.signal;
    try {
      // Settles on the check, its timeout, or stop(): a check that never returns cannot hold stop() or the process.
      const bounded = new Promise<never>((_, reject) => {
        if (Number.isFinite(timeoutMs))
          timer = setTimeout(() => reject(new Error(`healthCheck() did not settle within ${timeoutMs} ms`)), timeoutMs);
        onStop = () => reject(stop.reason);
        stop.addEventListener('abort', onStop, { once: true });
      });
      const healthy = await Promise.race([Promise.resolve().then(() => check.call(record.agent)), bounded]);
      return healthy !== false;
    } catch (error) {
      if (stop.aborted) return true; // not the agent's fault; #initialize sees the stop and cleans up
      this.#events.emit('agent:error', { agentId: record.id, role: record.role, phase: 'health-check', error });
      return false;
    } finally {
      clearTimeout(timer);
      if (onStop) stop.removeEventListener('abort', onStop);
    }
  }
}
