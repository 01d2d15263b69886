import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { ShuttingDownError } from '../../src/errors.ts';
import {
  type BusCommand,
  type BusSink,
  type FileWritten,
  InvalidBusEventError,
  type RestartRequest,
  UnknownWorkspaceError,
  createBus,
} from '../../src/bus/index.ts';
import { thrown } from '../helpers/harness.ts';

/** A recording fake of the supervisor's port: `known` workspaces exist, everything delivered is kept in order. */
function recordingSink(known: string[] = ['ws-a', 'ws-b']) {
  const alive = new Set(known);
  const calls: Array<{ id: string; req?: RestartRequest; alive?: boolean; owner?: string }> = [];
  const sink: BusSink = {
    accepts: (id) => alive.has(id),
    restart: (id, req) => void calls.push({ id, req }),
    liveness: (id, a) => void calls.push({ id, alive: a }),
    claim: (id, owner) => void calls.push({ id, owner }),
  };
  return { sink, calls, alive };
}

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));

/** `a 499ms b 499ms c …`: n writes `f0…f{n-1}` to one workspace, `gapMs` apart, as a hot marble. */
function writeMarble(n: number, gapMs: number): { marble: string; values: Record<string, FileWritten> } {
  const letters = Array.from({ length: n }, (_, i) => String.fromCharCode(0x4e00 + i)); // n distinct one-frame symbols
  const values = Object.fromEntries(letters.map((l, i) => [l, { workspaceId: 'ws-a', path: `f${i}`, at: i * gapMs }]));
  return { marble: letters.join(` ${gapMs - 1}ms `), values };
}

const fileWrite = (reason: string, burstNo: number, workspaceId = 'ws-a'): BusCommand => ({
  kind: 'restart',
  workspaceId,
  req: { source: 'file-write', reason, requester: `bus:file-write:${burstNo}` },
});

