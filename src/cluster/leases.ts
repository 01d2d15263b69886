/**
 * Shard leases in PostgreSQL: a lease row per shard with an owner, an expiry in database time and a
 * fencing epoch that increments on every takeover.
 *
 * Why lease rows and not advisory locks: an advisory lock lives as long as its session, so a replica that
 * is paused (SIGSTOP, a long GC) or cut off keeps its locks until TCP gives up — minutes — and nobody can
 * take its shards over in a few seconds. A lease expires on the database's clock whatever the holder does,
 * and the epoch fences the old holder out: every commit for a shard re-reads its lease row `FOR KEY SHARE`
 * (see `fenceCheck`), so a takeover (`FOR UPDATE`) waits for commits in flight and then no stale commit
 * can land. A renewal locks the row only `FOR NO KEY UPDATE`, which does not conflict with the commit's
 * lock: renewals never queue behind commits (measured under load: with `FOR SHARE` against `FOR UPDATE`
 * a renewal waited 0.3-1.6 s behind group commits and leases lapsed; with these modes, none did).
 * Locally, a lease counts as held only until `sentAt + ttl - margin` on the monotonic clock, where sentAt
 * is when the renewal was sent (before the database stamped it): a paused replica wakes up knowing it no
 * longer holds anything and performs no provider call for it.
 *
 * With `renewal` (what a replica uses) the heartbeat and the renewals run in a worker thread on their own
 * connection (lease-worker.ts), so a busy main thread cannot make a lease lapse: the main thread only
 * reads each lease's validity from shared memory when it checks it. Acquiring and handing over stay here.
 *
 * Balance: every replica heartbeats in `cluster_members`; each aims for ceil(shards / live members). One
 * under its share takes free or expired shards; one over it hands extras back gracefully (`onRelease`
 * finishes in-flight cycles first), and a replica that is leaving hands everything back.
 *
 * @example
 * const keeper = new LeaseKeeper({ engine, replica: 'r1', shards: 64, onGain, onRelease, onLose, renewal: { url } });
 * await keeper.tick(); // or keeper.start() to tick every renewMs
 * await keeper.close(); // stop renewing (the worker ends)
 */
import type { SqlEngine, SqlQueryable } from '../store/engine.ts';
import { FencedError } from '../errors.ts';
import { LeaseWorker, type SharedClock } from './lease-worker.ts';

export interface Lease {
  shard: number;
  epoch: number;
  /** Monotonic-clock ms until which this replica may act on the shard. */
  validUntil: number;
  /**
   * Aborted when the lease lapses locally (not renewed in time), is dropped or handed over: provider calls
   * in flight for the shard are cut off before another replica can take it over.
   */
  readonly signal: AbortSignal;
}

/**
 * A lease held here. Its validity lives in the renewal worker's shared memory when there is one (the
 * worker moves it forward), else in `local` (the keeper's own rounds do).
 */
class HeldLease implements Lease {
  readonly controller = new AbortController();
  readonly signal = this.controller.signal;
  timer: ReturnType<typeof setTimeout> | null = null;
  private local = -Infinity;

  constructor(
    readonly shard: number,
    readonly epoch: number,
    private readonly shared: LeaseWorker | null,
  ) {}

  get validUntil(): number {
    if (this.signal.aborted) return -Infinity;
    return this.shared ? this.shared.validUntil(this.shard, this.epoch) : this.local;
  }

  /** Valid until `ms` (from now on renewed by the worker, if there is one). */
  hold(ms: number): void {
    if (this.shared) this.shared.hold(this.shard, this.epoch, ms);
    else this.local = ms;
  }

  /** Never valid again; the worker stops renewing it. */
  give(): void {
    this.local = -Infinity;
    this.shared?.give(this.shard, this.epoch);
  }
}

