/**
 * Durable tasks on the embedded store (PGlite: PostgreSQL in the process, no database server). Run it, kill it with
 * `kill -9` in the middle (or let `--crash-after N` do that after N tasks), run it again: the restarted process takes
 * its unfinished tasks back and finishes them, the finished ones are not run again, and each task's history is
 * printed.
 *
 *   npm install @electric-sql/pglite
 *   npx tsx examples/durable-service.ts [dataDir] [--crash-after N]
 */
import { PGliteStore, UnifiedOrchestrator, type TaskContext } from 'unified-orchestrator';

const args = process.argv.slice(2);
const crashAt = args.indexOf('--crash-after');
const crashAfter = crashAt >= 0 ? Number(args[crashAt + 1]) : Infinity;
if (crashAt >= 0) args.splice(crashAt, 2);
const dataDir = args[0] ?? './data/durable-example';

const orchestrator = new UnifiedOrchestrator({
  pools: [
    {
      role: 'summariser',
      capabilities: ['text'],
      minAgents: 2,
      maxAgents: 2,
      create: () => ({
        async execute(ctx: TaskContext<{ doc: number }>) {
          // A model call would go here. `ctx.recoveries` > 0: the task was taken over from a process that died
          // holding it (an attempt may have been cut short there: make side effects idempotent).
          await new Promise((resolve) => setTimeout(resolve, 150));
          return `summary of document ${ctx.payload.doc}${ctx.recoveries > 0 ? ' (taken over after a crash)' : ''}`;
        },
      }),
    },
  ],
  metrics: false,
  store: new PGliteStore({ dataDir }),
  // A name that stays the same across restarts: the next process takes this one's unfinished tasks back at start.
  durability: { nodeId: 'durable-example' },
});
await orchestrator.start();

// Submitting again after a restart is safe: the idempotency key finds the stored task instead of adding another.
const ids: string[] = [];
for (let doc = 1; doc <= 8; doc++) {
  const handle = await orchestrator.enqueue<string>({
    type: 'summarise',
    requires: ['text'],
    payload: { doc },
    idempotencyKey: `summary-of-${doc}`,
  });
  ids.push(handle.id); // stored: a crash from here on does not lose it
}

let finished = 0;
await Promise.all(
  ids.map(async (id) => {
    const summary = await orchestrator.attach<string>(id).result;
    console.log(summary);
    if (++finished >= crashAfter) process.kill(process.pid, 'SIGKILL'); // as an OOM kill or a crash would
  }),
);

for (const id of ids) {
  const run = await orchestrator.runs.get(id);
  const timeline = (await orchestrator.runs.events(id)).map((e) => e.kind).join(' → ');
  console.log(`${id.slice(0, 8)} ${run?.status} attempts=${run?.attempts} recoveries=${run?.recoveries}: ${timeline}`);
}
await orchestrator.stop();
