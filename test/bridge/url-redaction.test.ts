/**
 * A Redis URL that does not parse is refused with a typed error that never shows its password: ioredis's own
 * TypeError carries the whole URL in its `input` and would print it in the host's logs.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { RedisBridge, ValidationError } from 'unified-orchestrator';
import { redactRedisUrl } from '../../src/bridge/redis-options.js';
import { EXIT, run } from '../../src/cli/cli.js';

const PASSWORD = 's3cret-Pa55';
const MALFORMED = [
  `redis://user:${PASSWORD}@bad host:6379`,
  `redis://user:${PASSWORD}@host:99999`,
  `rediss://:${PASSWORD}@[::1:6379`,
];

describe('malformed Redis URLs', () => {
  it.each(MALFORMED)('RedisBridge refuses %s with a ValidationError that hides the password', (url) => {
    let caught: unknown;
    try {
      new RedisBridge({ url, secret: 'x'.repeat(16) });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ValidationError);
    expect((caught as ValidationError).field).toBe('options.url');
    expect((caught as ValidationError).message).toContain('redis');
    expect(inspect(caught, { depth: 5 })).not.toContain(PASSWORD);
  });

  it.each(MALFORMED)('the CLI answers %s with a usage error that hides the password', async (url) => {
    let out = '';
    const code = await run(['status'], {
      env: { UO_REDIS_URL: url, UO_SECRET: 'x'.repeat(32) },
      write: (text) => (out += text),
      error: (text) => (out += text),
    });
    expect(code).toBe(EXIT.usage);
    expect(out).toContain('Expected a redis:// or rediss:// URL');
    expect(out).not.toContain(PASSWORD);
  });

  it('redactRedisUrl hides user and password up to the last @, and leaves a URL without them alone', () => {
    expect(redactRedisUrl(`redis://user:${PASSWORD}@host:6379/0`)).toBe('redis://…@host:6379/0');
    expect(redactRedisUrl(`rediss://:p@ss@word@host`)).toBe('rediss://…@host');
    expect(redactRedisUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
  });
});
