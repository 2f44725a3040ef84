/**
 * Recovery time of durable runs: two nodes (child processes, test/fixtures/durable-node.ts) on one PostgreSQL server;
 * the first holds 1,000 stored tasks (8 agents, 50 ms each), the second runs idle beside it. The first is killed with
 * SIGKILL; measured is the time from the kill to the moment the second node has started every task the first left
 * running (the attempts the kill interrupted), for several lease lengths. Expected: about the lease plus the claim interval (100 ms here).
 *
 *   npx tsx bench/durable-recovery.ts
 *
 * Prints a Markdown table.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { progress } from './harness.js';
import { newDatabase, startPostgresServer } from './postgres-server.js';
import { readAttemptLog } from '../test/fixtures/durable-log.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const fixture = fileURLToPath(new URL('../test/fixtures/durable-node.ts', import.meta.url));

function node(settings: Record<string, unknown>): { child: ChildProcess; ready: Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, JSON.stringify(settings)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`node exited with ${code} before it was ready`)));
  });
  return { child, ready };
}

async function recovery(
  url: string,
  leaseMs: number,
  dir: string,
): Promise<{ leaseMs: number; tasks: number; firstMs: number; ms: number }> {
  const file = join(dir, `recovery-${leaseMs}.log`);
  const common = { url, leaseMs, workMs: 50, agents: 8, log: file };
  const second = node({ ...common, nodeId: `idle-${leaseMs}`, submit: 0 });
  await second.ready;
  const first = node({ ...common, nodeId: `busy-${leaseMs}`, submit: 1_000 });
  await first.ready;
  // Let it work a little, then kill it.
  while (readAttemptLog(file).filter((l) => l.kind === 'done').length < 100)
    await new Promise((r) => setTimeout(r, 10));
  first.child.kill('SIGKILL');
  const killedAt = performance.now();
  const lines = readAttemptLog(file);
  const finished = new Set(lines.filter((l) => l.kind === 'done').map((l) => l.id));
  // The attempts the kill interrupted: started by the first node and not finished.
  const interrupted = new Set(
    lines.filter((l) => l.kind === 'start' && l.pid === first.child.pid && !finished.has(l.id)).map((l) => l.id),
  );
  let firstMs: number | undefined;
  let ms: number;
  for (;;) {
    const startedBySecond = new Set(
      readAttemptLog(file)
        .filter((l) => l.kind === 'start' && l.pid === second.child.pid)
        .map((l) => l.id),
    );
    if (firstMs === undefined && startedBySecond.size > 0) firstMs = performance.now() - killedAt;
    if ([...interrupted].every((id) => startedBySecond.has(id))) {
      ms = performance.now() - killedAt;
      break;
    }
    if (performance.now() - killedAt > leaseMs * 10 + 30_000) throw new Error('the second node did not take over');
    await new Promise((r) => setTimeout(r, 5));
  }
  second.child.kill('SIGTERM');
  await new Promise((r) => second.child.once('exit', r));
  return { leaseMs, tasks: interrupted.size, firstMs: firstMs ?? ms, ms };
}

const server = await startPostgresServer();
const dir = mkdtempSync(join(tmpdir(), 'uo-recovery-'));
try {
  const rows: string[] = [];
  for (const leaseMs of [1_000, 2_000, 5_000]) {
    const url = await newDatabase(server.url, `recovery_${leaseMs}`);
    const r = await recovery(url, leaseMs, dir);
    progress(`lease ${leaseMs} ms: ${r.tasks} interrupted tasks running again ${Math.round(r.ms)} ms after the kill`);
    rows.push(
      `| ${leaseMs.toLocaleString('en-US')} | ${r.tasks} | ${Math.round(r.firstMs).toLocaleString('en-US')} | ${Math.round(r.ms).toLocaleString('en-US')} |`,
    );
  }
  console.log(
    '| lease (ms) | attempts the kill interrupted | from SIGKILL to the first task running on the other node (ms) | to all the interrupted ones running again (ms) |',
  );
  console.log('| ---: | ---: | ---: | ---: |');
  for (const row of rows) console.log(row);
  console.log(
    `\nclaimIntervalMs 100, heartbeatMs a third of the lease; ${server.version}, fsync=off; Node ${process.version}; ` +
      `${cpus().length} cores, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}.`,
  );
} finally {
  server.stop();
  rmSync(dir, { recursive: true, force: true });
}
