import { existsSync, readFileSync } from 'node:fs';
import type { ChangeResult } from '../../authority/changes.js';
import { systemClock } from '../../clock.js';
import { signChangeRequest, type ChangeIntent, type OwnerLinks } from '../../client/requests.js';
import type { LocalContext } from '../../local-context.js';
import { IdnsError } from '../../errors.js';
import { readKeyFile } from '../../authority/keyring.js';
import { parseHandle } from '../../names/handle.js';
import type { PrivateJwk, PublicJwk, SigningKey } from '../../records/keys.js';
import { thumbprint } from '../../records/keys.js';
import { readPublicKeyFile } from '../public-key-file.js';
import { operatorAct } from '../../authority/operator-acts.js';
import { SHA256_B64U, type HandleFields } from '../../records/types.js';
import { intOption, DEFAULT_SERVER, parseCommand, UsageError, type Io, type OptionValues } from '../args.js';
import { localOptions, openLocal } from '../local.js';
import { decodePayload } from '../../authority/editor.js';
import { handleHistory } from '../../authority/history.js';
import type { LogEntry } from '../../client/handle-log.js';
import { decodeCompact } from '../../records/jws.js';
import { OPERATOR_TYP } from '../../records/operator-entry.js';

const usage = `usage: idns handle <command> HANDLE ... [--server URL | --data DIR] [--json]

Commands (each request is signed with your key; --server sends it to a server over HTTP,
default ${DEFAULT_SERVER}; --data applies it directly to a data directory as the operator,
which is how handles are registered in a closed zone):
  register HANDLE --key FILE --endpoint URL [--invite CODE] [--add-key FILE...] [LINKS]
        Registers HANDLE with the public key of FILE (which signs the request), and the
        keys of the --add-key files.
  update HANDLE --key FILE [--endpoint URL] [--add-key FILE...] [--remove-key THUMBPRINT...] [LINKS]
        Changes the endpoint, the key set or the links; signed by a current key. What is
        not given stays as it is.

LINKS (owner-signed, shown in WebFinger and in lookups):
  --profile URL | --no-profile          the handle's profile page (https)
  --also-known-as HANDLE|URL... | --no-also-known-as
        other names of the same person (up to 8): replaces the whole list
  --moved-to HANDLE | --no-moved-to     announces a move (--moved-to '' also clears it);
        resolvers report it and never follow it
  rotate HANDLE --key FILE --new-key FILE
        Replaces every key of HANDLE by the key in --new-key; signed by a current key.

RECOVERY KEYS (docs/protocol.md §6.6): keys kept offline that may undo a change within the
zone's recovery window (default 72 hours), so that a stolen everyday key can be undone.
  --recovery-key FILE...   (register, update) sets the handle's recovery keys (1-4, PRIVATE
        key files: each signs the request that adds it); update keeps the current ones
        unless given, or --no-recovery removes them.
  recover HANDLE --key RECOVERY_FILE --to OP --new-key FILE --endpoint URL
        Undoes every change after entry OP (an op id from 'idns handle log'): the handle's
        keys become the key of --new-key, signed by a recovery key the handle had at OP.

Every key added to a handle must sign the request that adds it (proof of possession), so
--add-key and --new-key take the PRIVATE key file of the added key, never a thumbprint.
  delete HANDLE --key FILE
        Deletes HANDLE; signed by a current key.
  show HANDLE   The verified current record (same as idns resolve).
  log HANDLE    The signed history of HANDLE's changes.
  watch HANDLE --key FILE... [--state FILE] [--witness THUMBPRINT... [--witness-quorum N]]
        Checks that every change of HANDLE since the last watch was yours: reads its history
        from every server of its zone (--server: one of them), verifies it, checks that the
        servers agree and that each new entry was signed by one of the --key files (yours;
        public or private). It follows the zone's log too: every server's checkpoint, and the
        one seen last time, must be a prefix of the largest, and each new entry must be in it
        (inclusion proofs); with --witness, that checkpoint must be cosigned by N of these
        witnesses within the hour (what resolvers requiring them accept). Exit 0: all yours;
        3: someone else changed it (the zone's operator, another key, a history rewritten or
        forked between servers or since the last run, an entry outside the log); 1: it could
        not check. --state (default ~/.local/state/idns/watch/HANDLE.json) keeps the last entry
        and checkpoint seen. Run it from cron; docs/security.md says what it does not see.

Operator acts (with --data only; each is an operator entry in the handle's history, signed by the
zone key, so everyone sees that the operator made it, not the owner):
  takedown HANDLE --reason TEXT --data DIR
        Deletes HANDLE; nobody may register it again for the zone's tombstone cool-down.
  transfer HANDLE --endpoint URL --public-key FILE... --reason TEXT --data DIR
        Gives HANDLE a new endpoint and the public keys of the files (a court order);
        answers then rest on the operator's word until the new owner changes it.`;

