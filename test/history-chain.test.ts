import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { signChangeRequest } from '../src/client/requests.js';
import { IdnsError } from '../src/errors.js';
import { requestId } from '../src/records/change-request.js';
import {
  assureRecordFollows,
  emptyHistory,
  MAX_VERIFIED_ENTRIES,
  verifyHistory,
  verifyRecordHistory,
  type HistoryZone,
  type NumberedEntry,
  type VerifiedHistory,
} from '../src/records/history-chain.js';
import { publicKeyObject, signingKeyFromJwk, generatePrivateJwk, thumbprint, type PublicJwk } from '../src/records/keys.js';
import { signOperatorEntry } from '../src/records/operator-entry.js';
import { historyKey, MAX_HISTORY_CHARS, MAX_HISTORY_ENTRIES } from '../src/records/history-key.js';
import { newUserKey } from './support/keys.js';
import { EVIDENCE_MAX_ENTRIES, entriesText, evidenceOf, parseEvidence, readLog, WHOLE_EVIDENCE_MAX_ENTRIES } from '../src/records/history-evidence.js';
import { compactHistory } from '../src/records/history-compact.js';

// The verifier of a handle's history (docs/protocol.md §6.4), with real keys and signatures: the chains an
// honest authority writes verify, and each way a zone key holder could forge or bend one is refused.

const H = 'alice@example.com';
const zonePrivate = generatePrivateJwk();
const zoneKey = signingKeyFromJwk(zonePrivate);
const zonePublic: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: zonePrivate.x };
const zone: HistoryZone = { name: 'example.com', keys: new Map([[thumbprint(zonePublic), publicKeyObject(zonePublic)]]) };
const alice = newUserKey();
const mallory = newUserKey();

const entries = (...jws: string[]): NumberedEntry[] => jws.map((j, i) => [i + 1, j]);
const register = (key = alice, endpoint = 'https://social.example/alice') =>
  signChangeRequest({ action: 'register', handle: H, endpoint, keys: [key.public] }, key.private);
const update = (
  prev: string,
  key = alice,
  keys: PublicJwk[] = [alice.public],
  endpoint = 'https://social.example/alice2',
  added: Parameters<typeof signChangeRequest>[3] = [],
) => signChangeRequest({ action: 'update', handle: H, endpoint, keys, prev }, key.private, undefined, added);
const del = (prev: string, key = alice) => signChangeRequest({ action: 'delete', handle: H, prev }, key.private);
const operatorImport = (extra: { legacyOp?: string } = {}, key = zoneKey, zoneName = 'example.com') =>
  signOperatorEntry({ action: 'import', zone: zoneName, handle: H, endpoint: 'https://social.example/imported', keys: [alice.public], iat: 1, ...extra }, key);

/** A registration of about 22 KiB: eight aliases of 2,000 characters. */
function bigRegister(): string {
  const alsoKnownAs = Array.from({ length: 8 }, (_, i) => `https://social.example/${String(i).repeat(1970)}`);
  return signChangeRequest({ action: 'register', handle: H, endpoint: 'https://social.example/alice', keys: [alice.public], alsoKnownAs }, alice.private);
}

/** The entry with one bit of its signature flipped: its bytes, and so its id, change; its signature fails. */
function tamper(jws: string): string {
  const [h, p, s] = jws.split('.') as [string, string, string];
  const sig = Buffer.from(s, 'base64url');
  sig[5] = sig[5]! ^ 1;
  return `${h}.${p}.${sig.toString('base64url')}`;
}

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(IdnsError);
    expect((err as IdnsError).code).toBe('verification_failed');
    return (err as IdnsError).message;
  }
  throw new Error('verified');
}

