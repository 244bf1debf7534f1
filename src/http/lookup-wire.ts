import type { Proof } from '../resolver/proof.js';
import type { BatchResult, LookupResult } from '../resolver/resolver.js';

/**
 * The JSON of one cached resolution, cut where it varies: `ttl` and `stale` change with time, and in a
 * batch the proof's chain is a reference into the batch's table. Built once per resolution (keyed by its
 * proof object, which the resolver's cache and every result copied from it share), as bytes.
 */
interface Wire {
  /** `{"handle":…,"status":…,"zone":…,"endpoint":…,"keys":…,"ttl":` */
  head: Buffer;
  /** JSON of the proof's steps, one buffer shared by every resolution with the same chain. */
  chain: Buffer;
  /** The proof's other members after its steps, then the end of the body: `,"record":…}` + trace + `}`. */
  rest: Buffer;
}

/** Bytes of wires kept (shared chains not counted), at most: about 20,000 resolutions. */
const MAX_BYTES = 32 * 1024 * 1024;
/** Distinct chains remembered for sharing; a chain changes only when a zone record on it does. */
const MAX_CHAINS = 1024;
const COMMA = Buffer.from(',');

/** A `GET /v1/lookup` body in the pieces it is written in (see LookupWire.chunks). */
export type BodyChunks = readonly [Buffer, string, Buffer, Buffer];

/**
 * Serialises lookup results for `GET /v1/lookup/{handle}` and `POST /v1/lookup` (docs/protocol.md,
 * section 7), keeping the invariant parts of each cached resolution so that a cache hit costs a map
 * lookup and a write, not a JSON serialisation of its ~5 KiB proof. The full application and the fast
 * path both serialise through here, so their bodies are the same bytes.
 */
export class LookupWire {
  /** In insertion order, oldest first, for the memory bound. */
  private readonly wires = new Map<Proof, Wire>();
  private readonly chains = new Map<string, Buffer>();
  private bytes = 0;

  /**
   * The `GET /v1/lookup/{handle}` body of a result as four chunks to write one after the other: the
   * result's head, the ttl and staleness of this moment, the proof's steps, and the rest. Written as
   * they are (one writev), a hit copies nothing, and the steps — ~3 KiB, the same for every handle of a
   * zone — are one buffer that stays in the processor's cache instead of a copy per handle.
   */
  chunks(r: LookupResult): BodyChunks {
    const w = this.wireOf(r.proof, r);
    return [w.head, `${r.ttl},"stale":${r.stale},"proof":{"steps":`, w.chain, w.rest];
  }

  /** The `GET /v1/lookup/{handle}` body of a result, in one buffer. */
  body(r: LookupResult): Buffer {
    const [head, mid, chain, rest] = this.chunks(r);
    return Buffer.concat([head, Buffer.from(mid), chain, rest]);
  }

  /**
   * The `POST /v1/lookup` body: each chain of proof steps appears once in `chains`, and each result's
   * proof names it by index (`"chain": k`) in place of its `steps`.
   */
  batch(results: readonly BatchResult[]): Buffer {
    const index = new Map<Buffer, number>();
    const chains: Buffer[] = [];
    const items: Buffer[] = [];
    for (const item of results) {
      if (items.length > 0) items.push(COMMA);
      if (!('result' in item)) {
        items.push(Buffer.from(JSON.stringify({ handle: item.handle, error: { code: item.error.code, message: item.error.message } })));
        continue;
      }
      const r = item.result;
      const w = this.wireOf(r.proof, r);
      let k = index.get(w.chain);
      if (k === undefined) {
        k = index.size;
        index.set(w.chain, k);
        if (chains.length > 0) chains.push(COMMA);
        chains.push(w.chain);
      }
      items.push(w.head, Buffer.from(`${r.ttl},"stale":${r.stale},"proof":{"chain":${k}`), w.rest);
    }
    return Buffer.concat([Buffer.from('{"chains":['), ...chains, Buffer.from('],"results":['), ...items, Buffer.from(']}')]);
  }

  private wireOf(proof: Proof, r: LookupResult): Wire {
    const known = this.wires.get(proof);
    if (known) return known;
    const { steps, ...others } = proof;
    const othersJson = JSON.stringify(others);
    const head = Buffer.from(`${JSON.stringify({ handle: r.handle, status: r.status, zone: r.zone, endpoint: r.endpoint, keys: r.keys }).slice(0, -1)},"ttl":`);
    const rest = Buffer.from(`${othersJson === '{}' ? '' : `,${othersJson.slice(1, -1)}`}}${r.trace ? `,"trace":${JSON.stringify(r.trace)}` : ''}}`);
    const w: Wire = { head, chain: this.share(JSON.stringify(steps)), rest };
    this.wires.set(proof, w);
    this.bytes += head.length + rest.length;
    this.trim();
    return w;
  }

  /** The one buffer held for a chain's JSON, so that equal chains share memory and are told equal at once. */
  private share(chain: string): Buffer {
    const known = this.chains.get(chain);
    if (known !== undefined) return known;
    if (this.chains.size >= MAX_CHAINS) this.chains.delete(this.chains.keys().next().value as string);
    const buf = Buffer.from(chain);
    this.chains.set(chain, buf);
    return buf;
  }

  private trim(): void {
    while (this.bytes > MAX_BYTES && this.wires.size > 1) {
      const [oldest, w] = this.wires.entries().next().value as [Proof, Wire];
      this.wires.delete(oldest);
      this.bytes -= w.head.length + w.rest.length;
    }
  }
}
