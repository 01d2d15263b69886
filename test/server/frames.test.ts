/**
 * The event path's framing: one JSON-RPC notification object per WebSocket message by default, as a generic
 * JSON-RPC 2.0 client expects (driven here by a third-party one written without wsup in mind); JSON-RPC
 * batches only for subscriptions that ask for them, split to fit `maxFrameBytes`; an event bigger than a
 * frame is never sent, its subscriber is told it lagged instead, with views cut to fit one frame.
 */
import { JSONRPCClient, JSONRPCServer, JSONRPCServerAndClient } from 'json-rpc-2.0';
import { describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import type { Notifications, WorkspaceEvent } from '../../src/protocol/index.ts';
import { startRig, TOKENS } from './rig.ts';

const isObject = (x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x);
const methodOf = (f: unknown) => (f as { method?: string }).method;

describe('event frames', () => {
  it('a third-party JSON-RPC 2.0 client gets each event as its own notification, one JSON object per frame', async () => {
    const rig = await startRig();
    const ws = new WebSocket(rig.wsUrl, { headers: { authorization: `Bearer ${TOKENS.operator}` } });
    const frames: unknown[] = [];
    const events: Array<Notifications['event']> = [];
    const rpc = new JSONRPCServerAndClient(
      new JSONRPCServer(),
      new JSONRPCClient((request) => {
        ws.send(JSON.stringify(request));
      }),
    );
    // Server → client notifications arrive as calls of the client-side server's methods.
    rpc.addMethod('event', (params) => void events.push(params as Notifications['event']));
    ws.on('message', (data: Buffer) => {
      const parsed: unknown = JSON.parse(data.toString());
      frames.push(parsed);
      void rpc.receiveAndSend(parsed, undefined, undefined);
    });
    try {
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      await rpc.request('workspace.ensure', { id: 'tp-1' });
      const { subscription } = (await rpc.request('events.subscribe', { ids: ['tp-1'] })) as { subscription: string };
      const restarted = (await rpc.request('workspace.restart', { id: 'tp-1', wait: true })) as { outcome: string };
      expect(restarted.outcome).toBe('started');
      await vi.waitFor(() => expect(events.map((e) => e.event.type)).toContain('cycle.completed'));
      // Several events in one macrotask: still one message each.
      const extra = (n: number) => ({ type: 'cycle.provisioning', id: 'tp-1', cycle: 100 + n, at: 0 }) as unknown as WorkspaceEvent;
      for (let n = 0; n < 5; n++) rig.server.hub.publish(extra(n));
      await vi.waitFor(() => expect(events.filter((e) => (e.event as { cycle: number }).cycle >= 100)).toHaveLength(5));
      expect(events.every((e) => e.subscription === subscription)).toBe(true);
      expect(frames.length).toBeGreaterThan(5);
      expect(frames.filter((f) => !isObject(f))).toEqual([]);
    } finally {
      ws.terminate();
      await rig.close();
    }
  });

  it('sends JSON-RPC batches to a subscription that asks for them, split to fit maxFrameBytes, and single objects to one that does not', async () => {
    const maxFrameBytes = 4096;
    const rig = await startRig({ server: { limits: { maxFrameBytes } } });
    try {
      const batched = await rig.raw('viewer');
      const single = await rig.raw('viewer');
      await batched.rpc(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: { ids: ['b-1'], batch: true } }));
      await single.rpc(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: { ids: ['b-1'] } }));
      const ev = (n: number) => ({ type: 'cycle.provisioning', id: 'b-1', cycle: n, at: 0, pad: 'x'.repeat(200) }) as unknown as WorkspaceEvent;
      for (let n = 0; n < 100; n++) rig.server.hub.publish(ev(n));
      const notes = (s: typeof single): unknown[] => s.frames.slice(1).flatMap((f): unknown[] => (Array.isArray(f) ? (f as unknown[]) : [f]));
      await batched.until(() => notes(batched).length === 100);
      await single.until(() => notes(single).length === 100);
      // Same events, same order, either way.
      const cycles = (s: typeof single) => notes(s).map((n) => ((n as { params: Notifications['event'] }).params.event as { cycle?: unknown }).cycle);
      expect(cycles(batched)).toEqual(cycles(single));
      expect(cycles(single)).toEqual([...Array(100).keys()]);
      const arrays = batched.frames.filter((f) => Array.isArray(f));
      expect(arrays.length).toBeGreaterThan(1); // ~300 bytes each: 100 of them need several 4 KiB frames
      expect(batched.frames.length).toBeLessThan(1 + 100 / 5);
      expect(Math.max(...batched.sizes)).toBeLessThanOrEqual(maxFrameBytes);
      expect(single.frames.slice(1).every(isObject)).toBe(true);
      expect(single.frames).toHaveLength(101);
    } finally {
      await rig.close();
    }
  });

  it('never sends an event bigger than a frame: its subscriber is told it lagged, with the views that fit one frame', async () => {
    const maxFrameBytes = 2048;
    const rig = await startRig({ server: { limits: { maxFrameBytes, drainCheckMs: 5 } } });
    try {
      const ids = Array.from({ length: 40 }, (_, i) => `big-${i}`);
      for (const id of ids) await rig.supervisor.ensure(id);
      const s = await rig.raw('viewer');
      await s.rpc(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: { ids } }));
      rig.server.hub.publish({ type: 'cycle.provisioning', id: 'big-0', cycle: 1, at: 0, pad: 'x'.repeat(4096) } as unknown as WorkspaceEvent);
      rig.server.hub.publish({ type: 'cycle.provisioning', id: 'big-1', cycle: 2, at: 0 } as unknown as WorkspaceEvent);
      await s.until(() => s.frames.some((f) => methodOf(f) === 'lagged'));
      const lagged = s.frames.find((f) => methodOf(f) === 'lagged') as { params: Notifications['lagged'] };
      expect(lagged.params.dropped).toBe(2); // the big one and the one after it, while lagging
      expect(lagged.params.complete).toBe(false); // 40 views do not fit in 2 KiB
      expect(lagged.params.workspaces.length).toBeGreaterThan(0);
      expect(lagged.params.workspaces.length).toBeLessThan(40);
      expect(s.frames.some((f) => methodOf(f) === 'event')).toBe(false);
      expect(Math.max(...s.sizes)).toBeLessThanOrEqual(maxFrameBytes);
      // Resynced: the next event is delivered again.
      rig.server.hub.publish({ type: 'cycle.provisioning', id: 'big-2', cycle: 3, at: 0 } as unknown as WorkspaceEvent);
      await s.until(() => s.frames.some((f) => methodOf(f) === 'event'));
      expect(s.closed).toBeNull();
    } finally {
      await rig.close();
    }
  });
});
