/**
 * Prebuild pools that keep themselves full. A pool is a durable row (`store.pools`); its reconciler keeps
 * `desired` unclaimed prebuilds started, and runs one pass at a time per pool (passes asked for while one
 * runs coalesce into one more). The reconciler decides only how many prebuilds to create or destroy:
 * every create, start and destroy is a request to the supervisor's actors, and what it counts it reads from
 * their views and from the store (who owns each prebuild).
 *
 * A pass is asked for by `set`, by a claim from the pool, by cycle events of the pool's prebuilds, at the
 * end of a backoff, and by a periodic sweep; every timer goes through the supervisor's `Clock`.
 *
 * @example
 * const pools = new PoolService({ store, claims, supervisor });
 * await pools.start();                                          // after recovery and claims.reconcile()
 * await pools.set({ pool: 'node', desired: 3, spec: { image: 'node:22' } });
 * pools.get('node');                                            // { ready, starting, failing, ... }
 */
import { randomBytes } from 'node:crypto';
import type { Observable, Subscription } from 'rxjs';
import { errorMessage, WsupError } from '../errors.ts';
import type { PoolView } from '../protocol/model.ts';
import { RETIRED_OWNER, SYSTEM_OWNER, type PoolMember, type PoolRecord, type WorkspaceStore } from '../store/index.ts';
import type { ClaimService } from './claims.ts';
import { systemClock, type Clock } from './clock.ts';
import { checkPoolName, classify, definition, MAX_DESIRED, MAX_POOLS, notFound, poolView, type PoolSetRequest, type RenderSpec } from './pool-rules.ts';
import type { SupervisorEvent, WorkspaceView } from './types.ts';

export type { PoolView };
export { MAX_DESIRED, MAX_POOLS, type PoolSetRequest, type RenderSpec } from './pool-rules.ts';

/** New prebuilds created at once in one pass (their creates commit together). */
const CREATE_BATCH = 32;

/**
 * What the reconciler asks of the workspaces: the local Supervisor as is; in a cluster, a view of every
 * replica's workspaces (prebuild ids hash to any shard) whose commands go to each one's owner.
 */
export interface PoolWorkspaces {
  has(id: string): boolean | Promise<boolean>;
  get(id: string): WorkspaceView | Promise<WorkspaceView>;
  readonly events: Observable<SupervisorEvent>;
  ensure(id: string, opts: { requester: string }): Promise<unknown>;
  destroy(id: string, opts: { requester: string }): Promise<unknown>;
  /** Bring the views of `ids` up to date before they are counted (a cluster reads them from the store). */
  refresh?(ids: readonly string[]): Promise<void>;
}

export interface PoolServiceOptions {
  store: WorkspaceStore;
  claims: Pick<ClaimService, 'createPrebuild'>;
  supervisor: PoolWorkspaces;
  /** The pools this service reconciles (a cluster shard's); default: every pool in the store. */
  owns?: (pool: string) => boolean;
  clock?: Clock;
  /** Every pool gets a pass this often, whatever happened. Default 30 s. */
  sweepMs?: number;
  /** Backoff after the n-th failed prebuild start in a row: min(cap, base * 2^(n-1)). Default 1 s and 5 min. */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** The 8 hex of a new prebuild's id. */
  newSuffix?: () => string;
  /** Errors nobody awaits (a pass that could not read the store); never thrown. */
  onError?: (err: unknown, context: { id?: string; what: string }) => void;
}

/** What happened to a pool's prebuilds since its last pass, applied by the next one. */
interface Pending {
  /** Failed starts, by prebuild: counted only while the prebuild is still the pool's (unclaimed). */
  failed: Map<string, { message: string; at: number }>;
  /** Failures of the pool itself (a prebuild that could not be created): always counted. */
  errors: Array<{ message: string; at: number }>;
  completed: Set<string>;
}

const noPending = (): Pending => ({ failed: new Map(), errors: [], completed: new Set() });

