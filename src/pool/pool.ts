/**
 * One pool: the agents of one role, its warm spares and its creations in flight. Pure bookkeeping; the
 * AgentPoolManager decides when to create, promote and retire.
 */
import PQueue from 'p-queue';
import type { ResolvedPoolOptions } from './options.js';
import type { AgentRecord } from './agent-record.js';

/** A point-in-time view of a pool. */
export interface PoolSnapshot {
  /** The pool's role. */
  readonly role: string;
  /** What every agent of the pool can do. */
  readonly capabilities: readonly string[];
  /** Agents it keeps routable. */
  readonly minAgents: number;
  /** Its upper bound on agents, spares and creations included. */
  readonly maxAgents: number;
  /** Agents in the fleet (routable or not), spares excluded. */
  readonly members: number;
  /** Members that can take a task now (IDLE or BUSY with a free slot). */
  readonly available: number;
  /** Warm spares: ready agents held outside routing. */
  readonly spares: number;
  /** Agent creations queued or running, for members and spares. */
  readonly creating: number;
  /** Members by lifecycle state. */
  readonly states: Readonly<Record<string, number>>;
}

export class Pool {
  readonly options: ResolvedPoolOptions;
  readonly role: string;
  readonly members = new Set<AgentRecord>();
  readonly spares: AgentRecord[] = [];
  /** Creations queued or running; they count against `maxAgents` like made agents do. */
  creatingMembers = 0;
  creatingSpares = 0;
  /** Clock time until which the pool makes no agents: its recovery budget is spent (HealthMonitor). */
  suspendedUntil = 0;
  /** `create()` calls run through this queue, `createConcurrency` at a time. */
  readonly createQueue: PQueue;
  #seq = 0;

  constructor(options: ResolvedPoolOptions) {
    this.options = options;
    this.role = options.role;
    this.createQueue = new PQueue({ concurrency: options.createConcurrency });
  }

  /** The next free `${role}-${n}`; `taken` skips ids already used (for example by registerAgent). */
  nextAgentId(taken: (id: string) => boolean): string {
    let id: string;
    do id = `${this.role}-${++this.#seq}`;
    while (taken(id));
    return id;
  }

  /** Whether the pool's agents hold every capability of `requires`. */
  holdsAll(requires: readonly string[]): boolean {
    for (const c of requires) if (!this.options.capabilities.includes(c)) return false;
    return true;
  }

  /** Everything that counts against `maxAgents`. */
  get total(): number {
    return this.members.size + this.spares.length + this.creatingMembers + this.creatingSpares;
  }

  get hasRoom(): boolean {
    return this.total < this.options.maxAgents;
  }

  /** Members that are not on their way out: what the minimum is measured against. */
  get liveMembers(): number {
    let n = 0;
    for (const m of this.members) if (m.state !== 'DRAINING' && m.state !== 'FAILED' && m.state !== 'TERMINATED') n++;
    return n;
  }

  snapshot(): PoolSnapshot {
    const states: Record<string, number> = {};
    let available = 0;
    for (const m of this.members) {
      states[m.state] = (states[m.state] ?? 0) + 1;
      if (m.routable && m.hasFreeSlot) available++;
    }
    return {
      role: this.role,
      capabilities: this.options.capabilities,
      minAgents: this.options.minAgents,
      maxAgents: this.options.maxAgents,
      members: this.members.size,
      available,
      spares: this.spares.length,
      creating: this.creatingMembers + this.creatingSpares,
      states,
    };
  }
}

/** What a class of waiting tasks asks of the pools: more agents that hold `requires`. */
export interface WaitingDemand {
  /** The capabilities the class requires. */
  readonly requires: readonly string[];
  /** Its tasks waiting. */
  readonly waiting: number;
}
