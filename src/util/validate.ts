/**
 * Validation helpers shared by every part's options, tasks and agent registration. Each one checks one value and
 * throws a ValidationError naming the field, what was expected and what was given; none reads inherited properties.
 */
import { ValidationError } from '../errors.js';
import { MAX_TIMER_MS } from './timers.js';

/**
 * The key set of an options type, written as a record so that the compiler holds it to the type: a key missing from
 * the record, or one the type does not have, fails to compile.
 *
 * @example
 * ```ts
 * const KEYS = keysOf<BreakerOptions>({ errorThresholdPercentage: true, volumeThreshold: true, ... });
 * ```
 */
export function keysOf<T extends object>(keys: { readonly [K in keyof Required<T>]: true }): ReadonlySet<string> {
  return new Set(Object.keys(keys));
}

/** How a wrong value is shown in a message: short, and never the whole of a large string or object. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return typeof value === 'object' ? 'an object' : typeof value;
}

/** Throws unless `value` is a plain object; returns it typed as a record of unknowns. */
export function expectObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(field, `Expected \`${field}\` to be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Throws on any own key of `value` that is not in `allowed`: a misspelt option must not be ignored silently. */
export function rejectUnknownKeys(value: Record<string, unknown>, allowed: ReadonlySet<string>, field: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.has(key)) throw unknownKeyError(key, allowed, field);
  }
}

export function unknownKeyError(key: string, allowed: ReadonlySet<string>, field: string): ValidationError {
  return new ValidationError(
    `${field}.${key}`,
    `Unknown field \`${field}.${key}\`; expected one of: ${[...allowed].join(', ')}`,
  );
}

/** Reads an own property only, so a polluted prototype can never supply a value. */
export function own(value: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(value, key) ? value[key] : undefined;
}

export function expectString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ValidationError(field, `Expected \`${field}\` to be a non-empty string, got ${describe(value)}`);
  }
  return value;
}

export function expectFunction<T>(value: unknown, field: string): T {
  if (typeof value !== 'function') {
    throw new ValidationError(field, `Expected \`${field}\` to be a function, got ${describe(value)}`);
  }
  return value as T;
}

/** A copy of a list of non-empty strings, duplicates removed. */
export function expectStringArray(value: unknown, field: string): string[] {
  if (!Array.isArray(value)) {
    throw new ValidationError(field, `Expected \`${field}\` to be an array of strings, got ${describe(value)}`);
  }
  const out: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < value.length; i++) {
    const item: unknown = value[i];
    if (typeof item !== 'string' || item.length === 0) {
      throw new ValidationError(
        `${field}[${i}]`,
        `Expected \`${field}[${i}]\` to be a non-empty string, got ${describe(item)}`,
      );
    }
    if (!seen.has(item)) {
      seen.add(item);
      out.push(item);
    }
  }
  return out;
}

export function expectInteger(value: unknown, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new ValidationError(field, `Expected \`${field}\` to be an integer ${range}, got ${describe(value)}`);
  }
  return value;
}

/**
 * A duration in ms: > 0 and at most `max`, or `Infinity` when `allowInfinity`. Durations that arm a Node timer
 * directly pass `MAX_TIMER_MS` as `max` (a longer timer would fire at once).
 */
export function expectDuration(value: unknown, field: string, allowInfinity = false, max = Number.MAX_VALUE): number {
  const ok =
    typeof value === 'number' &&
    value > 0 &&
    ((Number.isFinite(value) && value <= max) || (allowInfinity && value === Infinity));
  if (!ok) {
    const range = max === Number.MAX_VALUE ? '> 0' : `from 1 to ${max}`;
    const also = allowInfinity ? ' (or Infinity for none)' : '';
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a number of milliseconds ${range}${also}, got ${describe(value)}`,
    );
  }
  return value;
}

/** Like {@link expectDuration} but 0 is allowed (no delay). */
export function expectDelay(value: unknown, field: string): number {
  // A Node timer holds at most 2^31-1 ms; a longer delay would fire at once.
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_TIMER_MS) {
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a number of milliseconds from 0 to 2147483647, got ${describe(value)}`,
    );
  }
  return value;
}

/** `fallback` when `value` is undefined, else `check(value)`. */
export function optional<T>(value: unknown, fallback: T, check: (v: unknown) => T): T {
  return value === undefined ? fallback : check(value);
}

/** A number > 0 and at most `max`; `Infinity` too when `allowInfinity`. */
export function expectPositive(value: unknown, field: string, max = Number.MAX_VALUE, allowInfinity = false): number {
  if (typeof value !== 'number' || !(value > 0) || (value > max && !(allowInfinity && value === Infinity))) {
    const range = max === Number.MAX_VALUE ? '> 0' : `> 0 and <= ${max}`;
    throw new ValidationError(
      field,
      `Expected \`${field}\` to be a number ${range}${allowInfinity ? ' (or Infinity)' : ''}, got ${describe(value)}`,
    );
  }
  return value;
}

/** A budget or rate amount: a number >= 0, or Infinity. */
export function expectAmount(value: unknown, field: string): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new ValidationError(field, `Expected \`${field}\` to be a number >= 0 (or Infinity), got ${describe(value)}`);
  }
  return value;
}

/** Throws unless `value` is a boolean. */
export function expectBoolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') {
    throw new ValidationError(field, `Expected \`${field}\` to be a boolean, got ${describe(value)}`);
  }
  return value;
}
