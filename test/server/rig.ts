/**
 * A real server on port 0 over a real Supervisor + FakeProvider, plus raw and typed clients. Tests use
 * real sockets on loopback with bounded waits; no timing decides an assertion.
 */
import { vi } from 'vitest';
import WebSocket from 'ws';
import { WsupClient, type ClientOptions } from '../../src/client/index.ts';
import type { Role } from '../../src/protocol/index.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { createServer, staticTokens, type ServerOptions, type WsupServer } from '../../src/server/index.ts';
import { ProviderCallTap } from '../../src/server/metrics.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';

export const TOKENS: Record<Role | 'expired', string> = {
  admin: 'tok-admin',
  operator: 'tok-operator',
  viewer: 'tok-viewer',
  expired: 'tok-expired',
};

export interface ServerRig {
  server: WsupServer;
  supervisor: Supervisor;
  provider: FakeProvider;
  url: string;
  wsUrl: string;
  port: number;
  client(role?: Role, opts?: Partial<ClientOptions>): WsupClient;
  raw(role?: Role | null, headers?: Record<string, string>): Promise<RawSocket>;
  close(): Promise<void>;
}

export async function startRig(opts: { latencyMs?: number; server?: Partial<ServerOptions> } = {}): Promise<ServerRig> {
  const provider = new FakeProvider({ latencyMs: opts.latencyMs ?? 1 });
  const tap = new ProviderCallTap();
  const supervisor = new Supervisor({ provider, onProviderCall: tap.record });
  const tokens = staticTokens([
    { token: TOKENS.admin, role: 'admin' },
    { token: TOKENS.operator, role: 'operator' },
    { token: TOKENS.viewer, role: 'viewer' },
    { token: TOKENS.expired, role: 'admin', expiresAt: Date.now() - 1000 },
  ]);
  const server = createServer({ supervisor, tokens, port: 0, providerCalls: tap, ...opts.server });
  const { port, url } = await server.listen();
  const wsUrl = `ws://127.0.0.1:${port}/control`;
  const clients: WsupClient[] = [];
  const raws: RawSocket[] = [];
  return {
    server,
    supervisor,
    provider,
    url,
    wsUrl,
    port,
    client(role = 'admin', o = {}) {
      const c = new WsupClient({ url: wsUrl, token: TOKENS[role], WebSocket, reconnect: false, ...o });
      clients.push(c);
      return c;
    },
    async raw(role = 'admin', headers = {}) {
      const r = await RawSocket.open(wsUrl, role === null ? headers : { authorization: `Bearer ${TOKENS[role]}`, ...headers });
      raws.push(r);
      return r;
    },
    async close() {
      for (const c of clients) c.close();
      for (const r of raws) r.ws.terminate();
      await server.close();
      await supervisor.shutdown({ deadlineMs: 1000 });
    },
  };
}

/** A bare socket that collects every frame, for protocol-level assertions. */
export class RawSocket {
  readonly frames: unknown[] = [];
  /** Byte size of each frame, in arrival order. */
  readonly sizes: number[] = [];
  closed: { code: number; reason: string } | null = null;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      this.sizes.push(d.length);
      this.frames.push(JSON.parse(d.toString()));
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
    });
  }

  static open(url: string, headers: Record<string, string>): Promise<RawSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers, maxPayload: 256 * 1024 * 1024 });
      const r = new RawSocket(ws);
      ws.once('open', () => resolve(r));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  send(text: string): void {
    this.ws.send(text);
  }

  /** Wait until `pred` holds (or the socket closed), within `ms`. Works in hooks too (`vi.waitFor`). */
  async until(pred: () => boolean, ms = 5000): Promise<void> {
    await vi.waitFor(
      () => {
        if (!pred() && !this.closed) throw new Error(`condition not met with ${this.frames.length} frames received`);
      },
      { timeout: ms, interval: 10 },
    );
  }

  /** Send and wait for the next frame. */
  async rpc(text: string): Promise<unknown> {
    const before = this.frames.length;
    this.send(text);
    await this.until(() => this.frames.length > before);
    return this.frames[before];
  }
}

/** Try an upgrade and report the HTTP status (101 when accepted). */
export function upgradeStatus(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
    });
    // Refused connections (server gone) count as status 0.
    ws.once('error', () => resolve(0));
  });
}