describe("a handle's history", () => {
  it('verifies a register, an update, a key rotation with its proof, a delete and a new registration; genesis follows the registrations', () => {
    const reg = register();
    const up = update(requestId(reg));
    const next = newUserKey();
    const rotate = update(requestId(up), alice, [next.public], 'https://social.example/alice3', [next.private]);
    const gone = del(requestId(rotate), next);
    const again = register(mallory, 'https://other.example/');
    const all = entries(reg, up, rotate, gone, again);

    const afterRotation = verifyHistory(emptyHistory(H), all.slice(0, 3), zone);
    expect(afterRotation).toMatchObject({ seq: 3, op: requestId(rotate), genesis: requestId(reg), operatorAsserted: false });
    expect(afterRotation.state!.keys).toEqual([next.public]);
    assureRecordFollows(afterRotation, { handle: H, op: requestId(rotate), endpoint: 'https://social.example/alice3', keys: [next.public] });

    const deleted = verifyHistory(afterRotation, all.slice(3, 4), zone);
    expect(deleted).toMatchObject({ seq: 4, genesis: null, state: null });
    // Incrementally from there, the same as all at once: a new owner, a new genesis.
    const reRegistered = verifyHistory(deleted, all.slice(4), zone);
    expect(reRegistered).toEqual(verifyHistory(emptyHistory(H), all, zone));
    expect(reRegistered.genesis).toBe(requestId(again));
  });

  it('refuses what only the zone key holder could have made: its own update of the owner, a register over a live handle, a record other than the last state', () => {
    const reg = register();
    const verified = verifyHistory(emptyHistory(H), entries(reg), zone);
    // The attack: the zone's key holder gives the handle another key, in an update it signs with a key of its own.
    expect(refusal(() => verifyHistory(verified, [[2, update(requestId(reg), mallory, [mallory.public])] as const], zone))).toMatch(
      /entry 2: it is not signed by a key the handle had/,
    );
    expect(refusal(() => verifyHistory(verified, [[2, register(mallory)] as const], zone))).toMatch(/a registration of a handle that exists/);
    expect(refusal(() => verifyHistory(verified, [[2, operatorImport()] as const], zone))).toMatch(/an operator import of a handle that exists/);
    // A record re-signed with other keys, or another endpoint, does not follow from an honest history.
    expect(
      refusal(() => assureRecordFollows(verified, { handle: H, op: requestId(reg), endpoint: 'https://social.example/alice', keys: [mallory.public] })),
    ).toMatch(/not the state its owner's last change set/);
    expect(refusal(() => assureRecordFollows(verified, { handle: H, op: requestId(reg), endpoint: 'https://evil.example/', keys: [alice.public] }))).toMatch(
      /not the state/,
    );
    expect(
      refusal(() => assureRecordFollows(verified, { handle: H, op: 'x'.repeat(43), endpoint: 'https://social.example/alice', keys: [alice.public] })),
    ).toMatch(/names op/);
  });

  it('refuses broken chains: a prev that is not the entry before, a gap or repeat in the numbers, a forged signature, a missing proof, another handle', () => {
    const reg = register();
    const up = update(requestId(reg));
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(reg, update(requestId(up))), zone))).toMatch(/entry 2: its prev is not entry 1/);
    expect(refusal(() => verifyHistory(emptyHistory(H), [[2, reg] as const], zone))).toMatch(/entry 2 does not follow entry 0/);
    const [h, p, s] = up.split('.') as [string, string, string];
    const sig = Buffer.from(s, 'base64url');
    sig[3] = sig[3]! ^ 1;
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(reg, `${h}.${p}.${sig.toString('base64url')}`), zone))).toMatch(/entry 2/);
    const added = newUserKey();
    const withoutProof = update(requestId(reg), alice, [alice.public, added.public]);
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(reg, withoutProof), zone))).toMatch(/entry 2: .*without its signature/);
    const bob = signChangeRequest(
      { action: 'register', handle: 'bob@example.com', endpoint: 'https://social.example/bob', keys: [alice.public] },
      alice.private,
    );
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(bob), zone))).toMatch(/it is a change of bob@example.com/);
    expect(refusal(() => verifyHistory(emptyHistory(H), entries('not a jws'), zone))).toMatch(/entry 1/);
  });

  it("checks in full what can change who controls the handle and the last entry; an update that keeps the keys is held by the next entry's prev", () => {
    const reg = register();
    // A same-keys update with a bad signature, in the middle: the owner's next entry names its id, so its
    // bytes are fixed by a signature that is checked, and it changed neither the keys nor the final state.
    const middle = tamper(update(requestId(reg)));
    const lastEntry = update(requestId(middle), alice, [alice.public], 'https://social.example/final');
    expect(verifyHistory(emptyHistory(H), entries(reg, middle, lastEntry), zone).state!.endpoint).toBe('https://social.example/final');
    // As the last entry it is checked, and refused.
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(reg, middle), zone))).toMatch(/entry 2/);
    // A change of keys, a delete and a registration are checked wherever they are.
    const next = newUserKey();
    const rotation = tamper(update(requestId(reg), alice, [next.public], 'https://social.example/r', [next.private]));
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(reg, rotation, update(requestId(rotation), next)), zone))).toMatch(/entry 2/);
    const deletion = tamper(del(requestId(reg)));
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(reg, deletion, register(mallory)), zone))).toMatch(/entry 2/);
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(tamper(reg), update(requestId(reg))), zone))).toMatch(/entry 1/);
  });

  it('marks operator imports as operator-asserted until the owner changes the handle, and honours legacyOp as the next prev', () => {
    const imported = operatorImport();
    const first = verifyHistory(emptyHistory(H), entries(imported), zone);
    expect(first).toMatchObject({ seq: 1, genesis: requestId(imported), operatorAsserted: true });
    const owned = verifyHistory(first, [[2, update(requestId(imported))] as const], zone);
    expect(owned.operatorAsserted).toBe(false);

    const legacy = `${'L'.repeat(42)}A`;
    const upgraded = operatorImport({ legacyOp: legacy });
    const afterLegacy = verifyHistory(emptyHistory(H), entries(upgraded, update(legacy)), zone);
    expect(afterLegacy).toMatchObject({ seq: 2, genesis: requestId(upgraded), operatorAsserted: false });

    // An operator entry signed by a key not of the zone, or of another zone, is refused.
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(operatorImport({}, signingKeyFromJwk(generatePrivateJwk()))), zone))).toMatch(
      /not signed by a key of the zone/,
    );
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(operatorImport({}, zoneKey, 'other.example')), zone))).toMatch(
      /operator entry of zone other.example/,
    );
  });

  it('refuses to verify more than MAX_VERIFIED_ENTRIES entries at once, before reading any', () => {
    const many = Array.from({ length: MAX_VERIFIED_ENTRIES + 1 }, (_, i) => [i + 1, 'not read'] as const);
    expect(refusal(() => verifyHistory(emptyHistory(H), many, zone))).toMatch(/more than 10000 entries/);
  });

  it.each([
    ['10,000 entries', MAX_HISTORY_ENTRIES, register(alice, 'https://social.example/before')],
    // Each entry ~22 KiB (eight aliases of 2 KB): 48 of them pass 1 MiB.
    ['1 MiB of entries', Math.ceil(MAX_HISTORY_CHARS / bigRegister().length), bigRegister()],
  ])('a history of %s refuses the next change: 409 history_full, nothing written', async (_, count, jws) => {
    const { startTestServer } = await import('./support/server.js');
    const { postChange } = await import('./support/http.js');
    const s = await startTestServer({ zones: { 'example.com': {} } });
    try {
      // The history filled by stored entries (written straight into the store for the test).
      const content = s.ctx.store.zones.get('example.com')!.content;
      s.ctx.store.write(() => {
        for (let seq = 1; seq <= count; seq++) s.ctx.store.records.put(content, 'op', historyKey(H, seq), 1, 0, jws);
      });
      const before = s.ctx.zones.info('example.com');
      const res = await postChange(s.url, register());
      expect(res.status).toBe(409);
      expect(res.json.error.code).toBe('history_full');
      expect(res.json.error.message).toMatch(/10000 changes, 1048576 characters/);
      expect(s.ctx.zones.info('example.com')).toMatchObject({ serial: before.serial, digest: before.digest });
    } finally {
      await s.close();
    }
  });

  it('idns handle log over HTTP reads a history longer than one page of the log, every entry in order', async () => {
    const { startTestServer } = await import('./support/server.js');
    const { runIdns } = await import('./support/process.js');
    const s = await startTestServer({ zones: { 'example.com': {} } });
    try {
      // 1,001 stored entries (written straight into the store for the test: the log only reads them).
      const content = s.ctx.store.zones.get('example.com')!.content;
      const jws = register(alice, 'https://social.example/many');
      s.ctx.store.write(() => {
        for (let seq = 1; seq <= 1001; seq++) s.ctx.store.records.put(content, 'op', historyKey(H, seq), 1, 0, jws);
      });
      const log = await runIdns(['handle', 'log', H, '--server', s.url]);
      expect(log.stderr).toBe('');
      const lines = log.stdout.trim().split('\n');
      expect(lines).toHaveLength(1001);
      expect(lines.map((l) => Number(l.split('\t')[0]))).toEqual(Array.from({ length: 1001 }, (_, i) => i + 1));
    } finally {
      await s.close();
    }
  });

  it('verifies the history the authority writes, as served by its log: every entry, from the first', async () => {
    const { startTestServer } = await import('./support/server.js');
    const s = await startTestServer({ zones: { 'example.com': {} } });
    try {
      const reg = register();
      await s.ctx.changes.submit(reg);
      const next = newUserKey();
      await s.ctx.changes.submit(update(requestId(reg), alice, [alice.public, next.public], 'https://social.example/two', [next.private]));
      const log = (await (await fetch(`${s.url}/v1/handles/${H}/log`)).json()) as { operations: { seq: number; request: string }[] };
      const verified: VerifiedHistory = verifyHistory(
        emptyHistory(H),
        log.operations.map((e) => [e.seq, e.request] as const),
        zone,
      );
      const answer = (await (await fetch(`${s.url}/v1/resolve/${H}`)).json()) as { record: string };
      const record = JSON.parse(Buffer.from(answer.record.split('.')[1]!, 'base64url').toString()) as {
        handle: string;
        op: string;
        endpoint: string;
        keys: PublicJwk[];
      };
      assureRecordFollows(verified, record);
    } finally {
      await s.close();
    }
  });
});

