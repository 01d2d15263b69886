/** Autostart and autostop schedules, on a SimulatedClock (docs/policies.md, "Deadlines and the one timer"). */
import { describe, expect, it } from 'vitest';
import { nextOccurrence, scheduleError } from '../../machines/workspace.policy.ts';
import { DAY, HOUR, MIN, machineRig } from './policy-rig.ts';

const berlin9 = { cron: '0 9 * * *', tz: 'Europe/Berlin' };
const berlin17 = { cron: '0 17 * * *', tz: 'Europe/Berlin' };
const iso = (t: number | null | undefined) => (t == null ? null : new Date(t).toISOString());

describe('schedules', () => {
  it('a manual start does not move the next scheduled stop', async () => {
    const r = machineRig({ at: Date.parse('2026-03-02T06:00:00Z') });
    r.setPolicy({ autostop: { cron: '0 19 * * *', tz: 'UTC' } });
    expect(iso(r.ctx().timing.schedule.nextStop)).toBe('2026-03-02T19:00:00.000Z');
    await r.until('2026-03-02T10:00:00Z', 60_000);
    r.ensure();
    await r.advance(5_000);
    expect(r.state()).toBe('running');
    expect(iso(r.ctx().timing.schedule.nextStop)).toBe('2026-03-02T19:00:00.000Z');
    await r.until('2026-03-02T19:00:30Z', 60_000);
    expect(r.policyEvents()).toMatchObject([{ action: 'stop', source: 'schedule', at: Date.parse('2026-03-02T19:00:00Z'), reason: 'scheduled stop "0 19 * * *" UTC at 19:00:00Z' }]);
    await r.advance(5_000);
    expect(r.state()).toBe('idle');
    expect(iso(r.ctx().timing.schedule.nextStop)).toBe('2026-03-03T19:00:00.000Z');
  });

  it('editing a schedule never starts or stops anything by itself, even inside the window', async () => {
    // 09:30 in Berlin (CET), stopped: the autostart's window began half an hour ago.
    const r = machineRig({ at: Date.parse('2026-03-02T08:30:00Z') });
    r.setPolicy({ autostart: berlin9, autostop: berlin17 });
    expect(iso(r.ctx().timing.schedule.nextStart)).toBe('2026-03-03T08:00:00.000Z');
    await r.until('2026-03-03T07:59:00Z', 10 * MIN);
    expect(r.starts()).toBe(0);
    expect(r.policyEvents()).toEqual([]);
    await r.until('2026-03-03T08:01:00Z', 60_000);
    expect(r.policyEvents()).toMatchObject([{ action: 'start', source: 'schedule', at: Date.parse('2026-03-03T08:00:00Z') }]);
    expect(r.state()).toBe('running');

    // Running at 18:30 Berlin with no autostop yet: adding one at 17:00 stops nothing until tomorrow 17:00.
    r.setPolicy({ autostart: berlin9 });
    await r.until('2026-03-03T17:30:00Z', 10 * MIN);
    r.setPolicy({ autostart: berlin9, autostop: berlin17 });
    await r.until('2026-03-04T15:59:00Z', 10 * MIN);
    expect(r.state()).toBe('running');
    expect(r.policyEvents().filter((e) => e.action === 'stop')).toEqual([]);
    await r.until('2026-03-04T16:01:00Z', 60_000);
    expect(r.policyEvents().filter((e) => e.action === 'stop')).toMatchObject([{ at: Date.parse('2026-03-04T16:00:00Z') }]);
  });

  it('re-sending the same schedule keeps its next occurrence', async () => {
    const r = machineRig({ at: Date.parse('2026-03-02T06:00:00Z') });
    r.setPolicy({ autostart: berlin9 });
    const first = r.ctx().timing.schedule.nextStart;
    await r.advance(30 * MIN, 60_000);
    r.setPolicy({ autostart: berlin9, idleTimeoutMs: HOUR });
    expect(r.ctx().timing.schedule.nextStart).toBe(first);
    r.setPolicy({ autostart: { cron: '30 9 * * *', tz: 'Europe/Berlin' } });
    expect(iso(r.ctx().timing.schedule.nextStart)).toBe('2026-03-02T08:30:00.000Z');
  });

  it('a scheduled start is one request: its cycle says why, and it joins nothing it should not', async () => {
    const r = machineRig({ at: Date.parse('2026-03-02T07:00:00Z') });
    r.setPolicy({ autostart: berlin9 });
    await r.until('2026-03-02T08:00:30Z', 60_000);
    const started = r.events.flatMap((e) => (e.type === 'cycle.started' ? [e.cycle] : []));
    expect(started).toHaveLength(1);
    expect(started[0]).toMatchObject({ source: 'schedule', reason: 'scheduled start "0 9 * * *" Europe/Berlin at 08:00:00Z', retry: false });
    expect(started[0]?.requests).toMatchObject([{ requester: 'policy:schedule#1', kind: 'ensure', source: 'schedule' }]);
    expect(iso(r.ctx().timing.schedule.nextStart)).toBe('2026-03-03T08:00:00.000Z');
  });

  it('a failed scheduled start is retried with the crash-loop backoff, and every retry says what it retries', async () => {
    const r = machineRig({
      at: Date.parse('2026-03-02T07:59:00Z'),
      latencyMs: 100,
      fault: (op) => (op === 'start' ? new Error('image not found') : undefined),
      config: { maxRestarts: 2, periodMs: 60_000, backoffBaseMs: 1_000, backoffCapMs: 8_000 },
    });
    r.setPolicy({ autostart: berlin9 });
    await r.until('2026-03-02T08:00:00Z', 1_000);
    await r.advance(2_000, 50);
    expect(r.state()).toBe('failed');
    const backoff = r.ctx().backoffUntil!;
    expect(backoff).toBeGreaterThan(r.clock.now());
    await r.advance(10_000, 50);
    const cycles = r.events.flatMap((e) => (e.type === 'cycle.started' ? [e.cycle] : []));
    expect(cycles.length).toBeGreaterThanOrEqual(4);
    expect(cycles[0]).toMatchObject({ source: 'schedule', retry: false });
    for (const c of cycles.slice(1)) {
      expect(c).toMatchObject({ source: 'schedule', retry: true });
      expect(c.reason).toMatch(/^retry of scheduled start "0 9 \* \* \*" Europe\/Berlin after failure: image not found/);
    }
    // The crash loop's backoff held: a retry after the limit began no earlier than the backoff's end.
    expect(cycles.some((c) => c.startedAt >= backoff)).toBe(true);
    expect(r.overlaps).toEqual([]);
  });

  it('a manual start after a failed scheduled start is not called a retry of it', async () => {
    let fail = true;
    const r = machineRig({
      at: Date.parse('2026-03-02T07:59:00Z'),
      latencyMs: 100,
      fault: (op) => (fail && op === 'start' ? new Error('quota exceeded upstream') : undefined),
      config: { maxRestarts: 0, periodMs: 60_000, backoffBaseMs: 60_000, backoffCapMs: 60_000 },
    });
    r.setPolicy({ autostart: berlin9 });
    await r.until('2026-03-02T08:00:30Z', 1_000);
    expect(r.state()).toBe('failed');
    fail = false;
    r.send({ type: 'RESTART', requester: 'cli:bob', source: 'manual', reason: 'by hand' });
    await r.advance(2_000, 100);
    expect(r.state()).toBe('running');
    expect(r.ctx().timing.retryOf).toBeNull();
    expect(r.events.flatMap((e) => (e.type === 'cycle.started' ? [e.cycle] : [])).at(-1)).toMatchObject({ source: 'manual', reason: 'by hand' });
  });

  it('a scheduled start the quota refuses is skipped with a reason, and the next occurrence still runs', async () => {
    let allowed = false;
    const r = machineRig({ at: Date.parse('2026-03-02T07:00:00Z'), startAllowed: () => allowed });
    r.setPolicy({ autostart: berlin9, autostop: berlin17 });
    await r.until('2026-03-02T08:01:00Z', 60_000);
    expect(r.starts()).toBe(0);
    expect(r.policyEvents()).toMatchObject([{ action: 'skipped', source: 'schedule', at: Date.parse('2026-03-02T08:00:00Z') }]);
    expect(r.policyEvents()[0]?.reason).toContain('refused by the quota');
    expect(iso(r.ctx().timing.schedule.nextStart)).toBe('2026-03-03T08:00:00.000Z');
    allowed = true;
    await r.until('2026-03-03T08:01:00Z', 10 * MIN);
    await r.advance(5_000);
    expect(r.state()).toBe('running');
    expect(r.policyEvents().at(-1)).toMatchObject({ action: 'start', at: Date.parse('2026-03-03T08:00:00Z') });
  });
});