const options = {
  ...localOptions,
  server: { type: 'string' },
  key: { type: 'string' },
  'new-key': { type: 'string' },
  endpoint: { type: 'string' },
  invite: { type: 'string' },
  'add-key': { type: 'string', multiple: true },
  'remove-key': { type: 'string', multiple: true },
  profile: { type: 'string' },
  'no-profile': { type: 'boolean' },
  'also-known-as': { type: 'string', multiple: true },
  'no-also-known-as': { type: 'boolean' },
  'moved-to': { type: 'string' },
  'no-moved-to': { type: 'boolean' },
  reason: { type: 'string' },
  'public-key': { type: 'string', multiple: true },
  'recovery-key': { type: 'string', multiple: true },
  'no-recovery': { type: 'boolean' },
  to: { type: 'string' },
} as const;

type Values = OptionValues<typeof options>;

/** `idns handle ...` */
export async function handle(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    if (sub === undefined) io.err(usage);
    else io.out(usage);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'watch') return watch(rest, io);
  if (!['register', 'update', 'rotate', 'recover', 'delete', 'show', 'log', 'takedown', 'transfer'].includes(sub))
    throw new UsageError(`unknown handle command "${sub}"`, usage);
  const { values, positionals, help } = parseCommand({ usage, options, positionals: ['HANDLE'] }, rest);
  if (help) return (io.out(usage), 0);
  if (values.server !== undefined && values.data !== undefined) throw new UsageError('give either --server or --data, not both', usage);
  const { handle } = parseHandle(positionals[0]!);
  if (sub === 'takedown' || sub === 'transfer') return operatorCommand(sub, handle, values, io);
  // show and log only read: they never make a data directory.
  const target =
    values.data !== undefined ? new LocalTarget(await openLocal(values, sub === 'show' || sub === 'log')) : new RemoteTarget(values.server ?? DEFAULT_SERVER);
  try {
    switch (sub) {
      case 'show':
        return await show(target, handle, values, io);
      case 'log':
        return await log(target, handle, values, io);
      default:
        return await change(sub as 'register' | 'update' | 'rotate' | 'recover' | 'delete', target, handle, values, io);
    }
  } finally {
    await target.close();
  }
}

async function watch(argv: string[], io: Io): Promise<number> {
  const watchOptions = {
    json: { type: 'boolean' },
    server: { type: 'string' },
    key: { type: 'string', multiple: true },
    state: { type: 'string' },
    witness: { type: 'string', multiple: true },
    'witness-quorum': { type: 'string' },
  } as const;
  const { values, positionals, help } = parseCommand({ usage, options: watchOptions, positionals: ['HANDLE'] }, argv);
  if (help) return (io.out(usage), 0);
  const { handle } = parseHandle(positionals[0]!);
  const keys = values.key ?? [];
  if (keys.length === 0) throw new UsageError('--key FILE is required: your key files (each key of the handle that is yours)', usage);
  if (values['witness-quorum'] !== undefined && !values.witness) throw new UsageError('--witness-quorum goes with --witness', usage);
  const witnesses = values.witness ?? [];
  const quorum = intOption(values['witness-quorum'], 'witness-quorum', usage) ?? witnesses.length;
  if (witnesses.length > 0 && (quorum < 1 || quorum > new Set(witnesses).size))
    throw new UsageError(`--witness-quorum is 1 to ${new Set(witnesses).size}`, usage);
  const [{ watchHandle }, { DEFAULT_WITNESS_FRESHNESS_SECONDS }] = await Promise.all([import('./handle-watch.js'), import('../../transparency/witnessed.js')]);
  const policy = witnesses.length === 0 ? null : { witnesses: [...new Set(witnesses)], quorum, freshnessSeconds: DEFAULT_WITNESS_FRESHNESS_SECONDS };
  return watchHandle(handle, { server: values.server ?? DEFAULT_SERVER, keys, state: values.state, json: values.json === true, witnesses: policy }, io);
}

