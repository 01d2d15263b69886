/**
 * A save burst end to end: an editor's "Save" writes 17 files unevenly over 60 s. Through the bus
 * (quiet window 2 s, maxWait 15 s) and the actors (self-fire window 60 s) that costs at most 2 cycles,
 * no provider call overlaps, and the last cycle starts after the last write, so it carries every file.
 */
import { describe, expect, it } from 'vitest';
import { createBus, type Bus } from '../../src/bus/index.ts';
import { schedulerFromClock } from '../../src/supervisor/clock.ts';
import { rig, type Rig } from '../helpers/harness.ts';

const id = 'ws-canvas';
/** Seconds after the burst begins at which each file is written: clustered, gappy, 17 in all. */
const WRITES_S = [0, 0.4, 0.9, 1.3, 3, 3.2, 8, 9.5, 14, 20, 21, 33, 40, 41.5, 50, 55, 59.9];

async function setup(): Promise<{ r: Rig; bus: Bus; t0: number }> {
  const r = rig({ latencyMs: 800 });
  const bus = createBus({ sink: r.sup.busSink(), scheduler: schedulerFromClock(r.clock), quietMs: 2_000, maxWaitMs: 15_000 });
  const ensured = r.sup.ensure(id);
  await r.run(1_000, 100);
  await ensured;
  await r.run(60_000, 1_000); // out of the first start's self-fire window
  return { r, bus, t0: r.clock.now() };
}

/** Play the writes (and optional extra actions at given seconds) against the clock in 100 ms steps. */
async function play(r: Rig, bus: Bus, t0: number, extra: Array<[number, () => void]> = []) {
  const todo = [...WRITES_S.map((s, i): [number, () => void] => [s, () => bus.fileWritten({ workspaceId: id, path: `src/file-${i}.ts`, at: r.clock.now() })]), ...extra].sort((a, b) => a[0] - b[0]);
  for (const [s, act] of todo) {
    const due = t0 + Math.round(s * 1_000);
    while (r.clock.now() + 100 <= due) await r.advance(100);
    if (due > r.clock.now()) await r.advance(due - r.clock.now());
    act();
  }
  const lastWriteAt = t0 + WRITES_S.at(-1)! * 1_000;
  await r.run(130_000, 500);
  return lastWriteAt;
}

function cyclesAfter(r: Rig, t: number) {
  return r.events.flatMap((e) => (e.type === 'cycle.completed' && e.cycle.startedAt >= t && e.id === id ? [e.cycle] : []));
}

describe('an editor save burst, end to end through the bus and the actors', () => {
  it('17 writes over 60 s cost at most 2 cycles, never overlap, and the last cycle starts after the last write', async () => {
    const { r, bus, t0 } = await setup();
    const lastWriteAt = await play(r, bus, t0);
    const cycles = cyclesAfter(r, t0);
    expect(cycles.length).toBeGreaterThanOrEqual(1);
    expect(cycles.length).toBeLessThanOrEqual(2);
    expect(r.provider.overlaps).toEqual([]);
    expect(cycles.at(-1)!.provisionAt!).toBeGreaterThan(lastWriteAt);
    expect(cycles.every((c) => c.source === 'file-write')).toBe(true);
    expect(bus.counters()).toMatchObject({ writesSeen: 17 });
    expect((await r.sup.get(id)).state).toBe('running');
  });

  it('a manual restart and a liveness death interleaved each add at most one cycle; the last still follows the last write', async () => {
    const { r, bus, t0 } = await setup();
    const lastWriteAt = await play(r, bus, t0, [
      [25, () => void r.sup.restart(id, { source: 'manual', reason: 'operator' })],
      [45, () => r.sup.liveness(id, false, 'container exited 137')],
    ]);
    const cycles = cyclesAfter(r, t0);
    expect(cycles.length).toBeLessThanOrEqual(4);
    expect(r.provider.overlaps).toEqual([]);
    expect(cycles.at(-1)!.provisionAt!).toBeGreaterThan(lastWriteAt);
    expect(new Set(cycles.map((c) => c.source))).toEqual(new Set(['file-write', 'manual', 'liveness']));
  });
});
