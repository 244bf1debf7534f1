import type { Dispatcher } from 'undici';
import { request } from '../client/undici.js';
import { systemClock, type Clock } from '../clock.js';
import { IdnsError, isIdnsError } from '../errors.js';
import { isNormalHandle, normaliseHandle } from '../names/handle.js';
import { parseIJson } from '../records/ijson.js';
import { endpointProblem, MAX_URL_LENGTH } from '../records/urls.js';
import { assureAllowedUrl, policyAgent } from '../resolver/address-policy.js';
import { LruCache } from '../resolver/cache.js';

/**
 * The WebFinger bridge (docs/protocol.md 12.4): a handle whose host publishes no idns zone is looked up
 * by plain RFC 7033 WebFinger at its host, the way Mastodon and Fedify find an account, and returned as
 * unverified. Whether a host publishes a zone is the resolver's decision, taken before the bridge is
 * called (a host that publishes one is never bridged); this module only fetches, bounds, checks and
 * caches the host's JRD.
 */

/** A handle found through WebFinger: what its host says, vouched for by nobody but that host. */
export interface BridgedHandle {
  /** The handle asked for, normalised. */
  handle: string;
  /** The `self` link's href of type application/activity+json (the ActivityPub actor). */
  endpoint: string;
  /** The JRD's aliases, as the host gave them (unverified). */
  aliases: string[];
  /** The `http://webfinger.net/rel/profile-page` link, when it is an acceptable https URL. */
  profile?: string;
  /** The account the JRD describes, `acct:local@host`: the handle itself, or a confirmed other name (12.4). */
  subject: string;
  /** Seconds this answer stays cached. */
  ttl: number;
  verified: false;
  source: 'webfinger';
}

/** Bounds of the cache TTL, seconds. */
export interface TtlBounds {
  min?: number;
  max?: number;
  default?: number;
}

/** Settings of a WebFingerBridge; every bound has a default (docs/security.md). */
export interface WebFingerBridgeOptions {
  /** The undici dispatcher for the requests; the caller's carries the address policy and CAs. Default: an agent with the address policy. */
  dispatcher?: Dispatcher;
  /** Admit loopback and private addresses and loopback endpoints (tests, private deployments). Never admits http. */
  allowPrivate?: boolean;
  /**
   * Time for one whole lookup, redirects and the subject's confirmation included, ms. Default 5000. It
   * runs on real timers: `clock` drives the cache TTLs, not network time.
   */
  timeoutMs?: number;
  /** Largest JRD read, bytes. Default 64 KiB. */
  maxBytes?: number;
  /** Redirects followed per request. Default 3. */
  maxRedirects?: number;
  /** Cache TTL: Cache-Control max-age within [min, max], else `default`. Defaults 60, 86400, 3600. */
  ttlSeconds?: TtlBounds;
  /** How long a host's "no such account" (404, 410) is remembered, seconds. Default 60. */
  negativeTtlSeconds?: number;
  /** Handles cached at most. Default 10,000. */
  maxEntries?: number;
  clock?: Clock;
}

/** Per-call options of a lookup. */
export interface WebFingerLookupOptions {
  /** Cancels this caller's wait (the request itself stops when no caller waits for it any more). */
  signal?: AbortSignal;
  /** Ask the host even when a cached answer is fresh. */
  forceRefresh?: boolean;
}

/** RFC 7033 limits idns applies to a JRD (docs/protocol.md 12.4). */
export const JRD_LIMITS = { links: 64, aliases: 32, stringLength: MAX_URL_LENGTH } as const;

const DEFAULTS = { timeoutMs: 5000, maxBytes: 64 * 1024, maxRedirects: 3, ttlMin: 60, ttlMax: 86_400, ttlDefault: 3600, negativeTtl: 60, maxEntries: 10_000 };

