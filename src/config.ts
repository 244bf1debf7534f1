import { processEnvironment } from './environment.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { parseBlock } from './resolver/address-bytes.js';
import { parseDnsServer } from './discovery/dns-server.js';
import { IdnsError } from './errors.js';
import type { LogLevel } from './log.js';
import { parseZoneName } from './names/zone.js';
import { SHA256_B64U } from './records/types.js';
import type { ResolverOptions } from './resolver/options.js';

/** The server's configuration, read once at start-up from a file, the environment and flags. */
export interface ServerConfig {
  /** Database and key directory. */
  dataDir: string;
  listen: { host: string; port: number };
  logLevel: LogLevel;
  /** On an empty data directory, create the development zone `localhost` (open registration). */
  bootstrap: boolean;
  /** Public URL of this server, written into zones it bootstraps. Default: http://LISTEN. */
  publicUrl: string | null;
  /** HTTPS: the server's certificate and key (PEM files), and extra CA certificates to trust when connecting out. */
  tls: { cert: string | null; key: string | null; ca: string[] };
  limits: {
    /** Largest request body accepted, bytes. */
    bodyBytes: number;
    /** Time allowed to receive a whole request, ms. */
    requestTimeoutMs: number;
    /** Time allowed to receive the request headers, ms (over TLS, counted from the connection, handshake included). */
    headersTimeoutMs: number;
    /** Longest a keep-alive connection stays open with no request, ms. */
    keepAliveTimeoutMs: number;
    /** Most connections open at once, from everyone. */
    maxConnections: number;
    /** Most connections open at once from one client address (IPv6: one /64); applied when rate limits are on. */
    connectionsPerAddress: number;
    /** Largest size of the database file, bytes (null: as large as the disk allows). */
    maxDatabaseBytes: number | null;
  };
  resign: {
    intervalMs: number;
    batchSize: number;
  };
  /** Key management: how often key rollovers take their next step and parents check their `--auto-ds` children, ms. */
  rollover: { intervalMs: number };
  /** Witnessing: how often a primary offers each zone's unchanged checkpoint to its witnesses again (fresh cosignatures), ms. */
  witnessing: { recosignMs: number };
  /** The resolver role, when configured (root servers and anchors, or forwarders). */
  resolver: ResolverConfig | null;
  /** How long each zone's change journal is kept (incremental transfers reach back this far). */
  journal: { maxEntries: number; maxAgeSeconds: number };
  /** Background upkeep (journal trimming, dropping replaced copies), interval ms. */
  housekeepingIntervalMs: number;
  /** Bounds on a zone transfer this server takes as a secondary (docs/security.md, "What a secondary checks"). */
  transfers: {
    /** Most bytes one transfer may bring, whatever its zone record says. */
    maxBytes: number;
    /** Most time one transfer may take, seconds. */
    maxSeconds: number;
    /** Signatures verified per full transfer (at random; all of a zone this small). */
    signatureChecks: number;
  };
  /** Request rate limits (on by default unless the server listens on loopback only). */
  rateLimits: RateLimitConfig;
  /** Answer files: large zones' handle records in flat indexed files beside the database, for the read path. */
  answerFiles: {
    enabled: boolean;
    /** Zones with fewer handles get no file (their records fit SQLite's cache). */
    minHandles: number;
    /** A zone's file is rebuilt once this many handles (and a quarter of its entries) changed since it was built. */
    rebuildAfter: number;
  };
}

/** The resolver role's settings (ResolverOptions of the library, as configuration). */
export interface ResolverConfig {
  rootServers: string[];
  anchors: Record<string, string[]>;
  forwarders: string[];
  /** Finding zones without a root (DNS and HTTPS publications); null when off. */
  discovery: { dnsServers?: string[]; requireDnssec: boolean; dnsTimeoutMs?: number } | null;
  /** The WebFinger bridge for hosts that publish no zone (on with discovery unless turned off). */
  webfinger: boolean;
  allowPrivate: boolean;
  /** Witnesses required of every zone walked (docs/protocol.md §13.5), or absent. */
  witnesses?: { thumbprints: string[]; quorum?: number; freshnessSeconds?: number };
  /** The resolver's cache options, as the library takes them (resolver/options.ts). */
  cache: NonNullable<ResolverOptions['cache']>;
  /**
   * `idns serve` runs V8's full collections in their memory-reducing mode, so that the process's memory
   * follows what the cache holds (loadConfig: true unless the file says false).
   */
  compactHeap?: boolean;
  limits: { requestTimeoutMs?: number; lookupBudgetMs?: number; maxReferrals?: number; maxQueries?: number; maxResponseBytes?: number };
}

