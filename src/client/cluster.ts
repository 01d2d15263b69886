/**
 * ClusterClient: a WsupClient for a cluster (`wsup serve --cluster`). Given one or more replica URLs, it
 * reads the cluster's routing table (`cluster.members`) and sends each command about one workspace
 * straight to its shard's owner, so no replica has to forward it; everything else (lists, subscriptions,
 * pools) goes to any replica. It follows shard moves: the table is read again every `refreshMs`, when an
 * owner cannot be reached, and when a reply says the shard moved. A server that is a single node answers
 * `cluster.members` with an error, and the client then sends everything to it, as a WsupClient would.
 *
 * Routing only saves the hop: a command sent to a replica that no longer owns the shard is still forwarded
 * and answered, so a stale table never fails a call.
 *
 * @example
 * import WebSocket from 'ws';
 * const c = new ClusterClient({ urls: ['http://10.0.0.5:7070', 'http://10.0.0.6:7070'], token, WebSocket });
 * await c.call('workspace.ensure', { id: 'ws-1' }); // on ws-1's owner
 * c.close();
 */
import { OWNER_METHODS, shardOf, type ClusterMembers, type ClusterRoute, type MethodName, type Params, type Results, type WorkspaceEvent } from '../protocol/index.ts';
import { WsupClient, type ClientOptions, type SubscribeHandlers } from './client.ts';
import { WsupConnectionError, WsupRpcError } from './errors.ts';

/** Owner methods that change something: each call carries a request id, the same on every re-send. */
const COMMANDS: ReadonlySet<string> = new Set([...OWNER_METHODS].filter((m) => m !== 'workspace.get'));
/** Re-sends of one command, from 100 ms apart up to 1 s apart. */
const RESEND_MIN_MS = 100;
const RESEND_MAX_MS = 1_000;

export interface ClusterClientOptions extends Omit<ClientOptions, 'url'> {
  /** Any replicas of the cluster (one is enough): the first that answers gives the routing table. */
  urls: string | readonly string[];
  /** Read the routing table again at most this long after the last read, before a routed call. Default 5 s. */
  refreshMs?: number;
  /**
   * How long a command whose answer was lost (its replica went away, the outcome is unknown, the shard was
   * moving) is sent again, under the same request id, so the owner runs it once. Default 30 s; 0: never.
   * Until some replica has answered once, a connection failure fails the call at once: an unreachable
   * cluster is not waited for.
   */
  resendMs?: number;
}

/** Where calls went: to their owner, or to any replica (not routable, or the owner unknown). */
export interface RoutingStats {
  owner: number;
  any: number;
  refreshes: number;
  /** Commands sent again after their answer was lost. */
  resent: number;
  /** Route hints a replica sent after forwarding one of our commands. */
  hints: number;
}

export class ClusterClient {
  private readonly urls: string[];
  private seedIndex = 0;
  private seed: WsupClient;
  private readonly owners = new Map<string, { url: string; client: WsupClient }>();
  private table: ClusterMembers | null = null;
  /** False once the server said it is a single node: everything goes to the seed. */
  private routing = true;
  private readAt = -Infinity;
  private reading: Promise<void> | null = null;
  private closed = false;
  /** Some replica answered once: from then on a lost answer is re-sent (before, an unreachable cluster fails fast). */
  private reached = false;
  private readonly counts: RoutingStats = { owner: 0, any: 0, refreshes: 0, resent: 0, hints: 0 };

  constructor(private readonly opts: ClusterClientOptions) {
    this.urls = (typeof opts.urls === 'string' ? opts.urls.split(',') : [...opts.urls]).map((u) => u.trim()).filter((u) => u !== '');
    if (this.urls.length === 0) throw new Error('ClusterClient needs at least one replica URL');
    this.seed = this.client(this.urls[0]!, opts.reconnect);
  }

