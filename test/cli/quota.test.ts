/**
 * Running quotas as a user meets them: `wsup serve --max-running-per-owner`, a start past the quota refused
 * at once naming what holds it, and `wsup status` showing the counts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, serveCli } from './run-cli.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'wsup-quota-'));
  dirs.push(d);
  return d;
};

describe('wsup serve --max-running-per-owner', () => {
  it('refuses a bad limit as a usage error', async () => {
    const r = await runCli(['serve', '--memory', '--provider', 'fake', '--port', '0', '--data-dir', tmp(), '--max-running-per-owner', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--max-running-per-owner must be a whole number of workspaces (1 or more), got "0"');
  });

  it('refuses a start past the quota at once, naming its holder, and shows the count in wsup status', async () => {
    const dir = tmp();
    const { url, stop } = await serveCli(['--memory', '--provider', 'fake', '--port', '0', '--data-dir', dir, '--max-running-per-owner', '1']);
    try {
      const auth = ['--url', url, '--data-dir', dir];
      for (const id of ['q-1', 'q-2']) expect((await runCli(['create', id, ...auth])).code).toBe(0);
      expect((await runCli(['ensure', 'q-1', ...auth])).code).toBe(0);
      const refused = await runCli(['ensure', 'q-2', ...auth]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/already runs 1 of 1 allowed \(q-1\)/);
      const status = await runCli(['status', ...auth]);
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).toMatch(/^quota owner \S+: 1 of 1 running$/m);
      // The refused workspace was never started, and stopping the holder frees the slot.
      expect((await runCli(['stop', 'q-1', ...auth])).code).toBe(0);
      expect((await runCli(['ensure', 'q-2', ...auth])).code).toBe(0);
    } finally {
      await stop();
    }
  }, 90_000);
});
