/**
 * One workspace actor on a SimulatedClock with provider calls that settle after a latency on that clock:
 * the rig for the policy tests, which drive the machine directly (no supervisor). The machine raises no policy
 * timer: the rig does the supervisor's part with the same deadline queue, sending POLICY_DUE at `timing.dueAt`.
 */
import { createActor, fromPromise, SimulatedClock, type Snapshot } from 'xstate';
import { workspaceMachine } from '../../machines/workspace.machine.ts';
import type {
  DeprovisionInput,
  DeprovisionOutput,
  Policy,
  ProvisionInput,
  ProvisionOutput,
  WorkspaceConfig,
  WorkspaceContext,
  WorkspaceEmitted,
  WorkspaceEvent,
} from '../../machines/workspace.types.ts';
import { NO_POLICY } from '../../machines/workspace.types.ts';
import { Deadlines, type DeadlineSlot } from '../../src/supervisor/deadlines.ts';

/** A SimulatedClock that knows how many of its timeouts are still pending. */
export class CountingClock extends SimulatedClock {
  readonly live = new Set<number>();
  override setTimeout(fn: (...args: unknown[]) => void, timeout: number): number {
    const id: number = super.setTimeout((...args: unknown[]) => {
      this.live.delete(id);
      fn(...args);
    }, timeout);
    this.live.add(id);
    return id;
  }
  override clearTimeout(id: number): void {
    this.live.delete(id);
    super.clearTimeout(id);
  }
}

export const MIN = 60_000;
export const HOUR = 60 * MIN;
export const DAY = 24 * HOUR;

/** Drain microtasks and immediates: lets a settled provider promise reach the actor. */
export const flush = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
};

type Call = { op: 'start' | 'stop'; at: number; ok: boolean | null };
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export interface RigOptions {
  /** Absolute start time (ms); default 2026-03-02T08:00:00Z, a Monday. */
  at?: number;
  latencyMs?: number | (() => number);
  /** Return an error to fail this provider call. */
  fault?: (op: 'start' | 'stop', n: number) => Error | undefined;
  config?: Partial<WorkspaceConfig>;
  /** Stand-in for the supervisor's quota guard. */
  startAllowed?: () => boolean;
  snapshot?: Snapshot<unknown>;
  clock?: CountingClock;
}

export function policy(p: Partial<Policy>): Policy {
  return { ...NO_POLICY, ...p };
}

export function machineRig(opts: RigOptions = {}) {
  const clock = opts.clock ?? new CountingClock();
  if (!opts.clock) clock.set(opts.at ?? Date.parse('2026-03-02T08:00:00Z'));
  const calls: Call[] = [];
  let inFlight = 0;
  const overlaps: string[] = [];
  const latency = () => (typeof opts.latencyMs === 'function' ? opts.latencyMs() : (opts.latencyMs ?? 1_000));
  const call = async <T>(op: 'start' | 'stop', result: (at: number) => T): Promise<T> => {
    if (inFlight > 0) overlaps.push(`${op} at ${clock.now()}`);
    inFlight++;
    const rec: Call = { op, at: clock.now(), ok: null };
    calls.push(rec);
    const n = calls.filter((c) => c.op === op).length;
    try {
      await new Promise<void>((r) => clock.setTimeout(() => r(), latency()));
      const err = opts.fault?.(op, n);
      rec.ok = err === undefined;
      if (err) throw Object.assign(err, { at: clock.now() });
      return result(clock.now());
    } finally {
      inFlight--;
    }
  };
  const machine = workspaceMachine.provide({
    actors: {
      provision: fromPromise<ProvisionOutput, ProvisionInput>(({ input }) => call('start', (at) => ({ endpoint: `fake://${input.id}/${input.cycle}`, at }))),
      deprovision: fromPromise<DeprovisionOutput, DeprovisionInput>(() => call('stop', (at) => ({ at }))),
    },
    guards: { startAllowed: () => (opts.startAllowed ? opts.startAllowed() : true) },
  });
  const actor = createActor(machine, {
    clock,
    input: { id: 'ws-1', now: clock.now(), ...(opts.config ? { config: opts.config } : {}) },
    ...(opts.snapshot ? { snapshot: opts.snapshot } : {}),
  });
  const events: WorkspaceEmitted[] = [];
  actor.on('*', (e) => events.push(e));
  const errors: unknown[] = [];
  // The supervisor's part: one queued deadline at the actor's `timing.dueAt`, POLICY_DUE when it is due.
  const slot: DeadlineSlot & { dueAt: number | null } = { deadlineAt: 0, deadlineIndex: -1, dueAt: null };
  const syncDue = () => {
    const due = actor.getSnapshot().context.timing.dueAt;
    if (due === slot.dueAt) return;
    slot.dueAt = due;
    deadlines.set(slot, due === null ? null : Math.max(due, clock.now()));
  };
  const deadlines = new Deadlines(clock, (_slot, at) => {
    slot.dueAt = null;
    actor.send({ type: 'POLICY_DUE', at });
    syncDue();
  });
  actor.subscribe({ next: syncDue, error: (e) => errors.push(e) });
  actor.start();
  syncDue();

  const rig = {
    clock,
    actor,
    deadlines,
    events,
    calls,
    overlaps,
    errors,
    get inFlight() {
      return inFlight;
    },
    state: () => actor.getSnapshot().value,
    ctx: (): WorkspaceContext => actor.getSnapshot().context,
    /** Send an event stamped with the clock's time. */
    send(e: DistributiveOmit<WorkspaceEvent, 'at'>) {
      actor.send({ ...e, at: clock.now() } as WorkspaceEvent);
    },
    setPolicy(p: Partial<Policy>) {
      actor.send({ type: 'SET_POLICY', policy: policy(p), at: clock.now() });
    },
    activity(source = 'agent heartbeat') {
      actor.send({ type: 'ACTIVITY', source, at: clock.now() });
    },
    ensure(requester = 'cli:alice') {
      actor.send({ type: 'ENSURE', requester, at: clock.now() });
    },
    stop(requester = 'cli:alice') {
      actor.send({ type: 'STOP', requester, at: clock.now() });
    },
    /** Move time by `ms`, in steps of at most `step`, letting provider calls settle between steps. */
    async advance(ms: number, step = 1_000) {
      for (let left = ms; left > 0; left -= step) {
        await flush();
        clock.increment(Math.min(step, left));
        await flush();
      }
    },
    /** Move time to an absolute instant (ISO string or ms). */
    async until(t: string | number, step = 1_000) {
      const target = typeof t === 'string' ? Date.parse(t) : t;
      await rig.advance(target - clock.now(), step);
    },
    policyEvents: () => events.flatMap((e) => (e.type === 'policy' ? [e] : [])),
    starts: () => calls.filter((c) => c.op === 'start').length,
    stops: () => calls.filter((c) => c.op === 'stop').length,
  };
  return rig;
}

export type MachineRig = ReturnType<typeof machineRig>;

/** A rig whose workspace is running (one start done). */
export async function runningRig(opts: RigOptions = {}): Promise<MachineRig> {
  const r = machineRig(opts);
  r.ensure();
  await r.advance(typeof opts.latencyMs === 'number' ? opts.latencyMs + 1_000 : 2_000);
  if (r.state() !== 'running') throw new Error(`expected running, got ${r.state()}`);
  return r;
}
