/**
 * Which driver errors mean "the database cannot be reached" (then the store rejects with StoreUnavailableError) and
 * which are errors of the SQL or the data, which pass through as they are: an unavailable store is retried by
 * callers, a bug must not be disguised as one.
 */

/** SQLSTATE classes and codes that say the server is going away, overloaded or out of a resource. */
const UNAVAILABLE_CLASSES = ['08', '53', '57P', '58'];
/** 25006: read-only transaction (a hot standby, or a primary demoted under us). */
const UNAVAILABLE_CODES = new Set(['25006']);

/** Socket errors of Node's net and dns modules. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOENT',
]);

/** What `pg` and PGlite say when a connection is lost, cannot be made, or the driver was shut. */
const UNAVAILABLE_MESSAGES =
  /connection terminated|timeout exceeded when trying to connect|connection error and is not queryable|not queryable|cannot use a pool after calling end|connection ended unexpectedly|query read timeout|pglite is clos(ed|ing)|terminating connection/i;

/** SQLSTATE codes after which the same transaction can simply run again. */
const RETRYABLE = new Set(['40001', '40P01']);

interface DriverError {
  readonly code?: unknown;
  readonly message?: unknown;
  readonly errors?: unknown;
  readonly cause?: unknown;
}

/** Whether `error` says the database is unreachable (a lost or refused connection, a server shutting down). */
export function isUnavailable(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 3) return false;
  const e = error as DriverError;
  const code = typeof e.code === 'string' ? e.code : '';
  // Node's system error codes first: some (EPIPE) have the shape of a SQLSTATE code.
  if (NETWORK_CODES.has(code)) return true;
  if (code.length === 5 && /^[0-9A-Z]{5}$/.test(code)) {
    return UNAVAILABLE_CODES.has(code) || UNAVAILABLE_CLASSES.some((prefix) => code.startsWith(prefix));
  }
  if (typeof e.message === 'string' && UNAVAILABLE_MESSAGES.test(e.message)) return true;
  // Node's happy-eyeballs connect gives an AggregateError of one error per address.
  if (Array.isArray(e.errors) && e.errors.some((inner) => isUnavailable(inner, depth + 1))) return true;
  return e.cause !== undefined && isUnavailable(e.cause, depth + 1);
}

/** Whether the transaction failed on a deadlock or serialization conflict, and may run again. */
export function isRetryable(error: unknown): boolean {
  const code = (error as DriverError | null)?.code;
  return typeof code === 'string' && RETRYABLE.has(code);
}

/** A short account of `error` for StoreUnavailableError's message. */
export function reasonOf(error: unknown): string {
  const e = error as DriverError | null;
  if (e?.message === '' && Array.isArray(e.errors)) return e.errors.map(reasonOf).join('; ');
  const message = typeof e?.message === 'string' && e.message !== '' ? e.message : String(error);
  const code = typeof e?.code === 'string' ? e.code : undefined;
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}
