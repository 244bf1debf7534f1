import type { CreateZoneOptions, ZoneInfo } from '../../authority/zones.js';
import { parseZoneName } from '../../names/zone.js';
import type { RegistrationPolicy } from '../../store/zones.js';
import { intOption, parseCommand, subCommand, UsageError, type Io } from '../args.js';
import { localOptions, withLocal } from '../local.js';
import { parseCredential } from '../../replication/credentials.js';
import { HOST_SCRIPTS_LEVELS, type HostScriptsLevel } from '../../names/host-scripts.js';
import { IdnsError } from '../../errors.js';
import { readFileSync } from 'node:fs';
import { importHandles } from '../../authority/import.js';
import type { LocalContext } from '../../local-context.js';
import { parseServerUrls, type ZoneSettings } from '../../authority/settings.js';
import { describeRollover } from '../../authority/rollover-state.js';
import { cancelRollover, startRollover, submitRollover } from '../../authority/rollover.js';

const usage = `usage: idns zone <command> ... [--data DIR] [--json]

Commands (they act on the data directory; a running server sees the change at once):
  create ZONE --server-url URL... [--primary-url URL] [--policy open|invite|closed]
              [--allow-loopback-endpoints] [--host-scripts strict|moderate|off]
              [--handle-ttl S] [--ttl S] [--minimum S] [--refresh S] [--retry S] [--expire S]
              [--tombstone-cooldown S] [--recovery-window S]
        Creates a primary zone, its Ed25519 signing key (in DIR/keys, mode 0600) and its
        signed zone record. --server-url lists the public URL(s) of the zone's servers.
        --host-scripts: look-alike checks of new hosts (UTS #39), default strict.
        --tombstone-cooldown: seconds after a delete during which only the handle's
        former keys may register it again, default 2592000 (30 days); 0 frees it at once.
        --recovery-window: seconds after a change during which a recovery key of the handle
        may undo it, default 259200 (72 hours); 0: recovery keys can undo nothing.
  show ZONE     The signed zone record, serial, digest and key thumbprints.
  publish ZONE  What to publish so that resolvers without an idns root find ZONE: the
        _idns.ZONE TXT record (a zone-file line for your DNS provider) and the document
        to serve at https://ZONE/.well-known/idns. Both list every key of the current zone
        record and its servers; run it again after a key or server change and republish.
        --json: {"name","txt","wellKnown"}. See docs/operations.md.
  list          Every zone held in DIR.
  invite ZONE [--valid-for SECONDS]
        Makes a single-use invite code (shown once; only its hash is stored).
  policy ZONE open|invite|closed
        Sets who may register: anyone, holders of an invite code, or only the operator.
  host-scripts ZONE strict|moderate|off
        Sets the look-alike checks of the hosts of new registrations (UTS #39): strict
        (one script per label, or Latin with Han/kana/Hangul/Bopomofo; no label confusable
        with an ASCII one; no invisible characters or stacked marks), moderate (Latin may
        also mix with one other script but Cyrillic and Greek), or off.
  tombstone-cooldown ZONE SECONDS
        Sets how long a deleted handle stays reserved to the keys it had (0: not at all).
  recovery-window ZONE SECONDS
        Sets how long after a change a recovery key may undo it (signs a new zone version:
        the window is in the zone record, for resolvers).
  witnesses ZONE [--url URL... | --clear]
        The witnesses a primary zone offers each checkpoint of its log to, besides its
        secondaries (which witness it anyway): servers that follow the zone without copying
        it (idns witness follow). --url sets the list, --clear empties it; without either,
        prints it. See docs/operations.md, Zone logs and witnesses.
  bump-serial ZONE SERIAL
        Moves the zone's serial forward to SERIAL in one new version (at most 2^31 - 1
        ahead). After restoring a primary from a backup, resolvers that saw a newer serial
        refuse the older versions (rollback protection): move it past the newest published.
  unfence ZONE
        A primary that learned of a promotion elsewhere (a newer zone record naming
        another primary, see zone show) takes no writes and signs nothing: fenced. Once
        that other primary is retired, unfence lets this one go on, its serial moved past
        the newer one's.
  rekey ZONE [--parent-server URL...] [--submitted | --cancel]
        Rolls the zone's key on the running server, safe for every resolver and cache
        (docs/operations.md, Key rollover): publishes a new key beside the old one, switches
        signing once every server of the parent zone lists it in the delegation (checked at
        --parent-server, and at the servers its zone record lists) and the TTLs ran out,
        re-signs the records in batches, retires the old key after the TTLs. Without parent
        servers (a root, a zone published in DNS), say when the parent's delegation (or the
        resolvers' anchor) lists the new key, and later when it no longer lists the old one,
        with --submitted. The state shows in zone show, idns ctl status and the metrics.
        --cancel abandons a rollover before the new key signs anything (publishing).
  delegate PARENT CHILD --server-url URL... --ds THUMBPRINT... [--ttl S] [--auto-ds]
        Delegates CHILD (below PARENT) to its own servers; --ds lists the thumbprints of
        the child zone's keys (printed by zone create/show where the child is held).
        --auto-ds: the parent's running primary follows the ds set the child's zone record
        asks for during a key rollover (as DNS's CDS), checked with the keys listed now.
  undelegate PARENT CHILD
        Removes the delegation.
  secondary ZONE --primary URL... --ds THUMBPRINT... [--credential NAME:SECRET]
        Holds ZONE as a secondary: copies it from the primary (or another secondary),
        trusting only zone records signed by a key with one of the --ds thumbprints.
        On a zone held already, re-points it in place (--ds optional: the keys trusted so
        far, or for a fenced primary its zone record's keys): the copy carries on, with an
        incremental transfer when the new source's journal reaches back.
  delete ZONE --yes
        Removes ZONE from this server (primary or secondary): its records, journal and
        invites. Its key files stay in DIR/keys.
  digest ZONE   The zone's serial and the digest of the content held here.
  import ZONE FILE
        Bulk import by the operator: FILE is NDJSON, one {"handle","endpoint","keys"} per line.
        All lines are checked first (a bad line changes nothing); then every record is signed,
        in one new serial; secondaries take a full transfer. Faster with the server stopped
        (the database then writes each page once: see docs/operations.md, Bulk import).
  allow-transfer ZONE --name NAME [--notify URL]
        Restricts transfers of ZONE to named secondaries and adds NAME; prints the
        credential NAME:SECRET (shown once) to give to that secondary. --notify is
        where to send it notifies.
  deny-transfer ZONE --name NAME
        Removes a secondary's credential.
  promote ZONE --key-dir DIR --primary-url URL [--server-url URL...] [--policy P]
        Disaster recovery: turns this secondary into the primary, with the zone key
        from DIR (a backup of the old primary's key directory).`;

