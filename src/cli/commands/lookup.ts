import { epochSeconds, systemClock } from '../../clock.js';
import { errorFromBody, jsonRequest } from '../../client/http.js';
import { parseAnchorFlags } from '../../config.js';
import { IdnsError } from '../../errors.js';
import { parseHandle } from '../../names/handle.js';
import { thumbprint } from '../../records/keys.js';
import { decodeCompact } from '../../records/jws.js';
import { verifyProof, type Resolution } from '../../resolver/proof.js';
import { createResolver } from '../../resolver/resolver.js';
import { parseCommand, UsageError, type Io } from '../args.js';

const usage = `usage: idns lookup HANDLE --root URL... --anchor ZONE=THUMBPRINT... [--allow-private] [--json]
       idns lookup HANDLE --resolver URL [--anchor ZONE=THUMBPRINT...] [--allow-private] [--json]

Resolves HANDLE through the hierarchy and verifies every signature from the trust anchor
down, then prints the endpoint, the keys and the chain of trust.
With --root it walks the hierarchy itself from those root servers. With --resolver it asks
that resolver and checks the proof it returns: against --anchor when given, otherwise only
for consistency with the resolver's own anchor (and says so).
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
    'allow-private': { type: 'boolean' },
    json: { type: 'boolean' },
  } as const;
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['HANDLE'] }, argv);
  if (help) return io.out(usage), 0;
  const { handle } = parseHandle(positionals[0]!);
  const anchors = new Map(Object.entries(parseAnchorFlags(values.anchor ?? [])));
  let result: Resolution;
  let anchoredBy: string;
  if (values.resolver !== undefined) {
    if (values.root) throw new UsageError('give --root or --resolver, not both', usage);
    const res = await jsonRequest(`${values.resolver.replace(/\/+$/, '')}/v1/lookup/${encodeURIComponent(handle)}`, { maxBytes: 1024 * 1024 });
    const err = errorFromBody(res.body);
    if (err) throw err;
    const proof = (res.body as { proof?: unknown } | null)?.proof;
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
    result = verifyProof(proof, handle, anchors, epochSeconds(systemClock), undefined, { allowLoopbackEndpoints: values['allow-private'] ?? false });
  } else {
    if (!values.root || values.root.length === 0) throw new UsageError('give --root URL... and --anchor, or --resolver URL', usage);
    if (anchors.size === 0) throw new UsageError('--anchor ZONE=THUMBPRINT is required with --root', usage);
    const resolver = createResolver({ trustAnchors: anchors, rootServers: values.root, allowPrivate: values['allow-private'] ?? false });
    try {
      result = await resolver.lookup(handle);
    } finally {
      await resolver.close();
    }
    anchoredBy = 'your anchors';
  }
  if (values.json) {
    const { profile, alsoKnownAs, movedTo } = result;
    io.out(JSON.stringify({ handle: result.handle, status: result.status, zone: result.zone, endpoint: result.endpoint, keys: result.keys, profile, alsoKnownAs, movedTo, ttl: result.ttl, proof: result.proof }));
  } else {
    const chain = result.proof.steps.map((s, i) => {
      const kid = decodeCompact(s.zoneRecord).header.kid;
      return `  ${i + 1}. zone ${s.zone}: signed by key ${kid}${i === 0 ? ` (trusted via ${anchoredBy})` : ' (vouched for by the delegation above)'}${s.delegation ? ', delegates the next zone' : ''}`;
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
        `  zone: ${result.zone}, ttl ${result.ttl}s`,
        'chain of trust:',
        ...chain,
      ].join('\n'),
    );
  }
  return result.status === 'found' ? 0 : 3;
}
