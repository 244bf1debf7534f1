import type { StoredResolution } from './packed-records.js';
import type { ProofStep, TraceStep } from './proof.js';

/**
 * Estimates of the memory a resolver's cache entries hold, for its byte bound. Cheap (no traversal of
 * anything but the entry's own few members) and honest: the costs are V8's on 64-bit Node 20 (no
 * pointer compression), checked against the heap a filled cache frees when cleared (docs/operations.md): a string is a 16-byte
 * header plus one byte per character (two for text decoded from a payload, which may be outside
 * Latin-1), an object a 24-byte header plus 8 bytes per member, an array 32 bytes plus 8 per element.
 */
const STRING = 16;
const OBJECT = 24;
const SLOT = 8;
const ARRAY = 32;
/** A Map entry (key, value, chain link) and the share of a hash table bucket. */
const MAP_ENTRY = 32;
/** The cache's own record of an entry (CacheEntry: eight members, its times small integers). */
const CACHE_ENTRY = OBJECT + 8 * SLOT;

const ascii = (s: string): number => STRING + s.length;
const text = (s: string): number => STRING + 2 * s.length;
const array = (n: number): number => ARRAY + n * SLOT;

/** A zone cut as the resolver caches it (the fields the weight depends on). */
export interface WeighedCut {
  name: string;
  servers: readonly string[];
  trusted: readonly string[];
  prefix: readonly ProofStep[];
}

/** Bytes of a resolution held by it alone: the entry, the result, its record (packed) and gaps, endpoint and keys. */
export function resolutionBytes(r: StoredResolution): number {
  // The resolution's fourteen members; its handle is the cache key too (one string, counted once).
  let n = MAP_ENTRY + CACHE_ENTRY + OBJECT + 14 * SLOT + ascii(r.handle) + ascii(r.zone);
  n += OBJECT + 3 * SLOT + ascii(r.proof.record);
  if (r.proof.noCut) {
    n += array(r.proof.noCut.length);
    for (const g of r.proof.noCut) n += ascii(g);
  }
  if (r.endpoint !== null) n += text(r.endpoint);
  // A handle's history, packed into one string (shared with the resolver's history book, counted here all the same), and genesis.
  if (r.proof.history !== undefined) n += ascii(r.proof.history);
  if (r.genesis !== undefined) n += ascii(r.genesis);
  // The owner's links: up to 8 aliases of 2 KiB each, so a record can weigh ~16 KiB more through them.
  if (r.profile !== undefined) n += text(r.profile);
  if (r.movedTo !== undefined) n += text(r.movedTo);
  if (r.alsoKnownAs !== undefined) {
    n += array(r.alsoKnownAs.length);
    for (const a of r.alsoKnownAs) n += text(a);
  }
  if (r.keys !== null) {
    n += array(r.keys.length);
    for (const k of r.keys) n += jwk(k);
  }
  // With witnesses required: the history entry's inclusion proof.
  if (r.proof.entry !== undefined) n += OBJECT + 2 * SLOT + hashes(r.proof.entry.proof);
  return n;
}

/** A JWK: {kty, crv, x}, x 43 characters, kty and crv short strings of their own. */
const jwk = (k: { x: string }): number => OBJECT + 3 * SLOT + ascii(k.x) + 2 * (STRING + 8);
/** A proof's base64 hashes. */
const hashes = (list: readonly string[]): number => array(list.length) + list.length * ascii('='.repeat(44));

/** Bytes of a step's log binding (with witnesses required): its note, the witnesses' keys (by name) and the zone record's proof. */
function logBytes(log: NonNullable<ProofStep['log']>): number {
  let n = 2 * OBJECT + 3 * SLOT + ascii(log.checkpoint) + hashes(log.zoneRecord);
  for (const [name, key] of Object.entries(log.witnesses)) n += MAP_ENTRY + ascii(name) + jwk(key);
  return n;
}

/** Bytes of a zone cut: the entry, its server and key lists and the proof that leads to it, all counted. */
export function cutBytes(c: WeighedCut): number {
  let n = MAP_ENTRY + CACHE_ENTRY + OBJECT + 5 * SLOT + 2 * ascii(c.name) + array(c.servers.length) + array(c.trusted.length);
  for (const s of c.servers) n += text(s);
  for (const t of c.trusted) n += text(t);
  return n + stepsBytes(c.prefix);
}

/** Bytes of a chain of proof steps (shared between the resolutions of a zone). */
export function stepsBytes(steps: readonly ProofStep[]): number {
  let n = array(steps.length);
  for (const s of steps) {
    n += OBJECT + 3 * SLOT + ascii(s.zone) + ascii(s.zoneRecord) + (s.delegation === undefined ? 0 : ascii(s.delegation));
    if (s.log !== undefined) n += logBytes(s.log);
  }
  return n;
}

/** Bytes of a trace (shared between resolutions with the same one). */
export function traceBytes(trace: readonly TraceStep[]): number {
  let n = array(trace.length);
  for (const t of trace) n += OBJECT + 3 * SLOT + ascii(t.zone) + ascii(t.server);
  return n;
}
