/**
 * Prebuild claims, the `/agent` channel, file-write bursts and pools: the same bodies against one node and
 * a 3-replica cluster, with claimers, agents and writers on different servers.
 */
import { expect, it } from 'vitest';
import WebSocket from 'ws';
import type { AgentServerFrame } from '../../src/protocol/index.ts';
import { behaviour } from './suite.ts';
import type { Target } from './target.ts';

const rejection = (p: Promise<unknown>) => p.then(() => null, (err: unknown) => err as { wsupCode?: string; message: string });

/** An agent on `/agent` of server `i`: every frame it got, and an ack on demand. */
async function agentOn(t: Target, i: number, token: string) {
  const frames: AgentServerFrame[] = [];
  const ws = new WebSocket(t.agentUrl(i), { headers: { authorization: `Bearer ${token}` } });
  ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString('utf8')) as AgentServerFrame));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    frames,
    reinits: () => frames.filter((f): f is Extract<AgentServerFrame, { type: 'reinit' }> => f.type === 'reinit'),
    ack: (claimBuildId: string) => ws.send(JSON.stringify({ type: 'ack', claimBuildId })),
    close: () => ws.close(),
  };
}

behaviour('claims, agents, file writes and pools', {}, (target) => {
  it('of concurrent claims of one prebuild through three servers exactly one wins', async () => {
    const t = target();
    const admin = t.at(0, 'admin');
    await admin.call('workspace.create', { id: 'pb-race', prebuild: true, pool: 'race', spec: {} });
    await t.at(1).call('workspace.ensure', { id: 'pb-race' });
    const users = ['ann', 'bob', 'cyd'];
    const results = await Promise.allSettled(users.map((u, i) => t.at(i).call('workspace.claim', { id: 'pb-race', userId: u })));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as { wsupCode?: string }).wsupCode).toBe('WSUP_CLAIM_CONFLICT');
    const winner = (won[0] as PromiseFulfilledResult<{ ownerId: string }>).value.ownerId;
    await expect.poll(async () => (await t.client('viewer').call('workspace.get', { id: 'pb-race' })).owner, { timeout: 20_000 }).toBe(winner);
    // A viewer can neither claim nor create a prebuild.
    expect((await rejection(t.client('viewer').call('workspace.claim', { id: 'pb-race', userId: 'eve' })))?.wsupCode).toBe('WSUP_FORBIDDEN');
    // An operator cannot bring a raw spec (an agent token of its choosing) for a prebuild.
    expect((await rejection(t.client('operator').call('workspace.create', { id: 'pb-op', prebuild: true, spec: { agentToken: 'wsa_mine' } })))?.wsupCode).toBe('WSUP_POLICY');
  }, 60_000);

  it('an agent on one server gets its reinit exactly once for a claim made on another, acked durably', async () => {
    const t = target();
    const token = `wsa_behaviour_${t.kind}_${Math.random().toString(36).slice(2)}`;
    const [id] = await t.spread('pb-agent', 1);
    await t.at(0, 'admin').call('workspace.create', { id: id!, prebuild: true, spec: { agentToken: token } });
    await t.at(1).call('workspace.ensure', { id: id! }); // its start registers the agent token
    const a = await agentOn(t, 2, token);
    await expect.poll(() => a.frames.some((f) => f.type === 'waiting' && f.why === 'unclaimed'), { timeout: 20_000 }).toBe(true);
    const claim = await t.at(1).call('workspace.claim', { id: id!, userId: 'dana' });
    await expect.poll(() => a.reinits().length, { timeout: 30_000 }).toBe(1);
    expect(a.reinits()[0]!.event).toMatchObject({ workspaceId: id, ownerId: 'dana', claimBuildId: claim.claimBuildId });
    a.ack(claim.claimBuildId);
    await expect.poll(() => a.frames.some((f) => f.type === 'acked' && f.ok), { timeout: 20_000 }).toBe(true);
    a.close();
    // Reconnected through every server: acknowledged, never delivered again.
    for (let i = 0; i < t.size; i++) {
      const again = await agentOn(t, i, token);
      await expect.poll(() => again.frames.some((f) => f.type === 'waiting' && f.why === 'acknowledged'), { timeout: 20_000 }).toBe(true);
      expect(again.reinits()).toEqual([]);
      again.close();
    }
  }, 90_000);

  it('a burst of file writes sent to different servers ends in one restart', async () => {
    const t = target();
    const [id] = await t.spread('files', 1);
    // Not started first: an automatic restart right after a cycle would wait out the self-fire window.
    await t.at(0).call('workspace.create', { id: id! });
    const paths = Array.from({ length: 9 }, (_, i) => `src/f${i}.ts`);
    await Promise.all(paths.map((p, i) => t.at(i).call('files.written', { id: id!, paths: [p] })));
    const fileCycles = async () =>
      (await t.client('viewer').call('events.history', { id: id!, limit: 200 })).events.filter((e) => e.type === 'cycle.completed' && e.cycle.source === 'file-write');
    await expect.poll(async () => (await fileCycles()).length, { timeout: 60_000, interval: 250 }).toBe(1);
    const [cycle] = await fileCycles();
    // Every write of every server is in that one burst.
    expect(cycle!.type === 'cycle.completed' && cycle!.cycle.reason).toMatch(/^9 files written/);
    expect((await rejection(t.client('viewer').call('files.written', { id: id!, paths: ['x'] })))?.wsupCode).toBe('WSUP_FORBIDDEN');
  }, 90_000);

  it('a pool fills, refills after claims through any server, and concurrent pool claims get different prebuilds', async () => {
    const t = target();
    const set = await t.at(0).call('pool.set', { pool: 'beh', desired: 3 });
    expect(set.desired).toBe(3);
    await expect.poll(async () => (await t.at(1, 'viewer').call('pool.get', { pool: 'beh' })).ready, { timeout: 60_000, interval: 250 }).toBe(3);
    const claims = await Promise.all(['u1', 'u2', 'u3'].map((u, i) => t.at(i).call('workspace.claim', { pool: 'beh', userId: u })));
    expect(new Set(claims.map((c) => c.id)).size).toBe(3);
    await expect.poll(async () => (await t.at(2, 'viewer').call('pool.get', { pool: 'beh' })).ready, { timeout: 60_000, interval: 250 }).toBe(3);
    const members = (await t.client('viewer').call('workspace.list', {})).items.filter((v) => v.pool === 'beh');
    expect(members.filter((v) => v.owner === 'system')).toHaveLength(3);
    expect(members.filter((v) => claims.some((c) => c.id === v.id)).map((v) => v.owner).sort()).toEqual(['u1', 'u2', 'u3']);
    // Viewers read pools but never change them.
    expect((await rejection(t.client('viewer').call('pool.set', { pool: 'beh', desired: 0 })))?.wsupCode).toBe('WSUP_FORBIDDEN');
    expect((await rejection(t.client('viewer').call('pool.delete', { pool: 'beh' })))?.wsupCode).toBe('WSUP_FORBIDDEN');
    const deleted = await t.at(1).call('pool.delete', { pool: 'beh' });
    expect(deleted.destroyed).toBe(3);
  }, 120_000);
});
