/**
 * Per-workspace burst state behind the bus: O(1) per write and ONE scheduler timer for the whole bus.
 *
 * Why not a timer per workspace: with lazy per-group timers (RxJS `debounceTime` style) 1M writes over 10,000
 * workspaces cost 820,000 timer fires, since each burst re-arms its quiet timer every `quietMs` while writes keep
 * coming. Here every deadline kind is kept in an intrusive list that is already sorted by construction:
 *  - `quiet`: open bursts by last write (a write moves its group to the tail), deadline `lastAt + quietMs`;
 *  - `cap`:   open bursts by first write (appended when a burst opens), deadline `firstAt + maxWaitMs`;
 *  - `idle`:  flushed groups by flush time, deadline `flushedAt + idleExpireMs`, then the group is released.
 * The one timer is armed at the earliest list head, and fires only when something is actually due.
 *
 * A group lives for a burst plus `idleExpireMs`, its path list for a burst: longer than the young generation
 * holds objects, so a fresh group per spell of activity and a fresh path list per burst were promoted, then
 * collected by full GCs. A released group therefore goes to a spare list and serves the next workspace that
 * opens one, and a group keeps its path list from burst to burst; each burst gets its own exact copy.
 */
import type { SchedulerAction, Subscription } from 'rxjs';
import type { Burst, CoalesceOptions } from './types.ts';

/** Dedupe paths in place at this length, so an endless stream to a few files stays bounded by distinct paths. */
const COMPACT_AT = 1024;
/** A path list longer than this after a burst is dropped rather than kept for the next one. */
const KEEP_PATHS = 64;
/**
 * Released groups kept for reuse: up to as many as are alive, and at least this many (a few hundred bytes each,
 * no path strings), so spare memory follows the live set and shrinks to this once every workspace is idle.
 */
const SPARE_MIN = 1024;

interface Group {
  id: string;
  /**
   * Paths of the open burst in `paths[0..pathCount)`, duplicates included, deduped at flush; the slots after
   * them are blank. A Set per group cost 125–200 ns per write (cache misses across 10,000 hash tables); an
   * array store costs ~40 ns.
   */
  paths: string[];
  pathCount: number;
  compactAt: number;
  /** Writes in the open burst; 0 while the group idles towards release. */
  writes: number;
  firstAt: number;
  lastAt: number;
  flushedAt: number;
  /** In the `idle` list (flushed, awaiting release), as opposed to `quiet` + `cap` (open) or new. */
  idling: boolean;
  /** Links in `quiet` (while open) or `idle` (after a flush): a group is in exactly one of them. */
  prev: Group | null;
  next: Group | null;
  /** Links in `cap` (while open). */
  cprev: Group | null;
  cnext: Group | null;
}

interface List {
  head: Group | null;
  tail: Group | null;
}

function push(l: List, g: Group): void {
  g.prev = l.tail;
  g.next = null;
  if (l.tail) l.tail.next = g;
  else l.head = g;
  l.tail = g;
}
function unlink(l: List, g: Group): void {
  if (g.prev) g.prev.next = g.next;
  else l.head = g.next;
  if (g.next) g.next.prev = g.prev;
  else l.tail = g.prev;
  g.prev = g.next = null;
}
/**
 * The distinct values of `a[0..n)` in first-seen order, as a new array. A Set for long lists; for a Save's dozen
 * a scan is cheaper, and finding no duplicate (a Save usually writes each file once) makes it a plain copy.
 */
function distinct(a: string[], n: number): string[] {
  if (n > 16) return [...new Set(a.slice(0, n))];
  for (let i = 1; i < n; i++) {
    const p = a[i];
    for (let j = 0; j < i; j++) if (a[j] === p) return distinctFrom(a, i, n);
  }
  return a.slice(0, n);
}
/** The distinct values of `a[0..n)`, given that `a[0..i)` has no duplicate. */
function distinctFrom(a: string[], i: number, n: number): string[] {
  const out = a.slice(0, i);
  for (; i < n; i++) if (!out.includes(a[i]!)) out.push(a[i]!);
  return out;
}
function cpush(l: List, g: Group): void {
  g.cprev = l.tail;
  g.cnext = null;
  if (l.tail) l.tail.cnext = g;
  else l.head = g;
  l.tail = g;
}
function cunlink(l: List, g: Group): void {
  if (g.cprev) g.cprev.cnext = g.cnext;
  else l.head = g.cnext;
  if (g.cnext) g.cnext.cprev = g.cprev;
  else l.tail = g.cprev;
  g.cprev = g.cnext = null;
}

export class BurstCoalescer {
  private readonly groups = new Map<string, Group>();
  private readonly quiet: List = { head: null, tail: null };
  private readonly cap: List = { head: null, tail: null };
  private readonly idle: List = { head: null, tail: null };
  /** Released groups, ready for reuse (see {@link SPARE_MIN}). */
  private readonly spare: Group[] = [];
  private timer: Subscription | null = null;
  private timerAt = Infinity;

  constructor(
    private readonly o: CoalesceOptions,
    private readonly emit: (b: Burst) => void,
  ) {}

  /** Groups alive now: open bursts plus flushed groups not yet released. */
  get activeGroups(): number {
    return this.groups.size;
  }

