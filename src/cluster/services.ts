/**
 * What runs beside each shard's supervisor on the shard's owner, so that a cluster does everything one node
 * does: the shard's prebuild claims (and a fresh agent token for each of its provider starts), a bus that
 * coalesces the shard's file writes into one restart per burst, the reconcilers of the pools that hash into
 * the shard, and the methods its owner answers for commands routed by id (`files.written`, claims by id,
 * prebuild creates, `workspace.update`, pool changes). Built when the shard is gained, closed before it is
 * handed over: every piece of a shard's state lives on that shard's owner, and moves with it.
 *
 * @example
 * const shards = new ShardServiceSet({ shards: 64, ledger, poolWorkspaces, poolClaims, onClaimChange, onError });
 * const replica = await Replica.start({ url, provider, services: shards.build, supervisor: { ledger } });
 * shards.liveness({ workspaceId: 'ws-1', alive: false, detail: 'exited' }); // to ws-1's bus, if owned here
 */
import { BUS_DEFAULTS, createBus, type Bus, type LivenessEvent } from '../bus/index.ts';
import { WorkspaceNotFoundError, WsupError } from '../errors.ts';
import { DurableBursts } from '../supervisor/bursts.ts';
import { ClaimService, claimBuildIdFor } from '../supervisor/claims.ts';
import { PoolService, type PoolSetRequest, type PoolWorkspaces } from '../supervisor/pools.ts';
import type { QuotaLedger } from '../supervisor/quota.ts';
import type { Supervisor, SupervisorOptions } from '../supervisor/supervisor.ts';
import type { PolicyPatch, WorkspaceView } from '../supervisor/types.ts';
import type { ClusterParams, ShardContext, ShardServices } from './replica.ts';
import { shardOf } from './shards.ts';

type PrepareSpec = NonNullable<SupervisorOptions['prepareSpec']>;
type OnError = (err: unknown, context: { id?: string; what: string }) => void;

/** A pool is reconciled by the owner of this key's shard; commands about the pool are routed by it. */
export const poolKey = (pool: string): string => `pool:${pool}`;

/** Methods the owner answers beyond the supervisor's, and what they take besides `id`. */
export interface ShardMethodParams {
  'files.written': { paths: string[] };
  'workspace.claim': { userId: string };
  'prebuild.create': { spec: Record<string, unknown>; pool: string | null };
  'workspace.update': { reason?: string };
  'pool.set': { pool: string; desired: number; template: string | null; params: Record<string, unknown> | null; spec: Record<string, unknown>; policy?: PolicyPatch };
  'pool.reconcile': { pool: string };
  'pool.delete': { pool: string };
}
export type ShardMethod = keyof ShardMethodParams;

export interface ShardServiceSetOptions {
  shards: number;
  /** The replica's one quota ledger, shared by its shards' supervisors. */
  ledger: QuotaLedger;
  /** Every replica's workspaces, for pool reconcilers (a prebuild may hash to any shard). */
  poolWorkspaces: PoolWorkspaces;
  /** Where a pool's new prebuilds are created (routed to each one's owner). */
  poolClaims: PoolServiceClaims;
  /** A hook before every provider start (a template auto-update), run before the claim service's token. */
  prepareSpec?: PrepareSpec;
  /** A claim of a workspace here changed durably: tell the other replicas' agent channels. */
  onClaimChange: (id: string) => void;
  onError: OnError;
  /** Bus windows (tests shorten them). */
  bus?: { quietMs?: number; maxWaitMs?: number; activityWindowMs?: number };
  /** Pool reconciler timings (tests shorten them). */
  pools?: { sweepMs?: number; backoffBaseMs?: number; backoffCapMs?: number };
}

type PoolServiceClaims = ConstructorParameters<typeof PoolService>[0]['claims'];

/** One shard's services, while this replica owns the shard. */
interface ShardHandle {
  claims: ClaimService;
  pools: PoolService;
  bus: Bus | null;
  /** The bus's bursts on record: a burst acknowledged here is restarted once even if this replica dies. */
  bursts: DurableBursts;
  supervisor: Supervisor | null;
}

export class ShardServiceSet {
  private readonly live = new Map<number, ShardHandle>();

  constructor(private readonly opts: ShardServiceSetOptions) {}

