import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { IdnsError } from '../errors.js';
import { parseHandle, type ParsedHandle } from '../names/handle.js';
import { isAtOrBelow } from '../names/zone.js';
import { namesBetween } from '../records/verify.js';
import type { StoredRecord } from '../store/records.js';
import type { ZoneRow } from '../store/zones.js';
import { nameHash } from '../records/denial.js';
import { COMPACT_JWS_TEXT } from '../records/encoding.js';
import { signaturePrefix, signaturePrefixOf } from '../records/jws.js';
import type { FileRecordSpan } from '../store/answer-file.js';
import type { Store } from '../store/store.js';
import { decodePayload } from './editor.js';
import { serialOf } from '../records/serial.js';
import type { ZoneReader } from './zone-reader.js';
import type { AnswerFiles } from './answer-files.js';
import { WHOLE_EVIDENCE_MAX_ENTRIES, evidenceOf } from '../records/history-evidence.js';
import type { NumberedEntry } from '../records/history-chain.js';
import { mappedOf, type MappedRecord } from './zone-logs.js';

/** An authoritative answer for one handle. */
export interface AuthoritativeAnswer {
  /** answer: the handle record; denial: proof it does not exist; referral: the delegation of the child zone that holds it. */
  status: 'answer' | 'denial' | 'referral';
  zone: string;
  serial: number;
  /** The signed handle record (answer), the signed gap covering the name's hash (denial), or the signed delegation (referral). */
  record: string;
  /**
   * Answer only: entries of the handle's history as `[seq, jws]`, up to the one the record's `seq` names
   * (the whole history, or the last entries of its compact form, always that one: evidenceOf), so a
   * resolver can check that the record follows from its owner's signed changes (docs/protocol.md §6.5).
   */
  history?: NumberedEntry[];
  /** The signed zone record, so a client can check `record` without a second request. */
  zoneRecord: string;
  /** Seconds a cache may keep this: the record's TTL (the zone's minimum for a denial), capped by `exp`. */
  ttl: number;
  /** Denial only, when the host is below the zone: gaps proving that no name in between is a delegated zone. */
  noCut?: string[];
}

/** An authoritative answer already serialised, for the read fast path. */
export interface SerialisedAnswer {
  status: AuthoritativeAnswer['status'];
  zone: string;
  /** The zone's version the answer was read at. */
  version: number;
  ttl: number;
  /** The first 16 characters of the signature of the record the body carries (records/jws.ts signaturePrefix), and its zone record: its ETag's parts. */
  recordSignature: string;
  zoneRecord: string;
  /** Exactly `JSON.stringify` of the AuthoritativeAnswer that `resolve` gives for the same input, UTF-8. */
  body: Buffer;
  /** Asked for (`withLog`), an answer's: the leaf of its history's last entry in the zone's log (null: the zone has no log). */
  leaf?: number | null;
  /** Asked for (`withLog`): the records of the answer whose map proofs a binding carries (zone-logs.ts mappedOf). */
  mapped?: MappedRecord[];
}

/** A zone's parts of every answer body at one version, serialised once. */
interface ZoneFragments {
  version: number;
  record: string;
  /** The body up to the value of `record`, per status. */
  answerHead: Buffer;
  referralHead: Buffer;
  /** From after `record` (and `history`) up to the value of `ttl`. */
  tail: Buffer;
}

// A local part that parseHandle would accept and return unchanged: lower-case, 1–64 of [a-z0-9._-], not
// starting or ending with '.' or '-', no '..'. Anything else goes through parseHandle.
const NORMAL_LOCAL = /^[a-z0-9_](?:[a-z0-9._-]{0,62}[a-z0-9_])?$/;
/** parseHandle's bound on the whole input. */
const MAX_HANDLE_INPUT = 320;
/** Distinct raw hosts remembered; hosts come from the network, so the memo is bounded. */
const MAX_HOSTS = 1000;

