/**
 * A supervisor on a simulated clock with a FakeProvider: the standard rig for actor tests.
 * `advance(ms)` moves time and lets every promise chain the move released run to completion.
 */
import { SimulatedClock } from 'xstate';
import { FakeProvider, type FaultPlan } from '../../src/providers/fake.ts';
import { Supervisor, type SupervisorOptions } from '../../src/supervisor/supervisor.ts';
import type { SupervisorEvent } from '../../src/supervisor/types.ts';

export const T0 = 1_700_000_000_000;

/** Drain microtasks and immediates; no timer under test is involved. */
export const flush = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
};

export interface Rig {
  clock: SimulatedClock;
  provider: FakeProvider;
  sup: Supervisor;
  events: SupervisorEvent[];
  advance(ms: number): Promise<void>;
  /** Advance `ms` in steps of `step`, so chains of provider calls each get their turn. */
  run(ms: number, step?: number): Promise<void>;
  /** Advance in steps until nothing is in flight and no deadline is pending, or `maxMs` passes. */
  settle(maxMs?: number): Promise<void>;
  cycles(id: string): number;
  errors: unknown[];
}

export function rig(opts: { latencyMs?: number; fault?: FaultPlan; sup?: Partial<SupervisorOptions> } = {}): Rig {
  const clock = new SimulatedClock();
  clock.set(T0);
  const provider = new FakeProvider({ clock, latencyMs: opts.latencyMs ?? 100, ...(opts.fault ? { fault: opts.fault } : {}) });
  const errors: unknown[] = [];
  const sup = new Supervisor({ provider, clock, onError: (e) => errors.push(e), ...opts.sup });
  const events: SupervisorEvent[] = [];
  sup.events.subscribe((e) => events.push(e));
  const advance = async (ms: number) => {
    await flush();
    clock.increment(ms);
    await flush();
  };
  return {
    clock,
    provider,
    sup,
    events,
    errors,
    advance,
    async run(ms, step = 10) {
      for (let t = 0; t < ms; t += step) await advance(Math.min(step, ms - t));
    },
    async settle(maxMs = 3_600_000) {
      const step = 50;
      for (let t = 0; t < maxMs; t += step) {
        await advance(step);
        const busy = (await sup.list()).some((w) => w.state === 'starting' || w.state === 'stopping' || w.deferredUntil !== null || w.backoffUntil !== null);
        if (!busy && provider.inFlightIds().length === 0) return;
      }
    },
    cycles: (id) => events.filter((e) => e.type === 'cycle.started' && e.id === id).length,
  };
}

/** Provider starts that began (the number of `provision` calls) for one workspace. */
export const startCalls = (r: Rig, id: string): number => r.provider.calls.filter((c) => c.id === id && c.op === 'start').length;

/** Observe a promise's fate without leaving a rejection unhandled while the test moves time. */
export function capture<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: { code?: string; message: string } }> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error: error as { code?: string; message: string } }),
  );
}

/** What `f` throws; fails the test when it throws nothing. */
export function thrown(f: () => void): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}
