import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A command-line mistake: printed with the command's usage, exit status 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The server client commands (handle, resolve) talk to unless given --server. */
/** How `idns lookup` and `idns resolve` mark a handle whose state its owner did not sign (docs/protocol.md §6.2). */
export const OPERATOR_ASSERTED =
  "  OPERATOR-ASSERTED: this state was set by the zone's operator (an import or a court-ordered transfer), not signed by the handle's owner";

export const DEFAULT_SERVER = 'http://127.0.0.1:8053';

type Options = NonNullable<ParseArgsConfig['options']>;

/** What a command declares: its usage text, its options, how many positionals it takes. */
export interface CommandSpec<O extends Options> {
  usage: string;
  options: O;
  positionals: readonly string[];
}

/** Output of every command: lines for people, or one JSON document with --json. */
export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** The values of parsed options: booleans, strings, or string lists for `multiple` options. */
export type OptionValues<O extends Options> = {
  [K in keyof O]?: O[K] extends { type: 'boolean' } ? boolean : O[K] extends { multiple: true } ? string[] : string;
};

/** Parses a command's arguments strictly; unknown options and missing positionals are usage errors. */
export function parseCommand<O extends Options>(spec: CommandSpec<O>, argv: string[]): { values: OptionValues<O>; positionals: string[]; help: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args: expandLists(spec.options, argv),
      options: { ...spec.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(optionMistake((err as Error).message, Object.keys(spec.options)), spec.usage);
  }
  const help = (parsed.values as { help?: boolean }).help === true;
  if (!help) {
    if (parsed.positionals.length < spec.positionals.length) {
      throw new UsageError(`missing ${spec.positionals.slice(parsed.positionals.length).join(' ')}`, spec.usage);
    }
    if (parsed.positionals.length > spec.positionals.length) {
      throw new UsageError(`unexpected argument "${parsed.positionals[spec.positionals.length]}"`, spec.usage);
    }
  }
  return { values: parsed.values as OptionValues<O>, positionals: parsed.positionals, help };
}

/**
 * parseArgs's message for an option it does not know, in a line, with the closest option the command has
 * ("unknown option --endpont; did you mean --endpoint?"); any other message as it is.
 */
function optionMistake(message: string, known: readonly string[]): string {
  const m = /^Unknown option '(-{1,2})([^']*)'/.exec(message);
  if (m === null) return message;
  const given = m[2]!;
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const name of [...known, 'help']) {
    const d = editDistance(given, name);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  // A suggestion only when it is close: at most a third of the name's letters differ.
  const close = best !== null && bestDistance <= Math.max(1, Math.floor(best.length / 3));
  return `unknown option ${m[1]}${given}${close ? `; did you mean --${best}?` : ''}`;
}

/** Levenshtein distance: insertions, deletions and substitutions, each 1. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next.push(Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    row = next;
  }
  return row[b.length]!;
}

/**
 * One sub-command's help from its group's usage: the group's first line, then the sub-command's block
 * (its line, `  SUB …`, and the lines indented under it), so that `idns zone create --help` shows only
 * create's. The whole usage when the block is not found.
 */
export function commandUsage(usage: string, command: string): string {
  const lines = usage.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`  ${command} `) || l === `  ${command}`);
  if (start < 0) return usage;
  let end = start + 1;
  while (end < lines.length && lines[end]!.startsWith('   ')) end++;
  return [lines[0]!.replace('<command>', command), '', ...lines.slice(start, end)].join('\n');
}

/**
 * Runs a command group's sub-command with its own help: `--help` anywhere after it prints that
 * sub-command's block of the usage, and a usage error of it shows that block too.
 */
export async function subCommand(usage: string, command: string, argv: readonly string[], io: Io, run: () => number | Promise<number>): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) return (io.out(commandUsage(usage, command)), 0);
  try {
    return await run();
  } catch (err) {
    if (err instanceof UsageError && err.usage === usage) throw new UsageError(err.message, commandUsage(usage, command));
    throw err;
  }
}

/**
 * Options that take several values (`--server-url URL...`) accept them repeated (`--server-url a
 * --server-url b`) or listed after one flag (`--server-url a b`): the values run up to the next option.
 */
function expandLists(options: Options, argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = arg.startsWith('--') && !arg.includes('=') ? arg.slice(2) : null;
    const option = name === null ? undefined : options[name];
    // The next word is this option's value unless it is itself one of the command's options (or --help).
    const next = argv[i + 1];
    const nextIsOption = next !== undefined && next.startsWith('--') && (next.slice(2).split('=')[0]! in options || next === '--help');
    if (option?.type !== 'string' || next === undefined || nextIsOption) {
      out.push(arg);
      continue;
    }
    // `--name=value` form, so that a value starting with '-' (a base64url thumbprint may) is still a value.
    out.push(`${arg}=${argv[++i]!}`);
    if (option.multiple !== true) continue;
    while (i + 1 < argv.length && !argv[i + 1]!.startsWith('-')) out.push(`${arg}=${argv[++i]!}`);
  }
  return out;
}

/** Parses an integer option, or throws a usage error naming it. */
export function intOption(value: string | undefined, name: string, usage: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,10}$/.test(value)) throw new UsageError(`--${name} must be a non-negative integer`, usage);
  return Number(value);
}

/** Parses repeated `ZONE=THUMBPRINT` options into a map. */
export function parseAnchors(values: string[] | undefined, usage: string, parseZone: (z: string) => string): Map<string, string[]> {
  const anchors = new Map<string, string[]>();
  for (const v of values ?? []) {
    const i = v.lastIndexOf('=');
    if (i <= 0 || i === v.length - 1) throw new UsageError(`--anchor takes ZONE=THUMBPRINT, got "${v}"`, usage);
    const zone = parseZone(v.slice(0, i));
    anchors.set(zone, [...(anchors.get(zone) ?? []), v.slice(i + 1)]);
  }
  return anchors;
}
