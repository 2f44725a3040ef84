/**
 * The message signer's encryption and the delivery check of task entries, without Redis: a sealed body is ciphertext
 * that opens only under its secret, namespace and kind; tampering is refused even with a valid signature; signers
 * that disagree on encryption refuse each other's messages and remember why. `openBatch` refuses an entry whose id
 * time and `ts` disagree, or that was sealed longer than doneTtlMs ago.
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RedisBridge, ValidationError } from 'unified-orchestrator';
import { openBatch } from '../../src/bridge/redis-streams.js';
import { ENCRYPTED_PREFIX, MessageSigner } from '../../src/bridge/signing.js';
import { SECRET } from './helpers.js';

const NS = 'uo';
const encrypting = (ns = NS, secret = SECRET) => new MessageSigner(secret, ns, 60_000, { encrypt: true });

/** The signature the signer gives `m`: HMAC-SHA256 of namespace, kind and body under the secret. */
function sign(m: string, kind: string, ns = NS): string {
  return createHmac('sha256', Buffer.from(SECRET, 'utf8')).update(`${ns}\n${kind}\n${m}`).digest('hex');
}

describe('MessageSigner: encrypt', () => {
  it('seals the body as ciphertext (a fresh IV each time) that opens to the body', () => {
    const signer = encrypting();
    const body = { payload: 'the plain text', n: 1 };
    const one = signer.seal('tasks', body);
    const two = signer.seal('tasks', body);
    expect(one.m.startsWith(ENCRYPTED_PREFIX)).toBe(true);
    expect(one.m).not.toContain('plain');
    expect(Buffer.from(one.m.slice(ENCRYPTED_PREFIX.length), 'base64').subarray(0, 12)).not.toEqual(
      Buffer.from(two.m.slice(ENCRYPTED_PREFIX.length), 'base64').subarray(0, 12),
    );
    expect(encrypting().open('tasks', one.m, one.s)).toMatchObject(body);
    const joined = signer.sealJson('results', '{"results":[{"taskId":"t"}]}');
    expect(joined.m).not.toContain('taskId');
    expect(encrypting().open('results', joined.m, joined.s)).toMatchObject({ results: [{ taskId: 't' }] });
    expect(signer.mismatch).toBeUndefined();
  });

  it('refuses a tampered ciphertext, even with a valid signature', () => {
    const sealed = encrypting().seal('tasks', { payload: 'x'.repeat(100) });
    const bytes = Buffer.from(sealed.m.slice(ENCRYPTED_PREFIX.length), 'base64');
    bytes[20]! ^= 1;
    const tampered = ENCRYPTED_PREFIX + bytes.toString('base64');
    expect(encrypting().open('tasks', tampered, sealed.s)).toBeUndefined();
    expect(encrypting().open('tasks', tampered, sign(tampered, 'tasks'))).toBeUndefined();
    // Cut short, or not base64 at all.
    const short = `${ENCRYPTED_PREFIX}AAAA`;
    expect(encrypting().open('tasks', short, sign(short, 'tasks'))).toBeUndefined();
    // The untouched one still opens under a re-made signature: what failed above is the ciphertext's tag.
    expect(encrypting().open('tasks', sealed.m, sign(sealed.m, 'tasks'))).toMatchObject({ payload: 'x'.repeat(100) });
  });

  it('refuses a ciphertext opened as another kind or in another namespace, even with a valid signature', () => {
    const sealed = encrypting().seal('tasks', { payload: 'p' });
    expect(encrypting().open('results', sealed.m, sealed.s)).toBeUndefined();
    expect(encrypting().open('results', sealed.m, sign(sealed.m, 'results'))).toBeUndefined();
    expect(encrypting('other').open('tasks', sealed.m, sealed.s)).toBeUndefined();
    expect(encrypting('other').open('tasks', sealed.m, sign(sealed.m, 'tasks', 'other'))).toBeUndefined();
    // Another secret derives another key.
    const other = 'another-secret-of-the-same-size!!';
    expect(encrypting(NS, other).open('tasks', sealed.m, sealed.s)).toBeUndefined();
  });

  it('signers that disagree on encryption refuse each other, and remember it only for genuine messages', () => {
    const plain = new MessageSigner(SECRET, NS, 60_000);
    const secret = encrypting();
    const encrypted = secret.seal('tasks', { payload: 'p' });
    expect(plain.open('tasks', encrypted.m, encrypted.s)).toBeUndefined();
    expect(plain.mismatch).toMatchObject({ kind: 'tasks', encrypted: true });
    const clear = plain.seal('control', { kind: 'halt' });
    expect(secret.open('control', clear.m, clear.s)).toBeUndefined();
    expect(secret.mismatch).toMatchObject({ kind: 'control', encrypted: false });
    // A forged message (its signature does not check) says nothing about the sender's settings.
    const fresh = new MessageSigner(SECRET, NS, 60_000);
    expect(fresh.open('tasks', encrypted.m, '0'.repeat(64))).toBeUndefined();
    expect(fresh.mismatch).toBeUndefined();
  });

  it('RedisBridge takes `encrypt` as a boolean only', () => {
    const ok = { url: 'redis://127.0.0.1:1', secret: SECRET };
    expect(() => new RedisBridge({ ...ok, encrypt: true })).not.toThrow();
    let error: unknown;
    try {
      new RedisBridge({ ...ok, encrypt: 'yes' as unknown as boolean });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe('options.encrypt');
  });
});

describe('openBatch: an entry is bound to its delivery', () => {
  const signer = new MessageSigner(SECRET, NS, 60_000);
  const limits = { maxMessageAgeMs: 1_000, doneTtlMs: 10_000 };
  const body = { origin: 'A', tasks: [{ taskId: 't1', task: { type: 't' } }] };

  function entry(sealedAt: number): string[] {
    const realNow = Date.now;
    Date.now = () => sealedAt;
    try {
      const { m, s } = signer.seal('tasks', body);
      return ['m', m, 's', s];
    } finally {
      Date.now = realNow;
    }
  }

  it('opens an entry added when it was sealed, within maxMessageAgeMs either way', () => {
    const now = 1_700_000_000_000;
    const fields = entry(now - 500);
    for (const added of [now - 500, now - 1_500, now + 500]) {
      const opened = openBatch(signer, fields, `${added}-3`, limits, now);
      expect(opened?.batch).toMatchObject(body);
      expect(opened?.refusal).toBeUndefined();
    }
  });

  it('refuses an entry whose id time and ts differ by more than maxMessageAgeMs (a copy written back)', () => {
    const now = 1_700_000_000_000;
    const fields = entry(now - 5_000);
    const late = openBatch(signer, fields, `${now}-0`, limits, now);
    expect(late?.batch).toMatchObject(body);
    expect(late?.refusal).toMatchObject({ lateMs: 5_000 });
    expect(late?.refusal?.why).toMatch(/maxMessageAgeMs \(1000\)/);
    expect(openBatch(signer, fields, `${now - 6_500}-0`, limits, now)?.refusal).toMatchObject({ lateMs: -1_500 });
    // Not a stream id: refused as well.
    expect(openBatch(signer, fields, 'nonsense', limits, now)?.refusal).toBeDefined();
  });

  it('refuses an entry sealed more than doneTtlMs ago, even with an id of that time', () => {
    const now = 1_700_000_000_000;
    const fields = entry(now - 10_001);
    const old = openBatch(signer, fields, `${now - 10_001}-0`, limits, now);
    expect(old?.refusal).toMatchObject({ lateMs: 0, ageMs: 10_001 });
    expect(old?.refusal?.why).toMatch(/doneTtlMs \(10000\)/);
    expect(openBatch(signer, entry(now - 10_000), `${now - 10_000}-0`, limits, now)?.refusal).toBeUndefined();
  });

  it('still returns undefined for a forged or malformed entry', () => {
    const now = Date.now();
    const [, m] = entry(now);
    expect(openBatch(signer, ['m', m!, 's', '0'.repeat(64)], `${now}-0`, limits, now)).toBeUndefined();
    expect(openBatch(signer, [], `${now}-0`, limits, now)).toBeUndefined();
  });
});
