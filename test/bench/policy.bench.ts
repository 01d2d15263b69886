/**
 * Policy bench: 100,000 running workspaces (in-memory Supervisor, FakeProvider, system clock, no store), each with
 * an idle deadline of 30 minutes, so no policy fires while it runs. Reported beside targets and baselines:
 *  - activity absorbed by the bus and the actors: events offered to `bus.activity` per second of CPU time, at
 *    10,000 events/s paced and at saturation, round robin over every workspace (coalescing on, 5 s window, the
 *    default), with how many reached the actors; baseline: the same events as direct `supervisor.activity()`
 *    calls. Coalescing folds an event only when its workspace was already delivered to inside the window, so
 *    the saturation row is the steady state: it starts once the first window's leading deliveries (one per
 *    workspace, every one an ACTIVITY to its actor) are made, and that first pass is reported beside it;
 *  - policy memory per workspace: heap with the idle deadline armed minus heap of the same running workspaces
 *    without a policy, after `gc()`; baseline: heap per running workspace without a policy;
 *  - restore: the persisted snapshots of all of them restored into a fresh Supervisor; the re-arm work alone
 *    (timed around each deadline-queue push and each REARM send) and the whole restore beside it.
 *
 * The system clock, not a SimulatedClock: the simulated clock copies and sorts every pending timeout on each step, so
 * with 100,000 armed deadlines it would measure itself. CPU time (process.cpuUsage) rather than wall time: the
 * machine is shared. Run: `npm run bench -- policy`; `WSUP_BENCH_POLICY_WORKSPACES=10000` for a quick look.
 */
import { Actor } from 'xstate';
import { Deadlines } from '../../src/supervisor/deadlines.ts';
import { createBus, type Bus, type BusSink } from '../../src/bus/index.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';
import type { PolicyPatch } from '../../src/supervisor/types.ts';

export interface PolicyRow {
  figure: string;
  value: number;
  unit: string;
  target: string;
  /** value ÷ target (or ÷ the baseline it is compared with), and whether the target is met. */
  ratio: string;
  met: string;
  note: string;
}

const WORKSPACES = Number(process.env.WSUP_BENCH_POLICY_WORKSPACES ?? 100_000);
const POLICY: PolicyPatch = { idleTimeoutMs: 30 * 60_000 };
const RUN_MS = 3_000;
const PACED_PER_SEC = 10_000;
const ACTIVITY_WINDOW_MS = 5_000;
/** Events offered between two yields to the event loop, so the bus's window timer and the actors keep up. */
const CHUNK = 10_000;

const gc = (): void => (globalThis as { gc?: () => void }).gc?.();
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};
const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const round = (x: number, digits = 0): number => Number(x.toFixed(digits));

/** Run `n` async tasks, at most `width` at a time (100,000 concurrent ensures would measure the promise pile). */
async function inBatches(n: number, width: number, task: (i: number) => Promise<unknown>): Promise<void> {
  for (let from = 0; from < n; from += width) {
    await Promise.all(Array.from({ length: Math.min(width, n - from) }, (_, k) => task(from + k)));
  }
}

interface Activity {
  events: number;
  cpuS: number;
  wallS: number;
  /** ACTIVITY events that reached the actors. */
  delivered: number;
}

/** Offer events round robin over every workspace for `RUN_MS`, as fast as possible, yielding every CHUNK. */
async function saturate(offer: (id: string) => void, ids: string[]): Promise<{ events: number; cpu0: NodeJS.CpuUsage; t0: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let events = 0;
  while (performance.now() - t0 < RUN_MS) {
    for (let k = 0; k < CHUNK; k++) offer(ids[events++ % ids.length]!);
    await yieldToLoop();
  }
  return { events, cpu0, t0 };
}

/** Offer `PACED_PER_SEC` events/s round robin for `RUN_MS`: every 10 ms, the events due by then. */
async function paced(offer: (id: string) => void, ids: string[]): Promise<{ events: number; cpu0: NodeJS.CpuUsage; t0: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let events = 0;
  for (let elapsed = 0; elapsed < RUN_MS; elapsed = performance.now() - t0) {
    const due = Math.floor((elapsed * PACED_PER_SEC) / 1000);
    while (events < due) offer(ids[events++ % ids.length]!);
    await sleep(10);
  }
  return { events, cpu0, t0 };
}

/**
 * Through the bus into the supervisor; CPU counted until the last trailing delivery has been made. With
 * `steady`, one event per workspace is offered first (the window's leading deliveries) and measured apart.
 */
