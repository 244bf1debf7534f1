import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeCompact } from '../src/records/jws.js';
import { thumbprint, type PublicJwk } from '../src/records/keys.js';
import { send } from './support/http.js';
import { newUserKey } from './support/keys.js';
import { runIdns } from './support/process.js';
import { Cluster, idns, register, sleep, until, type Node } from './support/cluster.js';

/**
 * Key rollover (`idns zone rekey`) and the parent following the child (`zone delegate --auto-ds`), with
 * every server a real `idns serve` process: a parent zone `example`, its child `social.example` on a
 * primary and a secondary, and a resolver anchored at the parent, looked up through every 200 ms while
 * the child's key is rolled with TTLs of one second.
 */

const owner = newUserKey();
const cluster = new Cluster();
afterEach(() => cluster.cleanup());

const PARENT = 'example';
const CHILD = 'social.example';
const HANDLE = `alice@${CHILD}`;

/** Writes an `idns serve --config` file: key management steps every 200 ms. */
function fastKeyManagement(): string {
  const file = join(cluster.tempDir('cfg'), 'idns.json');
  writeFileSync(file, JSON.stringify({ rollover: { intervalMs: 200 } }));
  return file;
}

interface ZoneRecordView {
  serial: number;
  signer: string;
  keys: string[];
  cds: string[] | null;
}

/** The zone record a server serves for a zone: its signer, the thumbprints it lists, the ds it asks for. */
async function zoneRecord(n: Node, zone: string): Promise<ZoneRecordView> {
  const res = await send(n.url, 'GET', `/v1/zones/${zone}`);
  if (res.status !== 200) throw new Error(`${n.name}: ${res.status} ${res.text}`);
  const { header, payload } = decodeCompact((res.json as { record: string }).record);
  const p = payload as { serial: number; keys: PublicJwk[]; cds?: string[] };
  return { serial: p.serial, signer: header.kid!, keys: p.keys.map((k) => thumbprint(k)), cds: p.cds ?? null };
}

/** The ds set of the child's delegation as the parent's server answers it. */
async function delegationDs(parent: Node): Promise<string[]> {
  const res = await send(parent.url, 'GET', `/v1/resolve/probe@${CHILD}`);
  const body = res.json as { status: string; record: string };
  if (body.status !== 'referral') throw new Error(`${parent.name}: ${res.status} ${res.text}`);
  return (decodeCompact(body.record).payload as { ds: string[] }).ds;
}

/**
 * The hierarchy: parent zone `example` on its own server, the child zone `social.example` (TTLs of one
 * second, open registration) on a primary and, given `secondary`, a secondary, delegated with the child's
 * key and `delegation` flags; a resolver anchored at the parent. Every server is started, and the handle
 * registered and resolvable.
 */
async function hierarchy(o: { secondary: boolean; delegation: string[] }) {
  const config = fastKeyManagement();
  const p = await cluster.node('parent', ['--config', config]);
  const c = await cluster.node('child', ['--config', config]);
  const cs = o.secondary ? await cluster.node('child-secondary') : null;
  const childServers = cs === null ? [c.url] : [c.url, cs.url];
  const short = ['--ttl', '1', '--handle-ttl', '1', '--minimum', '1'];
  const parentKid = (await idns(['zone', 'create', PARENT, '--server-url', p.url, '--data', p.dir, ...short, '--json'])).keyThumbprints[0] as string;
  const oldKid = (await idns(['zone', 'create', CHILD, '--server-url', ...childServers, '--policy', 'open', '--data', c.dir, ...short, '--json']))
    .keyThumbprints[0] as string;
  await idns(['zone', 'delegate', PARENT, CHILD, '--server-url', ...childServers, '--ds', oldKid, ...o.delegation, '--data', p.dir]);
  if (cs !== null) await idns(['zone', 'secondary', CHILD, '--primary', c.url, `--ds=${oldKid}`, '--data', cs.dir]);
  const r = await cluster.node('resolver', ['--root', p.url, '--anchor', `${PARENT}=${parentKid}`, '--allow-private']);
  await Promise.all([p, c, cs, r].map((n) => (n === null ? null : cluster.start(n))));
  expect((await register(c.url, owner, HANDLE)).status).toBe(201);
  if (cs !== null)
    await until(async () => (await zoneRecord(cs, CHILD)).serial === (await zoneRecord(c, CHILD)).serial, 'the secondary to copy the child zone');
  await until(async () => (await send(r.url, 'GET', `/v1/lookup/${HANDLE}`)).status === 200, 'the resolver to resolve the handle');
  return { p, c, cs, r, oldKid, childServers };
}

/**
 * Looks the handle up through the resolver every 200 ms until stopped, running `alongside` after each
 * lookup; `lookups()` counts them so far, stop() gives the count and the failures.
 */
function watchLookups(r: Node, alongside?: () => Promise<void>): { lookups(): number; stop(): Promise<{ lookups: number; failures: string[] }> } {
  const failures: string[] = [];
  let lookups = 0;
  let watching = true;
  const loop = (async () => {
    while (watching) {
      const res = await send(r.url, 'GET', `/v1/lookup/${HANDLE}`);
      lookups += 1;
      if (res.status !== 200 || (res.json as { status?: string }).status !== 'found') failures.push(`${res.status} ${res.text.slice(0, 300)}`);
      await alongside?.();
      await sleep(200);
    }
  })();
  return {
    lookups: () => lookups,
    async stop() {
      watching = false;
      await loop;
      return { lookups, failures };
    },
  };
}

