import { systemClock } from '../../clock.js';
import { parseZoneName } from '../../names/zone.js';
import { thumbprint } from '../../records/keys.js';
import { DEFAULT_SERVER, OPERATOR_ASSERTED, parseAnchors, parseCommand, type Io } from '../args.js';

const usage = `usage: idns resolve HANDLE [--server URL] [--anchor ZONE=THUMBPRINT...] [--allow-private] [--json]

Asks one authoritative server (default ${DEFAULT_SERVER}) about HANDLE, verifies the
signatures, and prints the record or the verified proof that HANDLE does not exist.
With --anchor, the zone's key must have that thumbprint; without it the answer is only
checked to be consistent with the key the zone itself publishes, and says so.
--allow-private accepts records whose endpoint is a loopback URL (development zones: tests, the demo).
Exit status: 0 found, 3 verified not found, 4 referral to a child zone, 1 any error.`;

/** `idns resolve` */
export async function resolve(argv: string[], io: Io): Promise<number> {
  const options = {
    server: { type: 'string' },
    anchor: { type: 'string', multiple: true },
    'allow-private': { type: 'boolean' },
    json: { type: 'boolean' },
  } as const;
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['HANDLE'] }, argv);
  if (help) return (io.out(usage), 0);
  const anchors = parseAnchors(values.anchor, usage, parseZoneName);
  // The client (undici, the record verifier) loads once the arguments are read: --help answers without it.
  const { queryAuthoritative } = await import('../../client/answers.js');
  const answer = await queryAuthoritative(values.server ?? DEFAULT_SERVER, positionals[0]!, anchors, systemClock, {
    allowLoopbackEndpoints: values['allow-private'] ?? false,
  });
  const trust = answer.anchored
    ? `anchored key ${answer.zoneKey}`
    : `zone key ${answer.zoneKey} (not anchored: pass --anchor ${answer.zone}=${answer.zoneKey} to pin it)`;
  if (answer.status === 'referral') {
    const d = answer.delegation;
    if (values.json)
      io.out(
        JSON.stringify({
          status: 'referral',
          handle: answer.handle,
          zone: answer.zone,
          child: d.name,
          servers: d.servers,
          ds: d.ds,
          zoneKey: answer.zoneKey,
          anchored: answer.anchored,
        }),
      );
    else
      io.out(`${answer.handle} is in zone ${d.name}, delegated by ${answer.zone} (${trust}) to ${d.servers.join(' ')} with keys ${d.ds.join(' ')}
  ask those servers, or use idns lookup to follow referrals`);
    return 4;
  }
  if (answer.status === 'denial') {
    if (values.json)
      io.out(
        JSON.stringify({
          status: 'denial',
          handle: answer.handle,
          zone: answer.zone,
          serial: answer.serial,
          zoneKey: answer.zoneKey,
          anchored: answer.anchored,
        }),
      );
    else io.out(`${answer.handle} does not exist (verified denial from zone ${answer.zone}, serial ${answer.serial}, ${trust})`);
    return 3;
  }
  const r = answer.record;
  if (values.json) {
    io.out(
      JSON.stringify({
        status: 'answer',
        handle: r.handle,
        endpoint: r.endpoint,
        keys: r.keys,
        ttl: answer.ttl,
        zone: answer.zone,
        serial: answer.serial,
        op: r.op,
        genesis: r.genesis,
        seq: r.seq,
        operatorAsserted: answer.history.operatorAsserted,
        zoneKey: answer.zoneKey,
        anchored: answer.anchored,
        record: answer.jws,
      }),
    );
  } else {
    io.out(
      [
        `${r.handle}`,
        `  endpoint: ${r.endpoint}`,
        `  keys: ${r.keys.map(thumbprint).join(' ')}`,
        `  ttl: ${answer.ttl}s`,
        `  zone: ${answer.zone} (serial ${answer.serial})`,
        `  verified: signature valid until ${new Date(r.exp * 1000).toISOString()}, ${trust}`,
        `  history: ${r.seq} signed change${r.seq === 1 ? '' : 's'}, verified; genesis ${r.genesis}`,
        ...(answer.history.operatorAsserted ? [OPERATOR_ASSERTED] : []),
      ].join('\n'),
    );
  }
  return 0;
}