  write(workspaceId: string, path: string): void {
    const now = this.o.scheduler.now();
    let g = this.groups.get(workspaceId);
    if (g === undefined) {
      g = this.spare.pop();
      if (g === undefined) {
        g = { id: workspaceId, paths: [], pathCount: 0, compactAt: COMPACT_AT, writes: 0, firstAt: now, lastAt: now, flushedAt: 0, idling: false, prev: null, next: null, cprev: null, cnext: null };
      } else g.id = workspaceId;
      this.groups.set(workspaceId, g);
      this.o.onGroup?.(1);
    }
    if (g.writes === 0) {
      if (g.idling) {
        unlink(this.idle, g);
        g.idling = false;
      }
      g.firstAt = now;
      cpush(this.cap, g);
      push(this.quiet, g);
    } else if (this.quiet.tail !== g) {
      unlink(this.quiet, g);
      push(this.quiet, g);
    }
    g.writes++;
    g.lastAt = now;
    const n = g.pathCount;
    if (n === g.paths.length) g.paths.push(path);
    else g.paths[n] = path;
    g.pathCount = n + 1;
    if (n + 1 >= g.compactAt) {
      g.paths = distinct(g.paths, n + 1);
      g.pathCount = g.paths.length;
      g.compactAt = Math.max(COMPACT_AT, 2 * g.pathCount);
    }
    // The new quiet deadline is the latest of its kind; it only matters if the timer is idle or set later.
    if (this.timerAt > now + this.o.quietMs) this.arm(now + this.o.quietMs, now);
  }

  /** Emit every open burst now, oldest last-write first (close: nothing accepted is lost). */
  flushAll(): void {
    const now = this.o.scheduler.now();
    while (this.quiet.head) this.flush(this.quiet.head, now);
  }

  /** Cancel the timer and release every group without emitting. */
  dispose(): void {
    this.timer?.unsubscribe();
    this.timer = null;
    this.timerAt = Infinity;
    for (let i = this.groups.size; i > 0; i--) this.o.onGroup?.(-1);
    this.groups.clear();
    this.spare.length = 0;
    this.quiet.head = this.quiet.tail = this.cap.head = this.cap.tail = this.idle.head = this.idle.tail = null;
  }

  private flush(g: Group, now: number): void {
    unlink(this.quiet, g);
    cunlink(this.cap, g);
    const b: Burst = { workspaceId: g.id, paths: distinct(g.paths, g.pathCount), writes: g.writes, firstAt: g.firstAt, lastAt: g.lastAt };
    // Blank the used slots: a group holds no path past its burst, idle or spare.
    if (g.paths.length > KEEP_PATHS) g.paths = [];
    else for (let i = 0; i < g.pathCount; i++) g.paths[i] = '';
    g.pathCount = 0;
    g.compactAt = COMPACT_AT;
    g.writes = 0;
    g.flushedAt = now;
    g.idling = true;
    push(this.idle, g);
    // State is consistent before emitting: a sink that writes synchronously just opens the next burst.
    this.emit(b);
  }

  /** Earliest deadline among the three list heads (each list is sorted, so its head is its minimum). */
  private next(): number {
    const { quietMs, maxWaitMs, idleExpireMs } = this.o;
    const q = this.quiet.head ? this.quiet.head.lastAt + quietMs : Infinity;
    const c = this.cap.head ? this.cap.head.firstAt + maxWaitMs : Infinity;
    const i = this.idle.head ? this.idle.head.flushedAt + idleExpireMs : Infinity;
    return Math.min(q, c, i);
  }

  private arm(at: number, now: number, action?: SchedulerAction<BurstCoalescer>): void {
    if (!action) this.timer?.unsubscribe();
    this.timerAt = at;
    this.timer = action ? action.schedule(this, at - now) : this.o.scheduler.schedule(tick, at - now, this);
  }

  /**
   * Handle everything due, earliest deadline first, so emission order is deadline order even when the tick is late.
   * @internal called by the scheduler through {@link tick}
   */
  onTimer(action: SchedulerAction<BurstCoalescer>): void {
    const { quietMs, maxWaitMs, scheduler } = this.o;
    const now = scheduler.now();
    this.timerAt = now; // writes made from inside `emit` must not re-arm: we re-arm below
    for (let due = this.next(); due <= now; due = this.next()) {
      const q = this.quiet.head;
      const c = this.cap.head;
      if (q && q.lastAt + quietMs === due) this.flush(q, now);
      else if (c && c.firstAt + maxWaitMs === due) this.flush(c, now);
      else this.release(this.idle.head!);
    }
    const at = this.next();
    if (at === Infinity) {
      this.timer = null;
      this.timerAt = Infinity;
    } else this.arm(at, now, action);
  }

  /** Drop an idle group (flush left it empty) and keep it as a spare while the spare list is not too long. */
  private release(g: Group): void {
    unlink(this.idle, g);
    this.groups.delete(g.id);
    g.idling = false;
    const keep = Math.max(SPARE_MIN, this.groups.size);
    if (this.spare.length < keep) this.spare.push(g);
    else if (this.spare.length > keep) this.spare.length = keep; // the live set shrank: let the surplus go
    this.o.onGroup?.(-1);
  }
}

/** The scheduler calls work with the action as `this`; the coalescer travels as state, so rescheduling keeps it. */
function tick(this: SchedulerAction<BurstCoalescer>, c?: BurstCoalescer): void {
  c!.onTimer(this);
}
