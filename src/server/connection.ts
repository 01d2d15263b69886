/**
 * One /control connection: every frame is parsed and validated here before any handler sees it, and every
 * failure becomes a JSON-RPC error reply — the socket survives all of them. Only the transport limits
 * (frame size → 1009, dead peer, a subscriber that never drains → 1008) close it.
 *
 * Outgoing events are queued per connection and flushed once per macrotask. Each `event` notification is
 * its own WebSocket message (one JSON-RPC object per frame, as generic JSON-RPC clients expect), unless its
 * subscription asked for `batch: true`: those go out as JSON-RPC batches (arrays), split so that no frame
 * exceeds `maxFrameBytes`. One `Outbound` per server flushes every connection with queued events in a
 * single `setImmediate`.
 *
 * What one connection can make the server hold is bounded whatever it sends: at most `maxSubscriptions`
 * subscriptions watching `maxSubscribedIds` ids in all, at most `maxBufferedBytes` of events queued and
 * unsent (past that its subscribers lag and are resynced), and no frame over `maxFrameBytes`.
 */
import type { RawData, WebSocket } from 'ws';
import { SubscriptionLimitError, WsupError } from '../errors.ts';
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
  unstorableStringAt,
  wireCode,
  METHOD_ROLE,
  type Notifications,
  type ResponseFrame,
  type Role,
  type RpcId,
  type WorkspaceEvent,
} from '../protocol/index.ts';
import { fitReply, splitBatch } from './fit.ts';
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
  /** Event notifications queued this tick, their UTF-8 sizes, and whether each goes out in a batch. */
  private outbox: string[] = [];
  private outboxBytes: number[] = [];
  private outboxBatched: boolean[] = [];
  private queuedBytes = 0;
  private flushScheduled = false;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  /** Messages being handled, and those received while no more could be (see `receive`). */
  private busy = 0;
  private held: Array<[RawData, boolean]> = [];
  /** subscription → events dropped while lagging. */
  private readonly lagging = new Map<string, number>();
  private lagSince: number | null = null;
  private drainTimer: unknown = null;
  readonly subscriptions = new Set<string>();
  /** Subscriptions that asked for batches, and the ids each watches (counted against `maxSubscribedIds`). */
  private readonly batched = new Set<string>();
  private readonly idCounts = new Map<string, number>();
  private watchedIds = 0;

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
    ws.on('message', (data, isBinary) => this.receive(data, isBinary));
  }

  /** Resolves when no call is in flight (graceful shutdown waits on this). */
  idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }

  /**
   * Start handling a message, or hold it: while `maxInFlight` messages are being handled, or the replies
   * already sent sit unread past `maxBufferedBytes`, messages wait in `held` and the socket is not read (so
   * `held` is at most what one read brought). A peer that sends calls and never reads the replies thus
   * costs the server a bounded amount, and its own TCP window does the rest.
   */
  private receive(data: RawData, isBinary: boolean): void {
    // A socket being closed (its token revoked, the server draining) runs nothing more it sends.
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.held.length > 0 || this.busy >= this.deps.limits.maxInFlight || this.backedUp()) {
      this.held.push([data, isBinary]);
      if (!this.ws.isPaused) this.ws.pause();
      if (this.backedUp()) this.startDrainWatch();
      return;
    }
    this.start(data, isBinary);
  }

  private start(data: RawData, isBinary: boolean): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.busy++;
    void this.onMessage(data, isBinary).finally(() => {
      this.busy--;
      if (this.held.length > 0) this.pump();
    });
  }

  /** Handle held messages while there is room; read the socket again once none are left. */
  private pump(): void {
    while (this.held.length > 0 && this.busy < this.deps.limits.maxInFlight && !this.backedUp()) {
      const [data, isBinary] = this.held.shift()!;
      this.start(data, isBinary);
    }
    if (this.held.length > 0) {
      if (this.backedUp()) this.startDrainWatch();
    } else if (this.ws.isPaused) this.ws.resume();
  }

  private backedUp(): boolean {
    return this.ws.bufferedAmount > this.deps.limits.maxBufferedBytes;
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
    // Every call of the batch has run, so every reply is sent: as one array when it fits the frame
    // limit, else as several arrays in order, each under the limit (clients match replies by id).
    for (const frame of splitBatch(replies.map((r) => JSON.stringify(r)), this.deps.limits.maxFrameBytes)) this.reply(frame);
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
      return reply(fitReply(method, id, result, this.deps.limits.maxFrameBytes - 2));
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
      return this.fail(id, wireCode(err.code), message, err.code, { ...err.detail, wsupCode: err.code, ...(ws !== undefined ? { workspaceId: ws } : {}) });
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
    this.reply(JSON.stringify(frame)); // errors and fitted results: under maxFrameBytes
  }

  /** Send a reply; past `maxBufferedBytes` unread, no further message is handled until the peer drains (see `receive`). */
  private reply(text: string): void {
    this.send(text);
    if (this.backedUp()) this.startDrainWatch();
  }

  private send(text: string): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(text);
  }

  // ---- subscriptions ----------------------------------------------------------------------------------

  /** Throws SubscriptionLimitError when one more subscription watching `ids` ids would pass a cap. */
  admit(ids: number): void {
    const { maxSubscriptions, maxSubscribedIds } = this.deps.limits;
    if (this.subscriptions.size >= maxSubscriptions) {
      throw new SubscriptionLimitError('maxSubscriptions', maxSubscriptions, `subscription limit: this connection already holds ${this.subscriptions.size} subscriptions, the most allowed`);
    }
    if (this.watchedIds + ids > maxSubscribedIds) {
      throw new SubscriptionLimitError('maxSubscribedIds', maxSubscribedIds, `id limit: this connection watches ${this.watchedIds} ids and asked for ${ids} more, over the most allowed per connection`);
    }
  }

  /** Record a subscription the hub made (after `admit`). */
  subscribed(sub: string, ids: number, batch: boolean): void {
    this.subscriptions.add(sub);
    this.idCounts.set(sub, ids);
    this.watchedIds += ids;
    if (batch) this.batched.add(sub);
  }

  /** Forget a subscription; false when this connection did not hold it. */
  unsubscribed(sub: string): boolean {
    if (!this.subscriptions.delete(sub)) return false;
    this.watchedIds -= this.idCounts.get(sub) ?? 0;
    this.idCounts.delete(sub);
    this.batched.delete(sub);
    this.lagging.delete(sub);
    return true;
  }

  // ---- event delivery (EventSink) -------------------------------------------------------------------

  deliver(sub: string, json: string, _ev: WorkspaceEvent, bytes: number): void {
    const dropped = this.lagging.get(sub);
    if (dropped !== undefined) {
      this.lagging.set(sub, dropped + 1);
      return;
    }
    const text = `{"jsonrpc":"2.0","method":"event","params":{"subscription":"${sub}","event":${json}}}`;
    const size = bytes + (text.length - json.length); // the wrapper is ASCII
    const { maxBufferedBytes, maxFrameBytes } = this.deps.limits;
    if (size > maxFrameBytes || this.ws.bufferedAmount + this.queuedBytes + size > maxBufferedBytes) {
      // Never queue without bound, never send a frame over the limit: drop from here on, and tell the
      // subscriber (with the state to resync from) once the socket has drained.
      this.lagging.set(sub, 1);
      this.startDrainWatch();
      return;
    }
    this.outbox.push(text);
    this.outboxBytes.push(size);
    this.outboxBatched.push(this.batched.size > 0 && this.batched.has(sub));
    this.queuedBytes += size;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.deps.outbound.mark(this);
    }
  }

  /** Send a notification now (used for `lagged`, whose views are cut to fit one frame). */
  notify(method: string, params: unknown): void {
    let text = JSON.stringify({ jsonrpc: '2.0', method, params });
    if (method === 'lagged' && Buffer.byteLength(text) > this.deps.limits.maxFrameBytes) text = this.fitLagged(params as Notifications['lagged']);
    this.send(text);
  }

  /** A `lagged` notification with as many of its views as fit in one frame, marked `complete: false`. */
  private fitLagged(p: Notifications['lagged']): string {
    const head = `{"jsonrpc":"2.0","method":"lagged","params":{"subscription":${JSON.stringify(p.subscription)},"dropped":${p.dropped},"complete":false,"workspaces":[`;
    const tail = ']}}';
    let budget = this.deps.limits.maxFrameBytes - Buffer.byteLength(head) - tail.length;
    const views: string[] = [];
    for (const v of p.workspaces) {
      const json = JSON.stringify(v);
      budget -= Buffer.byteLength(json) + 1;
      if (budget < 0) break;
      views.push(json);
    }
    return `${head}${views.join(',')}${tail}`;
  }

  /** Send what `deliver` queued (called by `Outbound`): one frame per notification, batches split to fit. */
  flush(): void {
    this.flushScheduled = false;
    const texts = this.outbox;
    const sizes = this.outboxBytes;
    const batched = this.outboxBatched;
    this.outbox = [];
    this.outboxBytes = [];
    this.outboxBatched = [];
    this.queuedBytes = 0;
    const max = this.deps.limits.maxFrameBytes;
    let chunk: string[] = [];
    let chunkBytes = 2; // the brackets
    const sendChunk = () => {
      if (chunk.length === 1) this.send(chunk[0]!);
      else if (chunk.length > 1) this.send(`[${chunk.join(',')}]`);
      chunk = [];
      chunkBytes = 2;
    };
    for (let i = 0; i < texts.length; i++) {
      if (!batched[i]) {
        sendChunk(); // keeps the order notifications were queued in
        this.send(texts[i]!);
        continue;
      }
      const add = sizes[i]! + (chunk.length > 0 ? 1 : 0);
      if (chunk.length > 0 && chunkBytes + add > max) sendChunk();
      chunk.push(texts[i]!);
      chunkBytes += sizes[i]! + (chunk.length > 1 ? 1 : 0);
    }
    sendChunk();
  }

  private startDrainWatch(): void {
    if (this.drainTimer !== null) return;
    this.lagSince = this.deps.clock.now();
    this.drainTimer = this.deps.clock.setInterval(() => this.checkDrain(), this.deps.limits.drainCheckMs);
  }

  private checkDrain(): void {
    if (this.ws.bufferedAmount <= this.deps.limits.maxBufferedBytes / 4) {
      this.stopDrainWatch();
      this.pump();
      const lagged = [...this.lagging];
      this.lagging.clear();
      // A resync that cannot read the state (a cluster's store is unreachable) sends nothing: the
      // subscriber keeps its events and is told again at the next overflow.
      for (const [sub, dropped] of lagged) this.deps.handlers.resync(this, sub, dropped).catch(() => undefined);
      return;
    }
    if (this.deps.clock.now() - (this.lagSince ?? 0) > this.deps.limits.lagTimeoutMs) {
      this.stopDrainWatch();
      this.deps.logger.warn({ conn: this.id }, 'peer did not drain in time: closing');
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
    this.outboxBytes = [];
    this.outboxBatched = [];
    this.queuedBytes = 0;
    this.held = [];
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
