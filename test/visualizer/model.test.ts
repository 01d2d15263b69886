import { describe, expect, it } from 'vitest';
import type { CycleWhy, WorkspaceEvent, WorkspaceView } from '../../src/client/index.ts';
import { formatCountdown, formatDuration } from '../../visualizer/src/model/format.ts';
import { VisualizerModel, type Change } from '../../visualizer/src/model/model.ts';

const T0 = 1_700_000_000_000;

/** A clock the test moves by hand, and a scheduler that runs "frames" only when told. */
function harness() {
  const clock = { t: T0, now: () => clock.t };
  const frames: Array<() => void> = [];
  const model = new VisualizerModel({ clock, schedule: (fn) => frames.push(fn) });
  const changes: Change[] = [];
  model.onChange((c) => changes.push(c));
  const frame = () => frames.splice(0).forEach((fn) => fn());
  return { clock, frames, model, changes, frame };
}

function view(id: string, over: Partial<WorkspaceView> = {}): WorkspaceView {
  return { id, state: 'idle', desired: 'stopped', endpoint: null, cycle: 0, pending: 0, deferredUntil: null, backoffUntil: null, lastError: null, spec: {}, policy: { idleTimeoutMs: null, maxLifetimeMs: null, maxLifetimeWarnMs: null, autostart: null, autostop: null, dormantAfterMs: null, deleteDormantAfterMs: null, autoUpdate: null }, lastActivityAt: null, dormant: false, next: null, ...over };
}

function why(n: number, over: Partial<CycleWhy> = {}): CycleWhy {
  return { n, source: 'manual', reason: 'because', retry: false, requesters: [{ requester: 'rpc:c1#1', source: 'manual', reason: 'because', outcome: 'started', at: T0 }], startedAt: T0, provisionAt: null, ...over };
}

const transition = (id: string, from: WorkspaceView['state'] | null, to: WorkspaceView['state'], at: number): WorkspaceEvent => ({ type: 'transition', id, from, to, at, cycle: null });

