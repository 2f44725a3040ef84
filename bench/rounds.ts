/**
 * Small helpers shared by the suites that compare subjects over rounds (bench/pg-drivers.ts,
 * bench/durable-peers.ts): the rotating order of subjects in a round, and the installed version of a package.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * `items` in the order of round `round` (from 0): round 0 keeps the order, round 1 starts with the second item, and
 * so on, so that a busy moment of the machine, or a warm cache left by the one before, does not always fall on the
 * same subject.
 */
export function rotated<T>(items: readonly T[], round: number): T[] {
  const n = items.length;
  return Array.from({ length: n }, (_, i) => items[(round + i) % n]!);
}

/** The installed version of a package, read from node_modules (not every package exports its package.json). */
export function installedVersion(name: string): string {
  const path = fileURLToPath(new URL(`../node_modules/${name}/package.json`, import.meta.url));
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
}
