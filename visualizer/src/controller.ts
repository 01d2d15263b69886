/**
 * Wires the client SDK to the view model: the list page by page, live subscription, resync after a
 * reconnect or lag, on-demand views and history for the open workspace, operator actions with their
 * outcomes, and the prebuild pools (at load, every 5 s, and within a second of an event for a workspace in
 * a pool). No DOM here; the API is the subset of `WsupClient` it uses, so tests can pass a fake.
 *
 * The list is loaded lazily: the first page at start, the next one when the page asks for it (the user
 * scrolled near the end of the loaded rows), and after a resync the pages up to the last one loaded, never
 * the whole fleet. One `workspace.list` request is in flight at a time.
 *
 * @example
 * const controller = new Controller(client, model, { fetchRole: () => whoami(token) });
 * await controller.start();
 * void controller.more();                 // the list was scrolled to its end
 * await controller.open('ws-1');
 * controller.restart('ws-1', 'deploy config change');
 */
import { ERROR_CODES, WsupRpcError, type MethodName, type Params, type Results, type Role, type SubscribeHandlers, type WorkspaceEvent } from '../../src/client/index.ts';
import type { Change, VisualizerModel } from './model/model.ts';

export interface ControlApi {
  call<M extends MethodName>(method: M, params: Params<M>): Promise<Results[M]>;
  subscribe(filter: { ids?: string[] }, onEvent: (ev: WorkspaceEvent) => void, handlers?: SubscribeHandlers): Promise<{ unsubscribe(): Promise<void> }>;
}

export interface ControllerOptions {
  fetchRole(): Promise<Role | null>;
  /** Errors nobody awaits (background refreshes); the page shows them. */
  onError?(message: string): void;
  /**
   * Run `fn` every `ms` until the returned function is called (setInterval in the page, a fake clock in
   * tests). It paces the pools refresh and the fresh views of list rows whose deadlines a transition moved;
   * without it neither happens after load.
   */
  every?(ms: number, fn: () => void): () => void;
}

