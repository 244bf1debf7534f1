import { setFlagsFromString } from 'node:v8';
import { IdnsError } from '../../errors.js';
import { openingDataDir } from '../local.js';
import { intOption, parseCommand, type Io } from '../args.js';

const usage = `usage: idns serve [--listen HOST:PORT] [--data DIR] [--config FILE] [--public-url URL]
                  [--log-level debug|info|warn|error|silent] [--no-bootstrap]
                  [--root URL... --anchor ZONE=THUMBPRINT... | --forward URL... --anchor ...]
                  [--dns [--dns-server HOST:PORT...] [--require-dnssec] [--no-webfinger-fallback]]
                  [--witness THUMBPRINT... [--witness-quorum N]]
                  [--allow-private] [--tls-cert FILE --tls-key FILE] [--ca FILE...]

Serves every zone in the data directory (default ./data) over HTTP on HOST:PORT (default
127.0.0.1:8053). On an empty data directory it first creates the development zone
"localhost" with open registration, unless --no-bootstrap is given or the resolver role is on.
Settings come from FILE (JSON), then IDNS_DATA, IDNS_LISTEN, IDNS_LOG_LEVEL,
IDNS_PUBLIC_URL, IDNS_CONFIG, then the flags. SIGINT/SIGTERM stop it gracefully.

--root and --anchor turn on the resolver role (GET/POST /v1/lookup): it walks the
hierarchy from the root servers, trusting only keys chained to the anchors. --forward
asks upstream resolvers instead, still verifying their proofs against the anchors.
--dns turns the resolver role on (alone, or beside --root) for zones published without a
root: the closest enclosing _idns TXT record or /.well-known/idns document of a handle's
domain (docs/protocol.md, section 12); handles whose host publishes no zone are resolved by
WebFinger and marked unverified, unless --no-webfinger-fallback. --dns-server names DNS
servers that validate DNSSEC (their AD flag anchors a zone); without it the system's
resolvers are asked, and a TXT record needs its HTTPS document. --require-dnssec accepts
only zones anchored by DNSSEC.
--witness makes the resolver (with --root) accept an answer only when every zone it walks
binds it to a checkpoint of its log cosigned by N of these witnesses (thumbprints, as idns
witness show prints them; N = --witness-quorum, default all) within the last hour
(docs/protocol.md, section 13.5); results then say "witnessed": true.
--allow-private lets the resolver reach http and loopback/private addresses (tests, demo).
--tls-cert and --tls-key (PEM) serve HTTPS. --ca adds CA certificates (PEM) that the resolver
and the secondaries trust, besides the system's, when they connect to https servers.`;

