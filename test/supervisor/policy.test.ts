/**
 * The supervisor's policy API on a simulated clock: layers merged field by field and checked before they
 * are stored, activity answered with the new idle deadline, the view's `next`, policy events published,
 * scheduled starts held to the quota, and `update` as a restart with source `update`.
 */
import { describe, expect, it } from 'vitest';
import type { SupervisorEvent } from '../../src/supervisor/types.ts';
import { capture, flush, rig, startCalls, T0 } from '../helpers/harness.ts';

const MIN = 60_000;
type PolicyEvent = Extract<SupervisorEvent, { type: 'policy' | 'policy.warning' }>;
const policyEvents = (events: SupervisorEvent[], id: string): PolicyEvent[] =>
  events.flatMap((e) => ((e.type === 'policy' || e.type === 'policy.warning') && e.id === id ? [e] : []));

describe('setPolicy', () => {
  it('refuses a bad patch with the field and the fix, and leaves the workspace as it was', async () => {
    const r = rig();
    await r.sup.create('ws-a', {});
    const before = await r.sup.get('ws-a');
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ autostart: { cron: '0 99 * * *', tz: 'UTC' } }, /^workspace ws-a: policy\.autostart\.cron: /],
      [{ autostop: { cron: '0 19 * * 1-5', tz: 'Mars/Olympus' } }, /^workspace ws-a: policy\.autostop\.tz: "Mars\/Olympus" is not an IANA time zone/],
      [{ autostart: { cron: '0 9 * * *' } }, /policy\.autostart\.tz: missing/],
      [{ idleTimeoutMs: -5 }, /policy\.idleTimeoutMs: -5 is not a duration: use whole milliseconds above 0, or null/],
      [{ idleTimeout: 1_000 }, /policy\.idleTimeout: unknown field: use one of idleTimeoutMs, /],
      [{ deleteDormantAfterMs: 30 * 24 * 3_600_000 }, /policy\.deleteDormantAfterMs: needs dormantAfterMs/],
      [{ maxLifetimeMs: 60 * MIN, maxLifetimeWarnMs: 60 * MIN }, /policy\.maxLifetimeWarnMs: .* is not before the max-lifetime stop/],
      [{ autoUpdate: 'always' }, /policy\.autoUpdate: "always": use "on-start", "never", or null/],
    ];
    for (const [patch, message] of cases) {
      const err = await capture(r.sup.setPolicy('ws-a', patch));
      expect(err).toMatchObject({ ok: false, error: { code: 'WSUP_INVALID_ARGUMENT' } });
      expect(!err.ok && err.error.message, JSON.stringify(patch)).toMatch(message);
    }
    expect(await r.sup.get('ws-a')).toEqual(before);
    await expect(r.sup.setPolicy('ws-nope', {})).rejects.toMatchObject({ code: 'WSUP_NOT_FOUND' });
  });

  it('merges server default ← template default ← own layer, field by field; null turns a rule off', async () => {
    const r = rig({ sup: { policy: { idleTimeoutMs: 30 * MIN, maxLifetimeMs: 8 * 60 * MIN, dormantAfterMs: 14 * 24 * 60 * MIN } } });
    await r.sup.create('ws-a', { wsupPolicyDefaults: { idleTimeoutMs: 10 * MIN, maxLifetimeWarnMs: 15 * MIN } });
    expect((await r.sup.get('ws-a')).policy).toMatchObject({ idleTimeoutMs: 10 * MIN, maxLifetimeMs: 8 * 60 * MIN, maxLifetimeWarnMs: 15 * MIN });
    const view = await r.sup.setPolicy('ws-a', { idleTimeoutMs: null, deleteDormantAfterMs: 30 * 24 * 60 * MIN });
    // deleteDormantAfterMs is valid because dormantAfterMs comes from the server default.
    expect(view.policy).toMatchObject({ idleTimeoutMs: null, maxLifetimeMs: 8 * 60 * MIN, deleteDormantAfterMs: 30 * 24 * 60 * MIN });
    expect(view.spec.wsupPolicy).toEqual({ idleTimeoutMs: null, deleteDormantAfterMs: 30 * 24 * 60 * MIN });
    // setPolicy replaces the own layer: what it leaves out inherits again.
    expect((await r.sup.setPolicy('ws-a', {})).policy.idleTimeoutMs).toBe(10 * MIN);
    // A re-spec without wsupPolicy (a template re-render) keeps the own layer.
    await r.sup.setPolicy('ws-a', { idleTimeoutMs: 5 * MIN });
    expect((await r.sup.create('ws-a', { image: 'new' })).policy.idleTimeoutMs).toBe(5 * MIN);
    // A workspace first used without create gets the server default.
    await Promise.all([r.sup.ensure('ws-b'), r.advance(100)]);
    expect((await r.sup.get('ws-b')).policy.idleTimeoutMs).toBe(30 * MIN);
  });

  it('honours spec.wsupPolicy on create, and refuses a bad one before anything exists', async () => {
    const r = rig();
    await expect(r.sup.create('ws-bad', { wsupPolicy: { idleTimeoutMs: 'soon' } })).rejects.toThrow(/^workspace ws-bad: policy\.idleTimeoutMs: "soon" is not a duration/);
    expect(await r.sup.has('ws-bad')).toBe(false);
    const view = await r.sup.create('ws-a', { wsupPolicy: { idleTimeoutMs: 20 * MIN } });
    expect(view.policy.idleTimeoutMs).toBe(20 * MIN);
  });

  it('refuses a bad server default when the supervisor is built', () => {
    expect(() => rig({ sup: { policy: { maxLifetimeMs: 1_000, maxLifetimeWarnMs: 5_000 } } })).toThrow(/^server default: policy\.maxLifetimeWarnMs/);
  });
});

