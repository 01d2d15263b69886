/** Idle timeout and max lifetime, on a SimulatedClock (docs/policies.md, "Activity" and "Deadlines"). */
import { describe, expect, it } from 'vitest';
import { HOUR, MIN, machineRig, runningRig } from './policy-rig.ts';

describe('idle timeout', () => {
  it('stops a running workspace after the timeout with no activity, with a reason naming the rule', async () => {
    const r = await runningRig();
    const since = r.ctx().timing.lastActivity!.at;
    r.setPolicy({ idleTimeoutMs: 30 * MIN });
    await r.advance(30 * MIN - 5_000);
    expect(r.state()).toBe('running');
    await r.advance(10_000);
    expect(r.state()).not.toBe('running');
    const stop = r.policyEvents().find((e) => e.action === 'stop');
    expect(stop).toMatchObject({ source: 'idle', at: since + 30 * MIN });
    expect(stop?.reason).toBe(`idle for 30m since start at ${new Date(since).toISOString().slice(11, 19)}Z`);
    await r.advance(5_000);
    expect(r.state()).toBe('idle');
    expect(r.ctx().desired).toBe('stopped');
    expect(r.stops()).toBe(1);
  });

  it('is never stopped while activity keeps coming (every timeout/2 for 10 timeouts)', async () => {
    const r = await runningRig();
    r.setPolicy({ idleTimeoutMs: 10 * MIN });
    for (let i = 0; i < 20; i++) {
      await r.advance(5 * MIN, 10_000);
      r.activity();
    }
    expect(r.state()).toBe('running');
    expect(r.policyEvents()).toEqual([]);
    expect(r.stops()).toBe(0);
    // And once activity stops, the stop comes one timeout after the last of it.
    const last = r.ctx().timing.lastActivity!.at;
    await r.advance(11 * MIN, 10_000);
    expect(r.policyEvents()).toMatchObject([{ action: 'stop', source: 'idle', at: last + 10 * MIN }]);
    expect(r.policyEvents()[0]?.reason).toContain('since agent heartbeat at');
  });

  it('activity after the timer was armed cancels the stop (the timer re-checks, then re-arms)', async () => {
    const r = await runningRig();
    r.setPolicy({ idleTimeoutMs: 10 * MIN });
    await r.advance(9 * MIN);
    r.activity('files.written');
    await r.advance(2 * MIN);
    expect(r.state()).toBe('running');
    expect(r.policyEvents()).toEqual([]);
    await r.advance(9 * MIN);
    expect(r.policyEvents()).toMatchObject([{ action: 'stop', source: 'idle' }]);
  });

  it('an idle deadline that falls during a cycle in flight never interrupts it; it is re-checked on entry to running', async () => {
    const r = await runningRig({ latencyMs: 5 * MIN });
    r.setPolicy({ idleTimeoutMs: 10 * MIN });
    await r.advance(8 * MIN);
    r.send({ type: 'RESTART', requester: 'cli:bob', source: 'manual', reason: 'by hand' });
    // The old deadline (10m after the first start) passes while the restart's stop and start run.
    await r.advance(6 * MIN);
    expect(r.state()).toBe('starting');
    await r.advance(5 * MIN);
    expect(r.state()).toBe('running');
    expect(r.calls.map((c) => c.op)).toEqual(['start', 'stop', 'start']);
    expect(r.policyEvents()).toEqual([]);
    // The new run counts from its own start.
    const since = r.ctx().timing.runningSince!;
    await r.advance(11 * MIN);
    expect(r.policyEvents()).toMatchObject([{ action: 'stop', source: 'idle', at: since + 10 * MIN }]);
  });

  it('a start that completes with old activity is not idle-stopped at once (completion counts as activity)', async () => {
    const r = machineRig();
    r.activity('cli:alice');
    r.setPolicy({ idleTimeoutMs: 10 * MIN });
    await r.advance(2 * HOUR, 60_000);
    r.ensure();
    await r.advance(5_000);
    expect(r.state()).toBe('running');
    expect(r.ctx().timing.lastActivity).toMatchObject({ source: 'start' });
    await r.advance(9 * MIN);
    expect(r.state()).toBe('running');
    expect(r.policyEvents()).toEqual([]);
  });

  it('a scheduled start with old activity is not idle-stopped when it comes up', async () => {
    const r = machineRig({ at: Date.parse('2026-03-02T06:00:00Z') });
    r.activity('cli:alice');
    r.setPolicy({ idleTimeoutMs: 10 * MIN, autostart: { cron: '0 9 * * *', tz: 'UTC' } });
    await r.until('2026-03-02T09:00:05Z', MIN);
    expect(r.state()).toBe('running');
    await r.advance(9 * MIN, 10_000);
    expect(r.state()).toBe('running');
    expect(r.policyEvents().map((e) => e.action)).toEqual(['start']);
    await r.advance(2 * MIN, 10_000);
    expect(r.policyEvents().map((e) => `${e.action}:${e.source}`)).toEqual(['start:schedule', 'stop:idle']);
    expect(r.policyEvents()[1]?.reason).toMatch(/^idle for 10m since start at 09:00:0\dZ$/);
  });

  it('a policy stop supersedes nothing it should not: an ensure during the stop starts again afterwards', async () => {
    const r = await runningRig();
    r.setPolicy({ idleTimeoutMs: 10 * MIN });
    // The stop begins at the deadline (10m after the start completed) and takes 1 s.
    await r.advance(10 * MIN - 800, 200);
    expect(r.state()).toBe('stopping');
    r.ensure('cli:carol');
    await r.advance(5_000);
    expect(r.state()).toBe('running');
    const settled = r.events.filter((e) => e.type === 'settled' && e.requesters.includes('cli:carol'));
    expect(settled).toMatchObject([{ ok: true }]);
  });
});

