/**
 * Replies never exceed `maxFrameBytes`: a page of workspaces is cut short with `nextCursor` set so paging
 * still yields every workspace exactly once; a history keeps its newest events and says `truncated`; a
 * batch whose replies would not fit one frame goes out as several arrays; a reply that cannot be cut
 * becomes an error naming the limit.
 */
import { describe, expect, it } from 'vitest';
import type { WorkspaceEvent } from '../../src/protocol/index.ts';
import { DEFAULT_LIMITS } from '../../src/server/limits.ts';
import { startRig } from './rig.ts';

const MAX = 64 * 1024;
const limits = { ...DEFAULT_LIMITS, maxFrameBytes: MAX, maxBatch: 100, ratePerSec: 100_000, burst: 100_000 };
type Page = { result: { items: Array<{ id: string }>; nextCursor: string | null } };

describe('reply frames', () => {
  it('workspace.list {limit: 10000} of 10,000 large workspaces: every page fits, paging collects all exactly once', async () => {
    const rig = await startRig({ server: { limits } });
    try {
      for (let i = 0; i < 10_000; i++) await rig.supervisor.create(`big-${String(i).padStart(5, '0')}`, { note: 'x'.repeat(300) });
      const raw = await rig.raw('admin');
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const params: Record<string, unknown> = cursor === null ? { limit: 10_000 } : { limit: 10_000, cursor };
        const reply = (await raw.rpc(JSON.stringify({ jsonrpc: '2.0', id: pages, method: 'workspace.list', params }))) as Page;
        expect(reply.result.items.length).toBeGreaterThan(0);
        seen.push(...reply.result.items.map((w) => w.id));
        cursor = reply.result.nextCursor;
        pages++;
      } while (cursor !== null && pages < 1000);
      expect(pages).toBeGreaterThan(1);
      expect(Math.max(...raw.sizes)).toBeLessThanOrEqual(MAX);
      expect(seen.length).toBe(10_000);
      expect(new Set(seen).size).toBe(10_000);
    } finally {
      await rig.close();
    }
  }, 60_000);

  it('events.history of a busy workspace returns the newest events that fit and says truncated', async () => {
    const rig = await startRig({ server: { limits, historySize: 5000 } });
    try {
      await rig.supervisor.create('busy');
      for (let n = 0; n < 2000; n++) rig.server.hub.publish({ type: 'cycle.provisioning', id: 'busy', cycle: n, at: 0, pad: 'y'.repeat(200) } as unknown as WorkspaceEvent);
      const raw = await rig.raw('admin');
      const reply = (await raw.rpc(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.history', params: { id: 'busy', limit: 10_000 } }))) as {
        result: { events: Array<{ cycle: number }>; truncated?: boolean };
      };
      expect(raw.sizes[0]).toBeLessThanOrEqual(MAX);
      expect(reply.result.truncated).toBe(true);
      expect(reply.result.events.length).toBeGreaterThan(0);
      const all = rig.server.hub.history('busy', 10_000) as unknown as Array<{ cycle: number }>;
      expect(reply.result.events.at(-1)).toEqual(all.at(-1));
      expect(reply.result.events.length).toBeLessThan(all.length);
      const small = (await raw.rpc(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'events.history', params: { id: 'busy', limit: 5 } }))) as { result: { events: unknown[]; truncated?: boolean } };
      expect(small.result.events).toHaveLength(5);
      expect(small.result.truncated).toBeUndefined();
    } finally {
      await rig.close();
    }
  }, 30_000);

  it('a batch of 100 list calls: every reply arrives, over several arrays each under the limit', async () => {
    const rig = await startRig({ server: { limits } });
    try {
      for (let i = 0; i < 200; i++) await rig.supervisor.create(`b-${String(i).padStart(3, '0')}`, { note: 'z'.repeat(100) });
      const raw = await rig.raw('admin');
      const batch = Array.from({ length: 100 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'workspace.list', params: { limit: 200 } }));
      raw.send(JSON.stringify(batch));
      const ids = () => raw.frames.flatMap((f): unknown[] => (Array.isArray(f) ? (f as unknown[]) : [f])).map((r) => (r as { id: number }).id);
      await raw.until(() => ids().length >= 100, 20_000);
      expect(raw.frames.every((f) => Array.isArray(f))).toBe(true);
      expect(raw.frames.length).toBeGreaterThan(1);
      expect(Math.max(...raw.sizes)).toBeLessThanOrEqual(MAX);
      expect(ids()).toEqual(batch.map((b) => b.id));
    } finally {
      await rig.close();
    }
  }, 30_000);

  it('a reply that cannot be cut to fit becomes an error naming the limit', async () => {
    const rig = await startRig({ server: { limits: { ...limits, maxFrameBytes: 2048 } } });
    try {
      await rig.supervisor.create('huge', { note: 'h'.repeat(5000) });
      const raw = await rig.raw('admin');
      const reply = (await raw.rpc(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'workspace.get', params: { id: 'huge' } }))) as { id: number; error: { message: string; data: { limit: string } } };
      expect(raw.sizes[0]).toBeLessThanOrEqual(2048);
      expect(reply.id).toBe(7);
      expect(reply.error.message).toContain('maxFrameBytes');
      expect(reply.error.data.limit).toBe('maxFrameBytes');
    } finally {
      await rig.close();
    }
  });
});