describe('a handle record and its history (verifyRecordHistory)', () => {
  const state = (endpoint: string, keys: PublicJwk[]) => ({ endpoint, keys });
  const recordOf = (op: string, genesis: string, seq: number, s = state('https://social.example/alice', [alice.public])) => ({
    handle: H,
    op,
    genesis,
    seq,
    ...s,
  });

  it("accepts a record that is its history's last state, naming its genesis and place; returns the point reached", () => {
    const reg = register();
    const up = update(requestId(reg));
    const point = verifyRecordHistory(
      recordOf(requestId(up), requestId(reg), 2, state('https://social.example/alice2', [alice.public])),
      entries(reg, up),
      zone,
    );
    expect(point).toMatchObject({ seq: 2, op: requestId(up), genesis: requestId(reg), operatorAsserted: false });
  });

  it("refuses the zone key holder's re-signed record (other keys, other endpoint, same op), a wrong genesis, a wrong place, a history cut short", () => {
    const reg = register();
    const id = requestId(reg);
    expect(refusal(() => verifyRecordHistory(recordOf(id, id, 1, state('https://social.example/alice', [mallory.public])), entries(reg), zone))).toMatch(
      /endpoint, keys or links are not the state/,
    );
    expect(refusal(() => verifyRecordHistory(recordOf(id, id, 1, state('https://evil.example/', [alice.public])), entries(reg), zone))).toMatch(
      /not the state/,
    );
    expect(refusal(() => verifyRecordHistory(recordOf(id, requestId(update(id)), 1), entries(reg), zone))).toMatch(/names genesis/);
    expect(refusal(() => verifyRecordHistory(recordOf(id, id, 2), entries(reg), zone))).toMatch(
      /names entry 2 of its history, but its history ends at entry 1/,
    );
    const up = update(id);
    expect(refusal(() => verifyRecordHistory(recordOf(id, id, 1), entries(up), zone))).toMatch(/does not verify at entry 1/);
  });

  it('goes on from a point verified before when it is one of the entries, else from the first entry', () => {
    const reg = register();
    const up = update(requestId(reg));
    const record = recordOf(requestId(up), requestId(reg), 2, state('https://social.example/alice2', [alice.public]));
    const known = verifyRecordHistory(recordOf(requestId(reg), requestId(reg), 1), entries(reg), zone);
    expect(verifyRecordHistory(record, entries(reg, up), zone, known)).toEqual(verifyRecordHistory(record, entries(reg, up), zone));
    // A point that is not among the entries (another history of the handle) is not used: the entries are checked from the first.
    const theirs = register(mallory, 'https://other.example/');
    const other = verifyRecordHistory(
      recordOf(requestId(theirs), requestId(theirs), 1, state('https://other.example/', [mallory.public])),
      entries(theirs),
      zone,
    );
    expect(verifyRecordHistory(record, entries(reg, up), zone, other)).toMatchObject({ seq: 2, genesis: requestId(reg) });
    // A point past the entries (an older answer than one seen before) is not used either.
    expect(verifyRecordHistory(recordOf(requestId(reg), requestId(reg), 1), entries(reg), zone, verifyRecordHistory(record, entries(reg, up), zone)).seq).toBe(
      1,
    );
  });

  it('refuses a history longer than the bound in characters, before verifying any entry', () => {
    const big = bigRegister();
    const n = Math.ceil(MAX_HISTORY_CHARS / big.length) + 1;
    const many = Array.from({ length: n }, () => big);
    expect(refusal(() => verifyRecordHistory(recordOf(requestId(big), requestId(big), n), entries(...many), zone))).toMatch(/longer than 1048576 characters/);
  });
});

