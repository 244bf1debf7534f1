import type { Proof, ProofStep } from '../resolver/proof.js';
import type { BatchResult, BridgedResult, LookupResult, VerifiedResult } from '../resolver/resolver.js';

/** `,"record":"`: the record follows. */
const OPEN = ',"record":"';

/** Heads kept (~250 bytes each, about 1 MB in all), for the most recently made ones. */
const HOT_HEADS = 4096;

/** A `GET /v1/lookup` body in the pieces it is written in (see LookupWire.chunks). */
export type BodyChunks = readonly [string, Buffer, string, string, string];

/**
 * Serialises lookup results for `GET /v1/lookup/{handle}` and `POST /v1/lookup` (docs/protocol.md,
 * section 7). A body is written in pieces, and none of them is a copy per cached handle: at 100,000
 * handles each such copy costs tens of megabytes.
 * - The head (handle, status, zone, endpoint, keys) is made on a hit (~1 µs, most of a batch's cost per
 *   handle) and kept for the last HOT_HEADS proofs only: a hot set stays fast, memory stays bounded.
 * - The proof's steps — ~3 KiB, the same for every handle of a zone — are one buffer per chain: the
 *   resolver shares one chain object between those handles.
 * - The handle record is written from the proof's own string.
 * - What follows it (the end of the proof, the trace) is one string per trace, which the resolver
 *   shares too; a proof with more members (a denial's gaps) has its own string, kept as long as it is.
 * The full application and the fast path both serialise through here, so their bodies are the same bytes.
 */
export class LookupWire {
  /** Weak: a string lives as long as the chain, trace or proof it was made from. */
  private readonly chains = new WeakMap<readonly ProofStep[], Buffer>();
  private readonly traces = new WeakMap<NonNullable<VerifiedResult['trace']>, string>();
  private readonly rests = new WeakMap<Proof, string>();
  /** In insertion order, oldest first; keyed by proof, which a cached resolution and its results share. */
  private readonly heads = new Map<Proof, string>();

  /**
   * The `GET /v1/lookup/{handle}` body of a result as chunks to write one after the other (one writev):
   * everything before the proof's steps, the steps, then the record and what follows it.
   */
  chunks(r: LookupResult): BodyChunks {
    if (!r.verified) return [bridgedBody(r), EMPTY, '', '', ''];
    const head = `${this.headOf(r)}${r.ttl},"stale":${r.stale},"proof":{"steps":`;
    const proof = r.proof;
    const chain = this.chainOf(proof.steps);
    if (isPlain(proof)) return [head, chain, OPEN, proof.record, this.tailOf(r.trace)];
    return [head, chain, '', '', this.restOf(r)];
  }

  /** The `GET /v1/lookup/{handle}` body of a result, in one buffer. */
  body(r: LookupResult): Buffer {
    const [head, chain, open, record, tail] = this.chunks(r);
    return Buffer.concat([Buffer.from(head), chain, Buffer.from(open + record + tail)]);
  }

  /**
   * The `POST /v1/lookup` body: each chain of proof steps appears once in `chains`, and each result's
   * proof names it by index (`"chain": k`) in place of its `steps`.
   */
  batch(results: readonly BatchResult[]): Buffer {
    const index = new Map<Buffer, number>();
    const chains: Buffer[] = [];
    let items = '';
    for (const item of results) {
      if (items.length > 0) items += ',';
      if (!('result' in item)) {
        items += JSON.stringify({ handle: item.handle, error: { code: item.error.code, message: item.error.message } });
        continue;
      }
      const r = item.result;
      if (!r.verified) {
        items += bridgedBody(r);
        continue;
      }
      const chain = this.chainOf(r.proof.steps);
      let k = index.get(chain);
      if (k === undefined) {
        k = index.size;
        index.set(chain, k);
        if (chains.length > 0) chains.push(COMMA);
        chains.push(chain);
      }
      const rest = isPlain(r.proof) ? `${OPEN}${r.proof.record}${this.tailOf(r.trace)}` : this.restOf(r);
      items += `${this.headOf(r)}${r.ttl},"stale":${r.stale},"proof":{"chain":${k}${rest}`;
    }
    // One buffer, written in place: no intermediate copy of a body that is ~150 kB for 100 handles.
    const end = `],"results":[${items}]}`;
    let length = CHAINS_OPEN.length + Buffer.byteLength(end);
    for (const chain of chains) length += chain.length;
    const body = Buffer.allocUnsafe(length);
    let at = CHAINS_OPEN.copy(body, 0);
    for (const chain of chains) at += chain.copy(body, at);
    body.write(end, at);
    return body;
  }

  /** `{"handle":…,"status":…,"zone":…,"endpoint":…,"keys":…[,"profile","alsoKnownAs","movedTo"],"verified":true,"anchor":…,"ttl":` */
  private headOf(r: VerifiedResult): string {
    let head = this.heads.get(r.proof);
    if (head === undefined) {
      // The owner's links only when set (undefined members are left out), as docs/protocol.md §7 shows.
      const { profile, alsoKnownAs, movedTo } = r;
      head = flat(
        `${JSON.stringify({ handle: r.handle, status: r.status, zone: r.zone, endpoint: r.endpoint, keys: r.keys, profile, alsoKnownAs, movedTo, verified: true, anchor: r.anchor }).slice(0, -1)},"ttl":`,
      );
      if (this.heads.size >= HOT_HEADS) this.heads.delete(this.heads.keys().next().value as Proof);
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
  private tailOf(trace: VerifiedResult['trace']): string {
    if (trace === undefined) return '"}}';
    let tail = this.traces.get(trace);
    if (tail === undefined) {
      tail = flat(`"},"trace":${JSON.stringify(trace)}}`);
      this.traces.set(trace, tail);
    }
    return tail;
  }

  /** After the steps of any other proof: its other members, its end, the trace, the end of the body. */
  private restOf(r: VerifiedResult): string {
    let rest = this.rests.get(r.proof);
    if (rest === undefined) {
      const { steps: _steps, ...others } = r.proof;
      const json = JSON.stringify(others);
      rest = flat(`${json === '{}' ? '' : `,${json.slice(1, -1)}`}}${r.trace ? `,"trace":${JSON.stringify(r.trace)}` : ''}}`);
      this.rests.set(r.proof, rest);
    }
    return rest;
  }
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
    source: r.source,
    subject: r.subject,
    aliases: r.aliases,
    ...(r.profile !== undefined ? { profile: r.profile } : {}),
    ttl: r.ttl,
    stale: r.stale,
  });
}

const EMPTY = Buffer.alloc(0);
const COMMA = Buffer.from(',');
const CHAINS_OPEN = Buffer.from('{"chains":[');
