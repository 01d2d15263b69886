/**
 * `openAgent`: the agent's side of lifecycle policies. One `/agent?activity=1` socket, kept open with the
 * same backoff as `waitForReinit`, that carries heartbeats up (`reportActivity()`: the workspace is in use,
 * so its idle deadline moves out) and warnings down (`onWarning`: a max-lifetime stop is coming). It works
 * for every workspace, prebuild or not; a prebuild's reinit still comes through `waitForReinit`.
 *
 * Heartbeats are folded: at most one frame per AGENT_HEARTBEAT_MIN_MS (the server counts no finer). One
 * reported while disconnected is sent on the next connect.
 *
 * @example
 * import WebSocket from 'ws';
 * const agent = openAgent({ url: 'http://127.0.0.1:7070', token: process.env.WSUP_AGENT_TOKEN!, WebSocket });
 * agent.onWarning((w) => console.log(`stopping at ${new Date(w.stopAt).toISOString()}: ${w.reason}`));
 * editor.on('keystroke', () => agent.reportActivity());
 * // later: agent.close(); await agent.ended;
 */
import { AGENT_ACTIVITY_PARAM, AGENT_HEARTBEAT_MIN_MS, type AgentRefusalCode, type PolicyWarning } from '../protocol/index.ts';
import { agentUrl, connect, isRefusalClose, type AgentSocket, type AgentSocketConstructor } from './connection.ts';
import { AgentTokenError, Backoff, realScheduler, type AgentScheduler } from './wait-for-reinit.ts';

export type AgentLinkStatus =
  | { type: 'connecting'; attempt: number }
  | { type: 'connected' }
  | { type: 'disconnected'; detail: string; retryInMs: number };

export interface OpenAgentOptions {
  /** Server base url (`http://host:port`) or the full `ws://host:port/agent`. */
  url: string;
  /** The workspace's agent token (`WSUP_AGENT_TOKEN` in the agent's environment). */
  token: string;
  WebSocket: AgentSocketConstructor;
  signal?: AbortSignal;
  scheduler?: AgentScheduler;
  backoff?: { initialMs?: number; maxMs?: number };
  /** Monotonic ms for folding heartbeats. Default `performance.now`. */
  now?: () => number;
  onStatus?: (status: AgentLinkStatus) => void;
}

/** Why the link ended (what `ended` resolves to). */
export type AgentLinkEnd =
  | { reason: 'closed' }
  | { reason: 'refused'; code: AgentRefusalCode | 'HTTP_409'; message: string }
  | { reason: 'unauthorized'; error: AgentTokenError };

export interface AgentLink {
  /** The workspace is in use. True when a heartbeat went out now (or waits for the connect); false when folded into the last one. */
  reportActivity(): boolean;
  /** Call `fn` for every warning of this workspace; returns the unsubscribe. */
  onWarning(fn: (warning: PolicyWarning) => void): () => void;
  /** Stop for good (idempotent). */
  close(): void;
  readonly ended: Promise<AgentLinkEnd>;
}

export function openAgent(opts: OpenAgentOptions): AgentLink {
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const now = opts.now ?? (() => performance.now());
  const warned = new Set<(w: PolicyWarning) => void>();
  let socket: AgentSocket | null = null;
  let lastBeat = -Infinity;
  let pending = false;

  const beat = () => {
    if (socket?.readyState !== 1) return false;
    socket.send(JSON.stringify({ type: 'heartbeat' }));
    lastBeat = now();
    pending = false;
    return true;
  };

  const ended = run(opts, signal, {
    opened: (s) => {
      socket = s;
      if (pending) beat();
    },
    closed: () => void (socket = null),
    warning: (w) => {
      for (const fn of warned) fn(w);
    },
  });
  void ended.finally(() => {
    socket = null;
    stop.abort();
  });

  return {
    reportActivity() {
      if (signal.aborted || now() - lastBeat < AGENT_HEARTBEAT_MIN_MS) return false;
      if (beat()) return true;
      pending = true;
      return true;
    },
    onWarning(fn) {
      warned.add(fn);
      return () => void warned.delete(fn);
    },
    close: () => stop.abort(),
    ended,
  };
}

interface Hooks {
  opened(socket: AgentSocket): void;
  closed(): void;
  warning(w: PolicyWarning): void;
}

async function run(opts: OpenAgentOptions, signal: AbortSignal, hooks: Hooks): Promise<AgentLinkEnd> {
  const scheduler = opts.scheduler ?? realScheduler;
  const status = opts.onStatus ?? (() => undefined);
  const backoff = new Backoff(opts.backoff?.initialMs, opts.backoff?.maxMs);
  const url = new URL(agentUrl(opts.url));
  url.searchParams.set(AGENT_ACTIVITY_PARAM, '1');

  for (let attempt = 1; !signal.aborted; attempt++) {
    status({ type: 'connecting', attempt });
    const a = await connect(opts.WebSocket, url.toString(), opts.token, signal);
    let detail: string;
    if (a.kind === 'refused') return { reason: 'refused', code: 'HTTP_409', message: 'the server refused this agent (HTTP 409)' };
    if (a.kind === 'unauthorized') return { reason: 'unauthorized', error: new AgentTokenError(a.status) };
    if (a.kind === 'failed') detail = a.detail;
    else {
      backoff.reset();
      status({ type: 'connected' });
      hooks.opened(a.socket);
      try {
        for (;;) {
          const i = await a.next();
          if (i.kind === 'closed') {
            if (isRefusalClose(i.code)) return { reason: 'refused', code: 'WSUP_NOT_FOUND', message: 'the server closed with 4409: the workspace is gone' };
            detail = `closed (${i.code})`;
            break;
          }
          if (i.kind !== 'frame') continue;
          const f = i.frame;
          if (f.type === 'warning') hooks.warning(f.warning);
          // Not a prebuild only means no reinit: this socket stays for heartbeats and warnings.
          if (f.type === 'refused' && f.code !== 'WSUP_NOT_PREBUILD') return { reason: 'refused', code: f.code, message: f.message };
        }
      } finally {
        hooks.closed();
        a.socket.terminate();
      }
    }
    if (signal.aborted) break;
    const wait = backoff.next();
    status({ type: 'disconnected', detail, retryInMs: wait });
    await scheduler.sleep(wait, signal);
  }
  return { reason: 'closed' };
}
