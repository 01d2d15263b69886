/**
 * One wsup replica of a cluster on PostgreSQL. It owns some shards (leases, see leases.ts); for each it
 * runs a durable Supervisor over a fenced store and a fenced provider, so the one-provider-call-in-flight
 * guarantee holds cluster-wide: only the lease holder's actors call the provider, a replica whose lease ran
 * out (locally) calls nothing, and a stale commit is refused inside its transaction.
 *
 * Commands for a workspace owned elsewhere (or whose shard is changing hands) are forwarded durably: a row
 * in `cluster_inbox`, drained by whoever owns the shard (woken by NOTIFY, and by a poll, since NOTIFY can
 * be lost), answered in the row once the owner committed. A restart carries its inbox id as requester, so
 * an owner that died after committing but before answering is not re-run by its successor: the successor
 * finds the request in the event log and answers with what was recorded. Exactly once.
 *
 * Events of every replica fan out through NOTIFY; after a (re)connect of the listener the caller is told
 * to resync from the store (`resyncs`).
 *
 * @example
 * const r = await Replica.start({ url, replica: 'r1', provider });
 * await r.call('workspace.restart', { id: 'ws-1', reason: 'deploy' }); // wherever ws-1 lives
 * await r.leave();                                                     // hand shards over, then stop
 */
import { randomUUID } from 'node:crypto';
import { Subject, type Observable, type Subscription } from 'rxjs';
import { NO_POLICY, type LifecycleState, type PolicyTiming, type WorkspaceContext } from '../../machines/workspace.types.ts';
import { errorMessage, WsupError } from '../errors.ts';
import type { Provider, ProviderFence } from '../providers/types.ts';
import type { SqlEngine, SqlQueryable } from '../store/engine.ts';
import { openEngine } from '../store/open.ts';
import { WorkspaceStore } from '../store/store.ts';
import { openDurableSupervisor, type DurableOptions } from '../supervisor/durable.ts';
import type { Supervisor, SupervisorOptions } from '../supervisor/supervisor.ts';
import type { PolicyPatch, RestartSource, SupervisorEvent, WorkspaceView } from '../supervisor/types.ts';
import { FencedError, fenceCheck, LeaseKeeper, type Lease } from './leases.ts';
import { Listener } from './notify.ts';
import { DEFAULT_SHARDS, shardOf } from './shards.ts';

export type ClusterMethod =
  | 'workspace.create'
  | 'workspace.ensure'
  | 'workspace.restart'
  | 'workspace.stop'
  | 'workspace.destroy'
  | 'workspace.get'
  | 'workspace.setPolicy'
  | 'workspace.activity';

export interface ClusterParams {
  id: string;
  spec?: Record<string, unknown>;
  source?: RestartSource;
  reason?: string;
  policy?: PolicyPatch;
  /** Where activity came from (`workspace.activity`). */
  activitySource?: string;
  wait?: boolean;
  requester?: string;
}

export interface ReplicaOptions {
  /** PostgreSQL only: a cluster needs LISTEN/NOTIFY and row locks across processes. */
  url: string;
  /** Isolate in this schema (tests). Channel names include it. */
  schema?: string;
  replica?: string;
  provider: Provider;
  shards?: number;
  ttlMs?: number;
  /** Inbox poll period, the safety net under NOTIFY. Default 250 ms. */
  pollMs?: number;
  /** How long a forwarded command waits for its answer. Default 60 s. */
  forwardTimeoutMs?: number;
  /** Handover: how long in-flight provider calls may take to finish. Default 30 s. */
  handoverMs?: number;
  supervisor?: Omit<SupervisorOptions, 'provider' | 'persist'>;
  onError?: (err: unknown, what: string) => void;
  /** Shard ownership changes (gained, handed over, lost), for logs. */
  onShard?: (e: { shard: number; epoch: number; what: 'gained' | 'released' | 'lost' }) => void;
  /**
   * What runs beside each shard's supervisor on its owner (claims, the bus's coalescing, pool reconcilers):
   * built when the shard is gained, before its workspaces load; closed before the shard is handed over.
   */
  services?: (shard: ShardContext) => ShardServices | Promise<ShardServices>;
}

