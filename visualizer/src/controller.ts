/**
 * Wires the client SDK to the view model: initial list, live subscription, resync after a reconnect or
 * lag, on-demand views and history for the open workspace, and operator actions with their outcomes.
 * No DOM here; the API is the subset of `WsupClient` it uses, so tests can pass a fake.
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
}

const LIST_PAGE = 10_000;
const HISTORY_LIMIT = 200;
/** Views fetched per round for workspaces first seen in events (their owner and pool are unknown). */
const PARTIAL_FETCH = 20;

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export class Controller {
  private refreshing = false;
  private fetchingPartial = false;
  private holdRefresh = false;

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
    try {
      const [view, hist] = await Promise.all([
        this.api.call('workspace.get', { id: d.id }),
        history ? this.api.call('events.history', { id: d.id, limit: HISTORY_LIMIT }) : Promise.resolve(null),
      ]);
      if (hist) this.model.applyHistory(d.id, hist.events);
      this.model.applyView(view);
    } catch (err) {
      this.opts.onError?.(`workspace ${d.id}: ${message(err)}`);
    } finally {
      this.refreshing = false;
    }
  }

  private async fetchPartial(): Promise<void> {
    const ids = this.model.list.partialIds(PARTIAL_FETCH);
    if (ids.length === 0) return;
    this.fetchingPartial = true;
    try {
      const views = await Promise.allSettled(ids.map((id) => this.api.call('workspace.get', { id })));
      views.forEach((v, i) => {
        if (v.status === 'fulfilled') this.model.applyView(v.value);
        else this.model.list.markComplete(ids[i]!);
      });
    } finally {
      this.fetchingPartial = false;
    }
  }
}
