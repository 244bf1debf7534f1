import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { requestId } from '../src/records/change-request.js';
import type { NumberedEntry } from '../src/records/history-chain.js';
import { compactHistory } from '../src/records/history-compact.js';
import { EVIDENCE_MAX_CHARS, EVIDENCE_MAX_ENTRIES, compactEvidence, entriesText } from '../src/records/history-evidence.js';
import { historyKey } from '../src/records/history-key.js';
import type { PublicJwk } from '../src/records/keys.js';
import { HISTORY_EXP } from '../src/store/records.js';
import { Store } from '../src/store/store.js';
import { newUserKey } from './support/keys.js';

// Long histories keep their compact form and evidence beside them (src/store/compact-histories.ts), made
// by the transaction that writes entries, so an answer never compacts a history. What is kept must be
// exactly what compacting the whole history gives, however the entries arrive.

const H = 'alice@example.com';
const alice = newUserKey();
const home = 'https://social.example/alice';

/** The evidence made from the whole history, the reference the kept one must equal. */
function wholeEvidence(all: readonly NumberedEntry[]): string {
  const jws = new Map(all);
  return entriesText(
    compactEvidence(
      compactHistory(all).map((e) => e[0]),
      (seq) => jws.get(seq)!,
    ),
  );
}

/** Entries of one history, made in order: updates that keep the key, rotations, a recovery-shaped update going back. */
class HistoryMaker {
  readonly all: NumberedEntry[] = [];
  private key = alice;

  register(): string {
    return this.push(signChangeRequest({ action: 'register', handle: H, endpoint: home, keys: [this.key.public] }, this.key.private));
  }

  update(n = 1): void {
    for (let i = 0; i < n; i++) this.push(this.signed(this.lastId(), [this.key.public]));
  }

  rotate(): void {
    const next = newUserKey();
    this.push(
      signChangeRequest(
        { action: 'update', handle: H, endpoint: `${home}/${this.all.length}`, keys: [next.public], prev: this.lastId() },
        this.key.private,
        undefined,
        [next.private],
      ),
    );
    this.key = next;
  }

  /** An update naming entry `seq` rather than the last: the shape of a recovery (compaction keeps its reach). */
  goBackTo(seq: number): void {
    this.push(this.signed(requestId(this.all[seq - 1]![1]), [this.key.public]));
  }

  private signed(prev: string, keys: PublicJwk[]): string {
    return signChangeRequest({ action: 'update', handle: H, endpoint: `${home}/${this.all.length}`, keys, prev }, this.key.private);
  }

  private lastId(): string {
    return requestId(this.all.at(-1)![1]);
  }

  private push(jws: string): string {
    this.all.push([this.all.length + 1, jws]);
    return jws;
  }
}

