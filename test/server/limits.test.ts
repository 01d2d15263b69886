/**
 * Transport limits and lifecycle: rate limit (error, connection kept), heartbeat (dead peers dropped, on an
 * injected clock), slow subscribers (told they lagged and resynced, or closed), graceful shutdown (1001),
 * and embedding into an existing http.Server.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { WebSocketServer } from 'ws';
import type WebSocket from 'ws';
import { createServer, staticTokens } from '../../src/server/index.ts';
import type { ServerClock } from '../../src/server/limits.ts';
import type { WorkspaceEvent } from '../../src/protocol/index.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';
import { RawSocket, startRig, TOKENS, upgradeStatus } from './rig.ts';

/** A ServerClock whose time and intervals the test moves by hand. */
function manualClock() {
  let t = 0;
  const intervals = new Map<number, { fn: () => void; ms: number; next: number }>();
  let seq = 0;
  const clock: ServerClock & { advance(ms: number): void } = {
    now: () => t,
    setInterval: (fn, ms) => {
      intervals.set(++seq, { fn, ms, next: t + ms });
      return seq;
    },
    clearInterval: (h) => void intervals.delete(h as number),
    advance(ms) {
      const end = t + ms;
      for (;;) {
        const due = [...intervals.values()].filter((i) => i.next <= end).sort((a, b) => a.next - b.next)[0];
        if (!due) break;
        t = due.next;
        due.next += due.ms;
        due.fn();
      }
      t = end;
    },
  };
  return clock;
}

/** The server's own timers decide these; poll them often. */
const POLL = { timeout: 5000, interval: 10 };

const socketOf = (ws: WebSocket) => (ws as unknown as { _socket: Socket })._socket;

describe('limits', () => {
  it('answers over-rate requests with -32029 and keeps the connection; the bucket refills with time', async () => {
    const clock = manualClock();
    const rig = await startRig({ server: { clock, limits: { ratePerSec: 10, burst: 5 } } });
    try {
      const s = await rig.raw('viewer');
      const call = (id: number) => s.rpc(JSON.stringify({ jsonrpc: '2.0', id, method: 'workspace.list' }));
      for (let i = 1; i <= 5; i++) expect(await call(i)).toHaveProperty('result');
      expect(await call(6)).toMatchObject({ id: 6, error: { code: -32029, data: { retryAfterMs: expect.any(Number) as number } } });
      clock.advance(1000);
      expect(await call(7)).toHaveProperty('result');
      expect(s.closed).toBeNull();
    } finally {
      await rig.close();
    }
  });

  it('drops a peer that stops answering pings, and keeps one that answers', async () => {
    const clock = manualClock();
    const rig = await startRig({ server: { clock, limits: { heartbeatMs: 1000 } } });
    try {
      const dead = await rig.raw('viewer');
      const alive = await rig.raw('viewer');
      expect(rig.server.connections).toBe(2);
      socketOf(dead.ws).pause(); // a half-open peer: it reads nothing and so never pongs
      const pinged = new Promise((r) => alive.ws.once('ping', r));
      clock.advance(1000); // first ping to both
      await pinged;
      // ws answers a ping with a pong before any frame sent after it, and the server reads one socket in
      // order: once this call is answered, the server has seen the live peer's pong.
      expect(await alive.rpc(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'workspace.list' }))).toHaveProperty('result');
      clock.advance(1000); // the silent one is terminated; the live one is pinged again
      await expect.poll(() => rig.server.connections, POLL).toBe(1);
      expect(alive.closed).toBeNull();
    } finally {
      await rig.close();
    }
  });

  it('holds calls past maxInFlight without dropping the caller: the heartbeat spares a socket the server stopped reading', async () => {
    const clock = manualClock();
    const rig = await startRig({ latencyMs: 200, server: { clock, limits: { heartbeatMs: 1000, maxInFlight: 4 } } });
    try {
      const s = await rig.raw('operator');
      for (let i = 1; i <= 12; i++) s.send(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'workspace.ensure', params: { id: `held-${i}` } }));
      await vi.waitFor(() => expect(rig.provider.inFlightIds().length).toBeGreaterThan(0));
      expect(rig.provider.inFlightIds().length).toBeLessThanOrEqual(4);
      clock.advance(1000); // a ping it cannot answer while the server does not read it
      clock.advance(1000); // without the exemption: terminated here
      await s.until(() => s.frames.length === 12, 10_000);
      expect(s.closed).toBeNull();
      expect(s.frames.map((f) => (f as { id: number }).id).sort((a, b) => a - b)).toEqual([...Array(12).keys()].map((i) => i + 1));
      expect(rig.server.connections).toBe(1);
    } finally {
      await rig.close();
    }
  });

  it('tells a slow subscriber it lagged, with the state to resync from, instead of queueing without bound', async () => {
    const rig = await startRig({ server: { limits: { maxBufferedBytes: 64 * 1024, drainCheckMs: 10, lagTimeoutMs: 30_000 } } });
    try {
      await rig.supervisor.ensure('lag-1');
      const s = await rig.raw('viewer');
      await s.rpc(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: { ids: ['lag-1'] } }));
      socketOf(s.ws).pause();
      const big: WorkspaceEvent = { type: 'cycle.provisioning', id: 'lag-1', cycle: 1, at: 0, pad: 'x'.repeat(4096) } as WorkspaceEvent;
      // Publish until the server's send buffer passes the cap (the kernel absorbs the first few MB).
      for (let i = 0; i < 200 && rig.server.connections > 0; i++) {
        for (let j = 0; j < 100; j++) rig.server.hub.publish(big);
        await new Promise((r) => setImmediate(r));
      }
      socketOf(s.ws).resume();
      await s.until(() => s.frames.some((f) => (f as { method?: string }).method === 'lagged'), 20_000);
      const lagged = s.frames.find((f) => (f as { method?: string }).method === 'lagged') as { params: { dropped: number; workspaces: Array<{ id: string }> } };
      expect(lagged.params.dropped).toBeGreaterThan(0);
      expect(lagged.params.workspaces.map((w) => w.id)).toEqual(['lag-1']);
      expect(s.closed).toBeNull();
    } finally {
      await rig.close();
    }
  }, 30_000);

  it('closes a subscriber that never drains (1008) and frees it', async () => {
    const rig = await startRig({ server: { limits: { maxBufferedBytes: 64 * 1024, drainCheckMs: 10, lagTimeoutMs: 200 } } });
    try {
      const s = await rig.raw('viewer');
      await s.rpc(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: {} }));
      socketOf(s.ws).pause();
      const big = { type: 'cycle.provisioning', id: 'lag-2', cycle: 1, at: 0, pad: 'x'.repeat(4096) } as WorkspaceEvent;
      for (let i = 0; i < 400 && rig.server.connections > 0; i++) {
        for (let j = 0; j < 100; j++) rig.server.hub.publish(big);
        await new Promise((r) => setTimeout(r, 5));
      }
      await expect.poll(() => rig.server.connections, { ...POLL, timeout: 10_000 }).toBe(0);
      expect(rig.server.hub.subscriberCount).toBe(0);
    } finally {
      await rig.close();
    }
  }, 30_000);
});

