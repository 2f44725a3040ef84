/**
 * A real redis-server for the tests: started on a free port (the `redis-server` on PATH) and stopped after, or the
 * one at REDIS_URL when set. No Redis mocks. Each test takes its own key namespace, so tests never share state.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, connect } from 'node:net';

export interface TestRedis {
  readonly url: string;
  readonly port: number;
  /** Whether this helper owns the server (and so can stop and restart it). */
  readonly owned: boolean;
  /** Kills the server (SIGKILL with `hard`), as a crash would. */
  stop(hard?: boolean): Promise<void>;
  /** Starts it again on the same port (data is not persisted). */
  restart(): Promise<void>;
}

/** A key namespace no other test uses. */
export function namespace(prefix = 'uo-test'): string {
  return `${prefix}:${randomBytes(6).toString('hex')}`;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function startRedis(): Promise<TestRedis> {
  const external = process.env['REDIS_URL'];
  if (external) {
    const port = Number(new URL(external).port || 6379);
    const refuse = async (): Promise<void> => {
      throw new Error('This test stops or restarts Redis: it needs its own redis-server (unset REDIS_URL)');
    };
    return { url: external, port, owned: false, stop: refuse, restart: refuse };
  }
  const port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], {
      stdio: 'ignore',
    });
    child.once('error', (error) => {
      throw new Error(`could not start redis-server (${error.message}); install it (apt-get install redis-server) or set REDIS_URL`);
    });
    await waitForPort(port);
  };
  await launch();
  const stop = async (hard = false): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(hard ? 'SIGKILL' : 'SIGTERM');
    await exited;
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    owned: true,
    stop,
    async restart() {
      await stop(true);
      await launch();
    },
  };
}