async function operatorCommand(sub: 'takedown' | 'transfer', handle: string, values: Values, io: Io): Promise<number> {
  if (values.data === undefined) throw new UsageError(`handle ${sub} is the operator's: it needs --data DIR (the zone's data directory)`, usage);
  if (!values.reason) throw new UsageError("--reason TEXT is required: it is written into the handle's history", usage);
  let act: Parameters<typeof operatorAct>[3];
  if (sub === 'takedown') act = { action: 'takedown', reason: values.reason };
  else {
    if (!values.endpoint) throw new UsageError('--endpoint URL is required', usage);
    const files = values['public-key'] ?? [];
    if (files.length === 0) throw new UsageError("--public-key FILE is required (the new owner's public key, a JWK)", usage);
    act = { action: 'transfer', reason: values.reason, state: { endpoint: values.endpoint, keys: files.map((f) => readPublicKeyFile(f, '--public-key')) } };
  }
  const ctx = await openLocal(values);
  try {
    const result = operatorAct(ctx.store, ctx.zones, handle, act);
    if (values.json) io.out(JSON.stringify(result));
    else io.out(`${result.action} ${result.handle}: done by the operator in zone ${result.zone} at serial ${result.serial} (op ${result.op})`);
    return 0;
  } finally {
    await ctx.close();
  }
}

/** A public key from a JWK file (a private key file gives its public half). */

async function change(sub: 'register' | 'update' | 'rotate' | 'recover' | 'delete', target: Target, handle: string, values: Values, io: Io): Promise<number> {
  if (!values.key) throw new UsageError('--key FILE is required (the private key that signs the request)', usage);
  const key = readKeyFile(values.key, 'key file');
  const privateJwk = exportPrivate(key);
  let intent: ChangeIntent;
  // The private keys of the keys this request adds besides the signer's: each signs it (proof of possession).
  let added: SigningKey[] = [];
  if (sub === 'register') {
    if (!values.endpoint) throw new UsageError('--endpoint URL is required', usage);
    added = (values['add-key'] ?? []).map((file) => readAddedKey(file, '--add-key'));
    const keys = [key.publicJwk, ...added.map((k) => k.publicJwk)];
    const recovery = recoveryFrom(values, {}, added);
    intent = {
      action: 'register',
      handle,
      endpoint: values.endpoint,
      keys,
      ...(values.invite ? { invite: values.invite } : {}),
      ...linksFrom(values, {}),
      ...recovery,
    };
  } else if (sub === 'recover') {
    if (!values.to) throw new UsageError("--to OP is required: the entry to go back to (an op from 'idns handle log')", usage);
    if (!values['new-key']) throw new UsageError('--new-key FILE is required: the key that replaces the stolen one', usage);
    if (!values.endpoint) throw new UsageError('--endpoint URL is required', usage);
    const next = readAddedKey(values['new-key'], '--new-key');
    added = [next];
    // The recovery keys stay as given, else the signer's own: the state it goes back to had it.
    const recovery = values['recovery-key'] ? recoveryFrom(values, {}, added) : { recovery: [key.publicJwk] };
    intent = { action: 'update', handle, endpoint: values.endpoint, keys: [next.publicJwk], prev: values.to, ...linksFrom(values, {}), ...recovery };
  } else {
    const current = await target.current(handle);
    if (sub === 'delete') {
      intent = { action: 'delete', handle, prev: current.op };
    } else if (sub === 'rotate') {
      if (!values['new-key']) throw new UsageError('--new-key FILE is required', usage);
      const next = readAddedKey(values['new-key'], '--new-key');
      if (!current.keys.some((k) => thumbprint(k) === next.kid)) added = [next];
      intent = {
        action: 'update',
        handle,
        endpoint: values.endpoint ?? current.endpoint,
        keys: [next.publicJwk],
        prev: current.op,
        ...linksFrom({}, current),
        ...recoveryFrom({}, current, added),
      };
    } else {
      let keys: PublicJwk[] = current.keys;
      added = (values['add-key'] ?? []).map((file) => readAddedKey(file, '--add-key'));
      for (const k of added) {
        if (keys.some((held) => thumbprint(held) === k.kid)) throw new UsageError(`--add-key ${k.kid} is already a key of ${handle}`, usage);
        keys = [...keys, k.publicJwk];
      }
      const removed = new Set(values['remove-key'] ?? []);
      keys = keys.filter((k) => !removed.has(thumbprint(k)));
      if (keys.length === 0) throw new UsageError('the update would leave the handle without keys', usage);
      intent = {
        action: 'update',
        handle,
        endpoint: values.endpoint ?? current.endpoint,
        keys,
        prev: current.op,
        ...linksFrom(values, current),
        ...recoveryFrom(values, current, added),
      };
    }
  }
  if (sub === 'rotate' || sub === 'delete') assureNoLinkFlags(values, sub);
  if (sub !== 'register' && sub !== 'update' && sub !== 'recover' && (values['recovery-key'] || values['no-recovery'])) {
    throw new UsageError(`handle ${sub} takes no --recovery-key or --no-recovery`, usage);
  }
  const result = await target.submit(signChangeRequest(intent, privateJwk, undefined, added.map(exportPrivate)));
  if (values.json) io.out(JSON.stringify(result));
  else io.out(`${result.action} ${result.handle}: accepted in zone ${result.zone} at serial ${result.serial} (op ${result.op})`);
  return 0;
}