export interface LeaseKeeperOptions {
  engine: SqlEngine;
  replica: string;
  shards: number;
  /** Lease length in database time. Default 2000 ms. */
  ttlMs?: number;
  /** Renewal period. Default ttl / 5. */
  renewMs?: number;
  /**
   * Taken off the local validity: a replica stops acting (and aborts its provider calls) this long before
   * the database would let another replica take over, so an event loop that lags by less than this cannot
   * overlap the next owner. Default ttl / 2.
   */
  marginMs?: number;
  /** A shard was acquired (epoch is new): load its workspaces. Runs before the shard counts as ready. */
  onGain: (lease: Lease) => Promise<void>;
  /** Hand a shard over: finish in-flight work, stop its actors. The lease is released afterwards. */
  onRelease: (shard: number) => Promise<void>;
  /** A shard was lost without a handover (lease expired, taken over): drop it at once. */
  onLose: (shard: number) => void;
  /**
   * Monotonic clock. Default performance.now. Not with `renewal`, whose clock both threads must read
   * (`renewal.clock`).
   */
  now?: () => number;
  /**
   * Renew from a worker thread with its own connection to this PostgreSQL (url, schema), so leases hold
   * while the main thread is busy. `clock`: a hand-set clock shared with the worker (tests).
   */
  renewal?: { url: string; schema?: string; clock?: SharedClock };
  onError?: (err: unknown, what: string) => void;
}

/** Declared beside the other errors, so that providers (below the cluster) can throw it too. */
export { FencedError };

export class LeaseKeeper {
  private readonly held = new Map<number, HeldLease>();
  /** Shards being handed over or loaded: not counted as ready. */
  private readonly busy = new Set<number>();
  private readonly ready = new Set<number>();
  private readonly ttl: number;
  private readonly renewMs: number;
  private readonly margin: number;
  private readonly now: () => number;
  private timer: ReturnType<typeof setInterval> | null = null;
  private ticking: Promise<void> | null = null;
  private leaving = false;
  private seeded = false;
  /** Renews the leases when `renewal` is set; started by the first round. */
  private worker: LeaseWorker | null = null;

  constructor(private readonly opts: LeaseKeeperOptions) {
    this.ttl = opts.ttlMs ?? 2000;
    this.renewMs = opts.renewMs ?? Math.max(50, Math.floor(this.ttl / 5));
    this.margin = opts.marginMs ?? Math.floor(this.ttl / 2);
    if (opts.renewal && opts.now) throw new Error('LeaseKeeper: with renewal, pass the clock as renewal.clock (the worker reads it too), not now');
    if (opts.renewal) {
      const { url, schema, clock } = opts.renewal;
      this.worker = new LeaseWorker({
        url,
        ...(schema !== undefined ? { schema } : {}),
        ...(clock ? { clock } : {}),
        replica: opts.replica,
        shards: opts.shards,
        ttlMs: this.ttl,
        renewMs: this.renewMs,
        marginMs: this.margin,
        onLost: (shard, epoch) => {
          if (this.held.get(shard)?.epoch === epoch) this.drop(shard, 'taken over or expired before its renewal');
        },
        onError: (err, what) => this.opts.onError?.(err, what),
      });
    }
    const worker = this.worker;
    this.now = worker ? () => worker.now() : (opts.now ?? (() => performance.now()));
  }

  /** The renewal worker, if renewals run in one (tests drive and observe it). */
  get renewer(): LeaseWorker | null {
    return this.worker;
  }

  /** The lease of `shard` if this replica may act on it right now (held, loaded, locally unexpired). */
  lease(shard: number): Lease | null {
    const l = this.held.get(shard);
    if (!l || !this.ready.has(shard) || this.now() >= l.validUntil) return null;
    return l;
  }

  /** The lease held on `shard` (loaded or still loading), or null: what commits are fenced with. */
  heldLease(shard: number): Lease | null {
    return this.held.get(shard) ?? null;
  }

  /** Whether `lease` (as handed to onGain) still allows acting: not dropped, released or locally expired. */
  valid(lease: Lease): boolean {
    return this.now() < lease.validUntil;
  }

