import type { ProofStep } from '../resolver/proof.js';
import type { BridgedResult, StoredBatchResult, StoredLookupResult, StoredResult } from '../resolver/resolver.js';
import { recordPacker, type StoredProof } from '../resolver/packed-records.js';
import { entriesText } from '../records/history-evidence.js';

/** `,"record":"`: the record follows. */
const OPEN = ',"record":"';

/** Heads kept as bytes (~250 bytes each, about 1 MB in all), for the most recently made ones. */
const HOT_HEADS = 4096;

/** A `GET /v1/lookup` body in the pieces it is written in (see LookupWire.chunks). */
export type BodyChunks = readonly (string | Buffer)[];

/**
 * Serialises lookup results for `GET /v1/lookup/{handle}` and `POST /v1/lookup` (docs/protocol.md,
 * section 7). A body is written in pieces, none of them a copy per cached handle (at 100,000 handles
 * each such copy costs tens of megabytes), and no body is built as one JavaScript string: for a batch
 * of 100 handles (~120 kB) that string, flattened to be written, was most of the garbage a request left.
 * - The head (handle, status, zone, endpoint, keys…) is made on a hit (~1 µs, most of a batch's cost per
 *   handle) and kept, as bytes, for the last HOT_HEADS proofs only: a hot set stays fast, memory bounded.
 * - The proof's steps — ~3 KiB, the same for every handle of a zone — are one buffer per chain: the
 *   resolver shares one chain object between those handles.
 * - The handle record is unpacked from the resolver's packed form (packed-records.ts) as it is written.
 * - What follows it (the end of the proof, the trace) is one string per trace, which the resolver
 *   shares too; a proof with more members (a denial's gaps) has its own string, kept as long as it is.
 * - Only ttl and stale, which change with every answer, are written anew.
 * The full application and the fast path both serialise through here, so their bodies are the same bytes.
 */
export class LookupWire {
  /** Weak: a buffer or string lives as long as the chain, trace or proof it was made from. */
  private readonly chains = new WeakMap<readonly ProofStep[], Buffer>();
  private readonly traces = new WeakMap<NonNullable<StoredResult['trace']>, string>();
  private readonly rests = new WeakMap<StoredProof, string>();
  /**
   * A handle's history as written after its record (`","history":[…]`), by its packed form, kept for the
   * last HOT_HEADS histories written, as the heads are: a copy for every cached handle would double what
   * their histories hold.
   */
  private readonly histories = new Map<string, string>();
  /** The tails after a history (the record's closing quote left out), per trace. */
  private readonly historyTails = new WeakMap<NonNullable<StoredResult['trace']>, string>();
  /** In insertion order, oldest first; keyed by proof, which a cached resolution and its results share. */
  private readonly heads = new Map<StoredProof, Buffer>();

  /**
   * The `GET /v1/lookup/{handle}` body of a result as chunks to write one after the other (one writev):
   * the head, the ttl and stale, the proof's steps, then the record and what follows it.
   */
  chunks(r: StoredLookupResult): BodyChunks {
    if (!r.verified) return [bridgedBody(r)];
    const head = this.headOf(r);
    const mid = `${r.ttl},"stale":${r.stale},"proof":{"steps":`;
    const chain = this.chainOf(r.proof.steps);
    if (isPlain(r.proof)) {
      const h = r.proof.history;
      const record = recordPacker.unpack(r.proof.record);
      if (h === undefined) return [head, mid, chain, OPEN, record, this.tailOf(r.trace)];
      return [head, mid, chain, OPEN, record, this.historyOf(h), this.tailAfterHistory(r.trace)];
    }
    return [head, mid, chain, this.restOf(r)];
  }

  /** The `GET /v1/lookup/{handle}` body of a result, in one buffer. */
  body(r: StoredLookupResult): Buffer {
    return Buffer.concat(this.chunks(r).map((c) => (typeof c === 'string' ? Buffer.from(c) : c)));
  }

  /**
   * The `POST /v1/lookup` body: each chain of proof steps appears once in `chains`, and each result's
   * proof names it by index (`"chain": k`) in place of its `steps`.
   */
  batch(results: readonly StoredBatchResult[]): Buffer {
    const index = new Map<Buffer, number>();
    // The chains and the results, each in order, measured as they come, then copied into one buffer of
    // the exact size between the body's fixed parts.
    const chains: (string | Buffer)[] = [];
    const items: (string | Buffer)[] = [];
    let length = CHAINS_OPEN.length + RESULTS_OPEN.length + BODY_CLOSE.length;
    const add = (list: (string | Buffer)[], piece: string | Buffer) => {
      list.push(piece);
      length += typeof piece === 'string' ? Buffer.byteLength(piece) : piece.length;
    };
    const item = (piece: string | Buffer) => add(items, piece);
    for (const entry of results) {
      if (items.length > 0) item(',');
      if (!('result' in entry)) {
        item(JSON.stringify({ handle: entry.handle, error: { code: entry.error.code, message: entry.error.message } }));
        continue;
      }
      const r = entry.result;
      if (!r.verified) {
        item(bridgedBody(r));
        continue;
      }
      const chain = this.chainOf(r.proof.steps);
      let k = index.get(chain);
      if (k === undefined) {
        k = index.size;
        index.set(chain, k);
        if (k > 0) add(chains, COMMA);
        add(chains, chain);
      }
      item(this.headOf(r));
      item(`${r.ttl},"stale":${r.stale},"proof":{"chain":${k}`);
      if (isPlain(r.proof)) {
        item(OPEN);
        item(recordPacker.unpack(r.proof.record));
        const h = r.proof.history;
        if (h !== undefined) {
          item(this.historyOf(h));
          item(this.tailAfterHistory(r.trace));
        } else item(this.tailOf(r.trace));
      } else item(this.restOf(r));
    }
    const body = Buffer.allocUnsafe(length);
    let at = CHAINS_OPEN.copy(body, 0);
    const copy = (list: (string | Buffer)[]) => {
      for (const piece of list) at += typeof piece === 'string' ? body.write(piece, at) : piece.copy(body, at);
    };
    copy(chains);
    at += RESULTS_OPEN.copy(body, at);
    copy(items);
    BODY_CLOSE.copy(body, at);
    return body;
  }