  /** Calls sent to their owner and to any replica so far, and how often the table was read. */
  get stats(): RoutingStats {
    return { ...this.counts };
  }

  /** The routing table last read (null before the first routed call, or on a single node). */
  get members(): ClusterMembers | null {
    return this.table;
  }

  /** Open a connection to a replica (calls do this on demand). */
  connect(): Promise<void> {
    return this.viaSeed((c) => c.connect());
  }

  /**
   * Call a method: on the workspace's owner when it names one, else on any replica. A command (an owner
   * method that changes something) carries a request id; when its answer is lost with a replica, or
   * the reply says the outcome is unknown, it is sent again under that id, and the owner runs it once.
   */
  async call<M extends MethodName>(method: M, params: Params<M>): Promise<Results[M]> {
    const budget = this.opts.resendMs ?? 30_000;
    if (!COMMANDS.has(method) || budget <= 0) return this.callOnce(method, params);
    const sent = { ...params, requestId: (params as { requestId?: string }).requestId ?? globalThis.crypto.randomUUID() } as Params<M>;
    const until = performance.now() + budget;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.callOnce(method, sent);
      } catch (err) {
        if (this.closed || !this.reached || !resendable(err) || performance.now() >= until) throw err;
        this.readAt = -Infinity; // the owner may have changed: read the table before the re-send
        this.counts.resent++;
        await new Promise((r) => setTimeout(r, Math.min(RESEND_MAX_MS, RESEND_MIN_MS * 2 ** attempt)));
      }
    }
  }

  private async callOnce<M extends MethodName>(method: M, params: Params<M>): Promise<Results[M]> {
    const id = (params as { id?: unknown }).id;
    if (!this.closed && this.routing && OWNER_METHODS.has(method) && typeof id === 'string') {
      const owner = await this.ownerOf(id);
      if (owner) {
        // Not yet sent when connecting fails: the owner is gone, read the table again and go to any replica.
        const reached = await owner.connect().then(() => true, () => false);
        if (reached) {
          this.reached = true;
          this.counts.owner++;
          try {
            return await owner.call(method, params);
          } catch (err) {
            if (movedOrGone(err)) this.readAt = -Infinity; // the next routed call reads the table first
            throw err;
          }
        }
        this.readAt = -Infinity;
      }
    }
    this.counts.any++;
    return this.viaSeed((c) => c.call(method, params));
  }

  /** Watch events (all workspaces, or `ids`) through one replica: every replica publishes the whole cluster's. */
  subscribe(filter: { ids?: string[] }, onEvent: (ev: WorkspaceEvent) => void, handlers: SubscribeHandlers = {}): Promise<{ unsubscribe(): Promise<void> }> {
    return this.viaSeed((c) => c.subscribe(filter, onEvent, handlers));
  }

  /** Close every connection for good: pending calls reject. */
  close(): void {
    this.closed = true;
    this.seed.close();
    for (const o of this.owners.values()) o.client.close();
    this.owners.clear();
  }

  /** The owner's connection for `id`'s shard, from a fresh enough table; null when unknown (use any replica). */
  private async ownerOf(id: string): Promise<WsupClient | null> {
    if (performance.now() - this.readAt >= (this.opts.refreshMs ?? 5_000)) await this.refresh();
    const t = this.table;
    if (!t || !this.routing) return null;
    const owner = t.owners[shardOf(id, t.shards)];
    const url = t.members.find((m) => m.replica === owner && !m.leaving)?.url;
    if (!owner || !url) return null;
    const known = this.owners.get(owner);
    if (known && known.url === url && known.client.connectionState !== 'closed') return known.client;
    known?.client.close();
    // One-shot connections: an owner that drops is read again from the table, not reconnected blindly.
    const client = this.client(url, false);
    this.owners.set(owner, { url, client });
    return client;
  }

  /** Read the routing table (one read at a time); a single node turns routing off. */
  private refresh(): Promise<void> {
    this.reading ??= (async () => {
      try {
        const t = await this.viaSeed((c) => c.call('cluster.members', {}));
        this.counts.refreshes++;
        if (!this.table || t.version >= this.table.version || t.replica !== this.table.replica) this.table = t;
        for (const [replica, o] of this.owners) {
          if (t.members.find((m) => m.replica === replica)?.url === o.url) continue;
          o.client.close();
          this.owners.delete(replica);
        }
      } catch (err) {
        if (err instanceof WsupRpcError && err.wsupCode === 'WSUP_INVALID_ARGUMENT') this.routing = false;
        else if (!(err instanceof WsupConnectionError)) throw err;
        // Unreachable: route through any replica until the next read.
      } finally {
        this.readAt = performance.now();
        this.reading = null;
      }
    })();
    return this.reading;
  }

  /**
   * Run on the seed connection; when it cannot connect, try the next URL given (and the members' URLs
   * the table names), once each. A call that was sent is never repeated here.
   */
  private async viaSeed<T>(fn: (c: WsupClient) => Promise<T>): Promise<T> {
    const tried = new Set<string>();
    for (;;) {
      const url = this.urls[this.seedIndex]!;
      tried.add(url);
      const reached = await this.seed.connect().then(() => null, (err: unknown) => (err instanceof Error ? err : new WsupConnectionError(String(err))));
      if (reached === null) this.reached = true;
      if (reached === null || this.closed) return fn(this.seed);
      const next = this.candidates().find((u) => !tried.has(u));
      if (next === undefined) throw reached;
      if (!this.urls.includes(next)) this.urls.push(next);
      this.seedIndex = this.urls.indexOf(next);
      this.seed.close();
      this.seed = this.client(next, this.opts.reconnect);
    }
  }

  private candidates(): string[] {
    const fromTable = (this.table?.members ?? []).filter((m) => !m.leaving && m.url).map((m) => m.url!);
    return [...this.urls, ...fromTable];
  }

  private client(url: string, reconnect: ClientOptions['reconnect']): WsupClient {
    const { urls: _urls, refreshMs: _refresh, resendMs: _resend, onNotification, ...rest } = this.opts;
    return new WsupClient({
      ...rest,
      url,
      ...(reconnect !== undefined ? { reconnect } : {}),
      onNotification: (method, p) => {
        if (method === 'cluster.route') this.routed(p as ClusterRoute);
        else onNotification?.(method, p);
      },
    });
  }

  /** A replica forwarded one of our commands and said where its shard lives: the next one goes there. */
  private routed(r: ClusterRoute): void {
    const t = this.table;
    this.counts.hints++;
    if (!t || !this.routing || r.shard < 0 || r.shard >= t.shards || r.version < t.version) return;
    const owners = [...t.owners];
    owners[r.shard] = r.replica;
    const members = t.members.some((m) => m.replica === r.replica) ? t.members : [...t.members, { replica: r.replica, url: r.url, leaving: false, shards: 0 }];
    this.table = { ...t, owners, members, version: r.version };
  }
}

/** The command's answer was lost or says nothing of its outcome: sent again under its request id. */
function resendable(err: unknown): boolean {
  if (err instanceof WsupConnectionError) return true;
  return err instanceof WsupRpcError && (err.wsupCode === 'WSUP_OUTCOME_UNKNOWN' || err.wsupCode === 'WSUP_SHUTTING_DOWN' || err.wsupCode === 'WSUP_FENCED');
}

/** The call failed because its owner went away or no longer owns the shard: read the table again. */
function movedOrGone(err: unknown): boolean {
  if (err instanceof WsupConnectionError) return true;
  return err instanceof WsupRpcError && (err.wsupCode === 'WSUP_FENCED' || err.wsupCode === 'WSUP_SHUTTING_DOWN' || err.wsupCode === 'WSUP_OUTCOME_UNKNOWN');
}
