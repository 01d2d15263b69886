/**
 * The visualizer's view model: event stream in, what the page shows out. No DOM and no I/O; time and
 * scheduling are injected, so tests drive it with a fake clock and a manual scheduler.
 *
 * Events are batched: `receive` only queues, and one scheduled `flush` (an animation frame in the page)
 * applies the whole batch and notifies listeners once, so 1,000 transitions a second cost ~60 renders,
 * not 1,000.
 *
 * @example
 * const model = new VisualizerModel({ clock: { now: Date.now }, schedule: (fn) => requestAnimationFrame(fn) });
 * model.onChange((c) => render(model, c));
 * model.beginReload();                    // initial `workspace.list`: the first page
 * model.applyPage(page.items, page.nextCursor);
 * model.endReload(page.nextCursor);
 * client.subscribe({}, (ev) => model.receive(ev), { onResync: (r) => model.resync(r) });
 */
import { roleAllows, type PoolView, type Role, type WorkspaceEvent, type WorkspaceView } from '../../../src/client/index.ts';
import { WorkspaceDetail } from './detail.ts';
import { WorkspaceList } from './list.ts';
import { PoolsPanel } from './pools.ts';

export interface Clock {
  now(): number;
}

/** Runs `fn` later, once (requestAnimationFrame in the page, a queue in tests). */
export type Scheduler = (fn: () => void) => void;

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface Change {
  /** Events applied in this batch. */
  events: number;
  /** Server time of the oldest event in the batch (for update latency), or null. */
  oldestAt: number | null;
  /** Local time the batch's first event arrived (for the page's own share of the latency), or null. */
  queuedAt: number | null;
  /** Whether the list's membership, counts or rows changed. */
  list: boolean;
  /** Whether the selected workspace changed. */
  detail: boolean;
  /** Connection, role, resync or action outcomes changed. */
  status: boolean;
  /** The pools panel changed (a `pool.list` answer, or the server has none). */
  pools: boolean;
}

export interface ResyncInfo {
  reason: 'reconnected' | 'lagged';
  dropped?: number;
  workspaces?: WorkspaceView[];
  /** False: the server cut `workspaces` to fit one frame, so they are not every workspace. */
  complete?: boolean;
}

export type ActionKind = 'restart' | 'ensure' | 'stop';

export interface ActionRow {
  seq: number;
  workspaceId: string;
  kind: ActionKind;
  status: 'pending' | 'done' | 'failed';
  /** `started`, `joined`, `queued`, `deferred`, `stopped`, or the error. */
  outcome: string;
  at: number;
  finishedAt: number | null;
}

export interface ModelOptions {
  clock: Clock;
  schedule: Scheduler;
  /** Most workspaces a `lagged` notice carries; fewer means it is the complete set. Default 10,000. */
  resyncCap?: number;
}

const ACTION_LIMIT = 20;

export class VisualizerModel {
  readonly list = new WorkspaceList();
  readonly pools = new PoolsPanel();
  detail: WorkspaceDetail | null = null;
  connection: { state: ConnectionState; detail: string | null; since: number } = { state: 'idle', detail: null, since: 0 };
  /** Null until the server told us (or until a forbidden answer taught us). */
  role: Role | null = null;
  /** Set while a resync is being applied or fetched (after reconnect, or on `lagged`). */
  resyncing = false;
  /** A `workspace.list` page is on its way (the next page, or a reload of the loaded range). */
  listLoading = false;
  lastResync: { reason: ResyncInfo['reason']; dropped: number; at: number } | null = null;
  readonly actions: ActionRow[] = [];
  private queue: WorkspaceEvent[] = [];
  private scheduled = false;
  private queuedAt: number | null = null;
  private readonly listeners = new Set<(c: Change) => void>();
  private actionSeq = 0;
  private readonly clock: Clock;
  private readonly schedule: Scheduler;
  private readonly resyncCap: number;

  constructor(opts: ModelOptions) {
    this.clock = opts.clock;
    this.schedule = opts.schedule;
    this.resyncCap = opts.resyncCap ?? 10_000;
  }

