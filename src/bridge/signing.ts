/**
 * Signed messages: every message on the bridge is `{ m, s }`, the JSON body and its HMAC-SHA256 under the shared
 * secret (bound to the namespace and the message kind, so a signature cannot be moved to another channel).
 * Unsigned, forged, stale or replayed messages are dropped and counted by the caller, never acted on.
 *
 * With `encrypt`, the body is sealed as AES-256-GCM ciphertext instead of JSON text: `m` is {@link ENCRYPTED_PREFIX}
 * and the base64 of a random 96-bit IV, the ciphertext and its 128-bit tag, under a key derived from the secret with
 * HKDF-SHA256 (not the HMAC key), with the namespace and the kind as associated data; the HMAC then signs that text.
 * A signer opens only messages sealed the way it seals them: the other kind, genuine (its signature checks) but from
 * a node that does not agree on `encrypt`, is refused and remembered as a {@link SignerMismatch} for diagnosis.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createSecretKey,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { BoundedSet } from '../util/fifo.js';

/** How an encrypted body opens: never `{`, which opens every JSON body. */
export const ENCRYPTED_PREFIX = 'aes256gcm:';
/** HKDF's `info` for the encryption key: a key for this use alone, unrelated to the HMAC key. */
const ENCRYPTION_KEY_INFO = 'unified-orchestrator bridge message encryption v1';
/** Bytes of a GCM IV (96 bits, the size GCM is made for) and of its tag. */
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Options of a {@link MessageSigner}. */
export interface MessageSignerOptions {
  /** Seal bodies as AES-256-GCM ciphertext, and open only such messages. @default false */
  readonly encrypt?: boolean;
}

/** A genuine message refused because its sender does not agree with this signer on encryption. */
export interface SignerMismatch {
  /** When (ms since the epoch) the latest one arrived. */
  readonly at: number;
  /** Its kind (`tasks`, `results`, `control`, `node`). */
  readonly kind: string;
  /** Whether that message was encrypted (and this signer does not encrypt), or the other way round. */
  readonly encrypted: boolean;
}

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
  /** The AES-256-GCM key, when bodies are encrypted. */
  readonly #cipherKey: KeyObject | undefined;
  #mismatch: SignerMismatch | undefined;

  constructor(secret: string, namespace: string, maxAgeMs: number, options: MessageSignerOptions = {}) {
    this.#key = createSecretKey(Buffer.from(secret, 'utf8'));
    this.#namespace = namespace;
    this.#maxAgeMs = maxAgeMs;
    if (options.encrypt === true) {
      const derived = hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.alloc(0), ENCRYPTION_KEY_INFO, 32);
      this.#cipherKey = createSecretKey(Buffer.from(derived));
    }
  }

  /** Whether this signer seals bodies as ciphertext (and opens only such messages). */
  get encrypts(): boolean {
    return this.#cipherKey !== undefined;
  }

  /**
   * The latest genuine message refused because its sender does not agree on encryption (see
   * {@link MessageSignerOptions.encrypt}), or `undefined` when none came.
   */
  get mismatch(): SignerMismatch | undefined {
    return this.#mismatch;
  }

  /**
   * Serialises and signs `body` (an `id` and `ts` are added for replay checks). `notBefore` (ms since the epoch) is
   * the least `ts` to stamp: a control message that must come after a standing one sealed by a clock running ahead.
   */
  seal(kind: string, body: object, notBefore = 0): { m: string; s: string } {
    return this.#sign(kind, JSON.stringify({ ...body, id: this.#nextId(), ts: Math.max(Date.now(), notBefore) }));
  }

  /**
   * Signs a body already serialised: `json` is the JSON text of an object without `id` or `ts` members, which are
   * added as {@link seal} adds them. For large messages joined from items serialised one by one.
   */
  sealJson(kind: string, json: string): { m: string; s: string } {
    const stamp = `"id":${JSON.stringify(this.#nextId())},"ts":${Date.now()}}`;
    return this.#sign(kind, json === '{}' ? `{${stamp}` : `${json.slice(0, -1)},${stamp}`);
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
    const text = this.#plain(kind, m);
    if (text === undefined) return undefined;
    let body: unknown;
    try {
      body = JSON.parse(text);
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

  /** `{ m, s }` for the body `json`: encrypted first when this signer encrypts, then signed. */
  #sign(kind: string, json: string): { m: string; s: string } {
    const m = this.#cipherKey ? this.#encrypt(this.#cipherKey, kind, json) : json;
    return { m, s: this.#mac(kind, m) };
  }

  #encrypt(key: KeyObject, kind: string, json: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(this.#associated(kind));
    const sealed = Buffer.concat([iv, cipher.update(json, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return ENCRYPTED_PREFIX + sealed.toString('base64');
  }

  /**
   * The JSON text of a message whose signature checked: decrypted when this signer encrypts; `undefined` when it does
   * not decrypt, or was sealed the other way (encrypted or not) than this signer seals, which is remembered.
   */
  #plain(kind: string, m: string): string | undefined {
    const encrypted = m.startsWith(ENCRYPTED_PREFIX);
    if (encrypted !== (this.#cipherKey !== undefined)) {
      this.#mismatch = { at: Date.now(), kind, encrypted };
      return undefined;
    }
    if (!this.#cipherKey) return m;
    const sealed = Buffer.from(m.slice(ENCRYPTED_PREFIX.length), 'base64');
    if (sealed.length < IV_BYTES + TAG_BYTES) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#cipherKey, sealed.subarray(0, IV_BYTES), {
        authTagLength: TAG_BYTES,
      });
      decipher.setAAD(this.#associated(kind));
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      return Buffer.concat([
        decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]).toString('utf8');
    } catch {
      return undefined; // the tag does not check: tampered, or sealed for another namespace or kind
    }
  }

  /** The associated data of a ciphertext: the namespace and the kind, as the HMAC binds them. */
  #associated(kind: string): Buffer {
    return Buffer.from(`${this.#namespace}\n${kind}`, 'utf8');
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
