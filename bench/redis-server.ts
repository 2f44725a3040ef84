/**
 * A redis-server of the bench's own: the `redis-server` on PATH, started on a free port with persistence off, and
 * stopped after the suite. The same approach as test/support/redis.ts, kept here so bench code does not import from
 * test/. Fails with a clear message when there is no redis-server binary.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { freePort } from '../test/support/free-port.js';

export interface BenchRedis {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  /** `redis-server --version`, for the report. */
  readonly version: string;
  /** Stops the server (SIGTERM, SIGKILL after a grace period); idempotent. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, HOST);
    socket.once('connect', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts a redis-server on a free port; rejects with an installation hint when the binary is missing. */
export async function startRedisServer(timeoutMs = 10_000): Promise<BenchRedis> {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    const why = probe.error ? probe.error.message : `exit code ${probe.status}`;
    throw new Error(
      `The bridge suite needs a redis-server binary on PATH to start its own Redis (${why}). Install it (e.g. \`apt-get install redis-server\`, \`brew install redis\`) or leave the suite out (\`--only\` with the other suites).`,
    );
  }
  const version = /v=(\S+)/.exec(probe.stdout)?.[1] ?? probe.stdout.trim();
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      HOST,
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'no',
      '--loglevel',
      'warning',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const failed = new Promise<never>((_, reject) => {
    child.once('error', (error) => reject(new Error(`could not start redis-server: ${error.message}`)));
    child.once('exit', (code, signal) =>
      reject(new Error(`redis-server exited (${signal ?? code}) before listening on ${port}: ${stderr.trim()}`)),
    );
  });
  failed.catch(() => {}); // only raced while starting
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const deadline = Date.now() + timeoutMs;
    const up = (async () => {
      while (!(await listening(port))) {
        if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await Promise.race([up, failed]);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `redis://${HOST}:${port}`, host: HOST, port, pid: child.pid!, version, stop };
}
