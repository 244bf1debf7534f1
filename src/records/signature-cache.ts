/**
 * Signatures already checked, so the same signed record is not verified twice: a resolver checks each
 * reply as it walks, then the whole proof once more, and every new handle of a zone brings the same zone
 * record and delegations again. Ed25519 verification costs ~100 µs here; a lookup in this set ~0.1 µs.
 *
 * An entry says "this exact JWS verifies under the key with this RFC 7638 thumbprint": a pure fact about
 * bytes, so it never goes stale. Only the signature check is skipped; every other check (type, zone,
 * expiry, what the record is for) runs each time.
 */
export class SignatureCache {
  private readonly verified = new Set<string>();

  /** `max` entries at most; the oldest go first. */
  constructor(private readonly max = 4096) {}

  has(kid: string, jws: string): boolean {
    return this.verified.has(`${kid} ${jws}`);
  }

  add(kid: string, jws: string): void {
    if (this.verified.size >= this.max) this.verified.delete(this.verified.values().next().value as string);
    this.verified.add(`${kid} ${jws}`);
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
