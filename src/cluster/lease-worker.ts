/**
 * Lease renewal off the main event loop: a worker thread with its own PostgreSQL connection heartbeats the
 * replica and renews its shard leases every `renewMs`, however busy the main thread is (a CPU-bound burst,
 * a long GC, thousands of requests at once). What it renews travels through shared memory, not messages:
 *
 * - `epochs[shard]` (written by the main thread): the epoch held on the shard, 0 for none. The worker
 *   renews exactly these rows, at these epochs.
 * - `valid[shard]` (µs on the shared monotonic clock): until when the replica may act on the shard. The
 *   main thread sets it when it acquires the shard and voids it when it gives the shard up; the worker
 *   only moves it forward, to `sentAt + ttl - margin` of a renewal the database confirmed, with a
 *   compare-and-swap that loses to a concurrent void. A row the database no longer gives us is marked
 *   lapsed, so the main thread's next check sees it at once, and reported with a `lost` message.
 *
 * The worker aborts nothing: the main thread reads `valid` on every check (`LeaseKeeper.valid`), and its
 * own timers abort a lease's signal once `valid` is in the past. A worker that stops renewing (its
 * connection hangs, it crashed) therefore lets leases lapse locally exactly as a slow main thread used
 * to, which is the safe direction. The worker is restarted when it dies; it dies with the process, and
 * `close()` ends it.
 *
 * The worker's code is a plain JavaScript string run with `eval`: it then runs the same under tsx, vitest,
 * the esbuild bundle of `npm start` and the compiled package, none of which would agree on where a
 * separate worker file lives. It loads `pg` by the absolute path this module resolves.
 *
 * @example
 * const worker = new LeaseWorker({ url, replica: 'r1', shards: 64, ttlMs: 2000, renewMs: 400, marginMs: 1000, onLost, onError });
 * await worker.ready;
 * worker.hold(3, 7, Date.now() + 1000);  // shard 3 at epoch 7: the worker renews it from now on
 * worker.validUntil(3, 7);                // ms on the shared clock; -Infinity once lapsed or given up
 * await worker.close();
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { assertSchemaName } from '../store/engine.ts';

/** `valid` of a shard the main thread gave up (released, dropped): nothing moves it forward. */
const VOID = -(2n ** 62n);
/** `valid` of a shard whose renewal the database refused: the row is no longer this replica's. */
const LAPSED = -1n;

/** Control words: [0] kick counter (a renewal round is wanted now), [1] rounds completed. */
const KICK = 0;
const ROUNDS = 1;
/** A worker that died is started again after this long (or renewMs, if shorter). */
const RESTART_MS = 200;

/**
 * A monotonic clock both threads read: by default the process's hrtime (`performance.now()` differs per
 * thread: each counts from its own start). Tests set it by hand, and the worker sees the same time.
 */
export class SharedClock {
  readonly buffer: SharedArrayBuffer;
  private readonly cell: BigInt64Array;

  /** A hand-set clock starting at `ms` (tests). */
  constructor(ms = 0) {
    this.buffer = new SharedArrayBuffer(8);
    this.cell = new BigInt64Array(this.buffer);
    this.set(ms);
  }

  now(): number {
    return Number(Atomics.load(this.cell, 0)) / 1000;
  }

  set(ms: number): void {
    Atomics.store(this.cell, 0, BigInt(Math.round(ms * 1000)));
  }

  advance(ms: number): void {
    this.set(this.now() + ms);
  }
}

/** Milliseconds on the process-wide monotonic clock, the same in every thread. */
export const monotonicMs = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;

export interface LeaseWorkerOptions {
  url: string;
  schema?: string;
  replica: string;
  shards: number;
  ttlMs: number;
  renewMs: number;
  marginMs: number;
  /** A hand-set clock (tests); default the process's monotonic clock (`monotonicMs`). */
  clock?: SharedClock;
  /** The database no longer gives us `shard` at `epoch` (taken over, or expired before the renewal). */
  onLost: (shard: number, epoch: number) => void;
  onError: (err: unknown, what: string) => void;
}

type WorkerMessage =
  | { type: 'ready' }
  | { type: 'lost'; lost: Array<[number, number]> }
  | { type: 'error'; what: string; message: string; code?: string };

