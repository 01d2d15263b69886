/**
 * The upgrade gate: path, lifecycle, Origin allow-list and bearer token are all checked before the
 * WebSocket handshake, so a refused client costs one HTTP response and never a socket.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Role } from '../protocol/index.ts';
import type { TokenVerifier } from './auth.ts';

export type GateResult = { ok: true; role: Role } | { ok: false; status: number; message: string };

export function tokenOf(req: IncomingMessage, url: URL): string | null {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    return m ? m[1]! : null;
  }
  return url.searchParams.get('token');
}

/**
 * Browsers always send Origin; other clients (the CLI, SDKs) usually do not. A browser page may connect
 * only from an allowed origin, or from the server's own origin (the page `GET /` serves).
 */
export function originAllowed(req: IncomingMessage, allow: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  if (allow.includes('*') || allow.includes(origin)) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

export function gate(req: IncomingMessage, url: URL, tokens: TokenVerifier, allow: readonly string[]): GateResult {
  if (!originAllowed(req, allow)) return { ok: false, status: 403, message: `origin ${req.headers.origin} is not allowed: add it to originAllowList` };
  const token = tokenOf(req, url);
  if (token === null) return { ok: false, status: 401, message: 'missing token: send Authorization: Bearer <token> or ?token=' };
  let found: { role: Role } | null;
  try {
    found = tokens.verify(token);
  } catch (err) {
    return { ok: false, status: 500, message: `token check failed: ${(err as Error).message}` };
  }
  if (!found) return { ok: false, status: 401, message: 'invalid or expired token: run `wsup token` on the server host' };
  return { ok: true, role: found.role };
}

export function refuse(socket: Duplex, status: number, message: string): void {
  const reason = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' }[status] ?? 'Error';
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n${status === 401 ? 'WWW-Authenticate: Bearer\r\n' : ''}\r\n${body}`,
  );
}
