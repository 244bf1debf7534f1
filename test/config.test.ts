import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, loadConfig, parseListen, type ConfigFlags } from '../src/config.js';
import { IdnsError } from '../src/errors.js';
import { runIdns } from './support/process.js';
import { tempDir } from './support/server.js';

// Configuration is read once at start-up from a file, the environment and flags (in that order of
// precedence, later wins), and every bad value is refused with a message naming the key and its source.

const removers: (() => void)[] = [];
afterEach(() => {
  for (const remove of removers.splice(0)) remove();
});

function dir(): string {
  const tmp = tempDir('idns-config-');
  removers.push(tmp.remove);
  return tmp.dir;
}

/** Writes a config file (an object is written as JSON, a string as is) and returns its path. */
function configFile(content: unknown, name = 'idns.json'): string {
  const path = join(dir(), name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

/** The invalid_config error loadConfig throws, for assertions on its message. */
function configError(flags: ConfigFlags, env: NodeJS.ProcessEnv = {}): IdnsError {
  try {
    loadConfig(flags, env);
  } catch (err) {
    expect(err).toBeInstanceOf(IdnsError);
    expect((err as IdnsError).code).toBe('invalid_config');
    // A reason fits on one line: the CLI prints it as is.
    expect((err as IdnsError).message).not.toContain('\n');
    return err as IdnsError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify({ flags, env })}`);
}

describe('loadConfig defaults', () => {
  it('serves on 127.0.0.1:8053 from ./data with the localhost bootstrap, given nothing', () => {
    const config = loadConfig({}, {});
    expect(config).toEqual({ ...DEFAULT_CONFIG, dataDir: resolve('data') });
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 8053 });
    expect(config.bootstrap).toBe(true);
    expect(config.logLevel).toBe('info');
    expect(config.publicUrl).toBeNull();
    expect(config.limits.bodyBytes).toBe(64 * 1024);
  });

  it('does not share state between calls (DEFAULT_CONFIG stays untouched)', () => {
    const before = structuredClone(DEFAULT_CONFIG);
    const a = loadConfig({ config: configFile({ limits: { bodyBytes: 2048 } }) }, {});
    a.listen.port = 1;
    expect(DEFAULT_CONFIG).toEqual(before);
    expect(loadConfig({}, {}).limits.bodyBytes).toBe(64 * 1024);
  });

  it('ignores empty environment variables', () => {
    expect(loadConfig({}, { IDNS_LISTEN: '', IDNS_DATA: '', IDNS_LOG_LEVEL: '', IDNS_PUBLIC_URL: '' })).toEqual(loadConfig({}, {}));
  });

  it('makes the data directory absolute, relative to the working directory', () => {
    expect(loadConfig({ data: 'some/dir' }, {}).dataDir).toBe(resolve('some/dir'));
    expect(loadConfig({ data: '/srv/idns' }, {}).dataDir).toBe('/srv/idns');
  });
});

describe('loadConfig precedence: file < environment < flags', () => {
  const fileValues = { data: '/from/file', listen: '127.0.0.1:1111', logLevel: 'debug', publicUrl: 'http://file.example/' };
  const envValues = { IDNS_DATA: '/from/env', IDNS_LISTEN: '127.0.0.1:2222', IDNS_LOG_LEVEL: 'warn', IDNS_PUBLIC_URL: 'https://env.example' };
  const flagValues = { data: '/from/flag', listen: '127.0.0.1:3333', logLevel: 'error', publicUrl: 'https://flag.example' };

  it('takes every setting from the file alone', () => {
    const config = loadConfig({ config: configFile({ ...fileValues, bootstrap: false, limits: { bodyBytes: 4096 }, resign: { batchSize: 7 } }) }, {});
    expect(config.dataDir).toBe('/from/file');
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 1111 });
    expect(config.logLevel).toBe('debug');
    expect(config.publicUrl).toBe('http://file.example');
    expect(config.bootstrap).toBe(false);
    expect(config.limits).toEqual({ ...DEFAULT_CONFIG.limits, bodyBytes: 4096 });
    expect(config.resign).toEqual({ ...DEFAULT_CONFIG.resign, batchSize: 7 });
  });

  it('lets the environment override the file', () => {
    const config = loadConfig({ config: configFile(fileValues) }, envValues);
    expect(config.dataDir).toBe('/from/env');
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 2222 });
    expect(config.logLevel).toBe('warn');
    expect(config.publicUrl).toBe('https://env.example');
  });

  it('lets flags override the environment and the file', () => {
    const config = loadConfig({ config: configFile(fileValues), ...flagValues, bootstrap: false }, envValues);
    expect(config.dataDir).toBe('/from/flag');
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 3333 });
    expect(config.logLevel).toBe('error');
    expect(config.publicUrl).toBe('https://flag.example');
    expect(config.bootstrap).toBe(false);
  });

  it('mixes sources key by key', () => {
    const config = loadConfig({ config: configFile({ listen: '127.0.0.1:1111', logLevel: 'debug' }), data: '/from/flag' }, { IDNS_LOG_LEVEL: 'warn' });
    expect(config.listen.port).toBe(1111);
    expect(config.logLevel).toBe('warn');
    expect(config.dataDir).toBe('/from/flag');
  });

  it('finds the file through IDNS_CONFIG, and --config wins over IDNS_CONFIG', () => {
    const viaEnv = configFile({ listen: '127.0.0.1:4444' }, 'env.json');
    const viaFlag = configFile({ listen: '127.0.0.1:5555' }, 'flag.json');
    expect(loadConfig({}, { IDNS_CONFIG: viaEnv }).listen.port).toBe(4444);
    expect(loadConfig({ config: viaFlag }, { IDNS_CONFIG: viaEnv }).listen.port).toBe(5555);
  });
});

describe('loadConfig refuses bad values, naming the key and where it came from', () => {
  it('a bad --listen', () => {
    for (const bad of ['127.0.0.1', '127.0.0.1:', ':8053', '127.0.0.1:65536', '127.0.0.1:80a', 'http://127.0.0.1:8053', '::1:8053']) {
      const err = configError({ listen: bad });
      expect(err.message).toContain('--listen');
      expect(err.message).toContain(bad);
    }
  });

  it('a bad IDNS_LISTEN', () => {
    const err = configError({}, { IDNS_LISTEN: 'localhost' });
    expect(err.message).toContain('IDNS_LISTEN');
    expect(err.message).toContain('"localhost"');
  });

  it('a bad listen in the file names the file and the key', () => {
    const path = configFile({ listen: '127.0.0.1:99999' });
    const err = configError({ config: path });
    expect(err.message).toContain(path);
    expect(err.message).toContain('listen');
    const typed = configError({ config: configFile({ listen: 8053 }) });
    expect(typed.message).toContain('listen');
  });

  it('a host that is not a host name or an address', () => {
    // Caught when the configuration is read, not later as a DNS failure of "exa mple" at listen time.
    const err = configError({ listen: 'exa mple:8053' });
    expect(err.message).toContain('--listen');
  });

  it('a bad log level, from a flag, the environment or the file', () => {
    expect(configError({ logLevel: 'verbose' }).message).toMatch(/--log-level.*verbose/);
    expect(configError({}, { IDNS_LOG_LEVEL: 'loud' }).message).toMatch(/IDNS_LOG_LEVEL.*loud/);
    const path = configFile({ logLevel: 'chatty' });
    const err = configError({ config: path });
    expect(err.message).toContain(path);
    expect(err.message).toContain('logLevel');
  });

  it('a public URL that is not http(s)', () => {
    expect(configError({ publicUrl: 'ftp://example.com' }).message).toContain('--public-url');
    expect(configError({}, { IDNS_PUBLIC_URL: 'not a url' }).message).toContain('IDNS_PUBLIC_URL');
    expect(configError({ config: configFile({ publicUrl: 'ftp://example.com' }) }).message).toContain('publicUrl');
  });

  it('an unknown key in the file, at the top or nested', () => {
    const path = configFile({ lisen: '127.0.0.1:8053' });
    const err = configError({ config: path });
    expect(err.message).toContain(path);
    expect(err.message).toContain('lisen');
    const nested = configError({ config: configFile({ limits: { bodyBytez: 4096 } }) });
    expect(nested.message).toContain('limits');
    expect(nested.message).toContain('bodyBytez');
  });

  it('a file that is not JSON, or not a JSON object', () => {
    const path = configFile('{ "listen": "127.0.0.1:8053", }');
    const err = configError({ config: path });
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/JSON/);
    for (const text of ['[]', 'null', '"127.0.0.1:8053"']) configError({ config: configFile(text) });
  });

  it('a missing file, from --config or IDNS_CONFIG', () => {
    const path = join(dir(), 'missing.json');
    expect(configError({ config: path }).message).toContain(path);
    expect(configError({}, { IDNS_CONFIG: path }).message).toContain(path);
  });

  it('limits and re-signing settings out of range or of the wrong type', () => {
    const cases: [unknown, string][] = [
      [{ limits: { bodyBytes: 10 } }, 'limits.bodyBytes'],
      [{ limits: { bodyBytes: 1e9 } }, 'limits.bodyBytes'],
      [{ limits: { bodyBytes: 65536.5 } }, 'limits.bodyBytes'],
      [{ limits: { requestTimeoutMs: 0 } }, 'limits.requestTimeoutMs'],
      [{ limits: { headersTimeoutMs: '5000' } }, 'limits.headersTimeoutMs'],
      // Node closes keep-alive connections 1 s after the announced timeout: below 2 s there is none to announce.
      [{ limits: { keepAliveTimeoutMs: 1000 } }, 'limits.keepAliveTimeoutMs'],
      [{ limits: { connectionsPerAddress: 0 } }, 'limits.connectionsPerAddress'],
      [{ limits: { maxConnections: 1.5 } }, 'limits.maxConnections'],
      [{ resign: { intervalMs: -1 } }, 'resign.intervalMs'],
      [{ resign: { batchSize: 0 } }, 'resign.batchSize'],
      [{ bootstrap: 'yes' }, 'bootstrap'],
      [{ data: '' }, 'data'],
    ];
    for (const [content, key] of cases) {
      const path = configFile(content);
      const err = configError({ config: path });
      expect(err.message, JSON.stringify(content)).toContain(path);
      expect(err.message, JSON.stringify(content)).toContain(key);
    }
  });

  it('resolver.cache.compactHeap: on unless the file turns it off, and kept out of the cache options', () => {
    const role = { root: ['http://127.0.0.1:9'], anchor: [`.=${'A'.repeat(43)}`] };
    expect(loadConfig(role, {}).resolver?.compactHeap).toBe(true);
    const off = loadConfig({ ...role, config: configFile({ resolver: { cache: { compactHeap: false, maxEntries: 5 } } }) }, {}).resolver!;
    expect(off.compactHeap).toBe(false);
    expect(off.cache).toEqual({ maxEntries: 5 });
    expect(loadConfig({}, {}).resolver).toBeNull();
    const path = configFile({ resolver: { cache: { compactHeap: 'no' } } });
    expect(configError({ ...role, config: path }).message).toContain('resolver.cache.compactHeap');
  });

  it('resolver.cache.maxBytes / maxEntryBytes: passed on to the resolver, bounded, the cap not above the bound', () => {
    const role = { root: ['http://127.0.0.1:9'], anchor: [`.=${'A'.repeat(43)}`] };
    const ok = loadConfig({ ...role, config: configFile({ resolver: { cache: { maxBytes: 64 * 1024 * 1024, maxEntryBytes: 65_536 } } }) }, {}).resolver!;
    expect(ok.cache).toEqual({ maxBytes: 64 * 1024 * 1024, maxEntryBytes: 65_536 });
    for (const [cache, key] of [
      [{ maxBytes: 1000 }, 'resolver.cache.maxBytes'],
      [{ maxEntryBytes: 10 }, 'resolver.cache.maxEntryBytes'],
      [{ maxBytes: 2 * 1024 * 1024, maxEntryBytes: 4 * 1024 * 1024 }, 'maxEntryBytes must not exceed'],
    ] as const) {
      expect(configError({ ...role, config: configFile({ resolver: { cache } }) }).message, JSON.stringify(cache)).toContain(key);
    }
  });

  it('answerFiles: on by default, each setting taken from the file, bad values refused by name', () => {
    expect(loadConfig({}, {}).answerFiles).toEqual({ enabled: true, minHandles: 10_000, rebuildAfter: 10_000 });
    expect(loadConfig({ config: configFile({ answerFiles: { minHandles: 5 } }) }, {}).answerFiles).toEqual({
      enabled: true,
      minHandles: 5,
      rebuildAfter: 10_000,
    });
    expect(loadConfig({ config: configFile({ answerFiles: { enabled: false } }) }, {}).answerFiles.enabled).toBe(false);
    for (const bad of [{ minHandles: -1 }, { rebuildAfter: 0 }, { enabled: 'yes' }, { other: 1 }]) {
      expect(configError({ config: configFile({ answerFiles: bad }) }).message, JSON.stringify(bad)).toContain('answerFiles');
    }
  });
});

describe('parseListen', () => {
  it('takes host names, IPv4 and bracketed IPv6, and port 0 for any free port', () => {
    expect(parseListen('127.0.0.1:8053')).toEqual({ host: '127.0.0.1', port: 8053 });
    expect(parseListen('localhost:0')).toEqual({ host: 'localhost', port: 0 });
    expect(parseListen('0.0.0.0:65535')).toEqual({ host: '0.0.0.0', port: 65535 });
    expect(parseListen('[::1]:8053')).toEqual({ host: '::1', port: 8053 });
    expect(parseListen('[::]:80')).toEqual({ host: '::', port: 80 });
  });
});

describe('idns serve with a bad configuration', () => {
  it('exits non-zero with a one-line reason naming the bad key', async () => {
    const path = configFile({ listen: '127.0.0.1:8053', limits: { bodyBytes: 1 } }, 'bad.json');
    const res = await runIdns(['serve', '--config', path, '--data', join(dir(), 'data')]);
    expect(res.code).not.toBe(0);
    expect(res.code).not.toBeNull();
    const lines = res.stderr.trim().split('\n');
    expect(lines, res.stderr).toHaveLength(1);
    expect(lines[0]).toContain('limits.bodyBytes');
    expect(lines[0]).toContain(path);
    expect(lines[0]).toContain('invalid_config');
    expect(res.stdout).not.toContain('idns serving on');
  });

  it('names a bad --listen and an unknown key of the file on one line', async () => {
    const data = join(dir(), 'data');
    const listen = await runIdns(['serve', '--listen', 'nowhere', '--data', data]);
    expect(listen.code).not.toBe(0);
    expect(listen.stderr.trim().split('\n')).toHaveLength(1);
    expect(listen.stderr).toContain('--listen');

    const unknownKey = await runIdns(['serve', '--config', configFile({ lissten: '127.0.0.1:0' }, 'typo.json'), '--data', data]);
    expect(unknownKey.code).not.toBe(0);
    expect(unknownKey.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknownKey.stderr).toContain('lissten');
  });
});

describe('the resolver role without a root (--dns)', () => {
  it('turns the role on with discovery and the WebFinger bridge, from flags or the file', () => {
    const flags = loadConfig({ dns: true, dnsServer: ['127.0.0.1:5353', '[::1]:53'] }, {}).resolver;
    expect(flags).toMatchObject({
      rootServers: [],
      anchors: {},
      discovery: { dnsServers: ['127.0.0.1:5353', '[::1]:53'], requireDnssec: false },
      webfinger: true,
    });
    const file = loadConfig(
      { config: configFile({ resolver: { dns: { enabled: true, requireDnssec: true, timeoutMs: 500 }, webfingerFallback: false } }) },
      {},
    ).resolver;
    expect(file).toMatchObject({ discovery: { requireDnssec: true, dnsTimeoutMs: 500 }, webfinger: false });
    expect(loadConfig({ dns: true, webfingerFallback: false }, {}).resolver?.webfinger).toBe(false);
    // With a root and anchors, discovery is added beside them.
    const both = loadConfig({ dns: true, root: ['https://root.example'], anchor: [`.=${'A'.repeat(43)}`] }, {}).resolver;
    expect(both).toMatchObject({ rootServers: ['https://root.example'], discovery: { requireDnssec: false } });
    expect(loadConfig({}, {}).resolver).toBeNull();
  });

  it('refuses a DNS server that is not an address, and the discovery flags without --dns', () => {
    expect(() => loadConfig({ dns: true, dnsServer: ['dns.example'] }, {})).toThrow(expect.objectContaining({ code: 'invalid_config' }));
    expect(() => loadConfig({ dns: true, dnsServer: ['127.0.0.1:99999'] }, {})).toThrow(expect.objectContaining({ code: 'invalid_config' }));
    expect(() => loadConfig({ dnsServer: ['127.0.0.1'] }, {})).toThrow(expect.objectContaining({ code: 'invalid_config' }));
    expect(() => loadConfig({ requireDnssec: true }, {})).toThrow(expect.objectContaining({ code: 'invalid_config' }));
  });
});

describe('key thumbprints in the configuration', () => {
  it("refuses the deploy files' placeholder anchor, which has a thumbprint's length but is no SHA-256 in base64url", () => {
    const placeholder = 'REPLACE-ME-with-the-root-key-thumbprint____';
    expect(placeholder).toHaveLength(43);
    expect(() => loadConfig({ root: ['https://root.example'], anchor: [`.=${placeholder}`] }, {})).toThrow(IdnsError);
    expect(() => loadConfig({ config: configFile({ resolver: { root: ['https://root.example'], anchors: { '.': [placeholder] } } }) }, {})).toThrow(
      /resolver\.anchors/,
    );
    // A real thumbprint still passes.
    expect(loadConfig({ root: ['https://root.example'], anchor: [`.=${'A'.repeat(42)}E`] }, {}).resolver?.anchors).toEqual({ '.': [`${'A'.repeat(42)}E`] });
  });
});

describe('witnesses required by the resolver', () => {
  const kid = `${'A'.repeat(42)}E`;
  const w1 = `${'B'.repeat(42)}E`;
  const w2 = `${'C'.repeat(42)}E`;
  it('takes --witness and --witness-quorum (the flags replace the file), and resolver.witnesses from the file', () => {
    const base = { root: ['https://root.example'], anchor: [`.=${kid}`] };
    expect(loadConfig({ ...base, witness: [w1, w2], witnessQuorum: 1 }, {}).resolver?.witnesses).toEqual({ thumbprints: [w1, w2], quorum: 1 });
    const file = configFile({ resolver: { root: ['https://root.example'], anchors: { '.': [kid] }, witnesses: { thumbprints: [w1], freshnessSeconds: 600 } } });
    expect(loadConfig({ config: file }, {}).resolver?.witnesses).toEqual({ thumbprints: [w1], freshnessSeconds: 600 });
    expect(loadConfig({ config: file, witness: [w2] }, {}).resolver?.witnesses).toEqual({ thumbprints: [w2] });
  });

  it('refuses a quorum without witnesses or above their number, and a bad thumbprint; takes witnesses with forwarding', () => {
    const base = { root: ['https://root.example'], anchor: [`.=${kid}`] };
    expect(() => loadConfig({ ...base, witnessQuorum: 1 }, {})).toThrow(/--witness-quorum goes with --witness/);
    expect(() => loadConfig({ ...base, witness: [w1], witnessQuorum: 2 }, {})).toThrow(/quorum is 1 to 1/);
    expect(() => loadConfig({ ...base, witness: ['not-a-thumbprint'] }, {})).toThrow(/not a key thumbprint/);
    // A forwarding resolver checks the bindings its upstream's proofs carry (docs/protocol.md §7).
    expect(loadConfig({ forward: ['https://up.example'], anchor: [`.=${kid}`], witness: [w1] }, {}).resolver?.witnesses).toEqual({ thumbprints: [w1] });
    expect(() =>
      loadConfig(
        {
          config: configFile({ resolver: { root: ['https://root.example'], anchors: { '.': [kid] }, witnesses: { thumbprints: [w1], freshnessSeconds: 5 } } }),
        },
        {},
      ),
    ).toThrow(/resolver\.witnesses/);
  });
});
