/**
 * Restart storm: 10,000 running workspaces × 20 concurrent restart requests of mixed sources against a
 * FakeProvider with 1 ms latency. The same request schedule drives three implementations in one process:
 *   (a) wsup's supervisor, (b) a per-key mutex around Stop→Start (the usual hand-written fix for
 *   racing restart paths), (c) a coalesce flag + mutex (that fix plus a pending flag for bursts).
 * Reported: provider cycles per workspace, overlaps, wall time (and ratio to c), heap per idle actor.
 *
 * The baselines pass one AbortSignal to every provider call, as hand-written code without cancellation does.
 * The FakeProvider adds an abort listener to the signal of each call, and Node scans a signal's listeners on
 * every add (it refuses duplicates), so with thousands of calls in flight most of (b)'s and (c)'s time is that
 * scan. (d) is (c) with a signal of its own per call, as wsup's provider calls have (each has its own timeout):
 * the cost of the coalesce flag itself, shown beside the target, which stays the ratio to (c).
 *
 * (a) has two outcomes, decided by the event loop. When the first timer pass comes 3 ms or more after `drive`
 * armed its four batches, all of them run in that pass, before any provider call can complete: every request
 * finds its workspace's first cycle still stopping and joins it (1 cycle). When it comes sooner, the later
 * batches run after the provider stops of the first: their requests find the start under way and are queued
 * for a second cycle, or, automatic with nothing queued yet, deferred to the end of the self-fire window (60 s
 * by default, as the contract says); a workspace whose late requests are all automatic waits for it. Then
 * cyclesMean is near 2 and the wall time is the window's. The baselines have no window: 2 cycles either way.
 */
import { setMaxListeners } from 'node:events';
import { RESTART_SOURCES, type RestartSource } from '../../machines/workspace.types.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';

export interface StormRow {
  variant: string;
  workspaces: number;
  requests: number;
  cyclesMax: number;
  cyclesMean: number;
  overlaps: number;
  wallMs: number;
  vsC: string;
}

interface Plan {
  ids: string[];
  /** Per workspace: 20 requests, each a source and an arrival offset in ms. */
  requests: Array<Array<{ source: RestartSource; delayMs: number }>>;
}

/** A small deterministic PRNG so every variant sees the same input. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

export function makePlan(workspaces: number, perWorkspace: number, seed = 42): Plan {
  const rand = prng(seed);
  const ids = Array.from({ length: workspaces }, (_, i) => `ws-${i}`);
  const requests = ids.map(() =>
    Array.from({ length: perWorkspace }, () => ({
      source: RESTART_SOURCES[Math.floor(rand() * RESTART_SOURCES.length)]!,
      delayMs: Math.floor(rand() * 4),
    })),
  );
  return { ids, requests };
}

/** Fire every request at its offset; resolve when all have been issued and `settled()` resolves. */
async function drive(plan: Plan, fire: (id: string, source: RestartSource) => Promise<unknown>): Promise<void> {
  const all: Promise<unknown>[] = [];
  const byDelay = new Map<number, Array<[string, RestartSource]>>();
  plan.ids.forEach((id, i) => {
    for (const r of plan.requests[i]!) {
      const list = byDelay.get(r.delayMs) ?? [];
      list.push([id, r.source]);
      byDelay.set(r.delayMs, list);
    }
  });
  await Promise.all(
    [...byDelay].map(
      ([delay, list]) =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            for (const [id, source] of list) all.push(fire(id, source));
            resolve();
          }, delay),
        ),
    ),
  );
  await Promise.all(all);
}

function cycleStats(provider: FakeProvider, ids: string[], before: Map<string, number>) {
  const counts = ids.map((id) => (provider.starts.get(id) ?? 0) - (before.get(id) ?? 0));
  return { cyclesMax: Math.max(...counts), cyclesMean: counts.reduce((a, b) => a + b, 0) / counts.length };
}

async function runWsup(plan: Plan) {
  const provider = new FakeProvider({ latencyMs: 1 });
  const sup = new Supervisor({ provider });
  await Promise.all(plan.ids.map((id) => sup.ensure(id)));
  const before = new Map(provider.starts);
  const t0 = performance.now();
  // `wait: true`: each request resolves when the cycle that satisfies it has completed.
  await drive(plan, (id, source) => sup.restart(id, { source, reason: 'storm', wait: true }));
  const wallMs = performance.now() - t0;
  await sup.shutdown({ deadlineMs: 1_000 });
  return { ...cycleStats(provider, plan.ids, before), overlaps: provider.overlaps.length, wallMs };
}