describe('lifecycle', () => {
  it('drains gracefully: in-flight calls finish, sockets close with 1001, close() is idempotent', async () => {
    const rig = await startRig({ latencyMs: 300 });
    const seen: string[] = [];
    rig.server.lifecycleChanges.subscribe((l) => seen.push(l));
    const client = rig.client('operator');
    const raw = await rig.raw('viewer');
    const inFlight = client.call('workspace.ensure', { id: 'drain-1' });
    await expect.poll(() => rig.provider.inFlightIds(), POLL).toContain('drain-1');
    const closing = rig.server.close();
    expect(rig.server.close()).toBe(closing);
    expect(rig.server.lifecycle).toBe('draining');
    expect(await inFlight).toMatchObject({ started: true, state: 'running' });
    await closing;
    await raw.until(() => raw.closed !== null);
    expect(raw.closed?.code).toBe(1001);
    expect(seen).toEqual(['ready', 'draining', 'stopped']);
    expect(await upgradeStatus(rig.wsUrl, { authorization: `Bearer ${TOKENS.admin}` })).not.toBe(101);
    await rig.supervisor.shutdown({ deadlineMs: 100 });
  });

  it('attaches to an existing http.Server and handles upgrades on /control only', async () => {
    const supervisor = new Supervisor({ provider: new FakeProvider() });
    const wsup = createServer({ supervisor, tokens: staticTokens([{ token: 't', role: 'admin' }]) });
    const app = http.createServer((req, res) => {
      if (!wsup.handleRequest(req, res)) res.end('host app');
    });
    const other = new WebSocketServer({ noServer: true });
    app.on('upgrade', (req, socket, head) => {
      if (req.url === '/theirs') other.handleUpgrade(req, socket, head, (ws) => ws.close(4000, 'theirs'));
    });
    wsup.attach(app);
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const port = (app.address() as AddressInfo).port;
    try {
      expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).text()).toBe('ok\n');
      expect(await (await fetch(`http://127.0.0.1:${port}/app`)).text()).toBe('host app');
      const s = await RawSocket.open(`ws://127.0.0.1:${port}/control`, { authorization: 'Bearer t' });
      expect(await s.rpc('{"jsonrpc":"2.0","id":1,"method":"workspace.list"}')).toHaveProperty('result');
      const theirs = await RawSocket.open(`ws://127.0.0.1:${port}/theirs`, {});
      await theirs.until(() => theirs.closed !== null);
      expect(theirs.closed?.code).toBe(4000);
      s.ws.close();
    } finally {
      await wsup.close();
      other.close();
      await new Promise<void>((r) => app.close(() => r()));
      await supervisor.shutdown();
    }
  });
});
