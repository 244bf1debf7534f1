import { MAX_HISTORY_PAGE } from '../authority/history.js';
import { HISTORY_RESPONSE_MAX_BYTES } from '../records/history-evidence.js';
import { MAX_HISTORY_ENTRIES } from '../records/history-key.js';
import { errorFromBody, jsonRequest } from './http.js';

/** An entry of a handle's log as `GET /v1/handles/{h}/log` gives it. */
export interface LogEntry {
  seq: number;
  op: string;
  action: string;
  /** The entry as signed. */
  request?: string;
  /** Its leaf in the zone's log, when the server has the log. */
  leaf?: number;
}

/** A handle's whole log from `server`, a page of MAX_HISTORY_PAGE entries at a time (a history holds at most MAX_HISTORY_ENTRIES). */
export async function readHandleLog(server: string, handle: string): Promise<LogEntry[]> {
  const entries: LogEntry[] = [];
  for (;;) {
    const url = `${server.replace(/\/+$/, '')}/v1/handles/${encodeURIComponent(handle)}/log?after=${entries.length}&limit=${MAX_HISTORY_PAGE}`;
    const res = await jsonRequest(url, { maxBytes: HISTORY_RESPONSE_MAX_BYTES });
    const err = errorFromBody(res.body);
    if (err) throw err;
    const page = (res.body as { operations: LogEntry[] }).operations;
    entries.push(...page);
    if (page.length < MAX_HISTORY_PAGE || entries.length >= MAX_HISTORY_ENTRIES) return entries;
  }
}
