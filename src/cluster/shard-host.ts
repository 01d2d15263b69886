/**
 * The shards a replica owns, each with its runtime: leases (leases.ts) turn into a durable Supervisor over
 * the replica's fenced store and a fenced provider, with the shard's services beside it. Only the lease
 * holder's actors call the provider; a replica whose lease ran out (locally) calls nothing, and a stale
 * commit is refused inside its transaction (`fence`).
 *
 * A graceful handover lets in-flight cycles finish (until `handoverMs`) and waits until every provider
 * call of the shard has settled before the lease is released; a lost lease aborts at once.
 *
 * @example
 * const host = new ShardHost({ leaseEngine, replica: 'r1', shards: 64, provider, store: () => store });
 * await host.start();
 * const rt = host.runtime(shardOf('ws-1', 64)); // the shard's supervisor, if it is owned here
 */
import { systemClock, type Clock } from '../supervisor/clock.ts';
import type { DurableOptions } from '../supervisor/durable.ts';
import { openDurableSupervisor } from '../supervisor/durable.ts';
import type { Provider, ProviderFence } from '../providers/types.ts';
import type { SqlEngine, SqlQueryable } from '../store/engine.ts';
import type { WorkspaceStore } from '../store/store.ts';
import type { Supervisor, SupervisorOptions } from '../supervisor/supervisor.ts';
import type { SupervisorEvent } from '../supervisor/types.ts';
import type { RoutedParams } from '../server/dispatch.ts';
import { FencedError, fenceCheck, LeaseKeeper, type Lease } from './leases.ts';
import { shardOf } from './shards.ts';

export interface ShardContext {
  shard: number;
  epoch: number;
  store: WorkspaceStore;
}

export interface ShardServices {
  /** Extra options for the shard's durable supervisor (prepareSpec, beforeRecovery, ownerOf, ...). */
  supervisor?: Partial<Omit<DurableOptions, 'provider' | 'store' | 'shards' | 'persist'>>;
  /** The shard's workspaces are restored: reconcile what recovery may have left (claims, pools). */
  ready?(supervisor: Supervisor): Promise<void>;
  /** Methods beyond the supervisor's that the owner of the shard answers, routed by `params.id`. */
  methods?: Record<string, (params: RoutedParams, requester: string) => Promise<unknown>>;
  /** Before the shard's supervisor shuts down (handover or loss): stop asking it for anything. */
  close(): Promise<void>;
}

export interface ShardRuntime {
  lease: Lease;
  supervisor: Supervisor;
  services: ShardServices | null;
  /** Provider calls of this shard not yet settled (an aborted call may still be winding down). */
  calls: Set<Promise<unknown>>;
  /** When this replica gained the shard (the host's clock, ms). */
  gainedAt: number;
}

export interface ShardHostOptions {
  /** Lease traffic only: renewals must never queue behind commits for a pooled connection. */
  leaseEngine: SqlEngine;
  replica: string;
  shards: number;
  ttlMs?: number | undefined;
  /** Where the lease worker thread renews from (its own connection): renewals never wait on this thread. */
  renewal?: { url: string; schema?: string | undefined } | undefined;
  provider: Provider;
  /** The replica's one store (opened with `fence` as its fence). */
  store: () => WorkspaceStore;
  handoverMs?: number | undefined;
  supervisor?: Omit<SupervisorOptions, 'provider' | 'persist'> | undefined;
  services?: ((shard: ShardContext) => ShardServices | Promise<ShardServices>) | undefined;
  /** Every event of the shards owned here. */
  publish: (ev: SupervisorEvent) => void;
  /** A shard was loaded here: queued commands for it can run. */
  onLoaded: (shard: number) => void;
  onShard?: ((e: { shard: number; epoch: number; what: 'gained' | 'released' | 'lost' }) => void) | undefined;
  report: (err: unknown, what: string) => void;
  /** The replica's clock (`gainedAt`); default the system's. */
  clock?: Clock | undefined;
}

