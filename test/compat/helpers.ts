/** Orchestrators, agents and fakes shared by the compat tests. */
import {
  isLegacyError,
  UnifiedOrchestrator,
  type Agent,
  type LegacyErrorResponse,
  type LegacyResult,
  type OrchestratorEventName,
  type OrchestratorEvents,
  type OrchestratorOptions,
  type PoolOptions,
  type TaskContext,
} from 'unified-orchestrator';

// --- Orchestrators ---------------------------------------------------------------------------------

const live: UnifiedOrchestrator[] = [];

/** An orchestrator without pressure sampling and with a health interval too long to fire; stopped by `stopAll`. */
export function make(options: OrchestratorOptions = {}): UnifiedOrchestrator {
  const o = new UnifiedOrchestrator({
    pools: [],
    pressure: false,
    ...options,
    health: { checkIntervalMs: 60_000, ...options.health },
  });
  live.push(o);
  return o;
}

export async function started(options: OrchestratorOptions = {}): Promise<UnifiedOrchestrator> {
  const o = make(options);
  await o.start();
  return o;
}

/** Stops every orchestrator made by `make` (call it from afterEach). */
export async function stopAll(): Promise<void> {
  await Promise.all(live.splice(0).map((o) => o.stop({ drain: false, timeoutMs: 1_000 })));
}

// --- Agents ----------------------------------------------------------------------------------------

/** One `execute` call of a {@link Lab} agent. */
export interface Run {
  readonly agentId: string;
  readonly taskId: string;
  readonly payload: unknown;
  readonly ctx: TaskContext;
}

/** A held call, settled by the test. */
export interface Held extends Run {
  release(value?: unknown): void;
  fail(error: unknown): void;
}

/**
 * Agents whose behaviour the payload picks:
 * - `{ hold: true }` waits until the test releases it (`lab.held`), or rejects with the signal's reason on abort;
 * - `{ fail: message }` throws `new Error(message)`; `{ failTimes: n, key }` fails the first n attempts of `key`;
 * - `{ cost: n }` reports n cost units and answers `{ spent: n }`;
 * - `{ sleep: ms }` answers `{ slept: ms }` after ms (honouring the signal);
 * - anything else is answered as `{ echo: payload }`.
 * Every call is recorded in `runs`.
 */
export class Lab {
  readonly runs: Run[] = [];
  readonly held: Held[] = [];
  readonly #failures = new Map<string, number>();

  agent(): Agent {
    return {
      execute: (ctx) => {
        const payload = ctx.payload as Record<string, unknown> | undefined;
        const run: Run = { agentId: ctx.agentId, taskId: ctx.taskId, payload: ctx.payload, ctx };
        this.runs.push(run);
        if (payload && typeof payload === 'object') {
          if (payload['hold'] === true) return this.#hold(run);
          if (typeof payload['fail'] === 'string') throw new Error(payload['fail']);
          if (typeof payload['failTimes'] === 'number') {
            const key = String(payload['key']);
            const failed = this.#failures.get(key) ?? 0;
            if (failed < payload['failTimes']) {
              this.#failures.set(key, failed + 1);
              throw new Error(`failure ${failed + 1} of ${key}`);
            }
            return { echo: payload, attempt: ctx.attempt };
          }
          if (typeof payload['cost'] === 'number') {
            ctx.reportCost(payload['cost']);
            return { spent: payload['cost'] };
          }
          if (typeof payload['sleep'] === 'number') {
            const ms = payload['sleep'];
            return sleep(ms, ctx.signal).then(() => ({ slept: ms }));
          }
        }
        return { echo: ctx.payload };
      },
    };
  }

  /** A pool of this lab's agents: one agent of concurrency 1, no spare, unless `extra` says otherwise. */
  pool(role: string, capabilities: readonly string[], extra: Partial<PoolOptions> = {}): PoolOptions {
    return { role, capabilities, minAgents: 1, maxAgents: 1, warmSpares: 0, create: () => this.agent(), ...extra };
  }

  /** Runs whose payload equals `payload` (by JSON). */
  runsOf(payload: unknown): Run[] {
    const json = JSON.stringify(payload);
    return this.runs.filter((r) => JSON.stringify(r.payload) === json);
  }

  /** Releases every held call (with `{ released: payload }`). */
  releaseAll(): void {
    for (const h of this.held.splice(0)) h.release();
  }

  #hold(run: Run): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const signal = run.ctx.signal;
      const onAbort = (): void => {
        const i = this.held.indexOf(held);
        if (i >= 0) this.held.splice(i, 1);
        reject(signal.reason);
      };
      const held: Held = {
        ...run,
        release: (value?: unknown) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value === undefined ? { released: run.payload } : value);
        },
        fail: (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.held.push(held);
    });
  }
}

// --- Timing and events -----------------------------------------------------------------------------

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Polls `predicate` on real timers until it holds or `timeoutMs` passes. */
export async function until(predicate: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(2);
  }
}

/** Records every payload of one orchestrator event. */
export function record<E extends OrchestratorEventName>(
  o: UnifiedOrchestrator,
  event: E,
): Array<OrchestratorEvents[E]> {
  const seen: Array<OrchestratorEvents[E]> = [];
  o.on(event, (e) => seen.push(e));
  return seen;
}

// --- Legacy answers --------------------------------------------------------------------------------

/**
 * Whether a legacy answer is an error answer. (`isLegacyError` alone is not enough: the status of a failed task
 * has an `error` too.)
 */
export function isErrorAnswer(answer: unknown): answer is LegacyErrorResponse {
  return isLegacyError(answer) && !Object.hasOwn(answer, 'status');
}

/** The value of a legacy answer; fails the test when it is an error answer. */
export function ok<T>(answer: LegacyResult<T>): T {
  if (isErrorAnswer(answer)) throw new Error(`expected a value, got the error ${JSON.stringify(answer)}`);
  return answer;
}

/** The error of a legacy answer; fails the test when it is a value. */
export function err(answer: unknown): LegacyErrorResponse['error'] {
  if (!isErrorAnswer(answer)) throw new Error(`expected an error answer, got ${JSON.stringify(answer)}`);
  return answer.error;
}

// --- Metrics ---------------------------------------------------------------------------------------

/**
 * The value of one sample in a Prometheus text exposition: `name{labels}` with the labels in any order, or
 * `undefined` when there is no such sample.
 */
export function sample(body: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of body.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (m[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? []) {
      const eq = pair.indexOf('=');
      found[pair.slice(0, eq)] = pair.slice(eq + 2, -1);
    }
    const wanted = Object.entries(labels);
    if (wanted.length === Object.keys(found).length && wanted.every(([k, v]) => found[k] === v)) return Number(m[3]);
  }
  return undefined;
}

export async function metricsText(o: UnifiedOrchestrator): Promise<string> {
  const m = await o.metrics();
  if (!m) throw new Error('metrics are off');
  return m.body;
}