describe("an answer's evidence (parseEvidence)", () => {
  it("reads numbered entries whose last is the record's, and refuses what an authority never sends", () => {
    const pairs: NumberedEntry[] = [
      [1, 'a.b.c'],
      [6, 'd.e.f'],
      [7, 'g.h.i'],
    ];
    expect(parseEvidence(pairs, 7)).toEqual(pairs);
    const fails = (value: unknown, seq: number) => refusal(() => parseEvidence(value, seq));
    expect(fails(undefined, 1)).toMatch(/no history entries/);
    expect(fails([], 1)).toMatch(/no history entries/);
    expect(fails(pairs, 6)).toMatch(/end at entry 7, not at the record's 6/);
    expect(fails([pairs[1], pairs[0], pairs[2]], 7)).toMatch(/not in order/);
    expect(fails([pairs[0], pairs[0], pairs[2]], 7)).toMatch(/not in order/);
    expect(
      fails(
        Array.from({ length: EVIDENCE_MAX_ENTRIES + 1 }, (_, i) => [i + 1, 'x']),
        EVIDENCE_MAX_ENTRIES + 1,
      ),
    ).toMatch(/more than 160/);
    // The form before numbering, a number that is not one, a JWS that is not a string, a third member.
    for (const bad of [['a.b.c'], [['1', 'a.b.c']], [[1.5, 'a.b.c']], [[1, 2]], [[1, 'a.b.c', 'x']]]) expect(fails(bad, 1)).toMatch(/not a pair/);
    const big = (seq: number): NumberedEntry => [seq, 'x'.repeat(40_000)];
    expect(fails([big(1), big(2)], 2)).toMatch(/exceed 65536 characters/);
    // One entry may be longer than the bound: the record's own entry is always sent.
    expect(parseEvidence([[3, 'x'.repeat(20_000)]], 3)).toEqual([[3, 'x'.repeat(20_000)]]);
  });
});

describe('recovery keys (docs/protocol.md §6.6)', () => {
  const HOUR = 3600_000;
  const at = (hours: number) => new ManualClock(Date.UTC(2026, 5, 1) + hours * HOUR);
  const recoveryKey = newUserKey();
  const thiefRecovery = newUserKey();
  const home = 'https://social.example/alice';
  /** Alice registers with a recovery key (which signs the registration too), at hour 0. */
  const registerWithRecovery = () =>
    signChangeRequest({ action: 'register', handle: H, endpoint: home, keys: [alice.public], recovery: [recoveryKey.public] }, alice.private, at(0), [
      recoveryKey.private,
    ]);
  /** The thief, with alice's stolen everyday key, gives the handle its own key (and no recovery key) at `hours`. */
  const hijack = (prev: string, hours = 1, extra: Partial<{ recovery: PublicJwk[] }> = {}, added = [mallory.private]) =>
    signChangeRequest(
      { action: 'update', handle: H, endpoint: 'https://evil.example/', keys: [mallory.public], prev, ...extra },
      alice.private,
      at(hours),
      added,
    );
  /** A recovery to the state `prev` names, signed by `key` at `hours`: alice's key back, a new endpoint. */
  const recovery = (prev: string, hours: number, key = recoveryKey) =>
    signChangeRequest(
      { action: 'update', handle: H, endpoint: `${home}/recovered`, keys: [alice.public], recovery: [recoveryKey.public], prev },
      key.private,
      at(hours),
    );

  it("undoes a stolen key's change within the window: the state before it is back, the registration goes on, the record follows", () => {
    const reg = registerWithRecovery();
    const stolen = hijack(requestId(reg));
    const undo = recovery(requestId(reg), 2);
    const after = verifyHistory(emptyHistory(H), entries(reg, stolen, undo), zone);
    expect(after).toMatchObject({ seq: 3, op: requestId(undo), genesis: requestId(reg), operatorAsserted: false });
    expect(after.state).toMatchObject({ endpoint: `${home}/recovered`, keys: [alice.public], recovery: [recoveryKey.public] });
    // The same from a point verified before the recovery (a resolver that saw the hijack first).
    const seen = verifyHistory(emptyHistory(H), entries(reg, stolen), zone);
    expect(verifyHistory(seen, [[3, undo] as const], zone)).toEqual(after);
    assureRecordFollows(after, { handle: H, op: requestId(undo), endpoint: `${home}/recovered`, keys: [alice.public], recovery: [recoveryKey.public] });
    // A record that leaves the recovery keys out is not the state.
    expect(refusal(() => assureRecordFollows(after, { handle: H, op: requestId(undo), endpoint: `${home}/recovered`, keys: [alice.public] }))).toMatch(
      /not the state/,
    );
  });

  it('refuses a recovery after the window, one signed by an everyday key, and one to a state without recovery keys', () => {
    const reg = registerWithRecovery();
    const stolen = hijack(requestId(reg));
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(reg, stolen, recovery(requestId(reg), 1 + 72 + 1)), zone))).toMatch(
      /after the recovery window \(259200 s\)/,
    );
    // Inside the window, and a shorter window in the zone record refuses it.
    expect(() => verifyHistory(emptyHistory(H), entries(reg, stolen, recovery(requestId(reg), 1 + 71)), zone)).not.toThrow();
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(reg, stolen, recovery(requestId(reg), 1 + 2)), { ...zone, recoveryWindow: 3600 }))).toMatch(
      /after the recovery window \(3600 s\)/,
    );
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(reg, stolen, recovery(requestId(reg), 2, alice)), zone))).toMatch(
      /not signed by a recovery key of that state/,
    );
    const plain = register();
    const taken = update(requestId(plain), alice, [mallory.public], 'https://evil.example/', [mallory.private]);
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(plain, taken, recovery(requestId(plain), 0)), zone))).toMatch(
      /nor an entry a recovery may go back to/,
    );
  });

  it("a thief's own recovery keys cannot block the owner's recovery, and cannot undo it", () => {
    const reg = registerWithRecovery();
    // The thief adds a recovery key of its own, then "recovers" to its own state.
    const stolen = hijack(requestId(reg), 1, { recovery: [thiefRecovery.public] }, [mallory.private, thiefRecovery.private]);
    const again = signChangeRequest(
      { action: 'update', handle: H, endpoint: 'https://evil.example/2', keys: [mallory.public], recovery: [thiefRecovery.public], prev: requestId(stolen) },
      mallory.private,
      at(1.5),
    );
    const thiefUndo = signChangeRequest(
      { action: 'update', handle: H, endpoint: 'https://evil.example/3', keys: [mallory.public], recovery: [thiefRecovery.public], prev: requestId(stolen) },
      thiefRecovery.private,
      at(1.6),
    );
    const ownerUndo = recovery(requestId(reg), 2);
    const owner = verifyHistory(emptyHistory(H), entries(reg, stolen, again, thiefUndo, ownerUndo), zone);
    expect(owner.state).toMatchObject({ endpoint: `${home}/recovered`, keys: [alice.public] });
    // Undoing the owner's recovery would need going back to a state after the one it went back to.
    const thiefAgain = signChangeRequest(
      { action: 'update', handle: H, endpoint: 'https://evil.example/4', keys: [mallory.public], prev: requestId(thiefUndo) },
      thiefRecovery.private,
      at(2.5),
    );
    expect(refusal(() => verifyHistory(owner, [[6, thiefAgain] as const], zone))).toMatch(/a later recovery already went back beyond/);
  });

  it('a recovery key may also sign an ordinary change of the state that names it', () => {
    const reg = registerWithRecovery();
    const next = newUserKey();
    const rotate = signChangeRequest(
      { action: 'update', handle: H, endpoint: home, keys: [next.public], recovery: [recoveryKey.public], prev: requestId(reg) },
      recoveryKey.private,
      at(5),
      [next.private],
    );
    expect(verifyHistory(emptyHistory(H), entries(reg, rotate), zone).state).toMatchObject({ keys: [next.public] });
  });
});

