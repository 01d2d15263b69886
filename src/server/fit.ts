/**
 * Replies that fit `maxFrameBytes`. A page of workspaces is cut short (its `nextCursor` names the last
 * item kept, so the client continues from there); a history keeps its newest events and says
 * `truncated: true`; any other reply too large to send becomes an error naming the limit.
 */
import { ERROR_CODES, rpcError, rpcResult, type ResponseFrame, type RpcId } from '../protocol/jsonrpc.ts';

const bytes = (v: unknown): number => Buffer.byteLength(JSON.stringify(v));

/** Largest n in [0, count] for which `fits(n)` holds, given that it holds for 0 whenever for any n. */
function most(count: number, fits: (n: number) => boolean): number {
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export function fitReply(method: string, id: RpcId, result: unknown, budget: number): ResponseFrame {
  const whole = rpcResult(id, result);
  if (bytes(whole) <= budget) return whole;
  const r = result as Record<string, unknown>;
  if (method === 'workspace.list' && Array.isArray(r.items)) {
    const items = r.items as Array<{ id: string }>;
    const page = (n: number) => rpcResult(id, { ...r, items: items.slice(0, n), nextCursor: n === items.length ? r.nextCursor : (items[n - 1]?.id ?? null) });
    const n = most(items.length, (k) => bytes(page(k)) <= budget);
    if (n > 0) return page(n);
  } else if (method === 'events.history' && Array.isArray(r.events)) {
    const events = r.events as unknown[];
    const newest = (n: number) => rpcResult(id, { ...r, events: events.slice(events.length - n), truncated: true });
    const n = most(events.length, (k) => bytes(newest(k)) <= budget);
    if (n > 0 || bytes(newest(0)) <= budget) return newest(n);
  }
  return rpcError(id, ERROR_CODES.WSUP_REPLY_TOO_LARGE, `reply to ${method.slice(0, 64)} exceeds the frame limit of ${budget} bytes (maxFrameBytes): ask for less`, { wsupCode: 'WSUP_REPLY_TOO_LARGE', limit: 'maxFrameBytes', max: budget });
}

/** Replies of one batch as arrays none of which exceeds `max` bytes, in order (each reply fits alone). */
export function splitBatch(texts: string[], max: number): string[] {
  const frames: string[] = [];
  let chunk: string[] = [];
  let size = 2;
  for (const t of texts) {
    const add = Buffer.byteLength(t) + (chunk.length > 0 ? 1 : 0);
    if (chunk.length > 0 && size + add > max) {
      frames.push(`[${chunk.join(',')}]`);
      chunk = [];
      size = 2;
    }
    size += Buffer.byteLength(t) + (chunk.length > 0 ? 1 : 0);
    chunk.push(t);
  }
  if (chunk.length > 0) frames.push(`[${chunk.join(',')}]`);
  return frames;
}