describe('schedules across DST changes fire at 09:00 local on both sides', () => {
  const cases = [
    { tz: 'Europe/Berlin', from: '2026-03-27T12:00:00Z', expected: ['2026-03-28T08:00:00Z', '2026-03-29T07:00:00Z', '2026-03-30T07:00:00Z'] },
    { tz: 'Europe/Berlin', from: '2026-10-23T12:00:00Z', expected: ['2026-10-24T07:00:00Z', '2026-10-25T08:00:00Z', '2026-10-26T08:00:00Z'] },
    { tz: 'America/New_York', from: '2026-03-06T18:00:00Z', expected: ['2026-03-07T14:00:00Z', '2026-03-08T13:00:00Z', '2026-03-09T13:00:00Z'] },
    { tz: 'America/New_York', from: '2026-10-30T18:00:00Z', expected: ['2026-10-31T13:00:00Z', '2026-11-01T14:00:00Z', '2026-11-02T14:00:00Z'] },
  ];
  for (const c of cases) {
    it(`${c.tz} from ${c.from.slice(0, 10)}: starts at ${c.expected.map((e) => e.slice(5, 16)).join(', ')}`, async () => {
      const r = machineRig({ at: Date.parse(c.from) });
      r.setPolicy({ autostart: { cron: '0 9 * * *', tz: c.tz }, autostop: { cron: '0 17 * * *', tz: c.tz } });
      await r.advance(3.5 * DAY, 10 * MIN);
      const starts = r.policyEvents().filter((e) => e.action === 'start').map((e) => iso(e.at));
      expect(starts).toEqual(c.expected.map((e) => iso(Date.parse(e))));
      // Each started workspace was stopped again by the 17:00 autostop (8 hours later in either offset).
      const stops = r.policyEvents().filter((e) => e.action === 'stop').map((e) => e.at);
      expect(stops.map((t, i) => t - Date.parse(c.expected[i]!))).toEqual([8 * HOUR, 8 * HOUR, 8 * HOUR]);
      expect(r.overlaps).toEqual([]);
    });
  }
});

