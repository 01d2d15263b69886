/**
 * Running quotas count every server's workspaces: the same bodies against one node and a 3-replica
 * cluster started with `--max-running-per-owner 2`, the holders run by different replicas.
 */
import { expect, it } from 'vitest';
import { behaviour } from './suite.ts';

const rejection = (p: Promise<unknown>) => p.then(() => null, (err: unknown) => err as { wsupCode?: string; message: string });

behaviour('quotas', { flags: ['--max-running-per-owner', '2'] }, (target) => {
  it('refuses a start past the per-owner quota, counting the workspaces every server runs', async () => {
    const t = target();
    const [a, b, c] = await t.spread('quota', 3);
    // Each one through the server that owns it, so the holders live on different replicas.
    for (const id of [a!, b!, c!]) await t.at(await t.ownerOf(id)).call('workspace.create', { id });
    await t.at(await t.ownerOf(a!)).call('workspace.ensure', { id: a! });
    await t.at(await t.ownerOf(b!)).call('workspace.ensure', { id: b! });
    const refused = await rejection(t.at(await t.ownerOf(c!)).call('workspace.ensure', { id: c! }));
    expect(refused?.wsupCode).toBe('WSUP_QUOTA');
    expect(refused?.message).toContain('owner alice already runs 2 of 2 allowed');
    expect(refused?.message).toContain(a!);
    expect(refused?.message).toContain(b!);
    for (let i = 0; i < t.size; i++) {
      const usage = await t.at(i, 'viewer').call('quota.usage', {});
      expect(usage.perOwner).toContainEqual({ name: 'alice', running: 2, limit: 2 });
    }
    // A slot freed on one replica can be taken on another.
    await t.client().call('workspace.stop', { id: a! });
    await expect
      .poll(async () => (await rejection(t.at(await t.ownerOf(c!)).call('workspace.ensure', { id: c! }))) === null, { timeout: 20_000, interval: 200 })
      .toBe(true);
    expect((await t.client().call('workspace.get', { id: c! })).state).toBe('running');
  }, 60_000);
});
