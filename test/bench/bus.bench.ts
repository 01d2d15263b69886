/**
 * Bus benchmark: 1,000,000 file writes over 10,000 workspaces, in realistic Save bursts on a virtual clock, side by
 * side through (a) wsup's bus, (b) a naive restart-per-write baseline, (c) a hand-written leading-window map.
 *
 * Run standalone: `node --expose-gc --import tsx test/bench/bus.bench.ts` (or `npx tsx test/bench/bus.bench.ts`).
 * "missed" = writes that happened after the last restart issued for their workspace, once every variant has
 * drained: a restart that misses writes leaves the workspace running stale files. wsup must report 0.
 */
import { pathToFileURL } from 'node:url';
import { Subject, Subscription, type SchedulerAction, type SchedulerLike } from 'rxjs';
import { coalesceFileWritesRx, createBus, formatReason } from '../../src/bus/index.ts';
import type { BusSink, FileWritten, RestartRequest } from '../../src/bus/types.ts';

export interface Row {
  name: string;
  events: number;
  /** Wall-clock seconds for feeding every event and draining (timers included). */
  seconds: number;
  eventsPerSec: number;
  /** Events per second of this process's CPU time: steadier than wall time on a shared, loaded machine. */
  eventsPerCpuSec: number;
  restarts: number;
  missed: number;
  /** Per-workspace entries still held once everything is drained and idle (a last-fire map never shrinks). */
  retained: number;
  peakHeapMB: number;
}

const WORKSPACES = 10_000; // ≤ 16,384: the workload packs the workspace into 14 bits of a sort key
const WRITES_PER_WS = 100;
const QUIET_MS = 2000;
const MAX_WAIT_MS = 15_000;
const LEADING_WINDOW_MS = 15_000;

/** Virtual time with a binary heap: VirtualTimeScheduler re-sorts its whole queue on every schedule (O(n log n)). */
class HeapScheduler implements SchedulerLike {
  private t = 0;
  private seq = 0;
  private heap: Array<{ due: number; seq: number; gen: number; action: HeapAction<unknown> }> = [];
  fired = 0;
  scheduled = 0;
  now(): number {
    return this.t;
  }
  schedule<T>(work: (this: SchedulerAction<T>, state?: T) => void, delay = 0, state?: T): Subscription {
    return new HeapAction<T>(this, work).schedule(state, delay);
  }
  push(action: HeapAction<unknown>, delay: number): void {
    this.scheduled++;
    const h = this.heap;
    const e = { due: this.t + Math.max(0, delay), seq: this.seq++, gen: action.gen, action };
    let i = h.push(e) - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(e, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }
  private less(a: { due: number; seq: number }, b: { due: number; seq: number }): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }
  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && this.less(h[r]!, h[l]!) ? r : l;
      if (!this.less(h[c]!, last)) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
  }
  /** Run every action due at or before `t`, in time order, then set the clock to `t`. */
  advanceTo(t: number): void {
    const h = this.heap;
    while (h.length > 0 && h[0]!.due <= t) {
      const e = h[0]!;
      this.pop();
      if (e.action.closed || e.gen !== e.action.gen) continue;
      this.t = e.due;
      this.fired++;
      e.action.run();
    }
    this.t = Math.max(this.t, t);
  }
  get pending(): number {
    return this.heap.length;
  }
}

class HeapAction<T> extends Subscription implements SchedulerAction<T> {
  gen = 0;
  private state: T | undefined;
  constructor(
    private readonly scheduler: HeapScheduler,
    private readonly work: (this: SchedulerAction<T>, state?: T) => void,
  ) {
    super();
  }
  schedule(state?: T, delay = 0): Subscription {
    if (this.closed) return this;
    this.state = state;
    this.gen++; // an earlier heap entry for this action is now stale
    this.scheduler.push(this as HeapAction<unknown>, delay);
    return this;
  }
  run(): void {
    this.gen++;
    this.work.call(this, this.state);
  }
}

/** Writes per workspace: bursts of 10–17 files, 0.1–1.9 s apart with an occasional 3 s pause, 20–120 s between. */
function workload(seed = 1): { keys: Float64Array } {
  let s = seed;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const keys = new Float64Array(WORKSPACES * WRITES_PER_WS);
  let n = 0;
  for (let ws = 0; ws < WORKSPACES; ws++) {
    let t = Math.floor(rnd() * 60_000);
    let left = 0;
    for (let k = 0; k < WRITES_PER_WS; k++) {
      if (left === 0) {
        left = 10 + Math.floor(rnd() * 8);
        t += 20_000 + Math.floor(rnd() * 100_000);
      } else {
        t += rnd() < 0.1 ? 3000 : 100 + Math.floor(rnd() * 1800);
      }
      left--;
      // time (ms, < 2^24) | workspace (14 bits) | write index (7 bits): one native numeric sort orders them all.
      keys[n++] = t * 2 ** 21 + ws * 128 + k;
    }
  }
  keys.sort();
  return { keys };
}

const IDS = Array.from({ length: WORKSPACES }, (_, i) => `ws-${i}`);
const PATHS = Array.from({ length: 24 }, (_, i) => `src/components/file-${i}.tsx`);

interface Harness {
  sink: BusSink;
  restarts: () => number;
  missed: () => number;
  /** Count a write before it is handed to the variant: restarts reset their workspace's count. */
  wrote: (ws: number) => void;
}