export interface ShardContext {
  shard: number;
  epoch: number;
  store: WorkspaceStore;
}

export interface ShardServices {
  /** Extra options for the shard's durable supervisor (prepareSpec, beforeRecovery, ownerOf, ...). */
  supervisor?: Partial<Omit<DurableOptions, 'provider' | 'store' | 'select' | 'persist'>>;
  /** The shard's workspaces are restored: reconcile what recovery may have left (claims, pools). */
  ready?(supervisor: Supervisor): Promise<void>;
  /** Methods beyond the supervisor's that the owner of the shard answers, routed by `params.id`. */
  methods?: Record<string, (params: ClusterParams, requester: string) => Promise<unknown>>;
  /** Before the shard's supervisor shuts down (handover or loss): stop asking it for anything. */
  close(): Promise<void>;
}

interface ShardRuntime {
  lease: Lease;
  supervisor: Supervisor;
  services: ShardServices | null;
  events: Subscription;
  /** Provider calls of this shard not yet settled (an aborted call may still be winding down). */
  calls: Set<Promise<unknown>>;
}

interface InboxRow {
  id: number;
  workspace_id: string;
  method: ClusterMethod;
  params: ClusterParams;
}

/** NOTIFY payloads must stay under 8000 bytes. */
const NOTIFY_LIMIT = 7800;

export class Replica {
  readonly id: string;
  private readonly shards = new Map<number, ShardRuntime>();
  private readonly events$ = new Subject<SupervisorEvent>();
  private readonly resync$ = new Subject<void>();
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  /** Inbox rows being executed here, and the per-workspace chain that keeps their order. */
  private readonly running = new Set<number>();
  private readonly chains = new Map<string, Promise<void>>();
  /** Shards lost here whose provider calls are still winding down. */
  private readonly winding = new Map<number, Promise<void>>();
  private readonly outbox: string[] = [];
  private readonly keeper: LeaseKeeper;
  /** One store (one group committer) for every shard here; each commit is fenced by its shards' leases. */
  private readonly store: WorkspaceStore;
  private readonly listener: Listener;
  private readonly nShards: number;
  private readonly chan: { inbox: string; reply: string; events: string };
  private poll: ReturnType<typeof setInterval> | null = null;
  private flushing: ReturnType<typeof setTimeout> | null = null;
  private draining: Promise<void> | null = null;
  private drainAgain = false;
  private closing = false;
  private seq = 0;

  private constructor(
    private readonly opts: ReplicaOptions,
    private readonly engine: SqlEngine,
    /** Lease traffic only: renewals must never queue behind commits for a pooled connection. */
    private readonly leaseEngine: SqlEngine,
    store: WorkspaceStore,
    schema: string,
  ) {
    this.store = store;
    this.id = opts.replica ?? `r-${randomUUID().slice(0, 8)}`;
    this.nShards = opts.shards ?? DEFAULT_SHARDS;
    const prefix = `wsup_${schema}`;
    this.chan = { inbox: `${prefix}_inbox`, reply: `${prefix}_reply`, events: `${prefix}_events` };
    this.keeper = new LeaseKeeper({
      engine: leaseEngine,
      replica: this.id,
      shards: this.nShards,
      ...(opts.ttlMs !== undefined ? { ttlMs: opts.ttlMs } : {}),
      renewal: { url: opts.url, ...(opts.schema !== undefined ? { schema: opts.schema } : {}) },
      onGain: (lease) => this.gain(lease),
      onRelease: (shard) => this.release(shard),
      onLose: (shard) => this.lose(shard),
      onError: (err, what) => this.report(err, what),
    });
    this.listener = new Listener({
      url: opts.url,
      channels: [this.chan.inbox, this.chan.reply, this.chan.events],
      onNotify: (ch, payload) => this.onNotify(ch, payload),
      onResync: () => {
        this.resync$.next();
        void this.drain();
        void this.collectReplies();
      },
      onError: (err) => this.report(err, 'cluster listener connection failed'),
    });
  }