interface Reconciler {
  chain: Promise<void>;
  queued: Promise<void> | null;
  timer: unknown;
  pending: Pending;
  /** Members and owners as of the last pass (for the gauges and for routing events), and their views then. */
  members: PoolMember[];
  views: Map<string, WorkspaceView>;
}

export class PoolService {
  private readonly clock: Clock;
  private readonly reconcilers = new Map<string, Reconciler>();
  /** Prebuild id → its pool, for routing the supervisor's events. */
  private readonly memberOf = new Map<string, string>();
  /** Cached rows, for the gauges (a scrape must not query the store per pool). */
  private readonly rows = new Map<string, PoolRecord>();
  private subscription: Subscription | null = null;
  private sweepTimer: unknown = null;
  private definitions: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly opts: PoolServiceOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  /** Follow the supervisor and give every stored pool a pass: call after recovery (and `claims.reconcile()`). */
  async start(): Promise<void> {
    this.subscription ??= this.opts.supervisor.events.subscribe((ev) => this.onEvent(ev));
    await this.sweep();
  }

  /** Create or change a pool, and wait for the pass that acts on it. */
  async set(req: PoolSetRequest, render: RenderSpec): Promise<PoolView> {
    this.assertOpen();
    checkPoolName(req.pool);
    if (!Number.isInteger(req.desired) || req.desired < 0 || req.desired > MAX_DESIRED) {
      throw new WsupError('WSUP_INVALID_ARGUMENT', `pool ${req.pool}: desired must be a whole number from 0 to ${MAX_DESIRED}, got ${req.desired}`);
    }
    if (req.template !== undefined && req.spec !== undefined) throw new WsupError('WSUP_INVALID_ARGUMENT', `pool ${req.pool}: pass at most one of template and spec`);
    // One definition write at a time: the pool count check and the insert cannot interleave.
    const write = this.definitions.then(async () => {
      const current = await this.opts.store.pools.get(req.pool);
      if (current === null && (await this.opts.store.pools.count()) >= MAX_POOLS) {
        throw new WsupError('WSUP_INVALID_ARGUMENT', `pool ${req.pool}: this server keeps at most ${MAX_POOLS} pools: delete one (wsup pool delete) or reuse an existing pool`);
      }
      const def = definition(req, current, render);
      return this.opts.store.pools.put({ pool: req.pool, desired: req.desired, ...def, policy: req.policy ?? current?.policy ?? null });
    });
    this.definitions = write.catch(() => undefined);
    this.rows.set(req.pool, await write);
    await this.trigger(req.pool);
    return this.get(req.pool);
  }

  /** The pool and how full it is now. */
  async get(pool: string): Promise<PoolView> {
    const row = await this.opts.store.pools.get(pool);
    if (row === null) throw notFound(pool);
    const members = await this.members(pool);
    return poolView(row, classify(members, await this.views(members)));
  }

  async list(): Promise<PoolView[]> {
    const rows = await this.opts.store.pools.list();
    return Promise.all(
      rows.map(async (row) => {
        const members = await this.members(row.pool);
        return poolView(row, classify(members, await this.views(members)));
      }),
    );
  }

  /** Run a pass of `pool` now (a cluster routes a change made on another replica here) and answer its view. */
  async reconcile(pool: string): Promise<PoolView> {
    this.assertOpen();
    await this.trigger(pool);
    return this.get(pool);
  }

  /** Stop keeping the pool: destroy its unclaimed prebuilds (claimed ones are never touched) and drop the row. */
  async delete(pool: string): Promise<{ pool: string; destroyed: number }> {
    this.assertOpen();
    const r = this.reconciler(pool);
    // In the pool's turn, so no pass fills it meanwhile.
    const done = r.chain.then(async () => {
      if (!(await this.opts.store.pools.delete(pool))) throw notFound(pool);
      const members = await this.members(pool);
      const c = classify(members, await this.views(members));
      const destroyed = await this.retireAndDestroy(pool, [...c.failing, ...c.stopped, ...c.starting, ...c.ready].map((v) => v.id));
      for (const v of c.retired) this.destroy(pool, v.id);
      this.forget(pool);
      return destroyed.length;
    });
    r.chain = done.then(() => undefined, () => undefined);
    return { pool, destroyed: await done };
  }