export class LeaseWorker {
  /** Resolves once the worker is connected and has run its first round; rejects if it cannot start. */
  readonly ready: Promise<void>;
  private readonly epochs: BigInt64Array;
  private readonly valid: BigInt64Array;
  private readonly ctl: Int32Array;
  private readonly shared: { epochs: SharedArrayBuffer; valid: SharedArrayBuffer; ctl: SharedArrayBuffer };
  private worker: Worker | null = null;
  private closing: Promise<void> | null = null;
  private restart: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly opts: LeaseWorkerOptions) {
    if (opts.schema !== undefined) assertSchemaName(opts.schema);
    if (!Number.isInteger(opts.shards) || opts.shards < 1) throw new Error(`lease worker: shards must be a positive integer, got ${opts.shards}`);
    if (!(opts.marginMs >= 0 && opts.marginMs < opts.ttlMs)) throw new Error(`lease worker: margin ${opts.marginMs} ms must be in [0, ttl ${opts.ttlMs} ms)`);
    this.shared = {
      epochs: new SharedArrayBuffer(8 * opts.shards),
      valid: new SharedArrayBuffer(8 * opts.shards),
      ctl: new SharedArrayBuffer(8),
    };
    this.epochs = new BigInt64Array(this.shared.epochs);
    this.valid = new BigInt64Array(this.shared.valid).fill(VOID);
    this.ctl = new Int32Array(this.shared.ctl);
    this.ready = this.spawn();
    this.ready.catch(() => undefined); // the keeper awaits it; an early close must not leave it unhandled
  }

  /** The current time on the clock the worker uses. */
  now(): number {
    return this.opts.clock ? this.opts.clock.now() : monotonicMs();
  }

  /** Renew `shard` at `epoch` from now on; the replica may act on it until `untilMs` unless renewed. */
  hold(shard: number, epoch: number, untilMs: number): void {
    Atomics.store(this.valid, shard, BigInt(Math.floor(untilMs * 1000)));
    Atomics.store(this.epochs, shard, BigInt(epoch)); // after valid: the worker never sees the epoch without it
  }

  /** Stop renewing `shard` at `epoch` (no-op if another epoch is held there now) and void its validity. */
  give(shard: number, epoch: number): void {
    if (Atomics.compareExchange(this.epochs, shard, BigInt(epoch), 0n) !== BigInt(epoch)) return;
    Atomics.store(this.valid, shard, VOID);
  }

  /** Until when (ms, shared clock) the replica may act on `shard` at `epoch`; -Infinity if it may not. */
  validUntil(shard: number, epoch: number): number {
    if (Atomics.load(this.epochs, shard) !== BigInt(epoch)) return -Infinity;
    const v = Atomics.load(this.valid, shard);
    return v < 0n ? -Infinity : Number(v) / 1000;
  }

  /** Ask for a renewal round now (tests drive rounds this way with a long renewMs). */
  renewNow(): void {
    Atomics.add(this.ctl, KICK, 1);
    Atomics.notify(this.ctl, KICK);
  }

  /** Renewal rounds completed (successful or not) since the worker first started. */
  rounds(): number {
    return Atomics.load(this.ctl, ROUNDS);
  }

  /**
   * Block the calling thread until more than `after` rounds completed, or `timeoutMs` passed; whether
   * they did. Tests use it to show that renewals go on while the main thread does not yield at all.
   */
  waitForRoundSync(after: number, timeoutMs: number): boolean {
    const until = Date.now() + timeoutMs;
    for (let seen = this.rounds(); seen <= after; seen = this.rounds()) {
      const left = until - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.ctl, ROUNDS, seen, left);
    }
    return true;
  }

  /** End the worker (its connection closes with it). Idempotent. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      if (this.restart) clearTimeout(this.restart);
      const w = this.worker;
      this.worker = null;
      if (w) await w.terminate();
    })());
  }

  private spawn(): Promise<void> {
    const { url, schema, replica, ttlMs, renewMs, marginMs, clock } = this.opts;
    const w = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        pg: createRequire(import.meta.url).resolve('pg'),
        url,
        schema: schema ?? null,
        replica,
        ttlMs,
        renewMs,
        marginMs,
        clock: clock?.buffer ?? null,
        ...this.shared,
      },
      // The worker must never keep the process alive, and never inherit the main thread's loader hooks.
      execArgv: [],
      stdout: false,
      stderr: false,
    });
    this.worker = w;
    const started = new Promise<void>((resolve, reject) => {
      let up = false;
      w.on('message', (m: WorkerMessage) => {
        if (m.type === 'ready') {
          up = true;
          resolve();
        } else if (m.type === 'lost') for (const [shard, epoch] of m.lost) this.opts.onLost(shard, epoch);
        else this.opts.onError(Object.assign(new Error(m.message), m.code !== undefined ? { code: m.code } : {}), m.what);
      });
      w.on('error', (err) => this.opts.onError(err, 'lease renewal worker failed'));
      w.on('exit', (code) => {
        if (this.worker !== w || this.closing) return reject(new Error('lease renewal worker closed before it was ready'));
        this.worker = null;
        // Leases lapse locally while it is down (nothing renews them): the safe direction. Start it again.
        this.opts.onError(new Error(`lease renewal worker exited with code ${code}`), 'lease renewal worker stopped: restarting it');
        if (!up) return reject(new Error(`lease renewal worker exited with code ${code} before it was ready`));
        this.restart = setTimeout(() => {
          this.restart = null;
          if (!this.closing) this.spawn().catch((err: unknown) => this.opts.onError(err, 'restarting the lease renewal worker failed'));
        }, Math.min(renewMs, RESTART_MS));
        this.restart.unref?.();
      });
    });
    // After the listeners: adding a 'message' listener refs the worker's port again.
    w.unref();
    return started;
  }
}

/**
 * The worker. A round: read the held shards and epochs, note `sentAt`, heartbeat and renew them in one
 * statement (rows locked `FOR NO KEY UPDATE`, in shard order: never behind a commit's fence, see leases.ts), then move `valid` forward for each renewed one (unless the main thread voided it meanwhile)
 * and mark the others lapsed. Rounds start every renewMs (or at once when kicked); a query that takes
 * longer than the ttl is abandoned with its connection, and the next round reconnects.
 */
