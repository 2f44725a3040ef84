/**
 * The cost of RedisBridge's `encrypt` option: seal + open of one task message, signed only and encrypted, for
 * payloads of 1, 16 and 256 KB, in the same run (alternating) so that machine noise hits both. Standalone, not part
 * of `npm run bench`: `npx tsx bench/signing.ts`. Prints the median µs per seal+open and per KB.
 */
import { MessageSigner } from '../src/bridge/signing.js';
import { median, sampleLatency } from './harness.js';

const SECRET = 'bench-secret-of-enough-length';
const ROUNDS = 3;

async function costUs(encrypt: boolean, payload: string): Promise<number> {
  const signer = new MessageSigner(SECRET, 'uo', 60_000, { encrypt });
  const samples = await sampleLatency(
    `seal+open encrypt=${String(encrypt)}`,
    () => {
      const t0 = performance.now();
      const { m, s } = signer.seal('tasks', { origin: 'A', tasks: [{ taskId: 't', task: { payload } }] });
      if (!signer.open('tasks', m, s)) throw new Error('a sealed message did not open');
      return performance.now() - t0;
    },
    { timeMs: 300, minSamples: 50, warmupMs: 50 },
  );
  return median([...samples]) * 1_000;
}

const rows: string[] = [];
for (const kb of [1, 16, 256]) {
  const payload = 'p'.repeat(kb * 1024);
  const signed: number[] = [];
  const encrypted: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which goes first.
    if (round % 2 === 0) {
      signed.push(await costUs(false, payload));
      encrypted.push(await costUs(true, payload));
    } else {
      encrypted.push(await costUs(true, payload));
      signed.push(await costUs(false, payload));
    }
  }
  const [s, e] = [median(signed), median(encrypted)];
  rows.push(
    `| ${kb} KB | ${s.toFixed(0)} µs (${(s / kb).toFixed(1)} µs/KB) | ${e.toFixed(0)} µs (${(e / kb).toFixed(1)} µs/KB) | ×${(e / s).toFixed(2)} |`,
  );
}
console.log('| Payload | Signed | Encrypted | Ratio |\n| --- | --- | --- | --- |');
console.log(rows.join('\n'));
