/**
 * Whole-workspace teardown on the real process provider: stop leaves no process of the workspace alive,
 * including a grandchild that left the workspace's session (setsid) and ignores SIGTERM.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createProcessProvider } from '../../src/providers/process.ts';

const root = mkdtempSync(join(tmpdir(), 'wsup-teardown-'));
const never = () => new AbortController().signal;
const leftovers: number[] = [];

afterAll(() => {
  for (const pid of leftovers) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone, as it should be
    }
  }
  rmSync(root, { recursive: true, force: true });
});

/** Alive and not a zombie, read from /proc. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The session id of a pid (/proc/<pid>/stat field 6). */
function session(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
}

/**
 * Start workspace `id` whose leader serves /healthz and spawns `spawnArgs` (via `child_process.spawn`) running
 * `script` in sh, which writes its own pid; returns the provider, the leader's pid and that pid.
 */
async function startWithDescendant(id: string, spawnArgs: (script: string) => string[]) {
  const dataDir = mkdtempSync(join(root, 'data-'));
  const pidFile = join(dataDir, 'descendant.pid');
  const script = `trap '' TERM; echo $$ > ${pidFile}; while :; do sleep 1; done`;
  const [file, ...args] = spawnArgs(script);
  const command = [
    process.execPath,
    '-e',
    `require('node:child_process').spawn(${JSON.stringify(file)}, ${JSON.stringify(args)}, { stdio: 'ignore' }).unref();
     require('node:http').createServer((q, s) => s.end('ok')).listen(Number(process.env.WSUP_PORT), '127.0.0.1');`,
  ];
  const p = createProcessProvider({ dataDir, stopGraceMs: 300 });
  await p.start({ id, command }, never());
  const leader = Number((await p.inspect(id))!.ref);
  const pid = await vi.waitFor(() => {
    const n = Number(readFileSync(pidFile, 'utf8'));
    expect(n).toBeGreaterThan(0);
    return n;
  }, { timeout: 10_000 });
  leftovers.push(pid);
  return { p, leader, pid };
}

describe('process provider teardown', () => {
  it('stop kills a setsid grandchild that traps SIGTERM', async () => {
    const { p, leader, pid } = await startWithDescendant('tree', (script) => ['setsid', 'sh', '-c', script]);
    expect(running(pid)).toBe(true);
    expect(session(pid)).not.toBe(session(leader)); // it really left the workspace's session
    await p.stop('tree', never());
    expect(running(leader)).toBe(false);
    expect(running(pid)).toBe(false);
    await p.close();
  }, 30_000);

  it('stop kills a child that cleared its environment and left the session (found by parentage)', async () => {
    const { p, leader, pid } = await startWithDescendant('bare', (script) => ['setsid', 'env', '-i', '/bin/sh', '-c', script]);
    expect(session(pid)).not.toBe(session(leader));
    expect(readFileSync(`/proc/${pid}/environ`, 'latin1')).not.toContain('WSUP_'); // no marker to find it by
    await p.stop('bare', never());
    expect(running(pid)).toBe(false);
    await p.close();
  }, 30_000);
});