async function throughBus(sup: BusSink, ids: string[], drive: typeof saturate, steady = false): Promise<Activity & { first: Activity | null }> {
  let firstError: unknown = null;
  const bus: Bus = createBus({ sink: sup, activityWindowMs: ACTIVITY_WINDOW_MS, onSinkError: (err) => (firstError ??= err) });
  const offer = (id: string) => bus.activity({ workspaceId: id, source: 'bench', at: Date.now() });
  let first: Activity | null = null;
  if (steady) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < ids.length; i++) {
      offer(ids[i]!);
      if (i % CHUNK === CHUNK - 1) await yieldToLoop();
    }
    first = { events: ids.length, cpuS: cpuSeconds(cpu0), wallS: (performance.now() - t0) / 1000, delivered: bus.counters().activityDelivered };
  }
  const before = bus.counters();
  const r = await drive(offer, ids);
  // Let every open window close on its own (its trailing delivery is part of the cost), then release them all.
  await until(() => bus.counters().activityWindows === 0);
  const cpuS = cpuSeconds(r.cpu0);
  const wallS = (performance.now() - r.t0) / 1000;
  const c = bus.counters();
  await bus.close();
  if (firstError !== null) throw new Error(`the supervisor refused activity (${c.sinkErrors} times)`, { cause: firstError });
  if (c.activitySeen - before.activitySeen !== r.events) throw new Error(`bus lost activity: ${JSON.stringify(c)} for ${r.events} events`);
  return { events: r.events, cpuS, wallS, delivered: c.activityDelivered - before.activityDelivered, first };
}

/** Wait for a condition the event loop brings about (windows closing on the system clock). */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await sleep(50);
}

async function direct(sup: Supervisor, ids: string[]): Promise<Activity> {
  let refused: unknown = null;
  const r = await saturate((id) => void sup.activity(id, 'bench').catch((err: unknown) => (refused ??= err)), ids);
  if (refused !== null) throw new Error('the supervisor refused direct activity', { cause: refused });
  const cpuS = cpuSeconds(r.cpu0);
  return { events: r.events, cpuS, wallS: (performance.now() - r.t0) / 1000, delivered: r.events };
}

/**
 * The re-arm work of a restore while `body` runs: time inside the deadline queue's `set` (the restored
 * deadlines going into the queue) and inside `send` for REARM events, on every actor.
 */
function timingRearm<T>(body: () => T): { result: T; rearmMs: number; pushes: number; rearms: number } {
  const proto = Actor.prototype as { send: (ev: { type: string }) => void };
  const queue = Deadlines.prototype as { set: (slot: unknown, at: number | null) => void };
  const send = proto.send;
  const set = queue.set;
  let rearmMs = 0;
  let rearms = 0;
  let pushes = 0;
  proto.send = function (this: unknown, ev: { type: string }) {
    if (ev.type !== 'REARM') return send.call(this, ev);
    const t = performance.now();
    send.call(this, ev);
    rearmMs += performance.now() - t;
    rearms++;
  };
  queue.set = function (this: unknown, slot: unknown, at: number | null) {
    const t = performance.now();
    set.call(this, slot, at);
    rearmMs += performance.now() - t;
    if (at !== null) pushes++;
  };
  try {
    return { result: body(), rearmMs, pushes, rearms };
  } finally {
    proto.send = send;
    queue.set = set;
  }
}

function atLeast(figure: string, value: number, unit: string, target: number, note: string): PolicyRow {
  return { figure, value, unit, target: `≥ ${target.toLocaleString('en')} ${unit}`, ratio: `${(value / target).toFixed(2)}×`, met: value >= target ? 'yes' : 'NO', note };
}
function atMost(figure: string, value: number, unit: string, target: number, note: string): PolicyRow {
  return { figure, value, unit, target: `≤ ${target.toLocaleString('en')} ${unit}`, ratio: `${(value / target).toFixed(2)}×`, met: value <= target ? 'yes' : 'NO', note };
}
function baseline(figure: string, value: number, unit: string, vs: string, ratio: number, note: string): PolicyRow {
  return { figure, value, unit, target: `baseline for ${vs}`, ratio: `${ratio.toFixed(2)}×`, met: '', note };
}

