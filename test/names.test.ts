import { describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { normaliseHandle, parseHandle } from '../src/names/handle.js';
import { ROOT, ancestors, isAtOrBelow, normaliseHost, parentOf, parseZoneName } from '../src/names/zone.js';

const l63 = 'a'.repeat(63);
const l64 = 'a'.repeat(64);
// 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253, the longest host DNS allows.
const host253 = `${l63}.${l63}.${l63}.${'b'.repeat(61)}`;
const host254 = `${l63}.${l63}.${l63}.${'b'.repeat(62)}`;

function codeOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(IdnsError);
    const e = err as IdnsError;
    return { code: e.code, message: e.message };
  }
  throw new Error('expected an IdnsError, but nothing was thrown');
}

describe('normaliseHandle: valid', () => {
  it.each<[string, string, string]>([
    ['plain', 'alice@example.com', 'alice@example.com'],
    ['case folding', 'Alice@Example.COM', 'alice@example.com'],
    ['all upper', 'BOB@EXAMPLE.ORG', 'bob@example.org'],
    ['IDNA host', 'alice@bücher.example', 'alice@xn--bcher-kva.example'],
    ['upper-case unicode host', 'alice@BÜCHER.example', 'alice@xn--bcher-kva.example'],
    ['valid xn-- label', 'alice@xn--bcher-kva.example', 'alice@xn--bcher-kva.example'],
    ['upper-case xn-- label', 'alice@XN--BCHER-KVA.example', 'alice@xn--bcher-kva.example'],
    ['CJK host', 'li@公司.cn', 'li@xn--55qx5d.cn'],
    ['emoji host', 'x@😀.example', 'x@xn--e28h.example'],
    ['eszett is not folded to ss (non-transitional)', 'x@faß.de', 'x@xn--fa-hia.de'],
    ['fullwidth host letters map to ASCII', 'x@ｅｘａｍｐｌｅ.com', 'x@example.com'],
    ['ideographic full stop maps to a dot', 'x@example\u3002com', 'x@example.com'],
    ['dot, underscore and hyphen inside local', 'a.b_c-d@example.com', 'a.b_c-d@example.com'],
    ['local may start with underscore', '_svc@example.com', '_svc@example.com'],
    ['digits only local', '12345@example.com', '12345@example.com'],
    ['single-character local', 'a@example.com', 'a@example.com'],
    ['local of 64', `${l64}@example.com`, `${l64}@example.com`],
    ['host label of 63', `a@${l63}.com`, `a@${l63}.com`],
    ['host of 253', `a@${host253}`, `a@${host253}`],
    ['localhost', 'dev@localhost', 'dev@localhost'],
    ['single-label host', 'root@com', 'root@com'],
    ['hyphen inside host label', 'a@my-host.example', 'a@my-host.example'],
    ['digit-led host label', 'a@1password.example', 'a@1password.example'],
    ['numeric non-final label', 'a@123.example', 'a@123.example'],
    ['hex-looking final label that is not a number', 'a@example.0x1g', 'a@example.0x1g'],
  ])('%s: %j -> %j', (_name, input, expected) => {
    expect(normaliseHandle(input)).toBe(expected);
    const parsed = parseHandle(input);
    expect(parsed.handle).toBe(expected);
    expect(`${parsed.local}@${parsed.host}`).toBe(expected);
    // Normalisation is idempotent: the canonical form parses to itself.
    expect(normaliseHandle(expected)).toBe(expected);
  });
});

