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
import { timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import { BehaviorSubject, type Observable } from 'rxjs';
import { WebSocketServer, type WebSocket } from 'ws';
import { AGENT_PATH } from '../protocol/index.ts';
import type { TemplateSet } from '../templates/index.ts';
import type { ServerBackend } from './backend.ts';
import { createAgentChannel, type AgentBackend, type AgentChannel, type AgentChannelOptions } from './agent-channel.ts';
import { hashToken, principalName, type Principal, type TokenVerifier } from './auth.ts';
import { Connection, Outbound } from './connection.ts';
import { Handlers, type ClaimsApi, type FilesWrittenHook, type HistoryFn, type PoolsApi } from './handlers.ts';
import { Hub } from './hub.ts';
import { DEFAULT_LIMITS, startHeartbeat, systemServerClock, type Limits, type ServerClock } from './limits.ts';
import { silentLogger, type Logger } from './logger.ts';
import { createMetrics, type ProviderCallTap } from './metrics.ts';
import { createVisualizerSite } from './page.ts';
import { EDGE_DEFAULTS, type EdgeOptions } from './edge-defaults.ts';
import { bearerToken, closeRevoked, gate, originAllowed, refuse } from './upgrade.ts';

export { EDGE_DEFAULTS, type EdgeOptions } from './edge-defaults.ts';

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
  /**
   * Browser origins allowed to upgrade, besides the server's own bound address(es) (`http://127.0.0.1:PORT`,
   * `http://localhost:PORT`, …). `*` allows any. The request's Host header is never consulted.
   */
  originAllowList?: string[];
  /** When set, `GET /metrics` needs `Authorization: Bearer <metricsToken>`; unset, it stays open. */
  metricsToken?: string;
  /** Timeouts, caps and the token re-check interval; see EDGE_DEFAULTS. */
  edge?: Partial<EdgeOptions>;
  limits?: Partial<Limits>;
  logger?: Logger;
  clock?: ServerClock;
  providerCalls?: ProviderCallTap;
  onFilesWritten?: FilesWrittenHook;
  history?: HistoryFn;
  /** Events kept per workspace for `events.history` when no `history` is given. Default 100. */
  historySize?: number;
  /** Prebuild claims: enables `workspace.claim`, `workspace.create {prebuild}` and the `/agent` channel. */
  claims?: ClaimsApi & AgentBackend;
  /** What `workspace.create` may make (`wsup serve --config`); default: the provider's defaults only. */
  templates?: TemplateSet;
  /** Prebuild pools: enables `pool.*` and the per-pool gauges on `/metrics`. */
  pools?: PoolsApi;
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
  const edge: EdgeOptions = { ...EDGE_DEFAULTS, ...opts.edge };
  // The configured origins plus, once bound, the server's own: filled in by listen() and attach().
  const allow: string[] = [...(opts.originAllowList ?? [])];
  const addOwnOrigins = (s: http.Server) => {
    const a = s.address();
    if (a === null || typeof a === 'string') return;
    for (const o of ownOrigins(a)) if (!allow.includes(o)) allow.push(o);
  };
  const pendingUpgrades = new Map<string, number>();
  const tokenOfSocket = new Map<WebSocket, string>();
  let stopRecheck: (() => void) | null = null;
  const life = new BehaviorSubject<ServerLifecycle>('starting');
  const metrics = createMetrics(opts.supervisor, opts.providerCalls, opts.pools);
  // With a store-backed history the ring would only duplicate it: keep none.
  const hub = new Hub(opts.supervisor, opts.history ? 0 : (opts.historySize ?? 100));
  const handlers = new Handlers({ supervisor: opts.supervisor, hub, onFilesWritten: opts.onFilesWritten, history: opts.history, claims: opts.claims, templates: opts.templates, pools: opts.pools });
  const agents: AgentChannel | null = opts.claims
    ? createAgentChannel({ backend: opts.claims, workspaces: opts.supervisor, now: () => clock.now(), logger, ...(opts.beforeAgentDeliver ? { beforeDeliver: opts.beforeAgentDeliver } : {}) })
    : null;
  // Events may have been lost (a cluster's listener blinked): every subscriber starts again from the state.
  const resyncing = opts.supervisor.resyncs?.subscribe(() => {
    for (const c of conns.values()) for (const sub of c.subscriptions) handlers.resync(c, sub, 0).catch(() => undefined);
  });
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

  const onConnection = (ws: WebSocket, principal: Principal, token: string) => {
    const conn = new Connection(ws, principal.role, ++seq, deps, principalName(principal));
    conns.set(ws, conn);
    tokenOfSocket.set(ws, token);
    metrics.connectionOpened();
    logger.debug({ conn: conn.id, role: principal.role, principal: conn.principal }, 'connection opened');
    ws.on('error', (err) => logger.debug({ conn: conn.id, err: err.message }, 'socket error'));
    ws.on('close', (code) => {
      conns.delete(ws);
      tokenOfSocket.delete(ws);
      metrics.connectionClosed();
      for (const s of conn.subscriptions) hub.unsubscribe(s);
      conn.dispose();
      logger.debug({ conn: conn.id, code }, 'connection closed');
    });
  };

  /** Close every socket whose token was rotated, removed or has expired since it connected. */
  const recheck = () => {
    const verdicts = new Map<string, string | null>();
    for (const [ws, token] of tokenOfSocket) {
      if (!verdicts.has(token)) {
        let p: Principal | null;
        try {
          p = opts.tokens.verify(token);
        } catch {
          continue; // An unreadable token file is not a revocation; the next check decides.
        }
        verdicts.set(token, p ? principalName(p) : null);
      }
      const now = verdicts.get(token);
      const conn = conns.get(ws);
      if (now === null || (conn && now !== conn.principal)) {
        tokenOfSocket.delete(ws);
        logger.info({ conn: conn?.id, principal: conn?.principal }, 'token revoked: closing its socket');
        closeRevoked(ws, 'token revoked or expired');
      }
    }
    void agents?.recheck();
  };

  /**
   * Upgrades in progress are counted per remote address and bounded in time, so a flood of slow or stalled
   * handshakes cannot hold sockets; the count drops when the socket closes or the handshake completes.
   */
  const admitUpgrade = (req: IncomingMessage, socket: Duplex): (() => void) | null => {
    const addr = req.socket.remoteAddress ?? '?';
    const n = pendingUpgrades.get(addr) ?? 0;
    if (n >= edge.maxPendingUpgradesPerAddress) {
      refuse(socket, 429, `too many upgrades in progress from ${addr}: try again shortly`);
      return null;
    }
    pendingUpgrades.set(addr, n + 1);
    let done = false;
    const timer = setTimeout(() => {
      logger.debug({ addr }, 'upgrade timed out');
      socket.destroy();
    }, edge.upgradeTimeoutMs);
    timer.unref();
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const left = (pendingUpgrades.get(addr) ?? 1) - 1;
      if (left <= 0) pendingUpgrades.delete(addr);
      else pendingUpgrades.set(addr, left);
    };
    socket.once('close', finish);
    return finish;
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, own: boolean) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === AGENT_PATH && agents) {
      if (life.value !== 'ready') return refuse(socket, 503, `server is ${life.value}: try again shortly`);
      if (!originAllowed(req, allow)) return refuse(socket, 403, `origin ${req.headers.origin} is not allowed: add it with --allowed-origin`);
      const finish = admitUpgrade(req, socket);
      if (!finish) return;
      return agents.handleUpgrade(req, socket, head, finish);
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
    const finish = admitUpgrade(req, socket);
    if (!finish) return;
    wss.handleUpgrade(req, socket, head, (ws) => {
      finish();
      onConnection(ws, verdict.principal, verdict.token);
    });
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
        if (verdict.ok) text(200, JSON.stringify({ role: verdict.principal.role }), 'application/json; charset=utf-8');
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
        if (opts.metricsToken !== undefined && !bearerIs(req, opts.metricsToken)) {
          res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer' }).end('metrics need Authorization: Bearer <metrics token>\n');
          return true;
        }
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
    if (!stopRecheck) {
      const h = clock.setInterval(recheck, edge.recheckMs);
      stopRecheck = () => clock.clearInterval(h);
    }
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
    stopRecheck?.();
    const closed = [...conns.keys()].map((ws) => new Promise<void>((r) => {
      if (ws.readyState === ws.CLOSED) return r();
      ws.once('close', () => r());
      ws.close(1001, 'server shutting down');
      // A peer that never answers the close handshake is cut off.
      setTimeout(() => ws.terminate(), 1000).unref();
    }));
    await Promise.all([...closed, agents?.close()]);
    wss.close();
    resyncing?.unsubscribe();
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
      const s = http.createServer(
        {
          headersTimeout: edge.headersTimeoutMs,
          requestTimeout: Math.max(edge.requestTimeoutMs, edge.headersTimeoutMs),
          // Node checks both timeouts on this period (30 s by default): check often enough to honour them.
          connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(edge.headersTimeoutMs / 2))),
        },
        (req, res) => {
          if (!handleRequest(req, res)) res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${req.url}\n`);
        },
      );
      owned = s;
      const perAddress = new Map<string, number>();
      s.on('connection', (sock: Socket) => {
        const addr = sock.remoteAddress ?? '?';
        const n = (perAddress.get(addr) ?? 0) + 1;
        if (n > edge.maxConnectionsPerAddress) {
          logger.debug({ addr }, 'connection cap per address reached: closing');
          sock.destroy();
          return;
        }
        perAddress.set(addr, n);
        sock.once('close', () => {
          const left = (perAddress.get(addr) ?? 1) - 1;
          if (left <= 0) perAddress.delete(addr);
          else perAddress.set(addr, left);
        });
      });
      s.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => onUpgrade(req, socket, head, true));
      const host = opts.host ?? '127.0.0.1';
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(opts.port ?? 7070, host, () => resolve());
      });
      const port = (s.address() as AddressInfo).port;
      addOwnOrigins(s);
      ready();
      const shown = host.includes(':') ? `[${host}]` : host;
      logger.info({ host, port }, 'listening');
      return { host, port, url: `http://${shown}:${port}` };
    },
    attach(server) {
      attached.push(server);
      if (server.listening) addOwnOrigins(server);
      else server.once('listening', () => addOwnOrigins(server));
      server.on('upgrade', attachedUpgrade);
      ready();
    },
    close() {
      closing ??= drain();
      return closing;
    },
  };
}

/** The origins a browser uses for a page served from this address. */
function ownOrigins(a: AddressInfo): string[] {
  const p = a.port;
  const loopback = [`http://127.0.0.1:${p}`, `http://localhost:${p}`, `http://[::1]:${p}`];
  if (a.address === '0.0.0.0' || a.address === '::') return loopback;
  const host = a.address.includes(':') ? `[${a.address}]` : a.address;
  return [...new Set([`http://${host}:${p}`, ...(a.address.startsWith('127.') || a.address === '::1' ? loopback : [])])];
}

/** Whether the request's bearer token is `expected`, compared in constant time (over their hashes). */
function bearerIs(req: IncomingMessage, expected: string): boolean {
  const token = bearerToken(req);
  if (token === null) return false;
  return timingSafeEqual(Buffer.from(hashToken(token), 'hex'), Buffer.from(hashToken(expected), 'hex'));
}