/** The most `workspace.list` returns at once; the server cuts a page shorter to fit its frame limit (~1 MiB). */
const LIST_PAGE = 10_000;
const HISTORY_LIMIT = 200;
/** Views fetched per round for workspaces first seen in events (their owner and pool are unknown). */
const PARTIAL_FETCH = 20;
const TICK_MS = 1000;
/** `pool.list` every this many ticks, and on the next tick after an event for a workspace in a pool. */
const POOLS_EVERY_TICKS = 5;

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export class Controller {
  private refreshing = false;
  private fetchingPartial = false;
  private holdRefresh = false;
  private fetchingStale = false;
  private poolsInFlight = false;
  private ticks = 0;
  private poolsAtTick = 0;
  private stopTicker: (() => void) | null = null;
  /** The list requests, one after another: the tail of the chain, and how many are queued or running. */
  private listChain: Promise<void> = Promise.resolve();
  private listJobs = 0;

  constructor(
    private readonly api: ControlApi,
    private readonly model: VisualizerModel,
    private readonly opts: ControllerOptions,
  ) {}

  /** Learn the role, subscribe to every workspace's events, then load the list's first page (events arriving meanwhile queue). */
  async start(): Promise<void> {
    this.model.setRole(await this.opts.fetchRole().catch(() => null));
    await this.api.subscribe({}, (ev) => this.model.receive(ev), { onResync: (info) => this.onResync(info) });
    await this.relist();
    this.model.onChange((c) => this.afterChange(c));
    void this.refreshPools();
    this.stopTicker = this.opts.every?.(TICK_MS, () => this.tick()) ?? null;
  }

  /** Stop the periodic refreshes. */
  close(): void {
    this.stopTicker?.();
    this.stopTicker = null;
  }

  /** Fetch the pools once (one request at a time). A server that answers with an error has none: the panel hides. */
  async refreshPools(): Promise<void> {
    if (this.poolsInFlight) return;
    this.poolsInFlight = true;
    this.poolsAtTick = this.ticks;
    try {
      const answer = await this.api.call('pool.list', {});
      this.model.applyPools(answer.items);
    } catch (err) {
      // Not an error for the page: an older server has no pools, and a dropped connection resyncs anyway.
      this.model.poolsFailed(message(err), { unsupported: err instanceof WsupRpcError });
    } finally {
      this.poolsInFlight = false;
    }
  }

  /**
   * Load the list again from its first page through the last page loaded (just the first page when nothing
   * is loaded yet); rows no longer listed are dropped at the end. Pages apply as they arrive, so memory and
   * work stay one page at a time. Runs after any list request in flight.
   */
  relist(): Promise<void> {
    return this.listJob(() => this.reload());
  }

  /**
   * Load the page after the last one loaded, unless the list is complete or a list request is already in
   * flight or queued (the page it brings moves the end away; the next scroll asks again).
   */
  more(): Promise<void> {
    if (this.listJobs > 0 || this.model.list.complete) return Promise.resolve();
    return this.listJob(() => this.nextPage()).catch((err: unknown) => this.opts.onError?.(`loading more workspaces failed: ${message(err)}`));
  }

  private listJob(job: () => Promise<void>): Promise<void> {
    this.listJobs++;
    this.model.setListLoading(true);
    const run = this.listChain.then(job).finally(() => {
      if (--this.listJobs === 0) this.model.setListLoading(false);
    });
    this.listChain = run.catch(() => undefined);
    return run;
  }

  private page(cursor: string | null): Promise<Results['workspace.list']> {
    return this.api.call('workspace.list', { limit: LIST_PAGE, ...(cursor !== null ? { cursor } : {}) });
  }

  private async reload(): Promise<void> {
    const target = this.model.list.reloadTarget();
    this.model.beginReload();
    let cursor: string | null = null;
    for (;;) {
      const page = await this.page(cursor);
      this.model.applyPage(page.items, page.nextCursor);
      const moved = page.items.length > 0; // an empty page naming a cursor would ask for itself again
      cursor = page.nextCursor;
      if (cursor === null || target === null || cursor >= target || !moved) break;
    }
    this.model.endReload(cursor);
  }

  private async nextPage(): Promise<void> {
    const through = this.model.list.through;
    if (through === null) return; // complete since this was asked for (a resync listed everything)
    const page = await this.page(through);
    this.model.applyPage(page.items, page.nextCursor);
  }

  /** Open a workspace: its view and its history, from which the timeline is rebuilt. */
  async open(id: string | null): Promise<void> {
    this.model.select(id);
    if (id !== null) await this.refreshDetail(true);
  }

  restart(id: string, reason: string): Promise<void> {
    return this.act(id, 'restart', async () => {
      const r = await this.api.call('workspace.restart', { id, source: 'manual', reason });
      return `${r.outcome}${r.cycle !== null ? ` (cycle ${r.cycle})` : ''}`;
    });
  }

  ensure(id: string): Promise<void> {
    return this.act(id, 'ensure', async () => {
      const r = await this.api.call('workspace.ensure', { id });
      return `${r.started ? 'started' : 'joined'}: ${r.state} at ${r.endpoint || 'no endpoint'}`;
    });
  }

  stop(id: string): Promise<void> {
    return this.act(id, 'stop', async () => {
      const v = await this.api.call('workspace.stop', { id });
      return `stopped: ${v.state}`;
    });
  }

  private async act(id: string, kind: 'restart' | 'ensure' | 'stop', run: () => Promise<string>): Promise<void> {
    const seq = this.model.actionStarted(id, kind);
    try {
      this.model.actionDone(seq, await run());
    } catch (err) {
      const forbidden = err instanceof WsupRpcError && err.code === ERROR_CODES.WSUP_FORBIDDEN;
      this.model.actionFailed(seq, message(err), { forbidden });
    }
  }

  private onResync(info: Parameters<NonNullable<SubscribeHandlers['onResync']>>[0]): void {
    // The snapshot marks the open workspace stale; its refetch (with history) follows below, once.
    this.holdRefresh = true;
    // After a reconnect, or a lagged snapshot that does not reach the last loaded row, the loaded range is listed again.
    const relist = this.model.resync(info);
    this.holdRefresh = false;
    // The server may be another version after a reconnect: ask for its pools again.
    if (info.reason === 'reconnected') void this.refreshPools();
    const refetch = relist ? this.relist().then(() => this.model.resynced()) : Promise.resolve();
    refetch.then(
      () => this.refreshDetail(true),
      (err: unknown) => this.opts.onError?.(`resync failed: ${message(err)}`),
    );
  }

  private afterChange(c: Change): void {
    if (c.detail && this.model.detail?.stale && !this.holdRefresh && !this.model.resyncing) void this.refreshDetail(false);
    if (c.list && !this.fetchingPartial) void this.fetchPartial();
  }

  /** One refresh in flight at a time; a change during it is picked up by the next `afterChange`. */
  private async refreshDetail(history: boolean): Promise<void> {
    const d = this.model.detail;
    if (!d || (this.refreshing && !history)) return;
    this.refreshing = true;
    const mark = d.staleMarks;
    let again = false;
    try {
      const [view, hist] = await Promise.all([
        this.api.call('workspace.get', { id: d.id }),
        history ? this.api.call('events.history', { id: d.id, limit: HISTORY_LIMIT }) : Promise.resolve(null),
      ]);
      if (hist) this.model.applyHistory(d.id, hist.events);
      this.model.applyView(view, mark);
      again = this.model.detail === d && d.stale; // an event moved a deadline while this was in flight
    } catch (err) {
      this.opts.onError?.(`workspace ${d.id}: ${message(err)}`);
    } finally {
      this.refreshing = false;
    }
    if (again) await this.refreshDetail(false);
  }

  private tick(): void {
    this.ticks++;
    const pools = this.model.pools;
    if (pools.status !== 'unsupported' && (pools.dirty || this.ticks - this.poolsAtTick >= POOLS_EVERY_TICKS)) void this.refreshPools();
    if (!this.fetchingStale) void this.fetchStaleNext();
  }

  /** Fresh views for list rows whose next policy action a transition made unknown: a bounded batch per tick. */
  private async fetchStaleNext(): Promise<void> {
    const ids = this.model.list.staleNextIds(PARTIAL_FETCH);
    if (ids.length === 0) return;
    this.fetchingStale = true;
    try {
      await this.fetchViews(ids);
    } finally {
      this.fetchingStale = false;
    }
  }

  private async fetchPartial(): Promise<void> {
    const ids = this.model.list.partialIds(PARTIAL_FETCH);
    if (ids.length === 0) return;
    this.fetchingPartial = true;
    try {
      await this.fetchViews(ids);
    } finally {
      this.fetchingPartial = false;
    }
  }

  private async fetchViews(ids: readonly string[]): Promise<void> {
    const views = await Promise.allSettled(ids.map((id) => this.api.call('workspace.get', { id })));
    views.forEach((v, i) => {
      if (v.status === 'fulfilled') this.model.applyView(v.value);
      else this.model.list.markComplete(ids[i]!);
    });
  }
}
