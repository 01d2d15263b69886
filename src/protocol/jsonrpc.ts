/**
 * JSON-RPC 2.0 framing shared by the server and the client: frame schemas, the one error-code table,
 * and limits both sides agree on. Pure: imports zod and types only, so browsers can load it.
 *
 * @example
 * const frame = requestFrameSchema.safeParse(JSON.parse(text));
 * if (!frame.success) reply(rpcError(null, ERROR_CODES.INVALID_REQUEST, 'not a request'));
 */
import { z } from 'zod';
import type { WsupErrorCode } from '../errors.ts';

/** Ids are echoed back verbatim, so they are bounded: a 1 MB string id would be reflected in full. */
export const MAX_ID_LENGTH = 128;
export const DEFAULT_MAX_BATCH = 50;
/** Frames nested deeper than this are refused before validation (deep JSON is a stack-overflow lever). */
export const MAX_DEPTH = 32;

export const rpcIdSchema = z.union([
  z.string().max(MAX_ID_LENGTH),
  z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
  z.null(),
]);
export type RpcId = z.infer<typeof rpcIdSchema>;

/** A request (with `id`) or a notification (without). Params are checked per method afterwards. */
export const requestFrameSchema = z.strictObject({
  jsonrpc: z.literal('2.0'),
  method: z.string().min(1).max(64),
  params: z.union([z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional(),
  id: rpcIdSchema.optional(),
});
export type RequestFrame = z.infer<typeof requestFrameSchema>;

const isId = (x: unknown): x is RpcId =>
  x === null || (typeof x === 'string' && x.length <= MAX_ID_LENGTH) || (typeof x === 'number' && Number.isSafeInteger(x));
/** A non-null, non-array object. */
export const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

const REQUEST_KEYS = new Set(['jsonrpc', 'method', 'params', 'id']);

/**
 * `requestFrameSchema`'s check, hand-written for the server's hot path: the same frames pass (a property test
 * holds the two equal), in a fraction of the time. Null means "not obviously valid": the server then runs the
 * schema, which says exactly what is wrong.
 */
export function readRequestFrame(x: unknown): RequestFrame | null {
  if (!isRecord(x) || x.jsonrpc !== '2.0') return null;
  for (const k in x) if (!REQUEST_KEYS.has(k)) return null;
  const { method, params } = x;
  if (typeof method !== 'string' || method.length < 1 || method.length > 64) return null;
  if (params !== undefined) {
    if (typeof params !== 'object' || params === null) return null;
    if (Object.hasOwn(params, '__proto__')) return null; // the schema copies params, and "__proto__" does not copy
  }
  if ('id' in x && !isId(x.id)) return null;
  return x as RequestFrame;
}

export interface RpcErrorObject {
  code: number;
  message: string;
  data?: RpcErrorData;
}

/** Machine-readable detail: the wsup code, the workspace, the failing params path for -32602. */
export interface RpcErrorData {
  wsupCode?: string;
  workspaceId?: string;
  path?: Array<string | number>;
  retryAfterMs?: number;
  /** For WSUP_SUBSCRIPTION_LIMIT: which per-connection cap was hit and its value. */
  limit?: string;
  max?: number;
  /** WSUP_POLICY: the refused field (`params.env.PATH`) and the rule it broke. */
  field?: string;
  rule?: string;
}

export type ResponseFrame =
  | { jsonrpc: '2.0'; id: RpcId; result: unknown }
  | { jsonrpc: '2.0'; id: RpcId; error: RpcErrorObject };

export interface NotificationFrame {
  jsonrpc: '2.0';
  method: string;
  params?: unknown;
}

/** Anything the server sends, classified by `readIncomingFrame`. */
export type IncomingFrame =
  | { kind: 'result'; id: RpcId; result: unknown }
  | { kind: 'error'; id: RpcId; error: RpcErrorObject }
  | { kind: 'notification'; method: string; params: unknown };

/**
 * What the client checks of every server frame before use: its JSON-RPC shape, nothing more (results and
 * event payloads are typed by the method table). Hand-written rather than a zod union on purpose: this runs
 * for every event delivered, and a union that tries the response branches first builds (and throws away)
 * issue objects for every notification — it was most of a 1,000-subscriber client's CPU. Null: not a frame.
 */
export function readIncomingFrame(x: unknown): IncomingFrame | null {
  if (!isRecord(x) || x.jsonrpc !== '2.0') return null;
  if (typeof x.method === 'string') return 'id' in x ? null : { kind: 'notification', method: x.method, params: x.params };
  if (!isId(x.id)) return null;
  if ('result' in x) return 'error' in x ? null : { kind: 'result', id: x.id, result: x.result };
  const e = x.error;
  if (!isRecord(e) || typeof e.code !== 'number' || typeof e.message !== 'string') return null;
  if (e.data !== undefined && !isRecord(e.data)) return null;
  return { kind: 'error', id: x.id, error: e as unknown as RpcErrorObject };
}

/**
 * The one table of wire error codes. JSON-RPC's own codes first, then wsup's domain codes in the
 * implementation-defined range; `WSUP_*` keys are `WsupError.code` values, so the server maps by lookup.
 */
export const ERROR_CODES = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  WSUP_INVALID_ID: -32602,
  WSUP_INVALID_ARGUMENT: -32602,
  WSUP_FORBIDDEN: -32003,
  WSUP_NOT_FOUND: -32004,
  WSUP_DESTROYED: -32010,
  WSUP_SUPERSEDED: -32011,
  WSUP_CYCLE_FAILED: -32012,
  WSUP_PROVIDER_TIMEOUT: -32013,
  WSUP_SHUTTING_DOWN: -32015,
  WSUP_STORE: -32016,
  WSUP_CORRUPT_STATE: -32017,
  WSUP_CLAIM_CONFLICT: -32018,
  WSUP_NOT_PREBUILD: -32019,
  WSUP_FENCED: -32020,
  WSUP_OUTCOME_UNKNOWN: -32023,
  WSUP_POLICY: -32021,
  WSUP_QUOTA: -32022,
  WSUP_RATE_LIMITED: -32029,
  WSUP_SUBSCRIPTION_LIMIT: -32030,
  WSUP_REPLY_TOO_LARGE: -32031,
} as const satisfies Record<WsupErrorCode, number> & Record<string, number>;
export type ErrorName = keyof typeof ERROR_CODES;

/** Wire code for a `WsupError.code` (or any string); unknown codes are internal errors. */
export function wireCode(code: string): number {
  return (ERROR_CODES as Record<string, number>)[code] ?? ERROR_CODES.INTERNAL_ERROR;
}

export function rpcError(id: RpcId, code: number, message: string, data?: RpcErrorData): ResponseFrame {
  return { jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } };
}

