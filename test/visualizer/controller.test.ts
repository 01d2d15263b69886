import { describe, expect, it } from 'vitest';
import { WsupRpcError, type SubscribeHandlers, type WorkspaceEvent, type WorkspaceView } from '../../src/client/index.ts';
import { Controller, type ControlApi } from '../../visualizer/src/controller.ts';
import { VisualizerModel } from '../../visualizer/src/model/model.ts';

const T0 = 1_700_000_000_000;
const view = (id: string, over: Partial<WorkspaceView> = {}): WorkspaceView => ({
  id, state: 'idle', desired: 'stopped', endpoint: null, cycle: 0, pending: 0, deferredUntil: null, backoffUntil: null, lastError: null, spec: {}, policy: { idleTimeoutMs: null, maxLifetimeMs: null, maxLifetimeWarnMs: null, autostart: null, autostop: null, dormantAfterMs: null, deleteDormantAfterMs: null, autoUpdate: null }, lastActivityAt: null, dormant: false, next: null, ...over,
});

/** A fake of the client SDK's call/subscribe: answers from a table of workspaces and records the calls. */
function fakeApi(workspaces: WorkspaceView[]) {
  const calls: string[] = [];
  let onEvent: ((ev: WorkspaceEvent) => void) | null = null;
  let handlers: SubscribeHandlers = {};
  const answers: Record<string, (p: Record<string, unknown>) => unknown> = {
    'workspace.list': (p) => {
      const from = p.cursor ? workspaces.findIndex((w) => w.id === p.cursor) + 1 : 0;
      const items = workspaces.slice(from, from + Number(p.limit));
      return { items, nextCursor: from + items.length < workspaces.length ? items.at(-1)!.id : null };
    },
    'workspace.get': (p) => workspaces.find((w) => w.id === p.id),
    'events.history': (p) => ({ id: p.id, events: [] }),
    'workspace.restart': () => ({ id: 'a', outcome: 'queued', cycle: 4, state: 'starting' }),
    'workspace.stop': () => {
      throw new WsupRpcError(-32003, 'forbidden: role viewer may not call workspace.stop (needs operator)', { wsupCode: 'WSUP_FORBIDDEN' });
    },
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
  return { api, calls, emit: (ev: WorkspaceEvent) => onEvent!(ev), resync: (info: Parameters<NonNullable<SubscribeHandlers['onResync']>>[0]) => handlers.onResync!(info) };
}

const settle = () => new Promise<void>((r) => setImmediate(r));

describe('visualizer controller', () => {
  it('subscribes before listing, so no event between the two is lost, and pages through the list', async () => {
    const all = Array.from({ length: 25_000 }, (_, i) => view(`ws-${String(i).padStart(5, '0')}`));
    const fake = fakeApi(all);
    const model = new VisualizerModel({ clock: { now: () => T0 }, schedule: (fn) => fn() });
    await new Controller(fake.api, model, { fetchRole: async () => 'operator' }).start();
    expect(fake.calls).toEqual(['subscribe', 'workspace.list', 'workspace.list', 'workspace.list']);
    expect(model.list.size).toBe(25_000);
    expect(model.canCommand).toBe(true);
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
    expect(fake.calls).toEqual(['workspace.list', 'workspace.get', 'events.history']);
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
