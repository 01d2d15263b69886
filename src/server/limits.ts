/**
 * Per-connection limits: a token-bucket rate limiter and the heartbeat. Both read time through an
 * injectable clock, so tests drive them without sleeping.
 */
import type { WebSocket } from 'ws';

export interface ServerClock {
  now(): number;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const systemServerClock: ServerClock = {
  now: () => performance.now(),
  setInterval: (fn, ms) => {
    const t = setInterval(fn, ms);
    t.unref();
    return t;
  },
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export interface Limits {
  /** Largest accepted frame in bytes; bigger frames close the socket with 1009. Default 1 MiB. */
  maxPayload: number;
  /** Most requests in one batch. Default 50. */
  maxBatch: number;
  /** Token bucket: sustained requests per second and burst size. Defaults 500/s, burst 1000. */
  ratePerSec: number;
  burst: number;
  /** Ping every `heartbeatMs`; a peer that has not ponged since the last ping is terminated. Default 30 s. */
  heartbeatMs: number;
  /** Stop sending events to a subscriber whose socket has this many bytes unsent. Default 1 MiB. */
  maxBufferedBytes: number;
  /** A lagging subscriber that has not drained within this long is closed (1008). Default 10 s. */
  lagTimeoutMs: number;
  /** How often a lagging subscriber's buffer is checked. Default 25 ms. */
  drainCheckMs: number;
  /** Graceful shutdown waits this long for in-flight calls before closing sockets. Default 10 s. */
  drainTimeoutMs: number;
  /**
   * Largest frame the server sends, in bytes. A batch is split to fit; one event notification bigger than
   * this is never sent: its subscriber is told it lagged instead. Default 1 MiB (the send-queue bound).
   */
  maxFrameBytes: number;
  /**
   * Messages (a request or a batch) of one connection handled at once; later ones wait, unread. With
   * `maxBufferedBytes` this bounds the replies a peer that never reads them can make the server hold. Default 32.
   */
  maxInFlight: number;
  /** Subscriptions one connection may hold at once. Default 64. */
  maxSubscriptions: number;
  /** Workspace ids one connection may watch, summed over its subscriptions (ids that do not exist count too). Default 10,000. */
  maxSubscribedIds: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxPayload: 1024 * 1024,
  maxBatch: 50,
  ratePerSec: 500,
  burst: 1000,
  heartbeatMs: 30_000,
  maxBufferedBytes: 1024 * 1024,
  lagTimeoutMs: 10_000,
  drainCheckMs: 25,
  drainTimeoutMs: 10_000,
  maxFrameBytes: 1024 * 1024,
  maxInFlight: 32,
  // A viewer needs a handful of subscriptions (the visualizer holds one); 64 leaves room for an app that
  // keeps one per view. 10,000 ids is one full `events.subscribe` (its schema's max) and the size of a
  // resync: at most ~10,000 hub entries (about 1-2 MB) per connection, whatever it sends.
  maxSubscriptions: 64,
  maxSubscribedIds: 10_000,
};

/** Classic token bucket: `take()` is false when the caller is over its rate. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    this.tokens = burst;
    this.last = now();
  }
  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSec);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
  /** Milliseconds until one token is available (for the error's retryAfterMs). */
  retryAfterMs(): number {
    return Math.ceil(((1 - this.tokens) / this.ratePerSec) * 1000);
  }
}

/**
 * Ping every socket each interval; one that did not pong since the previous ping is dead (half-open TCP,
 * suspended laptop) and is terminated, which frees its subscriptions.
 */
export function startHeartbeat(sockets: () => Iterable<WebSocket>, intervalMs: number, clock: ServerClock): () => void {
  const alive = new WeakMap<WebSocket, boolean>();
  const seen = new WeakSet<WebSocket>();
  const handle = clock.setInterval(() => {
    for (const ws of sockets()) {
      if (ws.isPaused) {
        // The server stopped reading it (calls in flight at the cap, or replies unread): its pong cannot be
        // read either. Judged again once it is read; one that never drains is closed by the drain watch.
        alive.set(ws, true);
        continue;
      }
      if (!seen.has(ws)) {
        seen.add(ws);
        ws.on('pong', () => alive.set(ws, true));
      } else if (alive.get(ws) !== true) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, intervalMs);
  return () => clock.clearInterval(handle);
}
