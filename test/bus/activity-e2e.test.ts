/**
 * Activity end to end: an agent's heartbeats through the bus into a real Supervisor (FakeProvider, one
 * SimulatedClock driving the bus's windows and the actors' deadlines). Coalesced, 10 heartbeats a second
 * reach the actor about once a second, they keep an idle timeout from firing, and once they stop the
 * workspace is stopped for idleness, counted from the last one that got through.
 */
import { describe, expect, it } from 'vitest';
import { createBus } from '../../src/bus/index.ts';
import { schedulerFromClock } from '../../src/supervisor/clock.ts';
import { rig } from '../helpers/harness.ts';

const id = 'ws-agent';
const IDLE_MS = 10 * 60_000;

describe('activity through the bus, end to end', () => {
  it('heartbeats keep a workspace from idling, at about one ACTIVITY per second; silence then stops it', async () => {
    const r = rig({ latencyMs: 100 });
    const bus = createBus({ sink: r.sup.busSink(), scheduler: schedulerFromClock(r.clock), activityWindowMs: 1_000 });
    const ensured = r.sup.ensure(id);
    await r.run(1_000, 100);
    await ensured;
    await r.sup.setPolicy(id, { idleTimeoutMs: IDLE_MS });

    // 10 heartbeats a second for 15 minutes: past the idle timeout measured from the start.
    const t0 = r.clock.now();
    const beats = 15 * 60 * 10;
    for (let i = 0; i < beats; i++) {
      bus.activity({ workspaceId: id, source: 'agent heartbeat', at: r.clock.now() });
      await r.advance(100);
    }
    await r.advance(1_000); // the last window closes: its trailing heartbeat is delivered
    const c = bus.counters();
    expect(c.activitySeen).toBe(beats);
    // one leading delivery, then one trailing per 1 s window: about a tenth of the heartbeats
    expect(c.activityDelivered).toBeGreaterThanOrEqual(15 * 60);
    expect(c.activityDelivered).toBeLessThanOrEqual(15 * 60 + 2);
    expect(c.activityDelivered + c.activityFolded).toBe(beats);
    expect((await r.sup.get(id)).state).toBe('running');
    expect(r.events.filter((e) => e.type === 'policy')).toEqual([]);

    const last = (await r.sup.get(id)).lastActivityAt!;
    expect(last).toBeGreaterThan(t0 + 15 * 60_000 - 2_000);
    await r.run(last + IDLE_MS - 1_000 - r.clock.now(), 10_000);
    expect((await r.sup.get(id)).state).toBe('running');
    await r.run(60_000, 1_000);
    expect((await r.sup.get(id)).state).toBe('idle');
    const stops = r.events.flatMap((e) => (e.type === 'policy' ? [e] : []));
    expect(stops).toHaveLength(1);
    expect(stops[0]).toMatchObject({ id, action: 'stop', source: 'idle' });
    expect(stops[0]!.reason).toContain('agent heartbeat');
    await bus.close();
    await r.sup.shutdown({ deadlineMs: 0 });
  });
});
