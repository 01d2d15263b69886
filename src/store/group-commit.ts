/**
 * Group commit: many callers, one transaction. Writes submitted while a batch is being collected or a
 * transaction is in flight join the next batch; every caller's promise settles with the transaction that
 * carried its write, so "resolved" always means "committed" (ack ⇒ durable) without paying one round trip
 * per transition.
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

export interface GroupCommitOptions {
  /** false: one transaction per write (for comparison in the benchmark). Default true. */
  enabled?: boolean;
  /** Cap per transaction, so a burst becomes several bounded statements. Default 1000. */
  maxBatch?: number;
}

interface Pending<W> {
  write: W;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class GroupCommitter<W> {
  readonly stats: GroupCommitStats = { writes: 0, transactions: 0, failed: 0, largestBatch: 0 };
  private queue: Array<Pending<W>> = [];
  private inFlight: Promise<void> | null = null;
  private scheduled = false;
  private readonly enabled: boolean;
  private readonly maxBatch: number;

  /** `run` writes a whole batch in ONE transaction and resolves after COMMIT. */
  constructor(
    private readonly run: (batch: readonly W[]) => Promise<void>,
    opts: GroupCommitOptions = {},
  ) {
    this.enabled = opts.enabled ?? true;
    this.maxBatch = Math.max(1, opts.maxBatch ?? 1000);
  }

  submit(write: W): Promise<void> {
    this.stats.writes++;
    if (!this.enabled) return this.execute([write]);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ write, resolve, reject });
      this.schedule();
    });
  }

  /** Resolves when every write submitted so far has settled (committed or failed). */
  async drain(): Promise<void> {
    while (this.queue.length > 0 || this.inFlight || this.scheduled) {
      if (this.inFlight) await this.inFlight;
      else await new Promise<void>((r) => setImmediate(r));
    }
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight) return;
    this.scheduled = true;
    // setImmediate rather than a microtask: callers woken by the previous commit re-submit in
    // microtasks, and this lets all of them join the next batch instead of trickling in one by one.
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.inFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.inFlight = this.execute(batch.map((p) => p.write)).then(
      () => {
        for (const p of batch) p.resolve();
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err);
      },
    );
    void this.inFlight.finally(() => {
      this.inFlight = null;
      if (this.queue.length > 0) this.schedule();
    });
  }

  private async execute(batch: readonly W[]): Promise<void> {
    this.stats.transactions++;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length);
    try {
      await this.run(batch);
    } catch (err) {
      this.stats.failed++;
      throw err;
    }
  }
}
