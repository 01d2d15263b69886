/**
 * The control plane's edge: who asked (token principals as requesters), revocation of open sockets,
 * strings no store can keep, the Origin allow-list under DNS rebinding, header/upgrade timeouts and
 * per-address caps, and the optional metrics token. Real server on loopback, port 0.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { WsupClient } from '../../src/client/index.ts';
import type { WorkspaceEvent } from '../../src/protocol/index.ts';
import { staticTokens, TokenFile, type ServerOptions } from '../../src/server/index.ts';
import { RawSocket, startRig, TOKENS, upgradeStatus, type ServerRig } from './rig.ts';

const rigs: ServerRig[] = [];
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(rigs.map((r) => r.close()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const rig = async (server: Partial<ServerOptions> = {}) => {
  const r = await startRig({ server });
  rigs.push(r);
  return r;
};
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'wsup-edge-'));
  dirs.push(d);
  return d;
};
const completedRequesters = (events: WorkspaceEvent[]) =>
  events.flatMap((e) => (e.type === 'cycle.completed' ? e.cycle.requesters.map((r) => r.requester) : []));

describe('every request names who asked', () => {
  it('a labelled token is the requester in the cycle and its history; an unlabelled one is role:tokenId', async () => {
    const r = await rig({
      tokens: staticTokens([
        { token: 'tok-alice', role: 'operator', label: 'alice' },
        { token: 'tok-anon', role: 'operator' },
      ]),
    });
    await r.supervisor.ensure('who-1');
    const alice = new WsupClient({ url: r.wsUrl, token: 'tok-alice', WebSocket, reconnect: false });
    const anon = new WsupClient({ url: r.wsUrl, token: 'tok-anon', WebSocket, reconnect: false });
    try {
      await alice.call('workspace.restart', { id: 'who-1', reason: 'deploy', wait: true });
      await anon.call('workspace.restart', { id: 'who-1', reason: 'again', wait: true });
      const { events } = await alice.call('events.history', { id: 'who-1' });
      const requesters = completedRequesters(events);
      expect(requesters.some((q) => /^rpc:alice#\d+$/.test(q)), requesters.join()).toBe(true);
      expect(requesters.some((q) => /^rpc:operator:[0-9a-f]{6}#\d+$/.test(q)), requesters.join()).toBe(true);
      expect(requesters.some((q) => /rpc:c\d+#/.test(q))).toBe(false);
    } finally {
      alice.close();
      anon.close();
    }
  });

  it('a token file entry carries its label and a short id derived from its hash', () => {
    const tokens = TokenFile.in(tempDir());
    const t = tokens.add('operator', { label: 'alice' });
    const p = tokens.verify(t);
    expect(p).toMatchObject({ role: 'operator', label: 'alice' });
    expect(p?.tokenId).toMatch(/^[0-9a-f]{6}$/);
    expect(tokens.verify(tokens.add('viewer'))).not.toHaveProperty('label');
  });
});

describe('revocation takes effect on open sockets', () => {
  let now = Date.now();
  let dir: string;
  let r: ServerRig;
  beforeAll(async () => {
    dir = tempDir();
    r = await rig({ tokens: TokenFile.in(dir, () => now) });
  });
  afterEach(() => {
    now = Date.now();
  });
  // The CLI writes the file from another process; a second TokenFile on the same dir does the same.
  const cli = () => TokenFile.in(dir);
  const open = (token: string) => RawSocket.open(r.wsUrl, { authorization: `Bearer ${token}` });

  it('rotating the admin token closes sockets opened with the old one (4401) within a second, and only those', async () => {
    const old = cli().ensureAdmin().token;
    const other = cli().add('viewer', { label: 'bystander' });
    const [a, b] = [await open(old), await open(other)];
    cli().rotateAdmin();
    await expect.poll(() => a.closed?.code, { timeout: 1000, interval: 20 }).toBe(4401);
    expect(b.closed).toBeNull();
    expect(await b.rpc(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'workspace.list' }))).toMatchObject({ result: { items: [] } });
    b.ws.terminate();
  });

  it('removing a token closes its sockets', async () => {
    const t = cli().add('operator', { label: 'bob' });
    const s = await open(t);
    expect(cli().remove('bob')).toBe(1);
    await expect.poll(() => s.closed?.code, { timeout: 1000, interval: 20 }).toBe(4401);
  });

  it('the SDK closes for good on a revoked token instead of reconnecting with it', async () => {
    const t = cli().add('viewer', { label: 'carol' });
    const states: Array<[string, string | undefined]> = [];
    const client = new WsupClient({ url: r.wsUrl, token: t, WebSocket, onStateChange: (st, why) => states.push([st, why]) });
    await client.call('workspace.list', {});
    expect(cli().remove('carol')).toBe(1);
    await expect.poll(() => client.connectionState, { timeout: 1000, interval: 20 }).toBe('closed');
    expect(states.map(([st]) => st)).not.toContain('reconnecting');
    expect(states.at(-1)?.[1]).toContain('4401');
    client.close();
  });

  it('a token whose expiry passes closes its sockets', async () => {
    const t = cli().add('viewer', { expiresAt: now + 60_000 });
    const s = await open(t);
    now += 61_000;
    await expect.poll(() => s.closed?.code, { timeout: 1000, interval: 20 }).toBe(4401);
    expect(await upgradeStatus(r.wsUrl, { authorization: `Bearer ${t}` })).toBe(401);
  });
});

describe('secrets in a spec', () => {
  it('agentToken is never sent; env values are hidden below admin', async () => {
    const r = await rig();
    await r.client('admin').call('workspace.create', { id: 'sec-1', spec: { agentToken: 'wsa_secret', env: { DB_PASSWORD: 'hunter2' }, image: 'x' } });
    for (const role of ['viewer', 'operator', 'admin'] as const) {
      const c = r.client(role);
      const got = await c.call('workspace.get', { id: 'sec-1' });
      const listed = (await c.call('workspace.list', {})).items.find((v) => v.id === 'sec-1');
      for (const v of [got, listed]) {
        expect(JSON.stringify(v)).not.toContain('wsa_secret');
        expect(v?.spec.image).toBe('x');
        expect(v?.spec.env).toEqual({ DB_PASSWORD: role === 'admin' ? 'hunter2' : '[redacted]' });
      }
    }
  });
});

describe('strings no store can keep are refused at the edge', () => {
  let r: ServerRig;
  beforeAll(async () => {
    r = await rig();
    await r.supervisor.ensure('nul-1');
  });
  const call = async (params: string) => {
    const s = await r.raw('admin');
    return (await s.rpc(`{"jsonrpc":"2.0","id":1,"method":"workspace.restart","params":${params}}`)) as { error?: { code: number; data?: { path?: unknown[] } } };
  };

  it.each([
    ['NUL in reason', '{"id":"nul-1","reason":"a\\u0000b"}', ['reason']],
    ['lone high surrogate', '{"id":"nul-1","reason":"a\\ud800"}', ['reason']],
    ['lone low surrogate', '{"id":"nul-1","reason":"\\udc00b"}', ['reason']],
  ])('%s → -32602 and no cycle', async (_name, params, path) => {
    const before = (await r.supervisor.get('nul-1')).cycle;
    const reply = await call(params);
    expect(reply.error?.code).toBe(-32602);
    expect(reply.error?.data?.path).toEqual(path);
    expect((await r.supervisor.get('nul-1')).cycle).toBe(before);
  });

  it('covers nested strings and object keys', async () => {
    const s = await r.raw('admin');
    const nested = (await s.rpc('{"jsonrpc":"2.0","id":1,"method":"workspace.create","params":{"id":"nul-2","spec":{"env":{"A":["ok","x\\u0000"]}}}}')) as { error?: { code: number; data?: { path?: unknown[] } } };
    expect(nested.error).toMatchObject({ code: -32602, data: { path: ['spec', 'env', 'A', 1] } });
    const key = (await s.rpc('{"jsonrpc":"2.0","id":2,"method":"workspace.create","params":{"id":"nul-2","spec":{"k\\u0000":1}}}')) as { error?: { code: number } };
    expect(key.error?.code).toBe(-32602);
    expect(await r.supervisor.has('nul-2')).toBe(false);
  });

  it('a surrogate pair (an emoji) is fine', async () => {
    expect((await call('{"id":"nul-1","reason":"ship it \\ud83d\\ude80"}')).error).toBeUndefined();
  });
});

describe('origin allow-list', () => {
  it('refuses DNS rebinding (Host and Origin both the attacker’s), allows the bound address and no Origin', async () => {
    const r = await rig();
    const auth = { authorization: `Bearer ${TOKENS.admin}` };
    expect(await upgradeStatus(r.wsUrl, { ...auth, host: `evil.example:${r.port}`, origin: `http://evil.example:${r.port}` })).toBe(403);
    expect(await upgradeStatus(r.wsUrl, { ...auth, origin: `http://127.0.0.1:${r.port}` })).toBe(101);
    expect(await upgradeStatus(r.wsUrl, { ...auth, origin: `http://localhost:${r.port}` })).toBe(101);
    expect(await upgradeStatus(r.wsUrl, { ...auth, origin: `http://localhost:${r.port + 1}` })).toBe(403);
    expect(await upgradeStatus(r.wsUrl, auth)).toBe(101);
  });

  it('allows configured origins', async () => {
    const r = await rig({ originAllowList: ['https://console.example.com'] });
    const auth = { authorization: `Bearer ${TOKENS.admin}` };
    expect(await upgradeStatus(r.wsUrl, { ...auth, origin: 'https://console.example.com' })).toBe(101);
    expect(await upgradeStatus(r.wsUrl, { ...auth, host: 'console.example.com', origin: 'https://other.example.com' })).toBe(403);
  });
});

/** A raw TCP socket to the server; resolves with whether the server closed it. */
function rawTcp(port: number, text: string): Promise<{ sock: net.Socket; closed: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      if (text) sock.write(text);
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      const closed = new Promise<string>((r) => sock.once('close', () => r(got)));
      resolve({ sock, closed });
    });
    sock.once('error', reject);
  });
}

