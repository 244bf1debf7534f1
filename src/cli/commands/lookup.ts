import type { NumberedEntry } from '../../records/history-chain.js';
import { readFileSync } from 'node:fs';
import { epochSeconds, systemClock } from '../../clock.js';
import { IdnsError } from '../../errors.js';
import { parseHandleReference } from '../../names/handle.js';
import { thumbprint } from '../../records/keys.js';
import { decodeCompact } from '../../records/jws.js';
import type { Resolution } from '../../resolver/proof.js';
import type { BridgedResult, LookupResult } from '../../resolver/resolver.js';
import type { ResolverOptions } from '../../resolver/options.js';
import { intOption, OPERATOR_ASSERTED, parseCommand, UsageError, type Io } from '../args.js';

const usage = `usage: idns lookup HANDLE --root URL... --anchor ZONE=THUMBPRINT... [--dns ...] [--witness THUMBPRINT... [--witness-quorum N]] [--allow-private] [--json]
       idns lookup HANDLE --dns [--dns-server HOST:PORT...] [--require-dnssec] [--no-webfinger-fallback] [--ca FILE...] [--json]
       idns lookup HANDLE --resolver URL [--anchor ZONE=THUMBPRINT...] [--allow-private] [--json]

Resolves HANDLE (alice@host, @alice@host or acct:alice@host) and verifies every signature from
the trust anchor down, then prints the endpoint, the keys and the chain of trust.
With --root it walks the hierarchy itself from those root servers. With --dns it finds the zone
the handle's domain publishes (an _idns TXT record, a /.well-known/idns document) without any
root, or, with --root, for hosts the root does not delegate; a host that publishes no zone is
resolved by plain WebFinger and printed as NOT VERIFIED (--no-webfinger-fallback: refused).
--dns-server names DNS servers that validate DNSSEC (their AD flag is believed); without it the
system's resolvers are asked and a TXT record needs its HTTPS document to confirm it.
--require-dnssec accepts only zones anchored by DNSSEC. --ca adds CA certificates (PEM) for https.
With --resolver it asks that resolver and checks the proof it returns: against --anchor when
given, otherwise only for consistency with the resolver's own anchor (and says so).
--witness (with --root) accepts an answer only when every zone walked binds it to a checkpoint of
its log cosigned by N of these witnesses (N = --witness-quorum, default all) within the last hour,
and prints it as witnessed (docs/protocol.md, section 13.5).
--allow-private allows http and loopback/private addresses (tests, the demo), and records whose
endpoint is a loopback URL (development zones).
The owner's profile page and other names (also known as) are printed when set; a handle whose
owner announced a move prints as "HANDLE (moved to OTHER)": the move is reported, never followed.
Exit status: 0 found, 3 verified not found, 1 any error.`;

