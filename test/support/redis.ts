/**
 * A real redis-server for the tests: started on a free port (the `redis-server` on PATH) and stopped after, or the
 * one at REDIS_URL when set. No Redis mocks. Each test takes its own key namespace, so tests never share state.
 *
 * Suites on Redis are declared `describe.skipIf(REDIS_SERVER.skip)`: without redis-server (and without REDIS_URL) they
 * skip, unless `CI` is set (test/support/binaries.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { REDIS_SERVER } from './binaries.js';
import { freePort } from './free-port.js';

export { REDIS_SERVER };

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

/**
 * A key namespace no other test uses. No `:` in it, so that its keys are `${ns}:<kind>` as written (RedisBridge
 * percent-encodes `:` and `%` in a namespace: see src/bridge/redis-keys.ts).
 */
export function namespace(prefix = 'uo-test'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** The pid of the redis-server answering on `port` (INFO server), or undefined when none answers yet. */
async function serverPid(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    const done = (pid: number | undefined): void => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(2_000, () => done(undefined));
    socket.once('connect', () => socket.write('INFO server\r\n'));
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      reply += chunk;
      const m = /process_id:(\d+)/.exec(reply);
      if (m) done(Number(m[1]));
    });
    socket.once('error', () => done(undefined));
  });
}

/**
 * Waits until the server started as `child` answers on `port`. False when another process's server answers there
 * (two test files drew the same free port: ours failed to bind) or the child exited.
 */
async function ownsPort(child: ChildProcess, port: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    const pid = await serverPid(port);
    if (pid !== undefined) return pid === child.pid;
    if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts a redis-server of the tests' own (or answers with REDIS_URL's). `debugCommand` allows DEBUG (DEBUG SLEEP) from
 * local connections, which Redis 7 refuses by default.
 */
export async function startRedis(options: { debugCommand?: boolean } = {}): Promise<TestRedis> {
  const external = process.env['REDIS_URL'];
  if (external) {
    const port = Number(new URL(external).port || 6379);
    const refuse = async (): Promise<void> => {
      throw new Error('This test stops or restarts Redis: it needs its own redis-server (unset REDIS_URL)');
    };
    return { url: external, port, owned: false, stop: refuse, restart: refuse };
  }
  if (!REDIS_SERVER.present) throw new Error(REDIS_SERVER.message);
  let port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async (): Promise<boolean> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    args.push('--protected-mode', 'no', ...(options.debugCommand ? ['--enable-debug-command', 'local'] : []));
    const c = spawn('redis-server', args, { stdio: 'ignore' });
    child = c;
    c.once('error', (error) => {
      throw new Error(
        `could not start redis-server (${error.message}); install it (apt-get install redis-server) or set REDIS_URL`,
      );
    });
    if (await ownsPort(c, port)) return true;
    c.kill('SIGKILL');
    return false;
  };
  // Another test file may take the same free port at the same moment: then draw another one.
  for (let tries = 1; !(await launch()); tries++) {
    if (tries === 5) throw new Error('could not start a redis-server of our own on a free port in 5 tries');
    port = await freePort();
  }
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
      if (!(await launch()))
        throw new Error(`redis-server could not take port ${port} again (another process took it)`);
    },
  };
}
