/**
 * The pool scenario against a real provider, on real time and a PGlite store: fill to 3, refill after a
 * claim, shrink, and back off a template that cannot start. Shared by the process and docker suites.
 */
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import type { Provider } from '../../src/providers/types.ts';
import { SYSTEM_OWNER, WorkspaceStore } from '../../src/store/index.ts';
import { ClaimService } from '../../src/supervisor/claims.ts';
import { openDurableSupervisor } from '../../src/supervisor/durable.ts';
import { PoolService } from '../../src/supervisor/pools.ts';
import type { Supervisor } from '../../src/supervisor/supervisor.ts';
import { pgliteFixture, type StoreFixture } from '../store/fixtures.ts';
import { rawSpec } from './rig.ts';

export interface RealPoolCase {
  provider: () => Provider;
  /** Spec of a prebuild that starts and keeps running. */
  good: Record<string, unknown>;
  /** Spec of a prebuild whose start always fails. */
  bad: Record<string, unknown>;
  /** Unique pool name prefix (ids start with it). */
  prefix: string;
  /** Provider resources of ours still there (for the shrink check), by id. */
  resources: (p: Provider) => Promise<string[]>;
}

export function realPoolSuite(c: RealPoolCase): void {
  let fx: StoreFixture;
  let store: WorkspaceStore;
  let sup: Supervisor;
  let claims: ClaimService;
  let pools: PoolService;
  let provider: Provider;
  const errors: unknown[] = [];

  beforeAll(async () => {
    fx = await pgliteFixture();
    store = await WorkspaceStore.open({ engine: await fx.engine() });
    provider = c.provider();
    claims = new ClaimService({ store });
    await claims.load();
    ({ supervisor: sup } = await openDurableSupervisor({ store, provider, prepareSpec: claims.prepareSpec, beforeRecovery: (s) => claims.attach(s) }));
    pools = new PoolService({ store, claims, supervisor: sup, backoffBaseMs: 500, onError: (e) => errors.push(e) });
    await pools.start();
  }, 60_000);

  afterAll(async () => {
    await pools.close();
    await Promise.allSettled((await sup.list()).filter((v) => v.state !== 'destroyed').map((v) => sup.destroy(v.id)));
    claims.close();
    await sup.shutdown({ deadlineMs: 10_000 });
    await provider.close?.();
    await store.close();
    await fx.dispose();
  }, 90_000);

  const unclaimed = async (pool: string) => {
    const members = await store.pools.members(pool);
    const views = await Promise.all(members.filter((m) => m.owner === SYSTEM_OWNER).map((m) => sup.get(m.id)));
    return views.filter((v) => v.desired !== 'destroyed' && v.state !== 'destroyed');
  };
  const poll = { timeout: 60_000, interval: 100 };

  it('fills to 3 running, refills after a claim, and shrinks to 1 leaving the claimed one running', async () => {
    const pool = `${c.prefix}-ok`;
    await pools.set({ pool, desired: 3, spec: c.good }, rawSpec);
    await vi.waitFor(async () => expect((await unclaimed(pool)).map((v) => v.state)).toEqual(['running', 'running', 'running']), poll);
    const first = (await unclaimed(pool)).map((v) => v.id);
    expect(await c.resources(provider)).toEqual(expect.arrayContaining(first));

    const claim = await claims.claim({ pool, userId: 'alice' });
    expect(first).toContain(claim.id);
    await vi.waitFor(async () => {
      const now = await unclaimed(pool);
      expect(now.map((v) => v.state)).toEqual(['running', 'running', 'running']);
      expect(now.map((v) => v.id)).not.toContain(claim.id);
      expect((await sup.get(claim.id)).state).toBe('running');
    }, poll);

    await pools.set({ pool, desired: 1 }, rawSpec);
    await vi.waitFor(async () => {
      expect(await unclaimed(pool)).toHaveLength(1);
      const { rows: gone } = await store.engine.query<{ id: string }>('SELECT id FROM workspaces WHERE destroyed_at IS NOT NULL AND starts_with(id, $1)', [pool]);
      expect(gone).toHaveLength(2);
    }, poll);
    const left = [...(await unclaimed(pool)).map((v) => v.id), claim.id];
    await vi.waitFor(async () => expect((await c.resources(provider)).filter((id) => id.startsWith(pool)).sort()).toEqual(left.sort()), poll);
    expect((await sup.get(claim.id)).state).toBe('running');
    expect(await pools.get(pool)).toMatchObject({ desired: 1, ready: 1, starting: 0, failing: 0 });
  }, 120_000);

  it('a template that cannot start backs off and leaves no failed prebuilds behind', async () => {
    const pool = `${c.prefix}-bad`;
    await pools.set({ pool, desired: 2, spec: c.bad }, rawSpec);
    await vi.waitFor(async () => expect((await store.pools.get(pool))?.failures).toBeGreaterThanOrEqual(3), poll);
    const view = await pools.get(pool);
    expect(view.lastError?.message).toMatch(/\S/);
    expect(view.backoffUntil).not.toBeNull();
    const row = (await store.pools.get(pool))!;
    // The backoff grows with the failures: at least base * 2^(failures - 1) after the last one.
    expect(row.backoffUntil! - row.lastError!.at).toBe(Math.min(300_000, 500 * 2 ** (row.failures - 1)));
    // Failed prebuilds are destroyed; while backing off, at most one probe is alive at a time.
    await vi.waitFor(async () => expect((await unclaimed(pool)).length).toBeLessThanOrEqual(1), poll);
    const made = (await sup.list()).filter((v) => v.id.startsWith(`${pool}-`)).length;
    expect(made).toBeLessThanOrEqual(row.failures + 2);
  }, 120_000);
}
