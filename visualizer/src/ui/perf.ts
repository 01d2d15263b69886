/**
 * Responsiveness probe: update latency (server event time → the page updated for it) and frame intervals,
 * exposed as `window.wsupPerf` so the end-to-end run can read and report them. Bounded memory.
 *
 * @example
 * window.wsupPerf.reset(); // … load …
 * window.wsupPerf.summary(); // { batches, events, latency: { p50, p95, max }, inPage: {…}, frames: {…} }
 */

export interface Percentiles {
  n: number;
  p50: number;
  p95: number;
  max: number;
}

export interface PerfSummary {
  batches: number;
  events: number;
  /** ms from an event's server time to the end of the render that showed it (oldest event per batch). */
  latency: Percentiles;
  /** The page's share: ms from the batch's first event arriving in the page to the end of its render. */
  inPage: Percentiles;
  /** ms between animation frames while the probe ran. */
  frames: Percentiles;
}

const CAP = 20_000;

export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { n: 0, p50: 0, p95: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { n: s.length, p50: at(0.5), p95: at(0.95), max: s[s.length - 1]! };
}

export class PerfProbe {
  private latencies: number[] = [];
  private inPage: number[] = [];
  private frames: number[] = [];
  private batches = 0;
  private events = 0;
  private lastFrame: number | null = null;

  constructor(private readonly now: () => number = () => Date.now()) {
    const loop = (t: number) => {
      if (this.lastFrame !== null && this.frames.length < CAP) this.frames.push(t - this.lastFrame);
      this.lastFrame = t;
      requestAnimationFrame(loop);
    };
    if (typeof requestAnimationFrame === 'function') requestAnimationFrame(loop);
  }

  /** A batch of `events` was rendered; `oldestAt` is its oldest event's server time, `queuedAt` when it began arriving. */
  rendered(events: number, oldestAt: number | null, queuedAt: number | null): void {
    this.batches++;
    this.events += events;
    const now = this.now();
    if (oldestAt !== null && this.latencies.length < CAP) this.latencies.push(Math.max(0, now - oldestAt));
    if (queuedAt !== null && this.inPage.length < CAP) this.inPage.push(Math.max(0, now - queuedAt));
  }

  reset(): void {
    this.latencies = [];
    this.inPage = [];
    this.frames = [];
    this.batches = 0;
    this.events = 0;
    this.lastFrame = null;
  }

  summary(): PerfSummary {
    return { batches: this.batches, events: this.events, latency: percentiles(this.latencies), inPage: percentiles(this.inPage), frames: percentiles(this.frames) };
  }
}