export class ShardHost {
  private readonly shards = new Map<number, ShardRuntime & { stop: () => void }>();
  /** Shards lost here whose provider calls are still winding down. */
  private readonly winding = new Map<number, Promise<void>>();
  private readonly keeper: LeaseKeeper;

  constructor(private readonly opts: ShardHostOptions) {
    this.keeper = new LeaseKeeper({
      engine: opts.leaseEngine,
      replica: opts.replica,
      shards: opts.shards,
      ...(opts.ttlMs !== undefined ? { ttlMs: opts.ttlMs } : {}),
      ...(opts.renewal ? { renewal: { url: opts.renewal.url, ...(opts.renewal.schema !== undefined ? { schema: opts.renewal.schema } : {}) } } : {}),
      onGain: (lease) => this.gain(lease),
      onRelease: (shard) => this.release(shard),
      onLose: (shard) => this.lose(shard),
      onError: (err, what) => opts.report(err, what),
    });
  }

  /** One lease round now (so a lone replica owns its shards before it answers), then keep renewing. */
  async start(): Promise<void> {
    await this.keeper.tick();
    this.keeper.start();
  }

  /** Shards whose lease is held here (a gained one may still be loading). */
  leased(): number[] {
    return this.keeper.owned();
  }

  /** Shards owned and loaded here: their commands can run. */
  loaded(): number[] {
    return this.keeper.owned().filter((s) => this.shards.has(s));
  }

  /** The runtime of a shard whose lease is held here (renewed, not expired locally), or undefined. */
  runtime(shard: number): ShardRuntime | undefined {
    return this.keeper.lease(shard) ? this.shards.get(shard) : undefined;
  }

  /** Whether this lease is still the one held (not expired, dropped or handed over). */
  valid(lease: Lease): boolean {
    return this.keeper.valid(lease);
  }

  /**
   * Whether a command's failure on `rt` is the shard moving rather than the command failing:
   * - `lost`: the lease is gone (or the shard's supervisor is shutting down for a handover): the next owner
   *   runs the command, or recognises it in the event log;
   * - `refused`: the fence refused a provider call while the lease still holds (a renewal came back after
   *   the local expiry had passed, on a busy machine): no provider call was made, run it again here;
   * - `no`: the command's own outcome, for the caller.
   * A cycle failure carries the fence only in the workspace's last error, so that is read too.
   */
  moved(err: unknown, rt: ShardRuntime, id: string): 'no' | 'lost' | 'refused' {
    if (!this.keeper.valid(rt.lease) || this.runtime(rt.lease.shard) !== rt) return 'lost';
    if (causes(err).some((e) => e.code === 'WSUP_FENCED') || this.fencedCycle(err, rt, id)) return 'refused';
    return isShutdown(err) ? 'lost' : 'no';
  }

  private fencedCycle(err: unknown, rt: ShardRuntime, id: string): boolean {
    if (!(err instanceof Error) || (err as { code?: unknown }).code !== 'WSUP_CYCLE_FAILED') return false;
    // The cycle just failed here: its actor is in memory.
    const last = rt.supervisor.peek(id)?.lastError ?? null;
    return last !== null && last.code === 'WSUP_FENCED' && err.message.endsWith(last.message);
  }

  /** Hand every shard over gracefully: in-flight cycles finish first. */
  leave(): Promise<void> {
    return this.keeper.leave();
  }

  /** Stop renewing and drop every shard at once (what a crash looks like to the others). */
  stop(): void {
    this.keeper.stop();
    for (const shard of [...this.shards.keys()]) this.lose(shard);
  }

  /** After `stop`: end the lease worker thread. */
  close(): Promise<void> {
    return this.keeper.close();
  }

