import { parseCommand, UsageError, type Io } from '../args.js';

const usage = `usage: idns witness show [--data DIR] [--config FILE] [--json]

show   Prints this server's witness key: the name its cosignatures are signed under, its
       thumbprint (what resolvers name with --witness THUMBPRINT) and its public key. The key is
       DIR/keys/witness.jwk (mode 0600), made on first use.`;

/** `idns witness` */
export async function witness(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') return sub === undefined ? (io.err(usage), 2) : (io.out(usage), 0);
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
