import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonRequest } from '../../client/http.js';
import { signChangeRequest } from '../../client/requests.js';
import { DEFAULT_CONFIG } from '../../config.js';
import { AppContext } from '../../context.js';
import { IdnsError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { ROOT_IN_PATH } from '../../http/routes/zones.js';
import { generatePrivateJwk } from '../../records/keys.js';
import { parseCommand, type Io } from '../args.js';
import { canListen, freePort } from '../free-port.js';

const usage = `usage: idns demo [--data DIR]

Runs a small federation on loopback, as real child processes: a root zone with two servers, the zone
"example" and the zone "social.example" each with a primary and a secondary, and a resolver. Registers
a few handles and prints commands to try. Ctrl-C stops every process it started. Its data lives in a
temporary directory (removed on exit) unless --data DIR is given (kept: started again on it, the
demo comes back on the same ports, kept in DIR/demo.json, so its zones, replication and redirects go on).`;

const BIN = fileURLToPath(new URL('../../../bin/idns.js', import.meta.url));

interface Node {
  name: string;
  dir: string;
  port: number;
  url: string;
  args: string[];
  child?: ChildProcess;
}

/** `idns demo`: runs until SIGINT or SIGTERM. */
export async function demo(argv: string[], io: Io): Promise<number> {
  const { values, help } = parseCommand({ usage, options: { data: { type: 'string' } }, positionals: [] }, argv);
  if (help) return (io.out(usage), 0);
  const keep = values.data !== undefined;
  const base = keep ? resolvePath(values.data!) : mkdtempSync(join(tmpdir(), 'idns-demo-'));
  mkdirSync(base, { recursive: true });

  const names = ['root-1', 'root-2', 'example-primary', 'example-secondary', 'social-primary', 'social-secondary', 'resolver'];
  // The zones name their servers' URLs, so a demo started again on its data must come back on the same
  // ports: they are kept in DIR/demo.json, and a port taken meanwhile is an error, not a new port.
  const portsFile = join(base, 'demo.json');
  const saved = existsSync(portsFile) ? savedPorts(portsFile, names) : null;
  const nodes = new Map<string, Node>();
  for (const name of names) {
    const port = saved?.[name] ?? (await freePort());
    if (saved && !(await canListen(port))) {
      throw new IdnsError('invalid_request', `port ${port} of the demo's ${name} is in use: stop what holds it, or start the demo on a new --data DIR`);
    }
    nodes.set(name, { name, dir: join(base, name), port, url: `http://127.0.0.1:${port}`, args: [] });
  }
  if (!saved) writeFileSync(portsFile, `${JSON.stringify(Object.fromEntries([...nodes.values()].map((node) => [node.name, node.port])))}\n`);
  const n = (name: string) => nodes.get(name)!;

  // Zones, keys, delegations and a few handles, written straight into each server's data directory.
  const setUp = (node: Node, fn: (ctx: AppContext) => void) => {
    const ctx = new AppContext({ ...structuredClone(DEFAULT_CONFIG), dataDir: node.dir, bootstrap: false }, undefined, createLogger('warn'));
    try {
      fn(ctx);
    } finally {
      void ctx.close();
    }
  };
  const kids: Record<string, string> = {};
  const keyOf = (zone: string, primary: Node, secondary: Node) =>
    setUp(primary, (ctx) => {
      const info = ctx.zones.get(zone) ? ctx.zones.info(zone) : ctx.zones.create(zone, { servers: [primary.url, secondary.url], allowLoopbackEndpoints: true });
      kids[zone] = info.keyThumbprints[0]!;
    });
  keyOf('social.example', n('social-primary'), n('social-secondary'));
  keyOf('example', n('example-primary'), n('example-secondary'));
  keyOf('.', n('root-1'), n('root-2'));
  const fresh = (ctx: AppContext, zone: string) => !ctx.zones.get(zone);
  setUp(n('root-1'), (ctx) => ctx.zones.delegate('.', 'example', { servers: [n('example-primary').url, n('example-secondary').url], ds: [kids.example!] }));
  setUp(n('example-primary'), (ctx) =>
    ctx.zones.delegate('example', 'social.example', { servers: [n('social-primary').url, n('social-secondary').url], ds: [kids['social.example']!] }),
  );
  const replicas = [
    ['root-2', '.', 'root-1'],
    ['example-secondary', 'example', 'example-primary'],
    ['social-secondary', 'social.example', 'social-primary'],
  ] as const;
  for (const [secondary, zone, primary] of replicas) {
    setUp(n(secondary), (ctx) => {
      if (fresh(ctx, zone)) ctx.zones.createSecondary(zone, { primaries: [n(primary).url], ds: [kids[zone]!] });
    });
  }
  const users: string[] = [];
  const register = (node: Node, handle: string) =>
    setUp(node, (ctx) => {
      users.push(handle);
      if (ctx.authority.resolve(handle).status === 'answer') return;
      const key = generatePrivateJwk();
      const intent = {
        action: 'register' as const,
        handle,
        endpoint: `https://${handle.split('@')[1]}/users/${handle.split('@')[0]}`,
        keys: [{ kty: key.kty, crv: key.crv, x: key.x }],
      };
      ctx.changes.applyNow(signChangeRequest(intent, key), { operator: true });
    });
  register(n('social-primary'), 'alice@social.example');
  register(n('social-primary'), 'carol@social.example');
  register(n('example-primary'), 'bob@example');
  n('resolver').args = ['--root', n('root-1').url, '--root', n('root-2').url, '--anchor', `.=${kids['.']!}`, '--allow-private'];

  // Start every server as its own process; stop them all on Ctrl-C.
  let stopping = false;
  const stopAll = async () => {
    if (stopping) return;
    stopping = true;
    await Promise.all([...nodes.values()].map((node) => stopChild(node.child)));
    if (!keep) rmSync(base, { recursive: true, force: true });
  };
  try {
    await Promise.all([...nodes.values()].map((node) => startNode(node, base)));
    // "Lose a primary and keep resolving" is only true once each secondary holds its first copy.
    await Promise.all(replicas.map(([secondary, zone, primary]) => waitForCopy(n(secondary), n(primary), zone, base)));
  } catch (err) {
    await stopAll();
    throw err;
  }
  const r = n('resolver').url;
  const pidOf = (name: string) => n(name).child!.pid;
  io.out(
    [
      `idns demo running (data: ${base}${keep ? '' : ', removed on exit'}); Ctrl-C stops every process.`,
      '',
      ...[...nodes.values()].map((node) => `  ${node.name.padEnd(18)} ${node.url}   pid ${node.child!.pid}`),
      '',
      `Root trust anchor: .=${kids['.']}`,
      `Handles: ${users.join(', ')}`,
      '',
      'Try:',
      `  npx idns lookup alice@social.example --resolver ${r} --anchor .=${kids['.']}`,
      `  npx idns lookup bob@example --root ${n('root-1').url} --root ${n('root-2').url} --anchor .=${kids['.']} --allow-private`,
      `  curl ${r}/v1/lookup/alice@social.example`,
      `  open ${r}/ in a browser: the operator page, with the chain of trust`,
      '',
      'Register a handle (a write sent to a secondary is redirected to the primary):',
      '  npx idns keygen --out dave.jwk',
      `  npx idns handle register dave@social.example --key dave.jwk --endpoint https://social.example/users/dave --server ${n('social-secondary').url}`,
      '',
      'Lose a primary and keep resolving (the secondary answers):',
      `  kill -9 ${pidOf('social-primary')}`,
      `  npx idns lookup carol@social.example --resolver ${r} --anchor .=${kids['.']}`,
      '',
    ].join('\n'),
  );
  await new Promise<void>((done) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      done();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  io.out('stopping…');
  await stopAll();
  return 0;
}

async function startNode(node: Node, base: string): Promise<void> {
  const log = createWriteStream(join(base, `${node.name}.log`), { flags: 'a' });
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--listen', `127.0.0.1:${node.port}`, '--data', node.dir, '--no-bootstrap', '--log-level', 'warn', ...node.args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  node.child = child;
  child.stderr!.pipe(log);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new IdnsError('internal', `${node.name} did not start within 20 s (see ${base}/${node.name}.log)`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      log.write(d);
      if (out.includes('idns serving on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new IdnsError('internal', `${node.name} exited with ${code} at start (see ${base}/${node.name}.log)`));
    });
  });
}

/** Waits until `secondary` serves the zone at the primary's serial (its first transfer is done). */
async function waitForCopy(secondary: Node, primary: Node, zone: string, base: string): Promise<void> {
  const path = `/v1/zones/${zone === '.' ? ROOT_IN_PATH : zone}`;
  const serialAt = async (node: Node) => {
    const res = await jsonRequest(`${node.url}${path}`, { timeoutMs: 5_000 });
    return res.status === 200 ? (res.body as { serial: number }).serial : null;
  };
  const want = await serialAt(primary);
  const deadline = Date.now() + 30_000;
  while ((await serialAt(secondary)) !== want) {
    if (Date.now() > deadline) throw new IdnsError('internal', `${secondary.name} did not copy zone ${zone} within 30 s (see ${base}/${secondary.name}.log)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const forced = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(forced);
}

/** The ports a demo on this data directory used before; refuses a file that does not name one for each server. */
function savedPorts(file: string, names: readonly string[]): Record<string, number> {
  let ports: unknown;
  try {
    ports = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new IdnsError('invalid_request', `${file} is not the demo's port file: remove it, or use a new --data DIR`, { cause });
  }
  const p = ports as Record<string, unknown>;
  if (!names.every((n) => Number.isInteger(p?.[n]) && (p[n] as number) > 0 && (p[n] as number) < 65536)) {
    throw new IdnsError('invalid_request', `${file} does not name a port for each of the demo's servers: remove it, or use a new --data DIR`);
  }
  return p as Record<string, number>;
}
