import fc from 'fast-check';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { ShuttingDownError } from '../../src/errors.ts';
import { type ActivityEvent, type BusCommand, type BusSink, InvalidBusEventError, UnknownWorkspaceError, createBus } from '../../src/bus/index.ts';
import { thrown } from '../helpers/harness.ts';

/** A recording fake of the supervisor's port: `known` workspaces exist; activity deliveries are kept with their time. */
function recordingSink(ts: TestScheduler, known: string[] = ['ws-a', 'ws-b']) {
  const alive = new Set(known);
  const calls: Array<{ id: string; source: string; t: number }> = [];
  const sink: BusSink = {
    accepts: (id) => alive.has(id),
    restart: () => undefined,
    liveness: () => undefined,
    activity: (id, source) => void calls.push({ id, source, t: ts.now() }),
  };
  return { sink, calls, alive };
}

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
const act = (source: string, workspaceId = 'ws-a'): BusCommand => ({ kind: 'activity', workspaceId, source });
const ev = (source: string, workspaceId = 'ws-a'): ActivityEvent => ({ workspaceId, source, at: 0 });

describe('bus activity', () => {
  it('delivers the first event at once and folds the rest of its window into one trailing delivery', () => {
    const ts = scheduler();
    ts.run(({ hot, expectObservable }) => {
      const { sink } = recordingSink(ts);
      const bus = createBus({ sink, scheduler: ts, activityWindowMs: 1000 });
      hot('a 199ms b 499ms c', { a: ev('agent heartbeat'), b: ev('files.written'), c: ev('cli:alice') }).subscribe((e) => bus.activity(e));
      // leading at 0; trailing when the window closes at 1000, carrying the latest source
      expectObservable(bus.commands$, '^ 5s !').toBe('a 999ms c', { a: act('agent heartbeat'), c: act('cli:alice') });
    });
  });

  it('keeps at most one delivery per window: a trailing delivery opens the next window', () => {
    const ts = scheduler();
    ts.run(({ hot, expectObservable }) => {
      const { sink } = recordingSink(ts);
      const bus = createBus({ sink, scheduler: ts, activityWindowMs: 100 });
      // every 30 ms from 0 to 270 ms: one delivery per 100 ms window, the window after 300 closes empty
      hot('a 29ms b 29ms c 29ms d 29ms e 29ms f 29ms g 29ms h 29ms i 29ms j', {
        a: ev('s0'), b: ev('s1'), c: ev('s2'), d: ev('s3'), e: ev('s4'), f: ev('s5'), g: ev('s6'), h: ev('s7'), i: ev('s8'), j: ev('s9'),
      }).subscribe((e) => bus.activity(e));
      expectObservable(bus.commands$, '^ 1s !').toBe('a 99ms b 99ms c 99ms d', {
        a: act('s0'), // 0
        b: act('s3'), // 100: s1 (30), s2 (60), s3 (90) folded, latest wins
        c: act('s6'), // 200: s4 (120), s5 (150), s6 (180)
        d: act('s9'), // 300: s7 (210), s8 (240), s9 (270)
      });
    });
  });

  it('never merges two workspaces', () => {
    const ts = scheduler();
    ts.run(({ hot, expectObservable }) => {
      const { sink } = recordingSink(ts);
      const bus = createBus({ sink, scheduler: ts, activityWindowMs: 1000 });
      hot('a 99ms b 99ms c 99ms d', { a: ev('x', 'ws-a'), b: ev('y', 'ws-b'), c: ev('z', 'ws-a'), d: ev('w', 'ws-b') }).subscribe((e) => bus.activity(e));
      expectObservable(bus.commands$, '^ 5s !').toBe('a 99ms b 899ms c 99ms d', {
        a: act('x', 'ws-a'),
        b: act('y', 'ws-b'),
        c: act('z', 'ws-a'),
        d: act('w', 'ws-b'),
      });
    });
  });

  it('leaves no entry behind for a quiet workspace once its window closes', () => {
    const ts = scheduler();
    ts.run(() => {
      const { sink, calls } = recordingSink(ts);
      const bus = createBus({ sink, scheduler: ts, activityWindowMs: 1000 });
      const seen: number[] = [];
      const probe = (at: number): void => void ts.schedule(() => seen.push(bus.counters().activityWindows), at);
      bus.activity(ev('once', 'ws-a'));
      bus.activity(ev('first', 'ws-b'));
      ts.schedule(() => bus.activity(ev('second', 'ws-b')), 500);
      probe(999); // both windows open
      probe(1500); // ws-a released at 1000; ws-b delivered its trailing event at 1000 and is in its next window
      probe(2001); // ws-b released at 2000: its second window closed with nothing pending
      ts.schedule(() => {
        expect(seen).toEqual([2, 1, 0]);
        expect(calls).toEqual([
          { id: 'ws-a', source: 'once', t: 0 },
          { id: 'ws-b', source: 'first', t: 0 },
          { id: 'ws-b', source: 'second', t: 1000 },
        ]);
      }, 3000);
    });
  });

  it('coalesces over a 5 s window by default', () => {
    const ts = scheduler();
    ts.run(({ hot, expectObservable }) => {
      const { sink } = recordingSink(ts);
      const bus = createBus({ sink, scheduler: ts });
      hot('a 999ms b 2999ms c', { a: ev('s0'), b: ev('s1'), c: ev('s2') }).subscribe((e) => bus.activity(e));
      // s1 (1 s) and s2 (4 s) fold into the one trailing delivery when the window closes at 5 s
      expectObservable(bus.commands$, '^ 20s !').toBe('a 4999ms c', { a: act('s0'), c: act('s2') });
    });
  });

  it('turns 1,000 events in one window into 2 deliveries, and counts what it folded', () => {
    const ts = scheduler();
    ts.run(() => {
      const { sink, calls } = recordingSink(ts);
      const bus = createBus({ sink, scheduler: ts, activityWindowMs: 1000 });
      for (let i = 0; i < 1000; i++) ts.schedule(() => bus.activity(ev(`beat-${i}`)), i % 1000);
      ts.schedule(() => {
        expect(calls).toEqual([
          { id: 'ws-a', source: 'beat-0', t: 0 },
          { id: 'ws-a', source: 'beat-999', t: 1000 },
        ]);
        expect(bus.counters()).toMatchObject({ activitySeen: 1000, activityDelivered: 2, activityFolded: 998, activityWindows: 0 });
      }, 5000);
    });
  });

  it('holds, for any pattern of events: one delivery per window, the latest source last, nothing left behind', () => {
    const event = fc.record({ gap: fc.oneof(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 3000 })), ws: fc.constantFrom('ws-a', 'ws-b', 'ws-c') });
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 120 }), fc.integer({ min: 1, max: 2000 }), (events, windowMs) => {
        const ts = scheduler();
        const { sink, calls } = recordingSink(ts, ['ws-a', 'ws-b', 'ws-c']);
        const bus = createBus({ sink, scheduler: ts, activityWindowMs: windowMs });
        let t = 0;
        const timed = events.map((e, i) => ({ t: (t += e.gap), ws: e.ws, source: `e${i}` }));
        ts.run(() => {
          for (const e of timed) ts.schedule(() => bus.activity(ev(e.source, e.ws)), e.t);
        });
        for (const ws of ['ws-a', 'ws-b', 'ws-c']) {
          const mine = timed.filter((e) => e.ws === ws);
          const got = calls.filter((c) => c.id === ws);
          if (mine.length === 0) {
            expect(got).toEqual([]);
            continue;
          }
          expect(got[0]).toEqual({ id: ws, source: mine[0]!.source, t: mine[0]!.t }); // leading: at once
          for (let i = 1; i < got.length; i++) expect(got[i]!.t - got[i - 1]!.t).toBeGreaterThanOrEqual(windowMs);
          const last = got.at(-1)!;
          expect(last.source).toBe(mine.at(-1)!.source); // the latest activity is never lost
          expect(last.t - mine.at(-1)!.t).toBeLessThanOrEqual(windowMs);
        }
        const c = bus.counters();
        expect(c.activitySeen).toBe(timed.length);
        expect(c.activityDelivered + c.activityFolded).toBe(timed.length);
        expect(c.activityWindows).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  describe('at the edge', () => {
    it('rejects a bad event with an error naming the field, and keeps working', () => {
      const ts = scheduler();
      ts.run(({ expectObservable }) => {
        const { sink } = recordingSink(ts);
        const bus = createBus({ sink, scheduler: ts, activityWindowMs: 1000 });
        const cases: Array<[unknown, string]> = [
          [null, 'invalid activity event: event must be an object, got null'],
          [{ workspaceId: 7, source: 's', at: 0 }, 'invalid activity event: workspaceId 7 is not a workspace id'],
          [{ workspaceId: 'WS A', source: 's', at: 0 }, 'invalid activity event: workspaceId "WS A" is not a workspace id'],
          [{ workspaceId: 'ws-a', at: 0 }, 'invalid activity event: source must be a string, got undefined (name who or what'],
          [{ workspaceId: 'ws-a', source: '', at: 0 }, 'invalid activity event: source is empty (name who or what'],
          [{ workspaceId: 'ws-a', source: 'x'.repeat(129), at: 0 }, 'invalid activity event: source is longer than 128 chars (name who or what used the workspace'],
          [{ workspaceId: 'ws-a', source: 's', at: Number.POSITIVE_INFINITY }, 'invalid activity event: at must be a finite number of ms, got Infinity'],
        ];
        for (const [bad, message] of cases) {
          const err = thrown(() => bus.activity(bad as ActivityEvent));
          expect(err).toBeInstanceOf(InvalidBusEventError);
          expect(err).toMatchObject({ code: 'WSUP_INVALID_ARGUMENT', kind: 'activity' });
          expect((err as Error).message.startsWith(message)).toBe(true);
        }
        expect(thrown(() => bus.activity({ workspaceId: 'ws-a', source: '', at: 0 }))).toMatchObject({ field: 'source', workspaceId: 'ws-a' });
        expect(bus.counters()).toMatchObject({ rejected: cases.length + 1, activitySeen: 0 });
        ts.schedule(() => bus.activity(ev('ok')), 10);
        expectObservable(bus.commands$, '^ 5s !').toBe('10ms a', { a: act('ok') });
      });
    });

    it('rejects activity for an unknown or destroyed workspace, like a file write, and keeps nothing', () => {
      const ts = scheduler();
      ts.run(({ expectObservable }) => {
        const { sink } = recordingSink(ts, ['ws-a']);
        const bus = createBus({ sink, scheduler: ts, activityWindowMs: 1000 });
        const err = thrown(() => bus.activity(ev('beat', 'ws-gone')));
        expect(err).toBeInstanceOf(UnknownWorkspaceError);
        expect((err as Error).message).toBe('activity event rejected: workspace ws-gone does not exist or is destroyed; create it before sending events');
        expect(bus.counters()).toMatchObject({ rejected: 1, activitySeen: 0, activityWindows: 0 });
        expectObservable(bus.commands$, '^ 5s !').toBe('');
      });
    });

    it('drops a trailing delivery whose workspace was destroyed inside the window', () => {
      const ts = scheduler();
      ts.run(() => {
        const { sink, calls, alive } = recordingSink(ts);
        const bus = createBus({ sink, scheduler: ts, activityWindowMs: 1000 });
        bus.activity(ev('first'));
        ts.schedule(() => bus.activity(ev('second')), 100);
        ts.schedule(() => alive.delete('ws-a'), 500);
        ts.schedule(() => {
          expect(calls.map((c) => c.source)).toEqual(['first']);
          expect(bus.counters()).toMatchObject({ activityDelivered: 1, dropped: 1, activityWindows: 1 });
        }, 1500);
      });
    });

    it('counts activity as dropped when the sink takes none', () => {
      const sink: BusSink = { accepts: () => true, restart: () => undefined, liveness: () => undefined };
      const bus = createBus({ sink });
      bus.activity(ev('beat'));
      expect(bus.counters()).toMatchObject({ activitySeen: 1, activityDelivered: 0, dropped: 1 });
      void bus.close();
    });

    it('refuses a window that is not a positive number of ms', () => {
      const { sink } = recordingSink(scheduler());
      expect(() => createBus({ sink, activityWindowMs: 0 })).toThrow('createBus: activityWindowMs must be a positive number of ms, got 0');
    });
  });

  it('close delivers every pending trailing source at once, then refuses activity; no timer is left', async () => {
    const ts = scheduler();
    const { sink, calls } = recordingSink(ts);
    const bus = createBus({ sink, scheduler: ts, activityWindowMs: 1000 });
    bus.activity(ev('a1', 'ws-a'));
    bus.activity(ev('a2', 'ws-a'));
    bus.activity(ev('b1', 'ws-b'));
    await bus.close();
    expect(calls.map((c) => [c.id, c.source])).toEqual([
      ['ws-a', 'a1'],
      ['ws-b', 'b1'],
      ['ws-a', 'a2'],
    ]);
    expect(() => bus.activity(ev('late'))).toThrow(ShuttingDownError);
    expect(bus.counters().activityWindows).toBe(0);
    ts.flush();
    expect(calls).toHaveLength(3);
  });
});