const ACCEPT = 'application/jrd+json, application/json';
const PROFILE_PAGE = 'http://webfinger.net/rel/profile-page';
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** A checked answer, with the TTL it was cached for (seconds). */
type Found = Omit<BridgedHandle, 'ttl'> & { ttlSeconds: number };

/** What the cache holds for a handle: an answer, or the host's statement that the account does not exist. */
type Entry = { found: Found } | { notFound: string };

/** One request in flight, shared by every caller of the same handle. */
interface Flight {
  promise: Promise<Entry>;
  controller: AbortController;
  waiters: number;
}

/** A bounded JRD: only the members the bridge reads, each checked. */
interface Jrd {
  subject: string | undefined;
  aliases: string[];
  links: { rel: string; type: string | undefined; href: string | undefined }[];
}

/** A fetched JRD with the TTL its response allows. */
interface Fetched {
  jrd: Jrd;
  ttlSeconds: number;
}

/**
 * Looks handles up by WebFinger at their host, with the address policy, https only, and bounds on
 * redirects, size and time; caches answers for a bounded TTL and coalesces concurrent lookups.
 */
export class WebFingerBridge {
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly allowPrivate: boolean;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly maxRedirects: number;
  private readonly ttl: { min: number; max: number; default: number };
  private readonly negativeTtl: number;
  private readonly clock: Clock;
  private readonly cache: LruCache<Entry>;
  private readonly inflight = new Map<string, Flight>();
  /** Requests sent (each redirect hop counts), for metrics and tests. */
  requests = 0;

  constructor(options: WebFingerBridgeOptions = {}) {
    this.allowPrivate = options.allowPrivate ?? false;
    this.timeoutMs = bounded(options.timeoutMs, DEFAULTS.timeoutMs, 1, 600_000, 'timeoutMs');
    this.maxBytes = bounded(options.maxBytes, DEFAULTS.maxBytes, 256, 16 * 2 ** 20, 'maxBytes');
    this.maxRedirects = bounded(options.maxRedirects, DEFAULTS.maxRedirects, 0, 20, 'maxRedirects');
    const min = bounded(options.ttlSeconds?.min, DEFAULTS.ttlMin, 0, 7 * 86_400, 'ttlSeconds.min');
    const max = bounded(options.ttlSeconds?.max, Math.max(min, DEFAULTS.ttlMax), min, 7 * 86_400, 'ttlSeconds.max');
    const def = bounded(options.ttlSeconds?.default, Math.min(max, Math.max(min, DEFAULTS.ttlDefault)), min, max, 'ttlSeconds.default');
    this.ttl = { min, max, default: def };
    this.negativeTtl = bounded(options.negativeTtlSeconds, DEFAULTS.negativeTtl, 0, max, 'negativeTtlSeconds');
    this.clock = options.clock ?? systemClock;
    this.cache = new LruCache<Entry>(bounded(options.maxEntries, DEFAULTS.maxEntries, 1, 10_000_000, 'maxEntries'));
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher = options.dispatcher ?? policyAgent({ connectTimeoutMs: this.timeoutMs, connections: 8, allowPrivate: this.allowPrivate });
  }

  /**
   * What the handle's host says about it by WebFinger; throws handle_not_found when the host answers
   * 404 or 410, webfinger_failed when it gives no usable JRD, address_refused when its address is not
   * allowed, invalid_handle for a bad handle, and the signal's reason when the caller aborts.
   */
  async lookup(handle: string, options: WebFingerLookupOptions = {}): Promise<BridgedHandle> {
    const name = isNormalHandle(handle) ? handle : normaliseHandle(handle);
    const signal = options.signal;
    signal?.throwIfAborted();
    if (options.forceRefresh !== true) {
      const now = this.clock.now();
      const hit = this.cache.get(name, now);
      const fresh = hit === undefined ? 0 : this.cache.freshFor(hit, now);
      if (hit !== undefined && fresh > 0) return answer(hit.value, Math.ceil(fresh / 1000));
    }
    const entry = await this.wait(name, this.inflight.get(name) ?? this.start(name), signal);
    return answer(entry, 'found' in entry ? entry.found.ttlSeconds : this.negativeTtl);
  }