function write(store: Store, content: string, entries: readonly NumberedEntry[]): void {
  store.write(() => {
    for (const [seq, jws] of entries) store.records.put(content, 'op', historyKey(H, seq), 1, HISTORY_EXP, jws);
  });
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('compact histories kept with the history', () => {
  it('keep, entry by entry, exactly the evidence compacting the whole history gives: updates, rotations, going back, and nothing for a short history', () => {
    const store = Store.memory();
    const h = new HistoryMaker();
    let written = 0;
    const step = (): void => {
      write(store, 'example.com', h.all.slice(written));
      written = h.all.length;
      const kept = store.histories.evidence('example.com', H);
      const chars = h.all.reduce((n, e) => n + e[1].length, 0);
      if (h.all.length <= 32 && chars <= 8192) expect(kept).toBeUndefined();
      else expect(kept).toEqual({ last: h.all.length, evidence: wholeEvidence(h.all) });
    };
    h.register();
    step();
    for (let i = 0; i < 40; i++) {
      h.update();
      step();
    }
    h.rotate();
    step();
    h.update(3);
    step(); // three entries in one transaction
    h.goBackTo(h.all.length - 2);
    step();
    h.update();
    step();
    // Going back past the last two entries: its reach is read from further back.
    h.goBackTo(30);
    step();
    h.update(2);
    h.rotate();
    step();
    expect(JSON.parse(store.histories.evidence('example.com', H)!.evidence).map((e: NumberedEntry) => e[0])).toEqual(compactHistory(h.all).map((e) => e[0]));
  });

  it('keep the tail of a compact form longer than the evidence bounds, as it moves on', () => {
    const store = Store.memory();
    const h = new HistoryMaker();
    h.register();
    // Every rotation is kept: more of them than evidence may carry.
    for (let i = 0; i < EVIDENCE_MAX_ENTRIES + 10; i++) h.rotate();
    write(store, 'example.com', h.all);
    let kept = store.histories.evidence('example.com', H)!;
    const entries = JSON.parse(kept.evidence) as NumberedEntry[];
    expect(entries.length === EVIDENCE_MAX_ENTRIES || entries.reduce((n, e) => n + e[1].length, 0) > EVIDENCE_MAX_CHARS - 2000).toBe(true);
    expect(kept.evidence).toBe(wholeEvidence(h.all));
    // The last rotation stops being kept as "the last" once an update keeps its key: the tail reaches one entry further back.
    h.update();
    write(store, 'example.com', h.all.slice(-1));
    h.update();
    write(store, 'example.com', h.all.slice(-1));
    kept = store.histories.evidence('example.com', H)!;
    expect(kept).toEqual({ last: h.all.length, evidence: wholeEvidence(h.all) });
  });

  it('are made for a copy loaded in batches across transactions, and go with its content', () => {
    const store = Store.memory();
    const h = new HistoryMaker();
    h.register();
    h.update(30);
    h.rotate();
    h.update(20);
    const loaded = (from: number, to: number) => h.all.slice(from, to).map(([seq, jws]) => ({ type: 'op' as const, key: historyKey(H, seq), jws }));
    store.write(() => store.records.insertLoaded('copy-1', loaded(0, 20)));
    store.write(() => store.records.insertLoaded('copy-1', loaded(20, h.all.length)));
    expect(store.histories.evidence('copy-1', H)).toEqual({ last: h.all.length, evidence: wholeEvidence(h.all) });
    // A rolled-back transaction leaves nothing behind, and what it wrote is not settled by the next one.
    const more = new HistoryMaker();
    more.register();
    more.update(40);
    expect(() =>
      store.write(() => {
        store.records.insertLoaded(
          'copy-2',
          more.all.map(([seq, jws]) => ({ type: 'op' as const, key: historyKey(H, seq), jws })),
        );
        throw new Error('transfer refused');
      }),
    ).toThrow('transfer refused');
    store.write(() => {});
    expect(store.histories.evidence('copy-2', H)).toBeUndefined();
    while (store.write(() => store.records.deleteSome('copy-1', 10)) === 10);
    expect(store.histories.evidence('copy-1', H)).toBeUndefined();
  });

  it('are made by the schema-5 migration for the long histories of a schema-4 database', () => {
    const dir = mkdtempSync(join(tmpdir(), 'idns-compact-'));
    dirs.push(dir);
    const h = new HistoryMaker();
    h.register();
    h.update(12);
    h.rotate();
    h.update(30);
    const store = Store.open(dir);
    write(store, 'example.com', h.all);
    const expected = store.histories.evidence('example.com', H);
    expect(expected).toEqual({ last: h.all.length, evidence: wholeEvidence(h.all) });
    store.close();
    // Schema 4 is schema 5 without the table (and schema 5 is 6 without the logs, 6 is 7 without the maps).
    const db = new Database(join(dir, 'idns.sqlite'));
    db.exec('DROP TABLE compact_histories');
    db.exec(
      'DROP TABLE map_tiles; ALTER TABLE zones DROP COLUMN checkpoint; ALTER TABLE records DROP COLUMN leaf; DROP TABLE log_nodes; DROP TABLE witnessed; DROP TABLE witness_forks; DROP TABLE witness_follows; DROP TABLE witness_keys',
    );
    db.pragma('user_version = 4');
    db.close();
    const reopened = Store.open(dir);
    expect(reopened.histories.evidence('example.com', H)).toEqual(expected);
    reopened.close();
  });
});
