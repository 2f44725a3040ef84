/**
 * How the SQL stores tell an unreachable database (StoreUnavailableError) from an error of the SQL or the data
 * (passed through): by SQLSTATE class, Node socket error codes and the drivers' connection messages.
 */
import { describe, expect, it } from 'vitest';
import { isRetryable, isUnavailable, reasonOf } from '../../src/store/sql/errors.js';

const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('isUnavailable', () => {
  it.each([
    ['08006', 'connection failure'],
    ['08001', 'cannot connect'],
    ['57P01', 'admin shutdown'],
    ['57P03', 'the server is starting'],
    ['53300', 'too many connections'],
    ['53100', 'disk full'],
    ['58030', 'I/O error'],
    ['25006', 'read-only transaction'],
  ])('SQLSTATE %s (%s) is unavailability', (code) => {
    expect(isUnavailable(withCode(code))).toBe(true);
  });

  it.each([
    ['42601', 'syntax error'],
    ['42P01', 'undefined table'],
    ['23505', 'unique violation'],
    ['22P02', 'invalid text representation'],
    ['40P01', 'deadlock'],
    ['P0001', 'raise exception'],
  ])('SQLSTATE %s (%s) is not', (code) => {
    expect(isUnavailable(withCode(code, 'connection terminated in the message does not count'))).toBe(false);
  });

  it('socket errors, the drivers connection messages, and an AggregateError of them are unavailability', () => {
    expect(isUnavailable(withCode('ECONNREFUSED'))).toBe(true);
    expect(isUnavailable(withCode('ECONNRESET'))).toBe(true);
    expect(isUnavailable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isUnavailable(new Error('timeout exceeded when trying to connect'))).toBe(true);
    expect(isUnavailable(new Error('PGlite is closed'))).toBe(true);
    expect(isUnavailable(new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')], ''))).toBe(true);
    expect(isUnavailable(new Error('wrapped', { cause: withCode('EPIPE') }))).toBe(true);
  });

  it('anything else is not', () => {
    expect(isUnavailable(new TypeError('Cannot read properties of undefined'))).toBe(false);
    expect(isUnavailable(withCode('ERR_INVALID_ARG_TYPE'))).toBe(false);
    expect(isUnavailable(undefined)).toBe(false);
    expect(isUnavailable('ECONNREFUSED')).toBe(false);
  });
});

describe('isRetryable and reasonOf', () => {
  it('retries deadlocks and serialization failures only', () => {
    expect(isRetryable(withCode('40P01'))).toBe(true);
    expect(isRetryable(withCode('40001'))).toBe(true);
    expect(isRetryable(withCode('08006'))).toBe(false);
  });

  it('says the code and the message, and the errors of an AggregateError', () => {
    expect(reasonOf(withCode('57P01', 'terminating connection due to administrator command'))).toBe(
      '57P01: terminating connection due to administrator command',
    );
    expect(reasonOf(new AggregateError([withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1')], ''))).toBe(
      'connect ECONNREFUSED 127.0.0.1:1',
    );
  });
});
