/**
 * One attempt to open the `/agent` socket, and its frames as an async queue. Kept apart from the reinit
 * loop so the loop reads as policy (backoff, dedup, ack) and this file as transport.
 */
import { AGENT_PATH, AGENT_REFUSED_CLOSE, agentServerFrameSchema, type AgentServerFrame } from '../protocol/index.ts';

/** The slice of the `ws` package's WebSocket the SDK uses (pass `ws`'s default export). */
export interface AgentSocket {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(event: 'open', fn: () => void): unknown;
  on(event: 'message', fn: (data: unknown, isBinary: boolean) => void): unknown;
  on(event: 'close', fn: (code: number, reason: unknown) => void): unknown;
  on(event: 'error', fn: (err: Error) => void): unknown;
  on(event: 'unexpected-response', fn: (req: unknown, res: { statusCode?: number; resume?: () => void }) => void): unknown;
}
export type AgentSocketConstructor = new (url: string, opts: { headers: Record<string, string> }) => AgentSocket;

export type Incoming = { kind: 'frame'; frame: AgentServerFrame } | { kind: 'legacy'; reason: string } | { kind: 'closed'; code: number };

export type Attempt =
  | { kind: 'open'; socket: AgentSocket; next: () => Promise<Incoming> }
  | { kind: 'refused'; status: number }
  | { kind: 'unauthorized'; status: number }
  | { kind: 'failed'; detail: string };

/** `http(s)://host:port` (or a `ws(s)://…` url without a path) → `ws(s)://host:port/agent`. */
export function agentUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.pathname === '/' || u.pathname === '') u.pathname = AGENT_PATH;
  return u.toString();
}

export function connect(WebSocket: AgentSocketConstructor, url: string, token: string, signal: AbortSignal): Promise<Attempt> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    const queue: Incoming[] = [];
    const takers: Array<(i: Incoming) => void> = [];
    let closed = false;
    const push = (i: Incoming) => {
      const take = takers.shift();
      if (take) take(i);
      else queue.push(i);
    };
    const next = () => {
      const i = queue.shift();
      if (i) return Promise.resolve(i);
      if (closed) return Promise.resolve<Incoming>({ kind: 'closed', code: 1006 });
      return new Promise<Incoming>((r) => takers.push(r));
    };
    let settled = false;
    const settle = (a: Attempt) => {
      if (!settled) resolve(a);
      settled = true;
    };
    const onAbort = () => socket.terminate();
    signal.addEventListener('abort', onAbort, { once: true });

    socket.on('open', () => settle({ kind: 'open', socket, next }));
    socket.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      res.resume?.();
      socket.terminate();
      if (status === 409) settle({ kind: 'refused', status });
      else if (status === 401 || status === 403) settle({ kind: 'unauthorized', status });
      else settle({ kind: 'failed', detail: `HTTP ${status}` });
    });
    socket.on('error', (err) => settle({ kind: 'failed', detail: err.message }));
    socket.on('message', (data, isBinary) => {
      if (isBinary) return;
      const text = String(data);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return push({ kind: 'legacy', reason: text });
      }
      if (typeof parsed === 'string') return push({ kind: 'legacy', reason: parsed });
      const frame = agentServerFrameSchema.safeParse(parsed);
      if (frame.success) push({ kind: 'frame', frame: frame.data as AgentServerFrame });
    });
    socket.on('close', (code) => {
      closed = true;
      signal.removeEventListener('abort', onAbort);
      settle({ kind: 'failed', detail: `closed (${code}) before opening` });
      push({ kind: 'closed', code });
      for (const take of takers.splice(0)) take({ kind: 'closed', code });
    });
  });
}

export const isRefusalClose = (code: number): boolean => code === AGENT_REFUSED_CLOSE;