  /** Drops every cached answer. */
  clear(): void {
    this.cache.clear();
  }

  /** Cancels the requests in flight and closes the dispatcher when the bridge made it. */
  async close(): Promise<void> {
    for (const flight of this.inflight.values()) flight.controller.abort(new IdnsError('webfinger_failed', 'the WebFinger bridge was closed'));
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  /**
   * Waits for a shared request on behalf of one caller. The caller's abort ends its own wait at once; the
   * request goes on while another caller waits for it, and is cancelled when the last one has gone.
   */
  private wait(handle: string, flight: Flight, signal: AbortSignal | undefined): Promise<Entry> {
    flight.waiters += 1;
    return new Promise<Entry>((resolve, reject) => {
      let gone = false;
      const onAbort = () => {
        gone = true;
        if (--flight.waiters === 0) {
          // A caller arriving later starts a new request rather than join a cancelled one.
          if (this.inflight.get(handle) === flight) this.inflight.delete(handle);
          flight.controller.abort(signal!.reason);
        }
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const settle = () => {
        signal?.removeEventListener('abort', onAbort);
        if (!gone) flight.waiters -= 1;
      };
      flight.promise.then(
        (entry) => {
          settle();
          resolve(entry);
        },
        (err: unknown) => {
          settle();
          reject(err);
        },
      );
    });
  }

  /** Starts the one request for `handle` that every caller meanwhile shares, and caches its outcome. */
  private start(handle: string): Flight {
    const controller = new AbortController();
    const promise: Promise<Entry> = this.fetchEntry(handle, controller.signal).finally(() => {
      if (this.inflight.get(handle)?.promise === promise) this.inflight.delete(handle);
    });
    // Every waiter may have gone (aborted): the failure then has no one to tell, and must not surface
    // as an unhandled rejection. The waiters still get it through their own handlers.
    promise.catch(() => undefined);
    const flight: Flight = { promise, controller, waiters: 0 };
    this.inflight.set(handle, flight);
    return flight;
  }

  /** Fetches and checks the JRD of `handle` within the time bound; caches the answer or the denial. */
  private async fetchEntry(handle: string, cancel: AbortSignal): Promise<Entry> {
    const timer = new AbortController();
    const timeout = setTimeout(() => timer.abort(), this.timeoutMs);
    timeout.unref();
    const signal = AbortSignal.any([cancel, timer.signal]);
    try {
      const at = handle.indexOf('@');
      const host = handle.slice(at + 1);
      const first = await this.fetchJrd(handle, host, signal);
      if (first === 'not_found') {
        const entry: Entry = { notFound: `${host} says acct:${handle} does not exist` };
        this.cache.set(handle, entry, this.clock.now(), this.negativeTtl * 1000, 0, Infinity);
        return entry;
      }
      const subject = await this.subjectOf(handle, first.jrd, signal);
      const found = this.result(handle, subject, first);
      this.cache.set(handle, { found }, this.clock.now(), found.ttlSeconds * 1000, 0, Infinity);
      return { found };
    } catch (err) {
      if (timer.signal.aborted && !cancel.aborted) {
        throw new IdnsError('webfinger_failed', `WebFinger at the host of ${handle} gave no complete answer within ${this.timeoutMs} ms`, { cause: err });
      }
      if (cancel.aborted) throw cancel.reason;
      throw err;
    } finally {
      clearTimeout(timeout);
    }
  }

  /**
   * The subject the answer is for. A JRD about the handle (its subject, or one of its aliases, is
   * `acct:<handle>`; or it has no subject) is the host's word about its own account. A JRD whose subject
   * is another account (Mastodon queried at its WEB_DOMAIN answers for LOCAL_DOMAIN; a personal domain
   * redirected to a server) is believed only when that account's own host names the same actor, as
   * Mastodon checks it: otherwise any host could answer with someone else's name.
   */
  private async subjectOf(handle: string, jrd: Jrd, signal: AbortSignal): Promise<string> {
    const claimed = jrd.subject;
    if (claimed === undefined || isAbout(jrd, handle)) return `acct:${handle}`;
    const other = acctHandle(claimed);
    if (other === undefined) {
      throw new IdnsError('webfinger_failed', `WebFinger for ${handle} answered for ${quote(claimed)}, which is neither acct:${handle} nor another account`);
    }
    const endpoint = selfLink(jrd, handle);
    const confirm = await this.fetchJrd(other, other.slice(other.indexOf('@') + 1), signal);
    if (confirm === 'not_found' || !isAbout(confirm.jrd, other) || selfLink(confirm.jrd, other) !== endpoint) {
      throw new IdnsError(
        'webfinger_failed',
        `WebFinger for ${handle} answered for acct:${other}, whose own host does not confirm it (another actor, or none)`,
      );
    }
    return `acct:${other}`;
  }

  /** The result for a checked JRD. */
  private result(handle: string, subject: string, fetched: Fetched): Found {
    const endpoint = selfLink(fetched.jrd, handle);
    const problem = endpointProblem(endpoint, this.allowPrivate);
    if (problem !== null) throw new IdnsError('webfinger_failed', `WebFinger for ${handle}: the self link is not acceptable: ${problem}`);
    const page = fetched.jrd.links.find((l) => l.rel === PROFILE_PAGE && l.href !== undefined && (l.type === undefined || mediaType(l.type) === 'text/html'));
    // A profile page is a courtesy link: one we would not accept as an endpoint is left out, not fatal.
    const href = page?.href;
    const profile = href !== undefined && endpointProblem(href, this.allowPrivate) === null ? href : undefined;
    return {
      handle,
      endpoint,
      aliases: fetched.jrd.aliases,
      ...(profile !== undefined ? { profile } : {}),
      subject,
      verified: false,
      source: 'webfinger',
      ttlSeconds: fetched.ttlSeconds,
    };
  }

  /**
   * GETs the JRD of `acct:<handle>` at `https://<host>/.well-known/webfinger`, following up to
   * maxRedirects redirects, each target https and allowed by the address policy. 'not_found' for 404/410.
   */
  private async fetchJrd(handle: string, host: string, signal: AbortSignal): Promise<Fetched | 'not_found'> {
    let url = new URL(`https://${host}/.well-known/webfinger`);
    url.searchParams.set('resource', `acct:${handle}`);
    for (let hops = 0; ; hops++) {
      // WebFinger is https only (RFC 7033 4): a redirect to http would hand the answer to anyone on the path.
      if (url.protocol !== 'https:') throw new IdnsError('address_refused', `WebFinger for ${handle}: ${url.href} is not https (WebFinger is https only)`);
      assureAllowedUrl(url.href, this.allowPrivate);
      this.requests += 1;
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, {
          method: 'GET',
          headers: { accept: ACCEPT },
          signal,
          headersTimeout: this.timeoutMs,
          bodyTimeout: this.timeoutMs,
          dispatcher: this.dispatcher,
        });
      } catch (cause) {
        // A refusal by the address policy (made in the connect lookup) keeps its meaning.
        const refused = [cause, (cause as { cause?: unknown } | null)?.cause].find((e) => isIdnsError(e));
        if (refused) throw refused;
        throw new IdnsError('webfinger_failed', `WebFinger for ${handle}: GET ${url.href} failed: ${(cause as Error).message}`, { cause });
      }
      const status = res.statusCode;
      if (REDIRECTS.has(status)) {
        discard(res);
        const location = header(res.headers.location);
        if (location === undefined) throw new IdnsError('webfinger_failed', `WebFinger for ${handle}: ${url.host} answered ${status} without a Location`);
        if (hops >= this.maxRedirects) throw new IdnsError('webfinger_failed', `WebFinger for ${handle}: more than ${this.maxRedirects} redirects`);
        if (location.length > MAX_URL_LENGTH || !URL.canParse(location, url.href)) {
          throw new IdnsError('webfinger_failed', `WebFinger for ${handle}: ${url.host} redirected to an unusable Location`);
        }
        url = new URL(location, url);
        continue;
      }
      if (status === 404 || status === 410) {
        discard(res);
        return 'not_found';
      }
      if (status !== 200) {
        discard(res);
        throw new IdnsError('webfinger_failed', `WebFinger for ${handle}: ${url.host} answered HTTP ${status}`);
      }
      const body = await this.readBody(res, handle, url);
      const jrd = checkJrd(parseIJson(body, `the JRD for ${handle} from ${url.host}`, 'webfinger_failed'), handle);
      return { jrd, ttlSeconds: this.ttlOf(header(res.headers['cache-control'])) };
    }
  }