describe('normaliseHandle: invalid', () => {
  it.each<[string, string]>([
    ['empty', ''],
    ['no @', 'alice.example.com'],
    ['two @', 'alice@bob@example.com'],
    ['@@', 'alice@@example.com'],
    ['empty local', '@example.com'],
    ['empty host', 'alice@'],
    ['only @', '@'],
    ['local of 65', `${'a'.repeat(65)}@example.com`],
    ['local starts with dot', '.alice@example.com'],
    ['local ends with dot', 'alice.@example.com'],
    ['local starts with hyphen', '-alice@example.com'],
    ['local ends with hyphen', 'alice-@example.com'],
    ['local with ..', 'a..b@example.com'],
    ['local with plus', 'alice+tag@example.com'],
    ['local with quote', '"alice"@example.com'],
    ['unicode local', 'jösé@example.com'],
    ['KELVIN SIGN in local (lower-cases to ASCII k)', '\u212Aelvin@example.com'],
    ['dotted capital I in local', '\u0130van@example.com'],
    ['fullwidth local', 'ａｌｉｃｅ@example.com'],
    ['space in local', 'al ice@example.com'],
    ['leading space', ' alice@example.com'],
    ['trailing space', 'alice@example.com '],
    ['tab in host', 'alice@exa\tmple.com'],
    ['newline at end', 'alice@example.com\n'],
    ['NUL in host', 'alice@exa\u0000mple.com'],
    ['NUL in local', 'ali\u0000ce@example.com'],
    ['DEL in host', 'alice@example.com\u007f'],
    ['C1 control in host', 'alice@exa\u0085mple.com'],
    ['no-break space in host', 'alice@exa\u00a0mple.com'],
    ['ideographic space in host', 'alice@exa\u3000mple.com'],
    ['port', 'a@example.com:443'],
    ['URL path', 'a@example.com/path'],
    ['query', 'a@example.com?x'],
    ['fragment', 'a@example.com#x'],
    ['percent-encoding', 'a@exa%41mple.com'],
    ['IPv4 host', 'a@127.0.0.1'],
    ['numeric final label', 'a@example.123'],
    ['hex IPv4 host', 'a@0x7f'],
    ['fullwidth digits IPv4', 'a@１２７.０.０.１'],
    ['bracketed IPv6', 'a@[::1]'],
    ['underscore in host label', 'a@my_host.example.com'],
    ['host label of 64', `a@${l64}.com`],
    ['host of 254', `a@${host254}`],
    ['host empty label', 'a@a..b'],
    ['host leading dot', 'a@.example.com'],
    ['host trailing dot', 'a@example.com.'],
    ['host trailing ideographic full stop', 'a@example.com\u3002'],
    ['host label starts with hyphen', 'a@-a.example'],
    ['host label ends with hyphen', 'a@a-.example'],
    ['invalid punycode', 'a@xn--zz.example'],
    ['xn-- with no payload', 'a@xn--.example'],
    ['punycode ending in hyphen', 'a@xn--bcher-kva-.example'],
    ['non-canonical punycode accepted by domainToASCII', 'a@xn---drx.example'],
    ['host symbol mapped to non-LDH', 'a@⑴.example'],
    ['wildcard host', 'a@*.example.com'],
    ['acct: prefix is not accepted here', 'acct:alice@example.com'],
    ['input over 320 characters', `${'a'.repeat(60)}@${'b.'.repeat(130)}example.com`],
  ])('%s: %j', (_name, input) => {
    const { code, message } = codeOf(() => normaliseHandle(input));
    expect(code).toBe('invalid_handle');
    expect(message.length).toBeGreaterThan(0);
    expect(codeOf(() => parseHandle(input)).code).toBe('invalid_handle');
  });

  it('makes invisible and look-alike characters visible in messages', () => {
    expect(codeOf(() => normaliseHandle('alice@exa\u0085mple.com')).message).toContain('exa<U+0085>mple.com');
    expect(codeOf(() => normaliseHandle('\u212Aelvin@example.com')).message).toContain('U+212A');
  });

  it('names the host as the problem when the host is bad', () => {
    expect(codeOf(() => normaliseHandle('a@example.com.')).message).toMatch(/host.*remove the trailing dot/);
  });
});

