/**
 * The pool part's options: one pool's declaration (`PoolOptions`), its defaults and its resolver, and the checks of
 * an agent registered from outside a pool.
 */
import { ValidationError } from '../errors.js';
import { MAX_TIMER_MS } from '../util/timers.js';
import {
  describe,
  expectDuration,
  expectFunction,
  expectInteger,
  expectObject,
  expectString,
  expectStringArray,
  keysOf,
  optional,
  own,
  rejectUnknownKeys,
} from '../util/validate.js';
import type { Agent, AgentFactory } from './agent.js';

/** Agents one pool may hold at most: a bound on memory and on creations queued at start. */
export const MAX_POOL_AGENTS = 10_000;

/** A pool of interchangeable agents for one role. */
export interface PoolOptions {
  /** Name of the role, unique per orchestrator; agent ids are `${role}-${n}`. */
  role: string;
  /** What every agent of this pool can do; tasks route by these. */
  capabilities: readonly string[];
  /** Makes one agent. Called at start (pre-warm), to refill spares and to scale up. */
  create: AgentFactory;
  /** Agents kept routable at all times. @default 5 (or `maxAgents` when that is lower) */
  minAgents?: number;
  /** Upper bound on agents, spares included. @default 75 */
  maxAgents?: number;
  /** Tasks one agent runs at once. @default 1 */
  concurrency?: number;
  /** Ready agents held outside routing, so `spawnAgent` and scale-up are instant. @default 1 */
  warmSpares?: number;
  /**
   * An agent above the minimum that stayed idle this long (ms; `Infinity` for never) is drained and disposed.
   * @default 60_000
   */
  idleTimeoutMs?: number;
  /**
   * A `create()` call (or the new agent's first `healthCheck()`) that has not settled after this many ms counts as
   * failed; `Infinity` for no limit. @default 30_000
   */
  createTimeoutMs?: number;
  /** Attempts per agent creation before the failure is reported. @default 3 */
  createAttempts?: number;
  /** `create()` calls of this pool running at once. @default 4 */
  createConcurrency?: number;
}

export interface ResolvedPoolOptions {
  readonly role: string;
  readonly capabilities: readonly string[];
  readonly create: AgentFactory;
  readonly minAgents: number;
  readonly maxAgents: number;
  readonly concurrency: number;
  readonly warmSpares: number;
  readonly idleTimeoutMs: number;
  readonly createTimeoutMs: number;
  readonly createAttempts: number;
  readonly createConcurrency: number;
}

/** The defaults of {@link PoolOptions}. */
export const POOL_DEFAULTS = Object.freeze({
  /** Agents kept routable; a pool whose `maxAgents` is lower gets `maxAgents` instead. */
  minAgents: 5,
  /** Upper bound on agents, spares included. */
  maxAgents: 75,
  /** Tasks one agent runs at once (also the default of `registerAgent`). */
  concurrency: 1,
  /** Ready agents held outside routing. */
  warmSpares: 1,
  /** Idle time (ms) after which an agent above the minimum is retired. */
  idleTimeoutMs: 60_000,
  /** Time (ms) a `create()` call may take. */
  createTimeoutMs: 30_000,
  /** Attempts per agent creation. */
  createAttempts: 3,
  /** `create()` calls of one pool running at once. */
  createConcurrency: 4,
});

const POOL_KEYS = keysOf<PoolOptions>({
  role: true,
  capabilities: true,
  create: true,
  minAgents: true,
  maxAgents: true,
  concurrency: true,
  warmSpares: true,
  idleTimeoutMs: true,
  createTimeoutMs: true,
  createAttempts: true,
  createConcurrency: true,
});

