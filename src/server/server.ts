/**
 * The wsup control server: HTTP routes (`/`, `/healthz`, `/readyz`, `/metrics`) and JSON-RPC 2.0 over
 * WebSocket at `/control`. It listens on its own or attaches to an existing `http.Server`, where it handles
 * upgrades on its own path only. Lifecycle `starting → ready → draining → stopped` is observable and logged;
 * `close()` is idempotent.
 *
 * @example
 * const server = createServer({ supervisor, tokens: TokenFile.in('.wsup'), port: 7070 });
 * const { url } = await server.listen(); // 'http://127.0.0.1:7070'
 * // embedded instead: server.attach(myHttpServer); route requests with server.handleRequest(req, res)
 * await server.close();
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import { BehaviorSubject, type Observable } from 'rxjs';
import { WebSocketServer, type WebSocket } from 'ws';
import { AGENT_PATH } from '../protocol/index.ts';
import type { ClaimService } from '../supervisor/claims.ts';
import type { TemplateSet } from '../templates/index.ts';
import type { ServerBackend } from './backend.ts';
import { createAgentChannel, type AgentChannel, type AgentChannelOptions } from './agent-channel.ts';
import type { TokenVerifier } from './auth.ts';
import { Connection, Outbound } from './connection.ts';
import { Handlers, type FilesWrittenHook, type HistoryFn } from './handlers.ts';
import { Hub } from './hub.ts';
import { DEFAULT_LIMITS, startHeartbeat, systemServerClock, type Limits, type ServerClock } from './limits.ts';
import { silentLogger, type Logger } from './logger.ts';
import { createMetrics, type ProviderCallTap } from './metrics.ts';
import { createVisualizerSite } from './page.ts';
import { gate, originAllowed, refuse } from './upgrade.ts';

export type ServerLifecycle = 'starting' | 'ready' | 'draining' | 'stopped';
export const CONTROL_PATH = '/control';

export interface ServerOptions {
  /** A Supervisor, or a cluster replica's backend (src/cluster). */
  supervisor: ServerBackend;
  tokens: TokenVerifier;
  /** Default 127.0.0.1: never exposed beyond the host unless asked. */
  host?: string;
  /** Default 7070; 0 picks a free port. */
  port?: number;
  /** Browser origins allowed to upgrade, besides the server's own origin. `*` allows any. */
  originAllowList?: string[];
  limits?: Partial<Limits>;
  logger?: Logger;
  clock?: ServerClock;
  providerCalls?: ProviderCallTap;
  onFilesWritten?: FilesWrittenHook;
  history?: HistoryFn;
  /** Events kept per workspace for `events.history` when no `history` is given. Default 100. */
  historySize?: number;
  /** Prebuild claims: enables `workspace.claim`, `workspace.create {prebuild}` and the `/agent` channel. */
  claims?: ClaimService;
  /** What `workspace.create` may make (`wsup serve --config`); default: the provider's defaults only. */
  templates?: TemplateSet;
  /** Test seam of the `/agent` channel: runs just before a reinit is written. */
  beforeAgentDeliver?: AgentChannelOptions['beforeDeliver'];
  /** HTML for `GET /` instead of the built visualizer. */
  page?: string;
  /** Directory of the built visualizer served at `/`. Default `visualizer/dist`. */
  visualizerDir?: string;
}

export interface WsupServer {
  readonly lifecycle: ServerLifecycle;
  readonly lifecycleChanges: Observable<ServerLifecycle>;
  readonly hub: Hub;
  readonly registry: Registry;
  /** Open /control connections. */
  readonly connections: number;
  listen(): Promise<{ host: string; port: number; url: string }>;
  attach(server: http.Server): void;
  /** Route a plain HTTP request; false when the path is not the server's (embedding). */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean;
  close(): Promise<void>;
}

