/**
 * The orchestrator's own durable runs as subjects of the durable bench (bench/durable-peers.ts): an orchestrator with
 * CONCURRENCY no-op agents on a PostgresStore, enqueuing with `enqueue()` (one task per call, grouped into one
 * insert per event-loop turn by the store writer) or `BATCH` tasks per call (all in one turn). A job is complete
 * when its end is committed: the store's NOTIFY of finished runs, which PostgreSQL delivers only after the commit.
 *
 * Also, apart from the peers: submit-to-commit (how many tasks per second `enqueue()` stores, and how long a caller
 * waits for its task to be stored) on the server and on the embedded store (PGlite), by `durableCommit`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGliteStore, PostgresStore, UnifiedOrchestrator, type RunStore } from 'unified-orchestrator';
import type { DurableSubject } from './durable-harness.js';
import { summarise } from './harness.js';

/** This package's version. */
const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;

/** The orchestrator on `store`, with `concurrency` no-op agents, claiming quickly (a bench has no other node). */
function orchestratorOn(store: RunStore, concurrency: number): UnifiedOrchestrator {
  return new UnifiedOrchestrator({
    pools: [
      {
        role: 'noop',
        capabilities: ['noop'],
        minAgents: concurrency,
        maxAgents: concurrency,
        warmSpares: 0,
        create: () => ({ execute: () => null }),
      },
    ],
    metrics: false,
    maxQueueSize: 1_000_000,
    store,
    durability: { pruneIntervalMs: Infinity },
  });
}

/** unified-orchestrator's durable runs on a PostgreSQL server, `batch` tasks per enqueue call. */
export function orchestratorSubject(batch: number, concurrency: number): DurableSubject {
  let orchestrator: UnifiedOrchestrator | undefined;
  let stopListening: (() => Promise<void>) | undefined;
  const keyOf = new Map<string, number>();
  const early = new Set<string>();
  let report: (key: number) => void = () => {};
  return {
    name: `unified-orchestrator ${VERSION}, ${batch === 1 ? 'enqueue' : `enqueue × ${batch} in one turn`}`,
    settings: `${concurrency} agents, PostgresStore (pg pool of 10), grouped commits per event-loop turn, LISTEN/NOTIFY`,
    batch,
    async setup(url, completed) {
      report = completed;
      const store = new PostgresStore({ connectionString: url });
      orchestrator = orchestratorOn(store, concurrency);
      await orchestrator.start();
      stopListening = await store.onFinished((ids) => {
        for (const id of ids) {
          const key = keyOf.get(id);
          if (key === undefined) early.add(id);
          else {
            keyOf.delete(id);
            report(key);
          }
        }
      });
    },
    async enqueue(keys) {
      const o = orchestrator!;
      await Promise.all(
        keys.map(async (key) => {
          const handle = await o.enqueue({ type: 'noop', requires: ['noop'] });
          if (early.delete(handle.id)) report(key);
          else keyOf.set(handle.id, key);
        }),
      );
    },
    async teardown() {
      await stopListening?.();
      await orchestrator?.stop();
      orchestrator = undefined;
    },
  };
}

/** What `durableCommit` measured on one store. */
export interface CommitResult {
  readonly store: string;
  readonly tasks: number;
  /** Tasks stored per second, from the first `enqueue()` to the last one resolved. */
  readonly storedPerSecond: number;
  /** How long one `enqueue()` waited for its task to be committed, ms. */
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/**
 * Submit-to-commit: `producers` callers each enqueue tasks one by one (awaiting each commit, as a request handler
 * answering "stored" would) until `tasks` are stored. The agents run them meanwhile.
 */
export async function durableCommit(
  kind: 'postgres' | 'pglite',
  url: string | undefined,
  tasks: number,
  producers: number,
): Promise<CommitResult> {
  const dir = kind === 'pglite' ? mkdtempSync(join(tmpdir(), 'uo-bench-pglite-')) : undefined;
  const store =
    kind === 'postgres' ? new PostgresStore({ connectionString: url! }) : new PGliteStore({ dataDir: dir! });
  const orchestrator = orchestratorOn(store, 8);
  await orchestrator.start();
  try {
    const waits: number[] = [];
    let next = 0;
    const startedAt = performance.now();
    await Promise.all(
      Array.from({ length: producers }, async () => {
        while (next < tasks) {
          next++;
          const t0 = performance.now();
          await orchestrator.enqueue({ type: 'noop', requires: ['noop'] });
          waits.push(performance.now() - t0);
        }
      }),
    );
    const seconds = (performance.now() - startedAt) / 1000;
    const s = summarise(waits);
    return {
      store: kind === 'postgres' ? 'PostgresStore (server)' : 'PGliteStore (embedded)',
      tasks: waits.length,
      storedPerSecond: waits.length / seconds,
      p50Ms: s.p50Us / 1_000,
      p99Ms: s.p99Us / 1_000,
    };
  } finally {
    await orchestrator.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
