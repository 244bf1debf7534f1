import { describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { parseHandle, parseHandleReference } from '../src/names/handle.js';

/** The IdnsError thrown by fn; fails the test when fn throws nothing or something else. */
function errorOf(fn: () => unknown): IdnsError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(IdnsError);
    return err as IdnsError;
  }
  throw new Error('expected an IdnsError, but nothing was thrown');
}

describe('parseHandleReference: the spellings of a handle', () => {
  it.each<[string, string, string]>([
    ['plain', 'alice@example.com', 'alice@example.com'],
    ['fediverse @ prefix', '@alice@example.com', 'alice@example.com'],
    ['acct URI', 'acct:alice@example.com', 'alice@example.com'],
    ['acct scheme is case-insensitive', 'ACCT:alice@example.com', 'alice@example.com'],
    ['mixed-case scheme', 'AcCt:Alice@Example.COM', 'alice@example.com'],
    ['case folding with @ prefix', '@Alice@Example.COM', 'alice@example.com'],
    ['percent-encoded local part', 'acct:a%6Cice@example.com', 'alice@example.com'],
    ['percent-encoded hyphen and underscore', 'acct:a%2Db%5Fc@example.com', 'a-b_c@example.com'],
    ['percent-encoded dot, lower-case hex', 'acct:a%2eb@example.com', 'a.b@example.com'],
    ['percent-encoded dot, upper-case hex', 'acct:a%2Eb@example.com', 'a.b@example.com'],
    ['percent-encoded UTF-8 host (IDNA applies after decoding)', 'acct:alice@b%C3%BCcher.example', 'alice@xn--bcher-kva.example'],
    ['IDNA host with @ prefix', '@alice@bücher.example', 'alice@xn--bcher-kva.example'],
  ])('%s: %s', (_name, input, expected) => {
    const parsed = parseHandleReference(input);
    expect(parsed.handle).toBe(expected);
    expect(`${parsed.local}@${parsed.host}`).toBe(expected);
    // The same normal form parseHandle gives the plain spelling: one handle, three spellings.
    expect(parsed).toEqual(parseHandle(expected));
  });
});

describe('parseHandleReference: refused, with a clear invalid_handle error', () => {
  it.each<[string, string, RegExp]>([
    ['acct: alone', 'acct:', /without a user part and host/],
    ['acct without @', 'acct:alice', /has no '@'/],
    ['acct with two raw @', 'acct:alice@host@x', /more than one '@'.*%40/],
    ['acct with an empty user part', 'acct:@example.com', /empty user part/],
    ['acct with an empty host', 'acct:alice@', /empty host/],
    ['acct with @ prefix inside', 'acct:@alice@example.com', /more than one '@'/],
    ['percent-encoded @ in the user part', 'acct:alice%40home@example.com', /contains '@' \(%40\)/],
    ['percent-encoding that is not UTF-8', 'acct:alice@b%C3cher.example', /not UTF-8/],
    ['a stray %', 'acct:al%ice@example.com', /not a valid acct: URI/],
    ['a user part starting with %XX (RFC 7565 userpart)', 'acct:%61lice@example.com', /must not start with %XX/],
    ['a space in an acct URI', 'acct:alice@example.com ', /not a valid acct: URI/],
    ['a slash (acct://)', 'acct://alice@example.com', /not a valid acct: URI/],
    ['a port', 'acct:alice@example.com:443', /not a valid acct: URI/],
    // A URI is ASCII: a Unicode host is written percent-encoded (accepted above) or in the plain form.
    ['a raw non-ASCII host in an acct URI', 'acct:alice@bücher.example', /not a valid acct: URI/],
    ['a percent-encoded character handles may not hold', 'acct:al%20ice@example.com', /whitespace|only letters/],
    ['another scheme: mailto', 'mailto:alice@example.com', /"mailto" URI; only acct:/],
    ['another scheme: https', 'https://example.com/@alice', /"https" URI; only acct:/],
    ['double @ prefix', '@@alice@example.com', /more than one '@'/],
    ['@@a@b', '@@a@b', /more than one '@'/],
    ['@ prefix on an acct URI', '@acct:alice@example.com', /only letters/],
    ['leading space', ' alice@example.com', /whitespace/],
    ['trailing space', 'alice@example.com ', /whitespace/],
    ['space after @ prefix', '@ alice@example.com', /whitespace/],
    ['@ alone', '@', /has no '@'|empty/],
    ['empty', '', /has no '@'/],
    ['no @ at all', 'alice', /has no '@'/],
    ['three @', 'a@b@c', /more than one '@'/],
  ])('%s: %j', (_name, input, message) => {
    const err = errorOf(() => parseHandleReference(input));
    expect(err.code).toBe('invalid_handle');
    expect(err.message).toMatch(message);
  });

  it('bounds the input before parsing it', () => {
    const err = errorOf(() => parseHandleReference(`acct:${'%61'.repeat(400)}@example.com`));
    expect(err.code).toBe('invalid_handle');
    expect(err.message).toMatch(/at most/);
    // Within the raw bound, the decoded handle still meets parseHandle's limits (64-character local part).
    expect(errorOf(() => parseHandleReference(`acct:a${'%61'.repeat(64)}@example.com`)).message).toMatch(/at most 64/);
    expect(parseHandleReference(`acct:a${'%61'.repeat(63)}@example.com`).local).toBe('a'.repeat(64));
  });

  it('parseHandle itself stays strict: none of the other spellings', () => {
    for (const input of ['@alice@example.com', 'acct:alice@example.com']) {
      expect(errorOf(() => parseHandle(input)).code).toBe('invalid_handle');
    }
  });
});
