/**
 * Prebuild pools as any replica of a cluster sees them. Each pool has one reconciler in the whole cluster:
 * the owner of the shard `shardOf('pool:<name>')` runs it (services.ts), and it moves with that shard.
 * `pool.set` is rendered here (with the caller's role) and routed to that owner, which stores it and runs
 * the pass that acts on it; reads come from the store. The reconciler's creates, starts and destroys go
 * to each prebuild's own owner (`PoolWorkspaces` over the cluster), since prebuild ids hash anywhere.
 *
 * @example
 * const views = new ClusterViews(store, replica.events, route);
 * const pools = new ClusterPools(store, views, route, () => shards.gauges());
 * await pools.set({ pool: 'python', desired: 3, template: 'python' }, render);
 */
import type { Observable } from 'rxjs';
import { WsupError } from '../errors.ts';
import type { LiveRow, WorkspaceStore } from '../store/store.ts';
import { checkPoolName, classify, definition, MAX_DESIRED, notFound, poolView, type PoolSetRequest, type RenderSpec } from '../supervisor/pool-rules.ts';
import type { PoolService, PoolView, PoolWorkspaces } from '../supervisor/pools.ts';
import type { SupervisorEvent, WorkspaceView } from '../supervisor/types.ts';
import type { RouteCall } from './claims.ts';
import { poolKey } from './services.ts';
import { viewOfRow } from '../supervisor/row-view.ts';

/** Every replica's workspaces for a pool reconciler: views read from the store, commands to each owner. */
export class ClusterViews implements PoolWorkspaces {
  private readonly views = new Map<string, WorkspaceView>();

  constructor(
    private readonly store: WorkspaceStore,
    readonly events: Observable<SupervisorEvent>,
    private readonly route: RouteCall,
  ) {}

  has(id: string): boolean {
    return this.views.has(id);
  }

  /** Every view read so far, by id. */
  get known(): ReadonlyMap<string, WorkspaceView> {
    return this.views;
  }

  get(id: string): WorkspaceView {
    const v = this.views.get(id);
    if (!v) throw new WsupError('WSUP_NOT_FOUND', `workspace ${id} not found`, { workspaceId: id });
    return v;
  }

  ensure(id: string, opts: { requester: string }): Promise<unknown> {
    return this.route('workspace.ensure', { id, requester: opts.requester });
  }

  destroy(id: string, opts: { requester: string }): Promise<unknown> {
    return this.route('workspace.destroy', { id, requester: opts.requester });
  }

  /** Read the views of `ids` from the store: every owner commits there before it answers. */
  async refresh(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const { rows } = await this.store.engine.query<LiveRow>('SELECT id, spec, desired, state, snapshot FROM workspaces WHERE id = ANY($1::text[])', [ids]);
    const seen = new Set<string>();
    for (const row of rows) {
      seen.add(row.id);
      this.views.set(row.id, viewOfRow(row));
    }
    for (const id of ids) if (!seen.has(id)) this.views.delete(id);
  }
}

/** `pool.*` for the control server of a cluster replica. */
export class ClusterPools {
  constructor(
    private readonly store: WorkspaceStore,
    private readonly views: ClusterViews,
    private readonly route: RouteCall,
    private readonly local: () => ReturnType<PoolService['gauges']>,
  ) {}

  async set(req: PoolSetRequest, render: RenderSpec): Promise<PoolView> {
    checkPoolName(req.pool);
    if (!Number.isInteger(req.desired) || req.desired < 0 || req.desired > MAX_DESIRED) {
      throw new WsupError('WSUP_INVALID_ARGUMENT', `pool ${req.pool}: desired must be a whole number from 0 to ${MAX_DESIRED}, got ${req.desired}`);
    }
    if (req.template !== undefined && req.spec !== undefined) throw new WsupError('WSUP_INVALID_ARGUMENT', `pool ${req.pool}: pass at most one of template and spec`);
    // Rendered here, where the caller's role is known; the pool's owner stores what was rendered.
    const def = definition(req, await this.store.pools.get(req.pool), render);
    return (await this.route('pool.set', {
      id: poolKey(req.pool),
      pool: req.pool,
      desired: req.desired,
      template: def.template,
      params: def.params,
      spec: def.spec,
      ...(req.policy !== undefined ? { policy: req.policy } : {}),
    })) as PoolView;
  }

  async get(pool: string): Promise<PoolView> {
    const row = await this.store.pools.get(pool);
    if (row === null) throw notFound(pool);
    return poolView(row, await this.counts(pool));
  }

  async list(): Promise<PoolView[]> {
    const rows = await this.store.pools.list();
    return Promise.all(rows.map(async (row) => poolView(row, await this.counts(row.pool))));
  }

  delete(pool: string): Promise<{ pool: string; destroyed: number }> {
    checkPoolName(pool);
    return this.route('pool.delete', { id: poolKey(pool), pool }) as Promise<{ pool: string; destroyed: number }>;
  }

  /** The pools this replica reconciles (each replica reports its own). */
  gauges(): PoolView[] {
    return this.local();
  }

  private async counts(pool: string) {
    const members = await this.store.pools.members(pool);
    await this.views.refresh(members.map((m) => m.id));
    return classify(members, this.views.known);
  }
}
