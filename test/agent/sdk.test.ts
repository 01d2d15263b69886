/**
 * The agent SDK against tiny stand-in servers on loopback: the legacy bare-string payload, and the backoff
 * schedule (100 ms doubling to 10 s, reset after a successful connect), on a manual scheduler.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { Backoff } from '../../src/agent/index.ts';
import { parseReinitPayload } from '../../src/protocol/index.ts';
import { ManualScheduler, runAgent, type RunningAgent } from './helpers.ts';

const running: RunningAgent[] = [];
const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((a) => a.stop()));
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    s.close();
  }
});

/** A stand-in `/agent` server that sends `frames` to every connection, or refuses upgrades with `status`. */
async function standIn(opts: { frames?: string[]; status?: number }): Promise<{ url: string; connections: () => number }> {
  let n = 0;
  const server = http.createServer();
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    n++;
    if (opts.status) return socket.end(`HTTP/1.1 ${opts.status} X\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    wss.handleUpgrade(req, socket, head, (ws) => {
      for (const f of opts.frames ?? []) ws.send(f);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, connections: () => n };
}

describe('agent SDK', () => {
  it('understands a legacy reinit that is a bare reason string (raw text or a JSON string)', async () => {
    const s = await standIn({ frames: ['prebuild_claimed', JSON.stringify({ type: 'reinit', event: 'prebuild_claimed' })] });
    const a = runAgent({ url: s.url, token: 't', workspaceId: 'ws-legacy', scheduler: new ManualScheduler() });
    running.push(a);
    await a.until(() => a.yielded.length === 2, 'two legacy reinits');
    expect(a.yielded).toEqual([
      { workspaceId: 'ws-legacy', ownerId: null, claimBuildId: null, reason: 'prebuild_claimed', legacy: true },
      { workspaceId: 'ws-legacy', ownerId: null, claimBuildId: null, reason: 'prebuild_claimed', legacy: true },
    ]);
    expect(parseReinitPayload({ workspaceId: 'w', ownerId: 'o', claimBuildId: 'b', reason: 'prebuild_claimed' }, 'x')).toEqual({ workspaceId: 'w', ownerId: 'o', claimBuildId: 'b', reason: 'prebuild_claimed' });
    expect(parseReinitPayload({ nonsense: true }, 'x')).toBeNull();
  });

  it('backs off 100 ms doubling to 10 s while the server is down, and resets after a successful connect', async () => {
    const b = new Backoff();
    expect(Array.from({ length: 10 }, () => b.next())).toEqual([100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
    b.reset();
    expect(b.next()).toBe(100);

    const s = await standIn({ status: 503 });
    const scheduler = new ManualScheduler();
    const a = runAgent({ url: s.url, token: 't', scheduler });
    running.push(a);
    for (let i = 0; i < 9; i++) {
      await scheduler.untilSleeping();
      scheduler.release();
    }
    await scheduler.untilSleeping();
    expect(scheduler.requested).toEqual([100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
    expect(s.connections()).toBe(10);
  });

  it('stops on an HTTP 409 refusal and throws on a rejected token', async () => {
    const refused = await standIn({ status: 409 });
    const a = runAgent({ url: refused.url, token: 't', scheduler: new ManualScheduler() });
    expect(await a.end).toMatchObject({ reason: 'refused', code: 'HTTP_409' });
    const bad = await standIn({ status: 401 });
    const b = runAgent({ url: bad.url, token: 't', scheduler: new ManualScheduler() });
    expect(await b.end).toMatchObject({ name: 'AgentTokenError', code: 'WSUP_AGENT_TOKEN' });
  });
});
