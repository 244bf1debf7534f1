import type { Dispatcher } from 'undici';
import { jsonRequest } from '../client/http.js';
import { IdnsError } from '../errors.js';
import { parseDocument, PUBLICATION_LIMITS, wellKnownUrl, type Publication } from './publication.js';

/** Options of the `/.well-known/idns` fetcher. */
export interface WellKnownOptions {
  /** Carries the resolver's address policy and CAs (the caller's undici Agent). */
  dispatcher?: Dispatcher;
  /** Whole-request time limit, ms. Default 5000. */
  timeoutMs?: number;
  /**
   * Where a zone's document is fetched; default `https://<zone>/.well-known/idns`. Tests point it at a
   * loopback server, since their zones are not real host names.
   */
  urlFor?: (zone: string) => string;
}

/** Statuses meaning "this domain publishes no document" (the only ones that may lead to "unpublished"). */
const NO_DOCUMENT = [404, 410] as const;

/**
 * Fetches and reads a zone's `/.well-known/idns` document. Returns null only for 404 or 410. Redirects
 * are not followed (the document is at its own URL, under the domain's own TLS name, or not at all): a
 * 3xx is bad_response, as is any other status but 200, a body over maxDocumentBytes or not JSON; an
 * unreachable host is network_error; a document that is not valid for the zone is invalid_publication.
 * A caller's abort rejects with the signal's reason.
 */
export async function fetchWellKnown(zone: string, options: WellKnownOptions = {}, signal?: AbortSignal): Promise<Publication | null> {
  const url = (options.urlFor ?? wellKnownUrl)(zone);
  let res;
  try {
    res = await jsonRequest(url, {
      timeoutMs: options.timeoutMs ?? 5000,
      maxBytes: PUBLICATION_LIMITS.maxDocumentBytes,
      ignoreBodyOf: [...NO_DOCUMENT, 301, 302, 303, 307, 308],
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw err;
  }
  if ((NO_DOCUMENT as readonly number[]).includes(res.status)) return null;
  if (res.status >= 300 && res.status < 400) {
    throw new IdnsError('bad_response', `${url} answered ${res.status}: redirects are not followed for the /.well-known/idns document`);
  }
  if (res.status !== 200) throw new IdnsError('bad_response', `${url} answered ${res.status}`);
  return parseDocument(res.body, zone);
}

/** A `fetchDocument` for ZoneDiscovery with fixed options. */
export function wellKnownFetcher(options: WellKnownOptions = {}): (zone: string, signal?: AbortSignal) => Promise<Publication | null> {
  return (zone, signal) => fetchWellKnown(zone, options, signal);
}
