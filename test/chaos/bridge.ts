/**
 * Worker nodes in child processes for the bridge chaos scenarios: test/fixtures/bridge-worker.ts (an orchestrator on
 * a RedisBridge with 4 agents for capability `work`, answering `done:<n>` after `payload.ms`), started with tsx,
 * killed with SIGKILL or stopped with SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { onLines } from '../support/worker-process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The secret and timings of test/fixtures/bridge-worker.ts: the producer must use the same. */
export const WORKER_SECRET = 'bridge-fault-tests-shared-secret';
export const WORKER_TIMINGS = { heartbeatMs: 50, nodeTtlMs: 400, reclaimIdleMs: 400, blockMs: 100 } as const;

export interface WorkerProcess {
  readonly nodeId: string;
  readonly child: ChildProcess;
  /** Task numbers this worker ran, in order (one "ran <n>" line each). */
  readonly ran: number[];
  /** Resolves with the exit code (or the signal's name) once the process exited. */
  readonly exited: Promise<number | string>;
  readonly alive: () => boolean;
  /** SIGKILL, as a crash would; resolves once it is gone. */
  kill(): Promise<void>;
  /** SIGTERM (the fixture stops its orchestrator and exits 0); resolves with the exit code, or 'hung' after `ms`. */
  terminate(ms?: number): Promise<number | string>;
}

/** Starts a worker node; resolves once it prints "ready" (it serves from then on). */
export async function startWorker(
  redisUrl: string,
  ns: string,
  nodeId: string,
  readyWithinMs = 30_000,
): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/bridge-worker.ts', redisUrl, ns, nodeId], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, QUIET: '0' },
  });
  const ran: number[] = [];
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    if (stderr.length < 4_000) stderr += chunk.toString();
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => {
      // A grandchild (tsx's esbuild service) may still hold the pipes: do not let them keep this process alive.
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve(code ?? signal ?? 'unknown');
    }),
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`worker ${nodeId} not ready within ${readyWithinMs} ms; stderr: ${stderr}`)),
      readyWithinMs,
    );
    onLines(child.stdout, (line) => {
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
      } else if (line.startsWith('ran ')) ran.push(Number(line.slice(4)));
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`worker ${nodeId} exited (${code}) before it was ready; stderr: ${stderr}`));
    });
  });
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const kill = async (): Promise<void> => {
    if (alive()) child.kill('SIGKILL');
    await exited;
  };
  return {
    nodeId,
    child,
    ran,
    exited,
    alive,
    kill,
    async terminate(ms = 10_000) {
      if (!alive()) return exited;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([
        exited,
        new Promise<string>((resolve) => (timer = setTimeout(() => resolve('hung'), ms))),
      ]);
      clearTimeout(timer);
      if (result === 'hung') await kill();
      return result;
    },
  };
}
