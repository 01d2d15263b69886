/**
 * The agent's side of lifecycle policies, end to end in one process: a real control server with `/agent`
 * over a durable supervisor on PGlite, the SDK's `openAgent` (heartbeats up, warnings down) and raw sockets
 * playing an agent we did not write. The supervisor runs on a SimulatedClock and the server's heartbeat
 * rate limit on a clock the test moves: no test sleeps.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { SimulatedClock } from 'xstate';
import { openAgent, type AgentLink, type AgentLinkStatus } from '../../src/agent/index.ts';
import { WsupClient } from '../../src/client/index.ts';
import type { PolicyWarning } from '../../src/protocol/index.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { createServer, staticTokens, type WsupServer } from '../../src/server/index.ts';
import type { ServerClock } from '../../src/server/limits.ts';
import { WorkspaceStore } from '../../src/store/index.ts';
import { ClaimService } from '../../src/supervisor/claims.ts';
import { openDurableSupervisor } from '../../src/supervisor/durable.ts';
import type { Supervisor } from '../../src/supervisor/supervisor.ts';
import { pgliteFixture, type StoreFixture } from '../store/fixtures.ts';
import { ManualScheduler } from './helpers.ts';

const ADMIN = 'tok-admin';
const T0 = Date.UTC(2026, 11, 2, 9, 0, 0);
const token = (id: string) => `agent-token-of-${id}`;

/** The server's clock: time moves only when the test says (intervals never fire by themselves). */
class StillClock implements ServerClock {
  t = 0;
  now = () => this.t;
  setInterval = () => 0;
  clearInterval = () => undefined;
}

let fx: StoreFixture;
let store: WorkspaceStore;
let supervisor: Supervisor;
let claims: ClaimService;
let server: WsupServer;
let control: WsupClient;
let agentUrl: string;
const clock = new SimulatedClock();
const serverClock = new StillClock();
const links: AgentLink[] = [];
const sockets: WebSocket[] = [];

beforeAll(async () => {
  clock.set(T0);
  fx = await pgliteFixture();
  store = await WorkspaceStore.open({ engine: await fx.engine() });
  claims = new ClaimService({ store });
  await claims.load();
  ({ supervisor } = await openDurableSupervisor({ store, clock, provider: new FakeProvider({ latencyMs: 0 }), beforeRecovery: (s) => claims.attach(s) }));
  server = createServer({ supervisor, claims, tokens: staticTokens([{ token: ADMIN, role: 'admin' }]), port: 0, clock: serverClock });
  const { port } = await server.listen();
  agentUrl = `http://127.0.0.1:${port}`;
  control = new WsupClient({ url: `ws://127.0.0.1:${port}/control`, token: ADMIN, WebSocket, reconnect: false });
});
afterAll(async () => {
  for (const l of links) l.close();
  for (const s of sockets) s.terminate();
  control.close();
  await server.close();
  claims.close();
  await supervisor.shutdown({ deadlineMs: 0 });
  await store.close();
  await fx.dispose();
});

/** A running regular workspace with an idle rule, and its agent token. */
async function workspace(id: string, policy: Record<string, number> = { idleTimeoutMs: 30 * 60_000 }) {
  await control.call('workspace.create', { id });
  await control.call('workspace.ensure', { id });
  await control.call('workspace.setPolicy', { id, policy });
  await store.tokens.setAgentToken(id, token(id));
}

function link(id: string, onStatus?: (s: AgentLinkStatus) => void): AgentLink {
  const l = openAgent({ url: agentUrl, token: token(id), WebSocket, scheduler: new ManualScheduler(), now: () => serverClock.t, ...(onStatus ? { onStatus } : {}) });
  links.push(l);
  return l;
}

/** An agent socket we drive by hand; collects every frame. */
async function rawAgent(id: string, query = '?activity=1') {
  const ws = new WebSocket(`${agentUrl.replace('http', 'ws')}/agent${query}`, { headers: { authorization: `Bearer ${token(id)}` } });
  sockets.push(ws);
  const frames: Array<{ type: string; [k: string]: unknown }> = [];
  ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString()) as { type: string }));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  return { ws, frames, send: (frame: unknown) => ws.send(JSON.stringify(frame)) };
}

const view = (id: string) => control.call('workspace.get', { id });

