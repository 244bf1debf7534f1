import { describe, expect, it, vi } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { ed25519 } from '../src/records/ed25519.js';
import { SignatureCache } from '../src/records/signature-cache.js';
import { verifyHandleRecord, verifyZoneRecord } from '../src/records/verify.js';
import { freshKey, tamperSignature, ZoneSigner } from './support/fake-server.js';

const now = () => Math.floor(Date.now() / 1000);

describe('signature cache', () => {
  const signer = new ZoneSigner('sc.example', freshKey());
  const zoneJws = signer.zoneRecord(['https://sc.example']);
  const record = signer.handle('a@sc.example', 'https://h.example/a', [freshKey().publicJwk]);

  it('checks each signature once while active, and not at all outside it', () => {
    // Counts Ed25519 verifications, still performing each one (restored after the test: restoreMocks).
    const verifySpy = vi.spyOn(ed25519, 'verify');
    const verifications = () => verifySpy.mock.calls.length;
    const cache = new SignatureCache();
    const before = verifications();
    cache.during(() => {
      const zone = verifyZoneRecord(zoneJws, 'sc.example', now(), [signer.kid]);
      verifyHandleRecord(record, 'a@sc.example', zone, now());
      verifyHandleRecord(record, 'a@sc.example', verifyZoneRecord(zoneJws, 'sc.example', now(), [signer.kid]), now());
    });
    expect(verifications() - before).toBe(2);
    // Without the cache in force, everything is verified again.
    const zone = verifyZoneRecord(zoneJws, 'sc.example', now(), [signer.kid]);
    verifyHandleRecord(record, 'a@sc.example', zone, now());
    expect(verifications() - before).toBe(4);
  });

  it('skips only the signature: a cached record is still refused when it expired or is for another handle', () => {
    const cache = new SignatureCache();
    const zone = cache.during(() => verifyZoneRecord(zoneJws, 'sc.example', now(), [signer.kid]));
    cache.during(() => verifyHandleRecord(record, 'a@sc.example', zone, now()));
    expect(() => cache.during(() => verifyHandleRecord(record, 'b@sc.example', zone, now()))).toThrow(IdnsError);
    expect(() => cache.during(() => verifyHandleRecord(record, 'a@sc.example', zone, now() + 10 * 86_400))).toThrow(/expired/);
  });

  it('never accepts a tampered copy of a cached record, nor the record under another key', () => {
    const cache = new SignatureCache();
    const zone = cache.during(() => verifyZoneRecord(zoneJws, 'sc.example', now(), [signer.kid]));
    cache.during(() => verifyHandleRecord(record, 'a@sc.example', zone, now()));
    expect(() => cache.during(() => verifyHandleRecord(tamperSignature(record), 'a@sc.example', zone, now()))).toThrow(/signature/);
    const other = new ZoneSigner('sc.example', freshKey());
    const otherZone = cache.during(() => verifyZoneRecord(other.zoneRecord(['https://sc.example']), 'sc.example', now(), [other.kid]));
    expect(() => cache.during(() => verifyHandleRecord(record, 'a@sc.example', otherZone, now()))).toThrow(IdnsError);
  });
});
