import { parseCommand, UsageError, type Io } from '../args.js';
import { describeRollover } from '../../authority/rollover-state.js';
import type { RolloverState } from '../../authority/settings.js';

const usage = `usage: idns ctl <command> [ZONE] [--data DIR] [--config FILE] [--json]

Talks to the server running on the data directory, through its control socket DIR/control.sock
(mode 0600: only the server's own user), as knotc does:
  status          Zones, roles and serials; for secondaries the source's serial, whether behind,
                  the last good check, the last error and the transfers; fences of primaries.
  refresh ZONE    A secondary checks its source now (and transfers what is new); prints the outcome.
  retransfer ZONE A secondary takes a full transfer now, whatever the serials say.
  notify ZONE     Sends the zone's notifies again now; prints their targets.
  reload          Reads the TLS certificate and key files again (a renewed certificate, no restart).`;

const COMMANDS: Record<string, { method: 'GET' | 'POST'; zone: boolean }> = {
  status: { method: 'GET', zone: false },
  refresh: { method: 'POST', zone: true },
  retransfer: { method: 'POST', zone: true },
  notify: { method: 'POST', zone: true },
  reload: { method: 'POST', zone: false },
};

/** `idns ctl ...` */
export async function ctl(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') return sub === undefined ? (io.err(usage), 2) : (io.out(usage), 0);
  const command = COMMANDS[sub];
  if (command === undefined) throw new UsageError(`unknown ctl command "${sub}"`, usage);
  const { values, positionals, help } = parseCommand(
    { usage, options: { data: { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean' } }, positionals: command.zone ? ['ZONE'] : [] },
    rest,
  );
  if (help) return (io.out(usage), 0);
  const [{ loadConfig }, { controlSocketPath }, { existsSync }, { Client }, { IdnsError }, { parseZoneName }, { ROOT_IN_PATH }] = await Promise.all([
    import('../../config.js'),
    import('../../http/control.js'),
    import('node:fs'),
    import('undici'),
    import('../../errors.js'),
    import('../../names/zone.js'),
    import('../../http/routes/zones.js'),
  ]);
  const dataDir = loadConfig({ data: values.data, config: values.config }).dataDir;
  const socketPath = controlSocketPath(dataDir);
  if (!existsSync(socketPath)) throw new IdnsError('invalid_config', `no server runs on ${dataDir} (no control socket ${socketPath})`);
  const zone = command.zone ? parseZoneName(positionals[0]!) : null;
  const path = zone === null ? `/${sub}` : `/zones/${zone === '.' ? ROOT_IN_PATH : encodeURIComponent(zone)}/${sub}`;
  const client = new Client('http://localhost', { socketPath, headersTimeout: 600_000, bodyTimeout: 600_000 });
  let status: number;
  let body: unknown;
  try {
    const res = await client.request({ path, method: command.method });
    status = res.statusCode;
    body = await res.body.json();
  } catch (cause) {
    throw new IdnsError('network_error', `the server on ${dataDir} did not answer on ${socketPath}: ${(cause as Error).message}`, { cause });
  } finally {
    await client.close();
  }
  const error = (body as { error?: { code?: string; message?: string } } | null)?.error;
  if (status >= 400 || error) throw new IdnsError((error?.code ?? 'internal') as never, error?.message ?? `the control socket answered ${status}`);
  if (values.json) io.out(JSON.stringify(body));
  else io.out(describe(sub, body));
  return 0;
}

/** A command's answer in lines for people. */
function describe(command: string, body: unknown): string {
  if (command === 'status') {
    const s = body as { url: string; zones: Record<string, unknown>[] };
    return [
      `server ${s.url}`,
      ...s.zones.map((z) =>
        z.role === 'primary'
          ? `  ${String(z.zone)}: primary, serial ${String(z.serial)}${z.fencedBy ? `, FENCED by ${JSON.stringify(z.fencedBy)}` : ''}${z.rollover ? `, ${describeRollover(z.rollover as RolloverState)}` : ''}`
          : `  ${String(z.zone)}: secondary, serial ${String(z.serial)}, source at ${String(z.primarySerial)}${z.behind ? ' (behind)' : ''}${z.lastError ? `, last error: ${String(z.lastError)}` : ''}`,
      ),
    ].join('\n');
  }
  if (command === 'notify') return `notifies sent to: ${(body as { targets: string[] }).targets.join(' ') || '(no targets)'}`;
  if (command === 'reload') return `tls: ${(body as { tls: string }).tls}`;
  const s = body as { serial: number | null; lastError: string | null; transfers: { full: number; incremental: number; failed: number } };
  return `serial ${String(s.serial)}${s.lastError ? `, last error: ${s.lastError}` : ''}; transfers ${s.transfers.full} full, ${s.transfers.incremental} incremental, ${s.transfers.failed} failed`;
}