  /** Per-pool counts as of each pool's last pass, for the gauges (no store query). */
  gauges(): PoolView[] {
    return [...this.rows.values()].map((row) => {
      const r = this.reconcilers.get(row.pool);
      return poolView(row, classify(r?.members ?? [], r?.views ?? new Map()));
    });
  }

  /** Resolves once no pass is running or queued (tests, shutdown). */
  async idle(): Promise<void> {
    for (;;) {
      const chains = [...this.reconcilers.values()].map((r) => r.chain);
      await Promise.all(chains);
      if ([...this.reconcilers.values()].every((r, i) => r.chain === chains[i])) return;
    }
  }

  /** Stop reconciling (before the supervisor shuts down): timers cleared, passes in flight finish. */
  async close(): Promise<void> {
    this.closed = true;
    this.subscription?.unsubscribe();
    this.subscription = null;
    if (this.sweepTimer !== null) this.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = null;
    for (const r of this.reconcilers.values()) if (r.timer !== null) this.clock.clearTimeout(r.timer);
    await this.idle();
  }

  /** Ask for a pass; resolves when a pass that began after this call has finished. */
  private trigger(pool: string): Promise<void> {
    const r = this.reconciler(pool);
    if (r.queued) return r.queued;
    const queued = r.chain.then(async () => {
      r.queued = null;
      try {
        await this.pass(pool, r);
      } catch (err) {
        this.report(err, pool, 'a pool pass failed (the next event or sweep retries it)');
      }
    });
    r.queued = queued;
    r.chain = queued;
    return queued;
  }

  private async pass(pool: string, r: Reconciler): Promise<void> {
    if (this.closed) return;
    let row = await this.opts.store.pools.get(pool);
    if (row === null) return this.forget(pool);
    r.members = await this.members(pool);
    for (const m of r.members) this.memberOf.set(m.id, pool);
    row = await this.applyPending(row, r);
    this.rows.set(pool, row);
    const now = this.clock.now();
    r.views = await this.views(r.members);
    const c = classify(r.members, r.views);
    // Resume destroys a crash interrupted, and never keep a failed prebuild: a broken template must not pile them up.
    for (const v of c.retired) this.destroy(pool, v.id);
    await this.retireAndDestroy(pool, c.failing.filter((v) => v.desired !== 'destroyed' && !c.retired.includes(v)).map((v) => v.id));

    const backingOff = row.backoffUntil !== null && row.backoffUntil > now;
    const live = c.ready.length + c.starting.length;
    if (live < row.desired && !backingOff) {
      // While the template is failing, one probe at a time; a completed start lifts the limit.
      const room = row.failures > 0 ? Math.min(row.desired - live, 1 - c.starting.length) : row.desired - live;
      // Idle ones are started before new ones are made, and count against the room either way.
      for (const v of c.stopped.slice(0, Math.max(0, room))) this.ensure(pool, v.id);
      await this.fill(row, r, room - c.stopped.length);
    } else {
      // Extras: the least useful first (idle, then starting, then ready), newest first within each.
      const newest = (vs: WorkspaceView[]) => [...vs].sort((a, b) => this.createdAt(r, b.id) - this.createdAt(r, a.id));
      const order = [...newest(c.stopped), ...newest(c.starting), ...newest(c.ready)];
      const extras = order.length - row.desired;
      if (extras > 0) await this.retireAndDestroy(pool, order.slice(0, extras).map((v) => v.id));
    }
    this.armBackoff(pool, r, row.backoffUntil);
  }

