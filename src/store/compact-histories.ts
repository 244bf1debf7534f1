import type { Db } from './database.js';
import type { RecordStore } from './records.js';
import { compactFrom } from '../records/history-compact.js';
import {
  WHOLE_EVIDENCE_MAX_CHARS,
  WHOLE_EVIDENCE_MAX_ENTRIES,
  carriedWhole,
  compactEvidence,
  entriesText,
  type StoredEvidence,
} from '../records/history-evidence.js';
import type { NumberedEntry } from '../records/history-chain.js';
import { MAX_HISTORY_ENTRIES, historyKey, parseHistoryKey } from '../records/history-key.js';

/** What a transaction wrote of one handle's history: the range of the entries' numbers. */
interface Written {
  content: string;
  handle: string;
  min: number;
  max: number;
}

/**
 * The compact form of each long history (one an answer does not carry whole, docs/protocol.md §6.5) and
 * the evidence answers carry made of it, kept beside the history (table `compact_histories`) and brought
 * up to date in the transaction that adds entries, whoever writes them: a change, an import, a transfer.
 * Making it is a pass over the whole history (~10 µs an entry); keeping it makes each answer one row read
 * instead, so no query can make a server compact a history, and a new entry costs a pass over the last
 * two (compactFrom) instead of all of them.
 */
export class CompactHistories {
  private readonly written = new Map<string, Written>();
  private readonly getStmt;
  private readonly evidenceStmt;
  private readonly putStmt;
  private readonly dropStmt;
  private readonly longStmt;

  constructor(
    db: Db,
    private readonly records: Pick<RecordStore, 'history' | 'historySize' | 'jws'>,
  ) {
    this.getStmt = db.prepare<[string, string], { kept: string; last: number; evidence: string }>(
      'SELECT kept, last, evidence FROM compact_histories WHERE content = ? AND handle = ?',
    );
    this.evidenceStmt = db.prepare<[string, string], StoredEvidence>('SELECT last, evidence FROM compact_histories WHERE content = ? AND handle = ?');
    this.putStmt = db.prepare('INSERT OR REPLACE INTO compact_histories (content, handle, kept, last, evidence) VALUES (?, ?, ?, ?, ?)');
    this.dropStmt = db.prepare('DELETE FROM compact_histories WHERE content = ?');
    // Every history not carried whole (carriedWhole): more than one entry, and too many or too long.
    this.longStmt = db.prepare<[number, number], { content: string; handle: string; entries: number; chars: number }>(
      `SELECT content, substr(key, 1, instr(key, '#') - 1) AS handle, count(*) AS entries, sum(length(jws)) AS chars
       FROM records WHERE type = 'op' GROUP BY content, handle HAVING entries > 1 AND (entries > ? OR chars > ?)`,
    );
  }

  /** The evidence kept for a handle's history, if it is a long one. */
  evidence(content: string, handle: string): StoredEvidence | undefined {
    return this.evidenceStmt.get(content, handle);
  }

  /** Notes a history entry written by the running transaction (RecordStore calls this for every `op` row it writes). */
  noteWritten(content: string, key: string): void {
    const parsed = parseHistoryKey(key);
    // Entry 1 alone is a history carried whole, and a history of more entries is settled by its later ones
    // (it then counts its entries itself): an import or a copy of a million handles of one entry each
    // notes nothing.
    if (parsed === null || parsed.seq === 1) return;
    const id = `${content} ${parsed.handle}`;
    const w = this.written.get(id);
    if (w === undefined) {
      this.written.set(id, { content, handle: parsed.handle, min: parsed.seq, max: parsed.seq });
      return;
    }
    w.min = Math.min(w.min, parsed.seq);
    w.max = Math.max(w.max, parsed.seq);
  }

  /**
   * Brings the compact form of every history the running transaction wrote up to date; Store calls it at
   * the end of each write transaction, inside it. Histories of one entry, the common case, cost nothing.
   */
  settle(): void {
    for (const w of this.written.values()) this.settleOne(w);
    this.written.clear();
  }

  /** Forgets what a transaction that did not commit wrote. */
  forget(): void {
    this.written.clear();
  }

  /** Makes the compact form of every long history there is (the schema-5 migration): one pass over the histories. */
  rebuildAll(): void {
    for (const h of this.longStmt.all(WHOLE_EVIDENCE_MAX_ENTRIES, WHOLE_EVIDENCE_MAX_CHARS)) {
      this.settleOne({ content: h.content, handle: h.handle, min: 1, max: h.entries });
    }
  }

  /** Drops the compact forms of a content id (its records are being deleted). */
  drop(content: string): void {
    this.dropStmt.run(content);
  }

  private settleOne(w: Written): void {
    const size = this.records.historySize(w.content, w.handle);
    if (carriedWhole(size.entries, size.chars)) return;
    const stored = this.getStmt.get(w.content, w.handle);
    const extended = stored !== undefined && stored.last === w.min - 1 ? this.extend(w, stored) : null;
    const kept = extended ?? this.compactWhole(w);
    const window = new Map(kept.entries);
    const evidence = compactEvidence(kept.seqs, (seq) => window.get(seq) ?? this.records.jws(w.content, 'op', historyKey(w.handle, seq))!);
    this.putStmt.run(w.content, w.handle, kept.seqs.join(' '), evidence.at(-1)![0], entriesText(evidence));
  }

  /**
   * The compact form after entries `w.min` … `w.max` were added to a history whose compact form `stored`
   * ends at `w.min - 1`: only the entry before that one and those after it are read. Null when a recovery
   * among the new entries reaches further back (compactWhole then).
   */
  private extend(w: Written, stored: { kept: string; last: number }): { seqs: number[]; entries: NumberedEntry[] } | null {
    const last = stored.last;
    const run = this.records.history(w.content, w.handle, Math.max(0, last - 2), MAX_HISTORY_ENTRIES);
    const first = last === 1 ? 0 : 1;
    const tail = compactFrom(run, first);
    if (tail === null) return null;
    const seqs = stored.kept
      .split(' ')
      .map(Number)
      .filter((seq) => seq < last);
    for (const e of tail) seqs.push(e[0]);
    return { seqs, entries: tail };
  }

  private compactWhole(w: Written): { seqs: number[]; entries: NumberedEntry[] } {
    const entries = compactFrom(this.records.history(w.content, w.handle, 0, MAX_HISTORY_ENTRIES), 0)!;
    return { seqs: entries.map((e) => e[0]), entries };
  }
}