  /** `ReplicaOptions.services`. */
  readonly build = async (ctx: ShardContext): Promise<ShardServices> => {
    const { opts } = this;
    const mine = (id: string) => shardOf(id, opts.shards) === ctx.shard;
    const claims = new ClaimService({ store: ctx.store, select: mine, onChange: opts.onClaimChange, onError: opts.onError });
    await claims.load(); // before recovery, so a claim build that completes during it is matched
    const pools = new PoolService({
      store: ctx.store,
      claims: opts.poolClaims,
      supervisor: opts.poolWorkspaces,
      owns: (pool) => shardOf(poolKey(pool), opts.shards) === ctx.shard,
      ...opts.pools,
      onError: opts.onError,
    });
    const bursts = new DurableBursts({ store: ctx.store, prefix: `files:${ctx.shard}.${ctx.epoch}`, owns: mine, onError: opts.onError });
    const h: ShardHandle = { claims, pools, bus: null, bursts, supervisor: null };
    this.live.set(ctx.shard, h);
    const activityWindowMs = opts.bus?.activityWindowMs ?? BUS_DEFAULTS.activityWindowMs;
    const prepareSpec = chain(opts.prepareSpec, claims.prepareSpec);
    let closed = false;
    return {
      supervisor: {
        prepareSpec,
        // A claimed prebuild counts against its claimer's quota.
        ownerOf: (id) => claims.ownerOf(id),
        beforeRecovery: (s) => {
          claims.attach(s);
          h.supervisor = s;
          h.bus = createBus({ ...opts.bus, activityWindowMs, sink: bursts.sink(s.busSink()), onSinkError: (err) => opts.onError(err, { what: `shard ${ctx.shard}: the bus could not deliver a command` }) });
        },
      },
      ready: async (s) => {
        await claims.reconcile();
        await bursts.recover(s.busSink()); // bursts an earlier owner acknowledged and did not restart
        // Not awaited: a shard's gain does not wait for its pools to fill.
        pools.start().catch((err: unknown) => opts.onError(err, { what: `shard ${ctx.shard}: starting its pool reconcilers failed` }));
      },
      methods: this.methods(h),
      close: async () => {
        if (closed) return;
        closed = true;
        if (this.live.get(ctx.shard) === h) this.live.delete(ctx.shard);
        await h.bus?.close().catch((err: unknown) => opts.onError(err, { what: `shard ${ctx.shard}: flushing its bus failed` })); // open bursts restart before the shard leaves
        await pools.close();
        claims.close();
        opts.ledger.handOver(mine);
      },
    };
  };

  /** Provider liveness for a workspace owned here goes through its shard's bus; others are ignored. */
  liveness(ev: LivenessEvent): void {
    const h = this.live.get(shardOf(ev.workspaceId, this.opts.shards));
    if (h?.bus && h.supervisor?.busSink().accepts(ev.workspaceId)) h.bus.liveness(ev);
  }

  /** Pool gauges of the pools reconciled here (each replica reports its own; summed, the cluster's). */
  gauges(): ReturnType<PoolService['gauges']> {
    return [...this.live.values()].flatMap((h) => h.pools.gauges());
  }

  /** Whether this replica runs the shard's services now. */
  has(shard: number): boolean {
    return this.live.has(shard);
  }

  private methods(h: ShardHandle): NonNullable<ShardServices['methods']> {
    const sup = (): Supervisor => {
      if (!h.supervisor) throw new WsupError('WSUP_SHUTTING_DOWN', 'the shard is still loading: retry');
      return h.supervisor;
    };
    const label = (v: WorkspaceView) => h.claims.label(v);
    type Impl = (p: ClusterParams & Record<string, unknown>, requester: string) => Promise<unknown>;
    const m: Record<string, Impl> = {
      // Views carry a prebuild's owner and pool, whichever replica asked.
      'workspace.get': async (p) => label(await sup().get(p.id)),
      'workspace.create': async (p) => label(await sup().create(p.id, p.spec ?? {})),
      'workspace.stop': async (p, requester) => label(await sup().stop(p.id, { requester })),
      'workspace.destroy': async (p, requester) => label(await sup().destroy(p.id, { requester })),
      'workspace.setPolicy': async (p) => label(await sup().setPolicy(p.id, p.policy ?? {})),
      'files.written': async (p) => {
        const paths = p.paths as ShardMethodParams['files.written']['paths'];
        if (!(await sup().accepts(p.id)) || !h.bus) throw new WorkspaceNotFoundError(p.id);
        await h.bursts.opened(p.id);
        const at = Date.now();
        for (const path of paths) h.bus.fileWritten({ workspaceId: p.id, path, at });
        h.bus.activity({ workspaceId: p.id, source: 'files.written', at }); // coalesced: ≤ 1 ACTIVITY per window
        return { id: p.id, accepted: paths.length };
      },
      // The build id comes from the call's label (unique per call, the same wherever it runs): a claim whose
      // owner died after committing it is answered, not refused, when the next owner runs it again.
      'workspace.claim': async (p, requester) => h.claims.claim({ id: p.id, userId: p.userId as string, buildId: claimBuildIdFor(requester) }),
      'prebuild.create': async (p) => h.claims.createPrebuild(p.id, (p.spec ?? {}), (p.pool as string | null) ?? null),
      'workspace.update': async (p, requester) => {
        const r = await sup().update(p.id, { requester, ...(typeof p.reason === 'string' ? { reason: p.reason } : {}) });
        return { id: r.id, outcome: r.outcome, cycle: r.cycle, state: r.state };
      },
      'pool.set': async (p) => {
        const q = p as unknown as ShardMethodParams['pool.set'];
        const req: PoolSetRequest = {
          pool: q.pool,
          desired: q.desired,
          ...(q.template !== null ? { template: q.template, ...(q.params !== null ? { params: q.params } : {}) } : { spec: q.spec }),
          ...(q.policy !== undefined ? { policy: q.policy } : {}),
        };
        // Rendered by the replica that took the call (with its caller's role): here it is used as is.
        return h.pools.set(req, () => q.spec);
      },
      'pool.reconcile': async (p) => h.pools.reconcile(p.pool as string),
      'pool.delete': async (p) => h.pools.delete(p.pool as string),
    };
    return m as NonNullable<ShardServices['methods']>;
  }
}

/** Hooks before a provider start, in order: each gets the spec the one before it returned. */
function chain(...hooks: Array<PrepareSpec | undefined>): PrepareSpec | undefined {
  const present = hooks.filter((x): x is PrepareSpec => x !== undefined);
  if (present.length <= 1) return present[0];
  return async (input) => {
    let spec = input.spec;
    for (const hook of present) spec = await hook({ ...input, spec });
    return spec;
  };
}
