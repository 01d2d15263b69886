/**
 * One deadline queue for every workspace's policy: a binary min-heap of slots by time, driven by ONE clock
 * timeout for the earliest. A delayed xstate event per actor would cost a scheduler entry, an event object and a
 * clock timeout each; a slot costs two numbers on an object the caller already has (the supervisor's Entry).
 *
 * A slot is in the heap at most once (its `deadlineIndex` says where, -1 when not queued), so moving a deadline
 * is a sift, not a second entry: nothing stale is ever left to skip.
 */
import type { Clock } from './clock.ts';

export interface DeadlineSlot {
  /** When it fires (ms, clock time); meaningful while queued. */
  deadlineAt: number;
  /** Its place in the heap; -1 when not queued. */
  deadlineIndex: number;
}

export class Deadlines<S extends DeadlineSlot> {
  private readonly heap: S[] = [];
  private timer: unknown = null;
  private timerAt = Infinity;
  private closed = false;

  /** `fire` gets every slot that is due, already out of the queue, with the time it was queued for. */
  constructor(
    private readonly clock: Clock,
    private readonly fire: (slot: S, at: number) => void,
  ) {}

  get size(): number {
    return this.heap.length;
  }

  /** The earliest queued time; null when empty. */
  get earliest(): number | null {
    return this.heap[0]?.deadlineAt ?? null;
  }

  /** Queue `slot` at `at`, move it there, or (null) take it out. A time already past fires at once (on the timer). */
  set(slot: S, at: number | null): void {
    if (at === null) {
      if (slot.deadlineIndex >= 0) this.remove(slot.deadlineIndex);
    } else if (slot.deadlineIndex < 0) {
      slot.deadlineAt = at;
      slot.deadlineIndex = this.heap.length;
      this.heap.push(slot);
      this.up(slot.deadlineIndex);
    } else if (at !== slot.deadlineAt) {
      const earlier = at < slot.deadlineAt;
      slot.deadlineAt = at;
      if (earlier) this.up(slot.deadlineIndex);
      else this.down(slot.deadlineIndex);
    }
    this.arm();
  }

  /** Stop the timer for good (shutdown): nothing fires after this. */
  close(): void {
    this.closed = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    const head = this.heap[0];
    const at = head === undefined || this.closed ? Infinity : head.deadlineAt;
    if (at === this.timerAt) return;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = at;
    if (at !== Infinity) this.timer = this.clock.setTimeout(() => this.due(), Math.max(0, at - this.clock.now()));
  }

  /** Take out everything due by now, then fire each: a slot queued again while firing waits for the next timer. */
  private due(): void {
    this.timer = null;
    this.timerAt = Infinity;
    const now = this.clock.now();
    const ready: S[] = [];
    while (this.heap.length > 0 && this.heap[0]!.deadlineAt <= now) ready.push(this.remove(0));
    for (const slot of ready) this.fire(slot, slot.deadlineAt);
    this.arm();
  }

  private remove(i: number): S {
    const heap = this.heap;
    const slot = heap[i]!;
    const last = heap.pop()!;
    slot.deadlineIndex = -1;
    if (last !== slot) {
      heap[i] = last;
      last.deadlineIndex = i;
      this.down(i);
      this.up(last.deadlineIndex);
    }
    return slot;
  }

  private up(i: number): void {
    const heap = this.heap;
    const slot = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (parent.deadlineAt <= slot.deadlineAt) break;
      heap[i] = parent;
      parent.deadlineIndex = i;
      i = p;
    }
    heap[i] = slot;
    slot.deadlineIndex = i;
  }

  private down(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const slot = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && heap[r]!.deadlineAt < heap[l]!.deadlineAt ? r : l;
      const child = heap[c]!;
      if (child.deadlineAt >= slot.deadlineAt) break;
      heap[i] = child;
      child.deadlineIndex = i;
      i = c;
    }
    heap[i] = slot;
    slot.deadlineIndex = i;
  }
}