describe('timeouts and caps', () => {
  it('a partial upgrade (headers never finished) is cut off after the headers timeout', async () => {
    const r = await rig({ edge: { headersTimeoutMs: 200 } });
    const { closed } = await rawTcp(r.port, `GET /control HTTP/1.1\r\nHost: 127.0.0.1:${r.port}\r\nUpgrade: websocket\r\n`);
    const t0 = Date.now();
    await closed;
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('connections from one address beyond the cap are closed at once', async () => {
    const r = await rig({ edge: { maxConnectionsPerAddress: 3 } });
    const held = await Promise.all([0, 1, 2].map(() => rawTcp(r.port, '')));
    const extra = await rawTcp(r.port, '');
    await extra.closed;
    // The first three are still served.
    held[0]!.sock.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    expect(await held[0]!.closed).toContain('200 OK');
    for (const h of held) h.sock.destroy();
  });

  it('an attached server: upgrades in progress per address are capped, and each is bounded in time', async () => {
    const http = await import('node:http');
    const user = http.createServer((_q, s) => s.end());
    await new Promise<void>((res) => user.listen(0, '127.0.0.1', () => res()));
    const port = (user.address() as net.AddressInfo).port;
    const { createServer } = await import('../../src/server/index.ts');
    const base = rigs[0]!;
    // A verifier that never answers in time stands in for a stalled handshake: the upgrade stays in progress.
    const server = createServer({ supervisor: base.supervisor, tokens: staticTokens([{ token: 't', role: 'admin' }]), edge: { maxPendingUpgradesPerAddress: 2, upgradeTimeoutMs: 300 }, claims: stalledClaims() });
    server.attach(user);
    try {
      const upgrade = `GET /agent HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer a\r\n\r\n`;
      const pending = await Promise.all([0, 1].map(() => rawTcp(port, upgrade)));
      const third = await rawTcp(port, upgrade);
      expect(await third.closed).toContain('429');
      const t0 = Date.now();
      await Promise.all(pending.map((p) => p.closed));
      expect(Date.now() - t0).toBeLessThan(3000);
    } finally {
      await server.close();
      user.close();
    }
  });
});

/** Claims whose agent-token lookup never settles: an `/agent` upgrade then stays in progress. */
function stalledClaims(): never {
  const never = new Promise<never>(() => undefined);
  return { agentWorkspace: () => never, decision: () => never, ack: () => never, watch: () => () => undefined, label: (v: unknown) => v } as never;
}

describe('/metrics', () => {
  it('is open by default', async () => {
    const r = await rig();
    expect((await fetch(`${r.url}/metrics`)).status).toBe(200);
  });
  it('needs the bearer token when one is configured', async () => {
    const r = await rig({ metricsToken: 'm-secret' });
    expect((await fetch(`${r.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${r.url}/metrics`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    const ok = await fetch(`${r.url}/metrics`, { headers: { authorization: 'Bearer m-secret' } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('wsup_');
  });
});