  /** Fold the failures and completions seen since the last pass into the pool's row. */
  private async applyPending(row: PoolRecord, r: Reconciler): Promise<PoolRecord> {
    const { failed, errors, completed } = r.pending;
    r.pending = noPending();
    const unclaimed = new Set(r.members.filter((m) => m.owner === SYSTEM_OWNER && !m.claimed).map((m) => m.id));
    let { failures, lastError, backoffUntil } = row;
    if ([...completed].some((id) => unclaimed.has(id)) && (failures > 0 || backoffUntil !== null)) {
      failures = 0;
      backoffUntil = null;
    }
    const counted = [...failed].filter(([id]) => unclaimed.has(id)).map(([, f]) => f); // not one claimed or retired meanwhile
    for (const f of [...counted, ...errors].sort((a, b) => a.at - b.at)) {
      failures++;
      lastError = f;
      backoffUntil = Math.max(backoffUntil ?? 0, f.at + this.backoffMs(failures));
    }
    if (failures === row.failures && lastError === row.lastError && backoffUntil === row.backoffUntil) return row;
    await this.opts.store.pools.setHealth(row.pool, { failures, lastError, backoffUntil });
    return { ...row, failures, lastError, backoffUntil };
  }

  /** Create and start `n` new prebuilds; their starts are not awaited. */
  private async fill(row: PoolRecord, r: Reconciler, n: number): Promise<void> {
    const spec = row.policy === null ? row.spec : { ...row.spec, wsupPolicyDefaults: row.policy };
    for (let made = 0; made < n; made += CREATE_BATCH) {
      const batch = Array.from({ length: Math.min(CREATE_BATCH, n - made) }, () => `${row.pool}-${this.suffix()}`);
      const created = await Promise.allSettled(batch.map((id) => this.opts.claims.createPrebuild(id, spec, row.pool)));
      for (const [i, result] of created.entries()) {
        const id = batch[i]!;
        if (result.status === 'rejected') {
          // Counted like a failed start: the pool backs off instead of retrying at once.
          r.pending.errors.push({ message: `creating prebuild ${id} failed: ${errorMessage(result.reason)}`, at: this.clock.now() });
          continue;
        }
        this.memberOf.set(id, row.pool);
        // Wall time, like the store's created_at it is compared with.
        r.members.push({ id, owner: SYSTEM_OWNER, claimed: false, createdAt: Date.now() });
        this.ensure(row.pool, id);
      }
      // Stop here; the next pass counts the failure and backs off.
      if (r.pending.errors.length > 0) return void this.trigger(row.pool);
    }
  }

  /** Take prebuilds back (only those still unclaimed) and destroy them; answers the ids destroyed. */
  private async retireAndDestroy(pool: string, ids: string[]): Promise<string[]> {
    const retired = await this.opts.store.pools.retire(ids);
    for (const id of retired) this.destroy(pool, id);
    const r = this.reconcilers.get(pool);
    if (r) for (const m of r.members) if (retired.includes(m.id)) m.owner = RETIRED_OWNER;
    return retired;
  }

  /** Ask for a start; the view shows it starting at once. A start refused outright (a quota) counts as a failure. */
  private ensure(pool: string, id: string): void {
    this.opts.supervisor.ensure(id, { requester: `pool:${pool}` }).catch((err: unknown) => {
      if (!(err instanceof WsupError) || err.code !== 'WSUP_QUOTA') return; // cycle failures arrive as events
      this.reconciler(pool).pending.failed.set(id, { message: err.message, at: this.clock.now() });
      void this.trigger(pool);
    });
  }

  private destroy(pool: string, id: string): void {
    const sup = this.opts.supervisor;
    void (async () => {
      if (!(await sup.has(id))) return;
      await sup.destroy(id, { requester: `pool:${pool}` });
    })().catch((err: unknown) => this.report(err, pool, `destroying prebuild ${id} failed`));
  }

  /** The views of `members` now (one that cannot be read, e.g. quarantined, is left out). */
  private async views(members: readonly PoolMember[]): Promise<Map<string, WorkspaceView>> {
    const sup = this.opts.supervisor;
    const views = new Map<string, WorkspaceView>();
    // A few reads at a time (a member not in memory is read from the store): a pool of 1,000 is not 1,000 at once.
    for (let i = 0; i < members.length; i += 32) {
      await Promise.all(
        members.slice(i, i + 32).map(async (m) => {
          try {
            views.set(m.id, await sup.get(m.id));
          } catch {
            // quarantined, destroyed or gone: not counted
          }
        }),
      );
    }
    return views;
  }