async function show(target: Target, handle: string, values: Values, io: Io): Promise<number> {
  const current = await target.current(handle);
  if (values.json) io.out(JSON.stringify(current));
  else {
    io.out(
      [
        handle,
        `  endpoint: ${current.endpoint}`,
        ...(current.profile !== undefined ? [`  profile: ${current.profile}`] : []),
        ...(current.alsoKnownAs !== undefined ? [`  also known as: ${current.alsoKnownAs.join(' ')}`] : []),
        ...(current.movedTo !== undefined ? [`  moved to ${current.movedTo}`] : []),
        `  keys: ${current.keys.map(thumbprint).join(' ')}`,
        ...(current.recovery !== undefined ? [`  recovery keys: ${current.recovery.map(thumbprint).join(' ')}`] : []),
        `  op: ${current.op}`,
      ].join('\n'),
    );
  }
  return 0;
}

/**
 * The links of the new state: each one given on the command line (or cleared by its --no- flag), else the
 * current one, since a request states the whole new state (docs/protocol.md §6).
 */
function linksFrom(values: Values, current: OwnerLinks): OwnerLinks {
  for (const name of ['profile', 'also-known-as', 'moved-to'] as const) {
    if (values[name] !== undefined && values[`no-${name}`]) throw new UsageError(`give --${name} or --no-${name}, not both`, usage);
  }
  const links: OwnerLinks = {};
  const profile = values['no-profile'] ? undefined : (values.profile ?? current.profile);
  if (profile !== undefined && profile !== '') links.profile = profile;
  const aka = values['no-also-known-as'] ? undefined : (values['also-known-as']?.map(aliasArg) ?? current.alsoKnownAs);
  if (aka !== undefined && aka.length > 0) links.alsoKnownAs = aka;
  const movedTo = values['no-moved-to'] ? undefined : (values['moved-to'] ?? current.movedTo);
  if (movedTo !== undefined && movedTo !== '') links.movedTo = handleArg(movedTo, '--moved-to');
  return links;
}

/**
 * The recovery keys of the new state: those of --recovery-key (private key files: the ones new to the
 * handle join `added`, to sign the request), none with --no-recovery, else the current ones.
 */
function recoveryFrom(
  values: Pick<Values, 'recovery-key' | 'no-recovery'>,
  current: { keys?: PublicJwk[]; recovery?: PublicJwk[] },
  added: SigningKey[],
): { recovery?: PublicJwk[] } {
  if (values['recovery-key'] !== undefined && values['no-recovery']) throw new UsageError('give --recovery-key or --no-recovery, not both', usage);
  if (values['no-recovery']) return {};
  if (values['recovery-key'] === undefined) return current.recovery !== undefined ? { recovery: current.recovery } : {};
  const held = new Set([...(current.keys ?? []), ...(current.recovery ?? [])].map(thumbprint));
  const keys = values['recovery-key'].map((file) => readAddedKey(file, '--recovery-key'));
  for (const k of keys) if (!held.has(k.kid) && !added.some((a) => a.kid === k.kid)) added.push(k);
  return { recovery: keys.map((k) => k.publicJwk) };
}