  static async start(opts: ReplicaOptions): Promise<Replica> {
    const engine = await openEngine({ url: opts.url, ...(opts.schema !== undefined ? { schema: opts.schema } : {}) });
    if (engine.kind !== 'postgres') {
      await engine.close();
      throw new WsupError('WSUP_INVALID_ARGUMENT', 'a wsup cluster needs PostgreSQL: pass a postgres:// url');
    }
    let self: Replica | null = null;
    const store = await WorkspaceStore.open({ engine, fence: (tx, ids) => self!.fence(tx, ids) });
    // Channels are per database, schemas are not: name them after the schema, so clusters in two schemas
    // of one database (a URL with search_path, parallel tests) never hear each other.
    const { rows } = await engine.query<{ schema: string }>('SELECT current_schema() AS schema');
    const leaseEngine = await openEngine({ url: opts.url, maxConnections: 2, ...(opts.schema !== undefined ? { schema: opts.schema } : {}) });
    const r = (self = new Replica(opts, engine, leaseEngine, store, opts.schema ?? rows[0]?.schema ?? 'public'));
    await r.listener.start();
    await r.keeper.tick();
    r.keeper.start();
    const pollMs = opts.pollMs ?? 250;
    r.poll = setInterval(() => {
      void r.drain();
      void r.collectReplies();
    }, pollMs);
    return r;
  }

  get closed(): boolean {
    return this.closing;
  }

  /** Every workspace event of the cluster (this replica's and, through NOTIFY, the others'). */
  get events(): Observable<SupervisorEvent> {
    return this.events$.asObservable();
  }

  /** The listener (re)connected: notifications may have been lost, re-read state from the store. */
  get resyncs(): Observable<void> {
    return this.resync$.asObservable();
  }

  /** Shards owned and loaded here. */
  owned(): number[] {
    return this.keeper.owned();
  }

  shardOf(id: string): number {
    return shardOf(id, this.nShards);
  }

  /** Drop the LISTEN connection as a network blink would (tests, operators): it reconnects and resyncs. */
  blinkListener(): void {
    this.listener.blink();
  }

  /** Run a command wherever its workspace lives; resolves once the owner committed its effect. */
  async call(method: ClusterMethod, params: ClusterParams): Promise<unknown> {
    const shard = shardOf(params.id, this.nShards);
    const local = this.keeper.lease(shard) ? this.shards.get(shard) : undefined;
    // One label for the command wherever it runs: a restart that committed here before the shard left is
    // found under it in the event log by the next owner, and not run twice.
    // Unique per call (a connection's `rpc:c1` is not): `<requester>~<replica>.<n>`.
    const labelled = { ...params, requester: `${params.requester ?? 'call'}~${this.id}.${++this.seq}` };
    if (local) {
      try {
        return await execute(local, method, labelled, labelled.requester);
      } catch (err) {
        // The shard left us mid-command (its cycle may have failed on the fence): not acknowledged; the
        // new owner runs it, or recognises it in the log.
        if (!isShutdown(err) && this.keeper.valid(local.lease)) throw err;
      }
    }
    return this.forward(shard, method, labelled);
  }

  /** Workspaces of the whole cluster, from the store (every owner commits there before it answers). */
  async list(filter: { state?: LifecycleState; limit?: number; cursor?: string } = {}): Promise<WorkspaceView[]> {
    const params: unknown[] = [filter.cursor ?? '', Math.max(1, Math.min(filter.limit ?? 1000, 10_000))];
    if (filter.state) params.push(filter.state);
    const { rows } = await this.engine.query<StoredRow>(
      `SELECT id, spec, desired, state, snapshot FROM workspaces WHERE destroyed_at IS NULL AND id > $1 ${filter.state ? 'AND state = $3' : ''} ORDER BY id LIMIT $2`,
      params,
    );
    return rows.map(viewOfRow);
  }

  /** Whether the cluster has the workspace (live or destroyed). */
  async has(id: string): Promise<boolean> {
    return (await this.engine.query('SELECT 1 FROM workspaces WHERE id = $1', [id])).rows.length > 0;
  }