  private onEvent(ev: SupervisorEvent): void {
    const pool = this.memberOf.get(ev.id);
    if (pool === undefined || this.closed) return;
    const r = this.reconciler(pool);
    switch (ev.type) {
      case 'cycle.failed':
        // An event relayed from another replica may come without its details (too large to relay whole).
        r.pending.failed.set(ev.id, { message: ev.error?.message ?? 'start failed', at: ev.at });
        break;
      case 'cycle.completed':
        r.pending.completed.add(ev.id);
        break;
      case 'request':
        // A claim's restart: the pool is one prebuild short now, refill at once.
        if (!ev.requester?.startsWith('claim:')) return;
        break;
      case 'transition':
        if (ev.to !== 'destroyed') return;
        this.memberOf.delete(ev.id);
        break;
      default:
        return;
    }
    void this.trigger(pool);
  }

  private async sweep(): Promise<void> {
    this.sweepTimer = null;
    if (this.closed) return;
    try {
      const rows = (await this.opts.store.pools.list()).filter((row) => this.owns(row.pool));
      for (const row of rows) this.rows.set(row.pool, row);
      await Promise.all(rows.map((row) => this.trigger(row.pool)));
    } catch (err) {
      this.report(err, undefined, 'a pool sweep could not read the store');
    }
    if (!this.closed) this.sweepTimer = this.clock.setTimeout(() => void this.sweep(), this.opts.sweepMs ?? 30_000);
  }

  private armBackoff(pool: string, r: Reconciler, until: number | null): void {
    if (r.timer !== null) this.clock.clearTimeout(r.timer);
    r.timer = null;
    const now = this.clock.now();
    if (until === null || until <= now || this.closed) return;
    r.timer = this.clock.setTimeout(() => {
      r.timer = null;
      void this.trigger(pool);
    }, until - now);
  }

  private backoffMs(failures: number): number {
    const base = this.opts.backoffBaseMs ?? 1_000;
    const cap = this.opts.backoffCapMs ?? 300_000;
    return Math.min(cap, base * 2 ** Math.min(failures - 1, 30));
  }

  /** The pool's live prebuilds, their views brought up to date. */
  private async members(pool: string): Promise<PoolMember[]> {
    const members = await this.opts.store.pools.members(pool);
    await this.opts.supervisor.refresh?.(members.map((m) => m.id));
    return members;
  }

  private owns(pool: string): boolean {
    return this.opts.owns?.(pool) ?? true;
  }

  private createdAt(r: Reconciler, id: string): number {
    return r.members.find((m) => m.id === id)?.createdAt ?? 0;
  }

  private suffix(): string {
    return this.opts.newSuffix?.() ?? randomBytes(4).toString('hex');
  }

  private reconciler(pool: string): Reconciler {
    let r = this.reconcilers.get(pool);
    if (!r) {
      r = { chain: Promise.resolve(), queued: null, timer: null, pending: noPending(), members: [], views: new Map() };
      this.reconcilers.set(pool, r);
    }
    return r;
  }

  private forget(pool: string): void {
    const r = this.reconcilers.get(pool);
    if (r?.timer != null) this.clock.clearTimeout(r.timer);
    if (r) r.timer = null;
    this.rows.delete(pool);
    for (const [id, p] of this.memberOf) if (p === pool) this.memberOf.delete(id);
  }

  private assertOpen(): void {
    if (this.closed) throw new WsupError('WSUP_SHUTTING_DOWN', 'pools are closed: the server is shutting down');
  }

  private report(err: unknown, pool: string | undefined, what: string): void {
    try {
      this.opts.onError?.(err, { what: `${pool === undefined ? '' : `pool ${pool}: `}${what}: ${errorMessage(err)}` });
    } catch {
      // a throwing reporter must not break the reconciler
    }
  }
}
