import { describe, expect, it } from 'vitest';
import { WsupConnectionError, WsupRpcError, type PoolView, type SubscribeHandlers, type WorkspaceEvent, type WorkspaceView } from '../../src/client/index.ts';
import { Controller, type ControlApi } from '../../visualizer/src/controller.ts';
import { VisualizerModel } from '../../visualizer/src/model/model.ts';

const T0 = 1_700_000_000_000;
const view = (id: string, over: Partial<WorkspaceView> = {}): WorkspaceView => ({
  id, state: 'idle', desired: 'stopped', endpoint: null, cycle: 0, pending: 0, deferredUntil: null, backoffUntil: null, lastError: null, spec: {}, policy: { idleTimeoutMs: null, maxLifetimeMs: null, maxLifetimeWarnMs: null, autostart: null, autostop: null, dormantAfterMs: null, deleteDormantAfterMs: null, autoUpdate: null }, lastActivityAt: null, dormant: false, next: null, ...over,
});

/**
 * A fake of the client SDK's call/subscribe: answers from a table of workspaces (kept in id order) and
 * records the calls, and the cursor of every `workspace.list` (`-` for the first page). `pageCut` cuts
 * pages shorter than asked, as the server does to fit its frame limit.
 */
function fakeApi(workspaces: WorkspaceView[], extra: Record<string, (p: Record<string, unknown>) => unknown> = {}, pageCut = Infinity) {
  const calls: string[] = [];
  const cursors: string[] = [];
  let onEvent: ((ev: WorkspaceEvent) => void) | null = null;
  let handlers: SubscribeHandlers = {};
  const answers: Record<string, (p: Record<string, unknown>) => unknown> = {
    'workspace.list': (p) => {
      cursors.push(typeof p.cursor === 'string' ? p.cursor : '-');
      const after = typeof p.cursor === 'string' ? p.cursor : null;
      const from = after === null ? 0 : workspaces.findIndex((w) => w.id > after);
      const start = from < 0 ? workspaces.length : from;
      const items = workspaces.slice(start, start + Math.min(Number(p.limit), pageCut));
      return { items, nextCursor: start + items.length < workspaces.length ? items.at(-1)!.id : null };
    },
    'workspace.get': (p) => workspaces.find((w) => w.id === p.id),
    'events.history': (p) => ({ id: p.id, events: [] }),
    'workspace.restart': () => ({ id: 'a', outcome: 'queued', cycle: 4, state: 'starting' }),
    'workspace.stop': () => {
      throw new WsupRpcError(-32003, 'forbidden: role viewer may not call workspace.stop (needs operator)', { wsupCode: 'WSUP_FORBIDDEN' });
    },
    ...extra,
  };
  const api: ControlApi = {
    call: (async (method: string, params: Record<string, unknown>) => {
      calls.push(method);
      const answer = answers[method];
      if (!answer) throw new Error(`fake api: no answer for ${method}`);
      return answer(params);
    }) as ControlApi['call'],
    subscribe: async (_filter, fn, h = {}) => {
      calls.push('subscribe');
      onEvent = fn;
      handlers = h;
      return { unsubscribe: async () => undefined };
    },
  };
  return { api, calls, cursors, emit: (ev: WorkspaceEvent) => onEvent!(ev), resync: (info: Parameters<NonNullable<SubscribeHandlers['onResync']>>[0]) => handlers.onResync!(info) };
}

const settle = () => new Promise<void>((r) => setImmediate(r));

/** The controller's `every`, driven by hand: `tick(n)` runs the registered function n times. */
function fakeTicker() {
  const fns: Array<{ ms: number; fn: () => void }> = [];
  return {
    every: (ms: number, fn: () => void) => {
      const entry = { ms, fn };
      fns.push(entry);
      return () => void fns.splice(fns.indexOf(entry), 1);
    },
    async tick(n = 1) {
      for (let i = 0; i < n; i++) {
        for (const f of [...fns]) f.fn();
        await settle();
      }
    },
    get registered() {
      return fns.map((f) => f.ms);
    },
  };
}

