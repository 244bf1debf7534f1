import type { Proof, ProofStep } from '../resolver/proof.js';
import type { BatchResult, BridgedResult, LookupResult, VerifiedResult } from '../resolver/resolver.js';

/** `,"record":"`: the record follows. */
const OPEN = ',"record":"';

/** Proofs whose pieces are kept as bytes (~1.3 kB each, about 5 MB in all), the most recently made. */
const HOT_PROOFS = 4096;

/** A `GET /v1/lookup` body in the pieces it is written in (see LookupWire.chunks). */
export type BodyChunks = readonly (string | Buffer)[];

/** The bytes of a verified result's body around its varying members (ttl, stale) and its steps. */
interface HotPieces {
  /** `{"handle":…,"status":…,"zone":…,"endpoint":…,"keys":…[,"profile","alsoKnownAs","movedTo"],"verified":true,"anchor":…,"ttl":` */
  head: Buffer;
  /** After the steps (or the chain index): the record and the rest of the proof, the trace, the end. */
  rest: Buffer;
  /** The trace `rest` was made with. */
  trace: VerifiedResult['trace'];
}

/**
 * Serialises lookup results for `GET /v1/lookup/{handle}` and `POST /v1/lookup` (docs/protocol.md,
 * section 7). A body is written as byte pieces, made once and copied from then on: no body is built
 * as a JavaScript string, which for a batch of 100 handles (~120 kB) was most of the garbage a request
 * left, and so of the collector's work.
 * - The proof's steps — ~3 KiB, the same for every handle of a zone — are one buffer per chain: the
 *   resolver shares one chain object between those handles.
 * - The head (handle, status, zone, endpoint, keys…) and the rest (record, trace, the end) are kept as
 *   bytes for the last HOT_PROOFS proofs made: a hot set is copied, not serialised, and memory stays
 *   bounded (a copy per cached handle would cost tens of megabytes at 100,000 handles).
 * - Only ttl and stale, which change with every answer, are written per answer.
 * The full application and the fast path both serialise through here, so their bodies are the same bytes.
 */
export class LookupWire {
  /** Weak: a buffer or string lives as long as the chain, trace or proof it was made from. */
  private readonly chains = new WeakMap<readonly ProofStep[], Buffer>();
  private readonly traces = new WeakMap<NonNullable<VerifiedResult['trace']>, string>();
  /** Oldest first; keyed by proof, which a cached resolution and its results share. */
  private readonly hot = new Map<Proof, HotPieces>();

  /**
   * The `GET /v1/lookup/{handle}` body of a result as chunks to write one after the other (one writev):
   * the head, the ttl and stale, the proof's steps, then the record and what follows it.
   */
  chunks(r: LookupResult): BodyChunks {
    if (!r.verified) return [bridgedBody(r)];
    const pieces = this.piecesOf(r);
    return [pieces.head, `${r.ttl},"stale":${r.stale},"proof":{"steps":`, this.chainOf(r.proof.steps), pieces.rest];
  }

