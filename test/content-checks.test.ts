import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { digestElement } from '../src/records/digest.js';
import { ContentChecker } from '../src/replication/content-checks.js';
import { DigestWorkers } from '../src/replication/digest-workers.js';
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
  const checker = new ContentChecker({
    zone,
    zoneRecord: signer.zoneRecord(['https://ns.example']),
    nowSeconds: Math.floor(Date.now() / 1000),
    signatureRate: 1,
  });
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

  it("refuses a record under another key, or one a resolver refuses, with the schema's reason", () => {
    expect(refusal(digestElement('handle', 'bob@social.example', good))).toMatch(/stored under/);
    const forbidden = signer.handle('alice@social.example', 'https://169.254.169.254/latest/', [user]);
    expect(refusal(digestElement('handle', 'alice@social.example', forbidden))).toMatch(/malformed: endpoint .*IP address/);
    const twice = signer.handle('alice@social.example', 'https://social.example/', [user, user]);
    expect(refusal(digestElement('handle', 'alice@social.example', twice))).toMatch(/malformed: keys lists the same key twice/);
  });
  /** What checking `element` does: null when accepted, else the error's code and message. */
  function outcome(run: () => void): string | null {
    try {
      run();
      return null;
    } catch (err) {
      expect(err).toBeInstanceOf(IdnsError);
      return `${(err as IdnsError).code}: ${(err as IdnsError).message}`;
    }
  }

  it('checkBytes decides and words every element as checkElement does the same text, wherever it sits in a buffer', () => {
    const other = signer.denial(null, null);
    // Both kinds of accepted element are among the cases, beside the refusals.
    expect(outcome(() => checker.checkElement(digestElement('denial', '', other)))).toBeNull();
    const element = fc.oneof(
      fc.constantFrom(digestElement('handle', 'alice@social.example', good), digestElement('denial', '', other), good),
      // Mutations: a type, key or JWS replaced, characters inserted or removed anywhere (newlines among them).
      fc
        .tuple(
          fc.constantFrom('handle', 'denial', 'delegation', 'handles', '', 'HANDLE', 'zone'),
          fc.constantFrom('alice@social.example', 'bob@social.example', '', 'a\nb'),
          fc.constantFrom(good, other, '', 'x.y.z'),
        )
        .map(([t, k, j]) => `${t}\n${k}\n${j}`),
      fc
        .tuple(
          fc.constantFrom(digestElement('handle', 'alice@social.example', good), digestElement('denial', '', other)),
          fc.nat(),
          fc.nat({ max: 3 }),
          fc.string({ unit: fc.constantFrom('\n', '.', 'A', '_', '-', ' ', '\t', '{'), maxLength: 3 }),
        )
        .map(([e, at, cut, ins]) => {
          const i = at % (e.length + 1);
          return e.slice(0, i) + ins + e.slice(i + cut);
        }),
    );
    fc.assert(
      fc.property(
        element,
        fc.string({ maxLength: 5 }).map((s) => s.replace(/[^\x00-\x7f]/g, 'x')),
        fc.string({ maxLength: 5 }).map((s) => s.replace(/[^\x00-\x7f]/g, 'x')),
        (e, before, after) => {
          const bytes = Buffer.from(before + e + after, 'latin1');
          expect(outcome(() => checker.checkBytes(bytes, before.length, before.length + e.length))).toBe(outcome(() => checker.checkElement(e)));
        },
      ),
      { numRuns: 3000 },
    );
  });
});

/**
 * A digest thread checks without the record schemas (zod): the records only they can decide (a
 * delegation, a handle with owner links, a malformed record) come back to the main thread, which
 * decides them. Whatever the thread, every record is checked once and a refused one fails the transfer.
 */
describe('records a digest thread hands back', () => {
  const zone = 'example';
  const signer = new ZoneSigner(zone, freshKey());
  const zoneRecord = signer.zoneRecord(['https://ns.example']);
  const now = Math.floor(Date.now() / 1000);
  const record = JSON.parse(Buffer.from(zoneRecord.split('.')[1]!, 'base64url').toString('utf8'));
  const user = newUserKey().public;
  const handles = Array.from({ length: 300 }, (_, i) => [`u${i}@example`, signer.handle(`u${i}@example`, `https://social.example/u/${i}`, [user])] as const);
  const delegation = signer.delegation('child.example', ['https://ns.child.example'], ['A'.repeat(43)]);

  async function check(extra: readonly (readonly [string, string, string])[]) {
    // inlineFirst 0 and a large expected count: every record goes to the thread.
    const workers = new DigestWorkers(1, {
      batchSize: 50,
      inlineFirst: 0,
      expected: 10_000,
      checks: { zone, zoneRecord, record, nowSeconds: now, signatureRate: 0 },
    });
    const all = [...handles.map(([k, j]) => ['handle', k, j] as const), ...extra];
    for (const [type, key, jws] of all) {
      const bytes = Buffer.from(digestElement(type, key, jws));
      workers.addElements(new Uint8Array(bytes), Uint32Array.of(0, bytes.length));
    }
    try {
      await workers.finish();
      return { checked: workers.checked, count: all.length };
    } finally {
      await workers.close();
    }
  }

  it('decides a delegation on the main thread, and counts every record once', async () => {
    expect(await check([['delegation', 'child.example', delegation]])).toEqual({ checked: 301, count: 301 });
  });

  it('refuses a record only the schema refuses, with its reason, after the thread handed it back', async () => {
    const outside = signer.delegation('child.example', ['https://ns.child.example'], ['A'.repeat(43), 'A'.repeat(43)]);
    const err = await check([['delegation', 'child.example', outside]]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdnsError);
    expect((err as IdnsError).code).toBe('transfer_failed');
    expect((err as IdnsError).message).toMatch(/child\.example.*lists the same thumbprint twice/);
  });
});