  /** `{"handle":…,"status":…,"zone":…,"endpoint":…,"keys":…[,"profile","alsoKnownAs","movedTo"],"verified":true,"witnessed":false,"anchor":…,"ttl":` */
  private headOf(r: StoredResult): Buffer {
    let head = this.heads.get(r.proof);
    if (head === undefined) {
      // The owner's links only when set (undefined members are left out), as docs/protocol.md §7 shows.
      const { profile, alsoKnownAs, movedTo, genesis, operatorAsserted } = r;
      head = Buffer.from(
        `${JSON.stringify({ handle: r.handle, status: r.status, zone: r.zone, endpoint: r.endpoint, keys: r.keys, profile, alsoKnownAs, movedTo, genesis, operatorAsserted, verified: true, witnessed: r.witnessed, anchor: r.anchor }).slice(0, -1)},"ttl":`,
      );
      if (this.heads.size >= HOT_HEADS) this.heads.delete(this.heads.keys().next().value as StoredProof);
      this.heads.set(r.proof, head);
    }
    return head;
  }

  private chainOf(steps: readonly ProofStep[]): Buffer {
    let buf = this.chains.get(steps);
    if (buf === undefined) {
      buf = Buffer.from(JSON.stringify(steps));
      this.chains.set(steps, buf);
    }
    return buf;
  }

  /** After a plain proof's record: its end, the trace, the end of the body. */
  private tailOf(trace: StoredResult['trace']): string {
    if (trace === undefined) return '"}}';
    let tail = this.traces.get(trace);
    if (tail === undefined) {
      tail = flat(`"},"trace":${JSON.stringify(trace)}}`);
      this.traces.set(trace, tail);
    }
    return tail;
  }

  /** `","history":[[1,"e1"],[2,"e2"]]`: closes the record's string, then the entries (verified compact JWSs, nothing to escape), from their packed form. */
  private historyOf(packed: string): string {
    let text = this.histories.get(packed);
    if (text === undefined) {
      text = flat(`","history":${entriesText(recordPacker.unpackHistory(packed))}`);
      if (this.histories.size >= HOT_HEADS) this.histories.delete(this.histories.keys().next().value as string);
      this.histories.set(packed, text);
    }
    return text;
  }

  /** tailOf without the quote that closes the record (historyOf closed it). */
  private tailAfterHistory(trace: StoredResult['trace']): string {
    if (trace === undefined) return '}}';
    let tail = this.historyTails.get(trace);
    if (tail === undefined) {
      tail = flat(this.tailOf(trace).slice(1));
      this.historyTails.set(trace, tail);
    }
    return tail;
  }

  /** After the steps of any other proof: its other members, its end, the trace, the end of the body. */
  private restOf(r: StoredResult): string {
    let rest = this.rests.get(r.proof);
    if (rest === undefined) {
      const { steps: _steps, ...others } = recordPacker.unpackProof(r.proof);
      const json = JSON.stringify(others);
      rest = flat(`${json === '{}' ? '' : `,${json.slice(1, -1)}`}}${r.trace ? `,"trace":${JSON.stringify(r.trace)}` : ''}}`);
      this.rests.set(r.proof, rest);
    }
    return rest;
  }
}

/**
 * True for a proof of exactly `steps` and `record`, and a handle's `history` (what the resolver's own walk
 * makes): its record and entries are written as they are, since what verified is compact JWSs, base64url
 * and dots (decodeCompact), which JSON needs no escaping for.
 */
function isPlain(proof: StoredProof): boolean {
  let n = 0;
  for (const key in proof) {
    if (key !== 'steps' && key !== 'record' && key !== 'history') return false;
    n += 1;
  }
  return n === 2 || (n === 3 && proof.history !== undefined);
}

/**
 * A flat copy of a string built by concatenation or slicing. V8 keeps such strings as ropes (32 bytes a
 * node) or as views that keep their whole parent alive; JSON.parse makes a new flat string, exact for
 * any string.
 */
function flat(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
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
    witnessed: false,
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
