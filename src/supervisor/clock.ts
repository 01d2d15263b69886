import { Subscription, type SchedulerAction, type SchedulerLike } from 'rxjs';
/**
 * Time is a parameter. Every timer in the supervisor and its actors goes through a `Clock`, so tests run on
 * xstate's `SimulatedClock` (which satisfies this interface) and never sleep.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: (...args: unknown[]) => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** Node fires a timeout longer than this (about 24.8 days) after 1 ms instead: longer ones are chained. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** A timeout past Node's limit: re-armed in steps until its time has really come. */
class LongTimeout {
  private timer: NodeJS.Timeout;
  constructor(
    private readonly fn: () => void,
    private readonly at: number,
  ) {
    this.timer = setTimeout(() => this.step(), MAX_TIMEOUT_MS);
  }
  cancel(): void {
    clearTimeout(this.timer);
  }
  private step(): void {
    const left = this.at - Date.now();
    this.timer = left > MAX_TIMEOUT_MS ? setTimeout(() => this.step(), MAX_TIMEOUT_MS) : setTimeout(this.fn, Math.max(0, left));
  }
}

/**
 * Wall-clock time and Node timers. A policy deadline can be weeks away (dormancy, a monthly schedule): those
 * wait their whole time instead of Node's overflow turning them into a 1 ms timer that fires, re-arms and
 * fires again.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => (ms > MAX_TIMEOUT_MS ? new LongTimeout(fn, Date.now() + ms) : setTimeout(fn, ms)),
  clearTimeout: (id) => (id instanceof LongTimeout ? id.cancel() : clearTimeout(id as NodeJS.Timeout)),
};

/**
 * An RxJS scheduler that runs on a `Clock`, so the bus and the actors share one notion of time (in tests,
 * one `SimulatedClock` drives both).
 */
export function schedulerFromClock(clock: Clock): SchedulerLike {
  return {
    now: () => clock.now(),
    schedule<T>(work: (this: SchedulerAction<T>, state: T) => void, delay = 0, state?: T): Subscription {
      return new ClockAction<T>(clock, work).schedule(state, delay);
    },
  };
}

class ClockAction<T> extends Subscription implements SchedulerAction<T> {
  private timer: unknown = null;
  constructor(
    private readonly clock: Clock,
    private readonly work: (this: SchedulerAction<T>, state: T) => void,
  ) {
    super(() => this.cancel());
  }

  schedule(state?: T, delay = 0): Subscription {
    if (this.closed) return this;
    this.cancel();
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.work.call(this, state as T);
    }, delay);
    return this;
  }

  private cancel(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }
}
