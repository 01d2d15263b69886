/**
 * `wsup policy`, `wsup touch` and `wsup status` as real processes against a served supervisor, asserting
 * the printed lines like a transcript; and `wsup serve`'s default policy (flags and config file).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRig, TOKENS, type ServerRig } from '../server/rig.ts';
import { runCli, serveCli } from './run-cli.ts';

let rig: ServerRig;
const dirs: string[] = [];
beforeAll(async () => {
  rig = await startRig({ latencyMs: 5 });
});
afterAll(async () => {
  await rig.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const as = (role: 'admin' | 'operator' | 'viewer') => ['--url', rig.url, '--token', TOKENS[role]];
const CLOCK = '\\d\\d:\\d\\d:\\d\\dZ';
/** 30 minutes from the deadline's answer to the print, on a busy machine maybe a few seconds less. */
const ABOUT_30M = '(?:30m|29m\\d{1,2}s)';

describe('wsup policy / touch / status', () => {
  it('sets rules, shows the policy and its next action, touches and reports the idle deadline', async () => {
    await rig.client('admin').call('workspace.create', { id: 'cli-pol' });
    await rig.client('admin').call('workspace.ensure', { id: 'cli-pol' });

    const set = await runCli(['policy', 'cli-pol', '--idle', '30m', '--max-lifetime', '8h', '--warn', '15m', '--autostart', '0 9 * * 1-5', '--autostop', '0 19 * * 1-5', '--tz', 'Europe/Berlin', ...as('operator')]);
    expect(set.code, set.stderr).toBe(0);
    const lines = set.stdout.trimEnd().split('\n');
    expect(lines.slice(0, 8)).toEqual([
      'cli-pol policy:',
      '  idle timeout:          30m',
      '  max lifetime:          8h (warning 15m before)',
      '  autostart:             "0 9 * * 1-5" Europe/Berlin',
      '  autostop:              "0 19 * * 1-5" Europe/Berlin',
      '  dormant after:         off',
      '  delete dormant after:  off',
      '  auto-update:           off',
    ]);
    expect(lines[8]).toMatch(/^next: stops in \d+[hm]/);

    // One rule off; the others stay.
    const off = await runCli(['policy', 'cli-pol', '--idle', 'off', ...as('operator')]);
    expect(off.stdout).toContain('  idle timeout:          off\n');
    expect(off.stdout).toContain('  max lifetime:          8h (warning 15m before)\n');
    expect((await runCli(['touch', 'cli-pol', ...as('operator')])).stdout).toBe('cli-pol: no idle timeout\n');

    await runCli(['policy', 'cli-pol', '--idle', '30m', ...as('operator')]);
    const touched = await runCli(['touch', 'cli-pol', '--source', 'deploy script', ...as('operator')]);
    expect(touched.code, touched.stderr).toBe(0);
    expect(touched.stdout).toMatch(new RegExp(`^cli-pol: idle deadline in ${ABOUT_30M} \\(${CLOCK}\\)\\n$`));

    const status = await runCli(['status', 'cli-pol', ...as('viewer')]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^last activity: ${CLOCK}$`, 'm'));
    expect(status.stdout).toMatch(new RegExp(`^stops in ${ABOUT_30M}: idle for 30m since deploy script at ${CLOCK}$`, 'm'));

    // A viewer may look (no flags) but not set.
    const look = await runCli(['policy', 'cli-pol', ...as('viewer')]);
    expect(look.stdout).toContain('  idle timeout:          30m\n');
    const denied = await runCli(['policy', 'cli-pol', '--idle', '1h', '--json', ...as('viewer')]);
    expect(denied.code).toBe(1);
    expect(JSON.parse(denied.stdout)).toMatchObject({ error: { wsupCode: 'WSUP_FORBIDDEN' } });

    const cleared = await runCli(['policy', 'cli-pol', '--clear', ...as('operator')]);
    expect(cleared.stdout).toContain('  max lifetime:          off\n');
    expect(cleared.stdout).toContain('  autostart:             off\n');
    expect(cleared.stdout.trimEnd().split('\n').at(-1)).toBe('next: no policy action scheduled');
    expect((await runCli(['status', 'cli-pol', ...as('viewer')])).stdout).toMatch(/^no policy action scheduled$/m);
  }, 120_000);

  it('a bad flag is a usage error naming it (exit 2) and asks the server nothing; a bad cron is the server\'s -32602', async () => {
    const bad = await runCli(['policy', 'cli-pol', '--idle', '30x', '--url', 'http://127.0.0.1:1', '--token', 't']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('wsup: --idle: "30x" is not a duration: use e.g. 45s, 30m, 8h, 14d\n');
    const cron = await runCli(['policy', 'cli-pol', '--autostop', 'at seven', '--json', ...as('operator')]);
    expect(cron.code).toBe(1);
    expect(JSON.parse(cron.stdout)).toMatchObject({ error: { code: -32602 } });
    expect((JSON.parse(cron.stdout) as { error: { message: string } }).error.message).toMatch(/autostop/);
  }, 60_000);

  it('--help documents each command', async () => {
    const [policy, touch, serve] = await Promise.all([runCli(['policy', '--help']), runCli(['touch', '--help']), runCli(['serve', '--help'])]);
    expect(policy.stdout).toContain('--max-lifetime <duration>');
    expect(policy.stdout).toContain('--clear');
    expect(touch.stdout).toContain('--source <text>');
    expect(serve.stdout).toContain('--idle-timeout <duration>');
  }, 60_000);
});

describe('wsup serve default policy', () => {
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'wsup-cli-pol-'));
    dirs.push(d);
    return d;
  };

  it('refuses a bad duration at startup, naming the flag', async () => {
    const r = await runCli(['serve', '--memory', '--provider', 'fake', '--port', '0', '--data-dir', tmp(), '--idle-timeout', '30x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--idle-timeout: "30x" is not a duration: use e.g. 45s, 30m, 8h, 14d');
    expect(r.stdout).not.toContain('wsup ready');
  }, 60_000);

  it('refuses a config default that deletes dormant workspaces, naming its path', async () => {
    const dir = tmp();
    const file = join(dir, 'wsup.json');
    writeFileSync(file, JSON.stringify({ defaults: { policy: { deleteDormantAfterMs: '30d' } }, templates: {} }));
    const r = await runCli(['serve', '--memory', '--provider', 'fake', '--port', '0', '--data-dir', dir, '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`config ${file}: defaults.policy.deleteDormantAfterMs`);
  }, 60_000);

  it('gives every workspace the defaults of the flags and the config file, under its own rules', async () => {
    const dir = tmp();
    const file = join(dir, 'wsup.json');
    writeFileSync(file, JSON.stringify({ defaults: { policy: { idleTimeoutMs: '1h', dormantAfterMs: '14d' } }, templates: {} }));
    const { url, stop } = await serveCli(['--memory', '--provider', 'fake', '--port', '0', '--data-dir', dir, '--config', file, '--idle-timeout', '30m', '--max-lifetime', '8h']);
    try {
      const auth = ['--url', url, '--data-dir', dir];
      expect((await runCli(['create', 'def-1', ...auth])).code).toBe(0);
      const shown = await runCli(['policy', 'def-1', ...auth]);
      expect(shown.stdout).toContain('  idle timeout:          30m\n');
      expect(shown.stdout).toContain('  max lifetime:          8h\n');
      expect(shown.stdout).toContain('  dormant after:         14d\n');
      const own = await runCli(['policy', 'def-1', '--idle', '2h', '--json', ...auth]);
      expect(JSON.parse(own.stdout)).toMatchObject({ policy: { idleTimeoutMs: 7_200_000, maxLifetimeMs: 28_800_000, dormantAfterMs: 1_209_600_000 } });
    } finally {
      await stop();
    }
  }, 90_000);
});
