/**
 * `wsup serve --config` as a real process: SIGHUP reads the file again and swaps the templates in, so a
 * workspace made from a template that changed shows `outdated`; a file with a problem is refused, the
 * server stays up and keeps the templates it had.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { WsupClient } from '../../src/client/index.ts';
import { runCli } from '../cli/run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'wsup-reload-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config = (version: string) => JSON.stringify({ templates: { web: { provider: 'process', process: { env: { APP_VERSION: version } } } } });

describe('wsup serve reloads --config on SIGHUP', () => {
  it('a changed template makes its workspaces outdated; a bad file changes nothing', async () => {
    const file = join(dir, 'wsup.json');
    writeFileSync(file, config('1'));
    const op = JSON.parse((await runCli(['token', '--add', 'operator', '--data-dir', dir, '--json'])).stdout) as { token: string };
    const proc = spawn(process.execPath, ['scripts/wsup-dev.js', 'serve', '--provider', 'fake', '--memory', '--port', '0', '--data-dir', dir, '--config', file], {
      cwd: new URL('../..', import.meta.url).pathname,
      env: { ...process.env, WSUP_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => proc.once('exit', r));
    let client: WsupClient | null = null;
    try {
      const url = await new Promise<string>((resolve, reject) => {
        createInterface({ input: proc.stdout }).on('line', (l) => {
          const m = /^wsup ready on (\S+)/.exec(l);
          if (m) resolve(m[1]!);
        });
        void exited.then((code) => reject(new Error(`wsup serve exited with ${code} before it was ready: ${stderr}`)));
      });
      client = new WsupClient({ url: `${url.replace(/^http/, 'ws')}/control`, token: op.token, WebSocket, reconnect: false });
      await client.call('workspace.create', { id: 'rl-1', template: 'web' });
      expect((await client.call('workspace.get', { id: 'rl-1' })).outdated).toBe(false);

      writeFileSync(file, config('2'));
      proc.kill('SIGHUP');
      await expect.poll(async () => (await client!.call('workspace.get', { id: 'rl-1' })).outdated, { timeout: 15_000, interval: 100 }).toBe(true);
      // The log line is written after the swap, through an asynchronous stream: it may come a moment later.
      await expect.poll(() => stderr, { timeout: 15_000, interval: 100 }).toContain('templates reloaded');

      writeFileSync(file, JSON.stringify({ templates: { web: { provider: 'process', policy: { idleTimeoutMs: '30x' } } } }));
      proc.kill('SIGHUP');
      await expect.poll(() => stderr, { timeout: 15_000, interval: 100 }).toContain('templates not reloaded');
      expect(stderr).toContain('templates.web.policy.idleTimeoutMs: \\"30x\\" is not a duration');
      // Still up, still on the templates it had: a new workspace is made from version 2.
      const made = await client.call('workspace.create', { id: 'rl-2', template: 'web' });
      expect(made.spec.env).toEqual({ APP_VERSION: '[redacted]' });
      expect((await client.call('workspace.get', { id: 'rl-2' })).outdated).toBe(false);
      expect((await client.call('workspace.get', { id: 'rl-1' })).outdated).toBe(true);
      expect(proc.exitCode).toBeNull();
    } finally {
      client?.close();
      proc.kill('SIGTERM');
      await exited;
    }
  }, 90_000);
});