  /** The body, at most maxBytes; more is refused as soon as it is seen. */
  private async readBody(res: Dispatcher.ResponseData, handle: string, url: URL): Promise<Buffer> {
    const tooLarge = () => new IdnsError('webfinger_failed', `WebFinger for ${handle}: the JRD from ${url.host} is larger than ${this.maxBytes} bytes`);
    const declared = Number(header(res.headers['content-length']));
    if (declared > this.maxBytes) {
      discard(res);
      throw tooLarge();
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > this.maxBytes) {
          discard(res);
          throw tooLarge();
        }
        chunks.push(chunk as Buffer);
      }
    } catch (cause) {
      if (isIdnsError(cause)) throw cause;
      throw new IdnsError('webfinger_failed', `WebFinger for ${handle}: the JRD from ${url.host} was cut off: ${(cause as Error).message}`, { cause });
    }
    return Buffer.concat(chunks, size);
  }

  /** The cache TTL a response allows: its max-age within [min, max]; no-store, no-cache count as min. */
  private ttlOf(cacheControl: string | undefined): number {
    if (cacheControl === undefined) return this.ttl.default;
    const directives = cacheControl.toLowerCase();
    if (/(?:^|[\s,])no-(?:store|cache)(?:$|[\s,=])/.test(directives)) return this.ttl.min;
    const m = /(?:^|[\s,])max-age\s*=\s*"?(\d{1,10})"?/.exec(directives);
    if (m === null) return this.ttl.default;
    return Math.min(this.ttl.max, Math.max(this.ttl.min, Number(m[1])));
  }
}

