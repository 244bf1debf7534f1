import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { endpointProblem, parsedEndpointProblem } from '../src/records/urls.js';

/**
 * endpointProblem remembers the authorities (scheme to the first `/`, `?` or `#`) of endpoints it
 * accepted, and accepts a later URL with one of them without parsing it. It must decide every URL
 * exactly as the URL parser alone does (parsedEndpointProblem), whatever came before it.
 */

const authority = fc.constantFrom(
  'https://social.example',
  'https://Social.Example',
  'HTTPS://social.example',
  'https://social.example:443',
  'https://social.example:8443',
  'https://social.example:99999',
  'https://social.example.',
  'https://user@social.example',
  'https://user:pw@social.example',
  'https://@social.example',
  'https://localhost',
  'https://a.localhost',
  'http://localhost:8080',
  'http://127.0.0.1:3000',
  'https://127.1',
  'https://0x7f.1',
  'https://[::1]',
  'https://[64:ff9b::127.0.0.1]',
  'http://social.example',
  'https://xn--bcher-kva.example',
  'https://xn--a.example',
  'https://exa%41mple.com',
  'https://exa%00mple.com',
  'https:',
  'https:/',
  'https://',
  'https:///social.example',
  'https:///localhost',
  'https:////127.0.0.1',
  'https://social.example@localhost',
);
const rest = fc.oneof(
  fc.constantFrom('', '/', '/users/alice', '/#', '#', '#x', '/a#b', '?q=1', '?#', '?q#frag', '/a/../b', '/%zz', '/@evil.example', '//localhost/', '/a?b=c#'),
  fc.stringMatching(/^[/?#][\x21-\x5b\x5d-\x7e]{0,12}$/),
);
const url = fc.tuple(authority, rest).map(([a, r]) => a + r);

describe('endpoint verdicts remembered by authority', () => {
  it('decide every URL as the parser alone does, in any order, in both modes', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(url, fc.boolean()), { minLength: 1, maxLength: 30 }), (urls) => {
        for (const [u, loopback] of urls) expect(endpointProblem(u, loopback), `${u} loopback ${loopback}`).toBe(parsedEndpointProblem(u, loopback));
      }),
      { numRuns: 2_000 },
    );
  });

  it('refuses a fragment, credentials or an empty authority even after an accepted URL on the same host', () => {
    expect(endpointProblem('https://social.example/users/alice', false)).toBeNull();
    expect(endpointProblem('https://social.example/users/alice#x', false)).toMatch(/fragment/);
    expect(endpointProblem('https://social.example/#', false)).toBeNull();
    expect(endpointProblem('https:///social.example/', false)).toBe(parsedEndpointProblem('https:///social.example/', false));
    expect(endpointProblem('https:///localhost/', false)).toMatch(/loopback/);
    expect(endpointProblem('http://localhost:8080/a', true)).toBeNull();
    expect(endpointProblem('http://localhost:8080/a', false)).toMatch(/https/);
  });
});