describe('bus', () => {
  describe('file-write coalescing', () => {
    it('turns 10 writes in 5 s into 1 restart, after the quiet window, naming all 10 paths', () => {
      const ts = scheduler();
      ts.run(({ hot, expectObservable }) => {
        const { sink } = recordingSink();
        const bus = createBus({ sink, scheduler: ts });
        const { marble, values } = writeMarble(10, 500);
        hot(marble, values).subscribe((w) => bus.fileWritten(w));
        // last write at 4500 ms + 2000 ms of quiet
        expectObservable(bus.commands$).toBe('6500ms a', {
          a: fileWrite('10 files written: f0, f1, f2, f3, f4, f5, f6, f7, f8, f9', 1),
        });
      });
    });

    it('restarts at each maxWait while writes arrive every second for 60 s, then once after the last', () => {
      const ts = scheduler();
      ts.run(({ hot, expectObservable }) => {
        const { sink } = recordingSink();
        const bus = createBus({ sink, scheduler: ts });
        const { marble, values } = writeMarble(60, 1000);
        hot(marble, values).subscribe((w) => bus.fileWritten(w));
        // Bursts open at 0, 16 s, 32 s, 48 s; each closes at open + 15 s (a write due at that instant is in it),
        // and the last closes 2 s after the write at 59 s.
        expectObservable(bus.commands$).toBe('15s a 15999ms b 15999ms c 13999ms d', {
          a: fileWrite(`16 files written: ${names(0, 10)}, …and 6 more`, 1),
          b: fileWrite(`16 files written: ${names(16, 26)}, …and 6 more`, 2),
          c: fileWrite(`16 files written: ${names(32, 42)}, …and 6 more`, 3),
          d: fileWrite(`12 files written: ${names(48, 58)}, …and 2 more`, 4),
        });
      });
    });

    it('never merges two workspaces', () => {
      const ts = scheduler();
      ts.run(({ hot, expectObservable }) => {
        const { sink } = recordingSink();
        const bus = createBus({ sink, scheduler: ts });
        hot('a 99ms b 99ms c 99ms d', {
          a: { workspaceId: 'ws-a', path: 'x.ts', at: 0 },
          b: { workspaceId: 'ws-b', path: 'y.ts', at: 100 },
          c: { workspaceId: 'ws-a', path: 'z.ts', at: 200 },
          d: { workspaceId: 'ws-b', path: 'x.ts', at: 300 },
        }).subscribe((w) => bus.fileWritten(w));
        expectObservable(bus.commands$).toBe('2200ms a 99ms b', {
          a: fileWrite('2 files written: x.ts, z.ts', 1, 'ws-a'),
          b: fileWrite('2 files written: y.ts, x.ts', 2, 'ws-b'),
        });
      });
    });

    it('dedupes repeated paths in first-write order and keeps the write count exact', () => {
      const ts = scheduler();
      ts.run(({ hot, expectObservable }) => {
        const { sink } = recordingSink();
        const bus = createBus({ sink, scheduler: ts, quietMs: 100 });
        const w = (path: string): FileWritten => ({ workspaceId: 'ws-a', path, at: 0 });
        hot('a b a c a', { a: w('a.ts'), b: w('b.ts'), c: w('c.ts') }).subscribe((x) => bus.fileWritten(x));
        expectObservable(bus.commands$).toBe('104ms a', { a: fileWrite('3 files written (5 writes): a.ts, b.ts, c.ts', 1) });
      });
    });

    it('releases an idle group, and counts writes, bursts and folds', () => {
      const ts = scheduler();
      ts.run(() => {
        const { sink } = recordingSink();
        const bus = createBus({ sink, scheduler: ts, quietMs: 1000, idleExpireMs: 5000 });
        const seen: number[] = [];
        const probe = (at: number): void => void ts.schedule(() => seen.push(bus.counters().activeGroups), at);
        probe(0);
        ts.schedule(() => {
          bus.fileWritten({ workspaceId: 'ws-a', path: 'a', at: 10 });
          bus.fileWritten({ workspaceId: 'ws-a', path: 'b', at: 10 });
          bus.fileWritten({ workspaceId: 'ws-b', path: 'c', at: 10 });
        }, 10);
        probe(500); // both bursts open
        probe(1500); // flushed at 1010, idling towards release
        probe(6500); // released at 1010 + 5000
        ts.schedule(() => {
          expect(seen).toEqual([0, 2, 2, 0]);
          expect(bus.counters()).toMatchObject({ writesSeen: 3, bursts: 2, restartsIssued: 2, writesFolded: 1, activeGroups: 0 });
        }, 7000);
      });
    });
  });

  describe('at the edge', () => {
    it('rejects a write for an unknown or destroyed workspace with a clear error and queues nothing', () => {
      const ts = scheduler();
      ts.run(({ expectObservable }) => {
        const { sink } = recordingSink(['ws-a']);
        const bus = createBus({ sink, scheduler: ts });
        expect(() => bus.fileWritten({ workspaceId: 'ws-gone', path: 'a', at: 0 })).toThrow(UnknownWorkspaceError);
        expect(() => bus.liveness({ workspaceId: 'ws-gone', alive: false, detail: 'x' })).toThrow(
          /liveness event rejected: workspace ws-gone does not exist or is destroyed/,
        );
        expect(bus.counters()).toMatchObject({ rejected: 2, writesSeen: 0, activeGroups: 0 });
        expectObservable(bus.commands$, '^ 10s !').toBe('');
      });
    });

    it('rejects a bad event with a named error and keeps working', () => {
      const ts = scheduler();
      ts.run(({ expectObservable }) => {
        const { sink } = recordingSink();
        const bus = createBus({ sink, scheduler: ts, quietMs: 100 });
        const bad: unknown[] = [null, { workspaceId: 42, path: 'a', at: 0 }, { workspaceId: 'WS A', path: 'a', at: 0 }, { workspaceId: 'ws-a', path: '', at: 0 }, { workspaceId: 'ws-a', path: 'a', at: 'now' }];
        for (const ev of bad) expect(() => bus.fileWritten(ev as FileWritten)).toThrow(InvalidBusEventError);
        const err = thrown(() => bus.fileWritten({ workspaceId: 'ws-a', path: 'a', at: Number.NaN }));
        expect(err).toBeInstanceOf(InvalidBusEventError);
        expect(err).toMatchObject({ code: 'WSUP_INVALID_ARGUMENT', kind: 'file-write', field: 'at', workspaceId: 'ws-a' });
        expect((err as Error).message).toBe('invalid file-write event: at must be a finite number of ms, got NaN');
        expect(() => bus.restart({ workspaceId: 'ws-a', source: 'cron' as 'manual', reason: 'r', requester: 'q' })).toThrow(
          /invalid restart event: source "cron" is not one of manual, programmatic, file-write, liveness, claim/,
        );
        bus.fileWritten({ workspaceId: 'ws-a', path: 'ok.ts', at: 0 });
        expect(bus.counters().rejected).toBe(7);
        expectObservable(bus.commands$).toBe('100ms a', { a: fileWrite('1 file written: ok.ts', 1) });
      });
    });
  });

  describe('routing', () => {
    it('passes liveness, claims and restarts straight through, in order', () => {
      const ts = scheduler();
      ts.run(({ expectObservable }) => {
        const { sink } = recordingSink();
        const bus = createBus({ sink, scheduler: ts });
        ts.schedule(() => bus.liveness({ workspaceId: 'ws-a', alive: false, detail: 'container exited 137' }), 5);
        ts.schedule(() => bus.claim({ workspaceId: 'ws-b', ownerId: 'node-2', claimBuildId: 'b-7' }), 6);
        ts.schedule(() => bus.restart({ workspaceId: 'ws-a', source: 'manual', reason: 'cli', requester: 'cli:alice' }), 7);
        expectObservable(bus.commands$).toBe('5ms a b c', {
          a: { kind: 'liveness', workspaceId: 'ws-a', alive: false, detail: 'container exited 137' },
          b: { kind: 'claim', workspaceId: 'ws-b', ownerId: 'node-2', claimBuildId: 'b-7' },
          c: { kind: 'restart', workspaceId: 'ws-a', req: { source: 'manual', reason: 'cli', requester: 'cli:alice' } },
        });
      });
    });

    it('drops a burst whose workspace was destroyed before it flushed', () => {
      const ts = scheduler();
      ts.run(() => {
        const { sink, calls, alive } = recordingSink();
        const bus = createBus({ sink, scheduler: ts });
        bus.fileWritten({ workspaceId: 'ws-a', path: 'a', at: 0 });
        ts.schedule(() => alive.delete('ws-a'), 1000);
        ts.schedule(() => {
          expect(calls).toEqual([]);
          expect(bus.counters()).toMatchObject({ bursts: 1, restartsIssued: 0, dropped: 1 });
        }, 3000);
      });
    });

    it('reports a throwing or rejecting sink through onSinkError and keeps routing', async () => {
      const errors: string[] = [];
      const sink: BusSink = {
        accepts: () => true,
        restart: (id) => (id === 'ws-a' ? Promise.reject(new Error('actor busy')) : undefined),
        liveness: () => {
          throw new Error('liveness broke');
        },
      };
      const bus = createBus({ sink, onSinkError: (err) => errors.push((err as Error).message) });
      bus.restart({ workspaceId: 'ws-a', source: 'manual', reason: 'r', requester: 'q' });
      bus.liveness({ workspaceId: 'ws-a', alive: false, detail: 'gone' });
      bus.restart({ workspaceId: 'ws-b', source: 'manual', reason: 'r', requester: 'q' });
      await bus.close();
      await Promise.resolve();
      expect(errors.sort()).toEqual(['actor busy', 'liveness broke']);
      expect(bus.counters()).toMatchObject({ restartsIssued: 2, sinkErrors: 2 });
    });

    it('counts a throwing accepts at flush as a sink error, and later bursts still flush on time', () => {
      const ts = scheduler();
      ts.run(() => {
        const errors: string[] = [];
        const { sink, calls } = recordingSink();
        let broken = false;
        const accepts = sink.accepts;
        sink.accepts = (id) => {
          if (broken) throw new Error('accepts broke');
          return accepts(id);
        };
        const bus = createBus({ sink, scheduler: ts, quietMs: 1000, onSinkError: (err) => errors.push((err as Error).message) });
        bus.fileWritten({ workspaceId: 'ws-a', path: 'a', at: 0 });
        ts.schedule(() => (broken = true), 500);
        ts.schedule(() => {
          broken = false;
          bus.fileWritten({ workspaceId: 'ws-b', path: 'b', at: 1500 });
        }, 1500);
        ts.schedule(() => {
          expect(errors).toEqual(['accepts broke']);
          expect(calls.map((c) => [c.id, c.req?.reason])).toEqual([['ws-b', '1 file written: b']]);
          expect(bus.counters()).toMatchObject({ bursts: 2, restartsIssued: 1, sinkErrors: 1 });
        }, 3000);
      });
    });

    it('starts every burst empty, also in a group released by one workspace and reused by another', () => {
      const ts = scheduler();
      ts.run(() => {
        const { sink, calls } = recordingSink(['ws-a', 'ws-b']);
        const bus = createBus({ sink, scheduler: ts, quietMs: 1000, maxWaitMs: 1000, idleExpireMs: 1000 });
        const write = (at: number, workspaceId: string, ...paths: string[]): void =>
          void ts.schedule(() => paths.forEach((path) => bus.fileWritten({ workspaceId, path, at })), at);
        write(0, 'ws-a', 'a1', 'a2', 'a1', 'a3'); // flushed at 1000, released at 2000
        write(1500, 'ws-a', 'a4'); // reopens its idle group: only a4
        write(5000, 'ws-b', 'b1'); // ws-a released at 3500: ws-b gets a spare group
        write(8000, 'ws-a', 'a5', 'a5');
        ts.schedule(() => {
          expect(calls.map((c) => [c.id, c.req?.reason])).toEqual([
            ['ws-a', '3 files written (4 writes): a1, a2, a3'],
            ['ws-a', '1 file written: a4'],
            ['ws-b', '1 file written: b1'],
            ['ws-a', '1 file written (2 writes): a5'],
          ]);
          expect(bus.counters()).toMatchObject({ writesSeen: 8, bursts: 4, activeGroups: 0 });
        }, 12_000);
      });
    });
  });

  describe('close', () => {
    it('flushes open bursts at once, then refuses events; closing twice is harmless', async () => {
      const { sink, calls } = recordingSink();
      const ts = scheduler();
      const bus = createBus({ sink, scheduler: ts });
      bus.fileWritten({ workspaceId: 'ws-a', path: 'a', at: 0 });
      bus.fileWritten({ workspaceId: 'ws-b', path: 'b', at: 0 });
      await bus.close();
      expect(calls.map((c) => [c.id, c.req?.reason])).toEqual([
        ['ws-a', '1 file written: a'],
        ['ws-b', '1 file written: b'],
      ]);
      expect(() => bus.fileWritten({ workspaceId: 'ws-a', path: 'a', at: 0 })).toThrow(ShuttingDownError);
      await expect(bus.close()).resolves.toBeUndefined();
      expect(bus.counters().activeGroups).toBe(0);
      ts.flush(); // no timer is left behind to fire after close
      expect(calls).toHaveLength(2);
    });
  });
});

function names(from: number, to: number): string {
  return Array.from({ length: to - from }, (_, i) => `f${from + i}`).join(', ');
}
