import type { Dispatcher } from 'undici';
import { timersFor, type Clock } from '../clock.js';
import { jsonRequest, textRequest } from '../client/http.js';
import { IdnsError } from '../errors.js';
import type { Logger } from '../log.js';
import { parsePublicJwk, thumbprint, type PublicJwk } from '../records/keys.js';
import type { ZoneReader } from '../authority/zone-reader.js';
import type { Store } from '../store/store.js';
import { cosignatureVerifier } from '../transparency/checkpoint.js';
import { consistencyProof } from '../transparency/merkle.js';
import { formatNote, parseNote, type NoteSignature, type NoteVerifier } from '../transparency/note.js';
import { formatAddCheckpoint } from '../transparency/witness.js';
import { witnessName } from '../transparency/witness-name.js';
import { checkpointSize } from '../transparency/zone-log.js';
import { PEER_ANSWER_MAX_BYTES, PEER_TIMEOUT_MS } from './peer-zone-record.js';

/** How often each primary zone's checkpoint is offered to its witnesses again when nothing changed, ms. */
export const DEFAULT_RECOSIGN_MS = 10 * 60_000;

/**
 * A primary's side of witnessing (docs/protocol.md §14): after each new checkpoint of a primary zone,
 * and again every `recosignMs` so that a quiet zone's cosignatures stay fresh, it offers the checkpoint
 * to each of the zone's witnesses (C2SP tlog-witness `add-checkpoint`, with a consistency proof from the
 * size the witness cosigned last), checks each cosignature against the key the witness publishes, and
 * adds it to the checkpoint it serves (one per witness, the newest).
 */