  /** Whether commands for it can be taken: it exists and is not destroyed. */
  async accepts(id: string): Promise<boolean> {
    return (await this.engine.query('SELECT 1 FROM workspaces WHERE id = $1 AND destroyed_at IS NULL', [id])).rows.length > 0;
  }

  /** Hand every shard over gracefully (in-flight cycles finish first), then close. */
  async leave(): Promise<void> {
    await this.keeper.leave();
    await this.close();
  }

  /** Stop at once without handing over: what a crash looks like to the others, minus the process exit. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.keeper.stop();
    if (this.poll) clearInterval(this.poll);
    if (this.flushing) clearTimeout(this.flushing);
    for (const shard of [...this.shards.keys()]) this.lose(shard);
    await this.listener.close();
    await this.store.close().catch(() => undefined);
    for (const [, w] of this.waiting) w.reject(new WsupError('WSUP_SHUTTING_DOWN', `replica ${this.id} is closing: the forwarded command may still run`));
    this.waiting.clear();
    await this.keeper.close();
    await this.engine.close();
    await this.leaseEngine.close();
  }

  // --- shards -------------------------------------------------------------------------------------

  private async gain(lease: Lease): Promise<void> {
    const { shard, epoch } = lease;
    await this.winding.get(shard); // this replica's previous run of the shard: its calls must be over first
    // The keeper renews this very object, and voids it when the shard is dropped or handed over.
    const check = () => {
      if (!this.keeper.valid(lease)) throw new FencedError(shard, `lease at epoch ${epoch} expired or was given up`);
    };
    const calls = new Set<Promise<unknown>>();
    const services = (await this.opts.services?.({ shard, epoch, store: this.store })) ?? null;
    const { supervisor } = await openDurableSupervisor({
      ...this.opts.supervisor,
      ...services?.supervisor,
      provider: fencedProvider(this.opts.provider, check, lease.signal, { shard, epoch }, calls),
      store: this.store,
      orphans: 'ignore',
      select: (id) => shardOf(id, this.nShards) === shard,
      onError: (err, ctx) => this.report(err, `${ctx.what}${ctx.id ? ` (${ctx.id})` : ''}`),
    });
    if (!this.keeper.valid(lease)) {
      // Lost while loading (a lease round ran late): nothing of it may run here, and calls its recovery
      // started are over before the shard can be loaded here again.
      await services?.close();
      await this.retire(shard, supervisor, calls, 0);
      throw new FencedError(shard, 'lease lapsed while its workspaces were loading');
    }
    const events = supervisor.events.subscribe((ev) => this.publish(ev));
    this.shards.set(shard, { lease, supervisor, services, events, calls });
    await services?.ready?.(supervisor);
    this.opts.onShard?.({ shard, epoch, what: 'gained' });
    queueMicrotask(() => void this.drain());
  }

  private async release(shard: number): Promise<void> {
    const rt = this.shards.get(shard);
    if (!rt) return;
    // In-flight cycles finish (until handoverMs), and calls the shutdown aborted are over, before the lease
    // is released: the next owner may start one the moment it is.
    await rt.services?.close().catch((err: unknown) => this.report(err, `closing shard ${shard}'s services failed`));
    await this.retire(shard, rt.supervisor, rt.calls, this.opts.handoverMs ?? 30_000);
    rt.events.unsubscribe();
    this.shards.delete(shard);
    this.opts.onShard?.({ shard, epoch: rt.lease.epoch, what: 'released' });
  }

  private lose(shard: number): void {
    const rt = this.shards.get(shard);
    if (!rt) return;
    this.shards.delete(shard);
    this.opts.onShard?.({ shard, epoch: rt.lease.epoch, what: 'lost' });
    rt.events.unsubscribe();
    // Abort at once: the lease is gone; whatever it still wanted to write is refused by the fence.
    rt.services?.close().catch((err: unknown) => this.report(err, `closing shard ${shard}'s services failed`));
    void this.retire(shard, rt.supervisor, rt.calls, 0);
  }

  /**
   * Stop a shard's supervisor (letting in-flight cycles run up to `deadlineMs`) and wait until every
   * provider call it made has settled, aborted ones included. A later gain of the shard here waits for it.
   */
  private retire(shard: number, supervisor: Supervisor, calls: Set<Promise<unknown>>, deadlineMs: number): Promise<void> {
    const done = supervisor.shutdown({ deadlineMs }).then(async () => {
      while (calls.size > 0) await Promise.allSettled([...calls]);
    });
    this.winding.set(shard, done);
    void done.finally(() => {
      if (this.winding.get(shard) === done) this.winding.delete(shard);
    });
    return done;
  }

