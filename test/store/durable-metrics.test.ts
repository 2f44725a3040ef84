/**
 * The durable layer seen from operations: `health()` has a `store` component (healthy, degraded with the reason and
 * the buffered events while the store fails, healthy again after; absent without a store), `/healthz` stays 200 through
 * a store outage, and the metrics count write latency and batch sizes per statement, failures per operation, take-overs
 * (recovered or not) and dropped events, on a MemoryStore made to fail on demand (test/store/flaky-store.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_METRIC_PREFIX, STORE_METRIC_NAMES, UnifiedOrchestrator } from '../../src/index.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { durableNodes } from './durable-nodes.js';
import { FlakyStore } from './flaky-store.js';
import { deferred, eventually } from '../support/agents.js';

const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});

const P = DEFAULT_METRIC_PREFIX;
const M = Object.fromEntries(Object.entries(STORE_METRIC_NAMES).map(([k, v]) => [k, P + v])) as Record<
  keyof typeof STORE_METRIC_NAMES,
  string
>;

const node = durableNodes({ pressure: false });

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of a Prometheus text exposition (label values without escapes, as these tests use them). */
function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample of `name` with exactly `labels`; fails when there is none. */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = JSON.stringify(Object.entries(labels).sort());
  const found = samples(text).filter(
    (s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want,
  );
  expect(found, `${name}${JSON.stringify(labels)}`).toHaveLength(1);
  return found[0]!.value;
}

async function scrape(o: UnifiedOrchestrator): Promise<string> {
  return (await o.metrics()!).body;
}