/** Answers queries for the zones this server holds, from stored signed records only: no signing here. */
export class Authority {
  // Raw host → normalised host, from successful parses: IDNA normalisation is the costliest step of
  // parsing a handle, and the queries a server answers name few distinct hosts.
  private readonly hosts = new Map<string, string>();
  private readonly fragments = new Map<string, ZoneFragments>();

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneReader,
    private readonly clock: Clock,
    /** Answer files of large zones (answer-files.ts), tried before the database on the read fast path. */
    private readonly files: Pick<AnswerFiles, 'record'> | null = null,
  ) {}

  /**
   * Answers for a handle from the closest zone held here, or from `fromZone` when the asker names the zone
   * it believes it is talking to (a resolver walking down from a parent does, so that a server holding both
   * a parent and its child still gives the parent's referral). Throws not_authoritative when no zone here
   * holds the handle (or `fromZone` is not held here or does not contain it).
   */
  resolve(input: string, fromZone?: string): AuthoritativeAnswer {
    const { handle, host } = this.parse(input);
    const zone = fromZone === undefined ? this.zones.closestHosted(host) : this.zones.cachedZone(fromZone);
    if (!zone) throw new IdnsError('not_authoritative', `this server is not authoritative for ${fromZone ?? host}`);
    if (fromZone !== undefined && !isAtOrBelow(host, fromZone)) {
      throw new IdnsError('not_authoritative', `${handle} is not in zone ${fromZone}`);
    }
    const zoneRecord = this.zones.zoneRecord(zone);
    if (zoneRecord === null) throw new IdnsError('zone_unavailable', `zone ${zone.name} has not been loaded yet`);
    const unavailable = this.zones.unavailable(zone);
    if (unavailable) throw new IdnsError('zone_unavailable', unavailable);
    const now = epochSeconds(this.clock);
    const cut = this.zones.cutFor(zone, host);
    // TTL and expiry come from the signed payload itself, not from the stored columns: a secondary's copy
    // does not keep the expiry column (it would have to trust the transfer for it).
    if (cut) {
      const t = recordTimes(cut.jws);
      return this.answer('referral', zone.name, zone.version, cut.jws, zone.record, t.ttl, t.exp, now);
    }
    const found = this.store.records.get(zone.content, 'handle', handle);
    if (found) {
      const t = recordTimes(found.jws);
      return this.answer(
        'answer',
        zone.name,
        zone.version,
        found.jws,
        zone.record,
        t.ttl,
        t.exp,
        now,
        JSON.parse(this.evidence(zone.content, handle)) as NumberedEntry[],
      );
    }
    const gap = this.gap(zone, handle);
    const answer = this.answer('denial', zone.name, zone.version, gap.jws, zone.record, zoneRecord.minimum, Number(decodePayload(gap.jws).exp), now);
    const between = namesBetween(host, zone.name);
    if (between.length > 0) {
      const noCut = new Set(between.map((name) => this.gap(zone, name).jws));
      noCut.delete(gap.jws);
      answer.noCut = [...noCut];
    }
    return answer;
  }

  /**
   * The handle held here whose record names exactly `endpoint` (WebFinger by actor URL), answered as
   * resolve() answers it. A lookup on the endpoint index, reading at most two rows: throws
   * handle_not_found when no handle of a zone held here names the endpoint, and also when several do,
   * since an endpoint names no handle by itself (anyone may list another's actor URL as their endpoint)
   * and picking one would let a newcomer take over the answer.
   */
  byEndpoint(endpoint: string): { handle: string; answer: AuthoritativeAnswer } {
    const rows = this.store.records.handlesByEndpoint(endpoint, 2);
    if (rows.length > 1) throw new IdnsError('handle_not_found', 'more than one handle held here has this endpoint; ask for the handle by its acct: URI');
    const handle = rows[0]?.key;
    const answer = handle === undefined ? null : this.resolve(handle);
    if (handle === undefined || answer === null || answer.status !== 'answer') throw new IdnsError('handle_not_found', 'no handle held here has this endpoint');
    return { handle, answer };
  }

  /**
   * `resolve(input)`, serialised: the same answer (or the same error), with the body of answers and
   * referrals spliced from the stored JWS and per-zone fragments rather than built as objects and
   * stringified. Denials take `resolve` itself.
   */
  resolveSerialised(input: string, withLog = false): SerialisedAnswer {
    const { handle, host } = this.parse(input);
    const zone = this.zones.closestHosted(host);
    // Every unusual case goes through resolve(), which throws its errors or builds the denial.
    if (zone && this.zones.zoneRecord(zone) !== null && this.zones.unavailable(zone) === null) {
      // A handle at the zone's apex cannot be below a cut. The read batch is opened only for a read of
      // the database: an answer from an answer file needs none.
      const cut = host === zone.name ? undefined : (this.store.batchReads(), this.zones.cutFor(zone, host));
      if (cut) {
        const referral = this.spliced('referral', zone, cut.jws, null);
        if (withLog) referral.mapped = [{ type: 'delegation', key: cut.key }];
        return referral;
      }
      // An answer file's record comes with its times, and is a compact JWS (the file holds no other kind).
      const filed = this.files?.record(zone, handle);
      if (filed !== undefined) {
        const answer = this.filed(zone, filed);
        if (withLog) {
          answer.leaf = filed.leaf;
          answer.mapped = [{ type: 'handle', key: handle }];
        }
        return answer;
      }
      this.store.batchReads();
      const jws = this.store.records.jws(zone.content, 'handle', handle);
      if (jws !== undefined) {
        const answer = this.spliced('answer', zone, jws, this.evidence(zone.content, handle));
        // Its evidence's last entry is the handle's newest (evidenceOf).
        if (withLog) {
          answer.leaf = this.store.records.newestLeaf(zone.content, handle) ?? null;
          answer.mapped = [{ type: 'handle', key: handle }];
        }
        return answer;
      }
    }
    this.store.batchReads();
    const answer = this.resolve(input);
    // resolve() returned, so it found the same closest zone: `zone` is set.
    const { status, ttl, record, zoneRecord } = answer;
    const serialised: SerialisedAnswer = {
      status,
      zone: answer.zone,
      version: zone!.version,
      ttl,
      recordSignature: signaturePrefix(record),
      zoneRecord,
      body: Buffer.from(JSON.stringify(answer)),
    };
    if (withLog) {
      if (status === 'answer') serialised.leaf = this.store.records.newestLeaf(zone!.content, this.parse(input).handle) ?? null;
      serialised.mapped = mappedOf(answer);
    }
    return serialised;
  }

  /** parseHandle, skipping host normalisation for a host already seen and a local part already normal. */
  private parse(input: string): Pick<ParsedHandle, 'handle' | 'host'> {
    const at = input.indexOf('@');
    if (at > 0 && input.length <= MAX_HANDLE_INPUT) {
      const host = this.hosts.get(input.slice(at + 1));
      if (host !== undefined) {
        const local = input.slice(0, at);
        if (NORMAL_LOCAL.test(local) && !local.includes('..')) return { handle: `${local}@${host}`, host };
      }
    }
    const parsed = parseHandle(input);
    if (this.hosts.size >= MAX_HOSTS) this.hosts.clear();
    this.hosts.set(input.slice(at + 1), parsed.host);
    return parsed;
  }

  /**
   * The history entries an answer with the handle's record carries (AuthoritativeAnswer.history), as
   * JSON text: its last entries, or the evidence kept with a long history (src/store/compact-histories.ts).
   */
  private evidence(content: string, handle: string): string {
    const newest = this.store.records.latestHistory(content, handle, WHOLE_EVIDENCE_MAX_ENTRIES);
    return evidenceOf(newest, () => this.store.histories.evidence(content, handle));
  }

  /** The answer body spliced around `jws` and, for an answer, `history` (its evidence, as JSON text). */
  private spliced(status: 'answer' | 'referral', zone: ZoneRow, jws: string, history: string | null): SerialisedAnswer {
    const t = recordTimes(jws);
    const ttl = cappedTtl(t.ttl, t.exp, epochSeconds(this.clock));
    const f = this.fragmentsOf(zone);
    const head = status === 'answer' ? f.answerHead : f.referralHead;
    let body: Buffer;
    if (COMPACT_JWS_TEXT.test(jws)) body = compactBody(head, jws, history, f.tail, ttl);
    else {
      const historyPart = history === null ? '' : `,"history":${history}`;
      body = Buffer.concat([head, Buffer.from(JSON.stringify(jws)), Buffer.from(historyPart), f.tail, Buffer.from(`${ttlText(ttl)}}`)]);
    }
    return { status, zone: zone.name, version: zone.version, ttl, recordSignature: signaturePrefix(jws), zoneRecord: zone.record, body };
  }

  /**
   * An answer body spliced around an answer file's record as the file's read buffer holds it (a compact
   * JWS and its evidence's JSON text, both ASCII, with their times): no string is made of either.
   */
  private filed(zone: ZoneRow, s: FileRecordSpan): SerialisedAnswer {
    const ttl = cappedTtl(s.ttl, s.exp, epochSeconds(this.clock));
    const f = this.fragmentsOf(zone);
    const body = compactBody(f.answerHead, s.bytes.subarray(s.jwsStart, s.jwsEnd), s.bytes.subarray(s.jwsEnd, s.end), f.tail, ttl);
    return {
      status: 'answer',
      zone: zone.name,
      version: zone.version,
      ttl,
      recordSignature: signaturePrefixOf(s.bytes, s.jwsStart, s.jwsEnd),
      zoneRecord: zone.record,
      body,
    };
  }

  /** A zone's parts of every answer body at its version (made once a version). */
  private fragmentsOf(zone: ZoneRow): ZoneFragments {
    let f = this.fragments.get(zone.name);
    if (f === undefined || f.version !== zone.version || f.record !== zone.record) {
      // The same key order as answer() builds, so that the splice equals JSON.stringify of its object.
      const head = (s: string) =>
        Buffer.from(`{"status":${JSON.stringify(s)},"zone":${JSON.stringify(zone.name)},"serial":${serialOf(zone.version)},"record":`);
      f = {
        version: zone.version,
        record: zone.record,
        answerHead: head('answer'),
        referralHead: head('referral'),
        tail: Buffer.from(`,"zoneRecord":${JSON.stringify(zone.record)},"ttl":`),
      };
      this.fragments.set(zone.name, f);
    }
    return f;
  }

  private gap(zone: ZoneRow, name: string): StoredRecord {
    const gap = this.store.records.gapBelow(zone.content, nameHash(zone.salt, name));
    if (!gap) throw new IdnsError('internal', `zone ${zone.name} has no denial covering the name`);
    return gap;
  }

  private answer(
    status: AuthoritativeAnswer['status'],
    zone: string,
    version: number,
    record: string,
    zoneRecord: string,
    ttl: number,
    exp: number,
    now: number,
    history?: NumberedEntry[],
  ): AuthoritativeAnswer {
    // The members in the order the spliced bodies write them.
    const head = { status, zone, serial: serialOf(version), record };
    const tail = { zoneRecord, ttl: cappedTtl(ttl, exp, now) };
    return history === undefined ? { ...head, ...tail } : { ...head, history, ...tail };
  }
}

