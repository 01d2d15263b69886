import { describe, expect, it } from 'vitest';
import type { NextAction, Policy, PoolView, WorkspaceEvent, WorkspaceView } from '../../src/client/index.ts';
import { nextLabel } from '../../visualizer/src/model/list.ts';
import { VisualizerModel } from '../../visualizer/src/model/model.ts';
import { describePolicy, formatAgoShort, formatClockCountdown, formatSpan, nextActionText, shortNext } from '../../visualizer/src/model/policy.ts';
import { PoolsPanel } from '../../visualizer/src/model/pools.ts';

/** 2026-12-02T14:02:11Z: the reasons below name UTC times near it. */
const T0 = Date.UTC(2026, 11, 2, 14, 2, 11);
const MIN = 60_000;
const H = 60 * MIN;
const D = 24 * H;

const OFF: Policy = { idleTimeoutMs: null, maxLifetimeMs: null, maxLifetimeWarnMs: null, autostart: null, autostop: null, dormantAfterMs: null, deleteDormantAfterMs: null, autoUpdate: null };

function harness() {
  const clock = { t: T0, now: () => clock.t };
  const frames: Array<() => void> = [];
  const model = new VisualizerModel({ clock, schedule: (fn) => frames.push(fn) });
  const frame = () => frames.splice(0).forEach((fn) => fn());
  return { clock, model, frame };
}

function view(id: string, over: Partial<WorkspaceView> = {}): WorkspaceView {
  return { id, state: 'running', desired: 'running', endpoint: null, cycle: 1, pending: 0, deferredUntil: null, backoffUntil: null, lastError: null, spec: {}, policy: OFF, lastActivityAt: null, dormant: false, next: null, ...over };
}

const idleStop = (at: number): NextAction => ({ action: 'stop', at, source: 'idle', reason: 'idle for 30m since agent heartbeat at 14:02:11Z' });

