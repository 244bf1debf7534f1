import { describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { digestElement } from '../src/records/digest.js';
import { ContentChecker } from '../src/replication/content-checks.js';
import { freshKey, ZoneSigner } from './support/fake-server.js';
import { newUserKey } from './support/keys.js';

/**
 * ContentChecker.checkElement, the secondary's check of each digest element `type "\n" key "\n" jws`
 * (content-checks.ts): the records a resolver accepts pass, everything else is refused with
 * transfer_failed, however the element's lines are broken up.
 */
describe('the checks of a copied record', () => {
  const zone = 'example';
  const signer = new ZoneSigner(zone, freshKey());
  const checker = new ContentChecker({ zone, zoneRecord: signer.zoneRecord(['https://ns.example']), nowSeconds: Math.floor(Date.now() / 1000), signatureRate: 1 });
  const user = newUserKey().public;
  const good = signer.handle('alice@social.example', 'https://social.example/users/alice', [user]);

  function refusal(element: string): string {
    try {
      checker.checkElement(element);
    } catch (err) {
      expect(err).toBeInstanceOf(IdnsError);
      expect((err as IdnsError).code).toBe('transfer_failed');
      return (err as IdnsError).message;
    }
    throw new Error(`accepted: ${JSON.stringify(element.slice(0, 80))}`);
  }

  it('accepts a handle record under its handle, and counts it', () => {
    const before = checker.checked;
    checker.checkElement(digestElement('handle', 'alice@social.example', good));
    expect(checker.checked).toBe(before + 1);
  });

  it('refuses an element whose lines are broken: too few, or a newline in the key or in the JWS', () => {
    refusal(good);
    refusal(`handle\n${good}`);
    refusal(`handle\nalice@social.example\n\n${good}`);
    refusal(`handle\nalice@social.example\nx\n${good}`);
    refusal(`handle\nalice@social.example\n${good}\n`);
    refusal(`handle\nalice@social.\nexample\n${good}`);
    refusal(`handle\nalice@social.example\n${good.slice(0, 40)}\n${good.slice(40)}`);
  });

  it('refuses a record under another key, or one a resolver refuses, with the schema\'s reason', () => {
    expect(refusal(digestElement('handle', 'bob@social.example', good))).toMatch(/stored under/);
    const forbidden = signer.handle('alice@social.example', 'https://169.254.169.254/latest/', [user]);
    expect(refusal(digestElement('handle', 'alice@social.example', forbidden))).toMatch(/malformed: endpoint .*IP address/);
    const twice = signer.handle('alice@social.example', 'https://social.example/', [user, user]);
    expect(refusal(digestElement('handle', 'alice@social.example', twice))).toMatch(/malformed: keys lists the same key twice/);
  });
});
