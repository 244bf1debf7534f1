import type { Clock } from '../clock.js';

/** The last notify sent to one target of a zone: when, and whether it was taken. */
export interface NotifySeen {
  at: number;
  ok: boolean;
  /** What went wrong (a status, an unreachable target), when not ok. */
  detail: string | null;
}

/** The last transfer one client took of a zone: when, of which serial, full or incremental. */
export interface TransferSeen {
  at: number;
  serial: number;
  mode: 'full' | 'incremental';
}

/** Targets and clients remembered per zone (the least recently seen forgotten first). */
const MAX_PER_ZONE = 64;
/** Zones remembered. */
const MAX_ZONES = 10_000;

/**
 * What a server knows of the servers that copy its zones, for the operator page: the last notify it sent
 * each target, and the last transfer each client took (a named secondary by its credential's name, else
 * by its address). Bounded; forgotten at restart.
 */
export class PeerLog {
  private readonly notifies = new Map<string, Map<string, NotifySeen>>();
  private readonly transfers = new Map<string, Map<string, TransferSeen>>();

  constructor(private readonly clock: Clock) {}

  /** A notify to `target` for `zone` was taken (ok) or not. */
  notified(zone: string, target: string, ok: boolean, detail: string | null = null): void {
    remember(this.notifies, zone, target, { at: this.clock.now(), ok, detail });
  }

  /** `client` took a transfer of `zone` at `serial`. */
  transferred(zone: string, client: string, serial: number, mode: TransferSeen['mode']): void {
    remember(this.transfers, zone, client, { at: this.clock.now(), serial, mode });
  }

  /** What is known of a zone's peers: the notifies by target, the transfers by client. */
  of(zone: string): { notifies: ReadonlyMap<string, NotifySeen>; transfers: ReadonlyMap<string, TransferSeen> } {
    return { notifies: this.notifies.get(zone) ?? new Map(), transfers: this.transfers.get(zone) ?? new Map() };
  }
}

function remember<T>(maps: Map<string, Map<string, T>>, zone: string, key: string, value: T): void {
  let byKey = maps.get(zone);
  if (byKey === undefined) {
    if (maps.size >= MAX_ZONES) maps.delete(maps.keys().next().value!);
    byKey = new Map();
    maps.set(zone, byKey);
  }
  byKey.delete(key);
  byKey.set(key, value);
  if (byKey.size > MAX_PER_ZONE) byKey.delete(byKey.keys().next().value!);
}
