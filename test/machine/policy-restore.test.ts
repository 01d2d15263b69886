/**
 * Dormancy, and deadlines after a restore: the snapshot is persisted (JSON round trip), a new actor is made
 * from it at a later clock time and sent REARM. Each deadline fires on time, or once at once if it passed.
 */
import type { Snapshot } from 'xstate';
import { describe, expect, it } from 'vitest';
import { migrateTiming } from '../../src/supervisor/policy.ts';
import { CountingClock, DAY, HOUR, MIN, machineRig, runningRig, type MachineRig, type RigOptions } from './policy-rig.ts';

/** Persist `r`, stop it (the server went down), and bring the workspace back at `at` with REARM. */
function restoreAt(r: MachineRig, at: number, opts: RigOptions = {}): MachineRig {
  const snapshot = JSON.parse(JSON.stringify(r.actor.getPersistedSnapshot())) as Snapshot<unknown>;
  r.actor.stop();
  const clock = new CountingClock();
  clock.set(at);
  const back = machineRig({ ...opts, clock, snapshot });
  back.actor.send({ type: 'REARM', at });
  return back;
}

describe('dormancy', () => {
  it('marks a stopped, unused workspace dormant after dormantAfterMs; it stays startable and a start clears it', async () => {
    const r = await runningRig();
    r.setPolicy({ dormantAfterMs: 14 * DAY });
    r.stop();
    await r.advance(5_000);
    const stoppedAt = r.ctx().timing.stoppedAt!;
    await r.advance(14 * DAY - 10 * MIN, HOUR);
    expect(r.ctx().timing.dormantSince).toBeNull();
    await r.advance(20 * MIN, MIN);
    expect(r.ctx().timing.dormantSince).toBe(stoppedAt + 14 * DAY);
    expect(r.policyEvents()).toMatchObject([{ action: 'dormant', source: 'dormancy', reason: `unused for 14d since ${new Date(stoppedAt).toISOString().replace(/\.\d{3}Z$/, 'Z')}` }]);
    r.ensure();
    expect(r.ctx().timing.dormantSince).toBeNull();
    await r.advance(5_000);
    expect(r.state()).toBe('running');
  });

  it('activity while stopped pushes dormancy out and ends it', async () => {
    const r = machineRig();
    r.setPolicy({ dormantAfterMs: 2 * DAY, deleteDormantAfterMs: 30 * DAY });
    await r.advance(2 * DAY + HOUR, HOUR);
    expect(r.ctx().timing.dormantSince).not.toBeNull();
    r.activity('cli:alice');
    expect(r.ctx().timing.dormantSince).toBeNull();
    const seen = r.ctx().timing.lastActivity!.at;
    await r.advance(2 * DAY + HOUR, HOUR);
    expect(r.policyEvents().filter((e) => e.action === 'dormant').map((e) => e.at)).toEqual([r.policyEvents()[0]!.at, seen + 2 * DAY]);
  });

  it('destroys a dormant workspace after deleteDormantAfterMs, only when that is set', async () => {
    const r = machineRig();
    r.setPolicy({ dormantAfterMs: DAY, deleteDormantAfterMs: 7 * DAY });
    await r.advance(8 * DAY - HOUR, HOUR);
    expect(r.state()).toBe('idle');
    await r.advance(2 * HOUR, MIN);
    expect(r.state()).toBe('destroyed');
    expect(r.policyEvents().map((e) => e.action)).toEqual(['dormant', 'destroy']);
    expect(r.policyEvents()[1]?.reason).toMatch(/^dormant for 7d since /);
    expect(r.ctx().desired).toBe('destroyed');
  });

  it('never destroys by default: dormant for a year, still there', async () => {
    const r = machineRig();
    r.setPolicy({ dormantAfterMs: DAY });
    await r.advance(365 * DAY, DAY);
    expect(r.state()).toBe('idle');
    expect(r.policyEvents().map((e) => e.action)).toEqual(['dormant']);
    expect(r.stops()).toBe(0);
  });
});

