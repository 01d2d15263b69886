/**
 * Shard leases in PostgreSQL: a lease row per shard with an owner, an expiry in database time and a
 * fencing epoch that increments on every takeover.
 *
 * Why lease rows and not advisory locks: an advisory lock lives as long as its session, so a replica that
 * is paused (SIGSTOP, a long GC) or cut off keeps its locks until TCP gives up — minutes — and nobody can
 * take its shards over in a few seconds. A lease expires on the database's clock whatever the holder does,
 * and the epoch fences the old holder out: every commit for a shard re-reads its lease row `FOR SHARE`
 * (see `fenceCheck`), so a takeover waits for commits in flight and then no stale commit can land.
 * Locally, a lease counts as held only until `sentAt + ttl - margin` on the monotonic clock, where sentAt
 * is when the renewal was sent (before the database stamped it): a paused replica wakes up knowing it no
 * longer holds anything and performs no provider call for it.
 *
 * Balance: every replica heartbeats in `cluster_members`; each aims for ceil(shards / live members). One
 * under its share takes free or expired shards; one over it hands extras back gracefully (`onRelease`
 * finishes in-flight cycles first), and a replica that is leaving hands everything back.
 *
 * @example
 * const keeper = new LeaseKeeper({ engine, replica: 'r1', shards: 64, onGain, onRelease, onLose });
 * await keeper.tick(); // or keeper.start() to tick every renewMs
 */
import type { SqlEngine, SqlQueryable } from '../store/engine.ts';
import { FencedError } from '../errors.ts';

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

interface HeldLease extends Lease {
  controller: AbortController;
  timer: ReturnType<typeof setTimeout> | null;
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
  /** Monotonic clock. Default performance.now. */
  now?: () => number;
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

  constructor(private readonly opts: LeaseKeeperOptions) {
    this.ttl = opts.ttlMs ?? 2000;
    this.renewMs = opts.renewMs ?? Math.max(50, Math.floor(this.ttl / 5));
    this.margin = opts.marginMs ?? Math.floor(this.ttl / 2);
    this.now = opts.now ?? (() => performance.now());
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

  /** Leave the cluster: hand every shard over (in-flight cycles finish first), then stop. */
  async leave(): Promise<void> {
    this.leaving = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.ticking;
    await this.opts.engine.query('UPDATE cluster_members SET leaving = true WHERE replica = $1', [this.opts.replica]);
    await Promise.all([...this.held.keys()].map((s) => this.handOver(s)));
    await this.opts.engine.query('DELETE FROM cluster_members WHERE replica = $1', [this.opts.replica]);
  }

  /** Stop renewing without handing over (what a crash looks like to the others; for tests and shutdown on error). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async round(): Promise<void> {
    if (this.leaving) return;
    const db = this.opts.engine;
    const me = this.opts.replica;
    if (!this.seeded) {
      await db.query('INSERT INTO shard_leases (shard) SELECT generate_series(0, $1::int - 1) ON CONFLICT DO NOTHING', [this.opts.shards]);
      this.seeded = true;
    }
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
    // Renew everything held, in one statement; a row that no longer matches is lost. Rows are locked in
    // shard order, as the commit fence locks them: the two can wait on each other but never deadlock.
    const { rows: renewed } = await db.query<{ shard: number; epoch: number }>(
      `UPDATE shard_leases l SET expires_at = now() + make_interval(secs => $2::float8 / 1000)
       FROM (SELECT shard FROM shard_leases WHERE owner = $1 AND expires_at > now() AND shard = ANY($3::int[])
             ORDER BY shard FOR UPDATE) mine
       WHERE l.shard = mine.shard RETURNING l.shard, l.epoch`,
      [me, this.ttl, [...this.held.keys()]],
    );
    const still = new Map(renewed.map((r) => [r.shard, r.epoch]));
    for (const [shard, lease] of this.held) {
      if (still.get(shard) === lease.epoch) this.extend(lease, sentAt + this.ttl - this.margin);
      else this.drop(shard);
    }
    const share = Math.ceil(this.opts.shards / Math.max(1, members.length));
    const mine = this.held.size;
    if (mine < share) await this.acquire(share - mine, sentAt);
    else if (mine > share) {
      // Hand back extras only when someone is short of its share (there are free members to take them).
      const extras = [...this.held.keys()].filter((s) => !this.busy.has(s)).slice(0, mine - share);
      for (const s of extras) void this.handOver(s);
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
      const controller = new AbortController();
      const lease: HeldLease = { shard: r.shard, epoch: r.epoch, validUntil: -Infinity, signal: controller.signal, controller, timer: null };
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
    lease.validUntil = until;
    if (lease.timer) clearTimeout(lease.timer);
    lease.timer = setTimeout(() => {
      if (this.now() < lease.validUntil) return this.extend(lease, lease.validUntil);
      // Lapsed: stop acting on it now. The row is left to expire in the database (no early release: a
      // provider call being aborted this instant must wind down before anyone else may start one).
      if (this.held.get(lease.shard) === lease) this.drop(lease.shard, 'not renewed in time');
      else this.void(lease, 'not renewed in time');
    }, Math.max(0, until - this.now()));
    lease.timer.unref?.();
  }

  private void(lease: HeldLease, why: string): void {
    lease.validUntil = -Infinity;
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
 * `FOR SHARE` and check each is still ours at the epoch we hold; answer the shards that are not. A
 * takeover's UPDATE waits for this transaction, so a write either lands before the takeover or is refused.
 */
export async function fenceCheck(tx: SqlQueryable, replica: string, leases: ReadonlyArray<{ shard: number; epoch: number }>): Promise<Map<number, FencedError>> {
  const lost = new Map<number, FencedError>();
  if (leases.length === 0) return lost;
  const { rows } = await tx.query<{ shard: number }>(
    `SELECT l.shard FROM shard_leases l JOIN unnest($1::int[], $2::bigint[]) AS w(shard, epoch) ON l.shard = w.shard AND l.epoch = w.epoch
     WHERE l.owner = $3 AND l.expires_at > now() ORDER BY l.shard FOR SHARE OF l`,
    [leases.map((l) => l.shard), leases.map((l) => l.epoch), replica],
    { name: 'wsup_fence' },
  );
  if (rows.length === leases.length) return lost;
  const ok = new Set(rows.map((r) => r.shard));
  for (const l of leases) if (!ok.has(l.shard)) lost.set(l.shard, new FencedError(l.shard, `lease at epoch ${l.epoch} is gone`));
  return lost;
}
