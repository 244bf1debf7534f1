/** Most entries the keys can number: their 6 digits (`handle#000001`). */
export const MAX_HISTORY_SEQ = 999_999;

/**
 * Most entries a handle's history holds, and most characters of them together (docs/protocol.md §6.1):
 * a resolver verifies a handle's whole history at first contact and a proof carries it, so an authority
 * refuses the change that would go past either (history_full), and a verifier refuses a history past them.
 */
export const MAX_HISTORY_ENTRIES = 10_000;
export const MAX_HISTORY_CHARS = 1024 * 1024;

/** The key a handle's history entry number `seq` (from 1) is stored under: `handle '#' seq`, 6 digits, so keys sort in history order. */
export function historyKey(handle: string, seq: number): string {
  return `${handle}#${String(seq).padStart(6, '0')}`;
}

const KEY = /^(.+)#(\d{6})$/;

/** The handle and entry number a history key names, or null when it is not one. */
export function parseHistoryKey(key: string): { handle: string; seq: number } | null {
  const m = KEY.exec(key);
  const seq = m ? Number(m[2]) : 0;
  return m && seq >= 1 ? { handle: m[1]!, seq } : null;
}