  /** Refuse the writes of shards whose lease is gone; the other shards' writes in the batch commit. */
  private async fence(tx: SqlQueryable, ids: readonly string[]): Promise<Map<string, Error> | null> {
    const shards = new Set(ids.map((id) => shardOf(id, this.nShards)));
    const leases: Lease[] = [];
    const lost = new Map<number, Error>();
    for (const s of shards) {
      const l = this.keeper.heldLease(s);
      if (l) leases.push(l);
      else lost.set(s, new FencedError(s, 'no lease held'));
    }
    for (const [s, err] of await fenceCheck(tx, this.id, leases)) lost.set(s, err);
    if (lost.size === 0) return null;
    const refused = new Map<string, Error>();
    for (const id of ids) {
      const err = lost.get(shardOf(id, this.nShards));
      if (err) refused.set(id, err);
    }
    return refused;
  }

  // --- forwarding ---------------------------------------------------------------------------------

  private async forward(shard: number, method: ClusterMethod, params: ClusterParams): Promise<unknown> {
    const { rows } = await this.engine.query<{ id: number }>(
      `WITH row AS (INSERT INTO cluster_inbox (shard, workspace_id, method, params, origin) VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id)
       SELECT id, pg_notify($6, $1::text) FROM row`,
      [shard, params.id, method, JSON.stringify(params), this.id, this.chan.inbox],
    );
    const inboxId = rows[0]!.id;
    const timeoutMs = this.opts.forwardTimeoutMs ?? 60_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(inboxId);
        reject(new WsupError('WSUP_SHUTTING_DOWN', `no answer from the owner of shard ${shard} within ${timeoutMs} ms: inbox ${inboxId} stays queued and will run once the shard has an owner`, { workspaceId: params.id }));
      }, timeoutMs);
      this.waiting.set(inboxId, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  }

  private async collectReplies(ids?: number[]): Promise<void> {
    const want = ids ?? [...this.waiting.keys()];
    if (want.length === 0 || this.closing) return;
    try {
      const { rows } = await this.engine.query<{ id: number; result: unknown; error: { code: string; message: string } | null }>(
        'SELECT id, result, error FROM cluster_inbox WHERE id = ANY($1::bigint[]) AND done_at IS NOT NULL',
        [want],
      );
      for (const r of rows) {
        const w = this.waiting.get(r.id);
        if (!w) continue;
        this.waiting.delete(r.id);
        if (r.error) w.reject(new WsupError(r.error.code as WsupError['code'], r.error.message, { workspaceId: undefined }));
        else w.resolve(r.result);
      }
    } catch (err) {
      if (!this.closing) this.report(err, 'reading forwarded answers failed');
    }
  }

  /** Execute inbox rows of the shards owned here. One drain at a time; a wake-up during it runs another. */
  private drain(): Promise<void> {
    if (this.draining) {
      this.drainAgain = true;
      return this.draining;
    }
    this.draining = (async () => {
      do {
        this.drainAgain = false;
        const owned = this.keeper.owned().filter((s) => this.shards.has(s));
        if (owned.length === 0 || this.closing) return;
        const { rows } = await this.engine.query<InboxRow>(
          'SELECT id, workspace_id, method, params FROM cluster_inbox WHERE done_at IS NULL AND shard = ANY($1::int[]) ORDER BY id LIMIT 500',
          [owned],
        );
        for (const row of rows) {
          if (this.running.has(row.id)) continue;
          this.running.add(row.id);
          const prev = this.chains.get(row.workspace_id) ?? Promise.resolve();
          const next = prev.then(() => this.runInbox(row)).finally(() => {
            this.running.delete(row.id);
            if (this.chains.get(row.workspace_id) === next) this.chains.delete(row.workspace_id);
          });
          this.chains.set(row.workspace_id, next);
        }
      } while (this.drainAgain);
    })()
      .catch((err: unknown) => {
        if (!this.closing) this.report(err, 'draining the inbox failed');
      })
      .finally(() => {
        this.draining = null;
      });
    return this.draining;
  }

  private async runInbox(row: InboxRow): Promise<void> {
    const shard = shardOf(row.workspace_id, this.nShards);
    const rt = this.keeper.lease(shard) ? this.shards.get(shard) : undefined;
    if (!rt) return; // not ours (any more): the owner's drain takes it
    const requester = row.params.requester ?? `inbox:${row.id}`;
    let result: unknown = null;
    let error: { code: string; message: string } | null = null;
    try {
      const done = row.method === 'workspace.restart' ? await this.recordedRestart(rt, row, requester) : null;
      result = done ?? (await execute(rt, row.method, row.params, requester));
    } catch (err) {
      if (isShutdown(err) || !this.keeper.valid(rt.lease)) return; // the shard left us: the next owner runs it
      error = { code: err instanceof WsupError ? err.code : 'WSUP_INTERNAL', message: errorMessage(err) };
    }
    await this.engine.query(
      `WITH done AS (UPDATE cluster_inbox SET done_at = now(), result = $2::jsonb, error = $3::jsonb WHERE id = $1 AND done_at IS NULL RETURNING id)
       SELECT pg_notify($4, id::text) FROM done`,
      [row.id, JSON.stringify(result), error ? JSON.stringify(error) : null, this.chan.reply],
    );
  }

  /** A restart an earlier owner already committed (it died before answering): its recorded answer. */
  private async recordedRestart(rt: ShardRuntime, row: InboxRow, requester: string): Promise<unknown> {
    const { rows } = await this.engine.query<{ data: { outcome: string; cycle: number | null } }>(
      `SELECT data FROM workspace_events WHERE workspace_id = $1 AND kind = 'request' AND left(data->>'requester', length($2)) = $2 ORDER BY seq LIMIT 1`,
      [row.workspace_id, `${requester}#`],
    );
    const first = rows[0];
    if (!first) return null;
    const view = rt.supervisor.get(row.workspace_id);
    return { id: row.workspace_id, outcome: first.data.outcome, cycle: first.data.cycle, state: view.state, replayed: true };
  }

  // --- events -------------------------------------------------------------------------------------

  private publish(ev: SupervisorEvent): void {
    this.events$.next(ev);
    let text = JSON.stringify({ r: this.id, e: ev });
    if (text.length > NOTIFY_LIMIT) text = JSON.stringify({ r: this.id, e: { type: ev.type, id: ev.id, at: ev.at, truncated: true } });
    this.outbox.push(text);
    this.flushing ??= setTimeout(() => this.flush(), 5);
  }

  private flush(): void {
    this.flushing = null;
    const batch = this.outbox.splice(0);
    if (batch.length === 0 || this.closing) return;
    this.engine
      .query('SELECT pg_notify($1, x) FROM unnest($2::text[]) AS x', [this.chan.events, batch])
      .catch((err: unknown) => this.report(err, 'publishing events failed'));
  }

  private onNotify(channel: string, payload: string): void {
    if (channel === this.chan.inbox) void this.drain();
    else if (channel === this.chan.reply) {
      const id = Number(payload);
      if (this.waiting.has(id)) void this.collectReplies([id]);
    } else if (channel === this.chan.events) {
      try {
        const { r, e } = JSON.parse(payload) as { r: string; e: SupervisorEvent };
        if (r !== this.id) this.events$.next(e);
      } catch (err) {
        this.report(err, 'unreadable event notification');
      }
    }
  }

  private report(err: unknown, what: string): void {
    this.opts.onError?.(err, what);
  }
}