/** `idns serve`: runs until SIGINT or SIGTERM. */
export async function serve(argv: string[], io: Io): Promise<number> {
  const options = {
    listen: { type: 'string' },
    data: { type: 'string' },
    config: { type: 'string' },
    'public-url': { type: 'string' },
    'log-level': { type: 'string' },
    'no-bootstrap': { type: 'boolean' },
    root: { type: 'string', multiple: true },
    anchor: { type: 'string', multiple: true },
    forward: { type: 'string', multiple: true },
    dns: { type: 'boolean' },
    'dns-server': { type: 'string', multiple: true },
    'require-dnssec': { type: 'boolean' },
    'no-webfinger-fallback': { type: 'boolean' },
    'allow-private': { type: 'boolean' },
    witness: { type: 'string', multiple: true },
    'witness-quorum': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    ca: { type: 'string', multiple: true },
  } as const;
  const { values, help } = parseCommand({ usage, options, positionals: [] }, argv);
  if (help) return (io.out(usage), 0);
  // The server's modules load after the arguments are read: `--help` answers without them.
  const [{ loadConfig }, { AppContext }, { startServer }, signatures, { startControl }] = await Promise.all([
    import('../../config.js'),
    import('../../context.js'),
    import('../../http/server.js'),
    import('../../records/ed25519.js'),
    import('../../http/control.js'),
  ]);
  const config = loadConfig({
    data: values.data,
    listen: values.listen,
    config: values.config,
    publicUrl: values['public-url'],
    logLevel: values['log-level'],
    ...(values['no-bootstrap'] ? { bootstrap: false } : {}),
    ...(values.root ? { root: values.root } : {}),
    ...(values.anchor ? { anchor: values.anchor } : {}),
    ...(values.forward ? { forward: values.forward } : {}),
    ...(values.dns ? { dns: true } : {}),
    ...(values['dns-server'] ? { dnsServer: values['dns-server'] } : {}),
    ...(values['require-dnssec'] ? { requireDnssec: true } : {}),
    ...(values['no-webfinger-fallback'] ? { webfingerFallback: false } : {}),
    ...(values['allow-private'] ? { allowPrivate: true } : {}),
    ...(values.witness ? { witness: values.witness } : {}),
    ...(values['witness-quorum'] !== undefined ? { witnessQuorum: intOption(values['witness-quorum'], 'witness-quorum', usage)! } : {}),
    ...(values['tls-cert'] ? { tlsCert: values['tls-cert'] } : {}),
    ...(values['tls-key'] ? { tlsKey: values['tls-key'] } : {}),
    ...(values.ca ? { ca: values.ca } : {}),
  });
  const ctx = openingDataDir(config.dataDir, () => new AppContext(config));
  let running;
  let control;
  try {
    ctx.zones.assureKeys();
    running = await startServer(ctx, config.listen.host, config.listen.port);
    try {
      control = await startControl(ctx, running);
    } catch (err) {
      if (err instanceof IdnsError) {
        // Another server on this data directory: two servers on one database must not run.
        await running.close();
        throw err;
      }
      // A socket path too long for the system (a deep data directory) costs idns ctl, not the service.
      ctx.log.warn('control socket unavailable: idns ctl will not reach this server', { err });
      control = null;
    }
  } catch (err) {
    await ctx.close();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw new IdnsError('invalid_config', `cannot listen on ${config.listen.host}:${config.listen.port}: the address is in use`, { cause: err });
    if (code === 'EACCES' || code === 'EADDRNOTAVAIL')
      throw new IdnsError('invalid_config', `cannot listen on ${config.listen.host}:${config.listen.port}: ${(err as Error).message}`, { cause: err });
    throw err;
  }
  // A resolver's heap is mostly its cache, filled by lookups whose own objects die among the entries: V8's
  // memory-reducing collections compact those holes (100,000 cached handles: ~150 MB above an empty
  // resolver instead of 250-330 MB) for 5-15% of single lookups' and 20-25% of batches' throughput on hits.
  // V8 reads this flag at each collection, so setting it now, before the first lookup, takes effect.
  if (config.resolver?.compactHeap) setFlagsFromString('--optimize-for-size');
  const publicUrl = config.publicUrl ?? running.url.replace('0.0.0.0', '127.0.0.1').replace('[::]', '[::1]');
  let bootstrapped = false;
  // A resolver-only server has no use for a development zone.
  if (config.bootstrap && !config.resolver && ctx.zones.list().length === 0) {
    ctx.zones.create('localhost', { servers: [publicUrl], policy: 'open', allowLoopbackEndpoints: true });
    bootstrapped = true;
  }
  ctx.resigner.runOnce();
  ctx.startBackground();

  const zones = ctx.zones.list().map((z) => ctx.zones.info(z.name));
  io.out(`idns serving on ${running.url} (data: ${config.dataDir})`);
  if (config.resolver) {
    const r = config.resolver;
    const mode =
      r.forwarders.length > 0 ? `forwarding to ${r.forwarders.join(' ')}` : r.rootServers.length > 0 ? `from ${r.rootServers.join(' ')}` : 'without a root';
    const anchors = Object.entries(r.anchors).map(([z, k]) => `${z}=${k.join(',')}`);
    const dns = r.discovery
      ? `, zones found through DNS (${r.discovery.dnsServers ? `validating servers ${r.discovery.dnsServers.join(' ')}` : "the system's resolvers, not validating"})${r.discovery.requireDnssec ? ', DNSSEC required' : ''}${r.webfinger ? ', WebFinger bridge on' : ''}`
      : '';
    io.out(`  resolver: ${mode}${anchors.length > 0 ? `, anchors ${anchors.join(' ')}` : ''}${dns}`);
  }
  for (const z of zones) io.out(`  zone ${z.name}: ${z.role}, serial ${z.serial}, ${z.policy} registration, key ${z.keyThumbprints.join(' ')}`);
  if (zones.length === 0) io.out('  no zones yet: create one with  idns zone create ZONE --server-url URL');
  if (bootstrapped || zones.some((z) => z.name === 'localhost')) {
    const server = running.url === 'http://127.0.0.1:8053' ? '' : ` --server ${running.url}`;
    io.out(
      [
        '',
        'Next, in another terminal:',
        '  npx idns keygen --out alice.jwk',
        `  npx idns handle register alice@localhost --key alice.jwk --endpoint https://social.example/users/alice${server}`,
        `  npx idns resolve alice@localhost${server}`,
      ].join('\n'),
    );
  }
  // Signatures are most of the work of imports, registrations and cold lookups: a slower fallback is worth a line.
  if (signatures.ed25519Fallback !== null && !signatures.ed25519NodeRequested)
    ctx.log.warn('Ed25519 falls back to node:crypto', { reason: signatures.ed25519Fallback });
  ctx.log.info('listening', {
    url: running.url,
    zones: zones.map((z) => z.name),
    ed25519: signatures.ed25519.name,
    ...(config.resolver ? { compactHeap: config.resolver.compactHeap } : {}),
  });

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      ctx.log.info('shutting down', { signal });
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await control?.close();
  await running.close();
  await ctx.changes.drain();
  await ctx.close();
  return 0;
}