describe('policy in words', () => {
  it('names each rule that is on, with its durations the way they are written', () => {
    expect(
      describePolicy({
        idleTimeoutMs: 30 * MIN,
        maxLifetimeMs: 8 * H,
        maxLifetimeWarnMs: 15 * MIN,
        autostart: { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' },
        autostop: { cron: '0 19 * * 1-5', tz: 'Europe/Berlin' },
        dormantAfterMs: 14 * D,
        deleteDormantAfterMs: 30 * D,
        autoUpdate: 'on-start',
      }),
    ).toEqual([
      'idle timeout 30m',
      'max lifetime 8h (warn 15m before)',
      'autostart 0 9 * * 1-5 Europe/Berlin',
      'autostop 0 19 * * 1-5 Europe/Berlin',
      'dormant after 14d',
      'deleted 30d after dormant',
      'updates to the new template version on start',
    ]);
    expect(describePolicy({ ...OFF, maxLifetimeMs: 90 * MIN })).toEqual(['max lifetime 1h30m']);
  });

  it('says so when no rule is on, including for a view from a server without policies', () => {
    expect(describePolicy(OFF)).toEqual(['no lifecycle policy']);
    expect(describePolicy({ ...OFF, autoUpdate: 'never' })).toEqual(['no lifecycle policy']);
    expect(describePolicy(undefined)).toEqual(['no lifecycle policy']);
  });

  it('writes spans compactly', () => {
    expect([formatSpan(45_000), formatSpan(30 * MIN), formatSpan(D + 12 * H), formatSpan(90_500), formatSpan(500)]).toEqual(['45s', '30m', '1d12h', '1m31s', '500ms']);
  });
});

describe('next policy action as a countdown', () => {
  it('counts whole seconds down as a clock, rounding up so 0:00 means due', () => {
    expect(formatClockCountdown(12 * MIN + 3_000)).toBe('12:03');
    expect(formatClockCountdown(12 * MIN + 2_001)).toBe('12:03');
    expect(formatClockCountdown(8 * H - 48_000)).toBe('7:59:12');
    expect(formatClockCountdown(14 * D - 1_000)).toBe('13d 23:59:59');
    expect(formatClockCountdown(-5)).toBe('0:00');
  });

  it('says what happens, in how long and why, at several instants', () => {
    const next = idleStop(T0 + 12 * MIN + 3_000);
    expect(nextActionText(next, T0)).toBe('stops in 12:03 — idle for 30m since agent heartbeat at 14:02:11Z');
    expect(nextActionText(next, T0 + 1_000)).toBe('stops in 12:02 — idle for 30m since agent heartbeat at 14:02:11Z');
    expect(nextActionText(next, T0 + 12 * MIN + 2_500)).toMatch(/^stops in 0:01 — /);
    expect(nextActionText(next, T0 + 13 * MIN)).toMatch(/^stops now — idle for 30m/);
    expect(nextActionText({ action: 'dormant', at: T0 + 14 * D, source: 'dormancy', reason: 'unused for 14d since 2026-12-02T14:02:11Z' }, T0)).toBe('goes dormant in 14d 00:00:00 — unused for 14d since 2026-12-02T14:02:11Z');
    expect(nextActionText(null, T0)).toBe('no policy action is scheduled');
  });

  it('gives the list a short form in the coarsest whole unit', () => {
    const next = idleStop(T0 + 12 * MIN + 3_000);
    expect(shortNext(next, T0)).toBe('stops 12m');
    expect(shortNext(next, T0 + 12 * MIN - 17_000)).toBe('stops 20s');
    expect(shortNext(next, T0 + 13 * MIN)).toBe('stops now');
    expect(shortNext({ action: 'start', at: T0 + 3 * H + 5 * MIN, source: 'schedule', reason: '' }, T0)).toBe('starts 3h');
    expect(shortNext({ action: 'destroy', at: T0 + 2 * D + H, source: 'dormancy', reason: '' }, T0)).toBe('destroy 2d');
    expect(shortNext(null, T0)).toBe('');
  });

  it('says how long ago the last activity was', () => {
    expect([formatAgoShort(T0, T0 + 400), formatAgoShort(T0, T0 + 45_000), formatAgoShort(T0, T0 + 3 * MIN + 59_000), formatAgoShort(T0, T0 + 2 * D)]).toEqual(['just now', '45s ago', '3m ago', '2d ago']);
  });
});

describe('the selected workspace and its policy', () => {
  it('ticks the next action and last activity with the injected clock', () => {
    const { model, clock } = harness();
    model.load([]);
    model.select('ws-1');
    model.applyView(view('ws-1', { policy: { ...OFF, idleTimeoutMs: 30 * MIN }, lastActivityAt: T0 - 3 * MIN, next: idleStop(T0 + 12 * MIN + 3_000) }));
    const d = model.detail!;
    expect(d.policyStatus(clock.now())).toEqual({
      rules: ['idle timeout 30m'],
      next: 'stops in 12:03 — idle for 30m since agent heartbeat at 14:02:11Z',
      lastActivity: 'last activity 3m ago',
      warning: null,
    });
    clock.t += 61_000;
    const later = d.policyStatus(clock.now());
    expect(later.next).toMatch(/^stops in 11:02 — /);
    expect(later.lastActivity).toBe('last activity 4m ago');
  });

  it('shows policy actions and warnings in recent events with their own tone and icon, and refreshes the view for them', () => {
    const { model, frame, clock } = harness();
    model.load([view('ws-1')]);
    model.select('ws-1');
    model.applyView(view('ws-1', { policy: { ...OFF, maxLifetimeMs: 8 * H, maxLifetimeWarnMs: 15 * MIN } }));
    const stopAt = T0 + 15 * MIN;
    model.receive({ type: 'policy.warning', id: 'ws-1', source: 'max-lifetime', reason: 'max lifetime 8h reached (running since 06:17:11Z)', stopAt, at: T0 });
    frame();
    const d = model.detail!;
    expect(d.stale).toBe(true);
    expect(d.recent()[0]).toMatchObject({ type: 'policy.warning', tone: 'warning', icon: '⚠', text: 'warning (max-lifetime): stops at 14:17:11Z — max lifetime 8h reached (running since 06:17:11Z)' });
    expect(d.policyStatus(clock.now()).warning).toBe('warned at 14:02:11Z: stops in 15:00');

    model.applyView(view('ws-1'));
    model.receive({ type: 'policy', id: 'ws-1', action: 'stop', source: 'max-lifetime', reason: 'max lifetime 8h reached (running since 06:17:11Z)', at: stopAt });
    model.receive({ type: 'transition', id: 'ws-1', from: 'running', to: 'stopping', at: stopAt, cycle: null });
    frame();
    expect(d.stale).toBe(true);
    expect(d.recent().map((e) => [e.type, e.tone])).toEqual([
      ['transition', null],
      ['policy', 'policy'],
      ['policy.warning', 'warning'],
    ]);
    expect(d.recent()[1]!.text).toBe('policy stop (max-lifetime): max lifetime 8h reached (running since 06:17:11Z)');
    expect(d.policyStatus(clock.now()).warning).toBeNull(); // it left running
  });

  it('drops a next action that no longer applies after a transition, and marks a dormancy', () => {
    const { model, frame } = harness();
    model.load([view('ws-1')]);
    model.select('ws-1');
    model.applyView(view('ws-1', { next: idleStop(T0 + MIN) }));
    model.receive({ type: 'transition', id: 'ws-1', from: 'running', to: 'stopping', at: T0 + 1, cycle: null });
    frame();
    expect(model.detail!.view?.next).toBeNull();
    model.applyView(view('ws-1', { state: 'idle', desired: 'stopped' }));
    model.receive({ type: 'policy', id: 'ws-1', action: 'dormant', source: 'dormancy', reason: 'unused for 14d', at: T0 + 2 });
    frame();
    expect(model.detail!.view?.dormant).toBe(true);
    expect(model.detail!.stale).toBe(true);
  });
});

describe('the list and policy deadlines', () => {
  const event = (id: string, from: WorkspaceView['state'], to: WorkspaceView['state'], at: number): WorkspaceEvent => ({ type: 'transition', id, from, to, at, cycle: null });

  it('shows the next action computed at render time, and marks rows with a policy for a fresh view on a transition', () => {
    const { model, frame } = harness();
    model.load([view('a', { policy: { ...OFF, idleTimeoutMs: 30 * MIN }, next: idleStop(T0 + 12 * MIN + 3_000) }), view('b'), view('c', { state: 'idle', dormant: true })]);
    expect(nextLabel(model.list.get('a')!, T0)).toBe('stops 12m');
    expect(nextLabel(model.list.get('a')!, T0 + 2 * MIN)).toBe('stops 10m');
    expect(nextLabel(model.list.get('b')!, T0)).toBe('');
    expect(nextLabel(model.list.get('c')!, T0)).toBe('dormant');
    model.receive(event('a', 'running', 'stopping', T0 + 1));
    model.receive(event('b', 'running', 'stopping', T0 + 1));
    frame();
    expect(nextLabel(model.list.get('a')!, T0)).toBe('');
    model.receive(event('a', 'stopping', 'idle', T0 + 2));
    model.receive(event('b', 'stopping', 'idle', T0 + 2));
    frame();
    expect(nextLabel(model.list.get('a')!, T0)).toBe('…');
    expect(model.list.staleNextIds(10)).toEqual(['a']); // b has no policy: its deadlines cannot have moved
    model.applyView(view('a', { state: 'idle', policy: { ...OFF, idleTimeoutMs: 30 * MIN } }));
    expect(model.list.staleNextIds(10)).toEqual([]);
  });

  it('keeps the visible list as it is when a single view cannot change who is in it', () => {
    const { model } = harness();
    model.load([view('a'), view('b')]);
    const before = model.list.visible();
    model.applyView(view('a', { next: idleStop(T0 + MIN) }));
    expect(model.list.visible()).toBe(before);
    model.list.setFilter({ state: 'running' });
    const running = model.list.visible();
    model.applyView(view('a', { state: 'stopping' }));
    expect(model.list.visible()).not.toBe(running);
    expect(model.list.visible()).toEqual(['b']);
  });
});

describe('the pools panel', () => {
  const pool = (over: Partial<PoolView> = {}): PoolView => ({ pool: 'py', desired: 3, ready: 1, starting: 1, failing: 0, lastError: null, backoffUntil: null, template: 'python', policy: null, ...over });

  it('says how full each pool is and counts its backoff down', () => {
    const panel = new PoolsPanel();
    expect(panel.visible).toBe(false);
    panel.apply([pool({ pool: 'rust', ready: 0, starting: 0, failing: 2, lastError: { message: 'image not found', at: T0 - 1_000 }, backoffUntil: T0 + 4_200 }), pool(), pool({ pool: 'go', ready: 3 })], T0);
    expect(panel.visible).toBe(true);
    const rows = panel.rows(T0);
    expect(rows.map((r) => [r.pool, r.health, r.backoff])).toEqual([
      ['go', 'full', null],
      ['py', 'filling', null],
      ['rust', 'backing off', 'in 4.2 s'],
    ]);
    expect(rows[2]!.lastError).toMatch(/^image not found \(at \d\d:\d\d:\d\d\.\d{3}\)$/);
    expect(panel.rows(T0 + 4_000)[2]!.backoff).toBe('in 0.2 s');
    expect(panel.rows(T0 + 5_000)[2]).toMatchObject({ health: 'short', backoff: null });
  });

  it('hides itself for a server without pools, or with none', () => {
    const panel = new PoolsPanel();
    panel.apply([], T0);
    expect(panel.visible).toBe(false);
    panel.apply([pool()], T0);
    panel.unsupported();
    expect(panel).toMatchObject({ status: 'unsupported', visible: false, items: [] });
  });

  it('is marked for a refresh by an event for a workspace in a pool, and only such an event', () => {
    const { model, frame } = harness();
    model.load([view('py-0a1b2c3d', { pool: 'py' }), view('plain')]);
    model.receive({ type: 'transition', id: 'plain', from: 'running', to: 'stopping', at: T0, cycle: null });
    frame();
    expect(model.pools.dirty).toBe(false);
    model.receive({ type: 'cycle.failed', id: 'py-0a1b2c3d', cycle: { n: 1, source: 'manual', reason: '', retry: false, requesters: [], startedAt: T0, provisionAt: null }, error: { code: 'WSUP_CYCLE_FAILED', message: 'boom' }, at: T0 });
    frame();
    expect(model.pools.dirty).toBe(true);
    model.applyPools([pool()]);
    expect(model.pools.dirty).toBe(false);
  });
});
