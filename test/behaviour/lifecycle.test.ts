/**
 * Workspace lifecycle, policies, template updates, history and subscriptions: the same bodies against
 * one node and against a 3-replica cluster, each call through a random server.
 */
import { expect, it } from 'vitest';
import type { WorkspaceEvent } from '../../src/protocol/index.ts';
import { behaviour } from './suite.ts';

const rejection = (p: Promise<unknown>) => p.then(() => null, (err: unknown) => err as { wsupCode?: string; message: string });

behaviour('lifecycle', {}, (target) => {
  it('create, ensure, restart, stop and destroy through any server', async () => {
    const t = target();
    const ids = await t.spread('life', 3);
    for (const [i, id] of ids.entries()) {
      const c = t.at(i + 1);
      await c.call('workspace.create', { id });
      // Two concurrent ensures through two servers: exactly one of them started it.
      const [a, b] = await Promise.all([t.at(i).call('workspace.ensure', { id }), t.at(i + 2).call('workspace.ensure', { id })]);
      expect([a.started, b.started].filter(Boolean)).toHaveLength(1);
      expect(a.state).toBe('running');
      const r = await t.client().call('workspace.restart', { id, reason: 'deploy', wait: true });
      expect(r).toMatchObject({ id, outcome: 'started', state: 'running' });
      expect((await t.client().call('workspace.stop', { id })).state).toBe('idle');
      expect((await t.client().call('workspace.destroy', { id })).state).toBe('destroyed');
      expect((await rejection(t.client().call('workspace.ensure', { id })))?.wsupCode).toBe('WSUP_DESTROYED');
    }
    const viewer = t.client('viewer');
    expect((await rejection(viewer.call('workspace.create', { id: 'life-viewer' })))?.wsupCode).toBe('WSUP_FORBIDDEN');
  }, 120_000);

  it('an idle policy stops a workspace that sees no activity; activity through another server pushes it out', async () => {
    const t = target();
    const [id] = await t.spread('idle', 1);
    await t.at(0).call('workspace.create', { id: id!, policy: { idleTimeoutMs: 1000 } });
    await t.at(1).call('workspace.ensure', { id: id! });
    const pushed = await t.at(2).call('workspace.activity', { id: id!, source: 'test' });
    expect(pushed.idleDeadline).toBeGreaterThan(Date.now() - 1000);
    await expect.poll(async () => (await t.client().call('workspace.get', { id: id! })).state, { timeout: 30_000, interval: 250 }).toBe('idle');
    const history = await t.client('viewer').call('events.history', { id: id!, limit: 100 });
    expect(history.events.some((e) => e.type === 'policy' && e.action === 'stop')).toBe(true);
    // A viewer may read the policy but never set it or report activity.
    expect((await rejection(t.client('viewer').call('workspace.setPolicy', { id: id!, policy: { idleTimeoutMs: null } })))?.wsupCode).toBe('WSUP_FORBIDDEN');
    expect((await rejection(t.client('viewer').call('workspace.activity', { id: id! })))?.wsupCode).toBe('WSUP_FORBIDDEN');
  }, 60_000);

  it('setPolicy answers the view and workspace.update restarts with source update', async () => {
    const t = target();
    const [id] = await t.spread('upd', 1);
    await t.at(0).call('workspace.create', { id: id! });
    await t.at(1).call('workspace.ensure', { id: id! });
    const v = await t.at(2).call('workspace.setPolicy', { id: id!, policy: { idleTimeoutMs: 3_600_000 } });
    expect(v.policy.idleTimeoutMs).toBe(3_600_000);
    const u = await t.client().call('workspace.update', { id: id! });
    expect(u).toMatchObject({ id, outcome: 'started' });
    await expect
      .poll(async () => (await t.client('viewer').call('events.history', { id: id!, limit: 100 })).events.some((e) => e.type === 'cycle.completed' && e.cycle.source === 'update'), { timeout: 30_000 })
      .toBe(true);
    expect((await rejection(t.client('viewer').call('workspace.update', { id: id! })))?.wsupCode).toBe('WSUP_FORBIDDEN');
  }, 60_000);

  it('a subscriber on one server sees the events of workspaces run by every server, in order per workspace', async () => {
    const t = target();
    const ids = await t.spread('sub', 3);
    const seen: WorkspaceEvent[] = [];
    const watcher = t.at(0, 'viewer');
    await watcher.subscribe({ ids }, (ev) => seen.push(ev));
    for (const [i, id] of ids.entries()) await t.at(i).call('workspace.ensure', { id });
    await expect.poll(() => ids.filter((id) => seen.some((e) => e.id === id && e.type === 'transition' && e.to === 'running')).length, { timeout: 30_000 }).toBe(ids.length);
    for (const id of ids) {
      const states = seen.filter((e): e is Extract<WorkspaceEvent, { type: 'transition' }> => e.id === id && e.type === 'transition').map((e) => e.to);
      expect(states.slice(-2)).toEqual(['starting', 'running']);
    }
    // History is the store's, whichever server answers.
    const h = await t.at(2, 'viewer').call('events.history', { id: ids[0]!, limit: 50 });
    expect(h.events.map((e) => e.type)).toContain('cycle.completed');
  }, 60_000);
});
