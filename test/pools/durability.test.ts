/**
 * A pool survives kill -9: `wsup serve` (local-process provider, PGlite in its data dir) keeps a pool of 3,
 * two prebuilds are claimed and their refills are starting when the server is SIGKILLed. A new server on the
 * same data dir counts what the store and the actors hold: it settles at exactly 3 unclaimed running
 * prebuilds (more only by the starts that were in flight, shrunk back), and both claimed workspaces are
 * still there, still theirs. /proc agrees: one agent per live workspace.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { WsupClient } from '../../src/client/index.ts';
import type { WorkspaceView } from '../../src/protocol/index.ts';
import { AGENT_SOURCE } from '../../src/providers/process-agent.ts';
import { agentProcesses, killAgents } from '../crash/harness.ts';

const RUN = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const POOL = `dur${RUN}`;
const root = mkdtempSync(join(tmpdir(), 'wsup-pool-crash-'));
const dataDir = join(root, 'data');
const children: ChildProcess[] = [];
const clients: WsupClient[] = [];
afterAll(() => {
  for (const c of clients) c.close();
  for (const c of children) c.kill('SIGKILL');
  killAgents(POOL); // workspaces outlive their server by design: end this file's ones
  rmSync(root, { recursive: true, force: true });
});

/** The built-in agent, answering its health check only after 1.5 s: starts are in flight long enough to be cut. */
const SLOW = { command: [process.execPath, '-e', `setTimeout(() => {${AGENT_SOURCE}}, 1500)`] };

async function serve(): Promise<{ child: ChildProcess; client: WsupClient }> {
  const child = spawn(process.execPath, ['scripts/wsup-dev.js', 'serve', '--port', '0', '--provider', 'process', '--data-dir', dataDir], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, WSUP_URL: '', WSUP_TOKEN: '', DATABASE_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = await vi.waitFor(() => {
    const m = /ready on (\S+)/.exec(stdout);
    if (!m) throw new Error(`not ready yet: ${stderr.slice(-2000)}`);
    return m[1]!;
  }, { timeout: 60_000, interval: 100 });
  const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  const client = new WsupClient({ url: `${url.replace(/^http/, 'ws')}/control`, token, WebSocket, reconnect: false });
  clients.push(client);
  return { child, client };
}

const members = async (c: WsupClient): Promise<WorkspaceView[]> =>
  (await c.call('workspace.list', { limit: 10_000 })).items.filter((v) => v.pool === POOL && v.state !== 'destroyed' && v.desired !== 'destroyed');
const unclaimed = (vs: WorkspaceView[]) => vs.filter((v) => v.owner === 'system');

describe('a pool across kill -9 of its server', () => {
  it('settles at exactly desired unclaimed after a restart, and loses no claimed workspace', async () => {
    const a = await serve();
    await a.client.call('pool.set', { pool: POOL, desired: 3, spec: SLOW });
    await vi.waitFor(async () => expect(await a.client.call('pool.get', { pool: POOL })).toMatchObject({ ready: 3, starting: 0 }), { timeout: 60_000, interval: 200 });

    const claimed = [await a.client.call('workspace.claim', { pool: POOL, userId: 'alice' }), await a.client.call('workspace.claim', { pool: POOL, userId: 'bob' })];
    // Both refills are on their way (1.5 s each): kill the server in the middle of them.
    const inFlight = await vi.waitFor(async () => {
      const view = await a.client.call('pool.get', { pool: POOL });
      expect(view.ready + view.starting).toBe(3);
      expect(view.starting).toBeGreaterThanOrEqual(1);
      return view.starting;
    }, { timeout: 20_000, interval: 20 });
    a.child.kill('SIGKILL');
    await new Promise((r) => a.child.once('exit', r));

    const b = await serve();
    let most = 0;
    await vi.waitFor(async () => {
      const now = await members(b.client);
      most = Math.max(most, unclaimed(now).length);
      expect(unclaimed(now).map((v) => v.state)).toEqual(['running', 'running', 'running']);
      expect(await b.client.call('pool.get', { pool: POOL })).toMatchObject({ desired: 3, ready: 3, starting: 0, failing: 0 });
    }, { timeout: 90_000, interval: 200 });
    // Only the starts cut by the kill may have overshot, and only for a while.
    expect(most).toBeLessThanOrEqual(3 + inFlight);

    const now = await members(b.client);
    for (const c of claimed) {
      const v = now.find((w) => w.id === c.id);
      expect(v, `claimed ${c.id} is still there`).toBeDefined();
      expect(v!.owner).toBe(c.ownerId);
    }
    // Ground truth: one agent process per live workspace of the pool, none left over from the first life.
    await vi.waitFor(async () => {
      const live = (await members(b.client)).filter((v) => v.state === 'running').map((v) => v.id).sort();
      expect(live).toHaveLength(5);
      const agents = agentProcesses(POOL);
      expect([...agents.keys()].sort()).toEqual(live);
      for (const pids of agents.values()) expect(pids).toHaveLength(1);
    }, { timeout: 60_000, interval: 250 });
  }, 240_000);
});
