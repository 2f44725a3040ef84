/** The options of `stop()`: drain or cancel, how long to wait, and who stops it. */
import { MAX_TIMER_MS } from '../util/timers.js';
import {
  expectBoolean,
  expectDuration,
  expectObject,
  expectString,
  keysOf,
  optional,
  own,
  rejectUnknownKeys,
} from '../util/validate.js';

/** Options of `stop()`. */
export interface StopOptions {
  /** Finish waiting and running tasks first (`true`), or cancel them at once (`false`). @default true */
  drain?: boolean;
  /**
   * Longest wait for draining, in ms (or `Infinity`); what is left then is cancelled and its agents disposed anyway.
   * @default 30_000
   */
  timeoutMs?: number;
  /** Who stops it, for the audit trail. @default the `audit.actor` option */
  actor?: string;
}

/** The defaults of {@link StopOptions}. */
export const STOP_DEFAULTS = Object.freeze({
  /** Finish accepted tasks before stopping. */
  drain: true,
  /** Longest wait for draining, in ms. */
  timeoutMs: 30_000,
});

/** Without draining, how long stop() still waits for agents to return from their aborted attempts before disposing them anyway. */
export const STOP_ABORT_GRACE_MS = 1_000;

const STOP_KEYS = keysOf<StopOptions>({ drain: true, timeoutMs: true, actor: true });

/** Validates `stop()` options. */
export function resolveStopOptions(input: unknown): { drain: boolean; timeoutMs: number; actor?: string } {
  if (input === undefined) return { ...STOP_DEFAULTS };
  const o = expectObject(input, 'options');
  rejectUnknownKeys(o, STOP_KEYS, 'options');
  const actor = own(o, 'actor');
  return {
    drain: optional(own(o, 'drain'), STOP_DEFAULTS.drain, (v) => expectBoolean(v, 'options.drain')),
    timeoutMs: optional(own(o, 'timeoutMs'), STOP_DEFAULTS.timeoutMs, (v) =>
      expectDuration(v, 'options.timeoutMs', true, MAX_TIMER_MS),
    ),
    ...(actor !== undefined ? { actor: expectString(actor, 'options.actor') } : {}),
  };
}