const pool = (name: string, over: Partial<PoolView> = {}): PoolView => ({ pool: name, desired: 2, ready: 1, starting: 1, failing: 0, lastError: null, backoffUntil: null, template: 'py', policy: null, ...over });
const count = (calls: string[], method: string) => calls.filter((c) => c === method).length;

describe('visualizer controller', () => {
  it('subscribes before listing, so no event between the two is lost, and loads the first page only', async () => {
    const all = Array.from({ length: 25_000 }, (_, i) => view(`ws-${String(i).padStart(5, '0')}`));
    const fake = fakeApi(all);
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    await new Controller(fake.api, model, { fetchRole: async () => 'operator' }).start();
    expect(fake.calls).toEqual(['subscribe', 'workspace.list', 'pool.list']);
    expect(model.list.size).toBe(10_000);
    expect(model.list).toMatchObject({ complete: false, through: 'ws-09999' });
    expect(model.canCommand).toBe(true);
  });

  it('loads the next page when asked, one request at a time, until the list is complete', async () => {
    const all = Array.from({ length: 25_000 }, (_, i) => view(`ws-${String(i).padStart(5, '0')}`));
    const fake = fakeApi(all);
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    const controller = new Controller(fake.api, model, { fetchRole: async () => 'viewer' });
    await controller.start();
    // A burst of scroll events near the end is one request: the page it brings moves the end away.
    const asked = [controller.more(), controller.more(), controller.more()];
    expect(model.listLoading).toBe(true);
    await Promise.all(asked);
    expect(fake.cursors).toEqual(['-', 'ws-09999']);
    expect(model.listLoading).toBe(false);
    expect(model.list).toMatchObject({ size: 20_000, complete: false, through: 'ws-19999' });
    await controller.more();
    expect(model.list).toMatchObject({ size: 25_000, complete: true, through: null });
    await controller.more();
    await controller.more();
    expect(fake.cursors).toEqual(['-', 'ws-09999', 'ws-19999']);
    expect(count(fake.calls, 'workspace.list')).toBe(3);
  });

  it('after a reconnect reloads the pages up to the last one loaded, not the whole fleet, and drops workspaces gone', async () => {
    const all = Array.from({ length: 5_000 }, (_, i) => view(`ws-${String(i).padStart(5, '0')}`));
    const fake = fakeApi(all, {}, 1_000); // pages cut to 1,000, as a server cuts them to fit a frame
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    const controller = new Controller(fake.api, model, { fetchRole: async () => 'viewer' });
    await controller.start();
    await controller.more();
    expect(model.list).toMatchObject({ size: 2_000, through: 'ws-01999' });
    fake.cursors.length = 0;
    all.splice(10, 1); // ws-00010 is gone; every later page starts one id on
    all[20] = view('ws-00021', { state: 'running' });
    fake.resync({ reason: 'reconnected' });
    expect(model.resyncing).toBe(true);
    await settle();
    await settle();
    expect(fake.cursors).toEqual(['-', 'ws-01000']);
    expect(model.resyncing).toBe(false);
    expect(model.list).toMatchObject({ size: 2_000, complete: false, through: 'ws-02000' });
    expect(model.list.get('ws-00010')).toBeUndefined();
    expect(model.list.get('ws-00021')?.state).toBe('running');
    expect(model.list.stateCounts()).toMatchObject({ idle: 1_999, running: 1 });
    // Paging goes on from where the reload ended.
    await controller.more();
    expect(fake.cursors.at(-1)).toBe('ws-02000');
    expect(model.list.through).toBe('ws-03000');
  });

  it('keeps transitions of workspaces past the loaded range out of the list until a page reaches them', async () => {
    const all = Array.from({ length: 30 }, (_, i) => view(`ws-${String(i).padStart(2, '0')}`));
    const fake = fakeApi(all, {}, 10);
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    const controller = new Controller(fake.api, model, { fetchRole: async () => 'viewer' });
    await controller.start();
    fake.calls.length = 0;
    fake.emit({ type: 'transition', id: 'ws-25', from: 'idle', to: 'starting', at: T0 + 1, cycle: null });
    fake.emit({ type: 'transition', id: 'ws-03', from: 'idle', to: 'starting', at: T0 + 1, cycle: null });
    await settle();
    expect(model.list.get('ws-25')).toBeUndefined();
    expect(model.list.size).toBe(10);
    expect(model.list.stateCounts()).toMatchObject({ idle: 9, starting: 1 });
    expect(fake.calls).toEqual([]); // nothing is fetched for a workspace outside the range
    all[25] = view('ws-25', { state: 'starting' });
    await controller.more();
    await controller.more();
    expect(model.list.get('ws-25')?.state).toBe('starting');
    expect(model.list.complete).toBe(true);
  });

  it('reloads the loaded range after a lagged snapshot capped short of it, and not after one that reaches past it', async () => {
    const all = Array.from({ length: 30 }, (_, i) => view(`ws-${String(i).padStart(2, '0')}`));
    const fake = fakeApi(all, {}, 10);
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn(), resyncCap: 12 });
    const controller = new Controller(fake.api, model, { fetchRole: async () => 'viewer' });
    await controller.start();
    fake.cursors.length = 0;
    fake.resync({ reason: 'lagged', dropped: 5, workspaces: all.slice(0, 12) });
    await settle();
    expect(fake.cursors).toEqual([]);
    await controller.more();
    fake.cursors.length = 0;
    fake.resync({ reason: 'lagged', dropped: 5, workspaces: all.slice(0, 12) }); // ends at ws-11; ws-19 is loaded
    expect(model.resyncing).toBe(true);
    await settle();
    await settle();
    expect(fake.cursors).toEqual(['-', 'ws-09']);
    expect(model.resyncing).toBe(false);
    expect(model.list).toMatchObject({ size: 20, through: 'ws-19' });
  });

  it('re-lists and refetches the open workspace after a reconnect', async () => {
    const all = [view('a'), view('b')];
    const fake = fakeApi(all);
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    const controller = new Controller(fake.api, model, { fetchRole: async () => 'viewer' });
    await controller.start();
    await controller.open('a');
    fake.calls.length = 0;
    all.push(view('c', { state: 'running' }));
    fake.resync({ reason: 'reconnected' });
    expect(model.resyncing).toBe(true);
    await settle();
    await settle();
    // The server may be another version after a reconnect, so its pools are asked for again.
    expect(fake.calls).toEqual(['pool.list', 'workspace.list', 'workspace.get', 'events.history']);
    expect(model.resyncing).toBe(false);
    expect(model.list.get('c')?.state).toBe('running');
  });

  it('re-lists after a lagged resync whose views were cut to fit one frame, and not after a complete one', async () => {
    const all = [view('a'), view('b')];
    const fake = fakeApi(all);
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    await new Controller(fake.api, model, { fetchRole: async () => 'viewer' }).start();
    fake.calls.length = 0;
    fake.resync({ reason: 'lagged', dropped: 3, workspaces: [view('a')], complete: true });
    await settle();
    expect(fake.calls).toEqual([]);
    all.push(view('c', { state: 'running' }));
    fake.resync({ reason: 'lagged', dropped: 3, workspaces: [view('a')], complete: false });
    await settle();
    await settle();
    expect(fake.calls).toEqual(['workspace.list']);
    expect(model.list.get('c')?.state).toBe('running');
  });

  it('shows every action outcome, and hides controls after a forbidden answer', async () => {
    const fake = fakeApi([view('a')]);
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    const controller = new Controller(fake.api, model, { fetchRole: async () => null });
    await controller.start();
    model.setRole('operator');
    await controller.restart('a', 'why not');
    expect(model.actions[0]).toMatchObject({ kind: 'restart', status: 'done', outcome: 'queued (cycle 4)' });
    await controller.stop('a');
    expect(model.actions[0]).toMatchObject({ kind: 'stop', status: 'failed' });
    expect(model.actions[0]!.outcome).toContain('forbidden');
    expect(model.canCommand).toBe(false);
  });

  it('fetches the view of a workspace first seen in an event', async () => {
    const all = [view('a')];
    const fake = fakeApi(all);
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    await new Controller(fake.api, model, { fetchRole: async () => 'viewer' }).start();
    all.push(view('late', { spec: { owner: 'dora' } }));
    fake.emit({ type: 'transition', id: 'late', from: null, to: 'idle', at: T0, cycle: null });
    await settle();
    expect(model.list.get('late')).toMatchObject({ owner: 'dora', partial: false });
  });
});

