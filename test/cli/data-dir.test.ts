/**
 * `wsup serve` keeps its data dir to its user: the dir is 0700, every file in it 0600 (the PGlite store
 * included), and a data dir others can write to is refused with the fix in the message.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { runCli } from './run-cli.ts';

const root = mkdtempSync(join(tmpdir(), 'wsup-datadir-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Paths under `dir` whose mode grants anything to group or others. */
function exposed(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if ((statSync(p).mode & 0o077) !== 0) out.push(`${p} ${(statSync(p).mode & 0o777).toString(8)}`);
    if (e.isDirectory()) out.push(...exposed(p));
  }
  return out;
}

describe('wsup serve data dir', () => {
  it('creates the dir 0700 and every file in it for its user only', async () => {
    const dataDir = join(root, 'fresh');
    const child = spawn(process.execPath, ['scripts/wsup-dev.js', 'serve', '--port', '0', '--data-dir', dataDir], {
      cwd: new URL('../..', import.meta.url).pathname,
      env: { ...process.env, WSUP_URL: '', WSUP_TOKEN: '', DATABASE_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    await vi.waitFor(() => expect(stdout).toContain('ready on'), { timeout: 60_000 });
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(readdirSync(join(dataDir, 'pglite')).length).toBeGreaterThan(0);
    expect(exposed(dataDir)).toEqual([]);
  }, 90_000);

  it('refuses a data dir writable by group or others, naming it and the fix', async () => {
    const dataDir = join(root, 'shared');
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o777);
    const r = await runCli(['serve', '--port', '0', '--memory', '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`data dir ${dataDir} is writable`);
    expect(r.stderr).toContain(`chmod 700 ${dataDir}`);
  }, 30_000);
});
