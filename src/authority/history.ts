import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import type { Store } from '../store/store.js';
import { serialOf } from './serial.js';

/** One accepted change of a handle, as the log endpoint returns it. */
export interface HistoryEntry {
  op: string;
  action: 'register' | 'update' | 'delete' | 'import';
  serial: number;
  /** Opaque cursor: pass as `after` to read on. */
  cursor: number;
  receivedAt: string;
  /** The signed request exactly as the owner sent it; anyone can check it against the keys of its time. */
  request: string;
}

/** Largest page of history returned at once. */
export const MAX_HISTORY_PAGE = 1000;

/** Reads a handle's signed change history, oldest first. */
export function handleHistory(store: Store, input: string, after = 0, limit = 100): HistoryEntry[] {
  const { handle } = parseHandle(input);
  const rows = store.operations.history(handle, after, Math.min(Math.max(limit, 1), MAX_HISTORY_PAGE));
  if (rows.length === 0 && after === 0) throw new IdnsError('handle_not_found', `${handle} has no history here`);
  return rows.map((r) => ({
    op: r.cid,
    action: r.action,
    serial: serialOf(r.version),
    cursor: r.version,
    receivedAt: new Date(r.receivedAt).toISOString(),
    request: r.jws,
  }));
}
