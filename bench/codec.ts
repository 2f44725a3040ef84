/**
 * The cost of "faithful or refused" (src/bridge/codec.ts) per submit: `checkFaithful` on a typical small payload and on
 * a 50-field one (built in code, and parsed from JSON), against `JSON.stringify` of the same payload (what the `maxPayloadBytes` check and the bridge pay
 * anyway), and `validateTask` with and without the check (the whole added cost of a submit with a bridge configured).
 * Standalone, not part of `npm run bench`: `npx tsx bench/codec.ts`. Prints a markdown table of median ns per call.
 */
import { loadavg } from 'node:os';
import { Bench } from 'tinybench';
import { checkFaithful } from '../src/bridge/codec.js';
import { validateTask } from '../src/engine/task.js';

/** A typical small payload: a few fields, one nested object, a short array. */
const SMALL = { url: 'https://example.com/a', userId: 'u-123', options: { lang: 'en', max: 5 }, tags: ['a', 'b'] };

/** 50 fields of mixed kinds: strings, numbers, booleans, a nested object and a short array every tenth. */
const FIFTY: Record<string, unknown> = {};
for (let i = 0; i < 50; i++) {
  FIFTY[`field${i}`] =
    i % 10 === 9
      ? { id: i, name: `n${i}`, list: [i, i + 1, i + 2] }
      : i % 3 === 0
        ? `value-${i}`
        : i % 3 === 1
          ? i * 1.5
          : i % 2 === 0;
}

/** The same 50 fields as a request body parsed from JSON (V8 lays such objects out differently from a built one). */
const FIFTY_PARSED = JSON.parse(JSON.stringify(FIFTY)) as Record<string, unknown>;

const DEFAULTS = { timeoutMs: 120_000, maxAttempts: 1 } as const;
const CHECKED = { ...DEFAULTS, faithfulPayloads: true } as const;

let sink = 0;
const bench = new Bench({ time: 400, warmupTime: 100 });
for (const [name, payload] of [
  ['small', SMALL],
  ['50 fields', FIFTY],
  ['50 fields parsed', FIFTY_PARSED],
] as const) {
  const task = { type: 't', requires: ['x'], payload };
  bench
    .add(`checkFaithful ${name}`, () => checkFaithful(payload, 'task.payload'))
    .add(`JSON.stringify ${name}`, () => {
      sink += JSON.stringify(payload).length;
    })
    .add(`validateTask ${name}`, () => {
      sink += validateTask(task, DEFAULTS).priority;
    })
    .add(`validateTask+check ${name}`, () => {
      sink += validateTask(task, CHECKED).priority;
    });
}

const before = loadavg();
await bench.run();
const after = loadavg();
console.log('| Case | Median ns | p99 ns | Samples |\n| --- | --- | --- | --- |');
for (const t of bench.tasks) {
  const latency = t.result && 'latency' in t.result ? t.result.latency : undefined;
  if (!latency) throw new Error(`${t.name} did not complete`);
  console.log(
    `| ${t.name} | ${(latency.p50 * 1e6).toFixed(0)} | ${(latency.p99 * 1e6).toFixed(0)} | ${latency.samplesCount} |`,
  );
}
console.log(
  `\nload average before ${before.map((l) => l.toFixed(2)).join(' ')}, after ${after.map((l) => l.toFixed(2)).join(' ')}; node ${process.version}; checksum ${sink}`,
);