/** The public result for a cached entry, with `ttl` seconds left; a denial becomes handle_not_found. */
function answer(entry: Entry, ttl: number): BridgedHandle {
  if ('notFound' in entry) throw new IdnsError('handle_not_found', `${entry.notFound} (WebFinger)`);
  const f = entry.found;
  return {
    handle: f.handle,
    endpoint: f.endpoint,
    aliases: [...f.aliases],
    ...(f.profile !== undefined ? { profile: f.profile } : {}),
    subject: f.subject,
    ttl,
    verified: false,
    source: 'webfinger',
  };
}

/**
 * The JRD's members the bridge reads, checked: an object; `subject` a string; `aliases` at most 32
 * strings; `links` at most 64 objects whose `rel`, `type` and `href` are strings; every string at most
 * 2048 characters. Other members (properties, titles, templates) are ignored.
 */
function checkJrd(value: unknown, handle: string): Jrd {
  const bad = (why: string) => new IdnsError('webfinger_failed', `WebFinger for ${handle}: the JRD ${why}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('is not a JSON object');
  const v = value as { subject?: unknown; aliases?: unknown; links?: unknown };
  const str = (x: unknown, what: string): string => {
    if (typeof x !== 'string') throw bad(`has a ${what} that is not a string`);
    if (x.length > JRD_LIMITS.stringLength) throw bad(`has a ${what} longer than ${JRD_LIMITS.stringLength} characters`);
    return x;
  };
  const list = (x: unknown, what: string, max: number): unknown[] => {
    if (x === undefined) return [];
    if (!Array.isArray(x)) throw bad(`has ${what} that are not an array`);
    if (x.length > max) throw bad(`has more than ${max} ${what}`);
    return x;
  };
  const subject = v.subject === undefined ? undefined : str(v.subject, 'subject');
  const aliases = list(v.aliases, 'aliases', JRD_LIMITS.aliases).map((a) => str(a, 'alias'));
  const links = list(v.links, 'links', JRD_LIMITS.links).map((l) => {
    if (typeof l !== 'object' || l === null || Array.isArray(l)) throw bad('has a link that is not an object');
    const link = l as { rel?: unknown; type?: unknown; href?: unknown };
    return {
      rel: str(link.rel, 'link rel'),
      type: link.type === undefined ? undefined : str(link.type, 'link type'),
      href: link.href === undefined ? undefined : str(link.href, 'link href'),
    };
  });
  return { subject, aliases, links };
}

/** True when a JRD describes the account `handle`: its subject or an alias is `acct:<handle>`, or it names no subject. */
function isAbout(jrd: Jrd, handle: string): boolean {
  return jrd.subject === undefined || acctHandle(jrd.subject) === handle || jrd.aliases.some((a) => acctHandle(a) === handle);
}

/** The href of the first `self` link of an ActivityPub type; webfinger_failed when there is none. */
function selfLink(jrd: Jrd, handle: string): string {
  const link = jrd.links.find((l) => l.rel === 'self' && l.href !== undefined && l.type !== undefined && isActivityType(l.type));
  if (link === undefined) throw new IdnsError('webfinger_failed', `WebFinger for ${handle}: the JRD has no self link of type application/activity+json`);
  return link.href!;
}

/** application/activity+json, or application/ld+json with the ActivityStreams profile (ActivityPub 3.2). */
function isActivityType(type: string): boolean {
  const t = type.toLowerCase().replace(/\s+/g, '');
  return mediaType(t) === 'application/activity+json' || t === 'application/ld+json;profile="https://www.w3.org/ns/activitystreams"';
}

/** A media type without its parameters, lower-case. */
function mediaType(type: string): string {
  return type.split(';', 1)[0]!.trim().toLowerCase();
}

/** The normalised handle of an `acct:` URI, or undefined when it is not the acct: URI of a valid handle. */
function acctHandle(uri: string): string | undefined {
  if (!/^acct:/i.test(uri)) return undefined;
  let text = uri.slice(5);
  if (text.includes('%')) {
    try {
      text = decodeURIComponent(text);
    } catch {
      return undefined; // malformed percent-encoding: not an account we could name
    }
  }
  if (isNormalHandle(text)) return text;
  try {
    return normaliseHandle(text);
  } catch (err) {
    if (isIdnsError(err, 'invalid_handle')) return undefined;
    throw err;
  }
}

/**
 * Drops a response body that is not wanted (a redirect's, an error page, one over the size bound):
 * destroying it ends the request, and the abort error it then emits only says so.
 */
function discard(res: Dispatcher.ResponseData): void {
  res.body.on('error', () => undefined);
  res.body.destroy();
}

/** One value of a response header (the first, when it came several times). */
function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** A host-supplied string for a message: quoted, and cut to a readable length. */
function quote(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}

/** An integer option within [lo, hi], or its default; a TypeError names a bad one. */
function bounded(value: number | undefined, fallback: number, lo: number, hi: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < lo || value > hi) throw new TypeError(`WebFingerBridge: ${what} must be an integer from ${lo} to ${hi}`);
  return value;
}
