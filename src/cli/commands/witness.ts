import { parseCommand, UsageError, type Io } from '../args.js';
import { IdnsError } from '../../errors.js';

const usage = `usage: idns witness <command> [--data DIR] [--config FILE] [--json]

show   Prints this server's witness key: the name its cosignatures are signed under, its
       thumbprint (what resolvers name with --witness THUMBPRINT) and its public key. The key is
       DIR/keys/witness.jwk (mode 0600), made on first use.
follow ZONE --ds THUMBPRINT... --server URL...
       Witnesses ZONE without copying it: reads its zone record from --server (checked with a
       key of --ds) and from then on cosigns the checkpoints the zone's primary offers (once it
       lists this server: idns zone witnesses on the primary), following the zone's keys as
       they roll. A server copying a zone witnesses it already. See docs/operations.md.
unfollow ZONE
       Stops witnessing ZONE (what was cosigned and any fork evidence are kept).
list   The zones followed here, with the serial of the zone record last read.`;

/** `idns witness` */
export async function witness(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') return sub === undefined ? (io.err(usage), 2) : (io.out(usage), 0);
  if (sub === 'follow') return follow(rest, io);
  if (sub === 'unfollow') return unfollow(rest, io);
  if (sub === 'list') return list(rest, io);
  if (sub !== 'show') throw new UsageError(`unknown witness command "${sub}"`, usage);
  const { values, help } = parseCommand(
    { usage, options: { data: { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean' } }, positionals: [] },
    rest,
  );
  if (help) return (io.out(usage), 0);
  const [{ loadConfig }, { witnessKeyOf }] = await Promise.all([import('../../config.js'), import('../../transparency/witness-key.js')]);
  const { name, key, created } = witnessKeyOf(loadConfig({ data: values.data, config: values.config }).dataDir);
  if (values.json) io.out(JSON.stringify({ name, thumbprint: key.kid, publicKey: key.publicJwk }));
  else io.out([`name: ${name}`, `thumbprint: ${key.kid}`, `public key: ${JSON.stringify(key.publicJwk)}`, ...(created ? ['(made now)'] : [])].join('\n'));
  return 0;
}

const localOptions = { data: { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean' } } as const;

async function follow(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand(
    { usage, options: { ...localOptions, ds: { type: 'string', multiple: true }, server: { type: 'string', multiple: true } }, positionals: ['ZONE'] },
    argv,
  );
  if (help) return (io.out(usage), 0);
  if (!values.ds?.length || !values.server?.length) throw new UsageError('follow needs --ds THUMBPRINT... and --server URL...', usage);
  const [{ parseZoneName }, { withLocal }, { readFollowedZone }] = await Promise.all([
    import('../../names/zone.js'),
    import('../local.js'),
    import('../../replication/witness-follows.js'),
  ]);
  const zone = parseZoneName(positionals[0]!);
  const followed = await withLocal(values, async (ctx) => {
    if (ctx.zones.get(zone)?.role === 'secondary') throw new IdnsError('invalid_request', `zone ${zone} is copied here: this server witnesses it already`);
    const read = await readFollowedZone(zone, values.server!, values.ds!, ctx.clock, undefined);
    ctx.store.write(() => ctx.store.witness.follow(read));
    return read;
  });
  if (values.json) io.out(JSON.stringify({ zone, servers: followed.servers, serial: followed.serial }));
  else
    io.out(
      `witnessing ${zone} (zone record at serial ${followed.serial}, from ${followed.servers.join(' ')}); its primary must list this server: idns zone witnesses`,
    );
  return 0;
}

async function unfollow(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  const [{ parseZoneName }, { withLocal }] = await Promise.all([import('../../names/zone.js'), import('../local.js')]);
  const zone = parseZoneName(positionals[0]!);
  const gone = await withLocal(values, (ctx) => ctx.store.write(() => ctx.store.witness.unfollow(zone)), true);
  if (!gone) throw new IdnsError('zone_not_found', `zone ${zone} is not followed here`);
  if (values.json) io.out(JSON.stringify({ zone, followed: false }));
  else io.out(`no longer witnessing ${zone}`);
  return 0;
}

async function list(argv: string[], io: Io): Promise<number> {
  const { values, help } = parseCommand({ usage, options: localOptions, positionals: [] }, argv);
  if (help) return (io.out(usage), 0);
  const { withLocal } = await import('../local.js');
  const follows = await withLocal(values, (ctx) => ctx.store.witness.follows(), true);
  const rows = follows.map(({ zone, servers, serial }) => ({ zone, servers, serial }));
  if (values.json) io.out(JSON.stringify(rows));
  else io.out(rows.length === 0 ? 'no zones followed here' : rows.map((r) => `${r.zone}\tserial ${r.serial}\t${r.servers.join(' ')}`).join('\n'));
  return 0;
}
