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