describe('max lifetime', () => {
  it('warns once per run before the stop, then stops; a new run gets a new warning', async () => {
    const r = await runningRig();
    const since = r.ctx().timing.runningSince!;
    r.setPolicy({ maxLifetimeMs: 8 * HOUR, maxLifetimeWarnMs: 15 * MIN });
    r.activity();
    await r.advance(8 * HOUR - 15 * MIN, 60_000);
    const warnings = () => r.policyEvents().filter((e) => e.action === 'warning');
    expect(warnings()).toMatchObject([{ source: 'max-lifetime', stopAt: since + 8 * HOUR, at: since + 8 * HOUR - 15 * MIN }]);
    await r.advance(14 * MIN, 10_000);
    expect(warnings()).toHaveLength(1);
    expect(r.state()).toBe('running');
    await r.advance(2 * MIN, 10_000);
    const stop = r.policyEvents().find((e) => e.action === 'stop');
    expect(stop).toMatchObject({ source: 'max-lifetime', at: since + 8 * HOUR });
    expect(stop?.reason).toMatch(/^max lifetime 8h reached \(running since \d\d:\d\d:\d\dZ\)$/);
    await r.advance(5_000);
    expect(r.state()).toBe('idle');

    r.ensure();
    await r.advance(5_000);
    const second = r.ctx().timing.runningSince!;
    await r.advance(8 * HOUR - 14 * MIN, 60_000);
    expect(warnings()).toHaveLength(2);
    expect(warnings()[1]).toMatchObject({ stopAt: second + 8 * HOUR });
  });

  it('counts from the current start: a manual restart resets runningSince', async () => {
    const r = await runningRig();
    r.setPolicy({ maxLifetimeMs: 2 * HOUR });
    await r.advance(90 * MIN, 60_000);
    r.send({ type: 'RESTART', requester: 'cli:bob', source: 'manual', reason: 'fresh' });
    await r.advance(5_000);
    const since = r.ctx().timing.runningSince!;
    expect(r.state()).toBe('running');
    await r.advance(HOUR, 60_000);
    expect(r.policyEvents()).toEqual([]);
    await r.advance(HOUR, 60_000);
    expect(r.policyEvents()).toMatchObject([{ action: 'stop', source: 'max-lifetime', at: since + 2 * HOUR }]);
  });

  it('leaves runningSince null whenever the workspace is not running', async () => {
    const r = await runningRig();
    expect(r.ctx().timing.runningSince).not.toBeNull();
    r.stop();
    expect(r.ctx().timing.runningSince).toBeNull();
    await r.advance(5_000);
    expect(r.ctx().timing).toMatchObject({ runningSince: null, stoppedAt: expect.any(Number) as unknown });
  });
});
