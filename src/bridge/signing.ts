/**
 * Signed messages: every message on the bridge is `{ m, s }`, the JSON body and its HMAC-SHA256 under the shared
 * secret (bound to the namespace and the message kind, so a signature cannot be moved to another channel).
 * Unsigned, forged, stale or replayed messages are dropped and counted by the caller, never acted on.
 */
import { createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { BoundedSet } from '../util/fifo.js';

/** Control message ids remembered against replays. */
const REPLAY_MEMORY = 10_000;
/** Hex characters of a signer's random id prefix. */
const ID_PREFIX_CHARS = 16;

/** Seals and opens the messages of one namespace under one secret, remembering control message ids against replays. */
export class MessageSigner {
  readonly #key: KeyObject;
  /** Message ids: a random prefix per signer and a counter (unique without a random draw per message). */
  readonly #idPrefix = randomBytes(ID_PREFIX_CHARS / 2).toString('hex');
  #seq = 0;
  readonly #namespace: string;
  readonly #maxAgeMs: number;
  readonly #seen = new BoundedSet<string>(REPLAY_MEMORY);

  constructor(secret: string, namespace: string, maxAgeMs: number) {
    this.#key = createSecretKey(Buffer.from(secret, 'utf8'));
    this.#namespace = namespace;
    this.#maxAgeMs = maxAgeMs;
  }

  /**
   * Serialises and signs `body` (an `id` and `ts` are added for replay checks). `notBefore` (ms since the epoch) is
   * the least `ts` to stamp: a control message that must come after a standing one sealed by a clock running ahead.
   */
  seal(kind: string, body: object, notBefore = 0): { m: string; s: string } {
    const m = JSON.stringify({ ...body, id: this.#nextId(), ts: Math.max(Date.now(), notBefore) });
    return { m, s: this.#mac(kind, m) };
  }

  /**
   * Signs a body already serialised: `json` is the JSON text of an object without `id` or `ts` members, which are
   * added as {@link seal} adds them. For large messages joined from items serialised one by one.
   */
  sealJson(kind: string, json: string): { m: string; s: string } {
    const stamp = `"id":${JSON.stringify(this.#nextId())},"ts":${Date.now()}}`;
    const m = json === '{}' ? `{${stamp}` : `${json.slice(0, -1)},${stamp}`;
    return { m, s: this.#mac(kind, m) };
  }

  /**
   * Verifies and parses a message; `undefined` when unsigned, forged or unparsable. With `fresh`, also when older
   * than the max age or seen before (replayed), for messages that must arrive once (control).
   */
  open<T>(kind: string, m: unknown, s: unknown, fresh = false): (T & { id: string; ts: number }) | undefined {
    if (typeof m !== 'string' || typeof s !== 'string' || !/^[0-9a-f]{64}$/.test(s)) return undefined;
    const expected = Buffer.from(this.#mac(kind, m), 'hex');
    const given = Buffer.from(s, 'hex');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let body: unknown;
    try {
      body = JSON.parse(m);
    } catch {
      return undefined;
    }
    if (typeof body !== 'object' || body === null) return undefined;
    const { id, ts } = body as { id?: unknown; ts?: unknown };
    if (typeof id !== 'string' || typeof ts !== 'number') return undefined;
    if (fresh) {
      if (Math.abs(Date.now() - ts) > this.#maxAgeMs || this.#seen.has(id)) return undefined;
      this.#seen.add(id);
    }
    return body as T & { id: string; ts: number };
  }

  /** The signer that sealed a message and the message's place in its sequence, from the message's `id`. */
  static origin(id: string): { sender: string; seq: number } {
    return { sender: id.slice(0, ID_PREFIX_CHARS), seq: Number.parseInt(id.slice(ID_PREFIX_CHARS), 36) || 0 };
  }

  #nextId(): string {
    return `${this.#idPrefix}${(++this.#seq).toString(36)}`;
  }

  #mac(kind: string, m: string): string {
    return createHmac('sha256', this.#key)
      .update(this.#namespace)
      .update('\n')
      .update(kind)
      .update('\n')
      .update(m)
      .digest('hex');
  }
}