describe('parseZoneName: valid', () => {
  it.each<[string, string, string]>([
    ['root', '.', ROOT],
    ['plain', 'example.com', 'example.com'],
    ['upper case', 'Example.COM', 'example.com'],
    ['TLD', 'com', 'com'],
    ['deep', 'a.b.c.example.com', 'a.b.c.example.com'],
    ['IDNA', 'bücher.example', 'xn--bcher-kva.example'],
    ['upper-case unicode', 'BÜCHER.example', 'xn--bcher-kva.example'],
    ['xn-- label', 'xn--55qx5d.cn', 'xn--55qx5d.cn'],
    ['label of 63', `${l63}.example`, `${l63}.example`],
    ['253 characters', host253, host253],
    ['localhost', 'localhost', 'localhost'],
  ])('%s: %j -> %j', (_name, input, expected) => {
    expect(parseZoneName(input)).toBe(expected);
    expect(parseZoneName(expected)).toBe(expected);
  });
});

describe('parseZoneName: invalid', () => {
  it.each<[string, string]>([
    ['empty', ''],
    ['two dots', '..'],
    ['trailing dot', 'example.com.'],
    ['leading dot', '.example.com'],
    ['empty label', 'a..b'],
    ['label of 64', `${l64}.example`],
    ['254 characters', host254],
    ['leading hyphen', '-a.example'],
    ['trailing hyphen', 'a-.example'],
    ['underscore', '_dmarc.example.com'],
    ['space', 'exa mple.com'],
    ['tab', 'example.com\t'],
    ['NUL', 'example\u0000.com'],
    ['DEL', 'example\u007f.com'],
    ['port', 'example.com:53'],
    ['URL', 'https://example.com'],
    ['@', 'alice@example.com'],
    ['IPv4', '192.0.2.1'],
    ['bare number', '12345'],
    ['IPv6', '[::1]'],
    ['bare IPv6', '::1'],
    ['invalid punycode', 'xn--zz'],
    ['invalid punycode label inside', 'a.xn--a.example'],
    ['non-canonical punycode', 'xn---drx'],
    ['comma', 'a,b.example'],
    ['far too long raw input', `${'a.'.repeat(600)}com`],
  ])('%s: %j', (_name, input) => {
    const { code, message } = codeOf(() => parseZoneName(input));
    expect(code).toBe('invalid_zone_name');
    expect(message.length).toBeGreaterThan(0);
  });

  it('says to remove the trailing dot', () => {
    expect(codeOf(() => parseZoneName('example.com.')).message).toMatch(/remove the trailing dot/);
  });

  it('uses the caller-supplied subject in messages', () => {
    expect(codeOf(() => normaliseHost('a..b', 'endpoint host')).message).toMatch(/^endpoint host /);
  });
});

describe('isAtOrBelow', () => {
  it.each<[string, string, boolean]>([
    ['example.com', 'example.com', true],
    ['alice.example.com', 'example.com', true],
    ['a.b.example.com', 'example.com', true],
    ['badexample.com', 'example.com', false],
    ['example.com', 'alice.example.com', false],
    ['example.org', 'example.com', false],
    ['com', 'example.com', false],
    ['example.com', 'com', true],
    ['example.com', ROOT, true],
    ['com', ROOT, true],
    [ROOT, ROOT, true],
    [ROOT, 'com', false],
  ])('%j under %j -> %s', (name, zone, expected) => {
    expect(isAtOrBelow(name, zone)).toBe(expected);
  });
});

describe('ancestors', () => {
  it.each<[string, string[]]>([
    ['a.b.c', ['a.b.c', 'b.c', 'c', ROOT]],
    ['example.com', ['example.com', 'com', ROOT]],
    ['com', ['com', ROOT]],
    [ROOT, [ROOT]],
  ])('%j -> %j', (name, expected) => {
    expect(ancestors(name)).toEqual(expected);
  });
});

describe('parentOf', () => {
  it.each<[string, string | null]>([
    ['a.b.c', 'b.c'],
    ['example.com', 'com'],
    ['com', ROOT],
    [ROOT, null],
  ])('%j -> %j', (zone, expected) => {
    expect(parentOf(zone)).toBe(expected);
  });
});