  /** Refuse the writes of shards whose lease is gone; the other shards' writes in the batch commit. */
  async fence(tx: SqlQueryable, ids: readonly string[]): Promise<Map<string, Error> | null> {
    const shards = new Set(ids.map((id) => shardOf(id, this.opts.shards)));
    const leases: Lease[] = [];
    const lost = new Map<number, Error>();
    for (const s of shards) {
      const l = this.keeper.heldLease(s);
      if (l) leases.push(l);
      else lost.set(s, new FencedError(s, 'no lease held'));
    }
    for (const [s, err] of await fenceCheck(tx, this.opts.replica, leases)) lost.set(s, err);
    if (lost.size === 0) return null;
    const refused = new Map<string, Error>();
    for (const id of ids) {
      const err = lost.get(shardOf(id, this.opts.shards));
      if (err) refused.set(id, err);
    }
    return refused;
  }

  private async gain(lease: Lease): Promise<void> {
    const { shard, epoch } = lease;
    await this.winding.get(shard); // this replica's previous run of the shard: its calls must be over first
    // The keeper renews this very object, and voids it when the shard is dropped or handed over.
    const check = () => {
      if (!this.keeper.valid(lease)) throw new FencedError(shard, `lease at epoch ${epoch} expired or was given up`);
    };
    const calls = new Set<Promise<unknown>>();
    const store = this.opts.store();
    const services = (await this.opts.services?.({ shard, epoch, store })) ?? null;
    const { supervisor } = await openDurableSupervisor({
      ...this.opts.supervisor,
      ...services?.supervisor,
      provider: fencedProvider(this.opts.provider, check, lease.signal, { shard, epoch }, calls),
      store,
      orphans: 'ignore',
      shards: { count: this.opts.shards, of: [shard] },
      onError: (err, ctx) => this.opts.report(err, `${ctx.what}${ctx.id ? ` (${ctx.id})` : ''}`),
    });
    if (!this.keeper.valid(lease)) {
      // Lost while loading (a lease round ran late): nothing of it may run here, and calls its recovery
      // started are over before the shard can be loaded here again.
      await services?.close();
      await this.retire(shard, supervisor, calls, 0);
      throw new FencedError(shard, 'lease lapsed while its workspaces were loading');
    }
    const events = supervisor.events.subscribe((ev) => this.opts.publish(ev));
    this.shards.set(shard, { lease, supervisor, services, calls, gainedAt: (this.opts.clock ?? systemClock).now(), stop: () => events.unsubscribe() });
    await services?.ready?.(supervisor);
    this.opts.onShard?.({ shard, epoch, what: 'gained' });
    queueMicrotask(() => this.opts.onLoaded(shard));
  }

  private async release(shard: number): Promise<void> {
    const rt = this.shards.get(shard);
    if (!rt) return;
    // In-flight cycles finish (until handoverMs), and calls the shutdown aborted are over, before the lease
    // is released: the next owner may start one the moment it is.
    await rt.services?.close().catch((err: unknown) => this.opts.report(err, `closing shard ${shard}'s services failed`));
    await this.retire(shard, rt.supervisor, rt.calls, this.opts.handoverMs ?? 30_000);
    rt.stop();
    this.shards.delete(shard);
    this.opts.onShard?.({ shard, epoch: rt.lease.epoch, what: 'released' });
  }

  private lose(shard: number): void {
    const rt = this.shards.get(shard);
    if (!rt) return;
    this.shards.delete(shard);
    this.opts.onShard?.({ shard, epoch: rt.lease.epoch, what: 'lost' });
    rt.stop();
    // Abort at once: the lease is gone; whatever it still wanted to write is refused by the fence.
    rt.services?.close().catch((err: unknown) => this.opts.report(err, `closing shard ${shard}'s services failed`));
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
}

/** An error and its causes, outermost first (bounded: a cyclic chain ends). */
function causes(err: unknown): { code?: unknown }[] {
  const out: { code?: unknown }[] = [];
  for (let e = err, n = 0; typeof e === 'object' && e !== null && n < 8; e = (e as { cause?: unknown }).cause, n++) out.push(e);
  return out;
}

/**
 * A shutdown error of a replica whose shard left it in the middle of a command: the command was not
 * acknowledged, and is carried to the shard's next owner.
 */
export const isShutdown = (err: unknown): boolean => causes(err).some((e) => e.code === 'WSUP_SHUTTING_DOWN' || e.code === 'WSUP_FENCED');

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
