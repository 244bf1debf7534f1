import { describe, expect, it } from 'vitest';
import { LeanHeap } from '../src/lean-heap.js';

describe('LeanHeap (V8 kept lean while full transfers load)', () => {
  it('sets the lean growth at the first hold and V8 own choice again after the last release, once each', () => {
    const set: string[] = [];
    const heap = new LeanHeap((flag) => set.push(flag));
    const first = heap.hold();
    const second = heap.hold();
    expect(set).toEqual(['--heap-growing-percent=50']);
    first();
    first();
    expect(set).toEqual(['--heap-growing-percent=50']);
    second();
    expect(set).toEqual(['--heap-growing-percent=50', '--heap-growing-percent=0']);
    heap.hold()();
    expect(set).toHaveLength(4);
  });

  it('names a flag this V8 knows', async () => {
    const { execFileSync } = await import('node:child_process');
    expect(execFileSync(process.execPath, ['--v8-options'], { encoding: 'utf8' })).toContain('--heap-growing-percent');
  });
});
