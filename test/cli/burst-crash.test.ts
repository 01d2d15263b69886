/**
 * `wsup serve` SIGKILLed inside a file-write burst's quiet window (the writes acknowledged, the restart not
 * yet issued): the next start on the same data dir restarts the workspace once for that burst.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { WsupClient } from '../../src/client/index.ts';
import { TokenFile } from '../../src/server/auth.ts';

const dir = mkdtempSync(join(tmpdir(), 'wsup-burst-crash-'));
const procs: ChildProcess[] = [];
afterAll(() => {
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function serve(): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, ['scripts/wsup-dev.js', 'serve', '--provider', 'fake', '--port', '0', '--data-dir', dir], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, DATABASE_URL: '', WSUP_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  procs.push(proc);
  return new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout }).on('line', (l) => {
      const m = /^wsup ready on (\S+)/.exec(l);
      if (m) resolve({ proc, url: m[1]! });
    });
    proc.once('exit', (code) => reject(new Error(`wsup serve exited with ${code} before it was ready`)));
  });
}

describe('file-write bursts across kill -9 of wsup serve', () => {
  it('restarts the workspace once for a burst acknowledged before the kill', async () => {
    const token = TokenFile.in(dir).ensureAdmin().token;
    const first = await serve();
    const a = new WsupClient({ url: first.url, token, WebSocket, reconnect: false });
    await a.call('workspace.create', { id: 'ws-burst' });
    for (const path of ['a.ts', 'b.ts', 'c.ts']) await a.call('files.written', { id: 'ws-burst', paths: [path] });
    // Inside the 2 s quiet window: the bus holds the burst, nothing has restarted yet.
    const before = await a.call('events.history', { id: 'ws-burst', limit: 100 });
    expect(before.events.filter((e) => e.type === 'cycle.started')).toEqual([]);
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));
    a.close();

    const second = await serve();
    const b = new WsupClient({ url: second.url, token, WebSocket, reconnect: false });
    const fileCycles = async () =>
      (await b.call('events.history', { id: 'ws-burst', limit: 100 })).events.filter((e) => e.type === 'cycle.completed' && e.cycle.source === 'file-write');
    await expect.poll(async () => (await fileCycles()).length, { timeout: 30_000, interval: 200 }).toBe(1);
    expect((await b.call('workspace.get', { id: 'ws-burst' })).state).toBe('running');
    // And only once: a third start finds nothing left to restart.
    second.proc.kill('SIGTERM');
    await new Promise((r) => second.proc.once('exit', r));
    b.close();
    const third = await serve();
    const c = new WsupClient({ url: third.url, token, WebSocket, reconnect: false });
    const history = await c.call('events.history', { id: 'ws-burst', limit: 100 });
    // (The fake provider's workspaces vanish with its process, so recovery starts it again: not a burst.)
    expect(history.events.filter((e) => e.type === 'cycle.started' && e.cycle.source === 'file-write')).toHaveLength(1);
    c.close();
    third.proc.kill('SIGTERM');
  }, 120_000);
});
