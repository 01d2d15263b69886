/**
 * `wsup serve` as a child process: shutdown is bounded by --shutdown-grace even while a provider call
 * hangs, and a second signal exits at once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { runCli } from './run-cli.ts';

const root = mkdtempSync(join(tmpdir(), 'wsup-shutdown-'));
const children: ChildProcess[] = [];
/** Passed to the hanging workspace's process so this file can find what it started, and only that. */
const TAG = `wsup-shutdown-test-${randomBytes(4).toString('hex')}`;
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  // A workspace outlives the server that started it (the next one adopts it): end this file's ones here.
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
    } catch {
      continue; // gone meanwhile
    }
    if (cmdline.split('\0').includes(TAG)) process.kill(Number(pid), 'SIGKILL');
  }
  rmSync(root, { recursive: true, force: true });
});

/** A workspace whose start hangs: the process lives but never answers its health check. */
const HANGS = JSON.stringify({ command: [process.execPath, '-e', 'setInterval(() => {}, 1000)', TAG] });

async function serve(graceMs: number) {
  const dataDir = mkdtempSync(join(root, 'data-'));
  const child = spawn(process.execPath, ['scripts/wsup-dev.js', 'serve', '--port', '0', '--memory', '--data-dir', dataDir, '--shutdown-grace', String(graceMs)], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, WSUP_URL: '', WSUP_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((r) => child.once('exit', (code) => r({ code, at: Date.now() })));
  const url = await vi.waitFor(() => {
    const m = /ready on (\S+)/.exec(stdout);
    if (!m) throw new Error(`not ready yet: ${stderr}`);
    return m[1]!;
  }, { timeout: 30_000 });
  const client = ['--url', url, '--data-dir', dataDir];
  // Start a workspace whose provider call hangs, and wait until the supervisor is in it.
  expect((await runCli(['create', 'hang', '--spec', HANGS, ...client])).code).toBe(0);
  void runCli(['ensure', 'hang', '--timeout', '0', ...client]);
  await vi.waitFor(async () => expect((await runCli(['status', 'hang', '--json', ...client])).stdout).toContain('"starting"'), { timeout: 20_000 });
  return { child, exited, stderr: () => stderr };
}

describe('wsup serve shutdown', () => {
  it('exits within the grace while a provider call hangs', async () => {
    const graceMs = 1_500;
    const { child, exited } = await serve(graceMs);
    const signalled = Date.now();
    child.kill('SIGTERM');
    const { at } = await exited;
    expect(at - signalled).toBeLessThan(graceMs + 1_000); // the grace, plus the exit itself
  }, 60_000);

  it('exits at once on a second signal', async () => {
    const { child, exited, stderr } = await serve(60_000);
    child.kill('SIGTERM');
    await vi.waitFor(() => expect(stderr()).toContain('shutting down'), { timeout: 10_000 });
    const second = Date.now();
    child.kill('SIGINT');
    const { code, at } = await exited;
    expect(code).toBe(130);
    expect(at - second).toBeLessThan(2_000);
  }, 60_000);
});