/** A record's TTL capped by the time left before its `exp`, never negative. */
function cappedTtl(ttl: number, exp: number, now: number): number {
  return Math.max(0, Math.min(ttl, exp - now));
}

/** What comes between an answer's record and its history's JSON text. */
const HISTORY_MEMBER = Buffer.from(',"history":');

/** A ttl as JSON.stringify writes the number (which also turns NaN into null). */
function ttlText(ttl: number): string {
  return Number.isFinite(ttl) ? String(ttl) : 'null';
}

/**
 * An answer body whose record is a compact JWS: `head`, the record between quotes, its history member
 * (for an answer), `tail`, the ttl and the closing brace. Nothing in a compact JWS needs escaping in JSON,
 * and its evidence is JSON text of compact JWSs: both ASCII, written as they are, from strings or bytes.
 */
function compactBody(head: Buffer, record: string | Buffer, history: string | Buffer | null, tail: Buffer, ttl: number): Buffer {
  const ttlPart = ttlText(ttl);
  const body = Buffer.allocUnsafe(
    head.length + record.length + 2 + (history === null ? 0 : HISTORY_MEMBER.length + history.length) + tail.length + ttlPart.length + 1,
  );
  let at = head.copy(body, 0);
  at = body.writeUInt8(0x22, at);
  at += put(body, at, record);
  at = body.writeUInt8(0x22, at);
  if (history !== null) {
    at += HISTORY_MEMBER.copy(body, at);
    at += put(body, at, history);
  }
  at += tail.copy(body, at);
  at += body.write(ttlPart, at, 'latin1');
  body.writeUInt8(0x7d, at);
  return body;
}

