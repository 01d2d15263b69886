import fc from 'fast-check';
import { Subject } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { type Burst, type FileWritten, REASON_PATHS, coalesceFileWrites, coalesceFileWritesRx, formatReason } from '../../src/bus/index.ts';

type Coalesce = typeof coalesceFileWrites;

/** Feed writes at the given virtual times through one implementation; return `[frame, burst]` per emission. */
function run(impl: Coalesce, writes: Array<{ t: number; ws: string; path: string }>, quietMs: number, maxWaitMs: number, idleExpireMs = 30_000) {
  const ts = new TestScheduler((a, b) => expect(a).toEqual(b));
  const out: Array<[number, Burst]> = [];
  ts.run(() => {
    const src = new Subject<FileWritten>();
    src.pipe(impl({ quietMs, maxWaitMs, idleExpireMs, scheduler: ts })).subscribe((b) => out.push([ts.now(), b]));
    for (const w of writes) ts.schedule(() => src.next({ workspaceId: w.ws, path: w.path, at: w.t }), w.t);
  });
  // Same-frame flushes of different workspaces may come in either order: compare by (frame, workspace).
  return out.sort((x, y) => x[0] - y[0] || x[1].workspaceId.localeCompare(y[1].workspaceId));
}

describe('coalesceFileWrites', () => {
  it('emits exactly what the plain RxJS operator chain emits, for any write pattern', () => {
    const write = fc.record({ gap: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 6000 })), ws: fc.constantFrom('a', 'b', 'c'), file: fc.integer({ min: 0, max: 5 }) });
    fc.assert(
      fc.property(fc.array(write, { minLength: 1, maxLength: 80 }), fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 0, max: 20_000 }), (ws, quietMs, extra) => {
        let t = 0;
        const writes = ws.map((w) => ({ t: (t += w.gap), ws: w.ws, path: `f${w.file}` }));
        const fast = run(coalesceFileWrites, writes, quietMs, quietMs + extra);
        expect(fast).toEqual(run(coalesceFileWritesRx, writes, quietMs, quietMs + extra));
        // Nothing lost: every write is in exactly one burst, and no burst outlives its maxWait.
        expect(fast.reduce((n, [, b]) => n + b.writes, 0)).toBe(writes.length);
        for (const [at, b] of fast) expect(at - b.firstAt).toBeLessThanOrEqual(quietMs + extra);
      }),
      { numRuns: 300 },
    );
  });

  it('emits the same when groups are released and reused all the time', () => {
    // idleExpireMs = maxWaitMs: a group never ends before its burst in the operator chain, and released groups
    // are reused by other workspaces in the coalescer; 40 files make bursts past the scan-or-Set threshold.
    const write = fc.record({ gap: fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 3000 })), ws: fc.integer({ min: 0, max: 7 }), file: fc.integer({ min: 0, max: 40 }) });
    fc.assert(
      fc.property(fc.array(write, { minLength: 1, maxLength: 150 }), fc.integer({ min: 1, max: 500 }), fc.integer({ min: 0, max: 1000 }), (ws, quietMs, extra) => {
        let t = 0;
        const writes = ws.map((w) => ({ t: (t += w.gap), ws: `w${w.ws}`, path: `src/f${w.file}.ts` }));
        const maxWaitMs = quietMs + extra;
        expect(run(coalesceFileWrites, writes, quietMs, maxWaitMs, maxWaitMs)).toEqual(run(coalesceFileWritesRx, writes, quietMs, maxWaitMs, maxWaitMs));
      }),
      { numRuns: 200 },
    );
  });

  it('flushes open bursts when the source completes', () => {
    const ts = new TestScheduler((a, b) => expect(a).toEqual(b));
    ts.run(({ cold, expectObservable }) => {
      const src = cold<FileWritten>('a 99ms |', { a: { workspaceId: 'ws-a', path: 'x', at: 0 } });
      const bursts = src.pipe(coalesceFileWrites({ quietMs: 2000, maxWaitMs: 15_000, idleExpireMs: 30_000, scheduler: ts }));
      expectObservable(bursts).toBe('100ms (a|)', { a: { workspaceId: 'ws-a', paths: ['x'], writes: 1, firstAt: 0, lastAt: 0 } });
    });
  });
});

describe('formatReason', () => {
  it('names up to 10 files, then says how many more, with the count always exact', () => {
    const paths = Array.from({ length: 25 }, (_, i) => `p${i}`);
    expect(formatReason({ paths, writes: 31 })).toBe(
      `25 files written (31 writes): ${paths.slice(0, REASON_PATHS).join(', ')}, …and 15 more`,
    );
    expect(formatReason({ paths: ['a.ts'], writes: 1 })).toBe('1 file written: a.ts');
  });
});
