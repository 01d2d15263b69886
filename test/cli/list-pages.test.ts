/** `wsup list` follows `nextCursor`: every workspace, though the server cuts pages to fit its frame limit. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/server/limits.ts';
import { startRig, TOKENS, type ServerRig } from '../server/rig.ts';
import { runCli } from './run-cli.ts';

let rig: ServerRig;
beforeAll(async () => {
  rig = await startRig({ server: { limits: { ...DEFAULT_LIMITS, maxFrameBytes: 32 * 1024 } } });
  for (let i = 0; i < 3000; i++) await rig.supervisor.create(`lp-${String(i).padStart(4, '0')}`, { note: 'n'.repeat(200) });
}, 60_000);
afterAll(() => rig.close());

describe('wsup list over cut pages', () => {
  const auth = () => ['--url', rig.url, '--token', TOKENS.admin, '--json'];
  const ids = (stdout: string) => (JSON.parse(stdout) as { items: Array<{ id: string }> }).items.map((w) => w.id);

  it('lists all 3000 workspaces exactly once', async () => {
    const r = await runCli(['list', ...auth()]);
    expect(r.code, r.stderr).toBe(0);
    const got = ids(r.stdout);
    expect(got).toHaveLength(3000);
    expect(new Set(got).size).toBe(3000);
    expect((JSON.parse(r.stdout) as { nextCursor: unknown }).nextCursor).toBeNull();
  }, 30_000);

  it('--limit n gives the first n, across pages', async () => {
    const r = await runCli(['list', '--limit', '2500', ...auth()]);
    expect(r.code, r.stderr).toBe(0);
    const got = ids(r.stdout);
    expect(got).toHaveLength(2500);
    expect(got.at(-1)).toBe('lp-2499');
    expect((JSON.parse(r.stdout) as { nextCursor: unknown }).nextCursor).toBe('lp-2499');
  }, 30_000);
});