function harness(): Harness {
  const index = new Map(IDS.map((id, i) => [id, i]));
  const since = new Int32Array(WORKSPACES);
  let restarts = 0;
  return {
    sink: {
      accepts: (id) => index.has(id),
      restart: (id: string, _req: RestartRequest) => {
        restarts++;
        since[index.get(id)!] = 0;
      },
      liveness: () => undefined,
    },
    restarts: () => restarts,
    missed: () => since.reduce((a, b) => a + b, 0),
    wrote: (ws) => void since[ws]!++,
  };
}

type Feed = (ws: number, path: string, at: number) => void;
interface Variant {
  feed: Feed;
  /** Let time run out past every window, then report the entries still held. */
  drain: () => number;
}

function measure(name: string, keys: Float64Array, build: (h: Harness, clock: HeapScheduler) => Variant): Row {
  (globalThis as { gc?: () => void }).gc?.();
  const h = harness();
  const clock = new HeapScheduler();
  const v = build(h, clock);
  let peak = process.memoryUsage().heapUsed;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const at = Math.floor(key / 2 ** 21);
    const ws = Math.floor(key / 128) % 16384;
    clock.advanceTo(at);
    h.wrote(ws);
    v.feed(ws, PATHS[(key % 128) % 17]!, at);
    if ((i & 0xffff) === 0) peak = Math.max(peak, process.memoryUsage().heapUsed);
  }
  const retained = v.drain();
  if (process.env.BENCH_DEBUG) console.error(name, { fired: clock.fired, scheduled: clock.scheduled });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  peak = Math.max(peak, process.memoryUsage().heapUsed);
  return {
    name,
    events: keys.length,
    seconds: Math.round(seconds * 1000) / 1000,
    eventsPerSec: Math.round(keys.length / seconds),
    eventsPerCpuSec: Math.round(keys.length / cpuSeconds),
    restarts: h.restarts(),
    missed: h.missed(),
    retained,
    peakHeapMB: Math.round((peak / 2 ** 20) * 10) / 10,
  };
}

const wsupBus = (h: Harness, clock: HeapScheduler): Variant => {
  const bus = createBus({ sink: h.sink, scheduler: clock, quietMs: QUIET_MS, maxWaitMs: MAX_WAIT_MS });
  return {
    feed: (ws, path, at) => bus.fileWritten({ workspaceId: IDS[ws]!, path, at }),
    // Let every burst close on its own quiet window (no close-flush shortcut) and idle groups be released.
    drain: () => {
      clock.advanceTo(clock.now() + 60_000);
      const held = bus.counters().activeGroups;
      void bus.close();
      return held;
    },
  };
};

/** Every write is its own restart: nothing missed, and the workspace recreated mid-Save (the tight restart loop). */
const naive = (h: Harness): Variant => ({
  feed: (ws, path) => void h.sink.restart(IDS[ws]!, { source: 'file-write', reason: `1 file written: ${path}`, requester: 'naive' }),
  drain: () => 0,
});

/**
 * A hand-written leading-edge debounce: a map of last-fire timestamps, never cleaned; the first write
 * fires and later writes inside 15 s are dropped. (Go's CAS loop collapses to a compare in single-threaded JS.)
 */
const leadingWindow = (h: Harness, clock: HeapScheduler): Variant => {
  const lastFire = new Map<string, { at: number }>();
  return {
    feed: (ws, path) => {
      const id = IDS[ws]!;
      const now = clock.now();
      let slot = lastFire.get(id);
      if (slot === undefined) lastFire.set(id, (slot = { at: -Infinity }));
      if (now - slot.at < LEADING_WINDOW_MS) return;
      slot.at = now;
      void h.sink.restart(id, { source: 'file-write', reason: `file written: ${path}`, requester: 'leading-window' });
    },
    drain: () => lastFire.size,
  };
};

/** The plain operator chain the bus is tested against: ~33,000 events/s, so only with BENCH_BUS_RX=1. */
const rxChain = (h: Harness, clock: HeapScheduler): Variant => {
  const writes = new Subject<FileWritten>();
  let n = 0;
  let groups = 0;
  writes
    .pipe(coalesceFileWritesRx({ quietMs: QUIET_MS, maxWaitMs: MAX_WAIT_MS, idleExpireMs: 30_000, scheduler: clock, onGroup: (d) => (groups += d) }))
    .subscribe((b) => void h.sink.restart(b.workspaceId, { source: 'file-write', reason: formatReason(b), requester: `rx:${++n}` }));
  return {
    feed: (ws, path, at) => writes.next({ workspaceId: IDS[ws]!, path, at }),
    drain: () => {
      clock.advanceTo(clock.now() + 60_000);
      writes.complete();
      return groups;
    },
  };
};

const VARIANTS = [
  ['wsup bus (quiet 2 s, maxWait 15 s)', wsupBus],
  ['naive: restart per write', naive],
  ['hand-written leading 15 s window map', leadingWindow],
] as const;

export async function benchBus(): Promise<Row[]> {
  const { keys } = workload();
  // Warm the JIT on a slice so the first variant measured is not also the one paying for compilation.
  for (const [name, build] of VARIANTS) measure(name, keys.subarray(0, 100_000), build);
  const rows = VARIANTS.map(([name, build]) => measure(name, keys, build));
  if (process.env.BENCH_BUS_RX === '1') rows.push(measure('rxjs operator chain (reference)', keys, rxChain));
  return rows;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await benchBus();
  console.table(rows);
}
