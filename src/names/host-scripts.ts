import { createRequire } from 'node:module';
import { domainToASCII, domainToUnicode } from 'node:url';
import { IdnsError } from '../errors.js';
import { quoteForMessage } from './zone.js';

/**
 * UTS #39 (Unicode Security Mechanisms) checks of the host of a new handle, so that `pаypal` (a Cyrillic
 * `а`) or `раураl` (all Cyrillic) cannot be registered beside `paypal`. Per label, on its Unicode form:
 *  - no invisible characters (Default_Ignorable_Code_Point, format, blank glyphs such as U+2800);
 *  - no combining-mark stacking (UTS #39 5.4: no nonspacing mark twice in a row, at most 4 in a row, in NFD);
 *  - only scripts recommended for identifiers (UAX #31 Table 5), mixed only as the restriction level
 *    allows (UTS #39 5.2): `strict` is Highly Restrictive (one script, or Latin with the Han-based
 *    Japanese, Chinese or Korean sets), `moderate` is Moderately Restrictive (also Latin with any one
 *    other recommended script but Cyrillic and Greek, as Firefox and Chrome show IDNs);
 *  - not confusable with an ASCII label: a label whose UTS #39 skeleton (NFD, confusables.txt prototypes,
 *    NFD) is all ASCII is a look-alike of an ASCII name (whole-script `раураl`, Latin `ɡoogle`).
 * Script_Extensions comes from the regex engine's Unicode data; confusables.txt from the `unhomoglyph`
 * package's data, loaded on the first non-ASCII label (ASCII hosts, the common case, never need it).
 */

/** How strictly a zone checks the scripts of new hosts. */
export type HostScriptsLevel = 'strict' | 'moderate' | 'off';

/** The levels a zone setting may take. */
export const HOST_SCRIPTS_LEVELS = ['strict', 'moderate', 'off'] as const;

// UAX #31 Table 5, Recommended Scripts (Unicode 15.1+), by their Unicode property value names.
const RECOMMENDED = [
  'Arabic',
  'Armenian',
  'Bengali',
  'Bopomofo',
  'Cyrillic',
  'Devanagari',
  'Ethiopic',
  'Georgian',
  'Greek',
  'Gujarati',
  'Gurmukhi',
  'Han',
  'Hangul',
  'Hebrew',
  'Hiragana',
  'Kannada',
  'Katakana',
  'Khmer',
  'Lao',
  'Latin',
  'Malayalam',
  'Myanmar',
  'Oriya',
  'Sinhala',
  'Tamil',
  'Telugu',
  'Thaana',
  'Thai',
  'Tibetan',
] as const;
// Built on the first non-ASCII label: Unicode property classes take V8 a while to build, and a process
// that never sees one (the CLI, most servers) should not pay for them at start-up.
let scriptPatterns: { name: string; re: RegExp }[] | undefined;
let anyScript: RegExp | undefined;
// UTS #39 5.1 augmentation: the writing systems that mix Han with a syllabary count as one script.
const AUGMENT: Record<string, string[]> = {
  Han: ['Hanb', 'Jpan', 'Kore'],
  Hiragana: ['Jpan'],
  Katakana: ['Jpan'],
  Hangul: ['Kore'],
  Bopomofo: ['Hanb'],
};
const CJK_SETS = ['Jpan', 'Kore', 'Hanb'];
// Blank glyphs that are neither ignorable nor spaces, yet show nothing (Braille blank, Hangul fillers).
const INVISIBLE_SOURCE = String.raw`[\p{Default_Ignorable_Code_Point}\p{White_Space}\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Cn}\u2800\u115F\u1160\u3164\uFFA0]`;
let invisible: RegExp | undefined;
let nonspacingMark: RegExp | undefined;
const MAX_MARKS_IN_A_ROW = 4;
const ASCII_ONLY = /^[\u0000-\u007f]*$/;

let confusables: Record<string, string> | undefined;

/** confusables.txt as a map from a code point to its prototype; loaded once, when first needed. */
function confusablesTable(): Record<string, string> {
  confusables ??= createRequire(import.meta.url)('unhomoglyph/data.json') as Record<string, string>;
  return confusables;
}

/** The UTS #39 skeleton of a string: NFD, each code point replaced by its confusables.txt prototype, NFD. */
export function skeleton(text: string): string {
  const table = confusablesTable();
  let out = '';
  for (const ch of text.normalize('NFD')) out += table[ch] ?? ch;
  return out.normalize('NFD');
}

