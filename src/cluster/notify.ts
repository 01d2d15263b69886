/**
 * LISTEN on a dedicated PostgreSQL connection that comes back by itself. NOTIFY is fire-and-forget: a
 * notification sent while this connection was down is gone, so every (re)connect is reported as `resync`
 * and whoever relies on notifications re-reads the store then. Nothing here is the only path to data.
 *
 * @example
 * const l = new Listener({ url, channels: ['wsup_inbox'], onNotify: (ch, payload) => ..., onResync: () => ... });
 * await l.start();
 */
import pg from 'pg';

export interface ListenerOptions {
  url: string;
  channels: string[];
  onNotify: (channel: string, payload: string) => void;
  /** Connected (first time or again): notifications may have been missed; re-read what matters. */
  onResync: () => void;
  /** Retry delay after the connection failed. Default 250 ms. */
  retryMs?: number;
  onError?: (err: unknown) => void;
}

export class Listener {
  private client: pg.Client | null = null;
  private closed = false;
  private retry: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly opts: ListenerOptions) {}

  /** Resolves once listening (or keeps retrying in the background if the first connect fails). */
  async start(): Promise<void> {
    await this.connect();
  }

  /** Test seam and operator tool: drop the connection as a network blink would. */
  blink(): void {
    this.client?.end().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    await this.client?.end().catch(() => undefined);
    this.client = null;
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.opts.url });
    this.client = client;
    let failed = false;
    const again = (err?: unknown) => {
      if (failed) return;
      failed = true;
      if (err) this.opts.onError?.(err);
      if (this.client === client) this.client = null;
      client.end().catch(() => undefined);
      if (!this.closed) this.retry = setTimeout(() => void this.connect(), this.opts.retryMs ?? 250);
    };
    client.on('error', again);
    client.on('end', () => again());
    client.on('notification', (n) => this.opts.onNotify(n.channel, n.payload ?? ''));
    try {
      await client.connect();
      for (const ch of this.opts.channels) await client.query(`LISTEN ${pg.escapeIdentifier(ch)}`);
    } catch (err) {
      again(err);
      return;
    }
    this.opts.onResync();
  }
}
