/**
 * One wsup replica of a cluster on PostgreSQL: it wires the shard host (leases → each owned shard's fenced
 * supervisor and services, shard-host.ts), the inbox (durable forwarding to the owner, inbox.ts) and the
 * event fan-out (fanout.ts) over one LISTEN connection (notify.ts).
 *
 * A command runs where its workspace's shard is owned: here through the one table of routed methods
 * (src/server/dispatch.ts) plus what the shard's services add, elsewhere through the inbox. One label
 * for the command wherever it runs, so the next owner recognises a restart that committed before the
 * shard left, and does not run it twice.
 *
 * @example
 * const r = await Replica.start({ url, replica: 'r1', provider });
 * await r.call('workspace.restart', { id: 'ws-1', reason: 'deploy' }); // wherever ws-1 lives
 * await r.leave();                                                     // hand shards over, then stop
 */
import { randomUUID } from 'node:crypto';
import { Subject, type Observable } from 'rxjs';
import type { LifecycleState } from '../../machines/workspace.types.ts';
import { WsupError } from '../errors.ts';
import type { Provider } from '../providers/types.ts';
import type { SqlEngine } from '../store/engine.ts';
import { openEngine } from '../store/open.ts';
import { WorkspaceStore } from '../store/store.ts';
import { systemClock, type Clock } from '../supervisor/clock.ts';
import type { SupervisorOptions } from '../supervisor/supervisor.ts';
import type { SupervisorEvent, WorkspaceView } from '../supervisor/types.ts';
import type { ClusterMembers, ClusterRoute } from '../protocol/methods.ts';
import { dispatchRouted, type RoutedMethod, type RoutedParams } from '../server/dispatch.ts';
import { labelOf, RecentRequests, REQUEST_TTL_MS, requestKey } from '../server/requests.ts';
import { Fanout } from './fanout.ts';
import { Inbox, recordedRestart, RESTARTS } from './inbox.ts';
import { advertise, readMembers } from './members.ts';
import { Listener } from './notify.ts';
import { ShardHost, type ShardContext, type ShardRuntime, type ShardServices } from './shard-host.ts';
import { DEFAULT_SHARDS, shardOf } from './shards.ts';
import { viewOfRow } from '../supervisor/row-view.ts';

export type { ShardContext, ShardServices } from './shard-host.ts';

/** A routed method of the table, or one a shard's services add (their owner answers it). */
export type ClusterMethod = RoutedMethod | (string & {});
export type ClusterParams = RoutedParams;

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
  /** The inbox poll's, forwarding's and fan-out's timers. Default: the system clock. */
  clock?: Clock;
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

export class Replica {
  readonly id: string;
  private readonly resync$ = new Subject<void>();
  private readonly host: ShardHost;
  private readonly inbox: Inbox;
  private readonly fanout: Fanout;
  private readonly listener: Listener;
  private readonly nShards: number;
  private readonly clock: Clock;
  private poll: unknown = null;
  private polls = 0;
  private closing: Promise<void> | null = null;
  private seq = 0;
  /** The routing table `routeOf` answers from. */
  private readonly routes: { table: ClusterMembers | null; at: number; reading: boolean } = { table: null, at: -Infinity, reading: false };
  /** Commands under a request id run on the shards here lately: a re-send gets the first one's answer. */
  private readonly recent: RecentRequests;

