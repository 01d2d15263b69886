/** The docker event watch's states and backoff, on a fake clock and a scripted engine. */
import { describe, expect, it, vi } from 'vitest';
import { DockerEventWatch, type EngineEvent, type WatchTimers } from '../../src/providers/docker-events.ts';

/** Timers that fire only when the test says so; records every delay asked for. */
function fakeClock() {
  const pending = new Map<number, () => void>();
  const delays: number[] = [];
  let next = 0;
  const timers: WatchTimers = {
    setTimeout: (fn, ms) => {
      delays.push(ms);
      pending.set(++next, fn);
      return next;
    },
    clearTimeout: (h) => void pending.delete(h as number),
  };
  const fire = () => {
    const entries = [...pending];
    pending.clear();
    for (const [, fn] of entries) fn();
  };
  return { timers, delays, fire, pending: () => pending.size };
}

/** An event stream the test feeds and ends. */
function stream() {
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  let ended = false;
  const iterable: AsyncIterable<string> = {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        while (lines.length > 0) yield lines.shift()!;
        if (ended) return;
        await new Promise<void>((r) => (wake = r));
      }
    },
  };
  const poke = () => {
    wake?.();
    wake = null;
  };
  return { iterable, push: (l: string) => (lines.push(l), poke()), end: () => ((ended = true), poke()) };
}

describe('DockerEventWatch', () => {
  it('backs off on the injected clock, doubling to the cap, and resets once a stream opens', async () => {
    const clock = fakeClock();
    const streams: Array<ReturnType<typeof stream>> = [];
    let engineUp = false;
    const connect = vi.fn((_since: number | undefined) => {
      if (!engineUp) return Promise.reject(new Error('connect ECONNREFUSED'));
      const s = stream();
      streams.push(s);
      return Promise.resolve(s.iterable);
    });
    const events: EngineEvent[] = [];
    const onReconnected = vi.fn(() => Promise.resolve());
    const w = new DockerEventWatch({ connect, onEvent: (e) => events.push(e), onReconnected, timers: clock.timers, initialMs: 100, maxMs: 300 });

    for (const expected of [100, 200, 300, 300]) {
      await vi.waitFor(() => expect(w.state).toBe('backoff'));
      expect(clock.delays.at(-1)).toBe(expected);
      clock.fire();
      expect(w.state).toBe('connecting');
    }
    engineUp = true;
    await vi.waitFor(() => expect(w.state).toBe('backoff'));
    clock.fire();
    await vi.waitFor(() => expect(w.state).toBe('open'));
    expect(w.nextBackoffMs).toBe(100);
    expect(onReconnected).not.toHaveBeenCalled(); // the first stream: no gap to look into

    streams[0]!.push(`${JSON.stringify({ Action: 'die', time: 42 })}\n`);
    await vi.waitFor(() => expect(events).toEqual([{ Action: 'die', time: 42 }]));
    streams[0]!.end();
    await vi.waitFor(() => expect(w.state).toBe('backoff'));
    expect(clock.delays.at(-1)).toBe(100);
    clock.fire();
    await vi.waitFor(() => expect(w.state).toBe('open'));
    expect(connect).toHaveBeenLastCalledWith(42, expect.anything());
    expect(onReconnected).toHaveBeenCalledTimes(1);

    w.close();
    expect(w.state).toBe('closed');
    await vi.waitFor(() => expect(w.state).toBe('closed'));
    expect(clock.pending()).toBe(0);
  });

  it('schedules nothing after close, even when a connect was in flight', async () => {
    const clock = fakeClock();
    let fail: (err: Error) => void = () => undefined;
    const w = new DockerEventWatch({
      connect: () => new Promise((_, reject) => (fail = reject)),
      onEvent: () => undefined,
      onReconnected: () => Promise.resolve(),
      timers: clock.timers,
    });
    expect(w.state).toBe('connecting');
    w.close();
    fail(new Error('aborted'));
    await vi.waitFor(() => expect(w.state).toBe('closed'));
    expect(clock.delays).toEqual([]);
  });
});
