/**
 * An agent socket is bound to the agent token it opened with: when the workspace's token rotates (every
 * provider start issues a new one), the socket is closed with 4401 within a second and never receives a
 * reinit meant for the workspace's new agent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { pgliteFixture, type StoreFixture } from '../store/fixtures.ts';
import { agentToken, startClaimRig, type ClaimRig } from './rig.ts';

let fx: StoreFixture;
let rig: ClaimRig;
beforeAll(async () => {
  fx = await pgliteFixture();
  rig = await startClaimRig(await fx.engine());
});
afterAll(async () => {
  await rig.close();
  await fx.dispose();
});

function openAgent(token: string) {
  const frames: Array<{ type: string }> = [];
  let closed: number | null = null;
  const ws = new WebSocket(`${rig.agentUrl.replace(/^http/, 'ws')}/agent`, { headers: { authorization: `Bearer ${token}` } });
  ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString()) as { type: string }));
  ws.on('close', (code) => (closed = code));
  return { ws, frames, closed: () => closed };
}

describe('agent token rotation', () => {
  it('closes sockets opened with the old token, which then get no reinit', async () => {
    await rig.prebuild('rot-1');
    const old = openAgent(agentToken('rot-1'));
    await expect.poll(() => old.frames.map((f) => f.type)).toContain('waiting');

    await rig.store.tokens.setAgentToken('rot-1', 'agent-token-rotated');
    await expect.poll(() => old.closed(), { timeout: 1000, interval: 20 }).toBe(4401);

    const fresh = openAgent('agent-token-rotated');
    await expect.poll(() => fresh.frames.map((f) => f.type)).toContain('waiting');
    await rig.control.call('workspace.claim', { id: 'rot-1', userId: 'alice' });
    await expect.poll(() => fresh.frames.map((f) => f.type)).toContain('reinit');
    expect(old.frames.map((f) => f.type)).not.toContain('reinit');
    fresh.ws.close();
  });
});
