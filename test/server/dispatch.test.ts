/**
 * The one table of id-routed methods: what each asks of the backend, and that nothing else gets through it.
 */
import { describe, expect, it } from 'vitest';
import { dispatchRouted, isRouted, ROUTED, type RoutedBackend } from '../../src/server/dispatch.ts';
import { capture } from '../helpers/harness.ts';

/** A backend that records what it was asked, answering with shapes carrying more than a result shows. */
function recorder() {
  const calls: unknown[][] = [];
  const view = (id: string) => ({ id, state: 'running', extra: 'kept' });
  const backend = {
    create: async (id: string, spec?: Record<string, unknown>) => (calls.push(['create', id, spec]), view(id)),
    ensure: async (id: string, o?: { requester?: string }) => (calls.push(['ensure', id, o]), { id, started: true, endpoint: 'e', state: 'running', joined: 1 }),
    restart: async (id: string, o?: object) => (calls.push(['restart', id, o]), { id, outcome: 'started', cycle: 3, state: 'starting', more: 1 }),
    stop: async (id: string, o?: { requester?: string }) => (calls.push(['stop', id, o]), view(id)),
    destroy: async (id: string, o?: { requester?: string }) => (calls.push(['destroy', id, o]), view(id)),
    get: (id: string) => (calls.push(['get', id]), view(id)),
    setPolicy: async (id: string, policy: object) => (calls.push(['setPolicy', id, policy]), view(id)),
    activity: (id: string, source?: string) => (calls.push(['activity', id, source]), { id, idleDeadline: 42, other: 1 }),
  } as unknown as RoutedBackend;
  return { calls, backend };
}

describe('routed dispatch', () => {
  it('maps each method onto the backend with the requester, and answers the protocol shape', async () => {
    const { calls, backend } = recorder();
    expect(await dispatchRouted(backend, 'workspace.ensure', { id: 'a' }, 'rpc:x')).toEqual({ id: 'a', started: true, endpoint: 'e', state: 'running' });
    expect(await dispatchRouted(backend, 'workspace.restart', { id: 'a', reason: 'r', source: 'manual', wait: true }, 'rpc:y')).toEqual({ id: 'a', outcome: 'started', cycle: 3, state: 'starting' });
    expect(await dispatchRouted(backend, 'workspace.activity', { id: 'a', activitySource: 'ide' }, 'rpc:z')).toEqual({ id: 'a', idleDeadline: 42 });
    await dispatchRouted(backend, 'workspace.create', { id: 'b', spec: { image: 'i' } }, 'rpc:x');
    await dispatchRouted(backend, 'workspace.stop', { id: 'b' }, 'rpc:s');
    await dispatchRouted(backend, 'workspace.destroy', { id: 'b' }, 'rpc:d');
    await dispatchRouted(backend, 'workspace.setPolicy', { id: 'b', policy: { idleTimeoutMs: 60_000 } }, 'rpc:p');
    await dispatchRouted(backend, 'workspace.get', { id: 'b' }, 'rpc:g');
    expect(calls).toEqual([
      ['ensure', 'a', { requester: 'rpc:x' }],
      ['restart', 'a', { requester: 'rpc:y', reason: 'r', source: 'manual', wait: true }],
      ['activity', 'a', 'ide'],
      ['create', 'b', { image: 'i' }],
      ['stop', 'b', { requester: 'rpc:s' }],
      ['destroy', 'b', { requester: 'rpc:d' }],
      ['setPolicy', 'b', { idleTimeoutMs: 60_000 }],
      ['get', 'b'],
    ]);
  });

  it('refuses a method outside the table by name, touching nothing', async () => {
    const { calls, backend } = recorder();
    for (const method of ['workspace.list', 'pool.set', 'toString', '__proto__', 'constructor']) {
      expect(isRouted(method)).toBe(false);
      const r = await capture(dispatchRouted(backend, method, { id: 'a' }, 'rpc:x'));
      expect(r).toMatchObject({ ok: false, error: { code: 'WSUP_INVALID_ARGUMENT' } });
      expect(r.ok ? '' : r.error.message).toContain(method);
    }
    expect(calls).toEqual([]);
    expect(Object.keys(ROUTED).sort()).toEqual(['workspace.activity', 'workspace.create', 'workspace.destroy', 'workspace.ensure', 'workspace.get', 'workspace.restart', 'workspace.setPolicy', 'workspace.stop']);
  });
});
