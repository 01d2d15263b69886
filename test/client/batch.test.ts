/**
 * The SDK subscribes with `batch: true` unless told otherwise, and reads events the same either way: one
 * JSON-RPC object per frame, or batches of them.
 */
import { describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import type { WorkspaceEvent } from '../../src/protocol/index.ts';
import { startRig } from '../server/rig.ts';

/** `ws`, counting the frames each socket receives. */
function countingWebSocket() {
  const counts = { frames: 0 };
  class Counting extends WebSocket {
    constructor(...args: ConstructorParameters<typeof WebSocket>) {
      super(...args);
      this.on('message', () => counts.frames++);
    }
  }
  return { Counting, counts };
}

describe('client SDK event frames', () => {
  for (const batch of [undefined, false] as const) {
    it(`batch ${String(batch ?? 'unset (default)')}: every event arrives in order, ${batch === false ? 'one per frame' : 'several per frame'}`, async () => {
      const rig = await startRig();
      try {
        const { Counting, counts } = countingWebSocket();
        const client = rig.client('viewer', { WebSocket: Counting, ...(batch === undefined ? {} : { batch }) });
        const seen: number[] = [];
        await client.subscribe({ ids: ['cb-1'] }, (ev) => seen.push((ev as { cycle: number }).cycle));
        const before = counts.frames;
        for (let n = 0; n < 20; n++) rig.server.hub.publish({ type: 'cycle.provisioning', id: 'cb-1', cycle: n, at: 0 } as unknown as WorkspaceEvent);
        await vi.waitFor(() => expect(seen).toHaveLength(20));
        expect(seen).toEqual([...Array(20).keys()]);
        const frames = counts.frames - before;
        if (batch === false) expect(frames).toBe(20);
        else expect(frames).toBeLessThan(20);
      } finally {
        await rig.close();
      }
    });
  }
});
