/**
 * Where a client command connects and how it authenticates: flags, then environment, then the local data
 * dir (the embedded default writes its admin token there on first start).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { ClusterClient, type WsupClient } from '../client/index.ts';

export interface ClientFlags {
  url?: string;
  token?: string;
  json?: boolean;
  dataDir?: string;
  timeout?: string;
}

export const DEFAULT_URL = 'http://127.0.0.1:7070';
export const defaultDataDir = (): string => process.env.WSUP_DATA_DIR ?? '.wsup';

/** A usage problem: exit code 2, like commander's own. */
export class UsageError extends Error {}

export function resolveToken(flags: ClientFlags): string | undefined {
  if (flags.token) return flags.token;
  if (process.env.WSUP_TOKEN) return process.env.WSUP_TOKEN;
  try {
    return readFileSync(join(flags.dataDir ?? defaultDataDir(), 'admin.token'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** What a command calls: one server's client, or a cluster's that sends each command to its owner. */
export type CommandClient = Pick<WsupClient, 'call' | 'subscribe' | 'close'>;

export function connect(flags: ClientFlags): CommandClient {
  const url = flags.url ?? process.env.WSUP_URL ?? DEFAULT_URL;
  const token = resolveToken(flags);
  if (!token) throw new UsageError(`no token: pass --token, set WSUP_TOKEN, or run where ${join(flags.dataDir ?? defaultDataDir(), 'admin.token')} exists`);
  const timeout = flags.timeout === undefined ? 0 : Number(flags.timeout);
  if (!Number.isFinite(timeout) || timeout < 0) throw new UsageError(`--timeout must be a number of milliseconds, got ${flags.timeout}`);
  // One-shot commands fail fast instead of retrying; `watch` turns reconnects back on.
  const common = { token, WebSocket, reconnect: false, requestTimeoutMs: timeout } as const;
  // Any replica (or several: `--url a,b` or `--url a --url b`): each command goes to its workspace's owner,
  // and is sent again under its request id if the answer is lost; a single node answers everything itself.
  return new ClusterClient({ urls: url, ...common });
}