  /** Shards this replica holds and has loaded. */
  owned(): number[] {
    return [...this.ready].filter((s) => this.lease(s) !== null).sort((a, b) => a - b);
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.renewMs);
    this.timer.unref?.();
  }

  /** One round: heartbeat, renew, take a share, hand extras back. Rounds never overlap. */
  tick(): Promise<void> {
    this.ticking ??= this.round()
      .catch((err: unknown) => this.opts.onError?.(err, 'lease round failed'))
      .finally(() => {
        this.ticking = null;
      });
    return this.ticking;
  }

  /**
   * Leave the cluster: hand every shard over (in-flight cycles finish first), then stop. A renewal worker
   * keeps the shards not handed over yet renewed meanwhile.
   */
  async leave(): Promise<void> {
    this.leaving = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.ticking;
    await this.opts.engine.query('UPDATE cluster_members SET leaving = true WHERE replica = $1', [this.opts.replica]);
    await Promise.all([...this.held.keys()].map((s) => this.handOver(s)));
    await this.worker?.close(); // before the member row goes: its heartbeat would write it back
    await this.opts.engine.query('DELETE FROM cluster_members WHERE replica = $1', [this.opts.replica]);
  }

  /**
   * Stop renewing without handing over (what a crash looks like to the others; for tests and shutdown on
   * error). The renewal worker is told to end; `close()` waits for it.
   */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    void this.worker?.close();
  }

  /** `stop()`, and wait until the renewal worker (and its connection) is gone. */
  async close(): Promise<void> {
    this.stop();
    await this.worker?.close();
  }

  private async round(): Promise<void> {
    if (this.leaving) return;
    const db = this.opts.engine;
    const me = this.opts.replica;
    if (!this.seeded) {
      await db.query('INSERT INTO shard_leases (shard) SELECT generate_series(0, $1::int - 1) ON CONFLICT DO NOTHING', [this.opts.shards]);
      this.seeded = true;
    }
    // The worker renews what is held from its first round on: nothing is acquired before it runs.
    await this.worker?.ready;
    const sentAt = this.now();
    const { rows: members } = await db.query<{ replica: string }>(
      `WITH beat AS (
         INSERT INTO cluster_members (replica, heartbeat_at) VALUES ($1, now())
         ON CONFLICT (replica) DO UPDATE SET heartbeat_at = now()
       )
       SELECT replica FROM cluster_members WHERE heartbeat_at > now() - make_interval(secs => $2::float8 / 1000) AND NOT leaving
       UNION SELECT $1`,
      [me, this.ttl],
    );
    if (!this.worker) await this.renew(sentAt);
    const share = Math.ceil(this.opts.shards / Math.max(1, members.length));
    const mine = this.held.size;
    if (mine < share) await this.acquire(share - mine, sentAt);
    else if (mine > share) {
      // Hand back extras only when someone is short of its share (there are free members to take them).
      const extras = [...this.held.keys()].filter((s) => !this.busy.has(s)).slice(0, mine - share);
      for (const s of extras) void this.handOver(s);
    }
  }

  /** Renew on this thread (no renewal worker): what the worker does in its rounds otherwise. */
  private async renew(sentAt: number): Promise<void> {
    const me = this.opts.replica;
    // Renew everything held, in one statement; a row that no longer matches is lost. Rows are locked in
    // shard order, as the commit fence locks them: the two can wait on each other but never deadlock.
    const { rows: renewed } = await this.opts.engine.query<{ shard: number; epoch: number }>(
      `UPDATE shard_leases l SET expires_at = now() + make_interval(secs => $2::float8 / 1000)
       FROM (SELECT shard FROM shard_leases WHERE owner = $1 AND expires_at > now() AND shard = ANY($3::int[])
             ORDER BY shard FOR NO KEY UPDATE) mine
       WHERE l.shard = mine.shard RETURNING l.shard, l.epoch`,
      [me, this.ttl, [...this.held.keys()]],
    );
    const still = new Map(renewed.map((r) => [r.shard, r.epoch]));
    for (const [shard, lease] of this.held) {
      if (still.get(shard) === lease.epoch) this.extend(lease, sentAt + this.ttl - this.margin);
      else this.drop(shard);
    }
  }

  private async acquire(want: number, sentAt: number): Promise<void> {
    const { rows } = await this.opts.engine.query<{ shard: number; epoch: number }>(
      `UPDATE shard_leases l SET owner = $1, epoch = l.epoch + 1, expires_at = now() + make_interval(secs => $2::float8 / 1000)
       FROM (SELECT shard FROM shard_leases WHERE owner IS NULL OR expires_at <= now()
             ORDER BY shard FOR UPDATE SKIP LOCKED LIMIT $3) free
       WHERE l.shard = free.shard RETURNING l.shard, l.epoch`,
      [this.opts.replica, this.ttl, want],
    );
    for (const r of rows) {
      const lease = new HeldLease(r.shard, Number(r.epoch), this.worker);
      this.extend(lease, sentAt + this.ttl - this.margin);
      this.held.set(r.shard, lease);
      this.busy.add(r.shard);
      this.opts
        .onGain(lease)
        .then(() => {
          if (this.held.get(r.shard) === lease) this.ready.add(r.shard);
        })
        .catch((err: unknown) => {
          this.opts.onError?.(err, `loading shard ${r.shard} failed: releasing it`);
          void this.release(r.shard, lease.epoch);
        })
        .finally(() => this.busy.delete(r.shard));
    }
  }

  private async handOver(shard: number): Promise<void> {
    const lease = this.held.get(shard);
    if (!lease || this.busy.has(shard)) return;
    this.busy.add(shard);
    this.ready.delete(shard); // commands for it go through the inbox from now on
    try {
      await this.opts.onRelease(shard);
    } catch (err) {
      this.opts.onError?.(err, `handing shard ${shard} over failed`);
    } finally {
      await this.release(shard, lease.epoch);
      this.busy.delete(shard);
    }
  }

  private async release(shard: number, epoch: number): Promise<void> {
    const lease = this.held.get(shard);
    if (lease) this.void(lease, 'handed over');
    this.held.delete(shard);
    this.ready.delete(shard);
    // Giving the row back early only spares the next owner the wait: if the database cannot take the
    // update now (too many clients, a blink), the lease still ends at its expiry. Never throws.
    try {
      await this.opts.engine.query(
        `UPDATE shard_leases SET owner = NULL, expires_at = '-infinity' WHERE shard = $1 AND owner = $2 AND epoch = $3`,
        [shard, this.opts.replica, epoch],
      );
    } catch (err) {
      this.opts.onError?.(err, `releasing shard ${shard} failed: it is free again at its lease's expiry`);
    }
  }

  /** Renewed until `until`: re-arm the local expiry that aborts the lease's signal. */
  private extend(lease: HeldLease, until: number): void {
    if (lease.controller.signal.aborted) return;
    lease.hold(until);
    this.arm(lease, until);
  }

  /** Abort the lease's signal at `until`, unless it was renewed by then (then wait for the new expiry). */
  private arm(lease: HeldLease, until: number): void {
    if (lease.timer) clearTimeout(lease.timer);
    lease.timer = setTimeout(() => {
      if (this.now() < lease.validUntil) return this.arm(lease, lease.validUntil);
      // Lapsed: stop acting on it now. The row is left to expire in the database (no early release: a
      // provider call being aborted this instant must wind down before anyone else may start one).
      if (this.held.get(lease.shard) === lease) this.drop(lease.shard, 'not renewed in time');
      else this.void(lease, 'not renewed in time');
    }, Math.max(0, until - this.now()));
    lease.timer.unref?.();
  }

  private void(lease: HeldLease, why: string): void {
    lease.give();
    if (lease.timer) clearTimeout(lease.timer);
    lease.timer = null;
    lease.controller.abort(new FencedError(lease.shard, `lease at epoch ${lease.epoch} ${why}`));
  }

  private drop(shard: number, why = 'lost'): void {
    const lease = this.held.get(shard);
    if (lease) this.void(lease, why);
    this.held.delete(shard);
    this.ready.delete(shard);
    this.opts.onLose(shard);
  }
}

