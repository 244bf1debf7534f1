import { randomFillSync } from 'node:crypto';
import { IdnsError } from '../errors.js';
import { digestElement } from '../records/digest.js';
import type { ZoneRecord } from '../records/types.js';
// The verifier without the schemas: a digest thread checks the usual records without loading zod, and
// hands the rest back (SchemaNeeded). On the main thread verify.ts has installed them.
import { installHistoryCheck, SchemaNeeded, verifiedZoneOf, verifyContentRecord, verifyZoneRecord, type VerifiedZone } from '../records/verify-core.js';
import { checkHistoryEntry } from '../records/history-entries.js';

// Copied history entries are checked wherever copies are (the main thread and the digest threads): they
// are one record in two of an imported zone, and handing each back from a digest thread to the main
// thread doubled a transfer's time. Only copies need this check, so the resolver does not load it.
installHistoryCheck(checkHistoryEntry);

/**
 * What a secondary checks of each record it copies, beside the digest (docs/security.md, "What a secondary
 * checks"): the zone record the stream was signed with (already verified against the trusted keys by the
 * caller), the time to check `exp`/`iat` against, and the share of records whose signature is verified.
 * Plain data, so it can be handed to a worker thread.
 */
export interface ContentCheckSpec {
  zone: string;
  zoneRecord: string;
  /** The zone record's payload, when the caller has verified it (else it is verified here). */
  record?: ZoneRecord;
  nowSeconds: number;
  /** 1: every signature; 0 < rate < 1: each record's signature with this probability, chosen at random here. */
  signatureRate: number;
}

/** Random numbers drawn at once for the signature sample. */
const RANDOM_BATCH = 1024;

/**
 * Checks records of a zone's content as a secondary receives them, with the resolver's own verifier
 * (verifyContentRecord): a record a resolver would refuse is refused here, so it is never stored or served.
 * Signatures cost about 70 µs each; structure, schema and position about 5.5 µs: every record gets the
 * latter, `signatureRate` of them the former, picked with a CSPRNG so a source cannot tell which.
 */
export class ContentChecker {
  private readonly zone: VerifiedZone;
  private readonly random = new Uint32Array(RANDOM_BATCH);
  private drawn = RANDOM_BATCH;
  private readonly threshold: number;
  /** Records checked, and how many of them had their signature verified. */
  checked = 0;
  signatures = 0;

  /**
   * Records only the record schemas can decide, as digest elements, when this checker hands them on
   * (`handOn`: a digest thread, which has not loaded the schemas); they are not counted as checked.
   */
  readonly handedOn: string[] | null;

  constructor(
    readonly spec: ContentCheckSpec,
    handOn = false,
  ) {
    // The caller verified this record against the trusted keys; here it only supplies the zone's keys.
    this.zone = spec.record ? verifiedZoneOf(spec.record, spec.zoneRecord) : verifyZoneRecord(spec.zoneRecord, spec.zone, spec.nowSeconds);
    this.handedOn = handOn ? [] : null;
    this.threshold = Math.min(1, Math.max(0, spec.signatureRate)) * 2 ** 32;
  }

  /** Checks one record stored under (type, key); throws transfer_failed naming the record when a resolver would refuse it. */
  check(type: string, key: string, jws: string): void {
    const signature = this.threshold >= 2 ** 32 || this.draw() < this.threshold;
    try {
      verifyContentRecord(type, key, jws, this.zone, this.spec.nowSeconds, signature);
    } catch (err) {
      if (err instanceof IdnsError) throw refused(type, key, err);
      if (err instanceof SchemaNeeded && this.handedOn !== null) {
        this.handedOn.push(digestElement(type, key, jws));
        return;
      }
      throw err;
    }
    this.checked += 1;
    if (signature) this.signatures += 1;
  }

  /** Checks a digest element `type "\n" key "\n" jws` (as a string, or bytes read as ASCII). */
  checkElement(element: string): void {
    const a = element.indexOf('\n');
    // The second newline, found from the front: lastIndexOf would walk back over the whole JWS (0.4 µs a
    // record). A newline after it lands in the JWS, which decodeCompact refuses (base64url has none), as a
    // newline inside the key was refused before: the records accepted are the same.
    const b = a === -1 ? -1 : element.indexOf('\n', a + 1);
    if (b === -1) throw new IdnsError('transfer_failed', 'a transfer line is not a record stored under a type and a key');
    this.check(element.slice(0, a), element.slice(a + 1, b), element.slice(b + 1));
  }

  /**
   * Checks the digest element `bytes[start, end)` (ASCII: compact streams are checked to be as they are
   * split) as checkElement does the same text, reading the type, key and JWS straight from the bytes: a
   * string of the whole element per record was a third of the worker's garbage in a full transfer.
   */
  checkBytes(bytes: Buffer, start: number, end: number): void {
    const a = bytes.indexOf(NL, start);
    const b = a === -1 || a >= end ? -1 : bytes.indexOf(NL, a + 1);
    if (b === -1 || b >= end) throw new IdnsError('transfer_failed', 'a transfer line is not a record stored under a type and a key');
    this.check(typeName(bytes, start, a), bytes.toString('latin1', a + 1, b), bytes.toString('latin1', b + 1, end));
  }

  private draw(): number {
    if (this.drawn === RANDOM_BATCH) {
      randomFillSync(this.random);
      this.drawn = 0;
    }
    return this.random[this.drawn++]!;
  }
}

const NL = 0x0a;
const TYPES = ['handle', 'denial', 'delegation', 'op'] as const;

/** The type spelled by `bytes[a, b)`: one of the shared constants when it is one, compared byte by byte. */
function typeName(bytes: Buffer, a: number, b: number): string {
  next: for (const name of TYPES) {
    if (name.length !== b - a) continue;
    for (let i = 0; i < name.length; i++) if (bytes[a + i] !== name.charCodeAt(i)) continue next;
    return name;
  }
  return bytes.toString('latin1', a, b);
}

/** The error of a record a resolver would refuse: the transfer is refused as a whole. */
function refused(type: string, key: string, cause: IdnsError): IdnsError {
  return new IdnsError(
    'transfer_failed',
    `the ${type} record stored under ${JSON.stringify(key.slice(0, 300))} would be refused by a resolver (${cause.message}); transfer refused`,
    { cause },
  );
}
