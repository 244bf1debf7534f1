import { writeFileSync } from 'node:fs';
import { IdnsError } from '../../errors.js';
import { generatePrivateJwk, thumbprint } from '../../records/keys.js';
import { parseCommand, UsageError, type Io } from '../args.js';

const usage = `usage: idns keygen --out FILE [--json]

Writes a new Ed25519 private key (JWK) to FILE with mode 0600 and prints its public
key's thumbprint (RFC 7638), which is the key's id in records and requests.
FILE must not exist.`;

/** `idns keygen` */
export function keygen(argv: string[], io: Io): number {
  const { values, help } = parseCommand({ usage, options: { out: { type: 'string' }, json: { type: 'boolean' } }, positionals: [] }, argv);
  if (help) return (io.out(usage), 0);
  if (!values.out) throw new UsageError('--out FILE is required', usage);
  const jwk = generatePrivateJwk();
  try {
    writeFileSync(values.out, `${JSON.stringify(jwk)}\n`, { mode: 0o600, flag: 'wx' });
  } catch (cause) {
    throw new IdnsError('invalid_request', `cannot write ${values.out}: ${(cause as Error).message}`, { cause });
  }
  const { d: _d, ...pub } = jwk;
  const kid = thumbprint(pub);
  if (values.json) io.out(JSON.stringify({ file: values.out, thumbprint: kid, publicKey: pub }));
  else io.out(kid);
  return 0;
}