describe('schedule validation', () => {
  it('names the field and the fix for a bad cron, a bad zone, and a date that never comes', () => {
    expect(scheduleError({ cron: '0 9 * *', tz: 'UTC' })).toMatch(/^cron: "0 9 \* \*" is not a cron expression .*"0 9 \* \* 1-5"/);
    expect(scheduleError({ cron: '0 9 * * *', tz: 'Europe/Atlantis' })).toMatch(/^tz: "Europe\/Atlantis" is not an IANA time zone/);
    expect(scheduleError({ cron: '0 0 30 2 *', tz: 'UTC' })).toMatch(/^cron: .* never occurs/);
    expect(scheduleError(berlin9)).toBeNull();
  });

  it('a schedule that slipped past validation never fires and never crashes the actor', async () => {
    const r = machineRig();
    r.setPolicy({ autostart: { cron: 'every morning', tz: 'UTC' }, autostop: { cron: '0 9 * * *', tz: 'Nowhere/Land' } });
    expect(r.ctx().timing.schedule).toEqual({ nextStart: null, nextStop: null });
    await r.advance(2 * DAY, HOUR);
    expect(r.errors).toEqual([]);
    expect(r.actor.getSnapshot().status).toBe('active');
    expect(r.starts()).toBe(0);
  });

  it('computes occurrences strictly after the given time', () => {
    const at = Date.parse('2026-03-02T08:00:00Z');
    expect(nextOccurrence(berlin9, at - 1)).toBe(at);
    expect(iso(nextOccurrence(berlin9, at))).toBe('2026-03-03T08:00:00.000Z');
  });
});
