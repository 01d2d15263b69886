/**
 * An unclaimed prebuild is under no lifecycle policy: its pool keeps it warm, and an idle or lifetime stop
 * would only have the pool start it again, forever. The policy (server default, template, pool) begins at
 * the claim.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { poolRig, rawSpec, type PoolRig } from './rig.ts';

const rigs: PoolRig[] = [];
afterEach(async () => {
  await Promise.all(rigs.splice(0).map((r) => r.close()));
});

const MIN = 60_000;

describe('lifecycle policy of prebuilds', () => {
  it('a server-wide idle timeout does not stop unclaimed prebuilds, and applies from the claim', async () => {
    const r = await poolRig({ policy: { idleTimeoutMs: 5 * MIN } });
    rigs.push(r);
    await r.pools.set({ pool: 'web', desired: 2, spec: { image: 'web' }, policy: { maxLifetimeMs: 60 * MIN } }, rawSpec);
    expect(await r.until(async () => (await r.pools.get('web')).ready === 2)).toBe(true);
    const starts = () => r.provider.calls.filter((c) => c.op === 'start').length;
    const before = starts();
    for (const v of await r.sup.list()) expect(v).toMatchObject({ policy: { idleTimeoutMs: null, maxLifetimeMs: null }, next: null });

    // Half an hour of nobody using them: no policy stop, so no churn of stop-and-refill.
    await r.advance(30 * MIN);
    expect(starts()).toBe(before);
    expect(r.events.filter((e) => e.type === 'policy')).toEqual([]);

    const { id } = await r.claims.claim({ pool: 'web', userId: 'alice' });
    expect(await r.until(async () => (await r.sup.get(id)).state === 'running' && (await r.sup.get(id)).cycle >= 2)).toBe(true);
    const claimed = await r.sup.get(id);
    expect(claimed.policy).toMatchObject({ idleTimeoutMs: 5 * MIN, maxLifetimeMs: 60 * MIN });
    expect(claimed.next).toMatchObject({ action: 'stop', source: 'idle' });
    await r.advance(6 * MIN);
    expect(await r.until(async () => (await r.sup.get(id)).state === 'idle')).toBe(true);
    expect(r.events.some((e) => e.type === 'policy' && e.id === id && e.source === 'idle')).toBe(true);
  });
});