describe('visualizer controller: pools and policy deadlines', () => {
  it('lists pools at load, every 5 ticks of 1 s, and on the tick after an event for a workspace in a pool', async () => {
    let items = [pool('py')];
    const fake = fakeApi([view('py-0a1b2c3d', { pool: 'py' }), view('plain')], { 'pool.list': () => ({ items }) });
    const ticker = fakeTicker();
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    const controller = new Controller(fake.api, model, { fetchRole: async () => 'viewer', every: ticker.every });
    await controller.start();
    await settle();
    expect(ticker.registered).toEqual([1000]);
    expect(count(fake.calls, 'pool.list')).toBe(1);
    expect(model.pools.visible).toBe(true);
    expect(model.pools.rows(T0)[0]).toMatchObject({ pool: 'py', desired: 2, ready: 1, health: 'filling' });

    await ticker.tick(4);
    expect(count(fake.calls, 'pool.list')).toBe(1);
    items = [pool('py', { ready: 2, starting: 0 })];
    await ticker.tick();
    expect(count(fake.calls, 'pool.list')).toBe(2);
    expect(model.pools.rows(T0)[0]).toMatchObject({ ready: 2, health: 'full' });

    // An event for a workspace outside any pool does not ask; one for a prebuild does, on the next tick.
    fake.emit({ type: 'transition', id: 'plain', from: 'idle', to: 'starting', at: T0 + 1, cycle: null });
    await ticker.tick();
    expect(count(fake.calls, 'pool.list')).toBe(2);
    fake.emit({ type: 'transition', id: 'py-0a1b2c3d', from: 'idle', to: 'starting', at: T0 + 2, cycle: null });
    expect(count(fake.calls, 'pool.list')).toBe(2);
    await ticker.tick();
    expect(count(fake.calls, 'pool.list')).toBe(3);

    controller.close();
    expect(ticker.registered).toEqual([]);
  });

  it('hides the panel without reporting an error when the server answers pool.list with one, and asks again only after a reconnect', async () => {
    const errors: string[] = [];
    const fake = fakeApi([view('a')], {
      'pool.list': () => {
        throw new WsupRpcError(-32602, 'pool.list is not available on this server yet', { wsupCode: 'WSUP_INVALID_ARGUMENT' });
      },
    });
    const ticker = fakeTicker();
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    await new Controller(fake.api, model, { fetchRole: async () => 'viewer', every: ticker.every, onError: (m) => errors.push(m) }).start();
    await settle();
    expect(model.pools.status).toBe('unsupported');
    expect(model.pools.visible).toBe(false);
    await ticker.tick(12);
    expect(count(fake.calls, 'pool.list')).toBe(1);
    fake.resync({ reason: 'reconnected' });
    await settle();
    expect(count(fake.calls, 'pool.list')).toBe(2);
    expect(errors).toEqual([]);
  });

  it('keeps the last pools when the connection fails and tries again on the next 5 s refresh', async () => {
    let fail = false;
    const fake = fakeApi([view('a')], {
      'pool.list': () => {
        if (fail) throw new WsupConnectionError('connection closed');
        return { items: [pool('py')] };
      },
    });
    const ticker = fakeTicker();
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    await new Controller(fake.api, model, { fetchRole: async () => 'viewer', every: ticker.every }).start();
    await settle();
    fail = true;
    await ticker.tick(5);
    expect(model.pools).toMatchObject({ status: 'ok', error: 'connection closed' });
    expect(model.pools.visible).toBe(true);
    fail = false;
    await ticker.tick(5);
    expect(count(fake.calls, 'pool.list')).toBe(3);
    expect(model.pools.error).toBeNull();
  });

  it('refetches the open workspace when a policy event moves its deadline, and once more when one arrives during that fetch', async () => {
    const stopAt = T0 + 60_000;
    const ws = view('a', { state: 'running', next: { action: 'stop', at: stopAt, source: 'idle', reason: 'idle for 1m since start at 22:13:20Z' } });
    let release: (() => void) | null = null;
    let gets = 0;
    let hold = false;
    const fake = fakeApi([ws], {
      'workspace.get': async () => {
        gets++;
        if (hold) await new Promise<void>((r) => (release = r));
        return ws;
      },
    });
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    const controller = new Controller(fake.api, model, { fetchRole: async () => 'viewer' });
    await controller.start();
    await controller.open('a');
    await settle();
    const base = gets;
    expect(model.detail?.stale).toBe(false);
    fake.emit({ type: 'policy.warning', id: 'a', source: 'max-lifetime', reason: 'max lifetime 8h reached', stopAt, at: T0 + 1 });
    await settle();
    expect(gets).toBe(base + 1);
    hold = true;
    fake.emit({ type: 'policy', id: 'a', action: 'stop', source: 'idle', reason: 'idle for 1m', at: T0 + 2 });
    await settle();
    expect(gets).toBe(base + 2); // held open by the fake
    hold = false;
    fake.emit({ type: 'transition', id: 'a', from: 'running', to: 'stopping', at: T0 + 3, cycle: null });
    fake.emit({ type: 'transition', id: 'a', from: 'stopping', to: 'idle', at: T0 + 4, cycle: null });
    await settle();
    expect(gets).toBe(base + 2); // one refresh at a time
    release!();
    await settle();
    await settle();
    expect(gets).toBe(base + 3); // the transition to idle arrived while the held one was in flight
    expect(model.detail?.stale).toBe(false);
  });

  it('fetches fresh views, 20 per tick, for list rows whose deadlines a transition moved', async () => {
    const idle = { idleTimeoutMs: 1_800_000, maxLifetimeMs: null, maxLifetimeWarnMs: null, autostart: null, autostop: null, dormantAfterMs: null, deleteDormantAfterMs: null, autoUpdate: null };
    const all = Array.from({ length: 30 }, (_, i) => view(`p-${String(i).padStart(2, '0')}`, { policy: idle }));
    all.push(view('no-policy'));
    const fake = fakeApi(all);
    const ticker = fakeTicker();
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    await new Controller(fake.api, model, { fetchRole: async () => 'viewer', every: ticker.every }).start();
    fake.calls.length = 0;
    for (const w of all) fake.emit({ type: 'transition', id: w.id, from: 'idle', to: 'starting', at: T0 + 1, cycle: null });
    for (const w of all) fake.emit({ type: 'transition', id: w.id, from: 'starting', to: 'running', at: T0 + 2, cycle: null });
    await settle();
    expect(count(fake.calls, 'workspace.get')).toBe(0);
    expect(model.list.staleNextIds(100)).toHaveLength(30);
    await ticker.tick();
    expect(count(fake.calls, 'workspace.get')).toBe(20);
    await ticker.tick();
    expect(count(fake.calls, 'workspace.get')).toBe(30);
    expect(model.list.staleNextIds(100)).toEqual([]);
    await ticker.tick();
    expect(count(fake.calls, 'workspace.get')).toBe(30);
  });
});