interface StoredRow {
  id: string;
  spec: Record<string, unknown>;
  desired: WorkspaceView['desired'];
  state: LifecycleState;
  /** JSON text (the column is text since store migration 6). */
  snapshot: string | null;
}

/** A workspace view from its stored row: the snapshot's context carries what the owner's actor knows. */
function viewOfRow(row: StoredRow): WorkspaceView {
  // A row written before the policy fields were nested into `timing` holds them at the top level.
  type StoredContext = Partial<WorkspaceContext> & Partial<PolicyTiming>;
  let ctx: StoredContext = {};
  try {
    ctx = (row.snapshot === null ? null : (JSON.parse(row.snapshot) as { context?: StoredContext } | null))?.context ?? {};
  } catch {
    // An unreadable snapshot (the owner reports it as corrupt): list the row with what the columns say.
  }
  return {
    id: row.id,
    state: row.state,
    desired: row.desired,
    endpoint: ctx.endpoint ?? null,
    cycle: ctx.cycleCount ?? 0,
    pending: ctx.pending?.length ?? 0,
    deferredUntil: ctx.deferred?.until ?? null,
    backoffUntil: ctx.backoffUntil ?? null,
    lastError: ctx.lastError ?? null,
    spec: row.spec,
    policy: ctx.policy ?? NO_POLICY,
    lastActivityAt: (ctx.timing ?? ctx).lastActivity?.at ?? null,
    dormant: ((ctx.timing ?? ctx).dormantSince ?? null) !== null,
    next: null,
  };
}

