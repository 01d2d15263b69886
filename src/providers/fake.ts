/**
 * FakeProvider: the one fake of the `Provider` interface, for tests and benchmarks.
 *
 * It records every call with its start and end time and reports any overlap of two calls for one
 * workspace, which is exactly the bug class wsup exists to make impossible. Latency runs on an injected
 * clock, so tests drive it with a simulated clock; failures and hangs are injected per call.
 */
import type { Endpoint, Provider, ProviderResource, WorkspaceSpec } from './types.ts';

export interface FakeClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export interface FakeCall {
  id: string;
  op: 'start' | 'stop';
  startedAt: number;
  endedAt: number | null;
  outcome: 'ok' | 'error' | 'aborted' | null;
}

export interface Overlap {
  id: string;
  first: FakeCall;
  second: FakeCall;
}

/** Decide a call's fate: `undefined` succeeds after `latencyMs`; an Error fails; `'hang'` waits for abort. */
export type FaultPlan = (call: FakeCall) => Error | 'hang' | { latencyMs: number } | undefined;

export interface FakeProviderOptions {
  clock?: FakeClock;
  /** Latency of every call in ms (0 resolves on the next microtask). Default 0. */
  latencyMs?: number;
  fault?: FaultPlan;
}

const realClock: FakeClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as NodeJS.Timeout),
};

export class FakeProvider implements Provider {
  readonly kind = 'fake';
  readonly calls: FakeCall[] = [];
  readonly overlaps: Overlap[] = [];
  /** Provider starts per workspace: the number of resources ever created for it. */
  readonly starts = new Map<string, number>();
  private readonly inFlight = new Map<string, FakeCall>();
  private readonly running = new Map<string, Endpoint>();
  private readonly clock: FakeClock;
  latencyMs: number;
  fault: FaultPlan | undefined;
  private seq = 0;

  constructor(opts: FakeProviderOptions = {}) {
    this.clock = opts.clock ?? realClock;
    this.latencyMs = opts.latencyMs ?? 0;
    this.fault = opts.fault;
  }

  start(spec: WorkspaceSpec, signal: AbortSignal): Promise<Endpoint> {
    return this.call(spec.id, 'start', signal, () => {
      this.starts.set(spec.id, (this.starts.get(spec.id) ?? 0) + 1);
      const endpoint = this.running.get(spec.id) ?? `fake://${spec.id}/${++this.seq}`;
      this.running.set(spec.id, endpoint);
      return endpoint;
    });
  }

  stop(id: string, signal: AbortSignal): Promise<void> {
    return this.call(id, 'stop', signal, () => {
      this.running.delete(id);
    });
  }

  async inspect(id: string): Promise<ProviderResource | null> {
    const endpoint = this.running.get(id);
    return endpoint === undefined ? null : { id, status: 'running', endpoint };
  }

  async list(): Promise<ProviderResource[]> {
    return [...this.running].map(([id, endpoint]) => ({ id, status: 'running', endpoint }));
  }

  /** Calls still in flight, by workspace. */
  inFlightIds(): string[] {
    return [...this.inFlight.keys()];
  }

  /** Simulate the resource dying out of band (the provider's view only). */
  kill(id: string): void {
    this.running.delete(id);
  }

  private call<T>(id: string, op: FakeCall['op'], signal: AbortSignal, effect: () => T): Promise<T> {
    const call: FakeCall = { id, op, startedAt: this.clock.now(), endedAt: null, outcome: null };
    this.calls.push(call);
    const other = this.inFlight.get(id);
    if (other !== undefined) this.overlaps.push({ id, first: other, second: call });
    this.inFlight.set(id, call);
    const plan = this.fault?.(call);
    const latency = typeof plan === 'object' && !(plan instanceof Error) ? plan.latencyMs : this.latencyMs;

    return new Promise<T>((resolve, reject) => {
      let timer: unknown;
      const finish = (outcome: NonNullable<FakeCall['outcome']>, settle: () => void) => {
        call.endedAt = this.clock.now();
        call.outcome = outcome;
        if (this.inFlight.get(id) === call) this.inFlight.delete(id);
        signal.removeEventListener('abort', onAbort);
        settle();
      };
      const onAbort = () => {
        if (timer !== undefined) this.clock.clearTimeout(timer);
        finish('aborted', () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      if (plan === 'hang') return;
      const run = () => {
        if (call.outcome !== null) return; // aborted first
        if (plan instanceof Error) finish('error', () => reject(plan));
        else {
          const value = effect();
          finish('ok', () => resolve(value));
        }
      };
      if (latency <= 0) queueMicrotask(run);
      else timer = this.clock.setTimeout(run, latency);
    });
  }
}
