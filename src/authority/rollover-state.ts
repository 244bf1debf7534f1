import type { RolloverState, ZoneSettings } from './settings.js';

// What the rest of the server reads of a key rollover (src/authority/rollover.ts runs it), without the
// verifiers that module brings: the zone record's requested ds set, and the state in words.

/**
 * The ds set a zone asks its parent for (its zone record's `cds`, DNS's CDS): during a rollover, both keys
 * until the old one is retired, then the new one alone; nothing outside a rollover.
 */
export function requestedDs(settings: Pick<ZoneSettings, 'rollover'>): string[] | undefined {
  const r = settings.rollover;
  if (r === undefined) return undefined;
  return r.phase === 'retiring' ? [r.newKey] : [r.oldKey, r.newKey];
}

/** A rollover's state in one line (zone show, idns ctl status, the operator page). */
export function describeRollover(r: RolloverState): string {
  if (r.cancelled === true) {
    return `key rollover abandoned since ${iso(r.since)} (key ${r.newKey} kept, ${r.oldKey} dropped)${r.waiting ? `: waiting for ${r.waiting}` : ''}`;
  }
  return `key rollover ${r.phase} since ${iso(r.since)} (new key ${r.newKey}, old key ${r.oldKey})${r.waiting ? `: waiting for ${r.waiting}` : ''}`;
}

/** Epoch seconds as an ISO 8601 time. */
export function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}
