import { describe, expect, it } from 'vitest';
import { RecentlyAsked } from '../src/http/fast/recently-asked.js';
import { fnv1a } from '../src/records/encoding.js';

describe('RecentlyAsked (which answers the fast path keeps for reuse)', () => {
  it('takes a key asked again within the window for a repeat, and one asked long before for new', () => {
    const asked = new RecentlyAsked(1_000);
    expect(asked.ask('alice@example')).toBe(false);
    for (let i = 0; i < 500; i++) asked.ask(`other${i}@example`);
    expect(asked.ask('alice@example')).toBe(true);
    // Two whole windows of other keys later, its mark is gone.
    for (let i = 0; i < 2_000; i++) asked.ask(`later${i}@example`);
    expect(asked.ask('alice@example')).toBe(false);
  });

  it('almost never takes a key never asked before for a repeat, however many keys share its slot', () => {
    // Random queries over a zone of a million handles: each is new. A mark of the slot alone took ~8%
    // of them for repeats (each then kept, and soon dropped, as old-generation garbage).
    const asked = new RecentlyAsked(10_000);
    let repeats = 0;
    for (let i = 0; i < 200_000; i++) if (asked.ask(`/v1/resolve/u${i}@example`)) repeats += 1;
    expect(repeats).toBeLessThanOrEqual(5);
  });

  it('does not take a key for a repeat when its mark is a whole cycle of generations old', () => {
    const asked = new RecentlyAsked(1);
    // A window of one: each ask starts a generation. 'x' and 'y' hash to different slots.
    expect((fnv1a('x') ^ fnv1a('y')) & 0xffff).not.toBe(0);
    expect(asked.ask('x')).toBe(false);
    // 65,535 generations after its own the 16-bit generation is the one 'x' was marked in again.
    for (let i = 0; i < 65_534; i++) expect(asked.ask('y')).toBe(false);
    expect(asked.ask('x')).toBe(false);
  });
});