  /** The `GET /v1/lookup/{handle}` body of a result, in one buffer. */
  body(r: LookupResult): Buffer {
    const chunks = this.chunks(r);
    return Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)));
  }

  /**
   * The `POST /v1/lookup` body: each chain of proof steps appears once in `chains`, and each result's
   * proof names it by index (`"chain": k`) in place of its `steps`.
   */
  batch(results: readonly BatchResult[]): Buffer {
    const index = new Map<Buffer, number>();
    // The body's pieces in order; measured, then copied into one buffer of the exact size.
    const pieces: (string | Buffer)[] = [CHAINS_OPEN];
    let length = CHAINS_OPEN.length;
    const add = (piece: string | Buffer) => {
      pieces.push(piece);
      length += typeof piece === 'string' ? Buffer.byteLength(piece) : piece.length;
    };
    const items: (string | Buffer)[] = [];
    for (const item of results) {
      if (items.length > 0) items.push(',');
      if (!('result' in item)) {
        items.push(JSON.stringify({ handle: item.handle, error: { code: item.error.code, message: item.error.message } }));
        continue;
      }
      const r = item.result;
      if (!r.verified) {
        items.push(bridgedBody(r));
        continue;
      }
      const chain = this.chainOf(r.proof.steps);
      let k = index.get(chain);
      if (k === undefined) {
        k = index.size;
        index.set(chain, k);
        if (k > 0) add(COMMA);
        add(chain);
      }
      const hot = this.piecesOf(r);
      items.push(hot.head, `${r.ttl},"stale":${r.stale},"proof":{"chain":${k}`, hot.rest);
    }
    add(RESULTS_OPEN);
    for (const piece of items) add(piece);
    add(BODY_CLOSE);
    const body = Buffer.allocUnsafe(length);
    let at = 0;
    for (const piece of pieces) at += typeof piece === 'string' ? body.write(piece, at) : piece.copy(body, at);
    return body;
  }

  /** The kept pieces of a verified result, made on first use (~5 µs) and kept while the proof stays hot. */
  private piecesOf(r: VerifiedResult): HotPieces {
    let pieces = this.hot.get(r.proof);
    // Kept in the order made: a proof in constant use is made again once per HOT_PROOFS new ones, which
    // costs less than reordering on every use.
    if (pieces !== undefined && pieces.trace === r.trace) return pieces;
    // The owner's links only when set (undefined members are left out), as docs/protocol.md §7 shows.
    const { profile, alsoKnownAs, movedTo } = r;
    const head = Buffer.from(
      `${JSON.stringify({ handle: r.handle, status: r.status, zone: r.zone, endpoint: r.endpoint, keys: r.keys, profile, alsoKnownAs, movedTo, verified: true, anchor: r.anchor }).slice(0, -1)},"ttl":`,
    );
    const rest = Buffer.from(isPlain(r.proof) ? `${OPEN}${r.proof.record}${this.tailOf(r.trace)}` : restOf(r));
    pieces = { head, rest, trace: r.trace };
    this.hot.delete(r.proof);
    if (this.hot.size >= HOT_PROOFS) this.hot.delete(this.hot.keys().next().value as Proof);
    this.hot.set(r.proof, pieces);
    return pieces;
  }

  private chainOf(steps: readonly ProofStep[]): Buffer {
    let buf = this.chains.get(steps);
    if (buf === undefined) {
      buf = Buffer.from(JSON.stringify(steps));
      this.chains.set(steps, buf);
    }
    return buf;
  }

  /** After a plain proof's record: its end, the trace, the end of the body (shared by the handles of one trace). */
  private tailOf(trace: VerifiedResult['trace']): string {
    if (trace === undefined) return '"}}';
    let tail = this.traces.get(trace);
    if (tail === undefined) {
      tail = `"},"trace":${JSON.stringify(trace)}}`;
      this.traces.set(trace, tail);
    }
    return tail;
  }
}

/** After the steps of any other proof: its other members, its end, the trace, the end of the body. */
function restOf(r: VerifiedResult): string {
  const { steps: _steps, ...others } = r.proof;
  const json = JSON.stringify(others);
  return `${json === '{}' ? '' : `,${json.slice(1, -1)}`}}${r.trace ? `,"trace":${JSON.stringify(r.trace)}` : ''}}`;
}

/**
 * True for a proof of exactly `steps` and `record` (what the resolver's own walk makes): its record is
 * written as it is, since a record that verified is a compact JWS, base64url and dots (decodeCompact),
 * which JSON needs no escaping for.
 */
function isPlain(proof: Proof): boolean {
  let n = 0;
  for (const key in proof) {
    if (key !== 'steps' && key !== 'record') return false;
    n += 1;
  }
  return n === 2;
}

/**
 * A bridged result's body: what the host's WebFinger said, marked unverified; no proof. Small and
 * cached by the bridge, so it is written whole.
 */
function bridgedBody(r: BridgedResult): string {
  return JSON.stringify({
    handle: r.handle,
    status: r.status,
    zone: null,
    endpoint: r.endpoint,
    keys: [],
    verified: false,
    source: r.source,
    subject: r.subject,
    aliases: r.aliases,
    ...(r.profile !== undefined ? { profile: r.profile } : {}),
    ttl: r.ttl,
    stale: r.stale,
  });
}

const COMMA = Buffer.from(',');
const CHAINS_OPEN = Buffer.from('{"chains":[');
const RESULTS_OPEN = Buffer.from('],"results":[');
const BODY_CLOSE = Buffer.from(']}');
