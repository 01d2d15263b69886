/**
 * The reference implementation of file-write coalescing, written as a plain RxJS operator chain: groupBy with an
 * idle duration selector, then per group `buffer` closed by race(quiet debounce, maxWait timer).
 *
 * It reads like the spec, and the tests run every scenario through it and through the hand-rolled
 * {@link coalesceFileWrites} and require identical output. It is not the one the bus uses: measured at
 * 33,000 events/s on 1M writes over 10,000 workspaces, 30× under the 1M events/s target (the profile is
 * subscription bookkeeping, `Subscription.unsubscribe`/`arrRemove`, and garbage collection).
 * One deliberate difference: a group here is released `idleExpireMs` after its last write (it must be ≥ quietMs
 * or the group would end, and flush, early); the coalescer releases it `idleExpireMs` after its last flush.
 */
import {
  type Observable,
  type OperatorFunction,
  buffer,
  connect,
  debounceTime,
  exhaustMap,
  filter,
  finalize,
  groupBy,
  map,
  mergeMap,
  race,
  startWith,
  take,
  timer,
} from 'rxjs';
import { type CoalesceOptions, toBurst } from './coalesce.ts';
import type { Burst, FileWritten } from './types.ts';

/**
 * One burst closes on whichever comes first: `quietMs` since the latest write, or `maxWaitMs` since the burst's
 * first write. `exhaustMap` starts exactly one closer per burst (at its first write), so the maxWait clock
 * restarts with every burst, as lodash's does.
 */
function burstCloser(writes: Observable<FileWritten>, o: CoalesceOptions): Observable<unknown> {
  return writes.pipe(
    exhaustMap(() =>
      race(
        // startWith: the write that opened the burst was emitted before this subscription existed.
        writes.pipe(startWith(null), debounceTime(o.quietMs, o.scheduler)),
        timer(o.maxWaitMs, o.scheduler),
      ).pipe(take(1)),
    ),
  );
}

/**
 * `groupBy` with a duration selector: a group completes after `idleExpireMs` of silence, so a workspace seen once
 * costs nothing afterwards (a last-fire map keyed by workspace grows with every workspace ever written to). Completion flushes any
 * buffered writes, so closing the source loses nothing.
 */
export function coalesceFileWritesRx(o: CoalesceOptions): OperatorFunction<FileWritten, Burst> {
  return (writes) =>
    writes.pipe(
      groupBy((w) => w.workspaceId, { duration: (g) => g.pipe(debounceTime(o.idleExpireMs, o.scheduler)) }),
      mergeMap((group) => {
        o.onGroup?.(1);
        let firstAt = 0;
        let lastAt = 0;
        return group.pipe(
          connect((shared) => {
            const stamp = shared.pipe(
              map((w) => {
                const now = o.scheduler.now();
                if (lastAt === -1) firstAt = now;
                lastAt = now;
                return w;
              }),
            );
            lastAt = -1;
            return stamp.pipe(buffer(burstCloser(shared, o)));
          }),
          filter((batch) => batch.length > 0),
          map((batch) => {
            const b = toBurst(group.key, batch, firstAt, lastAt);
            lastAt = -1;
            return b;
          }),
          finalize(() => o.onGroup?.(-1)),
        );
      }),
    );
}
