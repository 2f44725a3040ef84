/** The resource manager's events: breakers, pressure, budgets and rate limits. */
import type { BreakerState } from './circuit-breakers.js';
import type { PressureLevel } from './pressure.js';

/** The events the resource manager emits, with their payloads (part of `OrchestratorEvents`). */
export interface ResourceEvents {
  /**
   * A circuit breaker changed state. `breaker` is `agent:<id>` for an agent's (then `agentId` is set: open
   * quarantines the agent, half-open lets one probe task through, closed returns it) or a dependency's name.
   */
  'breaker:state': {
    /** The breaker's name: `agent:<id>`, or the dependency's name. */
    readonly breaker: string;
    /** The agent of an agent breaker; `undefined` for a dependency's. */
    readonly agentId: string | undefined;
    /** The state it left. */
    readonly from: BreakerState;
    /** The state it entered. */
    readonly to: BreakerState;
  };
  /** The memory/CPU pressure level changed; the figures are the sample that moved it. */
  'pressure:changed': {
    /** The level it left. */
    readonly from: PressureLevel;
    /** The level it entered. */
    readonly to: PressureLevel;
    /**
     * The higher of rss / memoryLimitBytes and the CPU ratio (cpu / cpuLimitPercent, the lowest of the last
     * `cpuSustainedSamples` samples; 0 until there are that many).
     */
    readonly ratio: number;
    /** Resident set size of the process, in bytes. */
    readonly rssBytes: number;
    /** V8 heap in use, in bytes. */
    readonly heapUsedBytes: number;
    /** Process CPU in percent of one core since the previous sample; `NaN` when not known yet. */
    readonly cpuPercent: number;
  };
  /** The pressure sampler failed; the level stays as it was until a sample succeeds. */
  'pressure:sample-failed': {
    /** What the sampler threw or rejected with. */
    readonly error: unknown;
  };
  /** A tenant's reported cost went over its budget; its new tasks are refused (and with `haltOnExceeded` its waiting ones cancelled). */
  'budget:exceeded': {
    /** The tenant. */
    readonly tenantId: string;
    /** Units it spent in the current window. */
    readonly spent: number;
    /** Its limit per window, in units. */
    readonly limit: number;
    /** The budget window, in ms. */
    readonly windowMs: number;
    /** Waiting tasks cancelled because of `haltOnExceeded`. */
    readonly halted: number;
  };
  /** A rate-limited capability or dependency got a retry-after and holds its work for `ms`. */
  'ratelimit:paused': {
    /** The capability or dependency name of the limit. */
    readonly name: string;
    /** How long its work is held, in ms. */
    readonly ms: number;
  };
  /** The pause is over; held work starts again as the limit allows. */
  'ratelimit:resumed': {
    /** The capability or dependency name of the limit. */
    readonly name: string;
  };
}
