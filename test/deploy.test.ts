import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, type Document } from 'yaml';
import { main } from '../src/cli/main.js';
import { loadConfig } from '../src/config.js';
import { send } from './support/http.js';
import { runIdns } from './support/process.js';
import { startTestServer, type TestServer } from './support/server.js';

// deploy/ (Dockerfile, docker compose, Kubernetes, systemd) checked statically, since neither docker nor
// a cluster nor systemd runs in CI: every file parses, and every command, flag, port, path and reference
// in them exists in the program (asked of the real `idns` and a real server) or in the other files.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const readDeploy = (path: string): string => readFileSync(join(DEPLOY, path), 'utf8');

type Any = any; // parsed YAML

// ---------------------------------------------------------------------------------------------------
// A small shell reader: enough of sh for the scripts in deploy/ (quotes, $(...), comments, && || ; |,
// redirections). Words come back with quotes removed and every expansion replaced by "X".

/** Splits shell text into simple commands, each a list of words. */
function shellCommands(script: string): string[][] {
  const text = script.replace(/\\\r?\n/g, ' ');
  const commands: string[][] = [];
  let words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  const endWord = () => {
    if (inWord) words.push(word);
    word = '';
    inWord = false;
  };
  const endCommand = () => {
    endWord();
    if (words.length > 0) commands.push(words);
    words = [];
  };
  /** Copies `$( ... )` starting at i (nested parentheses and quotes inside) into the word; returns its end. */
  const substitution = (i: number): number => {
    let depth = 0;
    let q: string | null = null;
    for (let j = i + 1; j < text.length; j++) {
      const c = text[j]!;
      if (q) {
        if (c === q) q = null;
      } else if (c === '"' || c === "'") q = c;
      else if (c === '(') depth++;
      else if (c === ')' && --depth === 0) {
        word += text.slice(i, j + 1);
        inWord = true;
        return j;
      }
    }
    throw new Error(`unterminated $( in: ${script}`);
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
      continue;
    }
    if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '$' && text[i + 1] === '(') i = substitution(i);
      else if (c === '\\' && i + 1 < text.length) word += text[++i];
      else word += c;
      continue;
    }
    if (c === '#' && !inWord) {
      while (i + 1 < text.length && text[i + 1] !== '\n') i++;
    } else if (c === '\n' || c === ';' || c === '|' || c === '&') {
      if ((c === '&' && text[i - 1] === '>') || (c === '&' && word.endsWith('>'))) {
        word += c; // 2>&1
        inWord = true;
        continue;
      }
      endCommand();
      if ((c === '&' || c === '|') && text[i + 1] === c) i++;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      endWord();
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '$' && text[i + 1] === '(') {
      i = substitution(i);
    } else if (c === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unterminated quote in: ${script}`);
  endCommand();
  return commands
    .map(stripRedirections)
    .filter((w) => w.length > 0)
    .map((w) => w.map(placeholder));
}

function stripRedirections(words: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (/^<[\w-]+>$/.test(w))
      out.push('X'); // a placeholder in documentation: `git clone <idns>`
    else if (/^\d*(>>?|<)$/.test(w))
      i++; // `> FILE`: drop the target too
    else if (!/^\d*(>>?|<)/.test(w)) out.push(w); // `>/dev/null`, `2>&1`
  }
  return out;
}

/** Replaces `$(...)`, `${VAR}` and `$VAR` by X: what the values are is not known before run time. */
function placeholder(word: string): string {
  return word.replace(/\$\((?:[^()]|\([^()]*\))*\)|\$\{\w+\}|\$\w+/g, 'X');
}

/** The `idns` invocation in a simple command, as its arguments (after `idns` or `.../bin/idns.js`), if any. */
function idnsArgs(words: string[]): string[] | null {
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    // A last word is a name, not a command (`useradd ... idns`, "runs `bin/idns.js`").
    if (i + 1 === words.length) break;
    if (/(^|\/)bin\/idns\.js$/.test(w)) return words.slice(i + 1);
    // `idns` as a command, not as the value of a flag (`kubectl -n idns`).
    const prev = words[i - 1];
    if (w === 'idns' && (prev === undefined || prev === '--' || !prev.startsWith('-'))) return words.slice(i + 1);
  }
  return null;
}

interface Invocation {
  where: string;
  args: string[];
}

function invocationsIn(where: string, script: string): Invocation[] {
  return shellCommands(script).flatMap((words) => {
    const args = idnsArgs(words);
    return args ? [{ where, args }] : [];
  });
}

/** The value following `--flag` (or `--flag=value`), or the values up to the next option for lists. */
function flagValues(args: string[], flag: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) {
      for (let j = i + 1; j < args.length && !args[j]!.startsWith('-'); j++) values.push(args[j]!);
    } else if (args[i]!.startsWith(`${flag}=`)) values.push(args[i]!.slice(flag.length + 1));
  }
  return values;
}

const listenPort = (args: string[]): number => {
  const listen = flagValues(args, '--listen')[0];
  if (listen === undefined) throw new Error(`no --listen in idns ${args.join(' ')}`);
  return Number(/:(\d+)$/.exec(listen)![1]);
};

// ---------------------------------------------------------------------------------------------------
// The files.

/** Dockerfile instructions (continuations joined, comments dropped), grouped by stage. */
function dockerfile(): { stages: { name: string | null; instructions: { op: string; value: string }[] }[] } {
  const logical = readDeploy('Dockerfile')
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const stages: { name: string | null; instructions: { op: string; value: string }[] }[] = [];
  for (const line of logical) {
    const m = /^(\w+)\s+(.*)$/.exec(line)!;
    const op = m[1]!.toUpperCase();
    const value = m[2]!;
    if (op === 'FROM') stages.push({ name: /\sAS\s+(\S+)$/i.exec(value)?.[1] ?? null, instructions: [] });
    if (op !== 'ARG' || stages.length > 0) stages.at(-1)?.instructions.push({ op, value });
  }
  return { stages };
}

const composeText = readDeploy('docker-compose.yml');
const compose: Any = parse(composeText, { merge: true });
const composeServices = Object.entries(compose.services as Record<string, Any>);
/** The services that run an idns server (all but the one-shot volume setup). */
const idnsServices = composeServices.filter(([, s]) => s.image === 'idns:local' && s.user === undefined);
/** A compose service's shell script, with compose's `$$` escape turned back into `$`. */
const composeScript = (s: Any): string => {
  if (s.entrypoint?.join(' ') !== '/bin/sh -ec') throw new Error(`compose: expected entrypoint /bin/sh -ec, got ${s.entrypoint}`);
  return (s.command as string[]).join('\n').replaceAll('$$', '$');
};

const k8sFiles = readdirSync(join(DEPLOY, 'k8s'))
  .filter((f) => /\.ya?ml$/.test(f))
  .sort();
const k8sObjects: { file: string; obj: Any }[] = k8sFiles.flatMap((file) =>
  parseAllDocuments(readDeploy(join('k8s', file)))
    .map((d) => d.toJS())
    .filter((obj) => obj !== null)
    .map((obj) => ({ file, obj })),
);
const ofKind = (kind: string) => k8sObjects.map((o) => o.obj).filter((o) => o.kind === kind);
const workloads = () => [...ofKind('StatefulSet'), ...ofKind('Deployment')];
const matches = (selector: Record<string, string>, labels: Record<string, string> | undefined) => Object.entries(selector).every(([k, v]) => labels?.[k] === v);
/** Every container of a pod template, init containers included, with where it is. */
const containersOf = (w: Any): { where: string; c: Any; init: boolean }[] => [
  ...(w.spec.template.spec.initContainers ?? []).map((c: Any) => ({ where: `${w.kind} ${w.metadata.name} init ${c.name}`, c, init: true })),
  ...w.spec.template.spec.containers.map((c: Any) => ({ where: `${w.kind} ${w.metadata.name} ${c.name}`, c, init: false })),
];
/** A container's idns invocations: its args when the image's entrypoint (idns) runs, else its sh script. */
function containerInvocations(where: string, c: Any): Invocation[] {
  if (c.command === undefined) return [{ where, args: (c.args as string[]).map(placeholder) }];
  if (c.command[0] === '/bin/sh' || c.command[0] === 'sh') return invocationsIn(where, (c.args ?? []).join('\n'));
  return invocationsIn(where, [...c.command, ...(c.args ?? [])].join(' '));
}

/** The systemd unit: [Section] -> key -> every value given (comments dropped, continuations joined). */
function systemdUnit(): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | null = null;
  for (const raw of readDeploy('systemd/idns.service').replace(/\\\n/g, ' ').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (!current || eq <= 0) throw new Error(`not a unit file line: ${line}`);
    const key = line.slice(0, eq).trim();
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return sections;
}

/** Shell snippets in deploy/README.md: fenced sh blocks and inline code spans. */
function readmeSnippets(): string[] {
  const text = readDeploy('README.md');
  const fenced = [...text.matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const prose = text.replace(/```[\s\S]*?```/g, '');
  const inline = [...prose.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!);
  return [...fenced, ...inline];
}

/** Every idns invocation in deploy/, labelled with where it is. */
function allInvocations(): Invocation[] {
  const out: Invocation[] = [];
  const { stages } = dockerfile();
  const final = stages.at(-1)!.instructions;
  const entrypoint = JSON.parse(final.findLast((i) => i.op === 'ENTRYPOINT')!.value) as string[];
  const cmd = JSON.parse(final.findLast((i) => i.op === 'CMD')!.value) as string[];
  expect(idnsArgs([...entrypoint, ...cmd]), 'the Dockerfile ENTRYPOINT runs bin/idns.js').toEqual(cmd);
  out.push({ where: 'Dockerfile CMD', args: cmd });
  for (const [name, s] of idnsServices) out.push(...invocationsIn(`compose ${name}`, composeScript(s)));
  for (const w of workloads()) for (const { where, c } of containersOf(w)) out.push(...containerInvocations(where, c));
  for (const exec of systemdUnit().get('Service')!.get('ExecStart')!) out.push(...invocationsIn('systemd ExecStart', exec));
  for (const snippet of readmeSnippets()) out.push(...invocationsIn('README', snippet));
  return out;
}

// ---------------------------------------------------------------------------------------------------

describe('deploy/ manifests parse', () => {
  it('every YAML file parses, every document, without errors or warnings', () => {
    const files = ['docker-compose.yml', ...k8sFiles.map((f) => join('k8s', f))];
    for (const file of files) {
      const docs = parseAllDocuments(readDeploy(file), { merge: true });
      expect(Array.isArray(docs), `${file} is not empty`).toBe(true);
      for (const doc of docs as Document[]) {
        expect(
          doc.errors.map((e) => e.message),
          file,
        ).toEqual([]);
        expect(
          doc.warnings.map((e) => e.message),
          file,
        ).toEqual([]);
      }
    }
    expect(k8sObjects.length).toBeGreaterThanOrEqual(10);
  });

  it('every Kubernetes object has apiVersion, kind, metadata.name, and lives in the idns namespace', () => {
    for (const { file, obj } of k8sObjects) {
      const where = `${file}: ${obj?.kind} ${obj?.metadata?.name}`;
      expect(typeof obj.apiVersion, where).toBe('string');
      expect(typeof obj.kind, where).toBe('string');
      expect(typeof obj.metadata?.name, where).toBe('string');
      expect(obj.metadata.name, where).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      if (obj.kind === 'Namespace') expect(obj.metadata.name).toBe('idns');
      else expect(obj.metadata.namespace, where).toBe('idns');
    }
    // No two objects of one kind share a name.
    const ids = k8sObjects.map(({ obj }) => `${obj.kind}/${obj.metadata.name}`);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('every idns command in deploy/ exists', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'idns-deploy-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('uses a real subcommand and only flags that `idns <command> --help` lists and the parser accepts', async () => {
    const invocations = allInvocations();
    const where = (inv: Invocation) => `${inv.where}: idns ${inv.args.join(' ')}`;
    // Each place runs idns at least once: image, 7 compose services, 3 workloads (+2 init), unit, README.
    expect(invocations.length).toBeGreaterThanOrEqual(20);
    for (const label of ['Dockerfile CMD', 'systemd ExecStart', 'README'])
      expect(
        invocations.some((i) => i.where === label),
        label,
      ).toBe(true);

    const top = await runIdns(['--help'], { cwd: tmp });
    expect(top.code).toBe(0);
    const commands = new Set([...top.stdout.matchAll(/^ {2}([a-z]+)\s/gm)].map((m) => m[1]!));
    expect(commands).toContain('serve');
    const used = [...new Set(invocations.map((i) => i.args[0]!))];
    for (const command of used) expect(commands, `"${command}" is not an idns command`).toContain(command);
    const helps = new Map(
      await Promise.all(
        used.map(async (command) => {
          const help = await runIdns([command, '--help'], { cwd: tmp });
          expect(help.code, `idns ${command} --help`).toBe(0);
          return [command, help.stdout] as const;
        }),
      ),
    );
    const nested = (command: string) => new Set([...helps.get(command)!.matchAll(/^ {2}([a-z][a-z-]*)(?=\s|$)/gm)].map((m) => m[1]!));

    const distinct = new Map<string, Invocation>();
    for (const inv of invocations) {
      const [command, sub] = inv.args;
      const help = helps.get(command!)!;
      const hasSub = command === 'zone' || command === 'handle';
      if (hasSub) expect(nested(command!), `${where(inv)}: no such ${command} command "${sub}"`).toContain(sub);
      for (const arg of inv.args) {
        if (!arg.startsWith('--') || arg === '--') continue;
        const flag = arg.split('=')[0]!;
        expect(help, `${where(inv)}: ${flag} is not in idns ${command} --help`).toMatch(new RegExp(`(^|[\\s\\[|(])${flag}(?![\\w-])`, 'm'));
      }
      distinct.set(inv.args.join('\0'), inv);
    }

    // The real parser accepts each command line as written (values where values go, no unknown option).
    // In-process through the CLI's own main() (what bin/idns.js runs), with `--help` right after the
    // command, so that nothing runs and no option can swallow it as a value.
    for (const inv of distinct.values()) {
      const n = inv.args[0] === 'zone' || inv.args[0] === 'handle' ? 2 : 1;
      const out: string[] = [];
      const err: string[] = [];
      const code = await main([...inv.args.slice(0, n), '--help', ...inv.args.slice(n)], { out: (t) => out.push(t), err: (t) => err.push(t) });
      expect(code, `${where(inv)} is refused: ${err.join('\n')}`).toBe(0);
      expect(out.join('\n')).toMatch(/^usage: idns /);
    }
  });

  it('every long-running process is `idns serve`, and every serve listens on the one port 8053', () => {
    const invocations = allInvocations();
    const serves = invocations.filter((i) => i.args[0] === 'serve' && i.where !== 'README');
    const ports = new Set(serves.map((i) => listenPort(i.args)));
    expect([...ports]).toEqual([8053]);
    // Image, 7 compose services, 3 Kubernetes workloads, the unit.
    expect(serves.map((s) => s.where)).toHaveLength(1 + idnsServices.length + workloads().length + 1);
  });
});

describe('probe and healthcheck paths are real routes', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ zones: { 'example.com': {} } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('every /healthz and /readyz used in deploy/ answers 200 on a real server', async () => {
    const paths = new Set<string>();
    const urlPaths = (text: string) => [...text.matchAll(/http:\/\/127\.0\.0\.1:\d+(\/[\w/-]*)/g)].map((m) => m[1]!);
    const healthcheck = dockerfile()
      .stages.at(-1)!
      .instructions.find((i) => i.op === 'HEALTHCHECK')!.value;
    urlPaths(healthcheck).forEach((p) => paths.add(p));
    for (const [, s] of idnsServices) urlPaths(s.healthcheck.test.join(' ')).forEach((p) => paths.add(p));
    for (const w of workloads()) {
      for (const { c } of containersOf(w)) {
        for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) if (probe?.httpGet) paths.add(probe.httpGet.path);
      }
    }
    expect([...paths].sort()).toEqual(['/healthz', '/readyz']);
    for (const path of paths) {
      const res = await send(server.url, 'GET', path);
      expect(res.status, `GET ${path}`).toBe(200);
    }
  });
});

describe('Dockerfile', () => {
  const { stages } = dockerfile();
  const final = stages.at(-1)!.instructions;
  const all = stages.flatMap((s) => s.instructions);
  const values = (op: string, ins = final) => ins.filter((i) => i.op === op).map((i) => i.value);

  it('builds in stages: npm ci + npm run build with the native toolchain, then production deps only', () => {
    expect(stages.length).toBeGreaterThanOrEqual(3);
    // Each stage starts from the node image or an earlier stage.
    for (const [i, s] of stages.entries()) {
      expect(s.instructions[0]!.op).toBe('FROM');
      expect(['${NODE_IMAGE}', ...stages.slice(0, i).map((x) => x.name)], String(s.name)).toContain(s.instructions[0]!.value.split(/\s+/)[0]);
    }
    expect(stages.map((s) => s.name)).toEqual(['toolchain', 'build', 'deps', 'runtime']);
    expect(readDeploy('Dockerfile')).toMatch(/ARG NODE_IMAGE=node:20-bookworm-slim/);
    const runs = values('RUN', all).join('\n');
    expect(runs).toMatch(/python3/);
    expect(runs).toMatch(/\bg\+\+/);
    expect(runs).toMatch(/\bmake\b/);
    expect(runs).toMatch(/npm ci\b(?![^\n]*--omit=dev)/);
    expect(runs).toMatch(/npm run build/);
    expect(runs).toMatch(/npm ci --omit=dev/);
    expect(runs).toMatch(/npm rebuild better-sqlite3/);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.scripts.build).toBeDefined();
    expect(pkg.dependencies['better-sqlite3']).toBeDefined();
    // The runtime stage has no compiler and no dev dependencies: it copies what the program needs.
    expect(values('RUN').join('\n')).not.toMatch(/apt-get|npm ci|npm install/);
    const copies = values('COPY').join('\n');
    expect(copies).toMatch(/--from=deps \/app\/node_modules/);
    expect(copies).toMatch(/--from=build \/app\/dist/);
    for (const file of ['package.json', 'schema.sql', 'bin']) expect(copies).toContain(file);
    expect(values('WORKDIR')).toEqual(['/app']);
  });

  it('copies only files that exist, and its ignore file keeps them in the build context', () => {
    const ignore = readDeploy('Dockerfile.dockerignore')
      .split('\n')
      .map((l) => l.trim());
    for (const { value } of all.filter((i) => i.op === 'COPY' && !i.value.startsWith('--from'))) {
      const sources = value
        .split(/\s+/)
        .filter((w) => !w.startsWith('--'))
        .slice(0, -1);
      for (const src of sources) {
        expect(existsSync(join(ROOT, src)), `COPY ${src}`).toBe(true);
        expect(
          ignore.some((l) => l === `!${src}` || l === `!${src}/`),
          `Dockerfile.dockerignore re-includes ${src}`,
        ).toBe(true);
      }
    }
  });

  it('runs bin/idns.js as a non-root user, with /data a volume, port 8053 and a /healthz healthcheck', () => {
    const user = values('USER').at(-1)!;
    expect(user).toBeDefined();
    const uid = user.split(':')[0]!;
    // Numeric, so that Kubernetes' runAsNonRoot can check it; the manifests run as the same uid.
    expect(uid).toMatch(/^\d+$/);
    expect(Number(uid)).toBeGreaterThan(0);
    for (const w of workloads()) expect(String(w.spec.template.spec.securityContext.runAsUser)).toBe(uid);
    expect(composeServices.find(([n]) => n === 'shared-init')![1].command.join(' ')).toContain(`chown ${uid}:`);

    expect(JSON.parse(values('ENTRYPOINT').at(-1)!)).toEqual(['node', '/app/bin/idns.js']);
    const cmd = JSON.parse(values('CMD').at(-1)!) as string[];
    expect(cmd).toEqual(['serve', '--listen', '0.0.0.0:8053', '--data', '/data', '--no-bootstrap']);
    const volumes = values('VOLUME').flatMap((v) => (v.startsWith('[') ? (JSON.parse(v) as string[]) : v.split(/\s+/)));
    expect(volumes).toContain(flagValues(cmd, '--data')[0]);
    expect(values('EXPOSE').map(Number)).toEqual([listenPort(cmd)]);

    const healthcheck = values('HEALTHCHECK').at(-1)!;
    expect(healthcheck).toMatch(/CMD \["node", "-e"/);
    const url = /http:\/\/127\.0\.0\.1:(\d+)(\/\w+)/.exec(healthcheck)!;
    expect(url[2]).toBe('/healthz');
    expect(Number(url[1])).toBe(listenPort(cmd));
  });
});

describe('docker-compose.yml', () => {
  const scripts = new Map(idnsServices.map(([name, s]) => [name, composeScript(s)]));
  const invocations = new Map(idnsServices.map(([name]) => [name, invocationsIn(name, scripts.get(name)!).map((i) => i.args)]));
  const find = (command: string, sub: string) =>
    [...invocations].flatMap(([service, list]) => list.filter((a) => a[0] === command && a[1] === sub).map((args) => ({ service, args })));
  const url = (service: string) => `http://${service}:8053`;

  it('runs the demo topology: root on two servers, example and social.example each primary + secondary, a resolver', () => {
    expect(idnsServices.map(([n]) => n).sort()).toEqual(['example1', 'example2', 'resolver', 'root1', 'root2', 'social1', 'social2']);
    const created = find('zone', 'create');
    const secondaries = find('zone', 'secondary');
    expect(created.map((c) => c.args[2]).sort()).toEqual(['.', 'example', 'social.example']);
    expect(secondaries.map((c) => c.args[2]).sort()).toEqual(['.', 'example', 'social.example']);
    for (const { service, args } of created) {
      const zone = args[2]!;
      const secondary = secondaries.find((s) => s.args[2] === zone)!;
      // The zone lists both its servers, the primary first, and the secondary copies from that primary.
      expect(flagValues(args, '--server-url'), zone).toEqual([url(service), url(secondary.service)]);
      expect(flagValues(secondary.args, '--primary'), zone).toEqual([url(service)]);
      expect(flagValues(secondary.args, '--ds'), zone).toEqual(['X']);
    }
    const delegations = find('zone', 'delegate').map(({ service, args }) => ({
      service,
      parent: args[2],
      child: args[3],
      servers: flagValues(args, '--server-url'),
    }));
    expect(delegations.map((d) => `${d.parent}>${d.child}`).sort()).toEqual(['.>example', 'example>social.example']);
    for (const d of delegations) {
      expect(created.find((c) => c.args[2] === d.parent)!.service).toBe(d.service);
      expect(d.servers).toEqual(flagValues(created.find((c) => c.args[2] === d.child)!.args, '--server-url'));
    }
    const resolver = invocations.get('resolver')!.find((a) => a[0] === 'serve')!;
    expect(flagValues(resolver, '--root')).toEqual(flagValues(created.find((c) => c.args[2] === '.')!.args, '--server-url'));
    expect(flagValues(resolver, '--anchor')).toEqual(['.=X']);
    expect(resolver).toContain('--allow-private');
  });

  it('each server ends its script by exec-ing idns serve (PID 1 gets SIGTERM) with its own data volume', () => {
    const dataVolumes = new Set<string>();
    for (const [name, s] of idnsServices) {
      const commands = shellCommands(scripts.get(name)!);
      const last = commands.at(-1)!;
      expect(last.slice(0, 3), name).toEqual(['exec', 'idns', 'serve']);
      expect(flagValues(last, '--data'), name).toEqual(['/data']);
      expect(last, name).toContain('--no-bootstrap');
      const data = (s.volumes as string[]).find((v) => v.endsWith(':/data'))!;
      expect(data, name).toBeDefined();
      dataVolumes.add(data.split(':')[0]!);
      for (const v of s.volumes as string[]) expect(Object.keys(compose.volumes), `${name}: volume ${v}`).toContain(v.split(':')[0]);
      expect(s.read_only, name).toBe(true);
    }
    expect(dataVolumes.size).toBe(idnsServices.length);
  });

  it('every $ in a script is escaped for compose, and every URL names a service on the listen port', () => {
    for (const [name, s] of idnsServices) {
      const raw = (s.command as string[]).join('\n');
      expect(raw.replaceAll('$$', ''), `${name}: a single $ would be substituted by compose`).not.toContain('$');
      for (const m of scripts.get(name)!.matchAll(/http:\/\/([\w.-]+):(\d+)/g)) {
        expect(
          idnsServices.map(([n]) => n),
          `${name}: ${m[0]}`,
        ).toContain(m[1]);
        expect(Number(m[2]), `${name}: ${m[0]}`).toBe(8053);
      }
    }
  });

  it('healthchecks hit /healthz on the listen port; published ports map to it; depends_on is consistent', () => {
    const byName = new Map(composeServices);
    for (const [name, s] of idnsServices) {
      const test = (s.healthcheck.test as string[]).join(' ');
      const m = /http:\/\/127\.0\.0\.1:(\d+)(\/\w+)/.exec(test)!;
      expect(m[2], name).toBe('/healthz');
      expect(Number(m[1]), name).toBe(8053);
      for (const p of (s.ports ?? []) as string[]) expect(Number(p.split(':').at(-1)), `${name} ports ${p}`).toBe(8053);
      for (const [dep, { condition }] of Object.entries(s.depends_on as Record<string, { condition: string }>)) {
        expect(byName.has(dep), `${name} depends on ${dep}`).toBe(true);
        expect(['service_healthy', 'service_completed_successfully'], `${name} -> ${dep}`).toContain(condition);
        if (condition === 'service_healthy') expect(byName.get(dep).healthcheck, `${dep} has a healthcheck`).toBeDefined();
      }
    }
  });

  it('whoever waits for a /shared file depends on the service that writes it (no deadlock, no wait forever)', () => {
    const writers = new Map<string, string>();
    for (const [name, script] of scripts) {
      for (const words of shellCommands(script)) if (words[0] === 'mv' && words[2]?.startsWith('/shared/')) writers.set(words[2], name);
    }
    expect([...writers.keys()].sort()).toEqual(['/shared/example.json', '/shared/root.json', '/shared/social.example.json']);
    const dependsOn = (from: string, to: string, seen = new Set<string>()): boolean => {
      if (from === to) return true;
      if (seen.has(from)) return false;
      seen.add(from);
      return Object.keys(compose.services[from].depends_on ?? {}).some((d) => dependsOn(d, to, seen));
    };
    let reads = 0;
    for (const [name, script] of scripts) {
      for (const m of script.matchAll(/\/shared\/[\w.]+\.json(?!\.tmp)/g)) {
        const writer = writers.get(m[0]);
        expect(writer, `${name} reads ${m[0]}, which nobody writes`).toBeDefined();
        if (writer !== name) {
          expect(dependsOn(name, writer!), `${name} waits for ${m[0]} but does not depend on ${writer}`).toBe(true);
          reads++;
        }
      }
    }
    expect(reads).toBeGreaterThanOrEqual(6);
  });
});

describe('Kubernetes manifests', () => {
  const services = ofKind('Service');
  const configMaps = ofKind('ConfigMap');

  it('a StatefulSet with a volumeClaimTemplate for the primary, Deployments for secondaries and resolvers, PDBs for both', () => {
    const [sts, ...more] = ofKind('StatefulSet');
    expect(more).toEqual([]);
    expect(sts.spec.replicas).toBe(1);
    expect(sts.spec.template.metadata.labels['app.kubernetes.io/component']).toBe('primary');
    expect(sts.spec.volumeClaimTemplates.length).toBeGreaterThan(0);
    const governing = services.find((s) => s.metadata.name === sts.spec.serviceName);
    expect(governing?.spec.clusterIP).toBe('None');
    const deployments = ofKind('Deployment');
    expect(deployments.map((d) => d.spec.template.metadata.labels['app.kubernetes.io/component']).sort()).toEqual(['resolver', 'secondary']);
    const pdbs = ofKind('PodDisruptionBudget');
    for (const d of deployments) {
      expect(d.spec.replicas, d.metadata.name).toBeGreaterThanOrEqual(2);
      const pdb = pdbs.filter((p) => matches(p.spec.selector.matchLabels, d.spec.template.metadata.labels));
      expect(pdb, `${d.metadata.name} has a PodDisruptionBudget`).toHaveLength(1);
      expect(pdb[0].spec.minAvailable ?? 0, d.metadata.name).toBeLessThan(d.spec.replicas);
    }
    for (const p of pdbs)
      expect(
        deployments.some((d) => matches(p.spec.selector.matchLabels, d.spec.template.metadata.labels)),
        p.metadata.name,
      ).toBe(true);
  });

  it('selectors, Services, ports, volumes and ConfigMaps refer to things that exist', () => {
    for (const w of workloads()) {
      const spec = w.spec.template.spec;
      expect(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), w.metadata.name).toBe(true);
      const volumeNames = new Set([...(spec.volumes ?? []).map((v: Any) => v.name), ...(w.spec.volumeClaimTemplates ?? []).map((v: Any) => v.metadata.name)]);
      for (const v of spec.volumes ?? []) {
        if (v.configMap)
          expect(
            configMaps.map((c) => c.metadata.name),
            `${w.metadata.name} volume ${v.name}`,
          ).toContain(v.configMap.name);
        for (const item of v.configMap?.items ?? []) expect(configMaps.find((c) => c.metadata.name === v.configMap.name).data).toHaveProperty([item.key]);
      }
      for (const { where, c } of containersOf(w)) {
        for (const m of c.volumeMounts ?? []) expect(volumeNames, `${where} mounts ${m.name}`).toContain(m.name);
        for (const e of c.envFrom ?? [])
          expect(
            configMaps.map((x) => x.metadata.name),
            where,
          ).toContain(e.configMapRef.name);
      }
    }
    for (const s of services) {
      const selected = workloads().filter((w) => matches(s.spec.selector, w.spec.template.metadata.labels));
      expect(selected, `Service ${s.metadata.name} selects a workload`).toHaveLength(1);
      const ports = selected[0].spec.template.spec.containers.flatMap((c: Any) => c.ports ?? []);
      for (const p of s.spec.ports) {
        const target = typeof p.targetPort === 'string' ? ports.find((x: Any) => x.name === p.targetPort)?.containerPort : p.targetPort;
        expect(target, `Service ${s.metadata.name} port ${p.name}`).toBe(8053);
        expect(p.port).toBe(8053);
      }
    }
    // In-cluster URLs in ConfigMaps name a Service, in its namespace, on one of its ports.
    for (const cm of configMaps) {
      for (const value of Object.values(cm.data as Record<string, string>)) {
        for (const m of value.matchAll(/http:\/\/([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)/g)) {
          const svc = services.find((s) => s.metadata.name === m[1] && s.metadata.namespace === m[2]);
          expect(svc, m[0]).toBeDefined();
          expect(
            svc.spec.ports.map((p: Any) => p.port),
            m[0],
          ).toContain(Number(m[3]));
        }
      }
    }
  });

  it('idns containers: serve on their containerPort, --data and --config are mounted, probes /readyz and /healthz', () => {
    for (const w of workloads()) {
      for (const { where, c, init } of containersOf(w)) {
        const mounts = new Map((c.volumeMounts ?? []).map((m: Any) => [m.mountPath, m]));
        const invocations = containerInvocations(where, c);
        expect(invocations.length, where).toBeGreaterThan(0);
        for (const inv of invocations)
          for (const data of flagValues(inv.args, '--data')) expect(mounts.has(data), `${where}: --data ${data} is a volume`).toBe(true);
        if (init) continue;
        const [serve] = invocations;
        expect(serve!.args[0], where).toBe('serve');
        const port = listenPort(serve!.args);
        expect(
          c.ports.map((p: Any) => p.containerPort),
          where,
        ).toEqual([port]);
        const named = (p: string | number) => (typeof p === 'number' ? p : c.ports.find((x: Any) => x.name === p)?.containerPort);
        expect(c.readinessProbe.httpGet.path, where).toBe('/readyz');
        expect(c.livenessProbe.httpGet.path, where).toBe('/healthz');
        expect(named(c.readinessProbe.httpGet.port), where).toBe(port);
        expect(named(c.livenessProbe.httpGet.port), where).toBe(port);
        const config = flagValues(serve!.args, '--config')[0];
        expect(config, where).toBeDefined();
        const dir = config!.slice(0, config!.lastIndexOf('/'));
        const mount = mounts.get(dir) as Any;
        expect(mount, `${where}: --config ${config} is mounted`).toBeDefined();
        const volume = w.spec.template.spec.volumes.find((v: Any) => v.name === mount.name);
        const item = (volume.configMap.items as Any[]).find((i) => i.path === config!.slice(dir.length + 1));
        expect(item, `${where}: ${config} is a ConfigMap item`).toBeDefined();
      }
    }
  });

  it('pods run as non-root, without privilege escalation or capabilities, on a read-only root filesystem', () => {
    for (const w of workloads()) {
      const pod = w.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot, w.metadata.name).toBe(true);
      expect(pod.securityContext.runAsUser, w.metadata.name).toBeGreaterThan(0);
      expect(pod.securityContext.seccompProfile?.type, w.metadata.name).toBe('RuntimeDefault');
      expect(pod.automountServiceAccountToken, w.metadata.name).toBe(false);
      for (const { where, c } of containersOf(w)) {
        expect(c.securityContext.allowPrivilegeEscalation, where).toBe(false);
        expect(c.securityContext.readOnlyRootFilesystem, where).toBe(true);
        expect(c.securityContext.capabilities.drop, where).toContain('ALL');
        // With a read-only root, SQLite's temporary files need a writable /tmp.
        expect(
          (c.volumeMounts as Any[]).some((m) => m.mountPath === '/tmp'),
          `${where} has a writable /tmp`,
        ).toBe(true);
      }
    }
  });

  it('every config.json in a ConfigMap passes the server configuration loader once its placeholders are filled, and not before', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'idns-deploy-config-'));
    try {
      let checked = 0;
      let placeholders = 0;
      for (const cm of configMaps) {
        for (const [key, value] of Object.entries(cm.data as Record<string, string>)) {
          if (!key.endsWith('.json')) continue;
          const file = join(tmp, `${cm.metadata.name}-${key}`);
          const flags = { config: file, listen: '0.0.0.0:8053', data: join(tmp, 'data'), bootstrap: false };
          // As shipped, a placeholder thumbprint is refused: a resolver must not start on it and report ready.
          if (value.includes('REPLACE-ME')) {
            writeFileSync(file, value);
            expect(() => loadConfig(flags, {}), cm.metadata.name).toThrow(/thumbprint/);
            placeholders++;
          }
          // Filled in as the operator does, with a real key's thumbprint.
          writeFileSync(file, value.replace(/REPLACE-ME[A-Za-z0-9_-]*/g, `${'A'.repeat(42)}E`));
          const config = loadConfig(flags, {});
          const component = cm.metadata.labels['app.kubernetes.io/component'];
          // Only the resolvers have the resolver role; never with private addresses allowed.
          expect(config.resolver !== null, cm.metadata.name).toBe(component === 'resolver');
          expect(config.resolver?.allowPrivate ?? false, cm.metadata.name).toBe(false);
          checked++;
        }
      }
      expect(checked).toBe(3);
      expect(placeholders).toBeGreaterThan(0);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('systemd unit', () => {
  const unit = systemdUnit();
  const service = unit.get('Service')!;
  const one = (key: string) => {
    const v = service.get(key);
    expect(v, key).toBeDefined();
    return v!.at(-1)!;
  };

  it('runs `idns serve` on port 8053 with its data in the StateDirectory, as a dedicated user', () => {
    const exec = one('ExecStart');
    const [words] = shellCommands(exec);
    expect(words![0]).toMatch(/^\//); // systemd wants an absolute path
    const args = idnsArgs(words!)!;
    expect(args[0]).toBe('serve');
    expect(listenPort(args)).toBe(8053);
    expect(args).toContain('--no-bootstrap');
    expect(one('StateDirectory')).toBe('idns');
    expect(flagValues(args, '--data')).toEqual([`/var/lib/${one('StateDirectory')}`]);
    expect(service.has('User') || one('DynamicUser') === 'yes').toBe(true);
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('stops with SIGTERM, restarts on failure, and has the hardening options', () => {
    expect(one('KillSignal')).toBe('SIGTERM');
    expect(one('Restart')).toBe('on-failure');
    expect(one('ProtectSystem')).toBe('strict');
    expect(['yes', 'true', 'read-only', 'tmpfs']).toContain(one('ProtectHome'));
    expect(one('PrivateTmp')).toBe('yes');
    expect(one('NoNewPrivileges')).toBe('yes');
    expect(one('CapabilityBoundingSet')).toBe('');
    expect(one('RestrictAddressFamilies').split(/\s+/).sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_UNIX']);
    expect(service.get('SystemCallFilter')).toContain('@system-service');
    // V8 needs W+X memory for its JIT: the option must be off, and the unit says why.
    expect(['false', 'no']).toContain(one('MemoryDenyWriteExecute'));
    expect(readDeploy('systemd/idns.service')).toMatch(/#[^\n]*V8[^\n]*\n(#[^\n]*\n)*MemoryDenyWriteExecute=false/);
  });
});
