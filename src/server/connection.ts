/**
 * One /control connection: every frame is parsed and validated here before any handler sees it, and every
 * failure becomes a JSON-RPC error reply — the socket survives all of them. Only the transport limits
 * (frame size → 1009, dead peer, a subscriber that never drains → 1008) close it.
 *
 * Outgoing events are queued per connection and flushed once per macrotask as one JSON-RPC batch of
 * notifications, so fan-out costs one `send` per subscriber per tick rather than one per event. One
 * `Outbound` per server flushes every connection with queued events in a single `setImmediate`.
 */
import type { RawData, WebSocket } from 'ws';
import { WsupError } from '../errors.ts';
import {
  ERROR_CODES,
  exceedsDepth,
  isMethodName,
  paramsSchemas,
  readRequestFrame,
  requestFrameSchema,
  roleAllows,
  rpcError,
  rpcIdSchema,
  rpcResult,
  unstorableStringAt,
  wireCode,
  METHOD_ROLE,
  type ResponseFrame,
  type Role,
  type RpcId,
  type WorkspaceEvent,
} from '../protocol/index.ts';
import type { Handlers } from './handlers.ts';
import type { EventSink } from './hub.ts';
import { TokenBucket, type Limits, type ServerClock } from './limits.ts';
import type { Logger } from './logger.ts';

/** Connections with queued events, flushed together once per macrotask (one callback, not one per socket). */
export class Outbound {
  private dirty: Connection[] = [];
  private scheduled = false;

  mark(conn: Connection): void {
    this.dirty.push(conn);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const conns = this.dirty;
      this.dirty = [];
      for (const c of conns) c.flush();
    });
  }
}

export interface ConnectionDeps {
  handlers: Handlers;
  outbound: Outbound;
  limits: Limits;
  clock: ServerClock;
  logger: Logger;
  onError(code: string): void;
  /** False once the server drains: new calls are refused, calls in flight finish. */
  accepting(): boolean;
}

export class Connection implements EventSink {
  readonly id: string;
  private readonly bucket: TokenBucket;
  private outbox: string[] = [];
  private flushScheduled = false;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  /** subscription → events dropped while lagging. */
  private readonly lagging = new Map<string, number>();
  private lagSince: number | null = null;
  private drainTimer: unknown = null;
  readonly subscriptions = new Set<string>();

  constructor(
    readonly ws: WebSocket,
    readonly role: Role,
    seq: number,
    private readonly deps: ConnectionDeps,
    /** Who opened the socket (a token's label, or `role:tokenId`): the requester of its calls. */
    readonly principal: string = `c${seq}`,
  ) {
    this.id = `c${seq}`;
    this.bucket = new TokenBucket(deps.limits.ratePerSec, deps.limits.burst, () => deps.clock.now());
    ws.on('message', (data, isBinary) => void this.onMessage(data, isBinary));
  }

