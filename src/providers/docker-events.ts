/**
 * The docker provider's event subscription as a small state machine:
 *
 *   connecting ──stream open──▶ open ──stream ends / fails──▶ backoff ──timer──▶ connecting
 *   (any state) ──close()──▶ closed
 *
 * The backoff doubles from `initialMs` to `maxMs` and resets once a stream opens; its timer runs on the
 * injected timers, so tests drive it with a fake clock. Reconnects resume from the last event's time.
 */
export type EventWatchState = 'connecting' | 'open' | 'backoff' | 'closed';

export interface WatchTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTimers: WatchTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** One engine event, as much of it as the provider reads. */
export interface EngineEvent {
  Action?: string;
  time?: number;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

export interface EventWatchOptions {
  /** Open the event stream, from `since` (seconds) when given; rejects or ends when the engine goes away. */
  connect(since: number | undefined, signal: AbortSignal): Promise<AsyncIterable<Buffer | string>>;
  onEvent(event: EngineEvent): void;
  /** After a stream opened again following a lost one: events of the gap are gone, so look again. */
  onReconnected(): Promise<void>;
  timers?: WatchTimers;
  initialMs?: number;
  maxMs?: number;
}

export class DockerEventWatch {
  private current: EventWatchState = 'connecting';
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly timers: WatchTimers;
  private backoffMs: number;
  private since: number | undefined;
  private everOpen = false;
  private ac: AbortController | null = null;
  private timer: unknown = null;

  constructor(private readonly o: EventWatchOptions) {
    this.initialMs = o.initialMs ?? 100;
    this.maxMs = o.maxMs ?? 5_000;
    this.timers = o.timers ?? systemTimers;
    this.backoffMs = this.initialMs;
    void this.connect();
  }

  get state(): EventWatchState {
    return this.current;
  }

  /** The wait before the next reconnect attempt. */
  get nextBackoffMs(): number {
    return this.backoffMs;
  }

  close(): void {
    this.current = 'closed';
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.ac?.abort();
  }

  private async connect(): Promise<void> {
    if (this.current === 'closed') return;
    this.current = 'connecting';
    const ac = (this.ac = new AbortController());
    try {
      const stream = await this.o.connect(this.since, ac.signal);
      if (this.isClosed()) return;
      this.current = 'open';
      this.backoffMs = this.initialMs;
      if (this.everOpen) await this.o.onReconnected();
      this.everOpen = true;
      let buf = '';
      for await (const chunk of stream) {
        buf += chunk.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line !== '') this.deliver(line);
        }
      }
    } catch {
      // The engine went away or we unsubscribed; the state decides what happens next.
    }
    if (this.isClosed()) return;
    this.current = 'backoff';
    this.timer = this.timers.setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxMs);
  }

  private isClosed(): boolean {
    return this.current === 'closed';
  }

  private deliver(line: string): void {
    let e: EngineEvent;
    try {
      e = JSON.parse(line) as EngineEvent;
    } catch {
      return; // not an event: nothing to report
    }
    if (typeof e.time === 'number') this.since = e.time;
    this.o.onEvent(e);
  }
}
