import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import type { Store } from '../store/store.js';
import { decodePayload } from './editor.js';
import { requestId } from '../records/change-request.js';
import { historyKey } from '../records/history-key.js';
import type { ZoneReader } from './zone-reader.js';

/** One accepted change of a handle, as the log endpoint returns it: the same on every server of the zone. */
export interface HistoryEntry {
  /** The entry's place in the handle's history, from 1. */
  seq: number;
  op: string;
  action: string;
  /** Opaque cursor: pass as `after` to read on (the entry's seq). */
  cursor: number;
  /** The signed request exactly as the owner sent it; anyone can check it against the keys of its time. */
  request: string;
  /** The entry's leaf in the zone's log (docs/protocol.md §13); absent while the zone has no log here. */
  leaf?: number;
}

/** Largest page of history returned at once. */
export const MAX_HISTORY_PAGE = 1000;

/**
 * Reads a handle's signed change history, oldest first, from the zone content of the zone that holds the
 * handle here (primary or secondary alike: the history is part of the zone).
 */
export function handleHistory(store: Store, zones: ZoneReader, input: string, after = 0, limit = 100): HistoryEntry[] {
  const { handle, host } = parseHandle(input);
  const zone = zones.closestHosted(host);
  if (!zone || zones.cutFor(zone, host)) throw new IdnsError('not_authoritative', `this server holds no zone for ${host}`);
  const rows = store.records.history(zone.content, handle, Math.max(0, after), Math.min(Math.max(limit, 1), MAX_HISTORY_PAGE));
  if (rows.length === 0 && after === 0) throw new IdnsError('handle_not_found', `${handle} has no history in zone ${zone.name}`);
  return rows.map(([seq, jws]) => {
    // The entry's leaf in the zone's log (docs/protocol.md §13), for an inclusion proof; none before the zone has a log.
    const leaf = store.records.leafOf(zone.content, historyKey(handle, seq));
    return { seq, op: requestId(jws), action: actionOf(jws), cursor: seq, request: jws, ...(typeof leaf === 'number' ? { leaf } : {}) };
  });
}

/** The `action` a stored history entry states (it was checked when it was accepted or copied). */
function actionOf(jws: string): string {
  const payload = decodePayload(jws);
  return typeof payload.action === 'string' ? payload.action : 'unknown';
}
