/**
 * The minimal WebSocket surface the client needs, satisfied by the `ws` package and by browsers' native
 * WebSocket alike. Node 20 has no global WebSocket, so Node callers pass `ws` (the CLI does).
 */
/** Method-derived function types are checked bivariantly, so `ws`'s richer event types still fit. */
type Handler<E> = { bivarianceHack(ev: E): void }['bivarianceHack'];

export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  /**
   * Node's `ws` also has an EventEmitter `message` event with the raw payload. The client prefers it: the
   * browser-style `onmessage` allocates an event object and copies the text per message, which shows at
   * thousands of events a second.
   */
  on?: unknown;
}

/** `new (url, protocols?, options?)`: `ws` takes options (headers); browsers ignore the third argument. */
export type SocketConstructor = new (url: string, protocols?: string | string[], options?: { headers?: Record<string, string> }) => SocketLike;

export const OPEN = 1;

const utf8 = new TextDecoder();

/** Text of a message event from either implementation. */
export function messageText(data: unknown): string | null {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return utf8.decode(data);
  if (Array.isArray(data)) return data.map((d) => messageText(d) ?? '').join('');
  return null;
}
