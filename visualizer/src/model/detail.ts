/**
 * The selected workspace's read model: its view (state, pending flag, deadlines), the cycle timeline (each
 * cycle's source, reason, requesters, outcome, provider durations, error) and its recent events. Built
 * from `events.history` and then kept current from live events; pure, with time passed in.
 *
 * @example
 * const d = new WorkspaceDetail('ws-1');
 * d.applyHistory(history.events);
 * d.applyEvent(ev);
 * d.countdowns(clock.now()); // [{ kind: 'backoff', text: 'in 4.2 s', ... }]
 */
import type { CycleWhy, LifecycleState, WorkspaceEvent, WorkspaceView } from '../../../src/client/index.ts';
import { formatCountdown } from './format.ts';

export const RECENT_LIMIT = 50;
export const TIMELINE_LIMIT = 100;

export interface CycleRow {
  n: number;
  source: CycleWhy['source'];
  reason: string;
  retry: boolean;
  requesters: CycleWhy['requesters'];
  startedAt: number;
  provisionAt: number | null;
  status: 'in progress' | 'completed' | 'failed';
  endedAt: number | null;
  durations: { stopMs: number | null; startMs: number | null; totalMs: number } | null;
  error: { code: string; message: string } | null;
  endpoint: string | null;
}

export interface Countdown {
  kind: 'deferred' | 'backoff';
  label: string;
  until: number;
  remainingMs: number;
  text: string;
}

export interface RecentEvent {
  key: string;
  at: number;
  type: WorkspaceEvent['type'];
  text: string;
}

/** One line per event, the way the recent-events list reads it. */
export function describeEvent(ev: WorkspaceEvent): string {
  switch (ev.type) {
    case 'transition':
      return `${ev.from ?? '∅'} → ${ev.to}${ev.cycle ? ` (cycle ${ev.cycle.n})` : ''}`;
    case 'request':
      return `request from ${ev.requester}: ${ev.outcome}${ev.cycle !== null ? ` (cycle ${ev.cycle})` : ''}`;
    case 'cycle.started':
      return `cycle ${ev.cycle.n} started: ${ev.cycle.source}${ev.cycle.reason ? ` — ${ev.cycle.reason}` : ''}`;
    case 'cycle.provisioning':
      return `cycle ${ev.cycle}: provider start began`;
    case 'cycle.completed':
      return `cycle ${ev.cycle.n} completed in ${ev.durations.totalMs} ms → ${ev.endpoint}`;
    case 'cycle.failed':
      return `cycle ${ev.cycle.n} failed: ${ev.error.message}`;
    case 'policy':
      return `policy ${ev.action} (${ev.source}): ${ev.reason}`;
    case 'policy.warning':
      return `warning (${ev.source}): stops at ${new Date(ev.stopAt).toISOString()}`;
  }
}

export class WorkspaceDetail {
  view: WorkspaceView | null = null;
  /** The latest transition, for highlighting the edge that just fired. */
  lastTransition: { from: LifecycleState | null; to: LifecycleState; at: number } | null = null;
  /** Set when an event changed something only a fresh `workspace.get` can tell exactly (a deadline). */
  stale = true;
  private readonly cycles = new Map<number, CycleRow>();
  private readonly recentEvents: RecentEvent[] = [];
  private seq = 0;

  constructor(readonly id: string) {}

  get state(): LifecycleState | null {
    return this.view?.state ?? this.lastTransition?.to ?? null;
  }

  /** Pending flag: requests waiting for one more cycle after the current one. */
  get pending(): number {
    return this.view?.pending ?? 0;
  }

  /** Newest cycle first. */
  timeline(): CycleRow[] {
    return [...this.cycles.values()].sort((a, b) => b.n - a.n);
  }

  /** Newest event first. */
  recent(): readonly RecentEvent[] {
    return this.recentEvents;
  }

  applyView(view: WorkspaceView): void {
    if (view.id !== this.id) return;
    this.view = view;
    this.stale = false;
  }

