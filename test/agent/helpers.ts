/**
 * Helpers of the agent tests: a manual scheduler (the SDK's backoff sleeps wait until the test releases
 * them: no real sleeps), a loopback TCP proxy that can cut every connection at an exact moment, and an
 * agent runner that records what the SDK yielded and reported.
 */
import net from 'node:net';
import { vi } from 'vitest';
import WebSocket from 'ws';
import { waitForReinit, type AgentScheduler, type AgentStatus, type WaitEnd, type WaitForReinitOptions } from '../../src/agent/index.ts';
import type { ReinitNotice } from '../../src/protocol/index.ts';

/** Every `sleep` is recorded and resolves only on `release()` (or abort). */
export class ManualScheduler implements AgentScheduler {
  readonly requested: number[] = [];
  private pending: Array<() => void> = [];
  private waiters: Array<() => void> = [];
  /** Release sleeps as soon as they are asked for (the SDK reconnects at once). */
  auto = false;

  sleep(ms: number, signal: AbortSignal): Promise<void> {
    this.requested.push(ms);
    return new Promise<void>((resolve) => {
      if (this.auto || signal.aborted) return void setImmediate(resolve);
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.pending.push(done);
      signal.addEventListener('abort', done, { once: true });
      for (const w of this.waiters.splice(0)) w();
    });
  }

  get sleeping(): number {
    return this.pending.length;
  }

  release(): void {
    for (const r of this.pending.splice(0)) r();
  }

  /** Resolves once at least one sleep is pending. */
  async untilSleeping(): Promise<void> {
    while (this.pending.length === 0) await new Promise<void>((r) => this.waiters.push(r));
  }
}

/** A TCP proxy on loopback: `cut()` destroys every open connection (both halves) at once. */
export class CutProxy {
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private constructor(
    private readonly server: net.Server,
    public target: number,
    readonly port: number,
  ) {}

  static async start(target: number): Promise<CutProxy> {
    const ref: { proxy?: CutProxy } = {};
    const server = net.createServer((client) => {
      const proxy = ref.proxy!;
      const upstream = net.connect(proxy.target, '127.0.0.1');
      const pair: [net.Socket, net.Socket] = [client, upstream];
      proxy.pairs.add(pair);
      const drop = () => {
        proxy.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    ref.proxy = new CutProxy(server, target, (server.address() as net.AddressInfo).port);
    return ref.proxy;
  }

  get open(): number {
    return this.pairs.size;
  }

  cut(): void {
    for (const [a, b] of [...this.pairs]) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((r) => this.server.close(() => r()));
  }
}

export interface RunningAgent {
  readonly yielded: ReinitNotice[];
  readonly statuses: AgentStatus[];
  /** For each yielded notice, how many statuses had been reported when it was yielded. */
  readonly yieldedAfter: number[];
  readonly end: Promise<WaitEnd | Error>;
  count(type: AgentStatus['type']): number;
  /** Resolves when `pred` holds (polled every 5 ms, within `ms`); rejects saying why if it never does. */
  until(pred: () => boolean, what: string, ms?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Run `waitForReinit` in the background, recording everything. */
export function runAgent(opts: Omit<WaitForReinitOptions, 'WebSocket' | 'onStatus' | 'signal'>): RunningAgent {
  const ac = new AbortController();
  const yielded: ReinitNotice[] = [];
  const statuses: AgentStatus[] = [];
  const yieldedAfter: number[] = [];
  const gen = waitForReinit({ ...opts, WebSocket, signal: ac.signal, onStatus: (s) => statuses.push(s) });
  const end = (async (): Promise<WaitEnd | Error> => {
    try {
      for (;;) {
        const r = await gen.next();
        if (r.done) return r.value;
        yielded.push(r.value);
        yieldedAfter.push(statuses.length);
      }
    } catch (err) {
      return err as Error;
    }
  })();
  let ended = false;
  void end.then(() => (ended = true));
  return {
    yielded,
    statuses,
    yieldedAfter,
    end,
    count: (type) => statuses.filter((s) => s.type === type).length,
    async until(pred, what, ms = 10_000) {
      await vi.waitFor(
        () => {
          if (pred()) return;
          const last = statuses.map((s) => s.type).slice(-10).join(',');
          throw new Error(`${ended ? 'agent ended' : 'still'} waiting for: ${what} (statuses: ${last})`);
        },
        { timeout: ms, interval: 5 },
      );
    },
    async stop() {
      ac.abort();
      await end;
    },
  };
}
