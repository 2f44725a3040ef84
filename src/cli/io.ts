/** What every CLI command shares: the exit codes, where output goes, and the error of wrong usage. */
import type { RunStore } from '../store/store.js';

/** Exit codes: 0 done, 1 failed (Redis or the store unreachable, not every node confirmed, …), 2 wrong usage. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** Where the CLI writes and what it reads from its environment (a test passes its own). */
export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  write(text: string): void;
  error(text: string): void;
  /**
   * An open store for the commands that read or write runs (`runs`, `workflows`, `signal`) to use instead of the one
   * their flags name (the flags are still checked). The CLI neither opens nor closes it. For a process that embeds
   * the CLI beside its own store, and for tests.
   */
  readonly store?: RunStore;
}

/** Wrong usage: printed as one line with the usage text, exit 2. */
export class UsageError extends Error {}

/** Hides the password of a URL for output (the whole user-info when the URL does not parse). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/).*@/i, '$1…@');
  }
}