describe('reading a history from a log (readLog)', () => {
  const page = (from: number, n: number) => ({ operations: Array.from({ length: n }, (_, i) => ({ seq: from + i, request: `e${from + i}` })) });

  it('asks for full pages only: 450 entries take 3 requests', async () => {
    const asked: string[] = [];
    const got = await readLog('http://log.example/', H, 450, async (url) => {
      asked.push(url);
      const u = new URL(url);
      return page(Number(u.searchParams.get('after')) + 1, Number(u.searchParams.get('limit')));
    });
    expect(got).toEqual(Array.from({ length: 450 }, (_, i) => [i + 1, `e${i + 1}`]));
    expect(asked.map((u) => new URL(u).search)).toEqual(['?after=0&limit=200', '?after=200&limit=200', '?after=400&limit=50']);
  });

  it('refuses a page shorter or longer than asked, or out of place: a server cannot drive one request per entry', async () => {
    let requests = 0;
    const stalling = async (url: string) => {
      requests += 1;
      return page(Number(new URL(url).searchParams.get('after')) + 1, 1);
    };
    await expect(readLog('http://log.example/', H, 450, stalling)).rejects.toMatchObject({ code: 'verification_failed' });
    expect(requests).toBe(1);
    await expect(readLog('http://log.example/', H, 10, async () => page(1, 11))).rejects.toMatchObject({ code: 'verification_failed' });
    await expect(readLog('http://log.example/', H, 2, async () => page(2, 2))).rejects.toMatchObject({ code: 'verification_failed' });
  });
});