describe('activity and the idle rule', () => {
  it('answers the new idle deadline, shows `next`, and stops the idle workspace with a policy event', async () => {
    const r = rig({ sup: { policy: { idleTimeoutMs: 30 * MIN } } });
    await Promise.all([r.sup.ensure('ws-a'), r.advance(100)]);
    expect((await r.sup.get('ws-a')).next).toMatchObject({ action: 'stop', source: 'idle', at: T0 + 100 + 30 * MIN });
    await r.advance(10 * MIN);
    const { idleDeadline } = await r.sup.activity('ws-a', 'agent heartbeat');
    expect(idleDeadline).toBe(r.clock.now() + 30 * MIN);
    expect(await r.sup.get('ws-a')).toMatchObject({ lastActivityAt: r.clock.now(), next: { action: 'stop', source: 'idle', at: idleDeadline } });
    await r.run(30 * MIN - 1_000, 1_000); // seconds: a timer re-armed by a firing counts from the firing
    expect((await r.sup.get('ws-a')).state).toBe('running');
    await r.run(1_000, 1_000);
    expect((await r.sup.get('ws-a')).state).toBe('stopping');
    await r.advance(100);
    expect(await r.sup.get('ws-a')).toMatchObject({ state: 'idle', desired: 'stopped', next: null });
    const [stop] = policyEvents(r.events, 'ws-a');
    expect(stop).toMatchObject({ type: 'policy', action: 'stop', source: 'idle', at: idleDeadline });
    expect(stop?.reason).toContain('agent heartbeat');
    expect((await r.sup.activity('ws-a')).idleDeadline).toBeNull(); // not running
    await expect(r.sup.activity('ws-a', '')).rejects.toThrow(/activity source "" must be a non-empty string/);
  });

  it('ensure and restart count as activity from their requester', async () => {
    const r = rig({ sup: { policy: { idleTimeoutMs: 30 * MIN } } });
    await Promise.all([r.sup.ensure('ws-a'), r.advance(100)]);
    await r.run(20 * MIN, 1_000);
    expect((await r.sup.ensure('ws-a', { requester: 'cli:alice' })).state).toBe('running');
    const touched = r.clock.now();
    expect(await r.sup.get('ws-a')).toMatchObject({ lastActivityAt: touched, next: { at: touched + 30 * MIN } });
    await r.run(20 * MIN, 1_000);
    expect((await r.sup.get('ws-a')).state).toBe('running'); // 40 min since its start, 20 since cli:alice
    await r.run(10 * MIN, 1_000);
    const stops = policyEvents(r.events, 'ws-a');
    expect(stops.map((e) => [e.type, e.at])).toEqual([['policy', touched + 30 * MIN]]);
    expect(stops[0]?.reason).toContain('cli:alice');
    // A restart is activity too: from idle it starts, and the idle clock counts from then.
    await r.advance(100);
    await r.sup.restart('ws-a', { source: 'manual', requester: 'deploy-bot' });
    expect((await r.sup.get('ws-a')).lastActivityAt).toBe(r.clock.now());
  });
});

describe('scheduled starts and quotas', () => {
  it('a scheduled start refused by the quota emits `skipped` with the quota message and starts nothing', async () => {
    const r = rig({ sup: { quota: { perOwner: 1 } } });
    const spec = { wsupOwner: 'alice' };
    await r.sup.create('ws-a', spec);
    await r.sup.create('ws-b', spec);
    await Promise.all([r.sup.ensure('ws-a'), r.advance(100)]);
    await r.sup.setPolicy('ws-b', { autostart: { cron: '*/5 * * * *', tz: 'UTC' } });
    const due = (await r.sup.get('ws-b')).next;
    expect(due).toMatchObject({ action: 'start', source: 'schedule' });
    await r.advance(due!.at - r.clock.now());
    await flush();
    const skipped = policyEvents(r.events, 'ws-b');
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({ type: 'policy', action: 'skipped', source: 'schedule' });
    expect(skipped[0]?.reason).toContain('owner alice already runs 1 of 1 allowed (ws-a)');
    expect(startCalls(r, 'ws-b')).toBe(0);
    expect((await r.sup.get('ws-b')).next).toMatchObject({ action: 'start', at: due!.at + 5 * MIN });
    // With the slot free, the next occurrence starts it.
    const stopped = r.sup.stop('ws-a');
    await r.advance(100);
    await stopped;
    await r.advance(5 * MIN);
    await r.advance(100);
    expect((await r.sup.get('ws-b')).state).toBe('running');
    expect(policyEvents(r.events, 'ws-b').map((e) => e.type === 'policy' && e.action)).toEqual(['skipped', 'start']);
  });
});

describe('update', () => {
  it('restarts with source `update` through the statechart', async () => {
    const r = rig();
    await Promise.all([r.sup.ensure('ws-a'), r.advance(100)]);
    await r.sup.create('ws-a', { image: 'v2' });
    const answer = await r.sup.update('ws-a', { requester: 'cli:alice' });
    expect(answer).toMatchObject({ outcome: 'started', state: 'stopping' });
    const started = r.events.filter((e) => e.type === 'cycle.started' && e.id === 'ws-a').at(-1);
    expect(started?.type === 'cycle.started' && started.cycle.source).toBe('update');
    expect(started?.type === 'cycle.started' && started.cycle.requesters.map((q) => [q.requester, q.source])).toEqual([[answer.requester, 'update']]);
    await r.run(200, 100); // its stop, then its start
    expect(await r.sup.get('ws-a')).toMatchObject({ state: 'running', cycle: 2 });
    expect(r.provider.calls.filter((c) => c.id === 'ws-a').map((c) => c.op)).toEqual(['start', 'stop', 'start']);
  });
});