describe('agent heartbeats', () => {
  it('reportActivity() becomes activity with source "agent heartbeat", on a workspace that is not a prebuild', async () => {
    await workspace('ag-beat');
    clock.increment(60_000);
    const l = link('ag-beat');
    expect(l.reportActivity()).toBe(true);
    await vi.waitFor(async () => expect((await view('ag-beat')).lastActivityAt).toBe(T0 + 60_000), { timeout: 10_000 });
    const v = await view('ag-beat');
    expect(v.next).toMatchObject({ action: 'stop', source: 'idle', at: T0 + 60_000 + 30 * 60_000 });
    expect(v.next?.reason).toContain('agent heartbeat');
    // Folded: a second report within the second sends nothing.
    expect(l.reportActivity()).toBe(false);
  });

  it('the socket of a workspace that is not a prebuild stays open with ?activity=1 (and closes 4409 without)', async () => {
    await workspace('ag-stay');
    const stays = await rawAgent('ag-stay');
    await vi.waitFor(() => expect(stays.frames.map((f) => f.type)).toContain('refused'));
    const plain = await rawAgent('ag-stay', '');
    const closed = await new Promise<number>((r) => plain.ws.once('close', (code) => r(code)));
    expect(closed).toBe(4409);
    expect(stays.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('an agent token addresses only its own workspace', async () => {
    await workspace('ag-mine');
    await workspace('ag-theirs');
    const before = await view('ag-theirs');
    serverClock.t += 1_000;
    clock.increment(5_000);
    const a = await rawAgent('ag-mine');
    a.send({ type: 'heartbeat', workspaceId: 'ag-theirs' });
    a.send({ type: 'heartbeat', id: 'ag-theirs' });
    await vi.waitFor(() => expect(a.frames.filter((f) => f.type === 'error')).toHaveLength(2));
    expect(String(a.frames.find((f) => f.type === 'error')?.message)).toContain('heartbeat');
    a.send({ type: 'heartbeat' });
    await vi.waitFor(async () => expect((await view('ag-mine')).lastActivityAt).toBe(clock.now()), { timeout: 10_000 });
    expect((await view('ag-theirs')).lastActivityAt).toBe(before.lastActivityAt);
  });

  it('a flood of 10,000 heartbeats on one socket reaches the supervisor once per second of server time', async () => {
    await workspace('ag-flood');
    serverClock.t += 1_000;
    const spy = vi.spyOn(supervisor, 'activity');
    const a = await rawAgent('ag-flood');
    for (let i = 0; i < 10_000; i++) a.send({ type: 'heartbeat' });
    // A ping's pong comes back after every frame sent before it was read.
    await new Promise<void>((r) => {
      a.ws.once('pong', () => r());
      a.ws.ping();
    });
    await vi.waitFor(() => expect(spy.mock.calls.length).toBeGreaterThanOrEqual(1));
    expect(spy.mock.calls.filter(([id]) => id === 'ag-flood')).toHaveLength(1);
    serverClock.t += 1_000;
    a.send({ type: 'heartbeat' });
    await vi.waitFor(() => expect(spy.mock.calls.filter(([id]) => id === 'ag-flood')).toHaveLength(2));
    spy.mockRestore();
    // Nothing was answered (heartbeats get no reply) and the socket is still open.
    expect(a.frames.filter((f) => f.type !== 'refused')).toEqual([]);
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
  }, 60_000);
});

describe('policy warnings', () => {
  it('a max-lifetime warning reaches the workspace\'s agent through onWarning, and no other agent', async () => {
    await workspace('ag-warn', { maxLifetimeMs: 60 * 60_000, maxLifetimeWarnMs: 15 * 60_000 });
    await workspace('ag-other', { maxLifetimeMs: 8 * 3_600_000 });
    const mine: PolicyWarning[] = [];
    const theirs: PolicyWarning[] = [];
    const runningSince = clock.now();
    const connected: string[] = [];
    const l = link('ag-warn', (s) => s.type === 'connected' && connected.push('ag-warn'));
    l.onWarning((w) => mine.push(w));
    link('ag-other', (s) => s.type === 'connected' && connected.push('ag-other')).onWarning((w) => theirs.push(w));
    // Warnings go to the agents connected when they are emitted: both are, before time moves.
    await vi.waitFor(() => expect(connected.sort()).toEqual(['ag-other', 'ag-warn']), { timeout: 10_000 });
    clock.increment(45 * 60_000);
    await vi.waitFor(() => expect(mine).toHaveLength(1), { timeout: 10_000 });
    expect(mine[0]).toMatchObject({ workspaceId: 'ag-warn', source: 'max-lifetime' });
    expect(mine[0]!.stopAt).toBeGreaterThanOrEqual(runningSince + 60 * 60_000);
    expect(theirs).toEqual([]);
  });
});