export class CosignatureCollector {
  /** Per zone and witness URL, the size that witness cosigned last (as it said, or as we gave it). */
  private readonly sizes = new Map<string, number>();
  /** The verifier of each witness URL's cosignatures, from its published key, and that key. */
  private readonly witnessKeys = new Map<string, { verifier: NoteVerifier; key: PublicJwk }>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private timer: unknown = null;
  private readonly timers;

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneReader,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly dispatcher: Dispatcher | undefined,
    private readonly recosignMs = DEFAULT_RECOSIGN_MS,
    /** Told after new cosignatures are kept: the zone's secondaries are notified, and take them from the primary. */
    private readonly onCosigned: (zone: string) => void = () => {},
  ) {
    this.timers = timersFor(clock);
  }

  /** Offers every new checkpoint as it is committed, and all of them every `recosignMs`. */
  start(): void {
    this.store.onZoneChanged((zone) => void this.collect(zone));
    const tick = () => {
      for (const row of this.zones.list()) if (row.role === 'primary') void this.collect(row.name);
      this.timer = this.timers.setTimeout(tick, this.recosignMs);
    };
    tick();
  }

  /** Rounds running now (each may end in a notify of the zone's secondaries). */
  get pending(): number {
    return this.running.size;
  }

  stop(): void {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  /** Offers the zone's checkpoint to its witnesses and keeps their cosignatures; one run per zone at a time (a change meanwhile runs it again). */
  collect(zone: string): Promise<void> {
    const current = this.running.get(zone);
    if (current) {
      this.again.add(zone);
      return current;
    }
    const run = this.round(zone)
      .catch((err: unknown) => this.log.warn('collecting cosignatures failed', { zone, err }))
      .finally(() => {
        this.running.delete(zone);
        if (this.again.delete(zone)) void this.collect(zone);
      });
    this.running.set(zone, run);
    return run;
  }

  private async round(zone: string): Promise<void> {
    const row = this.zones.get(zone);
    if (row === undefined || row.role !== 'primary' || row.checkpoint === '') return;
    const record = this.zones.zoneRecord(row);
    if (record === null) return;
    // The zone's other servers (its secondaries) and the witnesses the operator added.
    const own = record.primary.replace(/\/+$/, '');
    const listed = [...record.servers, ...(this.zones.settings(row).witnesses ?? [])].map((s) => s.replace(/\/+$/, ''));
    const witnesses = [...new Set(listed)].filter((s) => s !== own);
    const note = parseNote(row.checkpoint);
    const got = await Promise.all(
      witnesses.map((url) => this.ask(url, row.name, row.content, row.checkpoint, note.text).catch((err: unknown) => this.failed(url, zone, err))),
    );
    const fresh = got.filter((s): s is { line: NoteSignature; key: PublicJwk } => s !== null);
    if (fresh.length === 0) return;
    this.store.write(() => {
      // Served with the checkpoint (GET /v1/zones/{zone}, answers' log), so that a resolver knowing a witness by its thumbprint can check its line.
      for (const f of fresh) this.store.witness.putKey(f.line.name, f.key);
      const now = this.zones.get(zone);
      // A version signed meanwhile has a checkpoint of its own, which the next round offers.
      if (now === undefined || now.checkpoint === '' || parseNote(now.checkpoint).text !== note.text) return;
      const kept = parseNote(now.checkpoint).signatures.filter((s) => !fresh.some((f) => f.line.name === s.name));
      this.store.zones.setCheckpoint(zone, formatNote({ text: note.text, signatures: [...kept, ...fresh.map((f) => f.line)] }));
    });
    this.onCosigned(zone);
  }

  /** One witness's cosignature of the checkpoint, checked against its published key; null when it has none to give. */
  private async ask(url: string, zone: string, content: string, checkpoint: string, text: string): Promise<{ line: NoteSignature; key: PublicJwk } | null> {
    const { verifier, key } = await this.witnessKey(url);
    const size = checkpointSize(checkpoint);
    const id = `${zone}\n${url}`;
    for (let attempt = 0; attempt < 2; attempt++) {
      const old = Math.min(this.sizes.get(id) ?? 0, size);
      const proof = old === 0 ? [] : consistencyProof(this.store.logs.subtrees(content), old, size);
      const res = await textRequest(`${url}/v1/witness/add-checkpoint`, {
        method: 'POST',
        body: formatAddCheckpoint({ oldSize: old, proof, note: checkpoint }),
        contentType: 'text/plain; charset=utf-8',
        timeoutMs: PEER_TIMEOUT_MS,
        maxBytes: PEER_ANSWER_MAX_BYTES,
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
      if (res.status === 409 && String(res.headers['content-type'] ?? '').startsWith('text/x.tlog.size')) {
        // The witness holds another size: offer it the proof from there, once.
        const held = Number(res.text.trim());
        if (!Number.isSafeInteger(held) || held < 0 || held > size)
          throw new IdnsError('bad_response', `it holds a tree of ${res.text.trim().slice(0, 20)} leaves, not one this log had`);
        this.sizes.set(id, held);
        continue;
      }
      if (res.status !== 200) throw new IdnsError('bad_response', `add-checkpoint answered ${res.status}: ${res.text.slice(0, 200)}`);
      const line = parseNote(`${text}\n${res.text}`).signatures.find((s) => s.name === verifier.name && s.keyId === verifier.keyId);
      if (line === undefined || !verifier.verify(text, line.signature))
        throw new IdnsError('bad_response', 'its answer holds no cosignature by its own key that verifies');
      this.sizes.set(id, size);
      return { line, key };
    }
    return null;
  }

  /** The verifier of a witness's cosignatures: its key as `GET /v1/witness` publishes it, named by its thumbprint. */
  private async witnessKey(url: string): Promise<{ verifier: NoteVerifier; key: PublicJwk }> {
    const cached = this.witnessKeys.get(url);
    if (cached) return cached;
    const res = await jsonRequest(`${url}/v1/witness`, {
      timeoutMs: PEER_TIMEOUT_MS,
      maxBytes: PEER_ANSWER_MAX_BYTES,
      ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
    });
    if (res.status !== 200) throw new IdnsError('bad_response', `GET /v1/witness answered ${res.status}`);
    const jwk = parsePublicJwk((res.body as { publicKey?: unknown } | null)?.publicKey, 'the witness key');
    const known = { verifier: cosignatureVerifier(witnessName(thumbprint(jwk)), jwk), key: jwk };
    this.witnessKeys.set(url, known);
    return known;
  }

  private failed(url: string, zone: string, err: unknown): null {
    // A witness's key may have changed (a new data directory): read it again next time.
    this.witnessKeys.delete(url);
    this.log.warn('a witness gave no cosignature', { zone, witness: url, err });
    return null;
  }
}
