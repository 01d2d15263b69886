/**
 * `wsup serve --deactivate-after 1s` as users run it: idle workspaces leave memory (the metrics say so),
 * reads answer from the store without bringing them back, a command or a file write brings one back once,
 * and after kill -9 the next start restores none of the idle ones.
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

const dir = mkdtempSync(join(tmpdir(), 'wsup-deactivation-'));
const procs: ChildProcess[] = [];
afterAll(() => {
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function serve(): Promise<{ proc: ChildProcess; url: string; log: string[] }> {
  const proc = spawn(process.execPath, ['scripts/wsup-dev.js', 'serve', '--provider', 'fake', '--port', '0', '--data-dir', dir, '--deactivate-after', '1s'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, DATABASE_URL: '', WSUP_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  const log: string[] = [];
  createInterface({ input: proc.stderr }).on('line', (l) => log.push(l));
  return new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout }).on('line', (l) => {
      const m = /^wsup ready on (\S+)/.exec(l);
      if (m) resolve({ proc, url: m[1]!, log });
    });
    proc.once('exit', (code) => reject(new Error(`wsup serve exited with ${code} before it was ready: ${log.join('\n')}`)));
  });
}

const gauge = async (url: string, name: string): Promise<number> => {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  if (!m) throw new Error(`${name} is not on /metrics`);
  return Number(m[1]);
};

describe('wsup serve with actors leaving memory', () => {
  it('answers from the store, brings a workspace back on use, and restores none of the idle ones after kill -9', async () => {
    const token = TokenFile.in(dir).ensureAdmin().token;
    const first = await serve();
    const a = new WsupClient({ url: first.url, token, WebSocket, reconnect: false });
    await a.call('workspace.create', { id: 'ws-run' });
    await a.call('workspace.create', { id: 'ws-idle' });
    expect((await a.call('workspace.ensure', { id: 'ws-run' })).state).toBe('running');
    await expect.poll(() => gauge(first.url, 'wsup_actors_in_memory'), { timeout: 20_000, interval: 200 }).toBe(0);

    // Reads come from the store and bring nothing back; a flood of them for ids that do not exist neither.
    expect(await a.call('workspace.get', { id: 'ws-run' })).toMatchObject({ state: 'running' });
    expect((await a.call('workspace.list', {})).items.map((v) => [v.id, v.state])).toEqual([
      ['ws-idle', 'idle'],
      ['ws-run', 'running'],
    ]);
    const misses = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => a.call('workspace.get', { id: `ws-nobody-${i}` })));
    expect(misses.every((m) => m.status === 'rejected')).toBe(true);
    expect(await gauge(first.url, 'wsup_actors_in_memory')).toBe(0);

    // A command brings it back, once; so does a file write (its burst restarts the idle one after the quiet
    // window, whether or not it left memory again meanwhile).
    expect((await a.call('workspace.restart', { id: 'ws-run', source: 'manual', reason: 'back' })).outcome).toBe('started');
    expect(await gauge(first.url, 'wsup_actor_activations_total')).toBe(1);
    await expect.poll(() => gauge(first.url, 'wsup_actors_in_memory'), { timeout: 20_000, interval: 200 }).toBe(0);
    await a.call('files.written', { id: 'ws-idle', paths: ['src/app.ts'] });
    const fileCycles = async () => (await a.call('events.history', { id: 'ws-idle', limit: 100 })).events.filter((e) => e.type === 'cycle.completed' && e.cycle.source === 'file-write');
    await expect.poll(async () => (await fileCycles()).length, { timeout: 30_000, interval: 200 }).toBe(1);
    a.close();
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));

    // The next start restores none of them (nothing in flight, nothing due soon): both are read when used.
    const second = await serve();
    const recovered = second.log.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'recovered from the store');
    // (The fake provider's workspaces die with its process: the running ones are found vanished and restarted.)
    expect(recovered).toMatchObject({ restored: 0, cold: 2 });
    const b = new WsupClient({ url: second.url, token, WebSocket, reconnect: false });
    await expect.poll(async () => (await b.call('workspace.get', { id: 'ws-run' })).state, { timeout: 20_000, interval: 200 }).toBe('running');
    b.close();
    second.proc.kill('SIGTERM');
    await new Promise((r) => second.proc.once('exit', r));
  }, 120_000);
});
