import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { ThreadPool } from '../src/threads/pool.js';
import { fromWire, toWire } from '../src/threads/wire.js';

// The one thread abstraction (src/threads/), on real worker threads running the real worker side.

const FILE = fileURLToPath(new URL('./support/threads-test-worker.mjs', import.meta.url));

type Job =
  | { kind: 'echo'; value: unknown }
  | { kind: 'wait'; ms: number }
  | { kind: 'bytes'; bytes: Uint8Array }
  | { kind: 'give'; size: number }
  | { kind: 'idns-error' }
  | { kind: 'plain-error' }
  | { kind: 'crash' };
// `any`: the reply differs by job, and each test reads what its own job returns.
type Out = any;

const pools: ThreadPool<Job, Out>[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});
function pool(size: number, workerData: unknown = null): ThreadPool<Job, Out> {
  const p = new ThreadPool<Job, Out>(FILE, { name: 'test', size, workerData });
  pools.push(p);
  return p;
}

describe('ThreadPool', () => {
  it('answers each job with its reply, spreading jobs round robin over its threads, each with its workerData', async () => {
    const p = pool(2, { zone: 'example' });
    const replies = await Promise.all([1, 2, 3, 4].map((value) => p.run({ kind: 'echo', value })));
    expect(replies.map((r) => r.echo)).toEqual([1, 2, 3, 4]);
    expect(replies.every((r) => r.data.zone === 'example')).toBe(true);
    const threads = replies.map((r) => r.threadId);
    expect(threads[0]).toBe(threads[2]);
    expect(threads[1]).toBe(threads[3]);
    expect(threads[0]).not.toBe(threads[1]);
  });

  it('works through the jobs of one thread in the order sent, an async job finishing before the next starts', async () => {
    const p = pool(1);
    const order: string[] = [];
    const slow = p.runOn(0, { kind: 'wait', ms: 100 }).then(() => order.push('slow'));
    const quick = p.runOn(0, { kind: 'echo', value: 'quick' }).then((r) => order.push(`quick after ${r.seen - 1}`));
    await Promise.all([slow, quick]);
    expect(order).toEqual(['slow', 'quick after 1']);
  });

  it('rethrows an IdnsError thrown by a job with its code, message and details; any other error names the thread', async () => {
    const p = pool(1);
    const typed = await p.run({ kind: 'idns-error' }).catch((err: unknown) => err);
    expect(typed).toBeInstanceOf(IdnsError);
    expect(typed).toMatchObject({ code: 'invalid_request', message: 'a typed refusal', details: { line: 3 } });
    const bug = await p.run({ kind: 'plain-error' }).catch((err: unknown) => err);
    expect(bug).not.toBeInstanceOf(IdnsError);
    expect((bug as Error).message).toBe('test thread: a bug');
    // A job's error is its own: the thread goes on answering.
    expect((await p.run({ kind: 'echo', value: 'still here' })).echo).toBe('still here');
  });

  it('fails the jobs of a thread that dies, and only those; the next job sent there starts a new thread', async () => {
    const p = pool(2);
    const before = await p.runOn(0, { kind: 'echo', value: 0 });
    const other = p.runOn(1, { kind: 'wait', ms: 300 });
    const crashed = p.runOn(0, { kind: 'crash' }).catch((err: unknown) => err);
    const queued = p.runOn(0, { kind: 'echo', value: 'behind the crash' }).catch((err: unknown) => err);
    expect(((await crashed) as Error).message).toMatch(/a test thread failed: a test thread exited with code 3/);
    expect(((await queued) as Error).message).toMatch(/a test thread failed/);
    expect((await other).waited).toBe(300);
    const after = await p.runOn(0, { kind: 'echo', value: 1 });
    expect(after.threadId).not.toBe(before.threadId);
    expect(after.seen).toBe(1);
  });

  it('hands over the buffers it is told to transfer, both ways, instead of copying them', async () => {
    const p = pool(1);
    const bytes = new Uint8Array(4096);
    expect((await p.run({ kind: 'bytes', bytes }, [bytes.buffer])).length).toBe(4096);
    expect(bytes.byteLength).toBe(0);
    const given = (await p.run({ kind: 'give', size: 1000 })) as Uint8Array;
    expect(given.byteLength).toBe(1000);
    expect(given[999]).toBe(7);
  });

  it('refuses the jobs still waiting when closed, and every job after', async () => {
    const p = pool(1);
    const waiting = p.run({ kind: 'wait', ms: 5_000 }).catch((err: unknown) => err);
    await p.close();
    expect(((await waiting) as Error).message).toBe('the test threads were stopped');
    await expect(p.run({ kind: 'echo', value: 1 })).rejects.toThrow('the test threads were stopped');
  });
});

describe('the wire format of errors', () => {
  it('carries an IdnsError across and back unchanged, and any other error as its message', () => {
    const back = fromWire(toWire(new IdnsError('transfer_failed', 'bad record', { details: { key: 'a' } })), 'digest');
    expect(back).toBeInstanceOf(IdnsError);
    expect(back).toMatchObject({ code: 'transfer_failed', message: 'bad record', details: { key: 'a' } });
    expect(toWire(new RangeError('x'))).toEqual({ code: null, message: 'x' });
    expect(fromWire(toWire('not an error'), 'writer').message).toBe('writer thread: not an error');
  });
});
