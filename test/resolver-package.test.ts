import { execFile as execFileCallback, execFileSync } from 'node:child_process';
import { createPrivateKey, sign } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { init, parse } from 'es-module-lexer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHierarchy, type Hierarchy } from './support/hierarchy.js';
import { tempDir } from './support/server.js';

// The idns-resolver package (deploy/resolver-package/): the library microblog servers embed, built from the
// same src/ as the server. Its promise is that installing it installs none of the server's dependencies,
// so its code must never import them. Checked three ways: the import graph of the compiled entry, the
// packed package's files and dependencies, and a real install that resolves a handle in a child process
// whose node_modules holds only the package and its dependencies.

const execFile = promisify(execFileCallback);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PACKAGE_DIR = join(ROOT, 'deploy', 'resolver-package');
const PACKAGE_DIST = join(PACKAGE_DIR, 'dist');
const MAIN_DIST = join(ROOT, 'dist');
const ENTRY = 'resolver-library.js';

/** Packages only the server needs (native addons, the HTTP framework, logging, metrics). */
const SERVER_PACKAGES = ['better-sqlite3', 'sodium-native', 'hono', 'pino', 'prom-client'];
const isServerPackage = (name: string) => SERVER_PACKAGES.includes(name) || name.startsWith('@hono/');
/** Modules of src/ that belong to the server, by their path below dist/. */
const SERVER_MODULES = [/^store\//, /^authority\//, /^http\//, /^cli\//, /^replication\//, /^log\.js$/, /^context\.js$/, /^records\/ed25519-sodium\.js$/];
/**
 * Builtins the library must not import: node:module's createRequire loads anything by a name this walk
 * cannot see (it is how the server loads sodium-native), and a worker thread runs a module outside the graph.
 */
const HIDDEN_LOADERS = ['node:module', 'module', 'node:worker_threads', 'worker_threads'];

/** The package name a bare specifier names: `@scope/name` or `name`. */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

interface Graph {
  /** Modules reached, as paths below the dist directory (posix). */
  modules: Set<string>;
  /** External packages imported, by package name. */
  packages: Set<string>;
  builtins: Set<string>;
  /** Dynamic imports whose specifier is not a string literal: they could load anything. */
  unanalysable: string[];
  /** Which module imports each package or builtin, for failure messages. */
  importers: Map<string, string>;
}

/** Walks the static and dynamic imports of the compiled modules from `entries`, with an ES module lexer. */
async function importGraph(dist: string, entries: string[]): Promise<Graph> {
  await init;
  const graph: Graph = { modules: new Set(), packages: new Set(), builtins: new Set(), unanalysable: [], importers: new Map() };
  const queue = [...entries];
  while (queue.length > 0) {
    const module = queue.pop()!;
    if (graph.modules.has(module)) continue;
    graph.modules.add(module);
    const [imports] = parse(readFileSync(join(dist, module), 'utf8'), module);
    for (const { n: specifier, d } of imports) {
      // import.meta (d === -2) is not an import.
      if (d === -2) continue;
      if (specifier === undefined) {
        graph.unanalysable.push(module);
      } else if (specifier.startsWith('.')) {
        const target = posix.normalize(posix.join(posix.dirname(module), specifier));
        if (!existsSync(join(dist, target))) throw new Error(`${module} imports ${specifier}, which is not in ${dist}`);
        queue.push(target);
      } else if (isBuiltin(specifier)) {
        graph.builtins.add(specifier);
        graph.importers.set(specifier, module);
      } else {
        graph.packages.add(packageOf(specifier));
        graph.importers.set(packageOf(specifier), module);
      }
    }
  }
  return graph;
}

/** Every file below `dir`, as posix paths relative to it. */
function filesBelow(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split('\\').join('/'));
}