  /** Rebuild from history (oldest first), replacing what was known: used on select and after a resync. */
  applyHistory(events: readonly WorkspaceEvent[]): void {
    this.cycles.clear();
    this.recentEvents.length = 0;
    this.lastTransition = null;
    const view = this.view;
    for (const ev of events) this.applyEvent(ev, false);
    this.view = view; // history is older than the view we hold; the view stays authoritative
  }

  /** Apply one live event for this workspace (others are ignored). */
  applyEvent(ev: WorkspaceEvent, live = true): void {
    if (ev.id !== this.id) return;
    this.remember(ev);
    switch (ev.type) {
      case 'transition':
        this.lastTransition = { from: ev.from, to: ev.to, at: ev.at };
        if (ev.cycle) this.upsertCycle(ev.cycle);
        if (live) this.patch({ state: ev.to }, ev.to === 'failed');
        if (live && (ev.to === 'idle' || ev.to === 'destroyed')) this.patch({ pending: 0, deferredUntil: null }, false);
        break;
      case 'request':
        if (live && ev.outcome === 'queued') this.patch({ pending: this.pending + 1 }, false);
        if (live && ev.outcome === 'deferred') this.stale = true; // the deadline is not on the event
        break;
      case 'cycle.started':
        this.upsertCycle(ev.cycle);
        // Starting a cycle absorbs the pending flag and any deferral, and clears the backoff.
        if (live) this.patch({ pending: 0, deferredUntil: null, backoffUntil: null, cycle: ev.cycle.n }, false);
        break;
      case 'cycle.provisioning': {
        const row = this.cycles.get(ev.cycle);
        if (row) row.provisionAt = ev.at;
        break;
      }
      case 'cycle.completed': {
        const row = this.upsertCycle(ev.cycle);
        Object.assign(row, { status: 'completed', endedAt: ev.at, durations: ev.durations, endpoint: ev.endpoint });
        if (live) this.patch({ endpoint: ev.endpoint }, false);
        break;
      }
      case 'cycle.failed': {
        const row = this.upsertCycle(ev.cycle);
        Object.assign(row, { status: 'failed', endedAt: ev.at, error: ev.error });
        if (live) this.stale = true; // lastError and a possible backoff deadline
        break;
      }
    }
  }

  /** Deadlines that are ticking, as countdowns at `now` (the caller's clock). */
  countdowns(now: number): Countdown[] {
    const out: Countdown[] = [];
    const add = (kind: Countdown['kind'], label: string, until: number | null | undefined) => {
      if (until === null || until === undefined) return;
      const remainingMs = Math.max(0, until - now);
      out.push({ kind, label, until, remainingMs, text: formatCountdown(remainingMs) });
    };
    add('deferred', 'deferred restart runs', this.view?.deferredUntil);
    add('backoff', 'backoff ends', this.view?.backoffUntil);
    return out;
  }

  private patch(p: Partial<WorkspaceView>, stale: boolean): void {
    if (this.view) this.view = { ...this.view, ...p };
    if (stale || !this.view) this.stale = true;
  }

  private upsertCycle(why: CycleWhy): CycleRow {
    let row = this.cycles.get(why.n);
    if (!row) {
      row = {
        n: why.n,
        source: why.source,
        reason: why.reason,
        retry: why.retry,
        requesters: why.requesters,
        startedAt: why.startedAt,
        provisionAt: why.provisionAt,
        status: 'in progress',
        endedAt: null,
        durations: null,
        error: null,
        endpoint: null,
      };
      this.cycles.set(why.n, row);
      this.trimCycles();
    } else {
      // Later snapshots of the why carry every requester that joined since.
      if (why.requesters.length >= row.requesters.length) row.requesters = why.requesters;
      row.provisionAt ??= why.provisionAt;
    }
    return row;
  }

  private trimCycles(): void {
    if (this.cycles.size <= TIMELINE_LIMIT) return;
    const oldest = Math.min(...this.cycles.keys());
    this.cycles.delete(oldest);
  }

  private remember(ev: WorkspaceEvent): void {
    this.recentEvents.unshift({ key: `e${++this.seq}`, at: ev.at, type: ev.type, text: describeEvent(ev) });
    if (this.recentEvents.length > RECENT_LIMIT) this.recentEvents.length = RECENT_LIMIT;
  }
}