describe('visualizer view model', () => {
  describe('batched updates', () => {
    it('applies a burst of events in one scheduled flush and notifies once', () => {
      const { model, frames, changes, frame } = harness();
      const ids = Array.from({ length: 50 }, (_, i) => `ws-${i}`);
      model.load(ids.map((id) => view(id)));
      changes.length = 0;
      ids.forEach((id, i) => {
        model.receive(transition(id, 'idle', 'starting', T0 + 10 + i));
        model.receive(transition(id, 'starting', 'running', T0 + 100 + i));
      });
      expect(frames).toHaveLength(1);
      expect(changes).toHaveLength(0);
      expect(model.list.stateCounts().idle).toBe(50);
      frame();
      expect(changes).toHaveLength(1);
      expect(changes[0]).toMatchObject({ events: 100, oldestAt: T0 + 10, queuedAt: T0, list: true });
      expect(model.list.stateCounts()).toMatchObject({ idle: 0, starting: 0, running: 50 });
      model.receive(transition('ws-0', 'running', 'stopping', T0 + 200));
      expect(frames).toHaveLength(1); // a new batch schedules a new frame
    });

    it('keeps per-state counts and the state filter current as transitions arrive', () => {
      const { model, frame } = harness();
      model.load([view('ws-1', { state: 'running' }), view('ws-2'), view('ws-3', { state: 'failed' })]);
      model.list.setFilter({ state: 'running' });
      expect(model.list.visible()).toEqual(['ws-1']);
      model.receive(transition('ws-2', 'idle', 'starting', T0 + 1));
      model.receive(transition('ws-2', 'starting', 'running', T0 + 2));
      model.receive(transition('ws-1', 'running', 'stopping', T0 + 3));
      frame();
      expect(model.list.visible()).toEqual(['ws-2']);
      expect(model.list.stateCounts()).toMatchObject({ idle: 0, running: 1, stopping: 1, failed: 1 });
    });

    it('filters by owner, pool and id search, taken from the spec', () => {
      const { model } = harness();
      model.load([
        view('alpha-1', { spec: { owner: 'alice', pool: 'gpu' } }),
        view('alpha-2', { spec: { owner: 'bob', pool: 'gpu' } }),
        view('beta-1', { spec: { owner: 'alice', pool: 'cpu' } }),
      ]);
      expect(model.list.options()).toEqual({ owners: ['alice', 'bob'], pools: ['cpu', 'gpu'] });
      model.list.setFilter({ owner: 'alice' });
      expect(model.list.visible()).toEqual(['alpha-1', 'beta-1']);
      model.list.setFilter({ pool: 'gpu' });
      expect(model.list.visible()).toEqual(['alpha-1']);
      model.list.setFilter({ owner: 'all', pool: 'all', search: ' ALPHA ' });
      expect(model.list.visible()).toEqual(['alpha-1', 'alpha-2']);
    });

    it('prefers the owner and pool a prebuild view carries over the spec', () => {
      const { model } = harness();
      model.load([
        view('pb-1', { owner: 'system', pool: 'python', spec: { owner: 'stale', pool: 'stale' } }),
        view('pb-2', { owner: 'alice', pool: 'python' }),
        view('reg-1', { spec: {} }),
      ]);
      expect(model.list.options()).toEqual({ owners: ['alice', 'system'], pools: ['python'] });
      model.list.setFilter({ owner: 'alice' });
      expect(model.list.visible()).toEqual(['pb-2']);
      model.list.setFilter({ owner: 'all', pool: 'python' });
      expect(model.list.visible()).toEqual(['pb-1', 'pb-2']);
    });

    it('adds a workspace first seen in an event as a partial row until its view arrives', () => {
      const { model, frame } = harness();
      model.load([]);
      model.receive(transition('new-1', null, 'idle', T0));
      frame();
      expect(model.list.get('new-1')).toMatchObject({ state: 'idle', partial: true, owner: null });
      expect(model.list.partialIds(10)).toEqual(['new-1']);
      model.applyView(view('new-1', { spec: { owner: 'carol' } }));
      expect(model.list.partialIds(10)).toEqual([]);
      expect(model.list.get('new-1')?.owner).toBe('carol');
    });
  });

  describe('the selected workspace', () => {
    it('sets the pending flag on a queued request and clears it when the next cycle starts', () => {
      const { model, frame } = harness();
      model.load([view('ws-1', { state: 'starting', cycle: 1 })]);
      model.select('ws-1');
      model.applyView(view('ws-1', { state: 'starting', cycle: 1 }));
      model.receive({ type: 'request', id: 'ws-1', requester: 'rpc:c1#2', outcome: 'queued', cycle: 2, at: T0 + 5 });
      frame();
      expect(model.detail?.pending).toBe(1);
      model.receive({ type: 'cycle.started', id: 'ws-1', cycle: why(2), at: T0 + 9 });
      frame();
      expect(model.detail?.pending).toBe(0);
      expect(model.detail?.view?.cycle).toBe(2);
    });

    it('counts deferred and backoff deadlines down with the injected clock', () => {
      const { model, clock } = harness();
      model.load([]);
      model.select('ws-1');
      model.applyView(view('ws-1', { state: 'running', deferredUntil: T0 + 12_340, backoffUntil: T0 + 90_000 }));
      expect(model.detail!.countdowns(clock.now()).map((c) => [c.kind, c.text])).toEqual([
        ['deferred', 'in 12.4 s'],
        ['backoff', 'in 1 min 30 s'],
      ]);
      clock.t += 12_000;
      expect(model.detail!.countdowns(clock.now())[0]).toMatchObject({ remainingMs: 340, text: 'in 0.4 s' });
      clock.t += 1_000;
      expect(model.detail!.countdowns(clock.now())[0]).toMatchObject({ remainingMs: 0, text: 'due now' });
    });

    it('marks the view stale when a deferral or failure changes a deadline the event does not carry', () => {
      const { model, frame } = harness();
      model.load([view('ws-1', { state: 'running' })]);
      model.select('ws-1');
      model.applyView(view('ws-1', { state: 'running' }));
      expect(model.detail?.stale).toBe(false);
      model.receive({ type: 'request', id: 'ws-1', requester: 'bus', outcome: 'deferred', cycle: null, at: T0 + 1 });
      frame();
      expect(model.detail?.stale).toBe(true);
    });

    it('builds timeline rows with source, reason, requesters, outcome, durations and errors, newest first', () => {
      const { model, frame } = harness();
      model.load([view('ws-1')]);
      model.select('ws-1');
      const c1 = why(1, { source: 'file-write', reason: 'files written: a.ts' });
      model.applyHistory('ws-1', [
        { type: 'cycle.started', id: 'ws-1', cycle: c1, at: T0 },
        transition('ws-1', 'idle', 'starting', T0),
        { type: 'cycle.provisioning', id: 'ws-1', cycle: 1, at: T0 + 1 },
        { type: 'cycle.completed', id: 'ws-1', cycle: c1, endpoint: 'fake://ws-1/1', at: T0 + 40, durations: { stopMs: null, startMs: 39, totalMs: 40 } },
      ]);
      const joined = why(2, {
        requesters: [
          { requester: 'rpc:c1#3', source: 'manual', reason: 'deploy', outcome: 'started', at: T0 + 50 },
          { requester: 'rpc:c2#1', source: 'claim', reason: 'claimed', outcome: 'joined', at: T0 + 51 },
        ],
        reason: 'deploy',
        startedAt: T0 + 50,
      });
      model.receive({ type: 'cycle.started', id: 'ws-1', cycle: why(2, { reason: 'deploy', startedAt: T0 + 50 }), at: T0 + 50 });
      model.receive({ type: 'cycle.failed', id: 'ws-1', cycle: joined, error: { code: 'WSUP_CYCLE_FAILED', message: 'boom' }, at: T0 + 70 });
      frame();
      const rows = model.detail!.timeline();
      expect(rows.map((r) => r.n)).toEqual([2, 1]);
      expect(rows[1]).toMatchObject({ source: 'file-write', reason: 'files written: a.ts', status: 'completed', provisionAt: T0 + 1, endpoint: 'fake://ws-1/1', durations: { startMs: 39, totalMs: 40 } });
      expect(rows[0]).toMatchObject({ source: 'manual', status: 'failed', error: { message: 'boom' }, endedAt: T0 + 70 });
      expect(rows[0]!.requesters.map((r) => `${r.requester}:${r.outcome}`)).toEqual(['rpc:c1#3:started', 'rpc:c2#1:joined']);
      expect(model.detail!.recent()[0]?.text).toBe('cycle 2 failed: boom');
      expect(model.detail!.lastTransition).toMatchObject({ from: 'idle', to: 'starting' });
    });
  });

  describe('resync', () => {
    it('on lagged, applies queued older events first so the snapshot wins, and drops workspaces it no longer lists', () => {
      const { model, frames, frame } = harness();
      model.load([view('a'), view('b'), view('gone')]);
      model.select('a');
      model.receive(transition('a', 'idle', 'starting', T0 + 1)); // older than the snapshot below
      expect(frames).toHaveLength(1);
      model.resync({ reason: 'lagged', dropped: 42, workspaces: [view('a', { state: 'running', cycle: 3 }), view('b', { state: 'failed' })] });
      frame(); // the frame scheduled before the resync finds nothing older left to apply
      expect(model.list.get('a')?.state).toBe('running');
      expect(model.list.get('b')?.state).toBe('failed');
      expect(model.list.get('gone')).toBeUndefined();
      expect(model.lastResync).toEqual({ reason: 'lagged', dropped: 42, at: T0 });
      expect(model.detail?.view?.state).toBe('running');
      expect(model.detail?.stale).toBe(true); // its history must be fetched again
      expect(model.resyncing).toBe(false);
    });

    it('keeps workspaces a capped lagged snapshot leaves out', () => {
      const clock = { now: () => T0 };
      const model = new VisualizerModel({ clock, schedule: (fn) => fn(), resyncCap: 2 });
      model.load([view('a'), view('b'), view('c')]);
      model.resync({ reason: 'lagged', dropped: 1, workspaces: [view('a', { state: 'running' }), view('b')] });
      expect(model.list.size).toBe(3);
    });

    it('keeps workspaces a lagged snapshot cut to fit one frame leaves out', () => {
      const { model } = harness();
      model.load([view('a'), view('b'), view('c')]);
      model.resync({ reason: 'lagged', dropped: 1, workspaces: [view('a', { state: 'running' })], complete: false });
      expect(model.list.size).toBe(3);
      expect(model.list.get('a')?.state).toBe('running');
    });

    it('after a reconnect, says it is resyncing until the re-list has been loaded', () => {
      const { model } = harness();
      model.load([view('a')]);
      model.resync({ reason: 'reconnected' });
      expect(model.resyncing).toBe(true);
      model.load([view('a', { state: 'running' }), view('b')]);
      model.resynced();
      expect(model.resyncing).toBe(false);
      expect(model.list.size).toBe(2);
      expect(model.lastResync?.reason).toBe('reconnected');
    });
  });

  describe('a list loaded page by page', () => {
    /** The model after a first page of `ids` that says more exist. */
    function firstPage(ids: string[]) {
      const h = harness();
      h.model.beginReload();
      h.model.applyPage(ids.map((id) => view(id)), ids.at(-1)!);
      h.model.endReload(ids.at(-1)!);
      return h;
    }

    it('makes rows only of workspaces within the loaded range, and counts only loaded rows', () => {
      const { model, frame } = firstPage(['a', 'b', 'c']);
      expect(model.list).toMatchObject({ size: 3, complete: false, through: 'c' });
      model.receive(transition('d', 'idle', 'starting', T0 + 1)); // past the last page
      model.receive(transition('bb', null, 'idle', T0 + 1)); // created within it
      model.receive(transition('a', 'idle', 'starting', T0 + 1));
      frame();
      expect(model.list.get('d')).toBeUndefined();
      expect(model.list.get('bb')).toMatchObject({ state: 'idle', partial: true });
      expect(model.list.stateCounts()).toMatchObject({ idle: 3, starting: 1 });
      model.applyView(view('e', { state: 'running' })); // e.g. the open workspace, past the range
      expect(model.list.get('e')).toBeUndefined();
      expect(model.list.visible()).toEqual(['a', 'b', 'bb', 'c']);
      // The next page brings them, and it is the last: from now on every new workspace is a row.
      model.applyPage([view('d', { state: 'starting' }), view('e', { state: 'running' })], null);
      expect(model.list).toMatchObject({ size: 6, complete: true, through: null });
      model.receive(transition('zz', null, 'idle', T0 + 2));
      frame();
      expect(model.list.get('zz')?.state).toBe('idle');
    });

    it('applies events queued before a page first, so the page wins', () => {
      const { model } = firstPage(['a', 'b']);
      model.receive(transition('c', 'idle', 'starting', T0 + 1)); // queued, not yet flushed
      model.applyPage([view('c', { state: 'running' })], 'c');
      expect(model.list.get('c')?.state).toBe('running');
      expect(model.list.through).toBe('c');
    });

    it('on a reload drops the rows no page and no event saw, and keeps a workspace created meanwhile', () => {
      const { model, frame } = firstPage(['a', 'b', 'c']);
      model.applyPage([view('d'), view('e')], 'e');
      expect(model.list.reloadTarget()).toBe('e');
      model.beginReload();
      model.applyPage([view('a'), view('c', { state: 'running' }), view('d')], 'd'); // b is gone
      model.receive(transition('cc', null, 'idle', T0 + 5)); // created while the reload runs, after its page
      frame();
      model.applyPage([view('e'), view('f')], 'f');
      model.endReload('f');
      expect(model.list.visible()).toEqual(['a', 'c', 'cc', 'd', 'e', 'f']);
      expect(model.list).toMatchObject({ complete: false, through: 'f' });
      const counts = model.list.stateCounts();
      expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(model.list.size);
      expect(counts).toMatchObject({ idle: 5, running: 1 });
    });

    it('reloads a complete list up to its largest id, and drops what lies past a range that is no longer complete', () => {
      const { model, frame } = harness();
      model.load([view('a'), view('b')]);
      model.receive(transition('m', null, 'idle', T0 + 1));
      frame();
      expect(model.list.reloadTarget()).toBe('m');
      model.beginReload();
      model.applyPage([view('a'), view('b'), view('c')], 'c'); // the fleet grew while disconnected
      model.endReload('c');
      expect(model.list.visible()).toEqual(['a', 'b', 'c']);
      expect(model.list).toMatchObject({ complete: false, through: 'c' });
    });

    it('asks for a reload when a capped lagged snapshot stops short of the loaded rows, and not when it reaches past them', () => {
      const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn(), resyncCap: 2 });
      model.beginReload();
      model.applyPage([view('a'), view('b')], 'b');
      model.endReload('b');
      expect(model.resync({ reason: 'lagged', dropped: 1, workspaces: [view('a'), view('b', { state: 'failed' })] })).toBe(false);
      expect(model.list.get('b')?.state).toBe('failed');
      model.applyPage([view('c'), view('d')], 'd');
      expect(model.resync({ reason: 'lagged', dropped: 1, workspaces: [view('a'), view('b')] })).toBe(true);
      expect(model.resyncing).toBe(true);
      expect(model.list.size).toBe(4);
      // One that is every workspace replaces the rows, and the list is complete.
      expect(model.resync({ reason: 'lagged', dropped: 1, workspaces: [view('a')] })).toBe(false);
      expect(model.list).toMatchObject({ size: 1, complete: true });
    });
  });

  describe('roles and actions', () => {
    it('shows controls only to roles that may command', () => {
      const { model } = harness();
      expect(model.canCommand).toBe(false);
      model.setRole('viewer');
      expect(model.canCommand).toBe(false);
      model.setRole('operator');
      expect(model.canCommand).toBe(true);
      model.setRole('admin');
      expect(model.canCommand).toBe(true);
    });

    it('records every action with its outcome, and learns from a forbidden answer', () => {
      const { model, clock } = harness();
      model.setRole('operator');
      const a = model.actionStarted('ws-1', 'restart');
      expect(model.actions[0]).toMatchObject({ status: 'pending', kind: 'restart' });
      clock.t += 20;
      model.actionDone(a, 'queued (cycle 4)');
      expect(model.actions[0]).toMatchObject({ status: 'done', outcome: 'queued (cycle 4)', finishedAt: T0 + 20 });
      const b = model.actionStarted('ws-1', 'stop');
      model.actionFailed(b, 'forbidden: role viewer may not call workspace.stop', { forbidden: true });
      expect(model.actions.map((x) => x.status)).toEqual(['failed', 'done']);
      expect(model.canCommand).toBe(false);
    });
  });
});

describe('visualizer text formats', () => {
  it('formats durations and countdowns for people', () => {
    expect(formatDuration(850)).toBe('850 ms');
    expect(formatDuration(1500)).toBe('1.50 s');
    expect(formatDuration(125_000)).toBe('2 min 5 s');
    expect(formatDuration(3_720_000)).toBe('1 h 02 min');
    expect(formatCountdown(12_340)).toBe('in 12.4 s');
    expect(formatCountdown(0)).toBe('due now');
  });
});
