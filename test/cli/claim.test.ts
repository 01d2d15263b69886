/**
 * `wsup create --prebuild` and `wsup claim` against a real control server over a durable store (PGlite):
 * a pool claim takes a prebuild, a second claim of the same prebuild fails with the conflict code, and
 * usage errors exit 2 before anything is sent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, startClaimRig, type ClaimRig } from '../agent/rig.ts';
import { pgliteFixture, type StoreFixture } from '../store/fixtures.ts';
import { runCli } from './run-cli.ts';

let fx: StoreFixture;
let rig: ClaimRig;
let auth: string[];
beforeAll(async () => {
  fx = await pgliteFixture();
  rig = await startClaimRig(await fx.engine());
  auth = ['--url', rig.controlUrl, '--token', ADMIN, '--json'];
});
afterAll(async () => {
  await rig.close();
  await fx.dispose();
});

describe('wsup create / claim', () => {
  it('creates prebuilds, claims one from the pool, and refuses a second claim of it', async () => {
    const created = await runCli(['create', 'cli-pb-1', '--prebuild', '--pool', 'node', ...auth]);
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ id: 'cli-pb-1', state: 'idle', owner: 'system', pool: 'node' });

    const claimed = await runCli(['claim', '--pool', 'node', '--user', 'alice', ...auth]);
    expect(claimed.code, claimed.stderr).toBe(0);
    const doc = JSON.parse(claimed.stdout) as { id: string; ownerId: string; claimBuildId: string };
    expect(doc).toMatchObject({ id: 'cli-pb-1', ownerId: 'alice' });
    expect(doc.claimBuildId).toMatch(/\S/);
    expect((await rig.store.claims.get('cli-pb-1'))?.ownerId).toBe('alice');
    // Views carry the prebuild's owner and pool, so operators (and the visualizer) can filter by them.
    const listed = await runCli(['list', ...auth]);
    expect(JSON.parse(listed.stdout)).toMatchObject({ items: [{ id: 'cli-pb-1', owner: 'alice', pool: 'node' }] });

    const again = await runCli(['claim', 'cli-pb-1', '--user', 'bob', ...auth]);
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout)).toMatchObject({ error: { wsupCode: 'WSUP_CLAIM_CONFLICT' } });
    expect((await rig.store.claims.get('cli-pb-1'))?.ownerId).toBe('alice');
  }, 60_000);

  it('exits 2 on bad flags and sends nothing', async () => {
    const [both, noUser, badSpec, poolOnly] = await Promise.all([
      runCli(['claim', 'cli-pb-x', '--pool', 'node', '--user', 'a', ...auth]),
      runCli(['claim', 'cli-pb-x', ...auth]),
      runCli(['create', 'cli-x', '--spec', '{nope', ...auth]),
      runCli(['create', 'cli-x', '--pool', 'node', ...auth]),
    ]);
    for (const r of [both, noUser, badSpec, poolOnly]) expect(r.code, r.stdout + r.stderr).toBe(2);
    expect((JSON.parse(badSpec.stdout) as { error: { message: string } }).error.message).toContain('--spec is not JSON');
    expect(await rig.supervisor.has('cli-x')).toBe(false);
  }, 60_000);
});