/** An --also-known-as value: a URL as given (the server checks it), or a handle in normalised form. */
function aliasArg(value: string): string {
  return value.includes('://') ? value : handleArg(value, '--also-known-as');
}

/** A handle given as `alice@host`, `@alice@host` or `acct:alice@host`, normalised. */
function handleArg(value: string, flag: string): string {
  const bare = value.replace(/^acct:/i, '').replace(/^@/, '');
  try {
    return parseHandle(bare).handle;
  } catch (cause) {
    throw new UsageError(`${flag} ${JSON.stringify(value)} is not a handle: ${(cause as Error).message}`, usage);
  }
}

/** rotate and delete change no links: a link flag there would be silently ignored, so it is refused. */
function assureNoLinkFlags(values: Values, sub: string): void {
  const given = (['profile', 'no-profile', 'also-known-as', 'no-also-known-as', 'moved-to', 'no-moved-to'] as const).filter((f) => values[f] !== undefined);
  if (given.length > 0) throw new UsageError(`handle ${sub} takes no --${given[0]}; use handle update`, usage);
}

async function log(target: Target, handle: string, values: Values, io: Io): Promise<number> {
  const entries = await target.log(handle);
  if (values.json) io.out(JSON.stringify({ handle, operations: entries }));
  else io.out(describeLog(entries).join('\n'));
  return 0;
}

/**
 * One line per entry: its number, action and id, and who made it when it was not the owner's plain next
 * change: an operator's entry (with its reason), a recovery (with the entry it went back to).
 */
function describeLog(entries: readonly LogEntry[]): string[] {
  const seqOf = new Map(entries.map((e) => [e.op, e.seq]));
  return entries.map((e, i) => {
    const line = `${e.seq}\t${e.action}\t${e.op}`;
    if (e.request === undefined) return line;
    const { header, payload } = decodeCompact(e.request);
    const p = payload as { reason?: unknown; prev?: unknown };
    if (header.typ === OPERATOR_TYP) return `${line}\tby the zone's operator${typeof p.reason === 'string' ? `: ${p.reason}` : ''}`;
    const before = entries[i - 1];
    if (typeof p.prev === 'string' && before !== undefined && p.prev !== before.op && seqOf.has(p.prev)) {
      return `${line}\trecovery: back to entry ${seqOf.get(p.prev)}`;
    }
    return line;
  });
}

const THUMBPRINT = SHA256_B64U;

/**
 * Reads the private key file of a key to add. A thumbprint or a public key cannot sign the request, and
 * the server refuses a key added without its signature, so both are refused here with the reason.
 */
