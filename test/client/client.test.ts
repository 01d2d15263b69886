/**
 * The client SDK over a connection that blinks: a TCP proxy between client and server cuts every socket on
 * demand, the way a flaky network or a load balancer restart does.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { WorkspaceEvent } from '../../src/protocol/index.ts';
import { startRig, type ServerRig } from '../server/rig.ts';

/** Forwards 127.0.0.1:<port> to `target`; `cut()` destroys every open pair and keeps listening. */
async function blinkingProxy(target: number) {
  const pairs = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      pairs.add(s);
      s.on('error', () => undefined);
      s.on('close', () => pairs.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut: () => pairs.forEach((s) => s.destroy()),
    close: () => new Promise<void>((r) => (pairs.forEach((s) => s.destroy()), server.close(() => r()))),
  };
}

/** The client reconnects on its own timers; poll what it reports. */
const poll = (message: string) => ({ timeout: 10_000, interval: 5, message });

describe('client SDK across a dropped connection', () => {
  let rig: ServerRig | null = null;
  afterEach(async () => rig?.close());

  it('reconnects with backoff, resubscribes, says it resynced, and keeps delivering events', async () => {
    rig = await startRig({ latencyMs: 20 });
    const proxy = await blinkingProxy(rig.port);
    try {
      const states: string[] = [];
      const client = rig.client('operator', {
        url: `ws://127.0.0.1:${proxy.port}/control`,
        reconnect: { initialMs: 5, maxMs: 40 },
        onStateChange: (s) => states.push(s),
      });
      const events: WorkspaceEvent[] = [];
      const resyncs: string[] = [];
      await client.subscribe({ ids: ['blink-1'] }, (ev) => events.push(ev), { onResync: (i) => resyncs.push(i.reason) });
      await client.call('workspace.ensure', { id: 'blink-1' });
      await expect.poll(() => events.some((e) => e.type === 'cycle.completed'), poll('the first cycle')).toBe(true);

      // A call in flight when the connection drops is rejected, and says it may have been applied.
      const inFlight = client.call('workspace.restart', { id: 'blink-1', wait: true }).catch((e: unknown) => e);
      proxy.cut();
      const err = (await inFlight) as Error;
      expect(err.message).toMatch(/may or may not have been applied/);

      await expect.poll(() => resyncs, poll('the resubscription')).toContain('reconnected');
      expect(states).toContain('reconnecting');
      expect(states.at(-1)).toBe('open');

      // Events after the reconnect reach the same handler, through the new server-side subscription.
      const before = events.length;
      const r = await client.call('workspace.restart', { id: 'blink-1', reason: 'after the blink', wait: true });
      expect(r.state).toBe('running');
      await expect.poll(() => events.slice(before).some((e) => e.type === 'cycle.completed'), poll('events after the reconnect')).toBe(true);
      client.close();
    } finally {
      await proxy.close();
    }
  });

  it('gives up after maxAttempts when the server stays away, and rejects calls made meanwhile', async () => {
    rig = await startRig();
    const proxy = await blinkingProxy(rig.port);
    const states: string[] = [];
    const client = rig.client('viewer', {
      url: `ws://127.0.0.1:${proxy.port}/control`,
      reconnect: { initialMs: 2, maxMs: 10, maxAttempts: 3 },
      onStateChange: (s, d) => states.push(d ? `${s}: ${d}` : s),
    });
    await client.call('workspace.list', {});
    await proxy.close(); // cut and stop listening: every reconnect is refused
    await expect.poll(() => states.some((s) => s.startsWith('closed')), poll('the client to give up')).toBe(true);
    expect(states.find((s) => s.startsWith('closed'))).toMatch(/gave up after 3 attempts/);
    await expect(client.call('workspace.list', {})).rejects.toThrow();
  });
});

describe('ClusterClient before it has reached the cluster', () => {
  it('fails a command to an unreachable cluster at once instead of re-sending it for resendMs', async () => {
    const { ClusterClient } = await import('../../src/client/index.ts');
    const WebSocket = (await import('ws')).default;
    // A port nobody listens on: taken and released.
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const c = new ClusterClient({ urls: `http://127.0.0.1:${port}`, token: 'x', WebSocket, reconnect: false, resendMs: 60_000 });
    await expect(c.call('workspace.restart', { id: 'ws-1' })).rejects.toMatchObject({ name: 'WsupConnectionError' });
    expect(c.stats.resent).toBe(0); // failed on the first attempt, not after the 60 s re-send budget
    c.close();
  });
});