  private constructor(
    private readonly opts: ReplicaOptions,
    private readonly engine: SqlEngine,
    /** Lease traffic only: renewals must never queue behind commits for a pooled connection. */
    private readonly leaseEngine: SqlEngine,
    /** One store (one group committer) for every shard here; each commit is fenced by its shards' leases. */
    private readonly store: WorkspaceStore,
    schema: string,
    id: string,
    host: ShardHost,
  ) {
    this.id = id;
    this.host = host;
    this.nShards = opts.shards ?? DEFAULT_SHARDS;
    this.clock = opts.clock ?? systemClock;
    this.recent = new RecentRequests({ clock: this.clock });
    const prefix = `wsup_${schema}`;
    const chan = { inbox: `${prefix}_inbox`, reply: `${prefix}_reply`, events: `${prefix}_events` };
    const report = (err: unknown, what: string) => this.report(err, what);
    this.fanout = new Fanout({ engine, replica: this.id, channel: chan.events, clock: this.clock, report });
    this.inbox = new Inbox({
      engine,
      store,
      host,
      shards: this.nShards,
      replica: this.id,
      channels: chan,
      clock: this.clock,
      timeoutMs: opts.forwardTimeoutMs ?? 60_000,
      run: (rt, method, p, requester) => this.runOwned(rt, method, p, requester),
      report,
    });
    this.listener = new Listener({
      url: opts.url,
      channels: [chan.inbox, chan.reply, chan.events],
      onNotify: (ch, payload) => {
        if (ch === chan.inbox) void this.inbox.drain();
        else if (ch === chan.reply) this.inbox.replied(payload);
        else if (ch === chan.events) this.fanout.received(payload);
      },
      onResync: () => {
        this.resync$.next();
        void this.inbox.drain();
        void this.inbox.collect();
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
    const id = opts.replica ?? `r-${randomUUID().slice(0, 8)}`;
    let self: Replica | null = null;
    let host: ShardHost | null = null;
    const store = await WorkspaceStore.open({ engine, fence: (tx, ids) => host!.fence(tx, ids) });
    // Channels are per database, schemas are not: name them after the schema, so clusters in two schemas
    // of one database (a URL with search_path, parallel tests) never hear each other.
    const { rows } = await engine.query<{ schema: string }>('SELECT current_schema() AS schema');
    const leaseEngine = await openEngine({ url: opts.url, maxConnections: 2, ...(opts.schema !== undefined ? { schema: opts.schema } : {}) });
    host = new ShardHost({
      leaseEngine,
      replica: id,
      shards: opts.shards ?? DEFAULT_SHARDS,
      ttlMs: opts.ttlMs,
      renewal: { url: opts.url, schema: opts.schema },
      provider: opts.provider,
      store: () => store,
      handoverMs: opts.handoverMs,
      supervisor: opts.supervisor,
      services: opts.services,
      publish: (ev) => self?.fanout.publish(ev),
      onLoaded: () => void self?.inbox.drain(),
      clock: opts.clock,
      onShard: opts.onShard,
      report: (err, what) => opts.onError?.(err, what),
    });
    const r = (self = new Replica(opts, engine, leaseEngine, store, opts.schema ?? rows[0]?.schema ?? 'public', id, host));
    await r.listener.start();
    await host.start();
    r.schedulePoll();
    return r;
  }

  get closed(): boolean {
    return this.closing !== null;
  }

  /** Every workspace event of the cluster (this replica's and, through NOTIFY, the others'). */
  get events(): Observable<SupervisorEvent> {
    return this.fanout.events;
  }

  /** The listener (re)connected: notifications may have been lost, re-read state from the store. */
  get resyncs(): Observable<void> {
    return this.resync$.asObservable();
  }

  /** Shards whose lease is held here. */
  owned(): number[] {
    return this.host.leased();
  }

  shardOf(id: string): number {
    return shardOf(id, this.nShards);
  }

  /** Drop the LISTEN connection as a network blink would (tests, operators): it reconnects and resyncs. */
  blinkListener(): void {
    this.listener.blink();
  }

  /**
   * Run a command wherever its workspace lives; resolves once the owner committed its effect. `method` is
   * one of the routed methods (src/server/dispatch.ts) or one the shard's services add.
   */
  async call(method: ClusterMethod, params: ClusterParams): Promise<unknown> {
    const shard = shardOf(params.id, this.nShards);
    const local = this.host.runtime(shard);
    // One label for the command wherever it runs: a restart that committed here before the shard left is
    // found under it in the event log by the next owner, and not run twice.
    // Unique per call (a connection's `rpc:c1` is not): `<requester>~<replica>.<n>`; under a request id the
    // caller's label already names it (`<requester>~req:<id>`), the same on every re-send.
    const requester = params.requestId !== undefined ? (params.requester ?? labelOf('call', params.requestId)) : `${params.requester ?? 'call'}~${this.id}.${++this.seq}`;
    const labelled = { ...params, requester };
    if (local) {
      const answer = await this.runOwned(local, method, labelled, requester);
      // Otherwise the shard left us mid-command (its cycle may have failed on the fence): not acknowledged;
      // the new owner runs it, or recognises it in the log.
      if (answer.done) return answer.value;
    }
    return this.inbox.forward(shard, method, labelled);
  }

  /** Workspaces of the whole cluster, from the store (every owner commits there before it answers). */
  async list(filter: { state?: LifecycleState; limit?: number; cursor?: string } = {}): Promise<WorkspaceView[]> {
    return (await this.store.liveRows(filter)).map(viewOfRow);
  }

  /** Whether the cluster has the workspace (live or destroyed). */
  has(id: string): Promise<boolean> {
    return this.store.exists(id);
  }

  /** Whether commands for it can be taken: it exists and is not destroyed. */
  accepts(id: string): Promise<boolean> {
    return this.store.exists(id, { live: true });
  }

  /** Tell routing clients where this replica serves them (its server's URL, once it listens). */
  advertise(url: string): Promise<void> {
    return advertise(this.engine, this.id, url);
  }

  /** The cluster's routing table: members, their URLs, each shard's owner and a version that grows on every move. */
  members(): Promise<ClusterMembers> {
    return readMembers(this.engine, { replica: this.id, shards: this.nShards, ttlMs: this.opts.ttlMs ?? 2000 });
  }

  /**
   * Where `id`'s shard lives when it is not here, from a routing table at most a second old (read again in
   * the background when older); null when the shard is here or the table is not read yet.
   */
  routeOf(id: string): ClusterRoute | null {
    const shard = shardOf(id, this.nShards);
    if (this.host.runtime(shard)) return null;
    if (this.clock.now() - this.routes.at > ROUTES_MAX_AGE_MS && !this.routes.reading && !this.closing) {
      this.routes.reading = true;
      void this.members()
        .then((t) => (this.routes.table = t), (err: unknown) => this.report(err, 'reading the routing table failed'))
        .finally(() => ((this.routes.at = this.clock.now()), (this.routes.reading = false)));
    }
    const t = this.routes.table;
    const owner = t?.owners[shard];
    if (!t || !owner || owner === this.id) return null;
    return { shard, replica: owner, url: t.members.find((m) => m.replica === owner && !m.leaving)?.url ?? null, version: t.version };
  }

  /** Hand every shard over gracefully (in-flight cycles finish first), then close. */
  async leave(): Promise<void> {
    if (!this.closing) await this.host.leave();
    await this.close();
  }

  /** Stop at once without handing over: what a crash looks like to the others, minus the process exit. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      if (this.poll !== null) this.clock.clearTimeout(this.poll);
      this.poll = null;
      this.host.stop();
      await this.host.close();
      this.fanout.close();
      this.inbox.close();
      await this.listener.close();
      await this.store.close().catch(() => undefined);
      await this.engine.close();
      await this.leaseEngine.close();
    })());
  }

  /** Delete answered inbox rows older than `keepMs` now (the poll does it about once a minute); how many went. */
  pruneInbox(keepMs: number): Promise<number> {
    return this.inbox.prune(keepMs);
  }

  /**
   * Run a command on a shard owned here. Under a request id it runs once per label: a re-send joins the
   * first (here, or from the inbox) or gets its answer; and while the shard is newly taken over (an
   * earlier owner may have committed the request and died before answering), a restart already in the
   * log is answered from there.
   */
  private runOwned(rt: ShardRuntime, method: string, p: RoutedParams, requester: string): Promise<Ran> {
    if (p.requestId === undefined) return runHere(this.host, rt, method, p, requester);
    const key = requestKey(requester, method, p.id); // the requester names the request id
    const ran = this.recent.run(key, async (): Promise<Ran> => {
      if (RESTARTS.has(method) && rt.lease.epoch > 1 && this.clock.now() - rt.gainedAt < REQUEST_TTL_MS) {
        const recorded = await recordedRestart(this.store, rt, p.id, requester);
        if (recorded === 'fenced') return runHere(this.host, rt, method, p, `${requester}.again`);
        if (recorded !== null) return { done: true, value: recorded };
      }
      return runHere(this.host, rt, method, p, requester);
    });
    // Not run here after all (the shard left): the next owner answers it.
    void ran.then((r) => r.done || this.recent.forget(key, ran), () => undefined);
    return ran;
  }

  /** The inbox poll: the safety net under NOTIFY (drain rows of owned shards, collect lost answers). */
  private schedulePoll(): void {
    this.poll = this.clock.setTimeout(() => {
      if (this.closing) return;
      void this.inbox.drain();
      void this.inbox.collect();
      // Now and then, answered rows go: far longer after their answer than any forwarder waits for one.
      if (++this.polls % PRUNE_EVERY_POLLS === 0) void this.inbox.prune(Math.max(INBOX_KEEP_MS, 10 * (this.opts.forwardTimeoutMs ?? 60_000)));
      this.schedulePoll();
    }, this.opts.pollMs ?? 250);
  }

  private report(err: unknown, what: string): void {
    this.opts.onError?.(err, what);
  }
}

/**
 * A waited-for restart whose cycle the fence refused: the workspace converges again by itself (a retry
 * cycle, begun after the request, which is what a restart asks for), so the restart waits for that one
 * rather than asking for another; only a workspace that gave up (a crash loop) is asked again.
 */
async function retriedRestart(rt: ShardRuntime, p: RoutedParams, requester: string): Promise<unknown> {
  const before = await rt.supervisor.get(p.id);
  if (before.desired !== 'running' || before.state === 'failed') return execute(rt, 'workspace.restart', p, requester);
  await execute(rt, 'workspace.ensure', { id: p.id }, requester);
  const after = await rt.supervisor.get(p.id);
  return { id: p.id, outcome: 'started', cycle: after.cycle, state: after.state };
}

/** A command on the shard's runtime: a method its services add, else the routed table on its supervisor. */
function execute(rt: ShardRuntime, method: string, p: RoutedParams, requester: string): Promise<unknown> {
  const extra = rt.services?.methods?.[method];
  if (extra) return extra(p, requester);
  return dispatchRouted(rt.supervisor, method, p, requester);
}

/** How old the table behind a route hint may be before it is read again. */
const ROUTES_MAX_AGE_MS = 1000;
/** Attempts of a command the fence refused here while the lease still holds, before it goes to the inbox. */
const FENCE_RETRIES = 3;
/** Answered inbox rows are pruned about once a minute (at the default 250 ms poll)... */
const PRUNE_EVERY_POLLS = 240;
/** ...once ten minutes (at least) past their answer. */
const INBOX_KEEP_MS = 10 * 60_000;

/**
 * Run a command on a shard owned here. A failure that is the shard moving is never the caller's: when the
 * fence refused a provider call while the lease still holds (nothing reached the provider), the command
 * runs again here under a fresh label (the refused cycle's request is in the log under the first);
 * when the shard is gone, `done: false` hands the command on.
 */
type Ran = { done: true; value: unknown } | { done: false };

async function runHere(host: ShardHost, rt: ShardRuntime, method: string, p: RoutedParams, requester: string): Promise<Ran> {
  for (let attempt = 0; ; attempt++) {
    try {
      if (attempt > 0 && method === 'workspace.restart') return { done: true, value: await retriedRestart(rt, p, `${requester}.again${attempt}`) };
      return { done: true, value: await execute(rt, method, p, attempt === 0 ? requester : `${requester}.again${attempt}`) };
    } catch (err) {
      const moved = host.moved(err, rt, p.id);
      if (moved === 'no') throw err;
      if (moved === 'lost' || attempt >= FENCE_RETRIES) return { done: false };
    }
  }
}
