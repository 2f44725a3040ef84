/**
 * The setup every RedisBridge test file on a real Redis shares: its own redis-server for the file, a fleet of
 * orchestrators stopped after each test, raw clients disconnected after each test, and bridges with the fast timings.
 * Call `redisSuite()` once at the top level of a test file.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { RedisBridge, type RedisBridgeOptions } from 'unified-orchestrator';
import { startRedis, type TestRedis } from '../support/redis.js';
import { FAST, Fleet, SECRET } from './helpers.js';

/** What a test file gets from {@link redisSuite}. */
export interface RedisSuite {
  /** The file's redis-server (started before its first test). */
  readonly redis: TestRedis;
  /** Orchestrators made through it are stopped after each test. */
  readonly fleet: Fleet;
  /** A raw client of the file's Redis, disconnected after the test. */
  readonly raw: (options?: RedisOptions) => Redis;
  /** A RedisBridge on the file's Redis with the test secret and the fast timings, `extra` over them. */
  readonly bridge: (ns: string, nodeId: string, extra?: Partial<RedisBridgeOptions>) => RedisBridge;
}

/** Registers the file's hooks (start Redis, clean up after each test, stop Redis) and returns its tools. */
export function redisSuite(options?: Parameters<typeof startRedis>[0]): RedisSuite {
  let server: TestRedis | undefined;
  const raws: Redis[] = [];
  const fleet = new Fleet();
  beforeAll(async () => {
    server = await startRedis(options);
  }, 30_000);
  afterEach(async () => {
    await fleet.stopAll();
    for (const r of raws.splice(0)) r.disconnect();
  });
  afterAll(async () => {
    if (server?.owned) await server.stop();
  });
  const redis = (): TestRedis => {
    if (!server) throw new Error('redisSuite: Redis is not started yet (use it inside a test or a hook)');
    return server;
  };
  return {
    get redis() {
      return redis();
    },
    fleet,
    raw: (clientOptions: RedisOptions = {}) => {
      const r = new Redis(redis().url, clientOptions);
      raws.push(r);
      return r;
    },
    bridge: (ns, nodeId, extra = {}) =>
      new RedisBridge({ url: redis().url, secret: SECRET, namespace: ns, nodeId, ...FAST, ...extra }),
  };
}