async function execute(rt: ShardRuntime, method: ClusterMethod, p: ClusterParams, requester: string): Promise<unknown> {
  const sup = rt.supervisor;
  const extra = rt.services?.methods?.[method];
  if (extra) return extra(p, requester);
  switch (method) {
    case 'workspace.create':
      return sup.create(p.id, p.spec ?? {});
    case 'workspace.ensure': {
      const r = await sup.ensure(p.id, { requester });
      return { id: r.id, started: r.started, endpoint: r.endpoint, state: r.state };
    }
    case 'workspace.restart': {
      const r = await sup.restart(p.id, {
        requester,
        ...(p.source !== undefined ? { source: p.source } : {}),
        ...(p.reason !== undefined ? { reason: p.reason } : {}),
        ...(p.wait !== undefined ? { wait: p.wait } : {}),
      });
      return { id: r.id, outcome: r.outcome, cycle: r.cycle, state: r.state };
    }
    case 'workspace.stop':
      return sup.stop(p.id, { requester });
    case 'workspace.destroy':
      return sup.destroy(p.id, { requester });
    case 'workspace.get':
      return sup.get(p.id) satisfies WorkspaceView;
    case 'workspace.setPolicy':
      return sup.setPolicy(p.id, p.policy ?? {});
    case 'workspace.activity':
      return sup.activity(p.id, p.activitySource);
  }
}

const isShutdown = (err: unknown) => err instanceof WsupError && (err.code === 'WSUP_SHUTTING_DOWN' || err.code === 'WSUP_FENCED');

/**
 * The provider as seen from one shard: every call first checks that this replica still holds the lease,
 * and is aborted when the lease lapses, so it winds down before another replica may take the shard over.
 */
export function fencedProvider(inner: Provider, check: () => void, lease: AbortSignal, fence: ProviderFence, inFlight?: Set<Promise<unknown>>): Provider {
  const track = <T>(call: Promise<T>): Promise<T> => {
    if (!inFlight) return call;
    const settled = call.then(
      () => undefined,
      () => undefined,
    );
    inFlight.add(settled);
    void settled.then(() => inFlight.delete(settled));
    return call;
  };
  return {
    kind: inner.kind,
    start: (spec, signal) => (check(), track(inner.start(spec, AbortSignal.any([signal, lease]), fence))),
    stop: (id, signal) => (check(), track(inner.stop(id, AbortSignal.any([signal, lease]), fence))),
    inspect: (id) => inner.inspect(id),
    list: () => inner.list(),
  };
}