export async function benchPolicy(): Promise<PolicyRow[]> {
  const n = WORKSPACES;
  const ids = Array.from({ length: n }, (_, i) => `ws-${i}`);
  const provider = new FakeProvider({ latencyMs: 0 });
  const empty = heap();
  let sup = new Supervisor({ provider });
  await inBatches(n, 5_000, (i) => sup.ensure(ids[i]!));
  provider.calls.length = 0; // the fake's call log is the bench's, not a workspace's
  const running = heap();
  await inBatches(n, 5_000, (i) => sup.setPolicy(ids[i]!, POLICY));
  const withPolicy = heap();
  const armed = (await sup.get(ids[n - 1]!)).next;
  if (armed?.action !== 'stop' || armed.source !== 'idle') throw new Error(`setPolicy did not arm an idle stop: next = ${JSON.stringify(armed)}`);
  const runningPerWs = (running - empty) / n;
  const policyPerWs = (withPolicy - running) / n;

  // Warm the JIT on each path before measuring it (a short run of the same traffic, not measured).
  await direct(sup, ids.slice(0, 1000));
  const dir = await direct(sup, ids);
  const pace = await throughBus(sup.busSink(), ids, paced);
  const sat = await throughBus(sup.busSink(), ids, saturate, true);
  const first = sat.first!;
  // The bus alone: the supervisor's accept check, and a sink that only counts what reaches it.
  const alone = await throughBus({ accepts: (id) => sup.busSink().accepts(id), restart: () => undefined, liveness: () => undefined, activity: () => undefined }, ids, saturate, true);

  const stored = ids.map((id) => JSON.stringify(sup.persistedSnapshot(id)));
  await sup.shutdown({ deadlineMs: 0 });
  sup = new Supervisor({ provider });
  gc();
  // Each row is parsed as the store hands it over and dropped once restored: 100,000 parsed snapshots held
  // at once would be the bench's own garbage-collection load, not the restore's.
  const t0 = performance.now();
  const { rearmMs, pushes, rearms } = timingRearm(() => {
    for (let i = 0; i < n; i++) {
      sup.restore(ids[i]!, JSON.parse(stored[i]!) as ReturnType<Supervisor['persistedSnapshot']>);
      stored[i] = '';
    }
  });
  const restoreMs = performance.now() - t0;
  const rearmed = (await sup.get(ids[n - 1]!)).next;
  if (pushes + rearms < n || rearmed?.source !== 'idle') throw new Error(`restore did not re-arm: ${pushes} queued, ${rearms} REARM sends, next = ${JSON.stringify(rearmed)}`);
  await sup.shutdown({ deadlineMs: 0 });

  const perCpu = (a: Activity): number => Math.round(a.events / a.cpuS);
  const k = (x: number): string => x.toLocaleString('en');
  return [
    atLeast(
      'activity via bus, saturation, steady state',
      perCpu(sat),
      'events/CPU s',
      200_000,
      `after the first window's leading deliveries: ${k(sat.events)} events in ${sat.wallS.toFixed(1)} s wall over ${k(n)} workspaces; ${k(sat.delivered)} reached the actors (trailing)`,
    ),
    baseline(
      'activity via bus, first window (leading)',
      perCpu(first),
      'events/CPU s',
      'steady state',
      perCpu(sat) / perCpu(first),
      `${k(first.events)} events, one per workspace, ${k(first.delivered)} reached the actors at once, ${round((first.cpuS * 1e6) / first.events, 1)} µs CPU each`,
    ),
    atMost(
      'activity via bus, 10,000/s paced: CPU',
      round((pace.cpuS / pace.wallS) * 100),
      '% of a core',
      100,
      `${k(pace.events)} events, ${round((pace.cpuS * 1e6) / pace.events, 1)} µs CPU each; ${k(pace.delivered)} reached the actors (keeps up while < 100%)`,
    ),
    baseline('bus alone (counting sink), saturation', perCpu(alone), 'events/CPU s', 'the bus', perCpu(sat) / perCpu(alone), `${k(alone.events)} events, ${k(alone.delivered)} delivered: what the bus itself costs (ratio: bus + actors ÷ this)`),
    baseline('direct supervisor.activity(), saturation', perCpu(dir), 'events/CPU s', 'the bus', perCpu(sat) / perCpu(dir), `${k(dir.events)} events, every one an ACTIVITY to its actor (ratio: bus ÷ direct)`),
    atMost('policy memory per workspace', round(policyPerWs), 'bytes', 1024, 'idle deadline armed minus the same running workspaces without a policy'),
    baseline('heap per running workspace, no policy', round(runningPerWs), 'bytes', 'policy memory', policyPerWs / runningPerWs, 'supervisor + actor + fake provider state (ratio: policy ÷ this)'),
    atMost(
      `re-arm on restore, ${k(n)} workspaces`,
      round(rearmMs),
      'ms',
      2000,
      `${k(pushes)} deadline-queue pushes + ${k(rearms)} REARM sends, ${round((rearmMs * 1000) / n, 1)} µs per workspace`,
    ),
    baseline(`full restore, ${k(n)} workspaces`, round(restoreMs), 'ms', 're-arm', rearmMs / restoreMs, 'JSON.parse of the row + createActor from snapshot + start + re-arm (ratio: re-arm ÷ this)'),
  ];
}