const POLICIES = ['open', 'invite', 'closed'];

const createOptions = {
  ...localOptions,
  'server-url': { type: 'string', multiple: true },
  'primary-url': { type: 'string' },
  policy: { type: 'string' },
  'allow-loopback-endpoints': { type: 'boolean' },
  'host-scripts': { type: 'string' },
  'handle-ttl': { type: 'string' },
  ttl: { type: 'string' },
  minimum: { type: 'string' },
  refresh: { type: 'string' },
  retry: { type: 'string' },
  expire: { type: 'string' },
  'tombstone-cooldown': { type: 'string' },
  'recovery-window': { type: 'string' },
} as const;

/** `idns zone ...` */
export async function zone(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub.startsWith('-')) return run(sub, rest, io);
  return subCommand(usage, sub, rest, io, () => run(sub, rest, io));
}

async function run(sub: string | undefined, rest: string[], io: Io): Promise<number> {
  switch (sub) {
    case 'create':
      return create(rest, io);
    case 'show':
      return show(rest, io);
    case 'list':
      return list(rest, io);
    case 'publish':
      return publish(rest, io);
    case 'invite':
      return invite(rest, io);
    case 'policy':
      return policy(rest, io);
    case 'host-scripts':
      return hostScripts(rest, io);
    case 'tombstone-cooldown':
      return secondsSetting(rest, io, 'tombstoneCooldown', 'tombstone cool-down', (ctx, name, s) => ctx.zones.setTombstoneCooldown(name, s));
    case 'recovery-window':
      return secondsSetting(rest, io, 'recoveryWindow', 'recovery window', (ctx, name, s) => ctx.zones.setRecoveryWindow(name, s));
    case 'witnesses':
      return witnesses(rest, io);
    case 'bump-serial':
      return bumpSerial(rest, io);
    case 'rekey':
      return rekey(rest, io);
    case 'unfence':
      return unfence(rest, io);
    case 'delete':
      return deleteZone(rest, io);
    case 'delegate':
      return delegate(rest, io);
    case 'undelegate':
      return undelegate(rest, io);
    case 'secondary':
      return secondary(rest, io);
    case 'digest':
      return digest(rest, io);
    case 'import':
      return importZone(rest, io);
    case 'allow-transfer':
      return allowTransfer(rest, io);
    case 'deny-transfer':
      return denyTransfer(rest, io);
    case 'promote':
      return promote(rest, io);
    case undefined:
    case '--help':
    case '-h':
      if (sub === undefined) io.err(usage);
      else io.out(usage);
      return sub === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown zone command "${sub}"`, usage);
  }
}

async function create(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: createOptions, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  const name = parseZoneName(positionals[0]!);
  const servers = values['server-url'] ?? [];
  if (servers.length === 0) throw new UsageError('--server-url URL is required (the public URL of each server of the zone)', usage);
  if (values.policy !== undefined && !POLICIES.includes(values.policy)) throw new UsageError('--policy must be open, invite or closed', usage);
  const level = values['host-scripts'];
  if (level !== undefined && !isHostScriptsLevel(level)) throw new UsageError('--host-scripts must be strict, moderate or off', usage);
  const timers: NonNullable<CreateZoneOptions['timers']> = {};
  for (const [flag, key] of [
    ['handle-ttl', 'handleTtl'],
    ['ttl', 'ttl'],
    ['minimum', 'minimum'],
    ['refresh', 'refresh'],
    ['retry', 'retry'],
    ['expire', 'expire'],
    ['tombstone-cooldown', 'tombstoneCooldown'],
    ['recovery-window', 'recoveryWindow'],
  ] as const) {
    const v = intOption(values[flag], flag, usage);
    if (v !== undefined) timers[key] = v;
  }
  const info = await withLocal(values, (ctx) =>
    ctx.zones.create(name, {
      servers,
      ...(values['primary-url'] ? { primary: values['primary-url'] } : {}),
      policy: (values.policy ?? 'open') as RegistrationPolicy,
      allowLoopbackEndpoints: values['allow-loopback-endpoints'] ?? false,
      ...(level !== undefined ? { hostScripts: level } : {}),
      timers,
    }),
  );
  if (values.json) io.out(JSON.stringify(zoneJson(info)));
  else io.out(`created zone ${info.name} (serial ${info.serial}, policy ${info.policy})\nkey thumbprint: ${info.keyThumbprints.join(' ')}`);
  return 0;
}

async function show(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  const info = await withLocal(values, (ctx) => ctx.zones.info(parseZoneName(positionals[0]!)), true);
  if (values.json) {
    io.out(JSON.stringify(zoneJson(info)));
    return 0;
  }
  io.out(
    [
      `zone ${info.name}`,
      `  role: ${info.role}`,
      ...(info.settings?.fencedBy
        ? [
            `  FENCED: ${info.settings.fencedBy.primary} holds serial ${info.settings.fencedBy.serial}, newer, naming itself the primary;`,
            '  this server takes no writes and signs nothing for the zone (idns zone unfence, once that server is retired)',
          ]
        : []),
      `  serial: ${info.serial}`,
      `  policy: ${info.policy}`,
      ...(info.settings
        ? [
            `  host scripts: ${info.settings.hostScripts}`,
            `  tombstone cool-down: ${info.settings.tombstoneCooldown} s`,
            `  recovery window: ${info.settings.recoveryWindow} s`,
          ]
        : []),
      `  handles: ${info.handles}`,
      `  servers: ${info.servers.join(' ')}`,
      ...(info.secondary ? [`  copied from: ${info.secondary.primaries.join(' ')} (trusting keys ${info.secondary.ds.join(' ')})`] : []),
      `  key thumbprints: ${info.keyThumbprints.join(' ')}`,
      ...(info.settings?.rollover ? [`  ${describeRollover(info.settings.rollover)}`] : []),
      ...(info.settings?.autoDs ? [`  follows the ds sets its children ask for: ${info.settings.autoDs.join(' ')}`] : []),
      `  digest: ${info.digest}`,
      `  record: ${info.record}`,
    ].join('\n'),
  );
  return 0;
}

async function publish(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  const name = parseZoneName(positionals[0]!);
  const { ttl, ...publication } = await withLocal(values, (ctx) => ctx.zones.publication(name), true);
  // publication.js brings zod's schemas: loaded by this command only, so that --help and the other commands do without them.
  const { formatDocument, formatTxt, txtName, txtStrings, wellKnownUrl } = await import('../../discovery/publication.js');
  const txt = formatTxt(publication);
  const wellKnown = formatDocument(publication);
  if (values.json) {
    io.out(JSON.stringify({ name: txtName(name), txt, wellKnown }));
    return 0;
  }
  io.out(
    [
      `; DNS: add this record to the DNS zone of ${name} (sign that zone with DNSSEC: resolvers then need no HTTPS confirmation)`,
      `${txtName(name)} ${ttl} IN TXT ${txtStrings(txt).map(zoneFileString).join(' ')}`,
      `; HTTPS: serve this document at ${wellKnownUrl(name)} (Content-Type: application/json)`,
      JSON.stringify(wellKnown),
    ].join('\n'),
  );
  return 0;
}

/** A character-string of a zone file (RFC 1035 5.1): quoted, with `"` and `\` escaped. */
function zoneFileString(text: string): string {
  return `"${text.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

async function list(argv: string[], io: Io): Promise<number> {
  const { values, help } = parseCommand({ usage, options: localOptions, positionals: [] }, argv);
  if (help) return (io.out(usage), 0);
  const zones = await withLocal(values, (ctx) => ctx.zones.list().map((z) => ctx.zones.info(z.name)), true);
  if (values.json) io.out(JSON.stringify(zones.map(zoneJson)));
  else io.out(zones.map((z) => `${z.name}\t${z.role}\tserial ${z.serial}\t${z.policy}\t${z.handles} handles`).join('\n') || '(no zones)');
  return 0;
}

async function invite(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: { ...localOptions, 'valid-for': { type: 'string' } }, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  const validFor = intOption(values['valid-for'], 'valid-for', usage);
  const name = parseZoneName(positionals[0]!);
  const made = await withLocal(values, (ctx) => ctx.zones.createInvite(name, validFor ?? 30 * 24 * 3600));
  const expiresAt = made.expiresAt === null ? null : new Date(made.expiresAt).toISOString();
  if (values.json) io.out(JSON.stringify({ zone: name, code: made.code, expiresAt }));
  else io.out(made.code);
  return 0;
}

async function policy(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE', 'POLICY'] }, argv);
  if (help) return (io.out(usage), 0);
  const p = positionals[1]!;
  if (!POLICIES.includes(p)) throw new UsageError('POLICY must be open, invite or closed', usage);
  const name = parseZoneName(positionals[0]!);
  await withLocal(values, (ctx) => ctx.zones.setPolicy(name, p as RegistrationPolicy));
  if (values.json) io.out(JSON.stringify({ zone: name, policy: p }));
  else io.out(`zone ${name}: policy ${p}`);
  return 0;
}

const isHostScriptsLevel = (v: string): v is HostScriptsLevel => (HOST_SCRIPTS_LEVELS as readonly string[]).includes(v);

async function hostScripts(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE', 'LEVEL'] }, argv);
  if (help) return (io.out(usage), 0);
  const level = positionals[1]!;
  if (!isHostScriptsLevel(level)) throw new UsageError('LEVEL must be strict, moderate or off', usage);
  const name = parseZoneName(positionals[0]!);
  await withLocal(values, (ctx) => ctx.zones.setHostScripts(name, level));
  if (values.json) io.out(JSON.stringify({ zone: name, hostScripts: level }));
  else io.out(`zone ${name}: host scripts ${level}`);
  return 0;
}

/**
 * `zone recovery-window` and `zone tombstone-cooldown`: ZONE SECONDS, set through `set`, and `key` (the
 * setting's name) printed in words as `words`.
 */
async function secondsSetting(
  argv: string[],
  io: Io,
  key: 'recoveryWindow' | 'tombstoneCooldown',
  words: string,
  set: (ctx: LocalContext, name: string, seconds: number) => ZoneSettings,
): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE', 'SECONDS'] }, argv);
  if (help) return (io.out(usage), 0);
  if (!/^\d{1,10}$/.test(positionals[1]!)) throw new UsageError('SECONDS must be a non-negative integer', usage);
  const seconds = Number(positionals[1]);
  const name = parseZoneName(positionals[0]!);
  const settings = await withLocal(values, (ctx) => set(ctx, name, seconds));
  if (values.json) io.out(JSON.stringify({ zone: name, [key]: settings[key] }));
  else io.out(`zone ${name}: ${words} ${settings[key]} s`);
  return 0;
}

async function delegate(argv: string[], io: Io): Promise<number> {
  const options = {
    ...localOptions,
    'server-url': { type: 'string', multiple: true },
    ds: { type: 'string', multiple: true },
    ttl: { type: 'string' },
    'auto-ds': { type: 'boolean' },
  } as const;
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['PARENT', 'CHILD'] }, argv);
  if (help) return (io.out(usage), 0);
  const parent = parseZoneName(positionals[0]!);
  const child = parseZoneName(positionals[1]!);
  const servers = values['server-url'] ?? [];
  const ds = values.ds ?? [];
  if (servers.length === 0) throw new UsageError("--server-url URL is required (the child zone's servers)", usage);
  if (ds.length === 0) throw new UsageError("--ds THUMBPRINT is required (the child zone's key thumbprints)", usage);
  const ttl = intOption(values.ttl, 'ttl', usage);
  const record = await withLocal(values, (ctx) => {
    ctx.zones.delegate(parent, child, { servers, ds, ...(ttl === undefined ? {} : { ttl }), ...(values['auto-ds'] ? { autoDs: true } : {}) });
    return ctx.zones.info(parent);
  });
  const autoDs = values['auto-ds'] === true;
  if (values.json) io.out(JSON.stringify({ parent, child, servers, ds, autoDs, serial: record.serial }));
  else
    io.out(`zone ${parent}: delegated ${child} to ${servers.join(' ')} (serial ${record.serial})${autoDs ? "; it follows the child's requested ds set" : ''}`);
  return 0;
}

async function undelegate(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['PARENT', 'CHILD'] }, argv);
  if (help) return (io.out(usage), 0);
  const parent = parseZoneName(positionals[0]!);
  const child = parseZoneName(positionals[1]!);
  const info = await withLocal(values, (ctx) => {
    ctx.zones.undelegate(parent, child);
    return ctx.zones.info(parent);
  });
  if (values.json) io.out(JSON.stringify({ parent, child, serial: info.serial }));
  else io.out(`zone ${parent}: removed the delegation of ${child} (serial ${info.serial})`);
  return 0;
}

async function secondary(argv: string[], io: Io): Promise<number> {
  const options = {
    ...localOptions,
    primary: { type: 'string', multiple: true },
    ds: { type: 'string', multiple: true },
    credential: { type: 'string' },
  } as const;
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  const name = parseZoneName(positionals[0]!);
  if (!values.primary?.length) throw new UsageError('--primary URL is required (where to copy the zone from)', usage);
  const credential = values.credential === undefined ? null : parseCredential(values.credential);
  const { info, repointed } = await withLocal(values, (ctx) => {
    // A zone held already is re-pointed in place (its copy carries on); a new one needs the key to trust.
    const held = ctx.zones.get(name) !== undefined;
    if (!held && !values.ds?.length) throw new UsageError('--ds THUMBPRINT is required (the zone key to trust)', usage);
    const made = held
      ? ctx.zones.repoint(name, { primaries: values.primary!, ds: values.ds })
      : ctx.zones.createSecondary(name, { primaries: values.primary!, ds: values.ds! });
    if (credential) ctx.credentials.setOwn(name, credential);
    return { info: made, repointed: held };
  });
  if (values.json) io.out(JSON.stringify(zoneJson(info)));
  else io.out(`zone ${name}: ${repointed ? 're-pointed, now a ' : ''}secondary of ${values.primary.join(' ')}; a running server copies it within seconds`);
  return 0;
}

async function digest(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  const info = await withLocal(values, (ctx) => ctx.zones.info(parseZoneName(positionals[0]!)), true);
  if (values.json) io.out(JSON.stringify({ zone: info.name, serial: info.serial, digest: info.digest }));
  else io.out(`${info.name} serial ${info.serial} digest ${info.digest}`);
  return 0;
}

async function bumpSerial(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE', 'SERIAL'] }, argv);
  if (help) return (io.out(usage), 0);
  const name = parseZoneName(positionals[0]!);
  if (!/^\d{1,10}$/.test(positionals[1]!)) throw new UsageError('SERIAL must be a non-negative integer', usage);
  const serial = Number(positionals[1]);
  const now = await withLocal(values, (ctx) => ctx.zones.bumpSerial(name, serial), true);
  if (values.json) io.out(JSON.stringify({ zone: name, serial: now }));
  else io.out(`${name} serial ${now}`);
  return 0;
}

async function rekey(argv: string[], io: Io): Promise<number> {
  const options = {
    ...localOptions,
    'parent-server': { type: 'string', multiple: true },
    submitted: { type: 'boolean' },
    cancel: { type: 'boolean' },
  } as const;
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  const name = parseZoneName(positionals[0]!);
  const parents = values['parent-server'];
  if ((values.submitted || values.cancel) && parents !== undefined)
    throw new UsageError('--submitted and --cancel act on a rollover under way; --parent-server starts one', usage);
  if (values.submitted && values.cancel) throw new UsageError('give --submitted or --cancel, not both', usage);
  const state = await withLocal(
    values,
    (ctx) =>
      values.submitted
        ? submitRollover(ctx.zones, name)
        : values.cancel
          ? cancelRollover(ctx.zones, ctx.clock, name)
          : startRollover(ctx.zones, ctx.clock, name, parents === undefined ? undefined : parseServerUrls(parents, '--parent-server')),
    true,
  );
  if (values.json) io.out(JSON.stringify({ zone: name, rollover: state }));
  else if (values.submitted) io.out(`zone ${name}: noted; the running server takes the next step of the rollover (${state.phase})`);
  else if (values.cancel) io.out(`zone ${name}: rollover abandoned; ${state.newKey} alone signs and is listed; the running server waits for ${state.waiting}`);
  else io.out(`zone ${name}: rolling its key: ${state.newKey} is published beside ${state.oldKey}; the running server waits for ${state.waiting}`);
  return 0;
}

async function deleteZone(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: { ...localOptions, yes: { type: 'boolean' } }, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  const name = parseZoneName(positionals[0]!);
  if (!values.yes) throw new UsageError(`deleting zone ${name} removes its records from this server: add --yes to confirm`, usage);
  await withLocal(values, (ctx) => ctx.zones.deleteZone(name), true);
  if (values.json) io.out(JSON.stringify({ zone: name, deleted: true }));
  else io.out(`zone ${name} deleted here (its key files stay in the data directory's keys/)`);
  return 0;
}

async function witnesses(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand(
    { usage, options: { ...localOptions, url: { type: 'string', multiple: true }, clear: { type: 'boolean' } }, positionals: ['ZONE'] },
    argv,
  );
  if (help) return (io.out(usage), 0);
  const name = parseZoneName(positionals[0]!);
  if (values.url !== undefined && values.clear) throw new UsageError('give --url or --clear, not both', usage);
  const change = values.url !== undefined || values.clear === true;
  const settings = await withLocal(values, (ctx) => (change ? ctx.zones.setWitnesses(name, values.url ?? []) : ctx.zones.info(name).settings), true);
  const list = settings?.witnesses ?? [];
  if (values.json) io.out(JSON.stringify({ zone: name, witnesses: list }));
  else io.out(list.length === 0 ? `zone ${name}: no witnesses besides its secondaries` : `zone ${name}: witnesses ${list.join(' ')} (besides its secondaries)`);
  return 0;
}

async function unfence(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  const name = parseZoneName(positionals[0]!);
  const serial = await withLocal(values, (ctx) => ctx.zones.unfence(name), true);
  if (values.json) io.out(JSON.stringify({ zone: name, serial }));
  else io.out(`${name} takes writes again, at serial ${serial}`);
  return 0;
}

async function importZone(argv: string[], io: Io): Promise<number> {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE', 'FILE'] }, argv);
  if (help) return (io.out(usage), 0);
  const name = parseZoneName(positionals[0]!);
  let text: string;
  try {
    text = readFileSync(positionals[1]!, 'utf8');
  } catch (cause) {
    throw new IdnsError('invalid_request', `cannot read ${positionals[1]}: ${(cause as Error).message}`, { cause });
  }
  const started = performance.now();
  const result = await withLocal(values, (ctx) => importHandles(ctx.store, ctx.zones, ctx.clock, name, text));
  const seconds = (performance.now() - started) / 1000;
  const rate = Math.round(result.imported / Math.max(seconds, 0.001));
  if (values.json) io.out(JSON.stringify({ ...result, seconds: Math.round(seconds * 1000) / 1000, perSecond: rate }));
  else {
    io.out(`zone ${name}: imported ${result.imported} handles at serial ${result.serial} in ${seconds.toFixed(1)} s (${rate}/s)`);
    if (result.journal === 'wal') io.out('  another process (a running server?) had the database open: with it stopped, a large import is faster');
  }
  return 0;
}

async function allowTransfer(argv: string[], io: Io): Promise<number> {
  const options = { ...localOptions, name: { type: 'string' }, notify: { type: 'string' } } as const;
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  if (!values.name) throw new UsageError('--name NAME is required (a name for the secondary)', usage);
  const name = parseZoneName(positionals[0]!);
  if (values.notify !== undefined) (await import('../../authority/settings.js')).parseServerUrls([values.notify], '--notify');
  const cred = await withLocal(values, (ctx) => {
    ctx.zones.require(name);
    return ctx.credentials.allow(name, values.name!, values.notify ?? null);
  });
  if (values.json) io.out(JSON.stringify({ zone: name, credential: `${cred.name}:${cred.secret}` }));
  else io.out(`${cred.name}:${cred.secret}`);
  return 0;
}

async function denyTransfer(argv: string[], io: Io): Promise<number> {
  const options = { ...localOptions, name: { type: 'string' } } as const;
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  if (!values.name) throw new UsageError('--name NAME is required', usage);
  const name = parseZoneName(positionals[0]!);
  const removed = await withLocal(values, (ctx) => ctx.credentials.deny(name, values.name!));
  if (!removed) throw new IdnsError('invalid_request', `zone ${name} has no secondary named ${values.name}`);
  io.out(values.json ? JSON.stringify({ zone: name, removed: values.name }) : `zone ${name}: ${values.name} may no longer transfer`);
  return 0;
}

async function promote(argv: string[], io: Io): Promise<number> {
  const options = {
    ...localOptions,
    'key-dir': { type: 'string' },
    'primary-url': { type: 'string' },
    'server-url': { type: 'string', multiple: true },
    policy: { type: 'string' },
  } as const;
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['ZONE'] }, argv);
  if (help) return (io.out(usage), 0);
  if (!values['key-dir']) throw new UsageError('--key-dir DIR is required (where the zone key is)', usage);
  if (!values['primary-url']) throw new UsageError('--primary-url URL is required (the public URL of this server)', usage);
  if (values.policy !== undefined && !POLICIES.includes(values.policy)) throw new UsageError('--policy must be open, invite or closed', usage);
  const name = parseZoneName(positionals[0]!);
  const info = await withLocal(values, (ctx) =>
    ctx.zones.promote(name, values['key-dir']!, {
      primary: values['primary-url']!,
      ...(values['server-url'] ? { servers: values['server-url'] } : {}),
      ...(values.policy ? { policy: values.policy as RegistrationPolicy } : {}),
    }),
  );
  if (values.json) io.out(JSON.stringify(zoneJson(info)));
  else io.out(`zone ${name} is now primary here at serial ${info.serial}, key ${info.keyThumbprints.join(' ')}`);
  return 0;
}

function zoneJson(info: ZoneInfo) {
  return {
    zone: info.name,
    role: info.role,
    serial: info.serial,
    policy: info.policy,
    hostScripts: info.settings?.hostScripts ?? null,
    tombstoneCooldown: info.settings?.tombstoneCooldown ?? null,
    recoveryWindow: info.settings?.recoveryWindow ?? null,
    handles: info.handles,
    servers: info.servers,
    primary: info.settings?.primary ?? null,
    fencedBy: info.settings?.fencedBy ?? null,
    rollover: info.settings?.rollover ?? null,
    parentServers: info.settings?.parentServers ?? null,
    autoDs: info.settings?.autoDs ?? null,
    primaries: info.secondary?.primaries ?? null,
    keyThumbprints: info.keyThumbprints,
    digest: info.digest,
    record: info.record,
  };
}
