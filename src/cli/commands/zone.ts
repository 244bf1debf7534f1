import type { CreateZoneOptions, ZoneInfo } from '../../authority/zones.js';
import { parseZoneName } from '../../names/zone.js';
import type { RegistrationPolicy } from '../../store/zones.js';
import { intOption, parseCommand, UsageError, type Io } from '../args.js';
import { localOptions, withLocal } from '../local.js';

const usage = `usage: idns zone <command> ... [--data DIR] [--json]

Commands (they act on the data directory; a running server sees the change at once):
  create ZONE --server-url URL... [--primary-url URL] [--policy open|invite|closed]
              [--allow-loopback-endpoints] [--handle-ttl S] [--ttl S] [--minimum S]
              [--refresh S] [--retry S] [--expire S]
        Creates a primary zone, its Ed25519 signing key (in DIR/keys, mode 0600) and its
        signed zone record. --server-url lists the public URL(s) of the zone's servers.
  show ZONE     The signed zone record, serial, digest and key thumbprints.
  list          Every zone held in DIR.
  invite ZONE [--valid-for SECONDS]
        Makes a single-use invite code (shown once; only its hash is stored).
  policy ZONE open|invite|closed
        Sets who may register: anyone, holders of an invite code, or only the operator.
  delegate PARENT CHILD --server-url URL... --ds THUMBPRINT... [--ttl S]
        Delegates CHILD (below PARENT) to its own servers; --ds lists the thumbprints of
        the child zone's keys (printed by zone create/show where the child is held).
  undelegate PARENT CHILD
        Removes the delegation.`;

const POLICIES = ['open', 'invite', 'closed'];

const createOptions = {
  ...localOptions,
  'server-url': { type: 'string', multiple: true },
  'primary-url': { type: 'string' },
  policy: { type: 'string' },
  'allow-loopback-endpoints': { type: 'boolean' },
  'handle-ttl': { type: 'string' },
  ttl: { type: 'string' },
  minimum: { type: 'string' },
  refresh: { type: 'string' },
  retry: { type: 'string' },
  expire: { type: 'string' },
} as const;

