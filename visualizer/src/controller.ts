/**
 * Wires the client SDK to the view model: initial list, live subscription, resync after a reconnect or
 * lag, on-demand views and history for the open workspace, operator actions with their outcomes, and the
 * prebuild pools (at load, every 5 s, and within a second of an event for a workspace in a pool). No DOM
 * here; the API is the subset of `WsupClient` it uses, so tests can pass a fake.
 *
 * @example
 * const controller = new Controller(client, model, { fetchRole: () => whoami(token) });
 * await controller.start();
 * await controller.open('ws-1');
 * controller.restart('ws-1', 'deploy config change');
 */
import { ERROR_CODES, WsupRpcError, type MethodName, type Params, type Results, type Role, type SubscribeHandlers, type WorkspaceEvent, type WorkspaceView } from '../../src/client/index.ts';
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

  constructor(
    private readonly api: ControlApi,
    private readonly model: VisualizerModel,
    private readonly opts: ControllerOptions,
  ) {}

  /** Learn the role, subscribe to every workspace's events, then load the list (events arriving meanwhile queue). */
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

  /** Fetch every workspace, page by page, and replace the list with it. */
  async relist(): Promise<void> {
    const all: WorkspaceView[] = [];
    let cursor: string | null = null;
    do {
      const page: Results['workspace.list'] = await this.api.call('workspace.list', { limit: LIST_PAGE, ...(cursor ? { cursor } : {}) });
      all.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor !== null);
    this.model.load(all);
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
    this.model.resync(info);
    this.holdRefresh = false;
    // A lagged resync cut to fit one frame is not every workspace: list them all, as after a reconnect.
    const relist = info.reason === 'reconnected' || info.complete === false;
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
