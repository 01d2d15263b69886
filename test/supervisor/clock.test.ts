/**
 * The system clock's timers wait their whole time, however long: a policy deadline weeks away (dormancy,
 * a yearly schedule) must not become Node's 1 ms overflow timer that fires, re-arms and fires again.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../src/supervisor/clock.ts';

const DAY = 86_400_000;

afterEach(() => {
  vi.useRealTimers();
});

describe('systemClock', () => {
  it('fires a 30-day timeout once, after 30 days, not at once', () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    systemClock.setTimeout(fn, 30 * DAY);
    vi.advanceTimersByTime(29 * DAY);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(DAY);
    expect(fn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(60 * DAY);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('clears a long timeout at any step of its wait, and a short one as before', () => {
    vi.useFakeTimers();
    const long = vi.fn();
    const short = vi.fn();
    const a = systemClock.setTimeout(long, 100 * DAY);
    const b = systemClock.setTimeout(short, 1_000);
    vi.advanceTimersByTime(50 * DAY - 1_000_000); // past the first step of the long wait, short fired
    expect(short).toHaveBeenCalledTimes(1);
    systemClock.clearTimeout(a);
    systemClock.clearTimeout(b);
    vi.advanceTimersByTime(200 * DAY);
    expect(long).not.toHaveBeenCalled();
  });
});
