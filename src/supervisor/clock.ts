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

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as NodeJS.Timeout),
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