/**
 * The commit-time fence: inside the commit's transaction, lock the lease rows of the shards it writes
 * `FOR KEY SHARE` and check each is still ours at the epoch we hold; answer the shards that are not. A
 * takeover locks the row `FOR UPDATE` (the one mode that conflicts), so it waits for this transaction (or
 * skips the row for now) and a write either lands before the takeover or is refused. Renewals and the early
 * release only take `FOR NO KEY UPDATE` and pass; PostgreSQL carries the key-share lock over to the row
 * version they write, so a takeover after them still waits. Every takeover must lock `FOR UPDATE`.
 */
export async function fenceCheck(tx: SqlQueryable, replica: string, leases: ReadonlyArray<{ shard: number; epoch: number }>): Promise<Map<number, FencedError>> {
  const lost = new Map<number, FencedError>();
  if (leases.length === 0) return lost;
  const { rows } = await tx.query<{ shard: number }>(
    `SELECT l.shard FROM shard_leases l JOIN unnest($1::int[], $2::bigint[]) AS w(shard, epoch) ON l.shard = w.shard AND l.epoch = w.epoch
     WHERE l.owner = $3 AND l.expires_at > now() ORDER BY l.shard FOR KEY SHARE OF l`,
    [leases.map((l) => l.shard), leases.map((l) => l.epoch), replica],
    { name: 'wsup_fence' },
  );
  if (rows.length === leases.length) return lost;
  const ok = new Set(rows.map((r) => r.shard));
  for (const l of leases) if (!ok.has(l.shard)) lost.set(l.shard, new FencedError(l.shard, `lease at epoch ${l.epoch} is gone`));
  return lost;
}