/** `idns lookup` */
export async function lookup(argv: string[], io: Io): Promise<number> {
  const options = {
    root: { type: 'string', multiple: true },
    anchor: { type: 'string', multiple: true },
    resolver: { type: 'string' },
    dns: { type: 'boolean' },
    'dns-server': { type: 'string', multiple: true },
    'require-dnssec': { type: 'boolean' },
    'no-webfinger-fallback': { type: 'boolean' },
    ca: { type: 'string', multiple: true },
    'allow-private': { type: 'boolean' },
    witness: { type: 'string', multiple: true },
    'witness-quorum': { type: 'string' },
    json: { type: 'boolean' },
  } as const;
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['HANDLE'] }, argv);
  if (help) return (io.out(usage), 0);
  // The resolver's modules (undici, discovery, the record verifier) load once the arguments are read: --help answers without them.
  const [{ errorFromBody, jsonRequest }, { parseAnchorFlags }, { describeAnchor, verifyProof }, { createResolver }] = await Promise.all([
    import('../../client/http.js'),
    import('../../config.js'),
    import('../../resolver/proof.js'),
    import('../../resolver/resolver.js'),
  ]);
  const { handle } = parseHandleReference(positionals[0]!);
  const anchors = new Map(Object.entries(parseAnchorFlags(values.anchor ?? [])));
  const allowPrivate = values['allow-private'] ?? false;
  const discoveryFlags = values['dns-server'] !== undefined || values['require-dnssec'] || values['no-webfinger-fallback'];
  if (discoveryFlags && !values.dns) throw new UsageError('--dns-server, --require-dnssec and --no-webfinger-fallback go with --dns', usage);
  let result: LookupResult;
  let anchoredBy: string;
  if (values.resolver !== undefined) {
    if (values.root || values.dns) throw new UsageError('give --root, --dns or --resolver, not --resolver with the others', usage);
    const res = await jsonRequest(`${values.resolver.replace(/\/+$/, '')}/v1/lookup/${encodeURIComponent(handle)}`, { maxBytes: 2 * 1024 * 1024 });
    const err = errorFromBody(res.body);
    if (err) throw err;
    const body = res.body as { proof?: unknown; verified?: unknown } | null;
    if (body?.verified === false) {
      io.out(
        values.json
          ? JSON.stringify(body)
          : `${handle}: the resolver answered from the host's WebFinger (NOT VERIFIED; nothing to check)\n${JSON.stringify(body, null, 2)}`,
      );
      return 0;
    }
    const proof = body?.proof;
    if (anchors.size === 0) {
      // No anchor of our own: take the first zone's key as the resolver presents it, and say so.
      const first = (proof as { steps?: { zone: string; zoneRecord: string }[] } | null)?.steps?.[0];
      if (!first) throw new IdnsError('bad_response', 'the resolver sent no proof');
      const kid = decodeCompact(first.zoneRecord).header.kid ?? '';
      anchors.set(first.zone, [kid]);
      anchoredBy = `the resolver's anchor ${first.zone}=${kid} (not checked: pass --anchor to check it)`;
    } else {
      anchoredBy = 'your anchors';
    }
    const r: Resolution = verifyProof(proof, handle, anchors, epochSeconds(systemClock), undefined, { allowLoopbackEndpoints: allowPrivate });
    result = { ...r, verified: true, witnessed: false, anchor: 'configured', stale: false };
  } else {
    if (!values.dns && (!values.root || values.root.length === 0)) throw new UsageError('give --root URL... and --anchor, --dns, or --resolver URL', usage);
    if (values.root && anchors.size === 0) throw new UsageError('--anchor ZONE=THUMBPRINT is required with --root', usage);
    if (!values.root && anchors.size > 0) throw new UsageError('--anchor goes with --root or --resolver', usage);
    if (values.witness && !values.root) throw new UsageError('--witness goes with --root (the zones walked here)', usage);
    if (values['witness-quorum'] !== undefined && !values.witness) throw new UsageError('--witness-quorum goes with --witness', usage);
    const quorum = intOption(values['witness-quorum'], 'witness-quorum', usage);
    const opts: ResolverOptions = {
      allowPrivate,
      ...(values.witness ? { witnesses: { thumbprints: values.witness, ...(quorum !== undefined ? { quorum } : {}) } } : {}),
      ...(values.root ? { trustAnchors: anchors, rootServers: values.root } : {}),
      discovery: values.dns
        ? { ...(values['dns-server'] ? { dnsServers: values['dns-server'] } : {}), ...(values['require-dnssec'] ? { requireDnssec: true } : {}) }
        : false,
      webfinger: values.dns === true && !values['no-webfinger-fallback'],
      ...(values.ca ? { ca: values.ca.map((f) => readFileSync(f, 'utf8')) } : {}),
    };
    let resolver;
    try {
      resolver = createResolver(opts);
    } catch (err) {
      if (err instanceof TypeError) throw new UsageError(err.message, usage);
      throw err;
    }
    try {
      result = await resolver.lookup(handle);
    } finally {
      await resolver.close();
    }
    anchoredBy = 'your anchors';
  }
  if (!result.verified) {
    io.out(values.json ? JSON.stringify(bridgedJson(result)) : bridgedText(result));
    return 0;
  }
  const trustedBy = result.proof.anchor ? describeAnchor(result.proof.anchor) : `via ${anchoredBy}`;
  if (values.json) {
    io.out(
      JSON.stringify({
        handle: result.handle,
        status: result.status,
        zone: result.zone,
        endpoint: result.endpoint,
        keys: result.keys,
        profile: result.profile,
        alsoKnownAs: result.alsoKnownAs,
        movedTo: result.movedTo,
        genesis: result.genesis,
        operatorAsserted: result.operatorAsserted,
        ttl: result.ttl,
        verified: true,
        witnessed: result.witnessed,
        anchor: result.anchor,
        proof: result.proof,
      }),
    );
  } else {
    const chain = result.proof.steps.map((s, i) => {
      const kid = decodeCompact(s.zoneRecord).header.kid;
      return `  ${i + 1}. zone ${s.zone}: signed by key ${kid}${i === 0 ? ` (trusted ${trustedBy})` : ' (vouched for by the delegation above)'}${s.delegation ? ', delegates the next zone' : ''}`;
    });
    if (result.status === 'not_found') {
      io.out([`${result.handle} does not exist (verified denial from zone ${result.zone})`, 'chain of trust:', ...chain].join('\n'));
      return 3;
    }
    io.out(
      [
        // A move is the owner's signed statement: reported, never followed (the next handle is not looked up).
        ...(result.movedTo !== undefined ? [`${result.handle} (moved to ${result.movedTo})`] : [result.handle]),
        `  endpoint: ${result.endpoint}`,
        ...(result.profile !== undefined ? [`  profile: ${result.profile}`] : []),
        ...(result.alsoKnownAs !== undefined ? [`  also known as: ${result.alsoKnownAs.join(' ')}`] : []),
        `  keys: ${result.keys!.map(thumbprint).join(' ')}`,
        `  history: ${historyLine(result.proof.history!)}, verified; genesis ${result.genesis}`,
        ...(result.operatorAsserted ? [OPERATOR_ASSERTED] : []),
        `  zone: ${result.zone}, ttl ${result.ttl}s, ${result.proof.anchor ? describeAnchor(result.proof.anchor) : 'from a configured trust anchor'}`,
        ...(result.witnessed ? ["  witnessed: every zone's checkpoint was cosigned by the witnesses required"] : []),
        'chain of trust:',
        ...chain,
      ].join('\n'),
    );
  }
  return result.status === 'found' ? 0 : 3;
}

function bridgedJson(r: BridgedResult): Record<string, unknown> {
  return {
    handle: r.handle,
    status: r.status,
    endpoint: r.endpoint,
    verified: false,
    source: r.source,
    subject: r.subject,
    aliases: r.aliases,
    ...(r.profile ? { profile: r.profile } : {}),
    ttl: r.ttl,
  };
}

function bridgedText(r: BridgedResult): string {
  return [
    `${r.handle} (NOT VERIFIED: its host publishes no idns zone; this is what the host's WebFinger says)`,
    `  endpoint: ${r.endpoint}`,
    ...(r.aliases.length > 0 ? [`  aliases: ${r.aliases.join(' ')}`] : []),
    ...(r.profile ? [`  profile page: ${r.profile}`] : []),
    `  ttl ${r.ttl}s`,
  ].join('\n');
}

/** "3 signed changes", or "1,000 signed changes (12 shown: the compact form)" when the proof leaves updates out. */
function historyLine(history: readonly NumberedEntry[]): string {
  const changes = history.at(-1)![0];
  const counted = `${changes.toLocaleString('en-US')} signed change${changes === 1 ? '' : 's'}`;
  return history.length === changes ? counted : `${counted} (${history.length} shown: the compact form)`;
}