describe('the compact form of a history (docs/protocol.md §6.5)', () => {
  const HOUR = 3600_000;
  const at = (hours: number) => new ManualClock(Date.UTC(2026, 5, 1) + hours * HOUR);
  const recoveryKey = newUserKey();
  const home = 'https://social.example/alice';
  const next = newUserKey();
  /** An update by `key` keeping `keys` (and `recovery`), to endpoint number `n`, at `hours`. */
  const move = (prev: string, n: number, key = alice, keys = [alice.public], recovery?: PublicJwk[], hours = 0) =>
    signChangeRequest({ action: 'update', handle: H, endpoint: `${home}/${n}`, keys, prev, ...(recovery ? { recovery } : {}) }, key.private, at(hours));
  /** A chain of `n` updates after `first` that keep its keys: each names the one before. */
  const moves = (first: string, n: number, key = alice, keys = [alice.public], recovery?: PublicJwk[], hours = 0) => {
    const out: string[] = [];
    for (let i = 0, prev = requestId(first); i < n; i++) {
      out.push(move(prev, i, key, keys, recovery, hours));
      prev = requestId(out.at(-1)!);
    }
    return out;
  };
  const lastRecord = (all: NumberedEntry[], genesis: string) => {
    const point = verifyHistory(emptyHistory(H), all, zone);
    return { handle: H, op: point.op, genesis, seq: point.seq, ...point.state! };
  };

  it('leaves out the updates that keep the key set, keeps the first, every change of keys and the last; the compact form verifies to the same point', () => {
    const reg = register();
    const before = moves(reg, 40);
    const rotate = update(requestId(before.at(-1)!), alice, [next.public], `${home}/rotated`, [next.private]);
    const after = moves(rotate, 40, next, [next.public]);
    const all = entries(reg, ...before, rotate, ...after);
    const compact = compactHistory(all);
    expect(compact.map(([seq]) => seq)).toEqual([1, 42, 82]);
    const record = lastRecord(all, requestId(reg));
    const whole = verifyRecordHistory(record, all, zone);
    expect(verifyRecordHistory(record, compact, zone)).toMatchObject({ seq: 82, op: whole.op, genesis: whole.genesis, state: whole.state });
    // The evidence an answer carries is the compact form kept with the history when the whole does not fit:
    // one request, three signatures. Kept evidence that does not end at the newest entry is not used, and
    // without any the answer carries the newest entries (the resolver reads the rest from the log).
    const newest = [...all].reverse().slice(0, WHOLE_EVIDENCE_MAX_ENTRIES);
    expect(evidenceOf(newest, () => ({ last: 82, evidence: entriesText(compact) }))).toBe(entriesText(compact));
    expect(evidenceOf(newest, () => ({ last: 81, evidence: entriesText(compact) }))).toBe(entriesText([...newest].reverse()));
    expect(evidenceOf(newest, () => undefined)).toBe(entriesText([...newest].reverse()));
    // A short history is carried whole, whatever is kept.
    const short = entries(reg, ...before.slice(0, 3));
    expect(evidenceOf([...short].reverse(), () => ({ last: 4, evidence: '[]' }))).toBe(entriesText(short));
  });

  it('refuses after a gap what it would refuse right after the state before it: a key the handle did not have then, a missing proof, a first entry left out', () => {
    const reg = register();
    const before = moves(reg, 3);
    const rotate = update(requestId(before.at(-1)!), alice, [next.public], `${home}/rotated`, [next.private]);
    const after = moves(rotate, 3, next, [next.public]);
    // Leaving out the change of keys: the entry after the gap is signed by a key the handle did not have before it.
    const withoutRotation: NumberedEntry[] = [
      [1, reg],
      [8, after.at(-1)!],
    ];
    expect(refusal(() => verifyRecordHistory(lastRecord(entries(reg, ...before, rotate, ...after), requestId(reg)), withoutRotation, zone))).toMatch(
      /entry 8: after a gap, it is not signed by a key the handle had before it/,
    );
    // A key added after a gap needs its proof, as anywhere.
    const added = newUserKey();
    const noProof = update(requestId(before[1]!), alice, [alice.public, added.public]);
    expect(
      refusal(() =>
        verifyHistory(
          emptyHistory(H),
          [
            [1, reg],
            [4, noProof],
          ],
          zone,
        ),
      ),
    ).toMatch(/entry 4: .*without its signature/);
    // The first entry is never left out: a history begins with it.
    expect(refusal(() => verifyHistory(emptyHistory(H), [[2, before[0]!]], zone))).toMatch(/entry 2 does not follow entry 0/);
  });

  it('checks the signature of an update that keeps the keys when the next entry shown does not name it: before a gap, before a recovery', () => {
    const reg = register();
    const chain = moves(reg, 4);
    // (An entry whose next names it as prev is held by that hash: a changed one is another entry, which
    // the next does not name.) Before a gap nothing names it: it is checked, and a forged one refused.
    expect(() =>
      verifyHistory(
        emptyHistory(H),
        [
          [1, reg],
          [2, chain[0]!],
          [5, chain[3]!],
        ],
        zone,
      ),
    ).not.toThrow();
    expect(
      refusal(() =>
        verifyHistory(
          emptyHistory(H),
          [
            [1, reg],
            [2, tamper(chain[0]!)],
            [5, chain[3]!],
          ],
          zone,
        ),
      ),
    ).toMatch(/entry 2/);
    // Before a recovery (which names an earlier entry), likewise.
    const withRecovery = signChangeRequest(
      { action: 'register', handle: H, endpoint: home, keys: [alice.public], recovery: [recoveryKey.public] },
      alice.private,
      at(0),
      [recoveryKey.private],
    );
    const stolen = move(requestId(withRecovery), 1, alice, [alice.public], [recoveryKey.public], 1);
    const undo = signChangeRequest(
      { action: 'update', handle: H, endpoint: `${home}/recovered`, keys: [alice.public], recovery: [recoveryKey.public], prev: requestId(withRecovery) },
      recoveryKey.private,
      at(2),
    );
    expect(() => verifyHistory(emptyHistory(H), entries(withRecovery, stolen, undo), zone)).not.toThrow();
    expect(refusal(() => verifyHistory(emptyHistory(H), entries(withRecovery, tamper(stolen), undo), zone))).toMatch(/entry 2/);
  });

  it("keeps a recovery's reach whole (the entry it goes back to and every one after), so the recovery verifies; a point verified compactly gives way to the whole history", () => {
    const reg = signChangeRequest(
      { action: 'register', handle: H, endpoint: home, keys: [alice.public], recovery: [recoveryKey.public] },
      alice.private,
      at(0),
      [recoveryKey.private],
    );
    const quiet = moves(reg, 5, alice, [alice.public], [recoveryKey.public]);
    const stolenMoves = moves(quiet.at(-1)!, 3, alice, [alice.public], [recoveryKey.public], 1);
    const undo = signChangeRequest(
      { action: 'update', handle: H, endpoint: `${home}/recovered`, keys: [alice.public], recovery: [recoveryKey.public], prev: requestId(quiet[2]!) },
      recoveryKey.private,
      at(2),
    );
    const all = entries(reg, ...quiet, ...stolenMoves, undo);
    const compact = compactHistory(all);
    // Entry 4 is the one the recovery went back to: 4 … 10 are kept; 2 and 3 are left out.
    expect(compact.map(([seq]) => seq)).toEqual([1, 4, 5, 6, 7, 8, 9, 10]);
    const record = lastRecord(all, requestId(reg));
    expect(verifyRecordHistory(record, compact, zone)).toMatchObject({ seq: 10, state: { endpoint: `${home}/recovered` } });
    // A resolver that verified entry 9 from the compact form before the recovery (entries 1 and 9: no
    // state before the gap to go back to) still verifies the recovery: from the whole of what it is given.
    const earlier = entries(reg, ...quiet, ...stolenMoves);
    const point = verifyRecordHistory(lastRecord(earlier, requestId(reg)), compactHistory(earlier), zone);
    expect(compactHistory(earlier).map(([seq]) => seq)).toEqual([1, 9]);
    expect(point.recoverable).toEqual([]);
    expect(verifyRecordHistory(record, compact, zone, point)).toMatchObject({ seq: 10, state: { endpoint: `${home}/recovered` } });
  });
});

