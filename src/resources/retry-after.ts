/**
 * Reading a "retry after" hint off an error: the one place that knows the shapes vendors and HTTP clients use.
 */
import { MAX_TIMER_MS } from '../util/timers.js';

/**
 * How long an error asks the caller to wait before trying again, in ms, or `undefined` when it says nothing.
 * Understands, in order: `error.retryAfterMs` (ms), `error.retryAfter` (seconds, or an HTTP date), and a
 * `retry-after` header on `error.headers` or `error.response.headers` (a plain object, or anything with `get()`,
 * such as a fetch `Headers`). Capped at the longest delay a timer can hold.
 */
export function retryAfterMs(error: unknown, now = Date.now()): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  try {
    return read(error, now);
  } catch {
    return undefined; // a hostile getter on the error must not break the task's bookkeeping
  }
}

function read(error: object, now: number): number | undefined {
  const e = error as Record<string, unknown>;
  const ms = e['retryAfterMs'];
  if (typeof ms === 'number') return clamp(ms);
  const own = e['retryAfter'];
  if (own !== undefined) return parse(own, now);
  const response = e['response'];
  const header =
    headerOf(e['headers']) ??
    (typeof response === 'object' && response !== null
      ? headerOf((response as Record<string, unknown>)['headers'])
      : undefined);
  return header === undefined ? undefined : parse(header, now);
}

function headerOf(headers: unknown): unknown {
  if (typeof headers !== 'object' || headers === null) return undefined;
  const get = (headers as { get?: unknown }).get;
  if (typeof get === 'function') {
    try {
      return (get as (name: string) => unknown).call(headers, 'retry-after') ?? undefined;
    } catch {
      return undefined;
    }
  }
  const h = headers as Record<string, unknown>;
  return h['retry-after'] ?? h['Retry-After'];
}

/** Seconds (number or numeric string) or an HTTP date. */
function parse(value: unknown, now: number): number | undefined {
  if (typeof value === 'number') return clamp(value * 1_000);
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return clamp(seconds * 1_000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : clamp(at - now);
}

function clamp(ms: number): number | undefined {
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(ms)));
}