/** Writes ASCII text or bytes into `body` at `at`; returns how many bytes. */
function put(body: Buffer, at: number, piece: string | Buffer): number {
  return typeof piece === 'string' ? body.write(piece, at, 'latin1') : piece.copy(body, at);
}
const TTL_KEY = Buffer.from('"ttl":');
const EXP_KEY = Buffer.from('"exp":');

/**
 * `ttl` and `exp` of a stored handle or delegation record, as `Number(decodePayload(jws).ttl)` and
 * `.exp` give them, without building the payload object: each key is found in the decoded payload and
 * its digits read. That reading is taken only when it cannot differ: the key occurs once, after `{` or
 * `,` (so not inside a string, where a quote is escaped), with digits up to `,` or `}`; a nested object
 * could only repeat the key, which the schemas (strict, JWKs of three members) never allow. Anything
 * else is parsed in full.
 */
export function recordTimes(jws: string): { ttl: number; exp: number } {
  const payload = Buffer.from(jws.slice(jws.indexOf('.') + 1, jws.lastIndexOf('.')), 'base64url');
  const ttl = integerAfter(payload, TTL_KEY);
  const exp = integerAfter(payload, EXP_KEY);
  if (ttl !== null && exp !== null) return { ttl, exp };
  const p = decodePayload(jws);
  return { ttl: Number(p.ttl), exp: Number(p.exp) };
}

function integerAfter(json: Buffer, key: Buffer): number | null {
  const at = json.indexOf(key);
  if (at < 1 || json.indexOf(key, at + 1) !== -1) return null;
  const before = json[at - 1];
  if (before !== 0x7b && before !== 0x2c) return null;
  let n = 0;
  let i = at + key.length;
  const start = i;
  // Up to 15 digits: every integer that long is exact as a double, like JSON.parse's.
  for (; i < json.length && i - start <= 15; i++) {
    const c = json[i]!;
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  const end = json[i];
  if (i === start || i - start > 15 || (end !== 0x2c && end !== 0x7d) || (json[start] === 0x30 && i - start > 1)) return null;
  return n;
}