/** What in a graph belongs to the server, one line each; empty when nothing does. */
function serverParts(graph: Graph): string[] {
  return [
    ...[...graph.packages].filter(isServerPackage).map((p) => `package ${p} (imported by ${graph.importers.get(p)})`),
    ...[...graph.modules].filter((m) => SERVER_MODULES.some((re) => re.test(m))).map((m) => `server module ${m}`),
    ...[...graph.builtins].filter((b) => HIDDEN_LOADERS.includes(b)).map((b) => `${b} (imported by ${graph.importers.get(b)})`),
    ...graph.unanalysable.map((m) => `a dynamic import of a computed specifier in ${m}`),
  ];
}

const rootPackage = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  engines: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

describe('the resolver library import graph', () => {
  it('holds no server module, server dependency or hidden loader, from the entry of the main build', async () => {
    const graph = await importGraph(MAIN_DIST, [ENTRY]);
    // The walk sees the resolver itself, or it checked nothing.
    expect(graph.modules).toContain('resolver/resolver.js');
    expect(graph.modules).toContain('records/handle-signatures.js');
    expect(serverParts(graph)).toEqual([]);
  });

  it('the same walk finds the server parts of the server entry points (so a clean result means something)', async () => {
    // The context no longer reaches hono (rate limits import only its types): the server entry point does.
    const server = await importGraph(MAIN_DIST, ['context.js', 'http/server.js']);
    const parts = serverParts(server).join('\n');
    for (const name of [
      'better-sqlite3',
      'hono',
      'pino',
      'prom-client',
      'server module store/',
      'records/ed25519-sodium.js',
      'node:module',
      'node:worker_threads',
    ]) {
      expect(parts).toContain(name);
    }
    // The full library (`idns`) is the resolver library plus the server's Ed25519 loader.
    const idns = await importGraph(MAIN_DIST, ['index.js']);
    expect(serverParts(idns)).toEqual([
      'server module records/ed25519-sodium.js',
      expect.stringMatching(/^node:module \(imported by records\/ed25519-sodium\.js\)$/),
    ]);
  });

  it('jose sits where it is used: tests import it, the compiled server and library do not', async () => {
    expect(rootPackage.dependencies).not.toHaveProperty('jose');
    expect(rootPackage.devDependencies).toHaveProperty('jose');
    // The compiled modules of today's src/ (dist/ may still hold modules of deleted sources).
    const current = filesBelow(join(ROOT, 'src'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
      .map((f) => f.replace(/\.ts$/, '.js'));
    const all = await importGraph(MAIN_DIST, current);
    expect(all.packages).not.toContain('jose');
    // Every package the compiled code imports is a runtime dependency, not a dev dependency.
    for (const p of all.packages) expect(rootPackage.dependencies, `${p} (imported by ${all.importers.get(p)})`).toHaveProperty(p);
  });
});

describe('the idns-resolver package', () => {
  let packed: { name: string; version: string; files: { path: string }[] };
  let packageJson: { name: string; version: string; engines: Record<string, string>; dependencies: Record<string, string>; [k: string]: unknown };

  beforeAll(() => {
    // The npm script the README names, exactly as a maintainer runs it.
    execFileSync('npm', ['run', '--silent', 'build:resolver-package'], { cwd: ROOT, stdio: 'pipe', timeout: 120_000 });
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: PACKAGE_DIR, encoding: 'utf8', timeout: 60_000 });
    packed = (JSON.parse(out) as (typeof packed)[])[0]!;
    packageJson = JSON.parse(readFileSync(join(PACKAGE_DIR, 'package.json'), 'utf8')) as typeof packageJson;
  });

  it('packs the compiled library, its types and README, and nothing of the server', async () => {
    expect(packed.name).toBe('idns-resolver');
    expect(packed.version).toBe(rootPackage.version);
    const files = packed.files.map((f) => f.path).sort();
    expect(files).toContain('package.json');
    expect(files).toContain('README.md');
    expect(files).toContain(`dist/${ENTRY}`);
    expect(files).toContain('dist/resolver-library.d.ts');
    for (const f of files) expect(f).toMatch(/^(package\.json|README\.md|dist\/.+\.(js|d\.ts))$/);
    const code = files.filter((f) => f.endsWith('.js')).map((f) => f.slice('dist/'.length));
    // Every module the entry reaches is shipped, and every shipped module is free of the server.
    const graph = await importGraph(PACKAGE_DIST, [ENTRY]);
    expect(code).toEqual(expect.arrayContaining([...graph.modules]));
    const shipped = await importGraph(PACKAGE_DIST, code);
    expect(serverParts(shipped)).toEqual([]);
    expect(code.filter((m) => SERVER_MODULES.some((re) => re.test(m)))).toEqual([]);
  });

  it('lists exactly the packages its code imports as dependencies, pinned as the server pins them', async () => {
    const code = packed.files
      .map((f) => f.path)
      .filter((f) => f.endsWith('.js'))
      .map((f) => f.slice('dist/'.length));
    const shipped = await importGraph(PACKAGE_DIST, code);
    expect(Object.keys(packageJson.dependencies).sort(), 'deploy/resolver-package/package.json "dependencies"').toEqual([...shipped.packages].sort());
    for (const [name, range] of Object.entries(packageJson.dependencies)) {
      expect(range, `${name}: the same range as the main package.json`).toBe(rootPackage.dependencies[name]);
    }
    expect(packageJson.engines).toEqual(rootPackage.engines);
    for (const field of ['devDependencies', 'optionalDependencies', 'peerDependencies', 'bundleDependencies']) expect(packageJson).not.toHaveProperty(field);
    // The declarations name only those packages (and node's own modules) too: a type import of a server
    // package would break a consumer's type check.
    await init;
    for (const file of packed.files.map((f) => f.path).filter((f) => f.endsWith('.d.ts'))) {
      const [imports] = parse(readFileSync(join(PACKAGE_DIR, file), 'utf8'), file);
      for (const { n } of imports) {
        if (n === undefined || n.startsWith('.') || isBuiltin(n)) continue;
        expect(Object.keys(packageJson.dependencies), `${file} imports ${n}`).toContain(packageOf(n));
      }
    }
  });

  describe('installed alone', () => {
    let h: Hierarchy;
    const cleanups: (() => unknown)[] = [];
    beforeAll(async () => {
      h = await startHierarchy();
      cleanups.push(() => h.close());
    });
    afterAll(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    /**
     * A microblog app directory whose node_modules holds the packed idns-resolver and its dependencies
     * (with theirs), and nothing else: a server dependency the library tried to load would not be found.
     * Dependencies are linked from this repository's node_modules rather than fetched from the registry.
     */
    function installApp(): { app: string; linked: string[] } {
      const tmp = tempDir('idns-resolver-app-');
      cleanups.push(tmp.remove);
      const app = join(tmp.dir, 'app');
      const target = join(app, 'node_modules', 'idns-resolver');
      mkdirSync(target, { recursive: true });
      const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp.dir], {
        cwd: PACKAGE_DIR,
        encoding: 'utf8',
        timeout: 60_000,
      });
      const tarball = join(tmp.dir, (JSON.parse(out) as { filename: string }[])[0]!.filename);
      execFileSync('tar', ['-xzf', tarball, '-C', target, '--strip-components=1'], { timeout: 60_000 });
      const linked: string[] = [];
      const link = (name: string) => {
        if (linked.includes(name)) return;
        linked.push(name);
        const source = realpathSync(join(ROOT, 'node_modules', name));
        mkdirSync(dirname(join(app, 'node_modules', name)), { recursive: true });
        symlinkSync(source, join(app, 'node_modules', name), 'dir');
        const manifest = JSON.parse(readFileSync(join(source, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
        for (const dep of Object.keys(manifest.dependencies ?? {})) link(dep);
      };
      const manifest = JSON.parse(readFileSync(join(target, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
      for (const dep of Object.keys(manifest.dependencies)) link(dep);
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'microblog', private: true, type: 'module' }));
      // Records every module the child resolves, so the test sees what was loaded, not only what was imported.
      writeFileSync(
        join(app, 'hooks.mjs'),
        `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(process.env.LOADED_LOG, resolved.url + '\\n');
  return resolved;
}
`,
      );
      writeFileSync(join(app, 'register.mjs'), `import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n`);
      return { app, linked };
    }

    it('resolves a handle, checks a signature by its key and reports a missing handle, loading no server module', async () => {
      const { app, linked } = installApp();
      for (const name of linked) expect(isServerPackage(name), name).toBe(false);
      for (const name of SERVER_PACKAGES) expect(existsSync(join(app, 'node_modules', name)), name).toBe(false);

      const message = 'POST /users/bob/inbox\ndate: Sat, 05 Dec 2026 22:00:00 GMT';
      const signature = sign(null, Buffer.from(message), createPrivateKey({ key: { ...h.owner.private }, format: 'jwk' })).toString('base64');
      const input = {
        trustAnchors: Object.fromEntries(h.anchors),
        rootServers: h.rootServers,
        reference: 'acct:Alice@social.example',
        missing: 'nobody@social.example',
        message,
        signature,
      };
      writeFileSync(
        join(app, 'main.mjs'),
        `import { createResolver, parseHandleReference, verifyHandleSignature, isIdnsError } from 'idns-resolver';
const input = JSON.parse(process.argv[2]);
const resolver = createResolver({ trustAnchors: input.trustAnchors, rootServers: input.rootServers, allowPrivate: true });
const { handle } = parseHandleReference(input.reference);
const found = await resolver.resolve(handle);
const check = await verifyHandleSignature(found, input.message, input.signature);
const forged = await verifyHandleSignature(found, input.message + '!', input.signature);
let missing = null;
try {
  await resolver.resolve(input.missing);
} catch (err) {
  missing = { typed: isIdnsError(err), code: err.code };
}
await resolver.close();
console.log(JSON.stringify({ handle: found.handle, endpoint: found.endpoint, keys: found.keys, check, forged: forged.ok, missing }));
`,
      );
      const log = join(app, 'loaded.log');
      writeFileSync(log, '');
      // Async: the hierarchy's servers run in this process and must keep answering while the child runs.
      const { stdout } = await execFile(process.execPath, ['--import', './register.mjs', 'main.mjs', JSON.stringify(input)], {
        cwd: app,
        env: { PATH: process.env.PATH, LOADED_LOG: log },
        timeout: 60_000,
      });
      const result = JSON.parse(stdout.trim()) as Record<string, unknown>;
      expect(result).toEqual({
        handle: 'alice@social.example',
        endpoint: 'https://home.example/alice@social.example',
        keys: [h.owner.public],
        check: { ok: true, kid: h.owner.kid },
        forged: false,
        missing: { typed: true, code: 'handle_not_found' },
      });

      // What the child loaded: node's own modules, the installed package and the linked dependencies only.
      const allowed = [join(app, 'node_modules', 'idns-resolver'), ...linked.map((n) => realpathSync(join(app, 'node_modules', n)))].map(
        (p) => pathToFileURL(p).href + '/',
      );
      const loaded = [...new Set(readFileSync(log, 'utf8').split('\n').filter(Boolean))];
      expect(loaded).toContain(pathToFileURL(join(app, 'node_modules', 'idns-resolver', 'dist', ENTRY)).href);
      const unexpected = loaded.filter(
        (url) => !url.startsWith('node:') && !allowed.some((a) => url.startsWith(a)) && url !== pathToFileURL(join(app, 'main.mjs')).href,
      );
      expect(unexpected).toEqual([]);
    });
  });
});
