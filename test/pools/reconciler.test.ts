/**
 * The pool reconciler on a SimulatedClock with the FakeProvider and a real (PGlite) store: it fills to
 * `desired`, refills after a claim, shrinks without touching claimed prebuilds, backs off a failing
 * template exponentially with one probe per backoff, and never overshoots under concurrent `set`s.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { WsupError } from '../../src/errors.ts';
import { MAX_POOLS } from '../../src/supervisor/pools.ts';
import { poolRig, rawSpec, type PoolRig } from './rig.ts';

const rigs: PoolRig[] = [];
afterEach(async () => {
  await Promise.all(rigs.splice(0).map((r) => r.close()));
});
async function rig(opts: Parameters<typeof poolRig>[0] = {}): Promise<PoolRig> {
  const r = await poolRig(opts);
  rigs.push(r);
  return r;
}

const running = async (r: PoolRig, pool: string, n: number) => {
  const { unclaimed } = await r.members(pool);
  return unclaimed.length === n && unclaimed.every((v) => v.state === 'running');
};

describe('pool reconciler', () => {
  it('fills to desired, refills after a claim, and shrinks without touching the claimed prebuild', async () => {
    const r = await rig();
    const set = await r.pools.set({ pool: 'node', desired: 3, spec: { image: 'node' } }, rawSpec);
    expect(set).toMatchObject({ pool: 'node', desired: 3, ready: 0, starting: 3, failing: 0 });
    expect(await r.until(() => running(r, 'node', 3))).toBe(true);
    const ids = (await r.members('node')).unclaimed.map((v) => v.id);
    for (const id of ids) expect(id).toMatch(/^node-[0-9a-f]{8}$/);
    expect(await r.pools.get('node')).toMatchObject({ ready: 3, starting: 0, failing: 0 });

    const claim = await r.claims.claim({ pool: 'node', userId: 'alice' });
    expect(ids).toContain(claim.id);
    // The claim's restart asks for a pass at once: a fourth prebuild is starting before any time passes.
    await r.advance(0);
    expect((await r.members('node')).unclaimed).toHaveLength(3);
    expect(await r.until(() => running(r, 'node', 3))).toBe(true);
    const after = await r.members('node');
    expect(after.claimed.map((v) => v.id)).toEqual([claim.id]);
    expect(after.unclaimed.map((v) => v.id)).not.toContain(claim.id);

    await r.pools.set({ pool: 'node', desired: 1 }, rawSpec);
    expect(await r.until(async () => (await r.members('node')).unclaimed.length === 1 && (await r.pools.get('node')).ready === 1)).toBe(true);
    expect(await r.until(async () => (await r.sup.get(claim.id)).state === 'running')).toBe(true); // its claim build
    const shrunk = await r.members('node');
    expect(shrunk.claimed.map((v) => v.id)).toEqual([claim.id]);
    // Exactly two prebuilds were destroyed, and the claimed one was never asked to stop.
    const { rows: gone } = await r.store.engine.query<{ id: string }>('SELECT id FROM workspaces WHERE destroyed_at IS NOT NULL');
    expect(gone).toHaveLength(2);
    expect(r.provider.calls.filter((c) => c.id === claim.id && c.op === 'stop')).toHaveLength(1); // its claim build's stop half
    expect(r.errors).toEqual([]);
  });

  it('backs off a template that always fails, doubling, with one new prebuild per backoff', async () => {
    const r = await rig({ fault: (call) => (call.op === 'start' ? new Error('image broken:latest not found') : undefined) });
    await r.pools.set({ pool: 'broken', desired: 3, spec: { image: 'broken:latest' } }, rawSpec);
    const firstIds = new Set((await r.sup.list()).map((v) => v.id));
    expect(firstIds.size).toBe(3);
    // The first three fail together: failures 3, backoff 4 s from the failure.
    expect(await r.until(async () => (await r.pools.get('broken')).backoffUntil !== null)).toBe(true);
    await r.advance(0);
    const first = await r.pools.get('broken');
    expect(first.lastError?.message).toContain('image broken:latest not found');
    expect(first.backoffUntil! - first.lastError!.at).toBe(4_000);
    // The failed prebuilds are destroyed, not kept: nothing piles up.
    expect(await r.until(async () => (await r.sup.list()).every((v) => v.state === 'destroyed'))).toBe(true);

    const gaps: number[] = [];
    let seen = new Set(firstIds);
    let until = first.backoffUntil!;
    for (let round = 0; round < 4; round++) {
      // Nothing new is built before the backoff ends...
      await r.advance(until - r.clock.now() - 1);
      expect((await r.sup.list()).filter((v) => !seen.has(v.id))).toEqual([]);
      // ...then exactly one probe, which fails and doubles the backoff.
      const next = until;
      expect(await r.until(async () => ((await r.pools.get('broken')).backoffUntil ?? 0) > next, 60_000, 10)).toBe(true);
      const fresh = (await r.sup.list()).filter((v) => !seen.has(v.id));
      expect(fresh).toHaveLength(1);
      seen = new Set([...seen, ...fresh.map((v) => v.id)]);
      const view = await r.pools.get('broken');
      gaps.push(view.backoffUntil! - view.lastError!.at);
      until = view.backoffUntil!;
    }
    expect(gaps).toEqual([8_000, 16_000, 32_000, 64_000]);
    const row = await r.store.pools.get('broken');
    expect(row?.failures).toBe(7);
  });

  it('reports failing, lastError and backoffUntil while a failed prebuild is being destroyed', async () => {
    // Starts fail at once; stops take 500 ms, so the failed prebuild is visible while it goes.
    const r = await rig({ fault: (call) => (call.op === 'start' ? new Error('exited with status 1') : { latencyMs: 500 }) });
    await r.pools.set({ pool: 'bad', desired: 1, spec: { cmd: ['false'] } }, rawSpec);
    expect(await r.until(async () => (await r.pools.get('bad')).failing === 1, 10_000, 10)).toBe(true);
    const view = await r.pools.get('bad');
    expect(view).toMatchObject({ pool: 'bad', desired: 1, ready: 0, failing: 1 });
    expect(view.lastError?.message).toContain('exited with status 1');
    expect(view.backoffUntil).toBe(view.lastError!.at + 1_000);
    expect(await r.until(async () => (await r.pools.get('bad')).failing === 0, 10_000, 10)).toBe(true);
  });

  it('a completed start resets the failure count and fills to desired again', async () => {
    let broken = true;
    const r = await rig({ fault: (call) => (call.op === 'start' && broken ? new Error('registry down') : undefined) });
    await r.pools.set({ pool: 'flaky', desired: 2, spec: {} }, rawSpec);
    expect(await r.until(async () => ((await r.store.pools.get('flaky'))?.failures ?? 0) >= 2)).toBe(true);
    broken = false;
    expect(await r.until(() => running(r, 'flaky', 2))).toBe(true);
    expect(await r.store.pools.get('flaky')).toMatchObject({ failures: 0, backoffUntil: null });
  });

  it('claims from a pool take a running prebuild before a starting one, even an older one', async () => {
    const r = await rig({ latencyMs: 100 });
    await r.pools.set({ pool: 'mix', desired: 1, spec: {} }, rawSpec);
    expect(await r.until(() => running(r, 'mix', 1))).toBe(true);
    const [ready] = (await r.members('mix')).unclaimed;
    // An older prebuild of the same pool, still starting when the claim comes.
    r.provider.latencyMs = 60_000;
    await r.claims.createPrebuild('mix-0older00', {}, 'mix');
    await r.store.engine.query("UPDATE workspaces SET created_at = now() - interval '1 hour' WHERE id = 'mix-0older00'");
    void r.sup.ensure('mix-0older00').catch(() => undefined);
    expect((await r.sup.get('mix-0older00')).state).toBe('starting');
    const claim = await r.claims.claim({ pool: 'mix', userId: 'bob' });
    expect(claim.id).toBe(ready!.id);
  });

  it('concurrent sets never overshoot desired', async () => {
    const r = await rig({ latencyMs: 1_000 });
    const wants = [5, 2, 7, 3, 7, 4, 6];
    const views = await Promise.all(wants.map((desired) => r.pools.set({ pool: 'busy', desired, spec: {} }, rawSpec)));
    expect(views.every((v) => v.ready + v.starting <= 7)).toBe(true);
    let most = 0;
    const ok = await r.until(async () => {
      const live = (await r.sup.list()).filter((v) => v.desired !== 'destroyed' && v.state !== 'destroyed').length;
      most = Math.max(most, live);
      return running(r, 'busy', (await r.store.pools.get('busy'))!.desired);
    });
    expect(ok).toBe(true);
    const final = (await r.store.pools.get('busy'))!.desired;
    expect(wants).toContain(final);
    expect(most).toBeLessThanOrEqual(7);
    expect((await r.members('busy')).unclaimed).toHaveLength(final);
  });

  it('refuses a pool name that cannot make a prebuild id, a desired past the cap, and pools past the cap', async () => {
    const r = await rig();
    const refused = async (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e as WsupError);
    const long = await refused(r.pools.set({ pool: 'x'.repeat(60), desired: 1, spec: {} }, rawSpec));
    expect(long).toMatchObject({ code: 'WSUP_INVALID_ARGUMENT' });
    expect(long!.message).toMatch(/1-54 chars.*<pool>-<8 hex>/);
    expect((await refused(r.pools.set({ pool: 'Upper', desired: 1, spec: {} }, rawSpec)))?.message).toContain('a-z');
    expect((await refused(r.pools.set({ pool: 'big', desired: 1_001, spec: {} }, rawSpec)))?.message).toContain('desired must be a whole number from 0 to 1000');
    expect(await r.store.pools.count()).toBe(0);

    await Promise.all(Array.from({ length: MAX_POOLS }, (_, i) => r.pools.set({ pool: `p${i}`, desired: 0, spec: {} }, rawSpec)));
    const over = await refused(r.pools.set({ pool: 'one-more', desired: 0, spec: {} }, rawSpec));
    expect(over?.message).toContain(`at most ${MAX_POOLS} pools`);
    expect(await r.store.pools.count()).toBe(MAX_POOLS);
    // An existing pool can still be changed at the cap.
    expect(await r.pools.set({ pool: 'p0', desired: 0, spec: { x: 1 } }, rawSpec)).toMatchObject({ pool: 'p0' });
  });

  it('delete destroys the unclaimed prebuilds, keeps the claimed one, and drops the row', async () => {
    const r = await rig();
    await r.pools.set({ pool: 'gone', desired: 2, spec: {} }, rawSpec);
    expect(await r.until(() => running(r, 'gone', 2))).toBe(true);
    const claim = await r.claims.claim({ pool: 'gone', userId: 'carol' });
    await r.advance(0);
    const res = await r.pools.delete('gone');
    expect(res.pool).toBe('gone');
    expect(res.destroyed).toBeGreaterThanOrEqual(2); // the refill may have made a third meanwhile
    expect(await r.until(async () => (await r.sup.list()).filter((v) => v.state !== 'destroyed').length === 1)).toBe(true);
    expect((await r.sup.get(claim.id)).state).not.toBe('destroyed');
    expect(await r.store.pools.get('gone')).toBeNull();
    await expect(r.pools.get('gone')).rejects.toMatchObject({ code: 'WSUP_NOT_FOUND' });
    await r.advance(60_000); // sweeps find nothing to do for a deleted pool
    expect((await r.sup.list()).filter((v) => v.state !== 'destroyed').map((v) => v.id)).toEqual([claim.id]);
  });

  it('the policy goes into each prebuild spec as wsupPolicyDefaults', async () => {
    const r = await rig();
    await r.pools.set({ pool: 'pol', desired: 1, spec: { image: 'x' }, policy: { idleTimeoutMs: 60_000 } }, rawSpec);
    const [v] = await r.sup.list();
    expect(v!.spec).toMatchObject({ image: 'x', wsupPolicyDefaults: { idleTimeoutMs: 60_000 } });
    expect(await r.pools.get('pol')).toMatchObject({ policy: { idleTimeoutMs: 60_000 }, template: null });
  });
});
