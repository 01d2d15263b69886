/**
 * Group commit: many callers, one transaction. Writes submitted while a batch is being collected or a
 * transaction is in flight join the next batch; every caller's promise settles with the transaction that
 * carried its write, so "resolved" always means "committed" (ack ⇒ durable) without paying one round trip
 * per transition.
 *
 * With `maxInFlight` > 1 (and a `keys` function) several transactions run at once, on several connections:
 * the client builds the next batch while the database commits the previous one. Order still holds where it
 * matters: a write whose keys (workspace ids) are in a transaction not yet settled, or in a write queued
 * before it, waits for a later batch, so writes of one workspace commit in the order they were submitted.
 */

export interface GroupCommitStats {
  /** Writes submitted (calls to `submit`). */
  writes: number;
  /** Transactions run (attempted) to carry them. */
  transactions: number;
  /** Transactions that rolled back. */
  failed: number;
  /** Largest number of writes one transaction carried. */
  largestBatch: number;
}

export interface GroupCommitOptions<W = unknown> {
  /** false: one transaction per write (for comparison in the benchmark). Default true. */
  enabled?: boolean;
  /** Cap per transaction, so a burst becomes several bounded statements. Default 1000. */
  maxBatch?: number;
  /** Transactions allowed in flight at once. Default 1; more only takes effect with `keys`. */
  maxInFlight?: number;
  /** What a write touches: two writes sharing a key never run in concurrent transactions, and keep their order. */
  keys?: (write: W) => Iterable<string>;
}

/**
 * What a transaction's runner resolves with: nothing (every write committed), or an array aligned with the
 * batch where an entry is the error of a write the runner refused (left out of the commit), undefined
 * for a committed one.
 */
export type BatchOutcome = void | ReadonlyArray<unknown>;

/** Smallest batch worth its own concurrent transaction when a queue is split over free slots. */
const SPLIT_MIN = 64;

interface Pending<W> {
  write: W;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class GroupCommitter<W> {
  readonly stats: GroupCommitStats = { writes: 0, transactions: 0, failed: 0, largestBatch: 0 };
  private queue: Array<Pending<W>> = [];
  private readonly inFlight = new Set<Promise<void>>();
  /** Keys of the writes in flight, counted (one write may carry a key twice). */
  private readonly busy = new Map<string, number>();
  private scheduled = false;
  private readonly enabled: boolean;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly keys: ((write: W) => Iterable<string>) | undefined;

  /** `run` writes a whole batch in ONE transaction and resolves after COMMIT. */
  constructor(
    private readonly run: (batch: readonly W[]) => Promise<BatchOutcome>,
    opts: GroupCommitOptions<W> = {},
  ) {
    this.enabled = opts.enabled ?? true;
    this.maxBatch = Math.max(1, opts.maxBatch ?? 1000);
    this.maxInFlight = opts.keys ? Math.max(1, opts.maxInFlight ?? 1) : 1;
    // One transaction at a time needs no key bookkeeping: batches already commit in submission order.
    this.keys = this.maxInFlight > 1 ? opts.keys : undefined;
  }

  submit(write: W): Promise<void> {
    this.stats.writes++;
    if (!this.enabled) {
      return this.execute([write]).then((refused) => {
        const err = refused?.[0];
        if (err !== undefined) throw err instanceof Error ? err : new Error('write refused', { cause: err });
      });
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ write, resolve, reject });
      this.schedule();
    });
  }

  /** Resolves when every write submitted so far has settled (committed or failed). */
  async drain(): Promise<void> {
    while (this.queue.length > 0 || this.inFlight.size > 0 || this.scheduled) {
      if (this.inFlight.size > 0) await Promise.race(this.inFlight);
      else await new Promise<void>((r) => setImmediate(r));
    }
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight.size >= this.maxInFlight) return;
    this.scheduled = true;
    // setImmediate rather than a microtask: callers woken by the previous commit re-submit in
    // microtasks, and this lets all of them join the next batch instead of trickling in one by one.
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight.size < this.maxInFlight && this.queue.length > 0) {
      // Spread a big queue over the free slots (never below SPLIT_MIN writes a batch): with 2 in flight,
      // one batch commits while the next one's callers are being answered and the one after is built.
      // A small burst still rides one transaction.
      const parts = Math.max(1, Math.min(this.maxInFlight - this.inFlight.size, Math.floor(this.queue.length / SPLIT_MIN)));
      const batch = this.take(Math.min(this.maxBatch, Math.ceil(this.queue.length / parts)));
      if (batch.length === 0) return; // everything queued waits for a key in flight
      this.launch(batch);
    }
  }

  /** Up to `n` writes from the queue, oldest first, skipping (and keeping the order of) blocked keys. */
  private take(n: number): Array<Pending<W>> {
    if (!this.keys) return this.queue.splice(0, n);
    const taken: Array<Pending<W>> = [];
    const kept: Array<Pending<W>> = [];
    const blocked = new Set<string>();
    let i = 0;
    for (; i < this.queue.length && taken.length < n; i++) {
      const p = this.queue[i]!;
      const keys = [...this.keys(p.write)];
      if (!keys.some((k) => this.busy.has(k) || blocked.has(k))) taken.push(p);
      else {
        kept.push(p);
        for (const k of keys) blocked.add(k);
      }
    }
    this.queue = i === this.queue.length ? kept : kept.concat(this.queue.slice(i));
    for (const p of taken) for (const k of this.keys(p.write)) this.busy.set(k, (this.busy.get(k) ?? 0) + 1);
    return taken;
  }

  private launch(batch: Array<Pending<W>>): void {
    const done = this.execute(batch.map((p) => p.write)).then(
      (refused) => {
        batch.forEach((p, i) => {
          const err = refused?.[i];
          if (err === undefined) p.resolve();
          else p.reject(err);
        });
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err);
      },
    );
    this.inFlight.add(done);
    void done.finally(() => {
      this.inFlight.delete(done);
      if (this.keys) {
        for (const p of batch) {
          for (const k of this.keys(p.write)) {
            const left = (this.busy.get(k) ?? 1) - 1;
            if (left === 0) this.busy.delete(k);
            else this.busy.set(k, left);
          }
        }
      }
      if (this.queue.length > 0) this.schedule();
    });
  }

  private async execute(batch: readonly W[]): Promise<BatchOutcome> {
    this.stats.transactions++;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length);
    try {
      return await this.run(batch);
    } catch (err) {
      this.stats.failed++;
      throw err;
    }
  }
}
