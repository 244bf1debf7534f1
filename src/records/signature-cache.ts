import { createHash } from 'node:crypto';

/**
 * Signatures already checked, so the same signed record is not verified twice: a resolver checks each
 * reply as it walks, then the whole proof once more, and every new handle of a zone brings the same zone
 * record and delegations again. Ed25519 verification costs ~100 µs here; a lookup in this set ~0.1 µs.
 *
 * An entry says "this exact JWS verifies under the key with this RFC 7638 thumbprint": a pure fact about
 * bytes, so it never goes stale. Only the signature check is skipped; every other check (type, zone,
 * expiry, what the record is for) runs each time.
 *
 * The set holds a SHA-256 digest of the key's thumbprint and the JWS, not the JWS itself: a resolver's
 * cache keeps each handle record once already, and a second copy here (~700 bytes, 4,096 of them) was
 * a good part of what a few thousand cached handles cost. A digest costs ~1 µs, a verification ~100 µs.
 */
export class SignatureCache {
  private readonly verified = new Set<string>();

  /** `max` entries at most; the oldest go first. */
  constructor(private readonly max = 4096) {}

  has(kid: string, jws: string): boolean {
    return this.verified.has(keyOf(kid, jws));
  }

  add(kid: string, jws: string): void {
    if (this.verified.size >= this.max) this.verified.delete(this.verified.values().next().value as string);
    this.verified.add(keyOf(kid, jws));
  }

  /** Runs `fn` (synchronous) with this cache consulted by every record verification it makes. */
  during<T>(fn: () => T): T {
    const outer = current;
    current = this;
    try {
      return fn();
    } finally {
      current = outer;
    }
  }
}

function keyOf(kid: string, jws: string): string {
  // One flat string (a digest of both): a concatenation would keep a rope node besides.
  return createHash('sha256').update(kid).update(' ').update(jws).digest('base64');
}

/**
 * The cache of the synchronous verification running now, if its caller gave one (SignatureCache.during).
 * Scoped this way rather than passed down so that every verify function keeps its signature; JavaScript
 * runs a synchronous call to its end, so no other caller's verification can see it meanwhile.
 */
let current: SignatureCache | null = null;

/** The signature cache in force, if any. */
export function activeSignatureCache(): SignatureCache | null {
  return current;
}