describe('history entries as a copy reads them (readHistoryEntry: one decode for the type and the parse)', () => {
  it("reads an operator entry and an owner's request, and refuses an operator entry whose handle is not in normal form or that lists a key twice", async () => {
    const { readHistoryEntry } = await import('../src/records/history-entries.js');
    expect(readHistoryEntry(operatorImport(), H, zone, true).operator).toMatchObject({ action: 'import', handle: H, keys: [alice.public] });
    expect(readHistoryEntry(register(), H, zone, false).owner).toMatchObject({ action: 'register', handle: H });
    const signed = (handle: string, keys: PublicJwk[]) =>
      signOperatorEntry({ action: 'import', zone: 'example.com', handle, endpoint: 'https://social.example/imported', keys, iat: 1 }, zoneKey);
    const code = (run: () => unknown) => {
      try {
        run();
      } catch (err) {
        expect(err).toBeInstanceOf(IdnsError);
        return `${(err as IdnsError).code}: ${(err as IdnsError).message}`;
      }
      throw new Error('read');
    };
    expect(code(() => readHistoryEntry(signed('Alice@Example.com', [alice.public]), H, zone, true))).toBe(
      `invalid_request: an operator entry names its handle in normal form (${H})`,
    );
    expect(code(() => readHistoryEntry(signed(H, [alice.public, { ...alice.public }]), H, zone, true))).toBe('invalid_key: the same key is listed twice');
    expect(readHistoryEntry(signed(H, [alice.public, mallory.public]), H, zone, true).operator?.keys).toEqual([alice.public, mallory.public]);
  });
});
