/**
 * The `/agent` WebSocket channel. An agent authenticates with its workspace's agent token and is
 * bound to that workspace for the life of the socket: it can neither see nor acknowledge another one's claim.
 *
 * Per connection: watch the workspace's claim changes FIRST, then read the durable state, and read again
 * after every change (reads are serialized, a change during a read causes one more). A claim that commits
 * at any moment is therefore seen, and what is sent is always `decide(durable state)`: a reinit until the
 * agent acknowledges it (durably), nothing after. A socket that dies with a reinit in flight loses nothing.
 *
 * Activity: a `heartbeat` frame becomes `activity(id, 'agent heartbeat')`, at most one per socket per
 * AGENT_HEARTBEAT_MIN_MS (the rest are dropped on arrival: a flood costs a parse and a comparison per frame,
 * and no memory). A `policy.warning` for the workspace is passed to each of its agent sockets.
 *
 * @example
 * const agents = createAgentChannel({ backend: claimService, logger });
 * httpServer.on('upgrade', (req, socket, head) => agents.handleUpgrade(req, socket, head));
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Subscription } from 'rxjs';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { errorMessage } from '../errors.ts';
import {
  AGENT_ACTIVITY_PARAM,
  AGENT_HEARTBEAT_MIN_MS,
  AGENT_REFUSED_CLOSE,
  agentClientFrameSchema,
  type AgentServerFrame,
  type PolicyWarning,
  type ReinitEvent,
} from '../protocol/index.ts';
import type { AgentDecision } from '../supervisor/claims.ts';
import type { ServerBackend } from './backend.ts';
import type { Logger } from './logger.ts';
import { closeRevoked, refuse, tokenOf } from './upgrade.ts';

/** What the channel needs of the claim service (ClaimService satisfies it). */
export interface AgentBackend {
  agentWorkspace(token: string): Promise<string | null>;
  decision(id: string): Promise<AgentDecision>;
  ack(id: string, claimBuildId: string): Promise<boolean>;
  watch(id: string, fn: () => void): () => void;
}

export interface AgentChannelOptions {
  backend: AgentBackend;
  logger: Logger;
  /** Where heartbeats go and warnings come from; without it heartbeats are dropped and no warning is sent. */
  workspaces?: Pick<ServerBackend, 'events' | 'activity'>;
  /** Monotonic ms for the heartbeat rate limit. Default `performance.now`. */
  now?: () => number;
  maxPayload?: number;
  /** Test seam: runs just before a reinit frame is written to the socket. */
  beforeDeliver?: (workspaceId: string, event: ReinitEvent) => void | Promise<void>;
}

export interface AgentChannel {
  /** Authenticate and upgrade; answers 401 for an unknown token. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, onSettled?: () => void): void;
  sockets(): Iterable<WebSocket>;
  readonly connections: number;
  /** Close (4401) every socket whose agent token no longer maps to its workspace (rotated on a provider start). */
  recheck(): Promise<void>;
  /** Close every agent socket with 1001 (agents reconnect to the next server). Idempotent. */
  close(): Promise<void>;
}

export function createAgentChannel(opts: AgentChannelOptions): AgentChannel {
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayload ?? 64 * 1024, clientTracking: false });
  const sessions = new Map<WebSocket, AgentSession>();
  /** Sessions by workspace, for warnings: one lookup per event, whatever the number of agents. */
  const byWorkspace = new Map<string, Set<AgentSession>>();
  let closing: Promise<void> | null = null;
  const warnings: Subscription | undefined = opts.workspaces?.events.subscribe((ev) => {
    if (ev.type !== 'policy.warning') return;
    const warning: PolicyWarning = { workspaceId: ev.id, source: ev.source, reason: ev.reason, stopAt: ev.stopAt, at: ev.at };
    for (const s of byWorkspace.get(ev.id) ?? []) s.warn(warning);
  });

  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, onSettled: () => void = () => undefined) => {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://localhost');
    const token = tokenOf(req, url);
    const stays = url.searchParams.get(AGENT_ACTIVITY_PARAM) === '1';
    if (token === null) return refuse(socket, 401, 'missing agent token: send Authorization: Bearer <WSUP_AGENT_TOKEN>');
    opts.backend.agentWorkspace(token).then(
      (workspaceId) => {
        if (closing) return refuse(socket, 503, 'server is shutting down: reconnect shortly');
        if (workspaceId === null) return refuse(socket, 401, 'invalid agent token: it was rotated or never issued; the agent cannot reconnect with it');
        wss.handleUpgrade(req, socket, head, (ws) => {
          onSettled();
          const session = new AgentSession(ws, workspaceId, token, stays, opts);
          sessions.set(ws, session);
          const peers = byWorkspace.get(workspaceId) ?? new Set<AgentSession>();
          byWorkspace.set(workspaceId, peers.add(session));
          ws.on('close', () => {
            sessions.delete(ws);
            peers.delete(session);
            if (peers.size === 0 && byWorkspace.get(workspaceId) === peers) byWorkspace.delete(workspaceId);
            session.dispose();
          });
        });
      },
      (err: unknown) => {
        opts.logger.error({ err: errorMessage(err) }, 'agent token lookup failed');
        refuse(socket, 503, 'agent token check failed: retry shortly');
      },
    );
  };

  return {
    handleUpgrade,
    sockets: () => sessions.keys(),
    async recheck() {
      await Promise.all([...sessions.values()].map((s) => s.stillValid()));
    },
    get connections() {
      return sessions.size;
    },
    close() {
      closing ??= (async () => {
        warnings?.unsubscribe();
        await Promise.all([...sessions.keys()].map((ws) => new Promise<void>((r) => {
          if (ws.readyState === ws.CLOSED) return r();
          ws.once('close', () => r());
          ws.close(1001, 'server shutting down');
          setTimeout(() => ws.terminate(), 1000).unref();
        })));
        wss.close();
      })();
      return closing;
    },
  };
}

