/**
 * The activity grace (docs/policies.md, "Activity"): the bus coalesces activity per window, so a heartbeat can
 * reach the actor up to one window late. With `activityGraceMs` equal to the window, one folded just before the
 * idle deadline still keeps the workspace running; without it, the idle stop wins the race. One SimulatedClock
 * drives the bus's windows and the supervisor's deadlines.
 */
import { describe, expect, it } from 'vitest';
import { createBus } from '../../src/bus/index.ts';
import { schedulerFromClock } from '../../src/supervisor/clock.ts';
import { rig } from '../helpers/harness.ts';

const id = 'ws-grace';
const WINDOW_MS = 5_000;
/** Shorter than the window, so a heartbeat can be folded in the bus before the idle deadline passes. */
const IDLE_MS = 4_000;

async function foldedBeforeDeadline(graceMs: number) {
  const r = rig({ latencyMs: 100, sup: { config: { activityGraceMs: graceMs } } });
  const bus = createBus({ sink: r.sup.busSink(), scheduler: schedulerFromClock(r.clock), activityWindowMs: WINDOW_MS });
  const ensured = r.sup.ensure(id);
  await r.run(1_000, 100);
  await ensured;
  await r.sup.setPolicy(id, { idleTimeoutMs: IDLE_MS });
  bus.activity({ workspaceId: id, source: 'agent heartbeat', at: r.clock.now() }); // leading: reaches the actor at once
  const delivered = (await r.sup.get(id)).lastActivityAt!;
  await r.run(IDLE_MS - 100, 100);
  bus.activity({ workspaceId: id, source: 'agent heartbeat', at: r.clock.now() }); // folded: held until the window closes
  expect(bus.counters().activityDelivered).toBe(1);
  await r.run(WINDOW_MS, 100);
  expect(bus.counters().activityDelivered).toBe(2);
  const stops = r.events.filter((e) => e.type === 'policy' && e.action === 'stop');
  const out = { state: (await r.sup.get(id)).state, stops, delivered };
  await bus.close();
  await r.sup.shutdown({ deadlineMs: 0 });
  return out;
}

describe('activity grace', () => {
  it('with grace = the bus window, a heartbeat folded just before the idle deadline keeps the workspace running', async () => {
    const { state, stops } = await foldedBeforeDeadline(WINDOW_MS);
    expect(stops).toEqual([]);
    expect(state).toBe('running');
  });

  it('without grace, the same heartbeat arrives after the idle stop', async () => {
    const { state, stops, delivered } = await foldedBeforeDeadline(0);
    expect(stops).toHaveLength(1);
    expect(stops[0]).toMatchObject({ source: 'idle', at: delivered + IDLE_MS });
    expect(state).not.toBe('running');
  });

  it('counts the grace into the idle deadline the view and activity() answer', async () => {
    const r = rig({ latencyMs: 100, sup: { config: { activityGraceMs: WINDOW_MS } } });
    const ensured = r.sup.ensure(id);
    await r.run(1_000, 100);
    await ensured;
    await r.sup.setPolicy(id, { idleTimeoutMs: 60_000 });
    const { idleDeadline } = await r.sup.activity(id, 'cli:alice');
    expect(idleDeadline).toBe(r.clock.now() + 60_000 + WINDOW_MS);
    expect((await r.sup.get(id)).next).toMatchObject({ action: 'stop', source: 'idle', at: r.clock.now() + 60_000 + WINDOW_MS });
    await r.sup.shutdown({ deadlineMs: 0 });
  });
});
