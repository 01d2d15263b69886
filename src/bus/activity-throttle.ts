/**
 * Activity coalescing behind the bus: per workspace, at most one delivery per `windowMs`, leading and trailing
 * (lodash `throttle` semantics). The first event passes at once and opens a window; events inside it fold into
 * one pending source (the latest wins), delivered when the window closes, which opens the next window. A window
 * that closes with nothing pending releases its workspace's slot, so memory follows active workspaces only.
 *
 * ONE scheduler timer for the whole bus: every window has the same length and opens at scheduler time, so a FIFO
 * of slots in opening order is sorted by deadline and the timer only ever waits for its head. An event costs a
 * Map lookup and, at most, an assignment; a timer per workspace would cost a scheduler action per window.
 */
import type { SchedulerAction, SchedulerLike, Subscription } from 'rxjs';

interface Slot {
  id: string;
  opensAt: number;
  /** The latest source seen inside the window, to be delivered when it closes; null when nothing came. */
  pending: string | null;
  next: Slot | null;
}

export interface ActivityThrottleOptions {
  windowMs: number;
  scheduler: SchedulerLike;
}

export class ActivityThrottle {
  private readonly slots = new Map<string, Slot>();
  private head: Slot | null = null;
  private tail: Slot | null = null;
  private timer: Subscription | null = null;
  private timerAt = Infinity;
  /** Events that arrived while their workspace's source was already pending: replaced, never delivered. */
  folded = 0;

  constructor(
    private readonly o: ActivityThrottleOptions,
    private readonly deliver: (workspaceId: string, source: string) => void,
  ) {}

  /** Workspaces with an open window (one delivered recently, maybe one pending). */
  get active(): number {
    return this.slots.size;
  }

  offer(workspaceId: string, source: string): void {
    const slot = this.slots.get(workspaceId);
    if (slot !== undefined) {
      if (slot.pending !== null) this.folded++;
      slot.pending = source;
      return;
    }
    const now = this.o.scheduler.now();
    this.open({ id: workspaceId, opensAt: now, pending: null, next: null }, now);
    // State is consistent before delivering: a sink that reports activity synchronously just sets pending.
    this.deliver(workspaceId, source);
  }

  /** Deliver every pending source now, oldest window first (close: nothing accepted is lost). */
  flushAll(): void {
    for (let s = this.head; s !== null; s = s.next) {
      const source = s.pending;
      s.pending = null;
      if (source !== null) this.deliver(s.id, source);
    }
  }

  /** Cancel the timer and release every slot without delivering. */
  dispose(): void {
    this.timer?.unsubscribe();
    this.timer = null;
    this.timerAt = Infinity;
    this.slots.clear();
    this.head = this.tail = null;
  }

  /** Append a slot whose window opens now; arm the timer if it is idle (a later window never moves it). */
  private open(slot: Slot, now: number): void {
    this.slots.set(slot.id, slot);
    if (this.tail) this.tail.next = slot;
    else this.head = slot;
    this.tail = slot;
    if (this.timerAt === Infinity) {
      this.timerAt = now + this.o.windowMs;
      this.timer = this.o.scheduler.schedule(tick, this.o.windowMs, this);
    }
  }

  /**
   * Close every window that is due: deliver its pending source and reopen it, or release the slot.
   * @internal called by the scheduler through {@link tick}
   */
  onTimer(action: SchedulerAction<ActivityThrottle>): void {
    const { windowMs, scheduler } = this.o;
    const now = scheduler.now();
    this.timerAt = now; // slots opened from inside `deliver` must not arm a second timer: we re-arm below
    // A slot reopened in this loop opens at `now`, so its deadline is in the future and the loop ends.
    while (this.head !== null && this.head.opensAt + windowMs <= now) {
      const s = this.head;
      this.head = s.next;
      if (this.head === null) this.tail = null;
      s.next = null;
      const source = s.pending;
      if (source === null) {
        this.slots.delete(s.id);
        continue;
      }
      s.pending = null;
      s.opensAt = now;
      if (this.tail) this.tail.next = s;
      else this.head = s;
      this.tail = s;
      this.deliver(s.id, source);
    }
    if (this.head === null) {
      this.timer = null;
      this.timerAt = Infinity;
    } else {
      this.timerAt = this.head.opensAt + windowMs;
      this.timer = action.schedule(this, this.timerAt - now);
    }
  }
}

/** The scheduler calls work with the action as `this`; the throttle travels as state, so rescheduling keeps it. */
function tick(this: SchedulerAction<ActivityThrottle>, t?: ActivityThrottle): void {
  t!.onTimer(this);
}
