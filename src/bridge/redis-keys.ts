/**
 * Key names of a RedisBridge: every key and channel is `<namespace>:<kind>[:<part>]`, and no name put into one can
 * split, join or land in another namespace's keys.
 * - The namespace has `%` and `:` percent-encoded, so the first `:` of a key ends it: namespaces `x` and `x:tasks`
 *   no longer share `x:tasks:nodes`. Nothing else in it is touched, so a Redis Cluster hash tag (`{uo}`) still works.
 * - A requirement class (the name of a task stream) is its capabilities sorted, each percent-encoded (every UTF-8 byte
 *   but `A-Z a-z 0-9 - . _ ~`), joined with `+`; `*` is the class of no capability. An encoded name holds none of
 *   `+ * : { }`, so a capability cannot split a class, pass for the empty class, reach into a stream's refusal
 *   counters or set a hash tag. Serving reads the class back with {@link requiresOf}.
 */

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/** `name` with every UTF-8 byte but the unreserved characters percent-encoded (upper-case hex). */
function encodeName(name: string): string {
  let out = '';
  for (const ch of name) {
    if (UNRESERVED.test(ch)) out += ch;
    else for (const byte of Buffer.from(ch, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The namespace as it opens every key: `%` and `:` percent-encoded. */
export function namespaceKey(namespace: string): string {
  return namespace.replace(/[%:]/g, (c) => (c === '%' ? '%25' : '%3A'));
}

/** The key (or channel) `parts` under `namespace`, joined with `:`. */
export function keyOf(namespace: string, ...parts: string[]): string {
  return [namespaceKey(namespace), ...parts].join(':');
}

/** The requirement class of a task: its capabilities sorted, each encoded, joined with `+` (`*` for none). */
export function classKey(requires: readonly string[]): string {
  return requires.length === 0 ? '*' : [...requires].sort().map(encodeName).join('+');
}

/**
 * The capabilities of the class `key`, or `undefined` when `key` is not a class this version writes (malformed, or
 * not in the canonical encoding): such a stream is never served.
 */
export function requiresOf(key: string): string[] | undefined {
  if (key === '*') return [];
  try {
    const requires = key.split('+').map((part) => decodeURIComponent(part));
    return classKey(requires) === key ? requires : undefined;
  } catch {
    return undefined; // a `%` not followed by a valid UTF-8 sequence
  }
}
