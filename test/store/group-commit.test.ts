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

  describe('with two transactions in flight (maxInFlight 2, keyed by workspace)', () => {
    const key = (w: number) => [`ws-${w % 10}`];

    it('runs a write of a free key beside a transaction, and holds a busy key until that one commits', async () => {
      const m = manualRunner();
      const gc = new GroupCommitter<number>(m.run, { maxInFlight: 2, keys: key });
      // 200 writes over two free slots: split in two halves, but every key is in the first half, so the
      // second half waits for it (same-key writes never commit out of order).
      const first = Array.from({ length: 200 }, (_, i) => gc.submit(i));
      await tick();
      expect(m.batches.map((b) => b.length)).toEqual([100]);
      m.finish[0]!();
      await tick();
      expect(m.batches[1]).toEqual(Array.from({ length: 100 }, (_, i) => 100 + i));
      m.finish[1]!();
      await Promise.all(first);

      const a = Array.from({ length: 100 }, (_, i) => gc.submit(i * 10)); // ws-0 only
      await tick();
      expect(m.batches).toHaveLength(3);
      const b = Array.from({ length: 100 }, (_, i) => gc.submit(i * 10 + 1)); // ws-1: free, runs beside it
      const c = gc.submit(5000); // ws-0 again: must wait for transaction 3
      await tick();
      expect(m.batches).toHaveLength(4);
      expect(m.batches[3]).toEqual(Array.from({ length: 100 }, (_, i) => i * 10 + 1));
      m.finish[3]!();
      await Promise.all(b);
      await tick();
      expect(m.batches).toHaveLength(4); // 5000 still held back: ws-0 is in flight
      m.finish[2]!();
      await Promise.all(a);
      await tick();
      expect(m.batches[4]).toEqual([5000]);
      m.finish[4]!();
      await c;
      expect(gc.stats.transactions).toBe(5);
    });

    it('never runs one key in two transactions at once, and commits each key in submission order', async () => {
      // Random arrivals and a random commit order (30 seeds), checked against both invariants.
      for (let seed = 1; seed <= 30; seed++) {
        let x = seed;
        const rand = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), x % n);
        const m = manualRunner();
        const gc = new GroupCommitter<number>(m.run, { maxInFlight: 2, keys: key, maxBatch: 50 });
        const finished = new Set<number>();
        const committed: number[] = [];
        const running = () => m.batches.map((_, t) => t).filter((t) => !finished.has(t));
        const commit = (t: number) => {
          finished.add(t);
          committed.push(...m.batches[t]!);
          m.finish[t]!();
        };
        let next = 0;
        const all: Array<Promise<void>> = [];
        for (let step = 0; step < 40; step++) {
          for (let i = rand(120); i > 0; i--) all.push(gc.submit(next++));
          await tick();
          const now = running();
          expect(now.length).toBeLessThanOrEqual(2);
          if (now.length === 2) {
            const k2 = new Set(m.batches[now[1]!]!.flatMap(key));
            expect(m.batches[now[0]!]!.flatMap(key).filter((k) => k2.has(k)), `seed ${seed}`).toEqual([]);
          }
          if (now.length > 0 && rand(3) > 0) commit(now[rand(now.length)]!);
        }
        for (let guard = 0; committed.length < next; guard++) {
          expect(guard, `seed ${seed}: drained`).toBeLessThan(10_000);
          await tick();
          const now = running();
          if (now.length > 0) commit(now[0]!);
        }
        await Promise.all(all);
        expect(committed.length, `seed ${seed}`).toBe(next);
        for (let k = 0; k < 10; k++) {
          const ofKey = committed.filter((w) => w % 10 === k);
          expect(ofKey, `seed ${seed}, ws-${k} in order`).toEqual([...ofKey].sort((p, q) => p - q));
        }
      }
    });
  });
});
