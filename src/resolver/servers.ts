import type { Clock } from '../clock.js';

interface ServerStats {
  /** Smoothed round-trip time, ms (EWMA, as BIND and Unbound keep per server). */
  srtt: number;
  /** Consecutive failures. */
  failures: number;
  /** Not tried before this time unless every server is held back. */
  heldUntil: number;
}

/** How long a failing server is held back: doubles per consecutive failure, from 5 s up to 5 minutes. */
const HOLD_BASE_MS = 5_000;
const HOLD_MAX_MS = 300_000;

/**
 * Picks which of a zone's servers to ask first: the lowest smoothed RTT among those not held back after
 * failures. Unknown servers start at a small RTT so each gets tried, and a little jitter spreads load
 * among equals. Bounded: the table keeps at most `maxServers` entries.
 */
export class ServerSelector {
  private readonly stats = new Map<string, ServerStats>();

  constructor(
    private readonly clock: Clock,
    private readonly maxServers = 10_000,
  ) {}

  /** The servers in the order to try them. */
  order(servers: readonly string[]): string[] {
    const now = this.clock.now();
    const scored = servers.map((s) => {
      const st = this.stats.get(s);
      const held = st !== undefined && st.heldUntil > now;
      return { s, held, score: (st?.srtt ?? 1) * (0.9 + Math.random() * 0.2) };
    });
    scored.sort((a, b) => Number(a.held) - Number(b.held) || a.score - b.score);
    return scored.map((x) => x.s);
  }

  /** Records a good answer and its round-trip time. */
  success(server: string, rttMs: number): void {
    const st = this.entry(server);
    st.srtt = st.failures > 0 || st.srtt === 0 ? rttMs : 0.7 * st.srtt + 0.3 * rttMs;
    st.failures = 0;
    st.heldUntil = 0;
  }

  /** Records a failure (timeout, error, bad signature): the server is held back for a while. */
  failure(server: string): void {
    const st = this.entry(server);
    st.failures += 1;
    st.srtt = Math.max(st.srtt, 1) * 2;
    st.heldUntil = this.clock.now() + Math.min(HOLD_BASE_MS * 2 ** (st.failures - 1), HOLD_MAX_MS);
  }

  /** True when the server is currently held back. */
  isHeld(server: string): boolean {
    return (this.stats.get(server)?.heldUntil ?? 0) > this.clock.now();
  }

  private entry(server: string): ServerStats {
    let st = this.stats.get(server);
    if (!st) {
      if (this.stats.size >= this.maxServers) this.stats.delete(this.stats.keys().next().value as string);
      st = { srtt: 0, failures: 0, heldUntil: 0 };
      this.stats.set(server, st);
    }
    return st;
  }
}