const codePoint = (ch: string): string => `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

function refuse(host: string, label: string, problem: string): never {
  const shown = label === host ? quoteForMessage(label) : `${quoteForMessage(label)} of ${quoteForMessage(host)}`;
  throw new IdnsError('confusable_host', `host label ${shown} ${problem}; this zone refuses look-alike hosts (UTS #39)`);
}

/**
 * Checks every label of an ASCII (A-label) host at `level`; throws `confusable_host` naming the label and
 * what is wrong with it (the scripts it mixes, the character, the ASCII name it imitates).
 */
export function assureHostScripts(host: string, level: HostScriptsLevel): void {
  if (level === 'off' || !host.includes('xn--')) return; // an LDH label is ASCII: one script, nothing to imitate
  for (const label of host.split('.')) {
    if (!label.startsWith('xn--')) continue;
    const unicode = domainToUnicode(label);
    // The host was normalised by UTS #46 already; a label that does not round-trip is not what it claims.
    if (unicode === '' || unicode.startsWith('xn--') || domainToASCII(unicode) !== label) refuse(host, label, 'is not a valid IDNA label');
    checkLabel(host, unicode, level);
  }
}

function checkLabel(host: string, label: string, level: Exclude<HostScriptsLevel, 'off'>): void {
  // Common and Inherited characters (digits, '-', most combining marks) go with any script (UTS #39 5.1).
  anyScript ??= /^[\p{Script_Extensions=Common}\p{Script_Extensions=Inherited}]$/u;
  scriptPatterns ??= RECOMMENDED.map((name) => ({ name, re: new RegExp(`^\\p{Script_Extensions=${name}}$`, 'u') }));
  invisible ??= new RegExp(INVISIBLE_SOURCE, 'u');
  nonspacingMark ??= /^\p{Mn}$/u;
  const hidden = invisible.exec(label);
  if (hidden) refuse(host, label, `contains the invisible character ${codePoint(hidden[0])}`);

  let run = 0;
  let previous = '';
  for (const ch of label.normalize('NFD')) {
    if (!nonspacingMark.test(ch)) {
      run = 0;
      previous = ch;
      continue;
    }
    run += 1;
    if (ch === previous) refuse(host, label, `repeats the combining mark ${codePoint(ch)}`);
    if (run > MAX_MARKS_IN_A_ROW) refuse(host, label, `stacks more than ${MAX_MARKS_IN_A_ROW} combining marks on one character`);
    previous = ch;
  }

  // The script set of each character that has one (Common and Inherited go with any), augmented.
  const sets: Set<string>[] = [];
  const seen: string[] = [];
  for (const ch of label) {
    if (anyScript.test(ch)) continue;
    const scripts = scriptPatterns.filter((s) => s.re.test(ch)).map((s) => s.name);
    if (scripts.length === 0) refuse(host, label, `contains ${codePoint(ch)}, of a script not recommended for identifiers (UAX #31)`);
    for (const s of scripts) if (!seen.includes(s)) seen.push(s);
    sets.push(new Set(scripts.flatMap((s) => [s, ...(AUGMENT[s] ?? [])])));
  }
  if (intersect(sets).size === 0 && !mixAllowed(sets, level)) {
    refuse(
      host,
      label,
      `mixes the scripts ${seen.join(', ')} (${level === 'strict' ? 'only Latin with Han and kana, Hangul or Bopomofo may mix' : 'Latin mixes with one other script, never Cyrillic or Greek'})`,
    );
  }

  const sk = skeleton(label);
  if (ASCII_ONLY.test(sk)) refuse(host, label, `(${seen.join(', ') || 'no script'}) can be mistaken for the ASCII name "${sk.toLowerCase()}"`);
}

/** UTS #39 5.2: may these scripts, which share none, share a label at this restriction level? */
function mixAllowed(sets: Set<string>[], level: 'strict' | 'moderate'): boolean {
  const others = sets.filter((s) => !s.has('Latin'));
  if (others.length === 0) return false;
  const rest = intersect(others);
  if (rest.size === 0) return false;
  if (CJK_SETS.some((s) => rest.has(s))) return true;
  return level === 'moderate' && !rest.has('Cyrillic') && !rest.has('Greek');
}

function intersect(sets: Set<string>[]): Set<string> {
  if (sets.length === 0) return new Set(['*']); // only Common/Inherited characters: no conflict
  let result = new Set(sets[0]);
  for (const s of sets.slice(1)) result = new Set([...result].filter((x) => s.has(x)));
  return result;
}