/** Rate limits, each a token bucket: `rate` tokens per `per` seconds, up to `burst` at once. */
export interface RateLimitConfig {
  enabled: boolean;
  /** Lookups (`/v1/lookup`, `/v1/resolve`, WebFinger) per client address; a batch counts each handle. */
  lookups: Bucket;
  /** Writes (`/v1/handles`) per client address. */
  writes: Bucket;
  /** Accepted changes per handle (the PLC directory allows 10 an hour). */
  changesPerHandle: Bucket;
  /** Failed invite codes per zone (guessing). */
  inviteFailuresPerZone: Bucket;
  /** Most keys each table tracks; the least recently used are forgotten, so memory stays bounded. */
  maxKeys: number;
  /**
   * Addresses or CIDR blocks of reverse proxies in front of this server: for a request from one of them,
   * the client is the address its `X-Forwarded-For` names (rate-limits.ts keyOf). Empty by default: the
   * header is then ignored, since any client can send it.
   */
  trustedProxies: string[];
}

export interface Bucket {
  rate: number;
  per: number;
  burst: number;
}

export const DEFAULT_RATE_LIMITS: RateLimitConfig = {
  enabled: true,
  lookups: { rate: 200, per: 1, burst: 1000 },
  writes: { rate: 30, per: 60, burst: 60 },
  changesPerHandle: { rate: 10, per: 3600, burst: 10 },
  inviteFailuresPerZone: { rate: 20, per: 3600, burst: 20 },
  maxKeys: 100_000,
  trustedProxies: [],
};

export const DEFAULT_LISTEN = '127.0.0.1:8053';

export const DEFAULT_CONFIG: ServerConfig = {
  dataDir: './data',
  listen: { host: '127.0.0.1', port: 8053 },
  logLevel: 'info',
  bootstrap: true,
  publicUrl: null,
  tls: { cert: null, key: null, ca: [] },
  limits: {
    bodyBytes: 64 * 1024,
    requestTimeoutMs: 10_000,
    headersTimeoutMs: 5_000,
    keepAliveTimeoutMs: 5_000,
    maxConnections: 10_000,
    connectionsPerAddress: 64,
    maxDatabaseBytes: null,
  },
  resign: { intervalMs: 60_000, batchSize: 1000 },
  rollover: { intervalMs: 60_000 },
  witnessing: { recosignMs: 600_000 },
  resolver: null,
  journal: { maxEntries: 1_000_000, maxAgeSeconds: 14 * 24 * 3600 },
  housekeepingIntervalMs: 10_000,
  transfers: { maxBytes: 4 * 2 ** 30, maxSeconds: 600, signatureChecks: 2_000 },
  // The default listen address is loopback, where limits are off (see loadConfig).
  rateLimits: { ...DEFAULT_RATE_LIMITS, enabled: false },
  answerFiles: { enabled: true, minHandles: 10_000, rebuildAfter: 10_000 },
};

/** Parses `HOST:PORT` (IPv6 as `[::1]:8053`); port 0 asks the system for a free port. */
export function parseListen(value: string, key = 'listen'): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new IdnsError('invalid_config', `${key}: expected HOST:PORT (for example ${DEFAULT_LISTEN}), got "${value}"`);
  return { host: (m[1] ?? m[2])!, port };
}

const bucketSchema = z
  .object({
    rate: z.number().positive().max(1e9),
    per: z
      .number()
      .positive()
      .max(86_400 * 30),
    burst: z.number().positive().max(1e9),
  })
  .strict();

