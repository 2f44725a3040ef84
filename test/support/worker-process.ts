/**
 * Worker nodes in child processes for the bridge tests: test/fixtures/bridge-worker.ts (an orchestrator on a
 * RedisBridge serving capability `work`), and the line reader their output is parsed with.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Calls `onLine` with each whole line `stream` prints (without its newline). */
export function onLines(stream: Readable, onLine: (line: string) => void): void {
  let buffer = '';
  stream.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let i: number;
    while ((i = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      onLine(line);
    }
  });
}

/**
 * Starts test/fixtures/bridge-worker.ts as node `nodeId` of namespace `ns` on the Redis at `redisUrl`; resolves once it
 * serves (it printed `ready`), rejects if it exits first. `onLine` gets every line it prints (`ran <n>`,
 * `start <n> <taskId> <attempt> <recoveries>`).
 */
export async function startWorkerProcess(
  redisUrl: string,
  ns: string,
  nodeId: string,
  onLine: (line: string) => void = () => {},
): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/bridge-worker.ts', redisUrl, ns, nodeId], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    onLines(child.stdout, (line) => {
      if (line === 'ready') resolve();
      onLine(line);
    });
    child.once('exit', (code) => reject(new Error(`worker ${nodeId} exited with ${code} before it was ready`)));
  }).catch((error: unknown) => {
    if (child.exitCode === null) child.kill('SIGKILL');
    throw error;
  });
  return child;
}