/** Validates one pool declaration; `field` is where it sits in the caller's options, for messages. */
export function resolvePoolOptions(input: unknown, field = 'pool'): ResolvedPoolOptions {
  const o = expectObject(input, field);
  rejectUnknownKeys(o, POOL_KEYS, field);
  const role = expectString(own(o, 'role'), `${field}.role`);
  const capabilities = expectStringArray(own(o, 'capabilities'), `${field}.capabilities`);
  const create = expectFunction<AgentFactory>(own(o, 'create'), `${field}.create`);
  const maxAgents = optional(own(o, 'maxAgents'), POOL_DEFAULTS.maxAgents, (v) =>
    expectInteger(v, `${field}.maxAgents`, 1, MAX_POOL_AGENTS),
  );
  const minRaw = own(o, 'minAgents');
  const minAgents =
    minRaw === undefined
      ? Math.min(POOL_DEFAULTS.minAgents, maxAgents)
      : expectInteger(minRaw, `${field}.minAgents`, 0, MAX_POOL_AGENTS);
  if (minAgents > maxAgents) {
    throw new ValidationError(
      `${field}.minAgents`,
      `Expected \`${field}.minAgents\` (${minAgents}) to be <= \`${field}.maxAgents\` (${maxAgents})`,
    );
  }
  return {
    role,
    capabilities,
    create,
    minAgents,
    maxAgents,
    concurrency: optional(own(o, 'concurrency'), POOL_DEFAULTS.concurrency, (v) =>
      expectInteger(v, `${field}.concurrency`, 1, 10_000),
    ),
    warmSpares: optional(own(o, 'warmSpares'), POOL_DEFAULTS.warmSpares, (v) =>
      expectInteger(v, `${field}.warmSpares`, 0, 1_000),
    ),
    idleTimeoutMs: optional(own(o, 'idleTimeoutMs'), POOL_DEFAULTS.idleTimeoutMs, (v) =>
      expectDuration(v, `${field}.idleTimeoutMs`, true),
    ),
    createTimeoutMs: optional(own(o, 'createTimeoutMs'), POOL_DEFAULTS.createTimeoutMs, (v) =>
      expectDuration(v, `${field}.createTimeoutMs`, true, MAX_TIMER_MS),
    ),
    createAttempts: optional(own(o, 'createAttempts'), POOL_DEFAULTS.createAttempts, (v) =>
      expectInteger(v, `${field}.createAttempts`, 1, 100),
    ),
    createConcurrency: optional(own(o, 'createConcurrency'), POOL_DEFAULTS.createConcurrency, (v) =>
      expectInteger(v, `${field}.createConcurrency`, 1, 1_000),
    ),
  };
}

/** Validates the list of pools: each one, then that no two declare the same role. */
export function resolvePools(input: unknown): ResolvedPoolOptions[] {
  if (!Array.isArray(input)) {
    throw new ValidationError(
      'options.pools',
      `Expected \`options.pools\` to be an array of pool options, got ${describe(input)}`,
    );
  }
  const pools: ResolvedPoolOptions[] = [];
  for (let i = 0; i < input.length; i++) pools.push(resolvePoolOptions((input as unknown[])[i], `options.pools[${i}]`));
  const roles = new Set<string>();
  pools.forEach((pool, i) => {
    if (roles.has(pool.role)) {
      throw new ValidationError(
        `options.pools[${i}].role`,
        `Two pools declare role ${JSON.stringify(pool.role)}; roles must be unique`,
      );
    }
    roles.add(pool.role);
  });
  return pools;
}

/** Options of `registerAgent`: an agent made outside any pool. */
export interface RegisterAgentOptions {
  /** What the agent can do. */
  capabilities: readonly string[];
  /** Its id; generated (`agent-<n>`) when omitted. Must be unique. */
  id?: string;
  /** A label shown in stats and events; such an agent is never a member of a pool. */
  role?: string;
  /** Tasks it runs at once. @default 1 (`POOL_DEFAULTS.concurrency`) */
  concurrency?: number;
}

const REGISTER_KEYS = keysOf<RegisterAgentOptions>({ capabilities: true, id: true, role: true, concurrency: true });

/** Checks an agent registered from outside a pool and its options; `id` is undefined when one is to be generated. */
export function resolveRegisterAgentOptions(
  agent: unknown,
  options: unknown,
): { capabilities: string[]; concurrency: number; role: string | undefined; id: string | undefined } {
  expectObject(agent, 'agent');
  if (typeof (agent as Partial<Agent>).execute !== 'function') {
    throw new ValidationError('agent.execute', 'Expected `agent.execute` to be a function (ctx) => Promise<result>');
  }
  const o = expectObject(options, 'options');
  rejectUnknownKeys(o, REGISTER_KEYS, 'options');
  const capabilities = expectStringArray(own(o, 'capabilities'), 'options.capabilities');
  const concurrency = optional(own(o, 'concurrency'), POOL_DEFAULTS.concurrency, (v) =>
    expectInteger(v, 'options.concurrency', 1, 10_000),
  );
  const role = optional(own(o, 'role'), undefined, (v) => expectString(v, 'options.role'));
  const id = optional(own(o, 'id'), undefined, (v) => expectString(v, 'options.id'));
  return { capabilities, concurrency, role, id };
}
