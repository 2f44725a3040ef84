/** A free TCP port on 127.0.0.1, for the servers the tests and benches start themselves (Redis, PostgreSQL). */
import { createServer } from 'node:net';

/**
 * A port nothing listens on right now (the OS picks it). Another process may take it before the caller binds it: the
 * callers try again with another one when their server fails to start there.
 */
export async function freePort(): Promise<number> {
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