async function healthz(o: UnifiedOrchestrator): Promise<{ status: number; body: { status: string } }> {
  const server = createServer(o.httpHandler());
  servers.push(server);
  server.keepAliveTimeout = 1;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`);
  return { status: res.status, body: (await res.json()) as { status: string } };
}

describe('health() and the store', () => {
  it('is healthy while the store answers, degraded with the reason through an outage, healthy again after', async () => {
    const store = new FlakyStore();
    const o = await node(store, () => 'ok');
    expect(await o.submit({ type: 't', requires: ['work'] })).toBe('ok');
    await eventually(() => o.stats().durable!.buffered === 0);
    expect(o.health().components.store).toMatchObject({
      status: 'healthy',
      kind: 'memory',
      available: true,
      lastError: null,
      buffered: 0,
      eventsDropped: 0,
    });
    expect(o.health().status).toBe('healthy');

    // An outage: every operation fails (a store failing inserts only is found again by the next claim or renewal).
    for (const op of ['insert', 'append', 'heartbeat', 'claim', 'get']) store.failing.add(op);
    await expect(o.enqueue({ type: 't', requires: ['work'] })).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    // Claims and renewals keep failing meanwhile: still degraded after a few of them.
    await new Promise((r) => setTimeout(r, 400));
    const down = o.health();
    expect(down.status).toBe('degraded');
    expect(down.components.store).toMatchObject({ status: 'degraded', available: false });
    expect(down.components.store?.lastError).toMatch(/ECONNREFUSED/);
    expect(down.components.store?.detail).toMatch(/memory store failing: .*ECONNREFUSED.*STORE_UNAVAILABLE/);
    // A store outage is not a reason to restart the node or take it out of rotation.
    expect(o.ready()).toBe(true);
    const probe = await healthz(o);
    expect(probe.status).toBe(200);
    expect(probe.body.status).toBe('degraded');

    store.failing.clear();
    // The next lease renewal (every 150 ms here) finds the store again.
    await eventually(() => o.health().components.store?.status === 'healthy');
    expect(o.health().status).toBe('healthy');
    expect(o.health().components.store?.available).toBe(true);
    expect(await o.submit({ type: 't', requires: ['work'] })).toBe('ok');
  });

  it('while appends fail, it is degraded and counts the buffered events; the ends reach the store once it is back', async () => {
    const store = new FlakyStore();
    const gate = deferred();
    const o = await node(store, async () => {
      await gate.promise;
      return 'late';
    });
    const handle = await o.enqueue({ type: 't', requires: ['work'] });
    await eventually(async () => (await store.get(handle.id))?.status === 'running');
    store.failing.add('append');
    gate.resolve();
    expect(await handle.result).toBe('late');
    await eventually(() => o.health().components.store?.status === 'degraded');
    // Lease renewals work meanwhile, but the writes do not: still degraded after a few heartbeats.
    await new Promise((r) => setTimeout(r, 400));
    const store1 = o.health().components.store!;
    expect(store1).toMatchObject({ status: 'degraded', available: false, buffered: 1 });
    expect(store1.detail).toMatch(/1 event waiting to be written/);
    expect((await store.inner.get(handle.id))?.status).toBe('running'); // its end waits in memory
    let text = await scrape(o);
    expect(value(text, M.available)).toBe(0);
    expect(value(text, M.eventsBuffered)).toBe(1);
    expect(value(text, M.writeFailures, { operation: 'append' })).toBeGreaterThanOrEqual(1);
    expect(value(text, M.writeFailures, { operation: 'insert' })).toBe(0);

    store.failing.clear();
    await eventually(async () => (await store.inner.get(handle.id))?.status === 'completed');
    expect((await store.inner.get(handle.id))?.result).toBe('late');
    await eventually(() => o.health().components.store?.status === 'healthy');
    expect(o.health().components.store?.buffered).toBe(0);
    text = await scrape(o);
    expect(value(text, M.available)).toBe(1);
    expect(value(text, M.eventsBuffered)).toBe(0);
  });

  it('has no store component, and registers no store metric, without a store', async () => {
    const o = new UnifiedOrchestrator({ pressure: false });
    o.registerAgent({ execute: () => 'ok' }, { capabilities: [] });
    await o.start();
    try {
      await o.submit({ type: 't' });
      expect(o.health().components.store).toBeUndefined();
      expect('store' in o.health().components).toBe(false);
      for (const name of Object.values(M)) expect(o.metricsRegistry!.getSingleMetric(name), name).toBeUndefined();
      expect(await scrape(o)).not.toMatch(/_store_|runs_adopted/);
    } finally {
      await o.stop();
    }
  });
});

describe('store metrics', () => {
  it('count write latency and batch sizes per statement, by kind', async () => {
    const store = new MemoryStore();
    const inserts: number[] = [];
    const insert = store.insert.bind(store);
    store.insert = async (n, runs) => (inserts.push(runs.length), insert(n, runs));
    const o = await node(store, () => 'ok', {}, 4);
    const n = 20;
    // One turn: one insert statement of 20 runs.
    expect(
      await Promise.all(Array.from({ length: n }, () => o.submit({ type: 't', requires: ['work'] }))),
    ).toHaveLength(n);
    // Each run's `started` and `completed` events are appended after it is stored.
    await eventually(() => o.stats().durable!.appended === 2 * n && o.stats().durable!.buffered === 0);
    const stats = o.stats().durable!;
    const text = await scrape(o);
    expect(inserts).toEqual([n]);
    expect(value(text, `${M.batchSize}_count`, { kind: 'insert' })).toBe(1);
    expect(value(text, `${M.batchSize}_sum`, { kind: 'insert' })).toBe(n);
    expect(value(text, `${M.batchSize}_bucket`, { kind: 'insert', le: '10' })).toBe(0);
    expect(value(text, `${M.batchSize}_bucket`, { kind: 'insert', le: '20' })).toBe(1);
    expect(value(text, `${M.writeDuration}_count`, { kind: 'insert' })).toBe(1);
    // Every append statement is timed and sized: as many as the batches that were not inserts, 40 events in all.
    expect(value(text, `${M.batchSize}_sum`, { kind: 'append' })).toBe(2 * n);
    expect(value(text, `${M.batchSize}_count`, { kind: 'append' })).toBe(stats.batches - 1);
    expect(value(text, `${M.writeDuration}_count`, { kind: 'append' })).toBe(stats.batches - 1);
    const seconds = value(text, `${M.writeDuration}_sum`, { kind: 'append' });
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(60); // seconds, not milliseconds
    for (const operation of ['insert', 'append', 'heartbeat', 'claim', 'prune'])
      expect(value(text, M.writeFailures, { operation }), operation).toBe(0);
    expect(value(text, M.available)).toBe(1);
    expect(value(text, M.eventsDropped)).toBe(0);
    expect(value(text, M.runsAdopted, { recovered: 'true' })).toBe(0);
    expect(value(text, M.runsAdopted, { recovered: 'false' })).toBe(0);
    expect(text).toContain(`# TYPE ${M.writeDuration} histogram`);
    expect(text).toContain(`# TYPE ${M.writeFailures} counter`);
    expect(text).toContain(`# TYPE ${M.available} gauge`);
  });

  it('count a failed insert, and a failed heartbeat, by operation', async () => {
    const store = new FlakyStore();
    const o = await node(store, () => 'ok');
    store.failing.add('insert');
    await expect(o.enqueue({ type: 't', requires: ['work'] })).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    let text = await scrape(o);
    expect(value(text, M.writeFailures, { operation: 'insert' })).toBe(1);
    expect(value(text, `${M.writeDuration}_count`, { kind: 'insert' })).toBe(0);
    store.failing.add('heartbeat');
    await eventually(async () => value(await scrape(o), M.writeFailures, { operation: 'heartbeat' }) >= 1);
    store.failing.clear();
    await eventually(async () => value(await scrape(o), M.available) === 1);
    text = await scrape(o);
    expect(value(text, M.writeFailures, { operation: 'insert' })).toBe(1);
    expect(value(text, M.writeFailures, { operation: 'append' })).toBe(0);
  });

  it('count runs taken over from a node whose lease lapsed as recovered', async () => {
    const store = new FlakyStore();
    const a = await node(store, () => new Promise(() => {}), { durability: { nodeId: 'node-a' } }, 1);
    const handle = await a.enqueue({ type: 't', requires: ['work'], maxAttempts: 3 });
    await eventually(async () => (await store.get(handle.id))?.status === 'running');
    const b = await node(store, () => 'taken over', { durability: { nodeId: 'node-b' } });
    store.silenced.add('node-a');
    expect(await b.attach(handle.id).result).toBe('taken over');
    const text = await scrape(b);
    expect(value(text, M.runsAdopted, { recovered: 'true' })).toBe(1);
    expect(value(text, M.runsAdopted, { recovered: 'false' })).toBe(0);
    expect(value(await scrape(a), M.runsAdopted, { recovered: 'true' })).toBe(0);
  });

  it('count runs given back by a clean stop and taken by another node as not recovered', async () => {
    const store = new MemoryStore();
    const a = await node(store, () => new Promise(() => {}), {}, 1);
    const handles = [
      await a.enqueue({ type: 't', requires: ['work'] }),
      await a.enqueue({ type: 't', requires: ['work'] }),
    ];
    await eventually(async () => (await store.get(handles[0]!.id))?.status === 'running');
    await a.stop({ drain: false, timeoutMs: 1_000 });
    await store.open(); // the orchestrator closed the store it was given at stop
    const b = await node(store, () => 'ran');
    for (const h of handles) expect(await b.attach(h.id).result).toBe('ran');
    const text = await scrape(b);
    expect(value(text, M.runsAdopted, { recovered: 'false' })).toBe(2);
    expect(value(text, M.runsAdopted, { recovered: 'true' })).toBe(0);
  });

  it('count progress events dropped while the store cannot take them', async () => {
    const store = new FlakyStore();
    const o = await node(store, () => 'ok', { durability: { maxBufferedEvents: 0 } }, 3);
    store.failing.add('append');
    const results = await Promise.all([1, 2, 3].map(() => o.submit({ type: 't', requires: ['work'] })));
    expect(results).toEqual(['ok', 'ok', 'ok']);
    // Each run's `started` event had no room; its `completed` event is kept.
    let text = await scrape(o);
    expect(value(text, M.eventsDropped)).toBe(3);
    expect(value(text, M.eventsDropped)).toBe(o.stats().durable!.eventsDropped);
    expect(value(text, M.eventsBuffered)).toBe(3);
    expect(o.health().components.store?.detail).toMatch(/3 progress events dropped since start/);
    store.failing.clear();
    await eventually(() => o.stats().durable!.buffered === 0);
    text = await scrape(o);
    expect(value(text, M.eventsDropped)).toBe(3); // a counter: it does not go back
    expect(value(text, M.eventsBuffered)).toBe(0);
  });
});