describe('REARM after restore', () => {
  it('an idle deadline still ahead fires on time', async () => {
    const r = await runningRig();
    r.setPolicy({ idleTimeoutMs: 30 * MIN });
    const due = r.ctx().timing.lastActivity!.at + 30 * MIN;
    await r.advance(10 * MIN, MIN);
    const back = restoreAt(r, r.clock.now() + 5 * MIN);
    await back.advance(15 * MIN - 5_000, 5_000);
    expect(back.policyEvents()).toEqual([]);
    await back.advance(10_000, 1_000);
    expect(back.policyEvents()).toMatchObject([{ action: 'stop', source: 'idle', at: due }]);
  });

  it('an idle deadline that passed while down fires once, at once', async () => {
    const r = await runningRig();
    r.setPolicy({ idleTimeoutMs: 30 * MIN });
    const back = restoreAt(r, r.clock.now() + 3 * HOUR);
    await back.advance(10_000);
    expect(back.policyEvents()).toMatchObject([{ action: 'stop', source: 'idle' }]);
    await back.advance(HOUR, MIN);
    expect(back.policyEvents()).toHaveLength(1);
    expect(back.state()).toBe('idle');
  });

  it('a max-lifetime stop and its warning that passed while down: the stop fires once, at once', async () => {
    const r = await runningRig();
    r.setPolicy({ maxLifetimeMs: 2 * HOUR, maxLifetimeWarnMs: 10 * MIN });
    const back = restoreAt(r, r.clock.now() + 5 * HOUR);
    await back.advance(10_000);
    expect(back.policyEvents().filter((e) => e.action === 'stop')).toMatchObject([{ source: 'max-lifetime' }]);
    await back.advance(HOUR, MIN);
    expect(back.policyEvents().filter((e) => e.action === 'stop')).toHaveLength(1);
  });

  it('a start missed while down runs once at recovery when still inside its window', async () => {
    const r = machineRig({ at: Date.parse('2026-03-02T06:00:00Z') });
    r.setPolicy({ autostart: { cron: '0 9 * * *', tz: 'UTC' }, autostop: { cron: '0 17 * * *', tz: 'UTC' } });
    const back = restoreAt(r, Date.parse('2026-03-02T11:00:00Z'));
    await back.advance(5_000);
    expect(back.policyEvents()).toMatchObject([{ action: 'start', source: 'schedule', at: Date.parse('2026-03-02T11:00:00Z') }]);
    expect(back.state()).toBe('running');
    expect(back.ctx().timing.schedule.nextStart).toBe(Date.parse('2026-03-03T09:00:00Z'));
  });

  it('a start missed while down does not run outside its window, and several missed occurrences count once', async () => {
    const r = machineRig({ at: Date.parse('2026-03-02T06:00:00Z') });
    r.setPolicy({ autostart: { cron: '0 9 * * *', tz: 'UTC' }, autostop: { cron: '0 17 * * *', tz: 'UTC' } });
    // Down for three days, back at 20:00: every missed start's window ended at its 17:00 autostop.
    const back = restoreAt(r, Date.parse('2026-03-04T20:00:00Z'));
    await back.advance(10 * MIN, MIN);
    expect(back.starts()).toBe(0);
    expect(back.state()).toBe('idle');
    expect(back.policyEvents()).toMatchObject([{ action: 'skipped', source: 'schedule' }]);
    expect(back.policyEvents()[0]?.reason).toContain('missed, its window ended at 17:00:00Z');
    expect(back.ctx().timing.schedule.nextStart).toBe(Date.parse('2026-03-05T09:00:00Z'));
  });

  it('without an autostop, a missed start\'s window is one hour', async () => {
    const inside = machineRig({ at: Date.parse('2026-03-02T06:00:00Z') });
    inside.setPolicy({ autostart: { cron: '0 9 * * *', tz: 'UTC' } });
    const a = restoreAt(inside, Date.parse('2026-03-02T09:59:00Z'));
    await a.advance(5_000);
    expect(a.starts()).toBe(1);

    const outside = machineRig({ at: Date.parse('2026-03-02T06:00:00Z') });
    outside.setPolicy({ autostart: { cron: '0 9 * * *', tz: 'UTC' } });
    const b = restoreAt(outside, Date.parse('2026-03-02T10:01:00Z'));
    await b.advance(5_000);
    expect(b.starts()).toBe(0);
  });

  it('a stop missed while down fires once, at once, and the next occurrence is computed from now', async () => {
    const r = await runningRig({ at: Date.parse('2026-03-02T08:00:00Z') });
    r.setPolicy({ autostop: { cron: '0 17 * * *', tz: 'UTC' } });
    const back = restoreAt(r, Date.parse('2026-03-05T12:00:00Z'));
    await back.advance(10_000);
    expect(back.policyEvents()).toMatchObject([{ action: 'stop', source: 'schedule', at: Date.parse('2026-03-05T12:00:00Z') }]);
    expect(back.state()).toBe('idle');
    expect(back.ctx().timing.schedule.nextStop).toBe(Date.parse('2026-03-05T17:00:00Z'));
    await back.advance(6 * HOUR, 10 * MIN);
    expect(back.policyEvents()).toHaveLength(1);
  });

  it('dormancy that came due while down marks at once; its destroy then waits its own time', async () => {
    const r = machineRig();
    r.setPolicy({ dormantAfterMs: DAY, deleteDormantAfterMs: 7 * DAY });
    const back = restoreAt(r, r.clock.now() + 3 * DAY);
    await back.advance(1_000);
    expect(back.policyEvents().map((e) => e.action)).toEqual(['dormant']);
    await back.advance(7 * DAY - HOUR, HOUR);
    expect(back.state()).toBe('idle');
    await back.advance(2 * HOUR, MIN);
    expect(back.state()).toBe('destroyed');
  });

  it('a snapshot stored before policies existed restores, takes a policy and acts on it', async () => {
    const r = await runningRig();
    const stored = JSON.parse(JSON.stringify(r.actor.getPersistedSnapshot())) as Snapshot<unknown> & { context: Record<string, unknown> };
    for (const k of ['policy', 'timing']) delete stored.context[k];
    // What the supervisor's restore does to an older snapshot before the actor sees it.
    expect(migrateTiming(stored)).toBe(true);
    r.actor.stop();
    const clock = new CountingClock();
    clock.set(r.clock.now() + MIN);
    const back = machineRig({ clock, snapshot: stored });
    back.actor.send({ type: 'REARM', at: clock.now() });
    back.activity();
    back.setPolicy({ maxLifetimeMs: HOUR, autostart: { cron: '0 9 * * *', tz: 'UTC' } });
    expect(back.errors).toEqual([]);
    // It ran before the upgrade: its run counts from the restore, and the max lifetime applies from there.
    expect(back.ctx().timing.runningSince).toBe(r.clock.now() + MIN);
    await back.advance(HOUR + MIN, MIN);
    expect(back.policyEvents()).toMatchObject([{ action: 'stop', source: 'max-lifetime', at: r.clock.now() + MIN + HOUR }]);
    expect(back.errors).toEqual([]);
  });

  it('keeps one policy timer per actor however often it is re-armed', async () => {
    const r = await runningRig();
    for (let i = 0; i < 20; i++) r.setPolicy({ idleTimeoutMs: (10 + i) * MIN, maxLifetimeMs: 5 * HOUR, maxLifetimeWarnMs: MIN });
    for (let i = 0; i < 5; i++) r.actor.send({ type: 'REARM', at: r.clock.now() });
    // Nothing else is pending on the clock while running: the one timeout left is the policy timer.
    expect(r.clock.live.size).toBe(1);
    await r.advance(20 * MIN, MIN);
    expect(r.state()).toBe('running');
    expect(r.clock.live.size).toBe(1);
  });
});