export function createServer(opts: ServerOptions): WsupServer {
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const logger = opts.logger ?? silentLogger;
  const clock = opts.clock ?? systemServerClock;
  const allow = opts.originAllowList ?? [];
  const life = new BehaviorSubject<ServerLifecycle>('starting');
  const metrics = createMetrics(opts.supervisor, opts.providerCalls);
  // With a store-backed history the ring would only duplicate it: keep none.
  const hub = new Hub(opts.supervisor, opts.history ? 0 : (opts.historySize ?? 100));
  const handlers = new Handlers({ supervisor: opts.supervisor, hub, onFilesWritten: opts.onFilesWritten, history: opts.history, claims: opts.claims, templates: opts.templates });
  const agents: AgentChannel | null = opts.claims
    ? createAgentChannel({ backend: opts.claims, logger, ...(opts.beforeAgentDeliver ? { beforeDeliver: opts.beforeAgentDeliver } : {}) })
    : null;
  const site = createVisualizerSite(opts.visualizerDir);
  const wss = new WebSocketServer({ noServer: true, maxPayload: limits.maxPayload, clientTracking: false });
  const conns = new Map<WebSocket, Connection>();
  const attached: http.Server[] = [];
  let owned: http.Server | null = null;
  let stopHeartbeat: (() => void) | null = null;
  let closing: Promise<void> | null = null;
  let seq = 0;

  const setLife = (next: ServerLifecycle) => {
    if (life.value === next) return;
    logger.info({ from: life.value, to: next }, `server ${next}`);
    life.next(next);
  };

  const deps = {
    handlers,
    outbound: new Outbound(),
    limits,
    clock,
    logger,
    onError: (code: string) => metrics.error(code),
    accepting: () => life.value === 'ready',
  };

  const onConnection = (ws: WebSocket, role: Connection['role']) => {
    const conn = new Connection(ws, role, ++seq, deps);
    conns.set(ws, conn);
    metrics.connectionOpened();
    logger.debug({ conn: conn.id, role }, 'connection opened');
    ws.on('error', (err) => logger.debug({ conn: conn.id, err: err.message }, 'socket error'));
    ws.on('close', (code) => {
      conns.delete(ws);
      metrics.connectionClosed();
      for (const s of conn.subscriptions) hub.unsubscribe(s);
      conn.dispose();
      logger.debug({ conn: conn.id, code }, 'connection closed');
    });
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, own: boolean) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === AGENT_PATH && agents) {
      if (life.value !== 'ready') return refuse(socket, 503, `server is ${life.value}: try again shortly`);
      if (!originAllowed(req, allow)) return refuse(socket, 403, `origin ${req.headers.origin} is not allowed: add it to originAllowList`);
      return agents.handleUpgrade(req, socket, head);
    }
    if (url.pathname !== CONTROL_PATH) {
      // Someone else's path on a shared server is theirs to answer.
      if (own) refuse(socket, 404, `no WebSocket endpoint at ${url.pathname}: use ${CONTROL_PATH}`);
      return;
    }
    if (life.value !== 'ready') return refuse(socket, 503, `server is ${life.value}: try again shortly`);
    const verdict = gate(req, url, opts.tokens, allow);
    if (!verdict.ok) {
      metrics.error(`HTTP_${verdict.status}`);
      return refuse(socket, verdict.status, verdict.message);
    }
    socket.on('error', () => socket.destroy());
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, verdict.role));
  };

  const handleRequest = (req: IncomingMessage, res: ServerResponse): boolean => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const text = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    };
    switch (path) {
      case '/':
        if (opts.page === undefined) return site(req, res, path);
        text(200, opts.page, 'text/html; charset=utf-8');
        return true;
      case '/whoami': {
        // The role of a token, so the page shows operator controls only to roles allowed to use them.
        const verdict = gate(req, new URL(req.url ?? '/', 'http://localhost'), opts.tokens, allow);
        if (verdict.ok) text(200, JSON.stringify({ role: verdict.role }), 'application/json; charset=utf-8');
        else text(verdict.status, `${verdict.message}\n`);
        return true;
      }
      case '/healthz':
        text(200, 'ok\n');
        return true;
      case '/readyz': {
        const ready = life.value === 'ready' && opts.supervisor.lifecycle === 'ready';
        text(ready ? 200 : 503, `${life.value}\n`);
        return true;
      }
      case '/metrics':
        metrics.registry.metrics().then(
          (body) => text(200, body, metrics.registry.contentType),
          (err: unknown) => text(500, `metrics failed: ${String(err)}\n`),
        );
        return true;
      default:
        return site(req, res, path);
    }
  };

  const ready = () => {
    stopHeartbeat ??= startHeartbeat(() => (agents ? [...conns.keys(), ...agents.sockets()] : conns.keys()), limits.heartbeatMs, clock);
    setLife('ready');
  };

  async function drain(): Promise<void> {
    setLife('draining');
    owned?.close();
    const idle = Promise.all([...conns.values()].map((c) => c.idle()));
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, limits.drainTimeoutMs);
      void idle.then(() => {
        clearTimeout(t);
        resolve();
      });
    });
    stopHeartbeat?.();
    const closed = [...conns.keys()].map((ws) => new Promise<void>((r) => {
      if (ws.readyState === ws.CLOSED) return r();
      ws.once('close', () => r());
      ws.close(1001, 'server shutting down');
      // A peer that never answers the close handshake is cut off.
      setTimeout(() => ws.terminate(), 1000).unref();
    }));
    await Promise.all([...closed, agents?.close()]);
    wss.close();
    hub.close();
    metrics.close();
    for (const s of attached) s.removeListener('upgrade', attachedUpgrade);
    if (owned) {
      owned.closeAllConnections();
      await new Promise<void>((r) => (owned!.listening ? owned!.close(() => r()) : r()));
    }
    setLife('stopped');
    life.complete();
  }

  const attachedUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => onUpgrade(req, socket, head, false);

  return {
    get lifecycle() {
      return life.value;
    },
    get lifecycleChanges() {
      return life.asObservable();
    },
    hub,
    registry: metrics.registry,
    get connections() {
      return conns.size;
    },
    handleRequest,
    async listen() {
      if (owned) throw new Error('server is already listening');
      const s = http.createServer((req, res) => {
        if (!handleRequest(req, res)) res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${req.url}\n`);
      });
      owned = s;
      s.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => onUpgrade(req, socket, head, true));
      const host = opts.host ?? '127.0.0.1';
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(opts.port ?? 7070, host, () => resolve());
      });
      const port = (s.address() as AddressInfo).port;
      ready();
      const shown = host.includes(':') ? `[${host}]` : host;
      logger.info({ host, port }, 'listening');
      return { host, port, url: `http://${shown}:${port}` };
    },
    attach(server) {
      attached.push(server);
      server.on('upgrade', attachedUpgrade);
      ready();
    },
    close() {
      closing ??= drain();
      return closing;
    },
  };
}