function readAddedKey(path: string, flag: string): SigningKey {
  const why = `every key added to a handle must sign the request that adds it, so ${flag} takes the private key file of that key (made by idns keygen); have its holder run the command, or add it with their key file`;
  if (!existsSync(path)) {
    if (THUMBPRINT.test(path)) throw new UsageError(`${flag} ${path} looks like a thumbprint, not a key file: ${why}`, usage);
    throw new IdnsError('key_unavailable', `${flag} file is missing: ${path}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new IdnsError('invalid_key', `${flag} file ${path} is not a JSON JWK`, { cause });
  }
  if (typeof parsed === 'object' && parsed !== null && !('d' in parsed))
    throw new IdnsError('invalid_key', `${flag} file ${path} holds only a public key: ${why}`);
  return readKeyFile(path, `${flag} file`);
}

function exportPrivate(key: SigningKey): PrivateJwk {
  const jwk = key.privateKey.export({ format: 'jwk' });
  return { kty: 'OKP', crv: 'Ed25519', x: String(jwk.x), d: String(jwk.d) };
}

interface CurrentState extends OwnerLinks {
  endpoint: string;
  keys: PublicJwk[];
  op: string;
}

/** The state a change starts from, as the current record has it (links only when set). */
function stateOf(record: HandleFields): CurrentState {
  const state: CurrentState = { endpoint: record.endpoint, keys: record.keys, op: record.op };
  if (record.profile !== undefined) state.profile = record.profile;
  if (record.alsoKnownAs !== undefined) state.alsoKnownAs = record.alsoKnownAs;
  if (record.movedTo !== undefined) state.movedTo = record.movedTo;
  if (record.recovery !== undefined) state.recovery = record.recovery;
  return state;
}

/** Where handle commands go: a server over HTTP, or the operator's data directory. */
interface Target {
  current(handle: string): Promise<CurrentState>;
  submit(jws: string): Promise<ChangeResult>;
  log(handle: string): Promise<LogEntry[]>;
  close(): Promise<void>;
}

/** The HTTP client's modules (undici, the record verifier): loaded by commands that go to a server, not by --help or --data. */
async function client() {
  const [answers, http] = await Promise.all([import('../../client/answers.js'), import('../../client/http.js')]);
  return { queryAuthoritative: answers.queryAuthoritative, jsonRequest: http.jsonRequest, errorFromBody: http.errorFromBody };
}

class RemoteTarget implements Target {
  constructor(private readonly server: string) {}

  async current(handle: string): Promise<CurrentState> {
    // Read to build the next change, not vouched for: the primary judges the new endpoint by its zone's
    // rules, so a development zone's loopback endpoint must not stop its owner from updating it.
    const { queryAuthoritative } = await client();
    const answer = await queryAuthoritative(this.server, handle, new Map(), systemClock, { allowLoopbackEndpoints: true });
    if (answer.status === 'referral')
      throw new IdnsError('not_authoritative', `${handle} is in zone ${answer.delegation.name}, served by ${answer.delegation.servers.join(' ')}`);
    if (answer.status === 'denial') throw new IdnsError('handle_not_found', `${handle} does not exist (verified denial from zone ${answer.zone})`);
    return stateOf(answer.record);
  }

  async submit(jws: string): Promise<ChangeResult> {
    const { jsonRequest, errorFromBody } = await client();
    const { action, handle } = decodePayload(jws) as { action: string; handle: string };
    const base = this.server.replace(/\/+$/, '');
    const url = action === 'register' ? `${base}/v1/handles` : `${base}/v1/handles/${encodeURIComponent(handle)}`;
    const method = action === 'register' ? 'POST' : action === 'update' ? 'PUT' : 'DELETE';
    let res = await jsonRequest(url, { method, body: { request: jws } });
    // A secondary sends writes on to the zone's primary (307, same method and body); follow a few hops.
    for (let hops = 0; res.status === 307 && hops < 3; hops++) {
      const location = res.headers.location;
      if (typeof location !== 'string' || !/^https?:\/\//.test(location)) break;
      res = await jsonRequest(location, { method, body: { request: jws } });
    }
    const err = errorFromBody(res.body);
    if (err) throw err;
    if (res.status !== 200 && res.status !== 201) throw new IdnsError('bad_response', `${url}: unexpected status ${res.status}`);
    return res.body as ChangeResult;
  }

  async log(handle: string): Promise<LogEntry[]> {
    const { readHandleLog } = await import('../../client/handle-log.js');
    return readHandleLog(this.server, handle);
  }

  async close(): Promise<void> {}
}

class LocalTarget implements Target {
  constructor(private readonly ctx: LocalContext) {}

  async current(handle: string): Promise<CurrentState> {
    const answer = this.ctx.authority.resolve(handle);
    if (answer.status === 'referral') throw new IdnsError('not_authoritative', `${handle} is delegated away from zone ${answer.zone}`);
    if (answer.status === 'denial') throw new IdnsError('handle_not_found', `${handle} does not exist in zone ${answer.zone}`);
    return stateOf(decodePayload(answer.record) as unknown as HandleFields);
  }

  async submit(jws: string): Promise<ChangeResult> {
    return this.ctx.changes.applyNow(jws, { operator: true });
  }

  async log(handle: string): Promise<LogEntry[]> {
    return handleHistory(this.ctx.store, this.ctx.zones, handle);
  }

  close(): Promise<void> {
    return this.ctx.close();
  }
}
