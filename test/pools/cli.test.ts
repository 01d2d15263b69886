/**
 * `wsup pool set/get/list/delete` as a process against a real control server with pools: JSON output,
 * human output, usage errors (exit 2, nothing sent) and a refusal the server answers (exit 1).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../cli/run-cli.ts';
import { startPoolServer, tokenOf, type PoolServer } from './server.ts';

let rig: PoolServer;
const as = (role: 'admin' | 'operator' | 'viewer') => ['--url', rig.url, '--token', tokenOf(role)];
beforeAll(async () => {
  rig = await startPoolServer();
}, 60_000);
afterAll(() => rig.close());

describe('wsup pool', () => {
  it('sets, gets, lists and deletes a pool', async () => {
    const set = await runCli(['pool', 'set', 'cli', '--desired', '2', '--policy', '{"idleTimeoutMs":60000}', '--json', ...as('operator')]);
    expect(set.code, set.stderr + set.stdout).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ pool: 'cli', desired: 2, template: 'default', policy: { idleTimeoutMs: 60_000 } });

    await vi.waitFor(async () => {
      const got = await runCli(['pool', 'get', 'cli', '--json', ...as('viewer')]);
      expect(got.code, got.stderr).toBe(0);
      expect(JSON.parse(got.stdout)).toMatchObject({ pool: 'cli', ready: 2, starting: 0, failing: 0 });
    }, { timeout: 30_000, interval: 200 });
    const human = await runCli(['pool', 'get', 'cli', ...as('viewer')]);
    expect(human.stdout).toContain('cli: 2 ready, 0 starting, 0 failing of 2 desired (template default)');

    const listed = await runCli(['pool', 'list', ...as('viewer')]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^POOL\s+DESIRED\s+READY/);
    expect(listed.stdout).toMatch(/\ncli\s+2\s+2\s+0\s+0\s+default/);

    const scaled = await runCli(['pool', 'set', 'cli', '--desired', '1', '--json', ...as('operator')]);
    expect(JSON.parse(scaled.stdout)).toMatchObject({ desired: 1, template: 'default', policy: { idleTimeoutMs: 60_000 } });

    const deleted = await runCli(['pool', 'delete', 'cli', '--json', ...as('operator')]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(JSON.parse(deleted.stdout)).toMatchObject({ pool: 'cli', destroyed: 1 });
    const gone = await runCli(['pool', 'get', 'cli', '--json', ...as('viewer')]);
    expect(gone.code).toBe(1);
    expect(JSON.parse(gone.stdout)).toMatchObject({ error: { wsupCode: 'WSUP_NOT_FOUND' } });
  }, 90_000);

  it('exits 2 on bad flags and sends nothing; exits 1 on a refusal', async () => {
    const [noDesired, badDesired, both, badPolicy] = await Promise.all([
      runCli(['pool', 'set', 'cli-x', '--json', ...as('admin')]),
      runCli(['pool', 'set', 'cli-x', '--desired', 'lots', '--json', ...as('admin')]),
      runCli(['pool', 'set', 'cli-x', '--desired', '1', '--template', 'default', '--spec', '{}', '--json', ...as('admin')]),
      runCli(['pool', 'set', 'cli-x', '--desired', '1', '--policy', '{nope', '--json', ...as('admin')]),
    ]);
    for (const r of [noDesired, badDesired, both, badPolicy]) expect(r.code, r.stdout + r.stderr).toBe(2);
    expect((JSON.parse(badPolicy.stdout) as { error: { message: string } }).error.message).toContain('--policy is not JSON');
    expect(await rig.store.pools.get('cli-x')).toBeNull();

    const spec = await runCli(['pool', 'set', 'cli-x', '--desired', '1', '--spec', '{"image":"x"}', '--json', ...as('operator')]);
    expect(spec.code).toBe(1);
    expect(JSON.parse(spec.stdout)).toMatchObject({ error: { wsupCode: 'WSUP_POLICY' } });
    expect(await rig.store.pools.get('cli-x')).toBeNull();
  }, 90_000);
});
