/**
 * File-write bursts that survive their owner's death. The bus holds a burst in memory until it goes quiet;
 * this puts each burst on record (store.bursts) before its first write is acknowledged, gives its restart
 * the recorded label as requester, and removes the record once that restart has run. A burst whose owner
 * died in between is found by the next owner (`recover`): restarted under its label, unless the log already
 * has a request under that label (the restart was recorded, the clean-up was not) — so once either way.
 *
 * @example
 * const bursts = new DurableBursts({ store, prefix: `files:${replica}.${shard}.${epoch}`, owns, onError });
 * const bus = createBus({ sink: bursts.sink(supervisor) });
 * await bursts.opened('ws-1'); bus.fileWritten({ workspaceId: 'ws-1', path: 'a.ts', at: Date.now() });
 * await bursts.recover(supervisor); // on gaining the workspaces
 */
import type { BusSink } from '../bus/types.ts';
import type { WorkspaceStore } from '../store/store.ts';

export interface DurableBurstsOptions {
  store: WorkspaceStore;
  /** Labels are `<prefix>.<n>`: unique to this owner (replica, shard and epoch in a cluster). */
  prefix: string;
  /** Which recorded bursts are this owner's to recover. */
  owns: (workspaceId: string) => boolean;
  onError: (err: unknown, context: { id?: string; what: string }) => void;
}

export class DurableBursts {
  /** The label of each workspace's open burst. */
  private readonly open = new Map<string, string>();
  private readonly opening = new Map<string, Promise<void>>();
  private n = 0;

  constructor(private readonly opts: DurableBurstsOptions) {}

  /** Before a write to `id` is acknowledged: its burst is on record (one write to the store per burst). */
  opened(id: string): Promise<void> {
    if (this.open.has(id)) return Promise.resolve();
    let p = this.opening.get(id);
    if (!p) {
      p = this.opts.store.bursts
        .open(id, `${this.opts.prefix}.${++this.n}`)
        .then((label) => void this.open.set(id, label))
        .finally(() => this.opening.delete(id));
      this.opening.set(id, p);
    }
    return p;
  }

  /** `sink` for the bus: a burst's restart carries its recorded label, and clears the record once run. */
  sink(s: BusSink): BusSink {
    return {
      accepts: (id) => s.accepts(id),
      liveness: (id, alive, detail) => s.liveness(id, alive, detail),
      ...(s.claim ? { claim: (id: string, ownerId: string, buildId: string) => s.claim!(id, ownerId, buildId) } : {}),
      ...(s.activity ? { activity: (id: string, source: string) => s.activity!(id, source) } : {}),
      restart: (id, req) => {
        const label = this.open.get(id);
        if (req.source !== 'file-write' || label === undefined) return s.restart(id, req);
        this.open.delete(id); // the next write opens a new burst, under a new label
        return this.settle(id, label, Promise.resolve(s.restart(id, { ...req, requester: label })));
      },
    };
  }

  /**
   * The bursts on record for workspaces this owner has just gained: each restarted once under its label,
   * unless its restart is in the log already.
   */
  async recover(s: Pick<BusSink, 'accepts' | 'restart'>): Promise<number> {
    let restarted = 0;
    for (const b of await this.opts.store.bursts.list()) {
      if (!this.opts.owns(b.workspaceId) || this.open.has(b.workspaceId)) continue;
      const recorded = await this.opts.store.firstRequest(b.workspaceId, `${b.label}#`);
      if (recorded !== null || !s.accepts(b.workspaceId)) {
        await this.opts.store.bursts.close(b.workspaceId, b.label);
        continue;
      }
      restarted++;
      void this.settle(b.workspaceId, b.label, Promise.resolve(s.restart(b.workspaceId, { source: 'file-write', reason: 'files written before the workspace changed owner', requester: b.label })));
    }
    return restarted;
  }

  private settle(id: string, label: string, ran: Promise<unknown>): Promise<unknown> {
    const clear = () =>
      this.opts.store.bursts.close(id, label).catch((err: unknown) => this.opts.onError(err, { id, what: 'clearing a restarted burst from the store failed' }));
    void ran.then(clear, clear);
    return ran;
  }
}