  /** Resolves when no call is in flight (graceful shutdown waits on this). */
  idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }

  private async onMessage(data: RawData, isBinary: boolean): Promise<void> {
    if (isBinary) return this.sendFrame(rpcError(null, ERROR_CODES.INVALID_REQUEST, 'binary frames are not JSON-RPC: send text'));
    let parsed: unknown;
    try {
      parsed = JSON.parse(rawText(data));
    } catch {
      return this.sendFrame(this.fail(null, ERROR_CODES.PARSE_ERROR, 'parse error: the frame is not valid JSON', 'PARSE_ERROR'));
    }
    if (exceedsDepth(parsed)) return this.sendFrame(this.fail(null, ERROR_CODES.INVALID_REQUEST, 'invalid request: nested too deeply', 'INVALID_REQUEST'));
    if (!Array.isArray(parsed)) {
      const reply = await this.handle(parsed);
      if (reply) this.sendFrame(reply);
      return;
    }
    if (parsed.length === 0) return this.sendFrame(this.fail(null, ERROR_CODES.INVALID_REQUEST, 'invalid request: empty batch', 'INVALID_REQUEST'));
    if (parsed.length > this.deps.limits.maxBatch) {
      return this.sendFrame(this.fail(null, ERROR_CODES.INVALID_REQUEST, `invalid request: batch of ${parsed.length} exceeds the cap of ${this.deps.limits.maxBatch}`, 'INVALID_REQUEST'));
    }
    const replies = (await Promise.all(parsed.map((p) => this.handle(p)))).filter((r): r is ResponseFrame => r !== null);
    if (replies.length > 0) this.send(JSON.stringify(replies));
  }

  /** One request or notification → its response (null for notifications). Never throws. */
  private async handle(raw: unknown): Promise<ResponseFrame | null> {
    const fast = readRequestFrame(raw);
    const frame = fast ? { success: true as const, data: fast } : requestFrameSchema.safeParse(raw);
    if (!frame.success) {
      const id = salvageId(raw);
      const issue = frame.error.issues[0];
      const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
      return this.fail(id, ERROR_CODES.INVALID_REQUEST, `invalid request${where}: ${issue?.message ?? 'not a JSON-RPC 2.0 request'}`, 'INVALID_REQUEST');
    }
    const { method, params } = frame.data;
    const notification = !('id' in frame.data);
    const id: RpcId = frame.data.id ?? null;
    const reply = (r: ResponseFrame): ResponseFrame | null => (notification ? null : r);

    if (!this.bucket.take()) {
      return reply(this.fail(id, ERROR_CODES.WSUP_RATE_LIMITED, `rate limit exceeded (${this.deps.limits.ratePerSec}/s): slow down`, 'WSUP_RATE_LIMITED', { retryAfterMs: this.bucket.retryAfterMs() }));
    }
    if (!isMethodName(method)) return reply(this.fail(id, ERROR_CODES.METHOD_NOT_FOUND, `method not found: ${method.slice(0, 64)}`, 'METHOD_NOT_FOUND'));
    if (!roleAllows(this.role, method)) {
      return reply(this.fail(id, ERROR_CODES.WSUP_FORBIDDEN, `forbidden: role ${this.role} may not call ${method} (needs ${METHOD_ROLE[method]})`, 'WSUP_FORBIDDEN', { wsupCode: 'WSUP_FORBIDDEN' }));
    }
    if (Array.isArray(params)) return reply(this.fail(id, ERROR_CODES.INVALID_PARAMS, `invalid params for ${method}: pass an object, not an array`, 'INVALID_PARAMS', { path: [] }));
    const unstorable = unstorableStringAt(params);
    if (unstorable) {
      const path = unstorable.map((p) => (typeof p === 'string' ? JSON.stringify(p).slice(1, -1) : p));
      return reply(this.fail(id, ERROR_CODES.INVALID_PARAMS, `invalid params for ${method} at ${path.join('.') || '(root)'}: strings may not contain NUL or unpaired UTF-16 surrogates`, 'INVALID_PARAMS', { path }));
    }
    const checked = paramsSchemas[method].safeParse(params ?? {});
    if (!checked.success) {
      const issue = checked.error.issues[0];
      const path = (issue?.path ?? []).map((p) => (typeof p === 'symbol' ? String(p) : p));
      return reply(this.fail(id, ERROR_CODES.INVALID_PARAMS, `invalid params for ${method} at ${path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`, 'INVALID_PARAMS', { path }));
    }
    if (!this.deps.accepting()) {
      return reply(this.fail(id, ERROR_CODES.WSUP_SHUTTING_DOWN, 'server is shutting down and accepts no new calls: reconnect later', 'WSUP_SHUTTING_DOWN', { wsupCode: 'WSUP_SHUTTING_DOWN' }));
    }
    this.inFlight++;
    try {
      const result = await this.deps.handlers.call(method, checked.data, this);
      return reply(rpcResult(id, result));
    } catch (err) {
      return reply(this.domainError(id, err, (checked.data as { id?: string }).id));
    } finally {
      if (--this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** The one place domain errors become wire errors: `WsupError.code` → ERROR_CODES. */
  private domainError(id: RpcId, err: unknown, workspaceId: string | undefined): ResponseFrame {
    if (err instanceof WsupError) {
      const ws = err.workspaceId ?? workspaceId;
      const message = ws !== undefined && !err.message.includes(ws) ? `workspace ${ws}: ${err.message}` : err.message;
      return this.fail(id, wireCode(err.code), message, err.code, { wsupCode: err.code, ...(ws !== undefined ? { workspaceId: ws } : {}) });
    }
    this.deps.logger.error({ err, conn: this.id, workspaceId }, 'handler failed unexpectedly');
    const what = workspaceId !== undefined ? ` on workspace ${workspaceId}` : '';
    return this.fail(id, ERROR_CODES.INTERNAL_ERROR, `internal error${what}: see the server log`, 'INTERNAL_ERROR');
  }

  private fail(id: RpcId, code: number, message: string, label: string, data?: Parameters<typeof rpcError>[3]): ResponseFrame {
    this.deps.onError(label);
    return rpcError(id, code, message, data);
  }

  private sendFrame(frame: ResponseFrame): void {
    this.send(JSON.stringify(frame));
  }

  private send(text: string): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(text);
  }

  // ---- event delivery (EventSink) -------------------------------------------------------------------

  deliver(sub: string, json: string, _ev: WorkspaceEvent): void {
    const dropped = this.lagging.get(sub);
    if (dropped !== undefined) {
      this.lagging.set(sub, dropped + 1);
      return;
    }
    if (this.ws.bufferedAmount > this.deps.limits.maxBufferedBytes) {
      // Never queue without bound: drop from here on, tell the subscriber once it drains.
      this.lagging.set(sub, 1);
      this.startDrainWatch();
      return;
    }
    this.outbox.push(`{"jsonrpc":"2.0","method":"event","params":{"subscription":"${sub}","event":${json}}}`);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.deps.outbound.mark(this);
    }
  }

  /** Send a notification now (used for `lagged`). */
  notify(method: string, params: unknown): void {
    this.send(JSON.stringify({ jsonrpc: '2.0', method, params }));
  }

  /** Send what `deliver` queued (called by `Outbound`). */
  flush(): void {
    this.flushScheduled = false;
    const batch = this.outbox;
    this.outbox = [];
    if (batch.length === 1) this.send(batch[0]!);
    else if (batch.length > 1) this.send(`[${batch.join(',')}]`);
  }

  private startDrainWatch(): void {
    if (this.drainTimer !== null) return;
    this.lagSince = this.deps.clock.now();
    this.drainTimer = this.deps.clock.setInterval(() => this.checkDrain(), this.deps.limits.drainCheckMs);
  }

  private checkDrain(): void {
    if (this.ws.bufferedAmount <= this.deps.limits.maxBufferedBytes / 4) {
      this.stopDrainWatch();
      const lagged = [...this.lagging];
      this.lagging.clear();
      // A resync that cannot read the state (a cluster's store is unreachable) sends nothing: the
      // subscriber keeps its events and is told again at the next overflow.
      for (const [sub, dropped] of lagged) this.deps.handlers.resync(this, sub, dropped).catch(() => undefined);
      return;
    }
    if (this.deps.clock.now() - (this.lagSince ?? 0) > this.deps.limits.lagTimeoutMs) {
      this.stopDrainWatch();
      this.deps.logger.warn({ conn: this.id }, 'subscriber did not drain in time: closing');
      this.ws.close(1008, 'subscriber too slow: events could not be delivered');
      // A peer this far behind will not read the close frame either: cut it off after a grace period.
      setTimeout(() => this.ws.terminate(), 1000).unref();
    }
  }

  private stopDrainWatch(): void {
    if (this.drainTimer !== null) this.deps.clock.clearInterval(this.drainTimer);
    this.drainTimer = null;
    this.lagSince = null;
  }

  /** Release timers; the server unsubscribes `subscriptions` from the hub. */
  dispose(): void {
    this.stopDrainWatch();
    this.outbox = [];
    for (const w of this.idleWaiters.splice(0)) w();
  }
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8');
}

/** JSON-RPC says: reply with the request's id if it can be read, else null. */
function salvageId(raw: unknown): RpcId {
  if (raw === null || typeof raw !== 'object' || !('id' in raw)) return null;
  const id = rpcIdSchema.safeParse(raw.id);
  return id.success ? id.data : null;
}
