import { describe, expect, it } from 'vitest';
import { parseCommand } from '../src/cli/args.js';

const spec = {
  usage: 'usage',
  positionals: ['ZONE'],
  options: { 'server-url': { type: 'string', multiple: true }, json: { type: 'boolean' }, policy: { type: 'string' } },
} as const;

describe('command-line lists', () => {
  it.each([
    [
      ['z', '--server-url', 'a', 'b', 'c'],
      ['a', 'b', 'c'],
    ],
    [
      ['z', '--server-url', 'a', '--server-url', 'b'],
      ['a', 'b'],
    ],
    [
      ['z', '--server-url=a', '--server-url', 'b', 'c', '--json'],
      ['a', 'b', 'c'],
    ],
    [['--server-url', 'a', '--json', 'z'], ['a']],
  ])('%j gives server-url %j', (argv, urls) => {
    const { values, positionals } = parseCommand(spec, argv);
    expect(values['server-url']).toEqual(urls);
    expect(positionals).toEqual(['z']);
  });

  it('keeps single-valued options single', () => {
    expect(() => parseCommand(spec, ['z', '--policy', 'open', 'extra'])).toThrow(/unexpected argument "extra"/);
  });
});

describe('values that look like options', () => {
  const keygen = { usage: 'u', positionals: [], options: { out: { type: 'string' }, ds: { type: 'string', multiple: true } } } as const;
  it("takes a thumbprint starting with - as a value, but not one of the command's own options", () => {
    expect(parseCommand(keygen, ['--ds', '-abc', '--ds', '--def']).values.ds).toEqual(['-abc', '--def']);
    // A missing value is a usage error, never a file named --help.
    expect(() => parseCommand(keygen, ['--out', '--help'])).toThrow(/ambiguous/);
    expect(() => parseCommand(keygen, ['--out', '--ds', 'x'])).toThrow();
  });
});
