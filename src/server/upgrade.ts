/**
 * The upgrade gate: path, lifecycle, Origin allow-list and bearer token are all checked before the
 * WebSocket handshake, so a refused client costs one HTTP response and never a socket.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { TOKEN_REVOKED_CLOSE } from '../protocol/index.ts';
import type { Principal, TokenVerifier } from './auth.ts';

/** Close a socket whose token no longer holds (4401), and cut it off if the peer does not answer within 1 s. */
export function closeRevoked(ws: WebSocket, reason: string): void {
  ws.close(TOKEN_REVOKED_CLOSE, reason);
  setTimeout(() => ws.terminate(), 1000).unref();
}

export type GateResult = { ok: true; principal: Principal; token: string } | { ok: false; status: number; message: string };

/** The token of an `Authorization: Bearer <token>` header; null when there is none or it is malformed. */
export function bearerToken(req: IncomingMessage): string | null {
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
  return m ? m[1]! : null;
}

export function tokenOf(req: IncomingMessage, url: URL): string | null {
  if (req.headers.authorization !== undefined) return bearerToken(req);
  return url.searchParams.get('token');
}

/**
 * Browsers always send Origin; other clients (the CLI, SDKs) usually do not. A browser page may connect
 * only from an allowed origin: the configured list, which by default is the server's own bound address(es).
 * The request's Host header is never trusted for this: under DNS rebinding an attacker's page sends
 * `Host: evil.example:7070` and `Origin: http://evil.example:7070`, which match each other.
 */
export function originAllowed(req: IncomingMessage, allow: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  if (allow.includes('*')) return true;
  let normal: string;
  try {
    normal = new URL(origin).origin;
  } catch {
    return false;
  }
  return allow.some((a) => a === origin || a === normal);
}

export function gate(req: IncomingMessage, url: URL, tokens: TokenVerifier, allow: readonly string[]): GateResult {
  if (!originAllowed(req, allow)) return { ok: false, status: 403, message: `origin ${req.headers.origin} is not allowed: add it with --allowed-origin` };
  const token = tokenOf(req, url);
  if (token === null) return { ok: false, status: 401, message: 'missing token: send Authorization: Bearer <token> or ?token=' };
  let found: Principal | null;
  try {
    found = tokens.verify(token);
  } catch (err) {
    return { ok: false, status: 500, message: `token check failed: ${(err as Error).message}` };
  }
  if (!found) return { ok: false, status: 401, message: 'invalid or expired token: run `wsup token` on the server host' };
  return { ok: true, principal: found, token };
}

export function refuse(socket: Duplex, status: number, message: string): void {
  const reason = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 503: 'Service Unavailable' }[status] ?? 'Error';
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n${status === 401 ? 'WWW-Authenticate: Bearer\r\n' : ''}\r\n${body}`,
  );
}