const fileSchema = z
  .object({
    data: z.string().min(1).optional(),
    listen: z.string().optional(),
    logLevel: z.enum(['debug', 'info', 'warn', 'error', 'silent']).optional(),
    bootstrap: z.boolean().optional(),
    publicUrl: z.string().url().optional(),
    tls: z
      .object({ cert: z.string().min(1).optional(), key: z.string().min(1).optional(), ca: z.array(z.string().min(1)).max(16).optional() })
      .strict()
      .optional(),
    limits: z
      .object({
        bodyBytes: z
          .number()
          .int()
          .min(1024)
          .max(16 * 1024 * 1024)
          .optional(),
        requestTimeoutMs: z.number().int().min(100).max(600_000).optional(),
        headersTimeoutMs: z.number().int().min(100).max(600_000).optional(),
        // Node closes an idle keep-alive connection 1 s after the timeout it announces (server.ts).
        keepAliveTimeoutMs: z.number().int().min(2000).max(600_000).optional(),
        maxConnections: z.number().int().min(1).max(1_000_000).optional(),
        connectionsPerAddress: z.number().int().min(1).max(1_000_000).optional(),
        maxDatabaseBytes: z
          .number()
          .int()
          .min(64 * 1024)
          .nullable()
          .optional(),
      })
      .strict()
      .optional(),
    resign: z
      .object({
        intervalMs: z.number().int().min(100).max(86_400_000).optional(),
        batchSize: z.number().int().min(1).max(1_000_000).optional(),
      })
      .strict()
      .optional(),
    rollover: z
      .object({ intervalMs: z.number().int().min(100).max(86_400_000).optional() })
      .strict()
      .optional(),
    witnessing: z
      .object({ recosignMs: z.number().int().min(100).max(86_400_000).optional() })
      .strict()
      .optional(),
    journal: z
      .object({
        maxEntries: z.number().int().min(1).max(1_000_000_000).optional(),
        maxAgeSeconds: z
          .number()
          .int()
          .min(1)
          .max(365 * 86_400)
          .optional(),
      })
      .strict()
      .optional(),
    housekeepingIntervalMs: z.number().int().min(10).max(3_600_000).optional(),
    transfers: z
      .object({
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .max(2 ** 48)
          .optional(),
        maxSeconds: z
          .number()
          .min(0.1)
          .max(7 * 86_400)
          .optional(),
        signatureChecks: z.number().int().min(0).max(1_000_000_000).optional(),
      })
      .strict()
      .optional(),
    answerFiles: z
      .object({
        enabled: z.boolean().optional(),
        minHandles: z.number().int().min(0).max(1_000_000_000).optional(),
        rebuildAfter: z.number().int().min(1).max(1_000_000_000).optional(),
      })
      .strict()
      .optional(),
    rateLimits: z
      .object({
        enabled: z.boolean().optional(),
        lookups: bucketSchema.optional(),
        writes: bucketSchema.optional(),
        changesPerHandle: bucketSchema.optional(),
        inviteFailuresPerZone: bucketSchema.optional(),
        maxKeys: z.number().int().min(100).max(10_000_000).optional(),
        trustedProxies: z
          .array(
            z
              .string()
              .max(64)
              .refine((s) => parseBlock(s) !== null, 'an IP address or CIDR block'),
          )
          .max(64)
          .optional(),
      })
      .strict()
      .optional(),
    resolver: z
      .object({
        root: z.array(z.string().url()).max(32).optional(),
        anchors: z
          .record(z.string(), z.array(z.string().regex(SHA256_B64U, 'a key thumbprint (43 characters of canonical base64url)')).min(1).max(8))
          .optional(),
        forward: z.array(z.string().url()).max(32).optional(),
        dns: z
          .object({
            enabled: z.boolean().optional(),
            servers: z.array(z.string().min(1).max(300)).min(1).max(16).optional(),
            requireDnssec: z.boolean().optional(),
            timeoutMs: z.number().int().min(10).max(60_000).optional(),
          })
          .strict()
          .optional(),
        webfingerFallback: z.boolean().optional(),
        allowPrivate: z.boolean().optional(),
        witnesses: z
          .object({
            thumbprints: z.array(z.string().regex(SHA256_B64U, 'a key thumbprint (43 characters of canonical base64url)')).min(1).max(100),
            quorum: z.number().int().min(1).max(100).optional(),
            freshnessSeconds: z.number().int().min(60).max(604_800).optional(),
          })
          .strict()
          .optional(),
        cache: z
          .object({
            maxEntries: z.number().int().min(1).max(100_000_000).optional(),
            maxBytes: z
              .number()
              .int()
              .min(1024 * 1024)
              .max(2 ** 40)
              .optional(),
            maxEntryBytes: z
              .number()
              .int()
              .min(4096)
              .max(64 * 1024 * 1024)
              .optional(),
            serveStaleSeconds: z
              .number()
              .int()
              .min(0)
              .max(30 * 86_400)
              .optional(),
            staleWhileRevalidateSeconds: z.number().int().min(0).max(86_400).optional(),
            prefetch: z.boolean().optional(),
            compactHeap: z.boolean().optional(),
          })
          .strict()
          .optional(),
        limits: z
          .object({
            requestTimeoutMs: z.number().int().min(10).max(120_000).optional(),
            lookupBudgetMs: z.number().int().min(10).max(600_000).optional(),
            maxReferrals: z.number().int().min(1).max(64).optional(),
            maxQueries: z.number().int().min(1).max(1000).optional(),
            maxResponseBytes: z
              .number()
              .int()
              .min(1024)
              .max(64 * 1024 * 1024)
              .optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type ConfigFile = z.infer<typeof fileSchema>;

/** Settings given on the command line (already parsed by the CLI). */
export interface ConfigFlags {
  config?: string;
  data?: string;
  listen?: string;
  logLevel?: string;
  bootstrap?: boolean;
  publicUrl?: string;
  tlsCert?: string;
  tlsKey?: string;
  ca?: string[];
  /** Resolver role: root servers, `ZONE=THUMBPRINT` anchors, forwarders, private addresses. */
  root?: string[];
  anchor?: string[];
  forward?: string[];
  /** `--dns`, `--dns-server`, `--require-dnssec`, `--no-webfinger-fallback`. */
  dns?: boolean;
  dnsServer?: string[];
  requireDnssec?: boolean;
  webfingerFallback?: boolean;
  allowPrivate?: boolean;
  /** `--witness THUMBPRINT…` and `--witness-quorum N`: witnesses the resolver requires. */
  witness?: string[];
  witnessQuorum?: number;
}

/**
 * Builds the configuration: defaults, then the config file (`--config` or IDNS_CONFIG), then the
 * environment (IDNS_DATA, IDNS_LISTEN, IDNS_LOG_LEVEL, IDNS_PUBLIC_URL), then flags. Every value is
 * validated here, and an error names the key and where it came from.
 */
export function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv = processEnvironment()): ServerConfig {
  const configPath = flags.config ?? env.IDNS_CONFIG;
  const file = configPath ? readConfigFile(configPath) : {};
  // Later sources win: file < environment < flag. `source` names where the value came from, for errors.
  const pick = (key: keyof typeof SOURCES, flag: string | undefined): { value: string | undefined; source: string } => {
    const { flagName, envName } = SOURCES[key];
    if (flag !== undefined) return { value: flag, source: flagName };
    const fromEnv = env[envName];
    if (fromEnv !== undefined && fromEnv !== '') return { value: fromEnv, source: envName };
    return { value: file[key], source: configPath ? `${configPath}: ${key}` : key };
  };

  const config: ServerConfig = structuredClone(DEFAULT_CONFIG);
  const data = pick('data', flags.data);
  if (data.value !== undefined) config.dataDir = data.value;
  config.dataDir = resolve(config.dataDir);
  const listen = pick('listen', flags.listen);
  if (listen.value !== undefined) config.listen = parseListen(listen.value, listen.source);
  const level = pick('logLevel', flags.logLevel);
  if (level.value !== undefined) {
    if (!['debug', 'info', 'warn', 'error', 'silent'].includes(level.value)) {
      throw new IdnsError('invalid_config', `${level.source}: expected one of debug, info, warn, error, silent, got "${level.value}"`);
    }
    config.logLevel = level.value as LogLevel;
  }
  const publicUrl = pick('publicUrl', flags.publicUrl);
  if (publicUrl.value !== undefined) {
    if (!URL.canParse(publicUrl.value) || !/^https?:$/.test(new URL(publicUrl.value).protocol)) {
      throw new IdnsError('invalid_config', `${publicUrl.source}: expected an http(s) URL, got "${publicUrl.value}"`);
    }
    config.publicUrl = publicUrl.value.replace(/\/+$/, '');
  }
  config.bootstrap = flags.bootstrap ?? file.bootstrap ?? config.bootstrap;
  config.tls = {
    cert: flags.tlsCert ?? file.tls?.cert ?? null,
    key: flags.tlsKey ?? file.tls?.key ?? null,
    ca: flags.ca ?? file.tls?.ca ?? [],
  };
  if ((config.tls.cert === null) !== (config.tls.key === null)) {
    throw new IdnsError('invalid_config', `${flags.tlsCert || flags.tlsKey ? 'flags' : (configPath ?? 'flags')}: HTTPS needs both --tls-cert and --tls-key`);
  }
  Object.assign(config.limits, file.limits);
  Object.assign(config.resign, file.resign);
  Object.assign(config.rollover, file.rollover);
  Object.assign(config.witnessing, file.witnessing);
  Object.assign(config.journal, file.journal);
  config.housekeepingIntervalMs = file.housekeepingIntervalMs ?? config.housekeepingIntervalMs;
  config.answerFiles = { ...DEFAULT_CONFIG.answerFiles, ...file.answerFiles };
  config.transfers = { ...DEFAULT_CONFIG.transfers, ...file.transfers };
  // Internet-facing servers are rate limited unless the file says otherwise; a loopback-only server
  // (a developer's, a test's, one behind a proxy that limits) is not.
  const loopbackOnly = /^(127\.|localhost$|::1$)/.test(config.listen.host);
  config.rateLimits = { ...DEFAULT_RATE_LIMITS, ...file.rateLimits, enabled: file.rateLimits?.enabled ?? !loopbackOnly };
  config.resolver = resolverConfig(file.resolver, flags, configPath);
  return config;
}

/** Merges the resolver settings of the file and the flags; null when the role is not configured. */
function resolverConfig(file: ConfigFile['resolver'], flags: ConfigFlags, configPath: string | undefined): ResolverConfig | null {
  const rootServers = flags.root ?? file?.root ?? [];
  const forwarders = flags.forward ?? file?.forward ?? [];
  const anchors: Record<string, string[]> = flags.anchor
    ? parseAnchorFlags(flags.anchor)
    : parseAnchorFlags(Object.entries(file?.anchors ?? {}).flatMap(([zone, kids]) => kids.map((k) => `${zone}=${k}`)));
  const where = flags.anchor || flags.root || flags.forward || flags.dns ? 'flags' : (configPath ?? 'flags');
  const dnsOn = flags.dns ?? file?.dns?.enabled ?? false;
  const dnsServers = flags.dnsServer ?? file?.dns?.servers;
  const requireDnssec = flags.requireDnssec ?? file?.dns?.requireDnssec ?? false;
  if (!dnsOn && (flags.dnsServer || flags.requireDnssec || flags.webfingerFallback === false)) {
    throw new IdnsError('invalid_config', 'flags: --dns-server, --require-dnssec and --no-webfinger-fallback go with --dns');
  }
  for (const server of dnsServers ?? []) parseDnsServer(server);
  if (rootServers.length === 0 && forwarders.length === 0) {
    if (Object.keys(anchors).length > 0) throw new IdnsError('invalid_config', `${where}: resolver anchors given without --root or --forward servers`);
    if (!dnsOn) return null;
  }
  for (const url of [...rootServers, ...forwarders]) {
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol))
      throw new IdnsError('invalid_config', `${where}: resolver server "${url}" is not an http(s) URL`);
  }
  if (Object.keys(anchors).length === 0 && !dnsOn)
    throw new IdnsError('invalid_config', `${where}: the resolver needs at least one trust anchor (--anchor ZONE=THUMBPRINT), or --dns`);
  const { compactHeap, ...cacheOptions } = file?.cache ?? {};
  if ((cacheOptions.maxEntryBytes ?? 0) > (cacheOptions.maxBytes ?? Infinity)) {
    throw new IdnsError('invalid_config', `${configPath ?? 'flags'}: resolver.cache.maxEntryBytes must not exceed resolver.cache.maxBytes`);
  }
  return {
    rootServers,
    forwarders,
    anchors,
    discovery: dnsOn ? { ...(dnsServers ? { dnsServers } : {}), requireDnssec, ...(file?.dns?.timeoutMs ? { dnsTimeoutMs: file.dns.timeoutMs } : {}) } : null,
    webfinger: dnsOn && (flags.webfingerFallback ?? file?.webfingerFallback ?? true),
    allowPrivate: flags.allowPrivate ?? file?.allowPrivate ?? false,
    ...witnessesOf(flags, file?.witnesses, where),
    cache: cacheOptions,
    compactHeap: compactHeap ?? true,
    limits: { ...file?.limits },
  };
}

/** The witnesses the resolver requires, from the flags (which replace the file's) or the file. */
function witnessesOf(flags: ConfigFlags, file: ResolverConfig['witnesses'], where: string): Pick<ResolverConfig, 'witnesses'> {
  if (flags.witness === undefined && flags.witnessQuorum !== undefined) throw new IdnsError('invalid_config', 'flags: --witness-quorum goes with --witness');
  const w = flags.witness ? { thumbprints: flags.witness, ...(flags.witnessQuorum !== undefined ? { quorum: flags.witnessQuorum } : {}) } : file;
  if (w === undefined) return {};
  for (const t of w.thumbprints)
    if (!SHA256_B64U.test(t)) throw new IdnsError('invalid_config', `${where}: witness "${t}" is not a key thumbprint (43 base64url characters)`);
  const count = new Set(w.thumbprints).size;
  if (w.quorum !== undefined && (!Number.isInteger(w.quorum) || w.quorum < 1 || w.quorum > count)) {
    throw new IdnsError('invalid_config', `${where}: the witness quorum is 1 to ${count} (the witnesses given)`);
  }
  return { witnesses: w };
}

/** Parses `ZONE=THUMBPRINT` values; the zone may be `.` for the root. */
export function parseAnchorFlags(values: string[]): Record<string, string[]> {
  const anchors: Record<string, string[]> = {};
  for (const v of values) {
    const i = v.lastIndexOf('=');
    const kid = v.slice(i + 1);
    if (i <= 0 || !SHA256_B64U.test(kid)) throw new IdnsError('invalid_config', `--anchor: expected ZONE=THUMBPRINT, got "${v}"`);
    let zone: string;
    try {
      zone = parseZoneName(v.slice(0, i));
    } catch (cause) {
      throw new IdnsError('invalid_config', `--anchor: ${(cause as Error).message}`, { cause });
    }
    (anchors[zone] ??= []).push(kid);
  }
  return anchors;
}

const SOURCES = {
  data: { flagName: '--data', envName: 'IDNS_DATA' },
  listen: { flagName: '--listen', envName: 'IDNS_LISTEN' },
  logLevel: { flagName: '--log-level', envName: 'IDNS_LOG_LEVEL' },
  publicUrl: { flagName: '--public-url', envName: 'IDNS_PUBLIC_URL' },
} as const;

function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new IdnsError('invalid_config', `cannot read the config file ${path}: ${(cause as Error).message}`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new IdnsError('invalid_config', `the config file ${path} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path.join('.') || (issue.code === 'unrecognized_keys' ? (issue as { keys?: string[] }).keys?.join(', ') : '') || '(top level)';
    throw new IdnsError('invalid_config', `${path}: ${key}: ${issue.message}`);
  }
  return parsed.data;
}