const WORKER_SOURCE = String.raw`
'use strict';
const { parentPort, workerData: d } = require('node:worker_threads');
const pg = require(d.pg);
const VOID = ${VOID}n, LAPSED = ${LAPSED}n, KICK = ${KICK}, ROUNDS = ${ROUNDS};
const epochs = new BigInt64Array(d.epochs), valid = new BigInt64Array(d.valid), ctl = new Int32Array(d.ctl);
const clock = d.clock ? new BigInt64Array(d.clock) : null;
const nowUs = () => (clock ? Atomics.load(clock, 0) : process.hrtime.bigint() / 1000n);
const report = (what, err) => parentPort.postMessage({ type: 'error', what, message: String(err && err.message || err), code: err && err.code });
const RENEW = 'WITH beat AS (INSERT INTO cluster_members (replica, heartbeat_at) VALUES ($1, now()) ' +
  'ON CONFLICT (replica) DO UPDATE SET heartbeat_at = now()) ' +
  'UPDATE shard_leases l SET expires_at = now() + make_interval(secs => $2::float8 / 1000) ' +
  'FROM (SELECT s.shard FROM shard_leases s JOIN unnest($3::int[], $4::bigint[]) AS h(shard, epoch) ON s.shard = h.shard AND s.epoch = h.epoch ' +
  '      WHERE s.owner = $1 AND s.expires_at > now() ORDER BY s.shard FOR NO KEY UPDATE OF s) mine ' +
  'WHERE l.shard = mine.shard RETURNING l.shard, l.epoch';
let client = null;
async function connect() {
  const c = new pg.Client({ connectionString: d.url, query_timeout: d.ttlMs, connectionTimeoutMillis: d.ttlMs,
    application_name: 'wsup lease renewal ' + d.replica,
    ...(d.schema !== null ? { options: '-c search_path=' + d.schema } : {}) });
  c.on('error', (err) => { if (client === c) client = null; report('lease renewal connection failed', err); c.end().catch(() => {}); });
  await c.connect();
  client = c;
}
/** Move valid[s] forward to until, unless the main thread gave the shard up or holds another epoch. */
function extend(s, e, until) {
  for (;;) {
    if (Atomics.load(epochs, s) !== e) return;
    const v = Atomics.load(valid, s);
    if (v < 0n || v >= until) return;
    if (Atomics.compareExchange(valid, s, v, until) === v) return;
  }
}
function lapse(s, e) {
  for (;;) {
    if (Atomics.load(epochs, s) !== e) return false;
    const v = Atomics.load(valid, s);
    if (v < 0n) return false;
    if (Atomics.compareExchange(valid, s, v, LAPSED) === v) return true;
  }
}
async function round() {
  const shards = [], held = [];
  for (let s = 0; s < epochs.length; s++) {
    const e = Atomics.load(epochs, s);
    if (e !== 0n) { shards.push(s); held.push(e); }
  }
  const sentAt = nowUs();
  if (client === null) await connect();
  const c = client;
  let rows;
  try {
    ({ rows } = await c.query(RENEW, [d.replica, d.ttlMs, shards, held.map(String)]));
  } catch (err) {
    if (client === c) client = null;
    c.end().catch(() => {});
    throw err;
  }
  const renewed = new Map(rows.map((r) => [Number(r.shard), BigInt(r.epoch)]));
  const until = sentAt + BigInt(Math.floor((d.ttlMs - d.marginMs) * 1000));
  const lost = [];
  for (let i = 0; i < shards.length; i++) {
    if (renewed.get(shards[i]) === held[i]) extend(shards[i], held[i], until);
    else if (lapse(shards[i], held[i])) lost.push([shards[i], Number(held[i])]);
  }
  if (lost.length > 0) parentPort.postMessage({ type: 'lost', lost });
}
(async () => {
  let first = true;
  for (;;) {
    const kick = Atomics.load(ctl, KICK);
    const began = performance.now();
    try {
      await round();
    } catch (err) {
      if (first) throw err;
      report('renewing shard leases failed', err);
    }
    Atomics.add(ctl, ROUNDS, 1);
    Atomics.notify(ctl, ROUNDS);
    if (first) parentPort.postMessage({ type: 'ready' });
    first = false;
    const wait = Math.max(0, d.renewMs - (performance.now() - began));
    // The timer also keeps the thread alive while there is no connection (waitAsync alone does not).
    let timer;
    await Promise.race([Atomics.waitAsync(ctl, KICK, kick, wait).value, new Promise((r) => (timer = setTimeout(r, wait)))]);
    clearTimeout(timer);
  }
})().catch((err) => {
  report('the lease renewal worker could not start', err);
  process.exit(1);
});
`;
