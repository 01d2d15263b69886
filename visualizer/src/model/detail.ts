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
 * d.policyStatus(clock.now()).next; // 'stops in 12:03 — idle for 30m since agent heartbeat at 14:02:11Z'
 */
import type { CycleWhy, LifecycleState, WorkspaceEvent, WorkspaceView } from '../../../src/client/index.ts';
import { formatCountdown } from './format.ts';
import { describePolicy, formatAgoShort, formatClockCountdown, formatUtcClock, nextActionText, nextAppliesTo } from './policy.ts';

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

/** Policy actions and warnings stand out from the lifecycle events around them. */
export type EventTone = 'policy' | 'warning' | null;

export interface RecentEvent {
  key: string;
  at: number;
  type: WorkspaceEvent['type'];
  tone: EventTone;
  /** A symbol next to the text (the text carries the meaning). */
  icon: string;
  text: string;
}

/** What the detail says about the workspace's policy at one instant. */
export interface PolicyStatus {
  rules: string[];
  /** The next policy action as a countdown with its reason. */
  next: string;
  lastActivity: string;
  /** The latest max-lifetime warning of this run, while its stop is still ahead. */
  warning: string | null;
}

const TONE: Partial<Record<WorkspaceEvent['type'], { tone: EventTone; icon: string }>> = {
  policy: { tone: 'policy', icon: '⚙' },
  'policy.warning': { tone: 'warning', icon: '⚠' },
};

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
      return `warning (${ev.source}): stops at ${formatUtcClock(ev.stopAt)}${ev.reason ? ` — ${ev.reason}` : ''}`;
  }
}

export class WorkspaceDetail {
  view: WorkspaceView | null = null;
  /** The latest transition, for highlighting the edge that just fired. */
  lastTransition: { from: LifecycleState | null; to: LifecycleState; at: number } | null = null;
  /** Counts the times the view was marked stale, so a refresh can tell whether an event came in meanwhile. */
  staleMarks = 0;
  private isStale = true;
  /** The latest `policy.warning` of the current run (cleared when the workspace leaves `running`). */
  warning: { stopAt: number; reason: string; at: number } | null = null;
  private readonly cycles = new Map<number, CycleRow>();
  private readonly recentEvents: RecentEvent[] = [];
  private seq = 0;

  constructor(readonly id: string) {}

  /** Set when an event changed something only a fresh `workspace.get` can tell exactly (a deadline). */
  get stale(): boolean {
    return this.isStale;
  }

  set stale(v: boolean) {
    if (v) this.staleMarks++;
    this.isStale = v;
  }

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

  /**
   * A fresh view. `asOfMark` is `staleMarks` when it was asked for: if the view was marked stale again since
   * (an event arrived while the request was in flight), it stays stale so the caller asks once more.
   */
  applyView(view: WorkspaceView, asOfMark?: number): void {
    if (view.id !== this.id) return;
    this.view = view;
    this.isStale = asOfMark !== undefined && asOfMark !== this.staleMarks;
  }

  /** Rebuild from history (oldest first), replacing what was known: used on select and after a resync. */
  applyHistory(events: readonly WorkspaceEvent[]): void {
    this.cycles.clear();
    this.recentEvents.length = 0;
    this.lastTransition = null;
    this.warning = null;
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
        if (ev.to !== 'running') this.warning = null;
        if (live) {
          // A policy deadline only holds in the state it acts from; entering running or idle arms new ones.
          const next = this.view?.next;
          this.patch({ state: ev.to, ...(next && !nextAppliesTo(next, ev.to) ? { next: null } : {}) }, ev.to === 'failed' || ev.to === 'running' || ev.to === 'idle');
        }
        if (live && (ev.to === 'idle' || ev.to === 'destroyed')) this.patch({ pending: 0, deferredUntil: null }, false);
        break;
      case 'policy':
        if (live) this.patch(ev.action === 'dormant' ? { dormant: true } : {}, true); // the next deadline moved
        break;
      case 'policy.warning':
        this.warning = { stopAt: ev.stopAt, reason: ev.reason, at: ev.at };
        if (live) this.stale = true;
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

  /** The policy's rules, the next action as a countdown, and the last activity, at `now`. */
  policyStatus(now: number): PolicyStatus {
    const v = this.view;
    const w = this.warning;
    return {
      rules: describePolicy(v?.policy),
      next: nextActionText(v?.next ?? null, now),
      lastActivity: typeof v?.lastActivityAt === 'number' ? `last activity ${formatAgoShort(v.lastActivityAt, now)}` : 'no activity recorded',
      warning: w && w.stopAt > now ? `warned at ${formatUtcClock(w.at)}: stops in ${formatClockCountdown(w.stopAt - now)}` : null,
    };
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
    const look = TONE[ev.type] ?? { tone: null, icon: '' };
    this.recentEvents.unshift({ key: `e${++this.seq}`, at: ev.at, type: ev.type, ...look, text: describeEvent(ev) });
    if (this.recentEvents.length > RECENT_LIMIT) this.recentEvents.length = RECENT_LIMIT;
  }
}
