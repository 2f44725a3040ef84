/**
 * A RunStore over a MemoryStore whose operations can be made to fail on demand (StoreUnavailableError, as a driver's
 * refused connection comes out of a SQL store), and whose nodes' heartbeats can be silenced (their lease lapses).
 * Shared by the durable-runs tests.
 */
import { StoreUnavailableError, type RunStore } from '../../src/index.js';
import { MemoryStore } from '../../src/store/memory-store.js';

/** A store whose operations can be made to fail, per operation name (and, for heartbeats, per node). */
export class FlakyStore implements RunStore {
  readonly kind = 'memory';
  readonly durable = false;
  readonly inner: MemoryStore;
  failing = new Set<string>();
  /** Nodes whose heartbeats are dropped (the store never hears from them: their lease lapses). */
  silenced = new Set<string>();

  constructor(inner = new MemoryStore()) {
    this.inner = inner;
  }

  #gate(op: string): void {
    if (this.failing.has(op)) throw new StoreUnavailableError(op, 'connect ECONNREFUSED 127.0.0.1:5432');
  }

  open = async (): Promise<void> => this.inner.open();
  close = async (): Promise<void> => this.inner.close();
  insert: RunStore['insert'] = async (n, r) => (this.#gate('insert'), this.inner.insert(n, r));
  append: RunStore['append'] = async (e) => (this.#gate('append'), this.inner.append(e));
  heartbeat: RunStore['heartbeat'] = async (n, ms) => {
    this.#gate('heartbeat');
    if (!this.silenced.has(n)) await this.inner.heartbeat(n, ms);
  };
  claim: RunStore['claim'] = async (r) =>
    this.silenced.has(r.nodeId) ? { runs: [], deadLettered: [] } : (this.#gate('claim'), this.inner.claim(r));
  leave: RunStore['leave'] = async (n) => (this.#gate('leave'), this.inner.leave(n));
  get: RunStore['get'] = async (id, t) => (this.#gate('get'), this.inner.get(id, t));
  getMany: RunStore['getMany'] = async (ids) => (this.#gate('get'), this.inner.getMany(ids));
  events: RunStore['events'] = async (id, t) => this.inner.events(id, t);
  list: RunStore['list'] = async (q) => this.inner.list(q);
  deadLetters: RunStore['deadLetters'] = async (t, l) => this.inner.deadLetters(t, l);
  onFinished: RunStore['onFinished'] = async (l) => this.inner.onFinished(l);
  prune: RunStore['prune'] = async (b, l) => this.inner.prune(b, l);
  checkpoint: RunStore['checkpoint'] = async (n, s) => (this.#gate('checkpoint'), this.inner.checkpoint(n, s));
  park: RunStore['park'] = async (p) => (this.#gate('park'), this.inner.park(p));
  signal: RunStore['signal'] = async (s) => (this.#gate('signal'), this.inner.signal(s));
  history: RunStore['history'] = async (id, t) => (this.#gate('history'), this.inner.history(id, t));
  unclaimed: RunStore['unclaimed'] = async (b, l) => (this.#gate('unclaimed'), this.inner.unclaimed(b, l));
  lastTick: RunStore['lastTick'] = async (n) => (this.#gate('lastTick'), this.inner.lastTick(n));
  recordTick: RunStore['recordTick'] = async (n, t) => (this.#gate('recordTick'), this.inner.recordTick(n, t));
}
