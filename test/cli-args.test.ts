import { describe, expect, it } from 'vitest';
import { parseCommand } from '../src/cli/args.js';

const spec = { usage: 'usage', positionals: ['ZONE'], options: { 'server-url': { type: 'string', multiple: true }, json: { type: 'boolean' }, policy: { type: 'string' } } } as const;

describe('command-line lists', () => {
  it.each([
    [['z', '--server-url', 'a', 'b', 'c'], ['a', 'b', 'c']],
    [['z', '--server-url', 'a', '--server-url', 'b'], ['a', 'b']],
    [['z', '--server-url=a', '--server-url', 'b', 'c', '--json'], ['a', 'b', 'c']],
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
