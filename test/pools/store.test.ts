/**
 * The pool rows and the pool's guarded writes on both engines: a row keeps its health across a change of
 * definition; claims take a running prebuild first, then the oldest; and of a claim and a retire of the
 * same prebuild, racing on separate connections, exactly one wins.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RETIRED_OWNER, SYSTEM_OWNER, WorkspaceStore } from '../../src/store/index.ts';
import { postgresUrl } from '../helpers/require.ts';
import { pgliteFixture, postgresFixture, type StoreFixture } from '../store/fixtures.ts';

const url = postgresUrl();
const engines: Array<[string, () => Promise<StoreFixture>]> = [['PGlite', pgliteFixture], ...(url ? [['PostgreSQL', postgresFixture(url)] as [string, () => Promise<StoreFixture>]] : [])];

describe.each(engines)('pool store on %s', (_name, fixture) => {
  const open: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const close of open.splice(0).reverse()) await close();
  });
  const stores = async (n: number): Promise<WorkspaceStore[]> => {
    const fx = await fixture();
    const out: WorkspaceStore[] = [];
    for (let i = 0; i < n; i++) out.push(await WorkspaceStore.open({ engine: await fx.engine() }));
    open.push(async () => {
      for (const s of out) await s.close();
      await fx.dispose();
    });
    return out;
  };

  it('keeps failures and backoff when the definition changes, and forgets the pool on delete', async () => {
    const [s] = await stores(1);
    const put = await s!.pools.put({ pool: 'p', desired: 2, template: 'node', params: { a: 1 }, spec: { image: 'node' }, policy: { idleTimeoutMs: 60_000 } });
    expect(put).toMatchObject({ pool: 'p', desired: 2, template: 'node', failures: 0, lastError: null, backoffUntil: null });
    const at = 1_700_000_000_123;
    expect(await s!.pools.setHealth('p', { failures: 3, lastError: { message: 'no image', at }, backoffUntil: at + 4_000 })).toBe(true);
    const changed = await s!.pools.put({ pool: 'p', desired: 5, template: null, params: null, spec: { image: 'x' }, policy: null });
    expect(changed).toMatchObject({ desired: 5, template: null, spec: { image: 'x' }, policy: null, failures: 3, lastError: { message: 'no image', at }, backoffUntil: at + 4_000 });
    expect(await s!.pools.count()).toBe(1);
    expect(await s!.pools.delete('p')).toBe(true);
    expect(await s!.pools.get('p')).toBeNull();
    expect(await s!.pools.setHealth('p', { failures: 0, lastError: null, backoffUntil: null })).toBe(false);
  });

  it('claims from a pool take a running prebuild first, then the oldest', async () => {
    const [s] = await stores(1);
    for (const id of ['old-idle', 'mid-running', 'new-running']) await s!.claims.registerPrebuild(id, {}, 'p');
    await s!.engine.query(`UPDATE workspaces SET created_at = now() - (CASE id WHEN 'old-idle' THEN 3 WHEN 'mid-running' THEN 2 ELSE 1 END) * interval '1 minute'`);
    await s!.engine.query(`UPDATE workspaces SET state = 'running' WHERE id <> 'old-idle'`);
    const order = [];
    for (let i = 0; i < 3; i++) order.push((await s!.claims.claimFromPool({ pool: 'p', ownerId: `u${i}`, claimBuildId: `cb${i}` }))?.workspaceId);
    expect(order).toEqual(['mid-running', 'new-running', 'old-idle']);
  });

  it('of a claim and a retire of one prebuild, exactly one wins; retired prebuilds cannot be claimed', async () => {
    const [a, b] = await stores(2);
    for (let round = 0; round < 20; round++) {
      const id = `pb-${round}`;
      await a!.claims.registerPrebuild(id, {}, 'race');
      const [claim, retired] = await Promise.all([b!.claims.claim({ workspaceId: id, ownerId: 'alice', claimBuildId: `cb-${round}` }), a!.pools.retire([id])]);
      expect(Number(claim.won) + retired.length, `round ${round}`).toBe(1);
      const owner = (await a!.pools.members('race')).find((m) => m.id === id)?.owner;
      expect(owner).toBe(claim.won ? 'alice' : RETIRED_OWNER);
    }
    expect(await a!.claims.claimFromPool({ pool: 'race', ownerId: 'bob', claimBuildId: 'cb-x' })).toBeNull();
    // A user whose name is the retired owner's is still a claimer: the pool sees a claimed prebuild.
    await a!.claims.registerPrebuild('pb-named', {}, 'race');
    expect((await a!.claims.claim({ workspaceId: 'pb-named', ownerId: RETIRED_OWNER, claimBuildId: 'cb-n' })).won).toBe(true);
    expect((await a!.pools.members('race')).find((m) => m.id === 'pb-named')).toMatchObject({ owner: RETIRED_OWNER, claimed: true });
    expect((await a!.pools.members('race')).filter((m) => m.claimed)).toHaveLength(1 + (await a!.pools.members('race')).filter((m) => m.owner === 'alice').length);
    expect((await a!.pools.members('race')).filter((m) => m.owner === SYSTEM_OWNER)).toEqual([]);
  });
});