/** One never-aborted signal shared by a baseline's calls (they have no cancellation story). */
function sharedSignal(): AbortSignal {
  const signal = new AbortController().signal;
  setMaxListeners(0, signal);
  return signal;
}

/** (b) a per-workspace mutex around Stop→Start: serialized, but every request is a full cycle. */
async function runMutex(plan: Plan) {
  const provider = new FakeProvider({ latencyMs: 1 });
  const locks = new Map<string, Promise<void>>();
  const signal = sharedSignal();
  await Promise.all(plan.ids.map((id) => provider.start({ id }, signal)));
  const before = new Map(provider.starts);
  const cycle = (id: string) => {
    const prev = locks.get(id) ?? Promise.resolve();
    const next = prev.then(async () => {
      await provider.stop(id, signal);
      await provider.start({ id }, signal);
    });
    locks.set(id, next);
    return next;
  };
  const t0 = performance.now();
  await drive(plan, (id) => cycle(id));
  const wallMs = performance.now() - t0;
  return { ...cycleStats(provider, plan.ids, before), overlaps: provider.overlaps.length, wallMs };
}

/**
 * (c) a hand-written coalesce flag + the per-workspace mutex: requests during a cycle set one pending flag.
 * `signals`: one shared by every call (c), or a new one per call (d).
 */
async function runCoalesce(plan: Plan, signals: 'shared' | 'per call' = 'shared') {
  const provider = new FakeProvider({ latencyMs: 1 });
  const shared = signals === 'shared' ? sharedSignal() : null;
  const signalFor = (): AbortSignal => shared ?? new AbortController().signal;
  await Promise.all(plan.ids.map((id) => provider.start({ id }, signalFor())));
  const before = new Map(provider.starts);
  const state = new Map<string, { running: Promise<void> | null; pending: boolean }>();
  const request = (id: string): Promise<void> => {
    let s = state.get(id);
    if (!s) state.set(id, (s = { running: null, pending: false }));
    if (s.running) {
      s.pending = true;
      return s.running;
    }
    const st = s;
    st.running = (async () => {
      do {
        st.pending = false;
        await provider.stop(id, signalFor());
        await provider.start({ id }, signalFor());
      } while (st.pending);
      st.running = null;
    })();
    return st.running;
  };
  const t0 = performance.now();
  await drive(plan, (id) => request(id));
  const wallMs = performance.now() - t0;
  return { ...cycleStats(provider, plan.ids, before), overlaps: provider.overlaps.length, wallMs };
}

/** Heap per idle workspace actor, and the time to create 100,000 of them as root actors. */
export async function measureIdleHeap(count = 100_000): Promise<{ count: number; bytesPerActor: number; createMs: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const provider = new FakeProvider();
  const sup = new Supervisor({ provider });
  const base = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) await sup.create(`idle-${i}`);
  const createMs = performance.now() - t0;
  gc?.();
  const bytesPerActor = (process.memoryUsage().heapUsed - base) / count;
  await sup.shutdown({ deadlineMs: 0 });
  return { count, bytesPerActor, createMs };
}

export async function benchRestartStorm(workspaces = 10_000, perWorkspace = 20): Promise<StormRow[]> {
  const plan = makePlan(workspaces, perWorkspace);
  const c = await runCoalesce(plan);
  const d = await runCoalesce(plan, 'per call');
  const b = await runMutex(plan);
  const a = await runWsup(plan);
  const row = (variant: string, r: typeof a): StormRow => ({
    variant,
    workspaces,
    requests: workspaces * perWorkspace,
    cyclesMax: r.cyclesMax,
    cyclesMean: Number(r.cyclesMean.toFixed(2)),
    overlaps: r.overlaps,
    wallMs: Math.round(r.wallMs),
    vsC: `${(r.wallMs / c.wallMs).toFixed(2)}×`,
  });
  return [row('(a) wsup', a), row('(b) per-key mutex', b), row('(c) coalesce flag + mutex', c), row('(d) = (c), a signal per call', d)];
}
