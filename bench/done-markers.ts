/**
 * What a RedisBridge `done` marker costs Redis, beside the layouts that could replace it: N markers written on a
 * redis-server of the bench's own, INFO memory's used_memory before and after, divided by N. Not part of `npm run
 * bench` (it measures Redis, not the orchestrator); run it when the marker layout is in question:
 *
 *   npx tsx bench/done-markers.ts [N]
 *
 * A marker must be found by any node in one round trip from the task id alone, and outlive `doneTtlMs`. A plain key
 * with a TTL does both. Hashes hold no per-field TTL before Redis 7.4, so a hash layout expires whole buckets of time
 * (a marker then lives one to two bucket lengths); only hashes small enough for the listpack encoding (128 fields by
 * default, `hash-max-listpack-entries`) are much cheaper per entry, which a fixed number of shards keeps only within a
 * band of throughput.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { startRedisServer } from './redis-server.js';

const N = Number(process.argv[2] ?? 200_000);
const instance = randomBytes(3).toString('hex');
/** Task ids as handOffId makes them: node id, instance, sequence in base 36. */
const ids = Array.from({ length: N }, (_, i) => `node-1a2b3c4d-${instance}-${i.toString(36)}`);
const digest = (id: string): string => createHash('sha256').update(id).digest('base64url').slice(0, 16);

type Write = (p: ReturnType<Redis['pipeline']>, id: string, i: number) => void;

const layouts: Array<[string, Write]> = [
  ['today: SET <ns>:done:<taskId> 1 PX ttl', (p, id) => void p.set(`uo:done:${id}`, '1', 'PX', 3_600_000)],
  ['SET <ns>:d:<16-char digest> 1 PX ttl', (p, id) => void p.set(`uo:d:${digest(id)}`, '1', 'PX', 3_600_000)],
  ['one hash per time bucket, field <taskId> (hashtable)', (p, id) => void p.hset('uo:done:b', id, '1')],
  ['one hash per time bucket, field <digest> (hashtable)', (p, id) => void p.hset('uo:done:b', digest(id), '1')],
  ['hashes of 100 fields (listpack), field <taskId>', (p, id, i) => void p.hset(`uo:done:b:${i % (N / 100)}`, id, '1')],
  [
    'hashes of 100 fields (listpack), field <digest>',
    (p, id, i) => void p.hset(`uo:done:b:${i % (N / 100)}`, digest(id), '1'),
  ],
  ['4,096 hashes, field <digest>', (p, id, i) => void p.hset(`uo:done:b:${i % 4096}`, digest(id), '1')],
  ['one set per time bucket, member <taskId>', (p, id) => void p.sadd('uo:done:s', id)],
];

const server = await startRedisServer();
const redis = new Redis(server.url);
const used = async (): Promise<number> => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]);
try {
  process.stdout.write(`| Layout (${N.toLocaleString('en')} markers, redis ${server.version}) | Bytes per marker |\n`);
  process.stdout.write('| --- | --- |\n');
  for (const [name, write] of layouts) {
    await redis.flushall();
    const before = await used();
    for (let i = 0; i < N; i += 1_000) {
      const p = redis.pipeline();
      for (let j = i; j < Math.min(N, i + 1_000); j++) write(p, ids[j]!, j);
      await p.exec();
    }
    process.stdout.write(`| ${name} | ${(((await used()) - before) / N).toFixed(1)} |\n`);
  }
} finally {
  redis.disconnect();
  await server.stop();
}
