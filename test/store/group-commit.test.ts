/** GroupCommitter alone, with a hand-driven "transaction": batching rules without a database. */
import { describe, expect, it } from 'vitest';
import { GroupCommitter } from '../../src/store/group-commit.ts';

/** Let the committer's microtasks and its scheduling setImmediate run. */
const tick = async () => {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
};

/** A runner whose transactions finish only when the test says so. */
function manualRunner() {
  const batches: number[][] = [];
  const finish: Array<(err?: Error) => void> = [];
  const run = (batch: readonly number[]) =>
    new Promise<void>((resolve, reject) => {
      batches.push([...batch]);
      finish.push((err) => (err ? reject(err) : resolve()));
    });
  return { run, batches, finish };
}

describe('group committer', () => {
  it('batches writes submitted in one tick into one transaction', async () => {
    const m = manualRunner();
    const gc = new GroupCommitter<number>(m.run);
    const done = [1, 2, 3].map((n) => gc.submit(n));
    await tick();
    expect(m.batches).toEqual([[1, 2, 3]]);
    m.finish[0]!();
    await Promise.all(done);
    expect(gc.stats).toEqual({ writes: 3, transactions: 1, failed: 0, largestBatch: 3 });
  });

  it('holds writes that arrive during a transaction for the next one, and resolves nobody early', async () => {
    const m = manualRunner();
    const gc = new GroupCommitter<number>(m.run);
    const settled: number[] = [];
    void gc.submit(1).then(() => settled.push(1));
    await tick();
    void gc.submit(2).then(() => settled.push(2));
    void gc.submit(3).then(() => settled.push(3));
    await tick();
    expect(m.batches).toEqual([[1]]);
    expect(settled).toEqual([]);
    m.finish[0]!();
    await tick();
    expect(settled).toEqual([1]);
    expect(m.batches).toEqual([[1], [2, 3]]);
    m.finish[1]!();
    await gc.drain();
    expect(settled).toEqual([1, 2, 3]);
  });

  it('rejects every caller of a failed transaction and carries on with the next batch', async () => {
    const m = manualRunner();
    const gc = new GroupCommitter<number>(m.run);
    const failed = [gc.submit(1), gc.submit(2)].map((p) => p.catch((e: Error) => e.message));
    await tick();
    const later = gc.submit(3);
    m.finish[0]!(new Error('disk full'));
    expect(await Promise.all(failed)).toEqual(['disk full', 'disk full']);
    await tick();
    m.finish[1]!();
    await expect(later).resolves.toBeUndefined();
    expect(gc.stats).toMatchObject({ transactions: 2, failed: 1 });
  });

  it('splits a burst larger than maxBatch into bounded transactions', async () => {
    const m = manualRunner();
    const gc = new GroupCommitter<number>(m.run, { maxBatch: 2 });
    const all = [1, 2, 3, 4, 5].map((n) => gc.submit(n));
    for (let i = 0; i < 3; i++) {
      await tick();
      m.finish[i]!();
    }
    await Promise.all(all);
    expect(m.batches).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('runs one transaction per write when disabled', async () => {
    const calls: number[][] = [];
    const gc = new GroupCommitter<number>(async (b) => void calls.push([...b]), { enabled: false });
    await Promise.all([gc.submit(1), gc.submit(2)]);
    expect(calls).toEqual([[1], [2]]);
  });
});
