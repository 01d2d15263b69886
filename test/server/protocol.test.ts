/* eslint-disable @typescript-eslint/no-unsafe-assignment -- vitest's asymmetric matchers (expect.any…) are typed any */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WsupRpcError } from '../../src/client/index.ts';
import { ERROR_CODES } from '../../src/protocol/index.ts';
import { startRig, type ServerRig } from './rig.ts';

let rig: ServerRig;
beforeAll(async () => {
  rig = await startRig();
});
afterAll(() => rig.close());

describe('control server', () => {
  describe('http routes', () => {
    it('answers /healthz, /readyz, / and /metrics', async () => {
      expect((await fetch(`${rig.url}/healthz`)).status).toBe(200);
      expect(await (await fetch(`${rig.url}/readyz`)).text()).toBe('ready\n');
      expect(await (await fetch(`${rig.url}/`)).text()).toMatch(/<title>wsup[^<]*<\/title>/);
      await rig.client().call('workspace.ensure', { id: 'metrics-1' });
      const metrics = await (await fetch(`${rig.url}/metrics`)).text();
      expect(metrics).toContain('wsup_requests_total');
      expect(metrics).toMatch(/wsup_actors\{state="running"\} [1-9]/);
      expect(metrics).toMatch(/wsup_provider_call_seconds_count\{op="start",result="ok"\} [1-9]/);
      expect(metrics).toMatch(/wsup_ws_connections [1-9]/);
      expect(metrics).toMatch(/^wsup_actors_in_memory [1-9]/m);
      expect(metrics).toMatch(/^wsup_actor_activations_total \d+$/m);
    });
  });

  describe('workspace methods', () => {
    it('creates, ensures, restarts, stops and destroys with typed results', async () => {
      const c = rig.client('operator');
      expect((await c.call('workspace.create', { id: 'm-1' })).state).toBe('idle');
      const ensured = await c.call('workspace.ensure', { id: 'm-1' });
      expect(ensured).toMatchObject({ id: 'm-1', started: true, state: 'running' });
      expect(ensured.endpoint).toMatch(/^fake:\/\/m-1\//);
      expect(await c.call('workspace.ensure', { id: 'm-1' })).toMatchObject({ started: false, endpoint: ensured.endpoint });
      const restarted = await c.call('workspace.restart', { id: 'm-1', reason: 'test', wait: true });
      expect(restarted).toMatchObject({ id: 'm-1', outcome: 'started', state: 'running' });
      expect((await c.call('workspace.get', { id: 'm-1' })).cycle).toBe(2);
      expect((await c.call('workspace.stop', { id: 'm-1' })).state).toBe('idle');
      expect((await c.call('workspace.destroy', { id: 'm-1' })).state).toBe('destroyed');
    });

    it('pages workspace.list with a cursor', async () => {
      const c = rig.client('viewer');
      const op = rig.client('operator');
      for (const id of ['p-a', 'p-b', 'p-c']) await op.call('workspace.create', { id });
      const first = await c.call('workspace.list', { limit: 2 });
      expect(first.items).toHaveLength(2);
      expect(first.nextCursor).not.toBeNull();
      const rest = await c.call('workspace.list', { cursor: first.nextCursor!, limit: 1000 });
      expect(rest.nextCursor).toBeNull();
      expect([...first.items, ...rest.items].map((w) => w.id)).toEqual(expect.arrayContaining(['p-a', 'p-b', 'p-c']));
    });

    it('restarts with source file-write for files.written when no bus hook is wired', async () => {
      const c = rig.client('operator');
      await c.call('workspace.ensure', { id: 'fw-1' });
      expect(await c.call('files.written', { id: 'fw-1', paths: ['a.ts', 'b.ts'] })).toEqual({ id: 'fw-1', accepted: 2 });
      const history = await c.call('events.history', { id: 'fw-1', limit: 100 });
      expect(history.events.some((e) => e.type === 'request' && e.outcome === 'deferred')).toBe(true);
    });

    it('serves the machine definition', async () => {
      const { definition } = await rig.client('viewer').call('machine.definition', {});
      expect(definition).toMatchObject({ id: expect.any(String), states: expect.objectContaining({ running: expect.any(Object) }) });
    });
  });

  describe('events', () => {
    it('streams transitions with their why to a subscriber of that workspace', async () => {
      const viewer = rig.client('viewer');
      const seen: string[] = [];
      let resolveDone!: () => void;
      const done = new Promise<void>((r) => (resolveDone = r));
      await viewer.subscribe({ ids: ['ev-1'] }, (ev) => {
        if (ev.type === 'transition') seen.push(`${ev.from}->${ev.to}`);
        if (ev.type === 'cycle.completed') {
          expect(ev.cycle.requesters[0]?.requester).toMatch(/^rpc:/);
          resolveDone();
        }
      });
      await rig.client('operator').call('workspace.ensure', { id: 'ev-1' });
      await done;
      expect(seen).toEqual(['idle->starting', 'starting->running']);
    });
  });

  describe('errors', () => {
    it('maps domain errors to fixed codes naming the workspace, and keeps the connection', async () => {
      const c = rig.client('admin');
      const err = await c.call('workspace.get', { id: 'nope' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WsupRpcError);
      expect(err).toMatchObject({ code: ERROR_CODES.WSUP_NOT_FOUND, wsupCode: 'WSUP_NOT_FOUND', message: expect.stringContaining('nope') });
      const bad = await c.call('workspace.restart', { id: 'x', source: 'bogus' as 'manual' }).catch((e: unknown) => e);
      expect(bad).toMatchObject({ code: -32602, data: { path: ['source'] } });
      expect(await c.call('workspace.list', {})).toHaveProperty('items');
    });

    it('answers malformed frames per JSON-RPC', async () => {
      const s = await rig.raw();
      expect(await s.rpc('{nope')).toMatchObject({ id: null, error: { code: -32700 } });
      expect(await s.rpc('{"jsonrpc":"2.0","id":1}')).toMatchObject({ id: 1, error: { code: -32600 } });
      expect(await s.rpc('{"jsonrpc":"2.0","id":2,"method":"no.such"}')).toMatchObject({ id: 2, error: { code: -32601 } });
      expect(await s.rpc('{"jsonrpc":"2.0","id":3,"method":"workspace.get","params":{"id":"BAD ID"}}')).toMatchObject({ id: 3, error: { code: -32602, data: { path: ['id'] } } });
      expect(await s.rpc('[]')).toMatchObject({ error: { code: -32600 } });
      const batch = await s.rpc('[{"jsonrpc":"2.0","id":4,"method":"workspace.list"},{"jsonrpc":"2.0","method":"workspace.list"},{"x":1}]');
      expect(batch).toHaveLength(2);
      expect(s.closed).toBeNull();
    });
  });
});
