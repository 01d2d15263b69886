/**
 * Who may change pools, over a real control server on a durable store: a viewer can only read them, an
 * operator cannot pass a raw spec, and a flood of `pool.set` from an operator never makes more than the
 * desired count, nor more pools than the cap.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WsupClient, type WsupRpcError } from '../../src/client/index.ts';
import type { Role } from '../../src/protocol/index.ts';
import { MAX_POOLS } from '../../src/supervisor/pools.ts';
import { startPoolServer, tokenOf, type PoolServer } from './server.ts';

let rig: PoolServer;
const clients: WsupClient[] = [];
const client = (role: Role) => {
  const c = new WsupClient({ url: `${rig.url.replace(/^http/, 'ws')}/control`, token: tokenOf(role), WebSocket, reconnect: false });
  clients.push(c);
  return c;
};
const refusal = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e as WsupRpcError);

beforeAll(async () => {
  rig = await startPoolServer();
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await rig.close();
});

const live = async (pool: string) => (await rig.sup.list()).filter((v) => v.id.startsWith(`${pool}-`) && v.desired !== 'destroyed' && v.state !== 'destroyed');

describe('pool roles', () => {
  it('a viewer reads pools but cannot set or delete them, and nothing changes', async () => {
    await client('admin').call('pool.set', { pool: 'ro', desired: 1, spec: { image: 'x' } });
    const viewer = client('viewer');
    const set = await refusal(viewer.call('pool.set', { pool: 'ro', desired: 5 }));
    const del = await refusal(viewer.call('pool.delete', { pool: 'ro' }));
    const made = await refusal(viewer.call('pool.set', { pool: 'ro-new', desired: 1 }));
    for (const e of [set, del, made]) expect(e).toMatchObject({ code: -32003 });
    expect(set!.message).toContain('pool.set');
    expect(await viewer.call('pool.get', { pool: 'ro' })).toMatchObject({ pool: 'ro', desired: 1 });
    expect((await viewer.call('pool.list', {})).items.map((p) => p.pool)).toContain('ro');
    expect(await rig.store.pools.get('ro-new')).toBeNull();
    expect((await rig.store.pools.get('ro'))?.desired).toBe(1);
    expect(await live('ro')).toHaveLength(1);
  });

  it('an operator cannot pass a raw spec; a template is how operators make pools', async () => {
    const op = client('operator');
    const err = await refusal(op.call('pool.set', { pool: 'op', desired: 2, spec: { image: 'evil', cmd: ['rm', '-rf', '/'] } }));
    expect(err).toMatchObject({ wsupCode: 'WSUP_POLICY' });
    expect(err!.message).toContain('spec');
    expect(err!.message).toContain('needs role admin');
    expect(await rig.store.pools.get('op')).toBeNull();
    expect(await live('op')).toHaveLength(0);
    // A template the server does not have is refused too, naming the field.
    expect(await refusal(op.call('pool.set', { pool: 'op', desired: 1, template: 'nope' }))).toMatchObject({ wsupCode: 'WSUP_POLICY' });
    const ok = await op.call('pool.set', { pool: 'op', desired: 2 });
    expect(ok).toMatchObject({ pool: 'op', desired: 2, template: 'default' });
    await vi.waitFor(async () => expect(await op.call('pool.get', { pool: 'op' })).toMatchObject({ ready: 2 }), { timeout: 20_000 });
    // The gauges on /metrics say the same, per pool.
    const metrics = await (await fetch(`${rig.url}/metrics`)).text();
    expect(metrics).toMatch(/^wsup_pool_desired\{pool="op"\} 2$/m);
    expect(metrics).toMatch(/^wsup_pool_ready\{pool="op"\} 2$/m);
    expect(metrics).toMatch(/^wsup_pool_starting\{pool="op"\} 0$/m);
    expect(metrics).toMatch(/^wsup_pool_failing\{pool="op"\} 0$/m);
  });

  it('a flood of pool.set from an operator never makes more than desired, and stops at the pool cap', async () => {
    const op = client('operator');
    let most = 0;
    const watch = rig.sup.events.subscribe(() => void live('flood').then((l) => (most = Math.max(most, l.length))));
    const wants = Array.from({ length: 200 }, (_, i) => (i * 7) % 6);
    const replies = await Promise.all(wants.map((desired) => op.call('pool.set', { pool: 'flood', desired })));
    expect(replies).toHaveLength(200);
    const tooMany = await refusal(op.call('pool.set', { pool: 'flood', desired: 1_001 }));
    expect(tooMany?.message).toContain('desired');
    await vi.waitFor(async () => {
      const final = (await rig.store.pools.get('flood'))!.desired;
      expect((await live('flood')).filter((v) => v.state === 'running')).toHaveLength(final);
      expect(await live('flood')).toHaveLength(final);
    }, { timeout: 30_000 });
    watch.unsubscribe();
    expect(most).toBeLessThanOrEqual(Math.max(...wants));

    const existing = await rig.store.pools.count();
    const names = Array.from({ length: MAX_POOLS - existing + 5 }, (_, i) => `many-${i}`);
    const results = await Promise.all(names.map((pool) => refusal(op.call('pool.set', { pool, desired: 0 }))));
    const refused = results.filter((e) => e !== null);
    expect(refused).toHaveLength(5);
    for (const e of refused) expect(e.message).toContain(`at most ${MAX_POOLS} pools`);
    expect(await rig.store.pools.count()).toBe(MAX_POOLS);
  }, 120_000);
});