  onChange(fn: (c: Change) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Operator controls are shown only when the role may command (an unknown role hides them). */
  get canCommand(): boolean {
    return this.role !== null && roleAllows(this.role, 'workspace.restart');
  }

  /** Every workspace at once (a list that fits one page): replaces the rows. */
  load(views: readonly WorkspaceView[]): void {
    this.flushQueue();
    this.list.replaceAll(views, this.clock.now());
    this.applySelectedView(views);
    this.emit({ list: true, detail: this.detail !== null, status: false });
  }

  /** A load of the list from its first page starts (at start, or to reload the loaded range after a resync). */
  beginReload(): void {
    this.flushQueue();
    this.list.beginReload();
  }

  /**
   * One `workspace.list` page, the next after what is loaded (or the next of a reload). Queued events are
   * older than it: they are applied first, to the range as it was, so the page wins.
   */
  applyPage(views: readonly WorkspaceView[], nextCursor: string | null): void {
    this.flushQueue();
    this.list.applyPage(views, nextCursor, this.clock.now());
    this.applySelectedView(views);
    this.emit({ list: true, detail: this.detail !== null, status: false });
  }

  /** The reload's last page (cursor `nextCursor`) has been applied: rows it did not see are dropped. */
  endReload(nextCursor: string | null): void {
    this.flushQueue();
    this.list.endReload(nextCursor);
    this.emit({ list: true, detail: false, status: false });
  }

  setListLoading(loading: boolean): void {
    if (this.listLoading === loading) return;
    this.listLoading = loading;
    this.emit({ list: true, detail: false, status: false });
  }

  /** Queue one live event; the batch is applied on the next scheduled flush. */
  receive(ev: WorkspaceEvent): void {
    this.queue.push(ev);
    this.queuedAt ??= this.clock.now();
    if (this.scheduled) return;
    this.scheduled = true;
    this.schedule(() => this.flush());
  }

  /** Apply every queued event and notify once. Called by the scheduler; safe to call directly. */
  flush(): void {
    this.scheduled = false;
    const change = this.flushQueue();
    if (change.events > 0) this.emit(change);
  }

  /**
   * Events may have been missed. `lagged` carries the state to start again from: queued events are older
   * than it, so they are applied first and the snapshot wins. Returns true when the caller must reload the
   * loaded range (after a reconnect, or when the snapshot does not reach as far as the loaded rows: cut to
   * fit one frame, or capped); until `resynced` the page says it is resyncing.
   */
  resync(info: ResyncInfo): boolean {
    this.flushQueue();
    this.lastResync = { reason: info.reason, dropped: info.dropped ?? 0, at: this.clock.now() };
    let reload = info.workspaces === undefined || info.complete === false;
    if (info.workspaces) {
      const views = info.workspaces;
      if (info.complete !== false && views.length < this.resyncCap) this.list.replaceAll(views, this.clock.now());
      else {
        this.list.upsertViews(views, this.clock.now());
        // A capped snapshot is the first workspaces in id order: it covers the rows only up to its last id.
        let last = '';
        for (const v of views) if (v.id > last) last = v.id;
        const through = this.list.through;
        if (through === null || last < through) reload = true;
      }
      this.applySelectedView(views);
    }
    if (this.detail) this.detail.stale = true; // its history must be fetched again
    this.resyncing = reload;
    this.emit({ list: info.workspaces !== undefined, detail: this.detail !== null, status: true });
    return reload;
  }

  /** The reload of the loaded range after a resync has been applied. */
  resynced(): void {
    if (!this.resyncing) return;
    this.resyncing = false;
    this.emit({ list: false, detail: false, status: true });
  }

  setConnection(state: ConnectionState, detail?: string): void {
    this.connection = { state, detail: detail ?? null, since: this.clock.now() };
    this.emit({ list: false, detail: false, status: true });
  }

  setRole(role: Role | null): void {
    this.role = role;
    this.emit({ list: false, detail: false, status: true });
  }

  /** Open a workspace (null closes the view). The caller fetches its view and history. */
  select(id: string | null): void {
    if (this.detail?.id === id) return;
    this.detail = id === null ? null : new WorkspaceDetail(id);
    this.emit({ list: false, detail: true, status: false });
  }

  /** A fresh `workspace.get` answer for any workspace (`asOfMark`: see `WorkspaceDetail.applyView`). */
  applyView(view: WorkspaceView, asOfMark?: number): void {
    this.list.upsertViews([view], this.clock.now());
    if (this.detail?.id === view.id) this.detail.applyView(view, asOfMark);
    this.emit({ list: true, detail: this.detail?.id === view.id, status: false });
  }

  /** `events.history` for the selected workspace, oldest first. */
  applyHistory(id: string, events: readonly WorkspaceEvent[]): void {
    if (this.detail?.id !== id) return;
    this.detail.applyHistory(events);
    this.emit({ list: false, detail: true, status: false });
  }

  /** The current time on the injected clock. */
  now(): number {
    return this.clock.now();
  }

  /** A `pool.list` answer. */
  applyPools(items: readonly PoolView[]): void {
    this.pools.apply(items, this.clock.now());
    this.pools.dirty = false;
    this.emit({ list: false, detail: false, status: false, pools: true });
  }

  /** `pool.list` failed: the server answered with an error (no pools here), or could not be reached. */
  poolsFailed(message: string, opts: { unsupported: boolean }): void {
    if (opts.unsupported) this.pools.unsupported();
    else this.pools.error = message;
    this.emit({ list: false, detail: false, status: false, pools: true });
  }

  /** Record an action the user started; returns its sequence number for `actionDone`/`actionFailed`. */
  actionStarted(workspaceId: string, kind: ActionKind): number {
    const row: ActionRow = { seq: ++this.actionSeq, workspaceId, kind, status: 'pending', outcome: 'sent…', at: this.clock.now(), finishedAt: null };
    this.actions.unshift(row);
    if (this.actions.length > ACTION_LIMIT) this.actions.length = ACTION_LIMIT;
    this.emit({ list: false, detail: false, status: true });
    return row.seq;
  }

  actionDone(seq: number, outcome: string): void {
    this.finishAction(seq, 'done', outcome);
  }

  /** A failed action; a forbidden answer also teaches us the role cannot command. */
  actionFailed(seq: number, message: string, opts: { forbidden?: boolean } = {}): void {
    if (opts.forbidden && (this.role === null || this.canCommand)) this.role = 'viewer';
    this.finishAction(seq, 'failed', message);
  }

  private finishAction(seq: number, status: ActionRow['status'], outcome: string): void {
    const row = this.actions.find((a) => a.seq === seq);
    if (!row) return;
    Object.assign(row, { status, outcome, finishedAt: this.clock.now() });
    this.emit({ list: false, detail: false, status: true });
  }

  private applySelectedView(views: readonly WorkspaceView[]): void {
    if (!this.detail) return;
    const id = this.detail.id;
    const v = views.find((w) => w.id === id);
    if (v) this.detail.applyView(v);
  }

  private flushQueue(): Change {
    const batch = this.queue;
    const queuedAt = this.queuedAt;
    this.queue = [];
    this.queuedAt = null;
    let oldestAt: number | null = null;
    let list = false;
    let detail = false;
    for (const ev of batch) {
      if (oldestAt === null || ev.at < oldestAt) oldestAt = ev.at;
      if (this.list.applyEvent(ev)) list = true;
      if (!this.pools.dirty && this.list.get(ev.id)?.pool) this.pools.dirty = true;
      if (this.detail?.id === ev.id) {
        this.detail.applyEvent(ev);
        detail = true;
      }
    }
    return { events: batch.length, oldestAt, queuedAt, list, detail, status: false, pools: false };
  }

  private emit(c: Pick<Change, 'list' | 'detail' | 'status'> & Partial<Change>): void {
    const change: Change = { events: 0, oldestAt: null, queuedAt: null, pools: false, ...c };
    for (const fn of this.listeners) fn(change);
  }
}
