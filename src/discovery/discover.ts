import { getDomain } from 'tldts';
import { systemClock, type Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import { isNormalHost, normaliseHost } from '../names/zone.js';
import { raceSignal } from '../abort.js';
import type { DnsClient } from './dns-client.js';
import { parseTxt, txtName, wellKnownUrl, type Publication } from './publication.js';

/** How a discovered zone's keys were anchored. */
export type Anchor =
  /** The TXT answer was DNSSEC-secure (AD from a validating server): `name` is the TXT record's owner. */
  | { type: 'dnssec'; name: string }
  /** The domain's `/.well-known/idns` document, fetched over HTTPS (web PKI), named the keys. */
  | { type: 'https'; url: string };

/** A published zone found for a host. */
export interface FoundZone {
  zone: string;
  /** Thumbprints of the zone's keys. */
  ds: string[];
  servers: string[];
  anchor: Anchor;
  /** Seconds this discovery may be cached. */
  ttl: number;
  /** Some DNS answer it rests on was served stale (RFC 8767). */
  stale: boolean;
}

/** What discovery found for a host. */
export type Discovery =
  | { found: FoundZone }
  | {
      found: null;
      /**
       * Every DNS answer that said "no publication" was a DNSSEC-secure denial (or the host has no
       * candidate at all: a public suffix, or not under one).
       */
      secure: boolean;
      /** Seconds this answer may be cached. */
      ttl: number;
    };

/** Options of a ZoneDiscovery. */
export interface ZoneDiscoveryOptions {
  dns: DnsClient;
  /** A zone's `/.well-known/idns` document; null only when there verifiably is none (404, 410). */
  fetchDocument: (zone: string, signal?: AbortSignal) => Promise<Publication | null>;
  /** Accept the `dnssec` anchor only, and fetch no documents. */
  requireDnssec?: boolean;
  clock?: Clock;
  /** Seconds a fetched document is trusted before it is fetched again. Default 3600. */
  documentTtl?: number;
  /** Seconds a 404/410 for a document is kept. Default 300. */
  missingDocumentTtl?: number;
  /** Longest time a discovery is cached, seconds. Default 86 400. */
  maxTtl?: number;
  /** Most hosts (and documents) cached. Default 10 000. */
  maxEntries?: number;
}

/**
 * The names where a host's zone may be published, closest first: the host, then each ancestor down to
 * and including its registrable domain (the public suffix list, private suffixes included, so that
 * `alice.github.io` never looks at `github.io`). A public suffix, or a name under no known suffix rule,
 * has none. At most (labels − suffix labels) names, so at most that many TXT queries.
 */
export function candidateZones(host: string): string[] {
  const domain = getDomain(host, { allowPrivateDomains: true, extractHostname: false, validateHostname: false });
  if (!domain || (host !== domain && !host.endsWith(`.${domain}`))) return [];
  const out: string[] = [];
  let name = host;
  for (;;) {
    out.push(name);
    if (name === domain) return out;
    name = name.slice(name.indexOf('.') + 1);
  }
}

/** True for a TXT record that is an idns publication: its first `;`-separated field is `v=idns1`. */
export function isIdnsTxt(value: string): boolean {
  return value.split(';', 1)[0]!.trim() === 'v=idns1';
}

interface Cached<T> {
  value: T;
  expiresAt: number;
}

/**
 * Finds the closest enclosing published zone of a host (DESIGN.md, "Finding zones without a root") and
 * anchors its keys. Any failure to learn whether a candidate publishes (DNS failure, a document fetch
 * that fails otherwise than 404/410) is an error, never "not found": an attacker who blocks DNS or HTTPS
 * must not make a published zone look unpublished.
 */
export class ZoneDiscovery {
  private readonly dns: DnsClient;
  private readonly fetchDocument: ZoneDiscoveryOptions['fetchDocument'];
  private readonly requireDnssec: boolean;
  private readonly clock: Clock;
  private readonly documentTtl: number;
  private readonly missingDocumentTtl: number;
  private readonly maxTtl: number;
  private readonly maxEntries: number;
  private readonly cache = new Map<string, Cached<Discovery>>();
  private readonly documents = new Map<string, Cached<Publication | null>>();
  private readonly inflight = new Map<string, Promise<Discovery>>();

  constructor(options: ZoneDiscoveryOptions) {
    this.dns = options.dns;
    this.fetchDocument = options.fetchDocument;
    this.requireDnssec = options.requireDnssec ?? false;
    this.clock = options.clock ?? systemClock;
    this.documentTtl = options.documentTtl ?? 3600;
    this.missingDocumentTtl = options.missingDocumentTtl ?? 300;
    this.maxTtl = options.maxTtl ?? 86_400;
    this.maxEntries = options.maxEntries ?? 10_000;
  }

  /**
   * The published zone enclosing `host`, or `found: null` when every candidate verifiably publishes
   * nothing. Cached for the TTL it reports; concurrent discoveries of one host share the work.
   * Throws dns_failed, invalid_publication, anchor_refused, or the document fetch's error.
   */
  async discover(host: string, signal?: AbortSignal): Promise<Discovery> {
    signal?.throwIfAborted();
    const name = isNormalHost(host) ? host : normaliseHost(host.replace(/\.$/, ''));
    const hit = this.cache.get(name);
    const now = this.clock.now();
    if (hit && now < hit.expiresAt) return withTtl(hit.value, Math.ceil((hit.expiresAt - now) / 1000));
    let shared = this.inflight.get(name);
    if (!shared) {
      // The shared work runs without any one caller's signal (it is bounded by the DNS and HTTPS time
      // limits): one caller giving up must not fail the others.
      shared = this.run(name)
        .then((d) => {
          const ttl = d.found ? d.found.ttl : d.ttl;
          if (ttl > 0) remember(this.cache, name, { value: d, expiresAt: this.clock.now() + ttl * 1000 }, this.maxEntries);
          return d;
        })
        .finally(() => this.inflight.delete(name));
      this.inflight.set(name, shared);
    }
    return raceSignal(shared, signal).then((d) => withTtl(d, d.found ? d.found.ttl : d.ttl));
  }

  private async run(host: string): Promise<Discovery> {
    const candidates = candidateZones(host);
    let ttl = this.maxTtl;
    let secure = true;
    let stale = false;
    for (const zone of candidates) {
      const name = txtName(zone);
      const answer = await this.dns.queryTxt(name, undefined);
      ttl = Math.min(ttl, answer.ttl);
      stale ||= answer.stale;
      const published = answer.records.filter(isIdnsTxt);
      if (published.length === 0) {
        secure &&= answer.secure;
        continue;
      }
      const owner = name.replace(/\.$/, '');
      if (published.length > 1)
        throw new IdnsError('invalid_publication', `${owner} has ${published.length} v=idns1 TXT records; a zone publishes exactly one`);
      const txt = parseTxt(published[0]!, zone);
      if (answer.secure) return { found: { ...txt, anchor: { type: 'dnssec', name: owner }, ttl, stale } };
      if (this.requireDnssec) {
        throw new IdnsError(
          'anchor_refused',
          `the TXT record at ${owner} is not DNSSEC-secure (no AD flag from a validating DNS server), and only DNSSEC anchors are accepted`,
          {
            details: { zone },
          },
        );
      }
      // Without DNSSEC the TXT record is only a hint: the domain's HTTPS document must say the same.
      const doc = await this.document(zone);
      if (doc.value === null) {
        throw new IdnsError('anchor_refused', `the TXT record at ${owner} is not DNSSEC-secure and ${wellKnownUrl(zone)} does not exist to confirm it`, {
          details: { zone },
        });
      }
      if (!sameSet(doc.value.ds, txt.ds)) {
        throw new IdnsError('anchor_refused', `the TXT record at ${owner} (not DNSSEC-secure) and ${wellKnownUrl(zone)} name different keys`, {
          details: { zone },
        });
      }
      return { found: { ...doc.value, anchor: { type: 'https', url: wellKnownUrl(zone) }, ttl: Math.min(ttl, doc.ttl), stale } };
    }
    if (this.requireDnssec || candidates.length === 0) return { found: null, secure, ttl };
    // No TXT record anywhere: a zone may be published by its HTTPS document alone.
    for (const zone of candidates) {
      const doc = await this.document(zone);
      ttl = Math.min(ttl, doc.ttl);
      if (doc.value !== null) return { found: { ...doc.value, anchor: { type: 'https', url: wellKnownUrl(zone) }, ttl, stale } };
    }
    return { found: null, secure, ttl };
  }

  /** A zone's document (or null for none) and the seconds it may be kept; errors are not cached. */
  private async document(zone: string): Promise<{ value: Publication | null; ttl: number }> {
    const now = this.clock.now();
    const hit = this.documents.get(zone);
    if (hit && now < hit.expiresAt) return { value: hit.value, ttl: Math.ceil((hit.expiresAt - now) / 1000) };
    const value = await this.fetchDocument(zone);
    const ttl = value === null ? this.missingDocumentTtl : this.documentTtl;
    remember(this.documents, zone, { value, expiresAt: this.clock.now() + ttl * 1000 }, this.maxEntries);
    return { value, ttl };
  }
}

function withTtl(d: Discovery, ttl: number): Discovery {
  return d.found ? { found: { ...d.found, ds: [...d.found.ds], servers: [...d.found.servers], ttl } } : { ...d, ttl };
}

function remember<T>(map: Map<string, Cached<T>>, key: string, value: Cached<T>, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value as string);
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}
