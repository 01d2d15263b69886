/** The deadline queue alone (src/supervisor/deadlines.ts) on a SimulatedClock: any sequence of moves and removals. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Deadlines, type DeadlineSlot } from '../../src/supervisor/deadlines.ts';
import { CountingClock } from '../machine/policy-rig.ts';

type Slot = DeadlineSlot & { n: number };

describe('Deadlines', () => {
  it('fires every slot once at its last time, in time order, on one clock timeout', () => {
    const op = fc.record({ slot: fc.integer({ min: 0, max: 29 }), at: fc.option(fc.integer({ min: 0, max: 10_000 }), { nil: null }) });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const clock = new CountingClock();
        clock.set(1_000);
        const fired: Array<{ n: number; at: number; now: number }> = [];
        const q = new Deadlines<Slot>(clock, (slot, at) => fired.push({ n: slot.n, at, now: clock.now() }));
        const slots: Slot[] = Array.from({ length: 30 }, (_, n) => ({ n, deadlineAt: 0, deadlineIndex: -1 }));
        const last = new Map<number, number | null>();
        for (const { slot, at } of ops) {
          q.set(slots[slot]!, at === null ? null : 1_000 + at);
          last.set(slot, at === null ? null : 1_000 + at);
        }
        const want = [...last].flatMap(([n, at]) => (at === null ? [] : [{ n, at }]));
        expect(q.size).toBe(want.length);
        expect(clock.live.size).toBe(want.length > 0 ? 1 : 0);
        for (let t = 0; t <= 10_000; t += 250) clock.increment(250);
        expect(fired.map(({ n, at }) => ({ n, at })).sort((a, b) => a.n - b.n)).toEqual(want.sort((a, b) => a.n - b.n));
        for (let i = 1; i < fired.length; i++) expect(fired[i]!.at).toBeGreaterThanOrEqual(fired[i - 1]!.at);
        for (const f of fired) expect(f.now).toBeGreaterThanOrEqual(f.at);
        expect(q.size).toBe(0);
        expect(clock.live.size).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('fires nothing after close', () => {
    const clock = new CountingClock();
    const fired: number[] = [];
    const q = new Deadlines<Slot>(clock, (slot) => fired.push(slot.n));
    q.set({ n: 1, deadlineAt: 0, deadlineIndex: -1 }, 100);
    q.close();
    expect(clock.live.size).toBe(0);
    clock.increment(1_000);
    expect(fired).toEqual([]);
  });
});