/** `idns zone ...` */
export function zone(argv: string[], io: Io): number {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create':
      return create(rest, io);
    case 'show':
      return show(rest, io);
    case 'list':
      return list(rest, io);
    case 'invite':
      return invite(rest, io);
    case 'policy':
      return policy(rest, io);
    case 'delegate':
      return delegate(rest, io);
    case 'undelegate':
      return undelegate(rest, io);
    case undefined:
    case '--help':
    case '-h':
      io.out(usage);
      return sub === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown zone command "${sub}"`, usage);
  }
}

function create(argv: string[], io: Io): number {
  const { values, positionals, help } = parseCommand({ usage, options: createOptions, positionals: ['ZONE'] }, argv);
  if (help) return io.out(usage), 0;
  const name = parseZoneName(positionals[0]!);
  const servers = values['server-url'] ?? [];
  if (servers.length === 0) throw new UsageError('--server-url URL is required (the public URL of each server of the zone)', usage);
  if (values.policy !== undefined && !POLICIES.includes(values.policy)) throw new UsageError('--policy must be open, invite or closed', usage);
  const timers: NonNullable<CreateZoneOptions['timers']> = {};
  for (const [flag, key] of [
    ['handle-ttl', 'handleTtl'],
    ['ttl', 'ttl'],
    ['minimum', 'minimum'],
    ['refresh', 'refresh'],
    ['retry', 'retry'],
    ['expire', 'expire'],
  ] as const) {
    const v = intOption(values[flag], flag, usage);
    if (v !== undefined) timers[key] = v;
  }
  const info = withLocal(values, (ctx) =>
    ctx.zones.create(name, {
      servers,
      ...(values['primary-url'] ? { primary: values['primary-url'] } : {}),
      policy: (values.policy ?? 'open') as RegistrationPolicy,
      allowLoopbackEndpoints: values['allow-loopback-endpoints'] ?? false,
      timers,
    }),
  );
  if (values.json) io.out(JSON.stringify(zoneJson(info)));
  else io.out(`created zone ${info.name} (serial ${info.serial}, policy ${info.policy})\nkey thumbprint: ${info.keyThumbprints.join(' ')}`);
  return 0;
}

function show(argv: string[], io: Io): number {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE'] }, argv);
  if (help) return io.out(usage), 0;
  const info = withLocal(values, (ctx) => ctx.zones.info(parseZoneName(positionals[0]!)));
  if (values.json) {
    io.out(JSON.stringify(zoneJson(info)));
    return 0;
  }
  io.out(
    [
      `zone ${info.name}`,
      `  role: ${info.role}`,
      `  serial: ${info.serial}`,
      `  policy: ${info.policy}`,
      `  handles: ${info.handles}`,
      `  servers: ${info.settings.servers.join(' ')}`,
      `  key thumbprints: ${info.keyThumbprints.join(' ')}`,
      `  digest: ${info.digest}`,
      `  record: ${info.record}`,
    ].join('\n'),
  );
  return 0;
}

function list(argv: string[], io: Io): number {
  const { values, help } = parseCommand({ usage, options: localOptions, positionals: [] }, argv);
  if (help) return io.out(usage), 0;
  const zones = withLocal(values, (ctx) => ctx.zones.list().map((z) => ctx.zones.info(z.name)));
  if (values.json) io.out(JSON.stringify(zones.map(zoneJson)));
  else io.out(zones.map((z) => `${z.name}\t${z.role}\tserial ${z.serial}\t${z.policy}\t${z.handles} handles`).join('\n') || '(no zones)');
  return 0;
}

function invite(argv: string[], io: Io): number {
  const { values, positionals, help } = parseCommand({ usage, options: { ...localOptions, 'valid-for': { type: 'string' } }, positionals: ['ZONE'] }, argv);
  if (help) return io.out(usage), 0;
  const validFor = intOption(values['valid-for'], 'valid-for', usage);
  const name = parseZoneName(positionals[0]!);
  const made = withLocal(values, (ctx) => ctx.zones.createInvite(name, validFor ?? 30 * 24 * 3600));
  const expiresAt = made.expiresAt === null ? null : new Date(made.expiresAt).toISOString();
  if (values.json) io.out(JSON.stringify({ zone: name, code: made.code, expiresAt }));
  else io.out(made.code);
  return 0;
}

function policy(argv: string[], io: Io): number {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['ZONE', 'POLICY'] }, argv);
  if (help) return io.out(usage), 0;
  const p = positionals[1]!;
  if (!POLICIES.includes(p)) throw new UsageError('POLICY must be open, invite or closed', usage);
  const name = parseZoneName(positionals[0]!);
  withLocal(values, (ctx) => ctx.zones.setPolicy(name, p as RegistrationPolicy));
  if (values.json) io.out(JSON.stringify({ zone: name, policy: p }));
  else io.out(`zone ${name}: policy ${p}`);
  return 0;
}

function delegate(argv: string[], io: Io): number {
  const options = { ...localOptions, 'server-url': { type: 'string', multiple: true }, ds: { type: 'string', multiple: true }, ttl: { type: 'string' } } as const;
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['PARENT', 'CHILD'] }, argv);
  if (help) return io.out(usage), 0;
  const parent = parseZoneName(positionals[0]!);
  const child = parseZoneName(positionals[1]!);
  const servers = values['server-url'] ?? [];
  const ds = values.ds ?? [];
  if (servers.length === 0) throw new UsageError('--server-url URL is required (the child zone\'s servers)', usage);
  if (ds.length === 0) throw new UsageError('--ds THUMBPRINT is required (the child zone\'s key thumbprints)', usage);
  const ttl = intOption(values.ttl, 'ttl', usage);
  const record = withLocal(values, (ctx) => {
    ctx.zones.delegate(parent, child, { servers, ds, ...(ttl === undefined ? {} : { ttl }) });
    return ctx.zones.info(parent);
  });
  if (values.json) io.out(JSON.stringify({ parent, child, servers, ds, serial: record.serial }));
  else io.out(`zone ${parent}: delegated ${child} to ${servers.join(' ')} (serial ${record.serial})`);
  return 0;
}

function undelegate(argv: string[], io: Io): number {
  const { values, positionals, help } = parseCommand({ usage, options: localOptions, positionals: ['PARENT', 'CHILD'] }, argv);
  if (help) return io.out(usage), 0;
  const parent = parseZoneName(positionals[0]!);
  const child = parseZoneName(positionals[1]!);
  const info = withLocal(values, (ctx) => {
    ctx.zones.undelegate(parent, child);
    return ctx.zones.info(parent);
  });
  if (values.json) io.out(JSON.stringify({ parent, child, serial: info.serial }));
  else io.out(`zone ${parent}: removed the delegation of ${child} (serial ${info.serial})`);
  return 0;
}

function zoneJson(info: ZoneInfo) {
  return {
    zone: info.name,
    role: info.role,
    serial: info.serial,
    policy: info.policy,
    handles: info.handles,
    servers: info.settings.servers,
    primary: info.settings.primary,
    keyThumbprints: info.keyThumbprints,
    digest: info.digest,
    record: info.record,
  };
}
