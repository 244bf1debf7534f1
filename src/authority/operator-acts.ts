import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import { parseKeySet, requestId } from '../records/change-request.js';
import type { PublicJwk } from '../records/keys.js';
import type { HandleFields } from '../records/types.js';
import { parseEndpoint } from '../records/urls.js';
import type { Store } from '../store/store.js';
import { decodePayload } from './editor.js';
import { serialOf } from '../records/serial.js';
import type { ZoneService } from './zones.js';

/** What an operator act did. */
export interface OperatorActResult {
  handle: string;
  zone: string;
  serial: number;
  action: 'takedown' | 'transfer';
  /** The operator entry's id: the handle's new `op` (transfer), or its last entry (takedown). */
  op: string;
}

/** The new state a court-ordered transfer gives a handle. */
export interface TransferState {
  endpoint: string;
  keys: PublicJwk[];
}

/**
 * The zone operator's acts on a handle without its owner's signature (docs/protocol.md §6.2): each is an
 * operator entry signed by the zone key, appended to the handle's history in the same version as the
 * change it makes, so every server and resolver sees that the operator, not the owner, made it.
 * `takedown` deletes the handle (and keeps it from anyone for the zone's tombstone cool-down);
 * `transfer` gives it a new state and owner (a court order), operator-asserted until its new owner
 * changes it. Run on the server's data directory (the CLI's `handle takedown` and `handle transfer`).
 */
export function operatorAct(
  store: Store,
  zones: ZoneService,
  input: string,
  act: { action: 'takedown'; reason: string } | { action: 'transfer'; reason: string; state: TransferState },
): OperatorActResult {
  const { handle, host } = parseHandle(input);
  if (act.reason.length === 0 || act.reason.length > 1000) throw new IdnsError('invalid_request', 'the reason for an operator act is 1 to 1,000 characters');
  if (act.action === 'transfer') parseKeySet(act.state.keys);
  const row = zones.closestHosted(host);
  if (!row || zones.cutFor(row, host)) throw new IdnsError('not_authoritative', `this server holds no zone for ${host}`);
  return store.write(() => {
    const editor = zones.editor(row.name);
    const stored = store.records.jws(row.content, 'handle', handle);
    if (stored === undefined) throw new IdnsError('handle_not_found', `${handle} is not registered`);
    const current = decodePayload(stored) as unknown as HandleFields;
    if (act.action === 'transfer') parseEndpoint(act.state.endpoint, editor.settings.allowLoopbackEndpoints);
    const entry = editor.operatorEntry({
      action: act.action,
      handle,
      prev: current.op,
      ...(act.action === 'transfer' ? { endpoint: act.state.endpoint, keys: act.state.keys } : {}),
      reason: act.reason,
    });
    const seq = editor.nextHistorySeq(handle, entry.length);
    const version = editor.beginChange();
    editor.appendHistory(handle, entry, seq);
    const op = requestId(entry);
    if (act.action === 'takedown') {
      editor.remove('handle', handle);
      editor.removeName(handle);
    } else {
      editor.put('handle', handle, { handle, endpoint: act.state.endpoint, keys: act.state.keys, ttl: editor.settings.handleTtl, op, genesis: op, seq });
    }
    editor.commit();
    return { handle, zone: row.name, serial: serialOf(version), action: act.action, op };
  });
}
