import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenFile } from '../../src/server/auth.ts';
import { startRig, TOKENS, type ServerRig } from '../server/rig.ts';
import { runCli } from './run-cli.ts';

let rig: ServerRig;
beforeAll(async () => {
  rig = await startRig({ latencyMs: 5 });
});
afterAll(() => rig.close());

describe('wsup CLI', () => {
  it('exits 0 on --help and 2 on a usage error', async () => {
    const [help, bad, missing] = await Promise.all([runCli(['--help']), runCli(['bogus']), runCli(['ensure'])]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('files-written');
    expect(bad.code).toBe(2);
    expect(missing.code).toBe(2);
  });

  it('prints exactly one JSON document with --json, on success and on failure', async () => {
    const auth = ['--url', rig.url, '--token', TOKENS.admin, '--json'];
    const ok = await runCli(['restart', 'cli-1', '--reason', 'test', '--wait', ...auth]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ id: 'cli-1', outcome: 'started', state: 'running' });
    const missing = await runCli(['status', 'cli-nope', ...auth]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout)).toMatchObject({ error: { code: -32004, wsupCode: 'WSUP_NOT_FOUND' } });
    const denied = await runCli(['stop', 'cli-1', '--url', rig.url, '--token', TOKENS.viewer, '--json']);
    expect(denied.code).toBe(1);
    expect(JSON.parse(denied.stdout)).toMatchObject({ error: { wsupCode: 'WSUP_FORBIDDEN' } });
    const list = await runCli(['list', ...auth]);
    expect((JSON.parse(list.stdout) as { items: Array<{ id: string }> }).items.map((w) => w.id)).toContain('cli-1');
  }, 60_000);

  it('reads the token from WSUP_TOKEN and reports files written', async () => {
    const r = await runCli(['files-written', 'cli-1', 'a.ts', 'b.ts', '--url', rig.url], { WSUP_TOKEN: TOKENS.operator });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 path(s) accepted');
  }, 30_000);

  it('issues, prints and rotates tokens in a data dir with mode 0600', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsup-cli-'));
    const none = await runCli(['token', '--data-dir', dir]);
    expect(none.code).toBe(1);
    const rotated = await runCli(['token', '--rotate', '--data-dir', dir, '--json']);
    const { token } = JSON.parse(rotated.stdout) as { token: string };
    expect((await runCli(['token', '--data-dir', dir])).stdout.trim()).toBe(token);
    expect(statSync(join(dir, 'tokens.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'admin.token')).mode & 0o777).toBe(0o600);
    const viewer = await runCli(['token', '--add', 'viewer', '--expires-in', '1h', '--data-dir', dir, '--json']);
    expect(JSON.parse(viewer.stdout)).toMatchObject({ role: 'viewer', expiresAt: expect.any(Number) as number });
  }, 30_000);

  it('labels a token (the requester its calls are recorded as) and removes it by label', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsup-cli-'));
    const added = await runCli(['token', '--add', 'operator', '--label', 'alice', '--data-dir', dir, '--json']);
    const { token } = JSON.parse(added.stdout) as { token: string };
    expect(TokenFile.in(dir).verify(token)).toMatchObject({ role: 'operator', label: 'alice' });
    expect((await runCli(['token', '--add', 'operator', '--label', 'has space', '--data-dir', dir])).code).toBe(2);
    expect((await runCli(['token', '--remove', 'alice', '--data-dir', dir])).code).toBe(0);
    expect(TokenFile.in(dir).verify(token)).toBeNull();
    expect((await runCli(['token', '--remove', 'alice', '--data-dir', dir])).code).toBe(1);
  }, 30_000);
});
