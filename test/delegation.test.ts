import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAnswer } from '../src/client/answers.js';
import { signChangeRequest } from '../src/client/requests.js';
import { newUserKey } from './support/keys.js';
import { runIdns } from './support/process.js';
import { startTestServer, type TestServer } from './support/server.js';

// One server holding a parent and a child zone, as small deployments do.
describe('delegation on a primary', () => {
  let s: TestServer;
  let childKid: string;
  const owner = newUserKey();
  const register = (handle: string) =>
    s.ctx.changes.submit(signChangeRequest({ action: 'register', handle, endpoint: 'https://home.example/', keys: [owner.public] }, owner.private));
  const resolve = async (handle: string, zone?: string) => {
    const res = await fetch(`${s.url}/v1/resolve/${handle}${zone ? `?zone=${zone}` : ''}`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    s = await startTestServer({ zones: { example: {}, 'social.example': {} } });
    childKid = s.ctx.zones.info('social.example').keyThumbprints[0]!;
    await register('alice@social.example');
    await register('bob@example');
  });
  afterAll(async () => s.close());

  it('refuses to delegate a name not below the parent, or one under which the parent holds handles', async () => {
    expect(() => s.ctx.zones.delegate('example', 'other.test', { servers: ['https://x.test'], ds: [childKid] })).toThrow(
      expect.objectContaining({ code: 'invalid_request' }),
    );
    expect(() => s.ctx.zones.delegate('example', 'example', { servers: ['https://x.test'], ds: [childKid] })).toThrow(
      expect.objectContaining({ code: 'invalid_request' }),
    );
    await register('carol@team.example');
    const serial = s.ctx.zones.info('example').serial;
    expect(() => s.ctx.zones.delegate('example', 'team.example', { servers: ['https://x.test'], ds: [childKid] })).toThrow(/holds 1 handle/);
    expect(() => s.ctx.zones.delegate('example', 'social.example', { servers: ['https://x.test'], ds: ['not-a-thumbprint'] })).toThrow(
      expect.objectContaining({ code: 'invalid_request' }),
    );
    expect(s.ctx.zones.info('example').serial).toBe(serial);
  });

  it('answers from the closest zone held, and from the named zone with ?zone= (a referral below the cut)', async () => {
    s.ctx.zones.delegate('example', 'social.example', { servers: [s.url], ds: [childKid] });
    const direct = await resolve('alice@social.example');
    expect(direct.status).toBe(200);
    expect(direct.body).toMatchObject({ status: 'answer', zone: 'social.example' });
    const fromParent = await resolve('alice@social.example', 'example');
    expect(fromParent.status).toBe(200);
    expect(fromParent.body).toMatchObject({ status: 'referral', zone: 'example' });
    const checked = checkAnswer(fromParent.body, 'alice@social.example', new Map());
    expect(checked).toMatchObject({ status: 'referral', delegation: { name: 'social.example', servers: [s.url], ds: [childKid] } });
    // Even a name that does not exist below the cut is referred, not denied, by the parent.
    expect((await resolve('nobody@deep.social.example', 'example')).body).toMatchObject({ status: 'referral' });
    // The parent still answers for its own names.
    expect((await resolve('bob@example', 'example')).body).toMatchObject({ status: 'answer', zone: 'example' });
    // A zone not held here, or a handle outside the named zone: not authoritative.
    expect((await resolve('bob@example', 'elsewhere.test')).status).toBe(421);
    expect((await resolve('bob@example', 'social.example')).status).toBe(421);
  });

  it('applies the topmost cut when delegations nest', async () => {
    s.ctx.zones.delegate('example', 'deep.team2.example', { servers: ['https://deep.test'], ds: [childKid] });
    s.ctx.zones.delegate('example', 'team2.example', { servers: ['https://team2.test'], ds: [childKid] });
    const r = checkAnswer((await resolve('x@deep.team2.example', 'example')).body, 'x@deep.team2.example', new Map());
    expect(r).toMatchObject({ status: 'referral', delegation: { name: 'team2.example' } });
  });

  it('refuses registrations below a cut in the parent, and accepts them again after undelegate', async () => {
    const server = await startTestServer({ zones: { 'parent.test': {} } });
    try {
      server.ctx.zones.delegate('parent.test', 'kid.parent.test', { servers: ['https://kid.test'], ds: [childKid] });
      const jws = signChangeRequest({ action: 'register', handle: 'x@kid.parent.test', endpoint: 'https://h.example/', keys: [owner.public] }, owner.private);
      await expect(server.ctx.changes.submit(jws)).rejects.toMatchObject({ code: 'not_authoritative' });
      server.ctx.zones.undelegate('parent.test', 'kid.parent.test');
      const denied = await (await fetch(`${server.url}/v1/resolve/x@kid.parent.test`)).json();
      expect(denied).toMatchObject({ status: 'denial', zone: 'parent.test' });
      const again = signChangeRequest({ action: 'register', handle: 'x@kid.parent.test', endpoint: 'https://h.example/', keys: [owner.public] }, owner.private);
      await expect(server.ctx.changes.submit(again)).resolves.toMatchObject({ zone: 'parent.test' });
      expect(() => server.ctx.zones.undelegate('parent.test', 'kid.parent.test')).toThrow(expect.objectContaining({ code: 'zone_not_found' }));
    } finally {
      await server.close();
    }
  });

  it('delegates and undelegates with the CLI', async () => {
    const server = await startTestServer({ zones: { 'cli.test': {} } });
    try {
      const d = await runIdns([
        'zone',
        'delegate',
        'cli.test',
        'sub.cli.test',
        '--server-url',
        'https://sub.test',
        '--ds',
        childKid,
        '--data',
        server.dataDir,
        '--json',
      ]);
      expect(d.stderr).toBe('');
      expect(JSON.parse(d.stdout)).toMatchObject({ parent: 'cli.test', child: 'sub.cli.test', ds: [childKid] });
      expect(await (await fetch(`${server.url}/v1/resolve/a@sub.cli.test`)).json()).toMatchObject({ status: 'referral' });
      const u = await runIdns(['zone', 'undelegate', 'cli.test', 'sub.cli.test', '--data', server.dataDir]);
      expect(u.code).toBe(0);
      expect(await (await fetch(`${server.url}/v1/resolve/a@sub.cli.test`)).json()).toMatchObject({ status: 'denial' });
      const bad = await runIdns(['zone', 'delegate', 'cli.test', 'sub.cli.test', '--server-url', 'https://sub.test', '--data', server.dataDir]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('--ds');
    } finally {
      await server.close();
    }
  });
});