export function rpcResult(id: RpcId, result: unknown): ResponseFrame {
  return { jsonrpc: '2.0', id, result };
}

/** Depth of a parsed JSON value, stopping early once past `limit` (so hostile input costs O(limit)). */
export function exceedsDepth(value: unknown, limit = MAX_DEPTH): boolean {
  const walk = (v: unknown, d: number): boolean => {
    if (d > limit) return true;
    if (v === null || typeof v !== 'object') return false;
    for (const child of Array.isArray(v) ? v : Object.values(v)) if (walk(child, d + 1)) return true;
    return false;
  };
  return walk(value, 0);
}

/** WebSocket close code for a socket whose token was rotated, removed or expired after it connected: final. */
export const TOKEN_REVOKED_CLOSE = 4401;

/** A high surrogate not followed by a low one, or a low surrogate not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when a string holds a NUL or a lone surrogate: neither can be stored. */
export const unstorableString = (s: string): boolean => s.includes('\u0000') || LONE_SURROGATE.test(s);

/**
 * Where a params value holds a string no store can keep — a NUL, or a lone UTF-16 surrogate (PostgreSQL
 * refuses both in text and jsonb) — as a path of keys and indexes (an object key's own path ends in the key),
 * or null when every string, nested or used as an object key, is clean. Checked once, before any handler.
 */
export function unstorableStringAt(value: unknown): Array<string | number> | null {
  const bad = unstorableString;
  const walk = (v: unknown, path: Array<string | number>): Array<string | number> | null => {
    if (typeof v === 'string') return bad(v) ? path : null;
    if (v === null || typeof v !== 'object') return null;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const at = walk(v[i], [...path, i]);
        if (at) return at;
      }
      return null;
    }
    for (const [k, child] of Object.entries(v)) {
      if (bad(k)) return [...path, k];
      const at = walk(child, [...path, k]);
      if (at) return at;
    }
    return null;
  };
  return walk(value, []);
}
