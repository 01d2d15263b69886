/**
 * Per-connection caps under a subscription flood from a viewer: the flooder gets the cap error, the server's
 * memory stays bounded, no frame goes out over the frame limit, and a well-behaved client is answered
 * throughout. The rate limiter is opened wide here: the caps must hold without its help.
 */
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/server/limits.ts';
import type { WorkspaceEvent } from '../../src/protocol/index.ts';
import { startRig, type RawSocket } from './rig.ts';

const MiB = 1024 * 1024;
const wide = { ratePerSec: 1e9, burst: 1e9 };
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
const madeUp = (call: number, n: number) => Array.from({ length: n }, (_, k) => `nx-${call}-${k}`);

interface Reply {
  id: number;
  result?: { subscription?: string; ok?: boolean };
  error?: { code: number; message: string; data?: { limit?: string; max?: number } };
}
const socketOf = (s: RawSocket) => (s.ws as unknown as { _socket: Socket })._socket;
const replies = (s: RawSocket) => s.frames.filter((f): f is Reply => typeof (f as Reply).id === 'number');

describe('subscription flood', () => {
  it('a viewer sending 20,000 events.subscribe calls hits the caps; memory stays bounded, frames stay under the limit, others are served', async () => {
    const rig = await startRig({ server: { limits: wide } });
    try {
      await rig.supervisor.ensure('steady');
      const steady = rig.client('viewer');
      await steady.call('workspace.get', { id: 'steady' });
      const flooder = await rig.raw('viewer');
      const rssBefore = process.memoryUsage().rss;
      let peakRss = rssBefore;

      const CALLS = 20_000;
      let flooding = true;
      const latencies: number[] = [];
      const wellBehaved = (async () => {
        while (flooding) {
          const t = performance.now();
          await steady.call('workspace.get', { id: 'steady' });
          latencies.push(performance.now() - t);
          peakRss = Math.max(peakRss, process.memoryUsage().rss);
        }
      })();
      // Every 100th call asks for 10,000 made-up ids, the others for all workspaces or 5 made-up ids.
      for (let i = 1; i <= CALLS; i++) {
        const params = i % 100 === 1 ? { ids: madeUp(i, 10_000) } : i % 2 === 0 ? {} : { ids: madeUp(i, 5) };
        flooder.send(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'events.subscribe', params }));
        if (i % 200 === 0) await new Promise((r) => setImmediate(r)); // let the well-behaved client's calls interleave
      }
      await flooder.until(() => replies(flooder).length === CALLS, 60_000);
      // Events while the flooder holds every subscription it could get: it must not get a frame per
      // subscription-count × event, nor one over the frame limit.
      for (let n = 0; n < 5; n++) rig.server.hub.publish({ type: 'cycle.provisioning', id: 'steady', cycle: n, at: 0, pad: 'x'.repeat(200) } as unknown as WorkspaceEvent);
      await flooder.until(() => flooder.frames.length > CALLS, 10_000);
      flooding = false;
      await wellBehaved;
      peakRss = Math.max(peakRss, process.memoryUsage().rss);

      const granted = replies(flooder).filter((r) => r.result?.subscription !== undefined);
      const capped = replies(flooder).filter((r) => r.error?.code === -32030);
      const grown = (peakRss - rssBefore) / MiB;
      console.log(
        `flood: ${granted.length} granted, ${capped.length} cap errors; RSS ${Math.round(rssBefore / MiB)} → peak ${Math.round(peakRss / MiB)} MiB (+${Math.round(grown)}); ` +
          `well-behaved client: ${latencies.length} calls, p50 ${pct(latencies, 50).toFixed(1)} ms, p99 ${pct(latencies, 99).toFixed(1)} ms, max ${pct(latencies, 100).toFixed(1)} ms; ` +
          `largest frame to the flooder ${Math.max(...flooder.sizes)} bytes`,
      );
      expect(granted.length).toBe(DEFAULT_LIMITS.maxSubscriptions);
      expect(capped.length).toBe(CALLS - granted.length);
      expect(capped.map((r) => r.error?.data?.limit)).toContain('maxSubscriptions');
      expect(capped.map((r) => r.error?.data?.limit)).toContain('maxSubscribedIds');
      expect(capped.find((r) => r.error?.data?.limit === 'maxSubscriptions')?.error?.message).toContain(`maxSubscriptions ${DEFAULT_LIMITS.maxSubscriptions}`);
      expect(rig.server.hub.subscriberCount).toBeLessThanOrEqual(DEFAULT_LIMITS.maxSubscriptions);
      expect(Math.max(...flooder.sizes)).toBeLessThanOrEqual(DEFAULT_LIMITS.maxFrameBytes);
      expect(grown).toBeLessThan(256);
      expect(latencies.length).toBeGreaterThan(10);
      expect(pct(latencies, 99)).toBeLessThan(1000);
      expect(flooder.closed).toBeNull();
    } finally {
      await rig.close();
    }
  }, 120_000);

  it('a peer that sends calls but never reads the replies has at most about maxBufferedBytes queued: the server stops reading it', async () => {
    const rig = await startRig({ server: { limits: { ...wide, lagTimeoutMs: 60_000 } } });
    try {
      for (let i = 0; i < 1000; i++) await rig.supervisor.create(`r-${String(i).padStart(4, '0')}`, {});
      const s = await rig.raw('viewer');
      const one = (await s.rpc(JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'workspace.list', params: { limit: 1000 } }))) as { result: { items: unknown[] } };
      expect(one.result.items).toHaveLength(1000);
      const replyBytes = s.sizes[0]!;
      socketOf(s).pause(); // reads nothing from here on
      const rssBefore = process.memoryUsage().rss;
      const CALLS = 1000; // ~CALLS × replyBytes of replies if the server queued them all
      for (let i = 1; i <= CALLS; i++) s.send(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'workspace.list', params: { limit: 1000 } }));
      // The server stops reading this peer: another client is still answered, and memory did not grow by the replies.
      const other = rig.client('viewer');
      await expect.poll(async () => (await other.call('workspace.list', { limit: 1 })).items.length, { timeout: 10_000 }).toBe(1);
      const grown = (process.memoryUsage().rss - rssBefore) / MiB;
      console.log(`unread replies: ${CALLS} calls of ${Math.round(replyBytes / 1024)} KiB replies (${Math.round((CALLS * replyBytes) / MiB)} MiB if all queued); RSS grew ${Math.round(grown)} MiB`);
      expect(grown).toBeLessThan((CALLS * replyBytes) / MiB / 4);
      // Once it reads again, every reply arrives, in order.
      socketOf(s).resume();
      await s.until(() => s.frames.length === CALLS + 1, 60_000);
      expect((s.frames as Reply[]).map((f) => f.id)).toEqual([...Array(CALLS + 1).keys()]);
    } finally {
      await rig.close();
    }
  }, 120_000);

  it('a subscribe/unsubscribe flood costs one reply frame per call and bounded CPU; a connection never holds more than the cap', async () => {
    const rig = await startRig({ server: { limits: wide } });
    try {
      const s = await rig.raw('viewer');
      const ROUNDS = 100;
      const WINDOW = 100; // subscribes per round, then an unsubscribe for each one granted
      let id = 0;
      let calls = 0;
      let held = 0;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let round = 0; round < ROUNDS; round++) {
        const first = replies(s).length;
        for (let k = 0; k < WINDOW; k++) s.send(JSON.stringify({ jsonrpc: '2.0', id: ++id, method: 'events.subscribe', params: { ids: madeUp(id, 100) } }));
        calls += WINDOW;
        await s.until(() => replies(s).length === first + WINDOW);
        held = Math.max(held, rig.server.hub.subscriberCount);
        const keys = replies(s).slice(first).flatMap((r) => (r.result?.subscription ? [r.result.subscription] : []));
        for (const key of keys) s.send(JSON.stringify({ jsonrpc: '2.0', id: ++id, method: 'events.unsubscribe', params: { subscription: key } }));
        calls += keys.length;
        await s.until(() => replies(s).length === first + WINDOW + keys.length);
      }
      const cpu = process.cpuUsage(cpu0);
      const cpuUsPerCall = (cpu.user + cpu.system) / calls;
      console.log(`subscribe/unsubscribe flood: ${calls} calls, ${s.frames.length} frames, ${Math.round(performance.now() - t0)} ms, ${cpuUsPerCall.toFixed(0)} µs CPU per call (client and server), at most ${held} subscriptions held`);
      expect(s.frames).toHaveLength(calls); // replies only: no event frames, nothing extra
      expect(held).toBeLessThanOrEqual(DEFAULT_LIMITS.maxSubscriptions);
      expect(rig.server.hub.subscriberCount).toBe(0);
      expect(cpuUsPerCall).toBeLessThan(2000);
    } finally {
      await rig.close();
    }
  }, 120_000);
});