/** One agent socket, bound to one workspace. */
class AgentSession {
  private readonly unwatch: () => void;
  private reading = false;
  private again = false;
  private disposed = false;
  /** Claim build already sent on this socket (a reconnect sends it again until acknowledged). */
  private sent: string | null = null;
  private lastWait: string | null = null;
  private refusedSent = false;
  /** When the last heartbeat was passed on (monotonic ms); -Infinity: none yet. */
  private lastBeat = -Infinity;
  private readonly now: () => number;

  constructor(
    private readonly ws: WebSocket,
    private readonly workspaceId: string,
    private readonly token: string,
    /** Opened with `?activity=1`: not a prebuild is no reason to close. */
    private readonly stays: boolean,
    private readonly opts: AgentChannelOptions,
  ) {
    this.now = opts.now ?? (() => performance.now());
    // Watch before reading: a claim committed between the two triggers another read, never a miss.
    this.unwatch = opts.backend.watch(workspaceId, () => void this.refresh());
    ws.on('message', (data, isBinary) => void this.onMessage(data, isBinary));
    ws.on('error', () => undefined);
    void this.refresh();
  }

  dispose(): void {
    this.disposed = true;
    this.unwatch();
  }

  /**
   * False, and the socket closed with 4401, once the token it was opened with is no longer its workspace's
   * (each provider start issues a new one): an old agent can then neither receive nor acknowledge a reinit.
   */
  async stillValid(): Promise<boolean> {
    if (this.disposed) return false;
    let current: string | null;
    try {
      current = await this.opts.backend.agentWorkspace(this.token);
    } catch {
      return true; // A store hiccup is not a revocation; the next check decides.
    }
    if (current === this.workspaceId) return true;
    this.dispose();
    closeRevoked(this.ws, 'agent token rotated: reconnect with the current one');
    return false;
  }

  private async refresh(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    try {
      do {
        this.again = false;
        if (this.disposed) return;
        await this.act(await this.opts.backend.decision(this.workspaceId));
      } while (this.again);
    } catch (err) {
      this.opts.logger.error({ workspaceId: this.workspaceId, err: errorMessage(err) }, 'agent channel could not read claim state');
      // The agent reconnects and reads again: closing loses nothing, guessing could.
      this.ws.close(1011, 'claim state unavailable: reconnect');
    } finally {
      this.reading = false;
    }
  }

  private async act(d: AgentDecision): Promise<void> {
    switch (d.kind) {
      case 'refuse':
        if (this.stays && d.code === 'WSUP_NOT_PREBUILD') {
          // No reinit will come, but heartbeats and warnings still do: say so once and stay.
          if (!this.refusedSent) this.send({ type: 'refused', code: d.code, message: d.message });
          this.refusedSent = true;
          return;
        }
        this.send({ type: 'refused', code: d.code, message: d.message });
        this.ws.close(AGENT_REFUSED_CLOSE, d.code);
        this.dispose();
        return;
      case 'wait':
        if (this.lastWait === d.why) return;
        this.lastWait = d.why;
        this.send({ type: 'waiting', workspaceId: this.workspaceId, why: d.why });
        return;
      case 'reinit':
        if (this.sent === d.event.claimBuildId) return;
        this.sent = d.event.claimBuildId;
        this.lastWait = null;
        await this.opts.beforeDeliver?.(this.workspaceId, d.event);
        if (!(await this.stillValid())) return;
        this.send({ type: 'reinit', event: d.event });
        return;
    }
  }

  private async onMessage(data: RawData, isBinary: boolean): Promise<void> {
    let frame: unknown;
    try {
      frame = isBinary ? undefined : JSON.parse(rawText(data));
    } catch {
      frame = undefined;
    }
    const parsed = agentClientFrameSchema.safeParse(frame);
    if (!parsed.success) return this.send({ type: 'error', message: 'invalid frame: send {"type":"ack","claimBuildId":"…"} or {"type":"heartbeat"}' });
    if (parsed.data.type === 'heartbeat') return this.heartbeat();
    const { claimBuildId } = parsed.data;
    if (!(await this.stillValid())) return;
    try {
      // Bound to this socket's workspace: a build id of another workspace matches nothing.
      const ok = await this.opts.backend.ack(this.workspaceId, claimBuildId);
      this.send({ type: 'acked', claimBuildId, ok });
    } catch (err) {
      this.opts.logger.error({ workspaceId: this.workspaceId, err: errorMessage(err) }, 'agent ack could not be stored');
      this.send({ type: 'error', message: 'ack could not be stored: it will be delivered again, ack again' });
    }
  }

  /** A max-lifetime warning for this socket's workspace. */
  warn(warning: PolicyWarning): void {
    if (!this.disposed) this.send({ type: 'warning', warning });
  }

  /** Pass one heartbeat per AGENT_HEARTBEAT_MIN_MS on as activity of this socket's workspace (and only its). */
  private async heartbeat(): Promise<void> {
    const now = this.now();
    if (this.disposed || !this.opts.workspaces || now - this.lastBeat < AGENT_HEARTBEAT_MIN_MS) return;
    this.lastBeat = now;
    if (!(await this.stillValid())) return;
    try {
      await this.opts.workspaces.activity(this.workspaceId, 'agent heartbeat');
    } catch (err) {
      this.opts.logger.debug({ workspaceId: this.workspaceId, err: errorMessage(err) }, 'agent heartbeat not recorded');
    }
  }

  private send(frame: AgentServerFrame): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(frame));
  }
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8');
}