describe('key rollover on running servers (idns zone rekey, zone delegate --auto-ds)', () => {
  it('rolls a child zone key under continuous lookups through a resolver: no lookup fails, then only the new key signs and the parent lists only it', async () => {
    const { p, c, cs: secondary, r, oldKid } = await hierarchy({ secondary: true, delegation: ['--ttl', '4', '--auto-ds'] });
    const cs = secondary!;

    // Lookups every 200 ms through the resolver for the whole rollover; the phases seen in the metrics.
    const phases = new Set<string>();
    const watch = watchLookups(r, async () => {
      const metrics = await send(c.url, 'GET', '/metrics');
      for (const m of metrics.text.matchAll(/idns_zone_key_rollover_phase_seconds\{[^}]*phase="(\w+)"/g)) phases.add(m[1]!);
    });

    const started = await idns(['zone', 'rekey', CHILD, '--parent-server', p.url, '--data', c.dir, '--json']);
    const newKid = (started.rollover as { newKey: string }).newKey;
    expect(newKid).not.toBe(oldKid);
    const published = await zoneRecord(c, CHILD);
    expect(published).toMatchObject({ signer: oldKid, keys: [oldKid, newKid], cds: [oldKid, newKid] });

    // The parent follows the child's request, the new key signs, the old one is retired, and the parent drops it.
    await until(
      async () => {
        const [child, ds] = await Promise.all([zoneRecord(c, CHILD), delegationDs(p)]);
        return child.signer === newKid && child.keys.join() === newKid && child.cds === null && ds.join() === newKid;
      },
      'the rollover to end with only the new key, at the child and in the parent',
      60_000,
    );
    const shown = (await idns(['zone', 'show', CHILD, '--data', c.dir, '--json'])) as { rollover: unknown; keyThumbprints: string[] };
    expect(shown).toMatchObject({ rollover: null, keyThumbprints: [newKid] });
    // Every record the child serves is signed by the new key now.
    const answer = await send(c.url, 'GET', `/v1/resolve/${HANDLE}`);
    expect(decodeCompact((answer.json as { record: string }).record).header.kid).toBe(newKid);
    // The secondary copied it all and trusts the new key alone.
    await until(async () => (await zoneRecord(cs, CHILD)).serial === (await zoneRecord(c, CHILD)).serial, 'the secondary to copy the last version');
    const copy = (await idns(['zone', 'show', CHILD, '--data', cs.dir, '--json'])) as { primaries: string[] };
    expect(copy.primaries).toEqual([c.url]);
    const trusted = await runIdns(['zone', 'show', CHILD, '--data', cs.dir]);
    expect(trusted.stdout).toContain(`trusting keys ${newKid}`);

    // A few more lookups after the end, then the verdict.
    const after = watch.lookups();
    await until(() => watch.lookups() >= after + 5, 'five lookups after the rollover');
    const { lookups, failures } = await watch.stop();
    expect(failures).toEqual([]);
    expect(lookups).toBeGreaterThan(10);
    // The metrics showed the rollover while it waited for the parent (four seconds at least); the
    // shorter phases are followed step by step in key-rollover-steps.test.ts.
    expect(phases).toContain('publishing');
  }, 120_000);

  it('waits for the parent: without its delegation listing the new key the old key goes on signing; the operator updates the parent, and a restarted server resumes', async () => {
    const { p, c, r, oldKid } = await hierarchy({ secondary: false, delegation: ['--ttl', '2'] });
    // The operator's own change at the parent (no --auto-ds).
    const delegate = (ds: string[]) =>
      idns(['zone', 'delegate', PARENT, CHILD, '--server-url', c.url, ...ds.flatMap((d) => ['--ds', d]), '--ttl', '2', '--data', p.dir]);
    let watch = watchLookups(r);
    const show = async () => (await idns(['zone', 'show', CHILD, '--data', c.dir, '--json'])) as { rollover: { phase: string; waiting: string } | null };

    const newKid = ((await idns(['zone', 'rekey', CHILD, '--parent-server', p.url, '--data', c.dir, '--json'])).rollover as { newKey: string }).newKey;
    // Well past every TTL, the parent still lists only the old key: the rollover waits, saying for what.
    await until(async () => (await show()).rollover?.waiting.includes('its delegation lists'), 'the rollover to say it waits for the parent');
    await sleep(3000);
    expect((await show()).rollover).toMatchObject({ phase: 'publishing' });
    expect((await zoneRecord(c, CHILD)).signer).toBe(oldKid);
    const text = await runIdns(['zone', 'show', CHILD, '--data', c.dir]);
    expect(text.stdout).toMatch(/key rollover publishing since .*: waiting for every server of the parent zone to answer a delegation that lists the new key/);

    // The operator adds the new key at the parent; the server restarted meanwhile resumes the rollover.
    await delegate([oldKid, newKid]);
    // The child's only server goes away for a moment (its answers with it): lookups are watched around it.
    const before = await watch.stop();
    await cluster.kill(c);
    await cluster.start(c);
    await until(async () => (await send(r.url, 'GET', `/v1/lookup/${HANDLE}`)).status === 200, 'the resolver to resolve again');
    watch = watchLookups(r);
    await until(async () => (await show()).rollover?.phase === 'retiring', 'the rollover to reach retiring', 60_000);
    expect(await zoneRecord(c, CHILD)).toMatchObject({ signer: newKid, keys: [newKid], cds: [newKid] });
    // It ends only once the parent no longer lists the old key.
    await sleep(1500);
    expect((await show()).rollover).toMatchObject({ phase: 'retiring' });
    await delegate([newKid]);
    await until(async () => (await show()).rollover === null, 'the rollover to end', 30_000);
    expect(before).toEqual({ lookups: expect.any(Number), failures: [] });
    expect(await watch.stop()).toEqual({ lookups: expect.any(Number), failures: [] });
  }, 120_000);
});
