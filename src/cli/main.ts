// The server's Ed25519 (libsodium), installed before anything signs or verifies.
import '../records/ed25519-sodium.js';
import { createRequire } from 'node:module';
import { IdnsError } from '../errors.js';
import { UsageError, type Io } from './args.js';

const usage = `usage: idns <command> [options]   (idns <command> --help for each; idns --version)

Server side (--data DIR, default ./data):
  serve      Run an identity server for the zones in DIR.
  zone       create | show | list | invite | policy | delegate | undelegate | import |
             secondary | digest | allow-transfer | deny-transfer | promote
  ctl        status | refresh | retransfer | notify | reload: the running server, through its control socket.
  witness    show: this server's witness key (name, thumbprint, public key).
Client side (--server URL, default http://127.0.0.1:8053):
  keygen     Make an Ed25519 key file for a handle.
  handle     register | update | rotate | delete | show | log
  resolve    Ask an authoritative server about a handle and verify the answer.
  lookup     Resolve a handle through the hierarchy (or a resolver), verifying the chain.
Try it:
  demo       Run a small federation (root, example, social.example, a resolver) on loopback.`;

/** This build's version, from its package.json (two levels up from src/cli and from dist/cli alike). */
function version(): string {
  return (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
}

const stdio: Io = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
};

/** Runs the `idns` command line; returns the exit status. */
export async function main(argv: string[], io: Io = stdio): Promise<number> {
  const [command, ...rest] = argv;
  try {
    // Each command loads only its own modules: a client command need not load the server (hono, the
    // store, the resolver's discovery), which halves the start-up of `idns keygen` or `idns handle`.
    switch (command) {
      case 'serve':
        return await (await import('./commands/serve.js')).serve(rest, io);
      case 'keygen':
        return (await import('./commands/keygen.js')).keygen(rest, io);
      case 'zone':
        return await (await import('./commands/zone.js')).zone(rest, io);
      case 'handle':
        return await (await import('./commands/handle.js')).handle(rest, io);
      case 'resolve':
        return await (await import('./commands/resolve.js')).resolve(rest, io);
      case 'lookup':
        return await (await import('./commands/lookup.js')).lookup(rest, io);
      case 'ctl':
        return await (await import('./commands/ctl.js')).ctl(rest, io);
      case 'witness':
        return await (await import('./commands/witness.js')).witness(rest, io);
      case 'demo':
        return await (await import('./commands/demo.js')).demo(rest, io);
      case '--version':
      case '-V':
      case 'version':
        io.out(`idns ${version()}`);
        return 0;
      case '--help':
      case '-h':
      case 'help':
        io.out(usage);
        return 0;
      case undefined:
        io.err(usage);
        return 2;
      default:
        throw new UsageError(`unknown command "${command}"`, usage);
    }
  } catch (err) {
    // With --json a script reads errors as JSON too: the shape of the HTTP API's error bodies.
    const json = argv.includes('--json');
    if (err instanceof UsageError) {
      io.err(json ? JSON.stringify({ error: { code: 'usage', message: err.message } }) : `idns: ${err.message}\n\n${err.usage}`);
      return 2;
    }
    if (err instanceof IdnsError) {
      io.err(json ? JSON.stringify({ error: { code: err.code, message: err.message } }) : `idns: ${err.message} (${err.code})`);
      return 1;
    }
    io.err(`idns: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  }
}
