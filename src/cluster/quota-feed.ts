/**
 * Cluster-wide quotas: each replica's one QuotaLedger counts its own shards' workspaces (its supervisors
 * track them) and, through this feed, every other replica's: their transitions arrive by the event
 * fan-out, and what each workspace counts against (owner, template or pool) is read from the store once
 * and again at each of its starts. At start, and after every listener blink (notifications may have been
 * lost), the others' holders are read again from the store.
 *
 * Race window: a start on another replica is counted here once its transition has arrived (NOTIFY, a few
 * ms) and, for a workspace not seen before, its keys were read; two starts on two replicas inside that
 * window can both take the last slot. One replica never over-admits: its own check and send are one step.
 *
 * @example
 * const feed = new QuotaFeed({ store, ledger, events: replica.events, resyncs: replica.resyncs, local: (id) => shards.has(replica.shardOf(id)) });
 * await feed.start();
 */
import type { Observable, Subscription } from 'rxjs';
import type { Desired, LifecycleState } from '../../machines/workspace.types.ts';
import type { WorkspaceStore } from '../store/store.ts';
import { holdsSlot, quotaKeys, type QuotaKeys, type QuotaLedger } from '../supervisor/quota.ts';
import type { SupervisorEvent } from '../supervisor/types.ts';

export interface QuotaFeedOptions {
  store: WorkspaceStore;
  ledger: QuotaLedger;
  events: Observable<SupervisorEvent>;
  resyncs: Observable<void>;
  /** Whether `id` is run by this replica (its supervisors track it themselves). */
  local: (id: string) => boolean;
  onError?: (err: unknown, what: string) => void;
}

interface KeyRow {
  id: string;
  spec: Record<string, unknown>;
  owner: string;
  prebuild: boolean;
  state: LifecycleState;
  desired: Desired;
}

export class QuotaFeed {
  private readonly keys = new Map<string, QuotaKeys>();
  /** The latest holding state seen per workspace, so an answer read late never undoes a newer one. */
  private readonly latest = new Map<string, { holding: boolean; n: number }>();
  private subs: Subscription[] = [];
  private n = 0;

  constructor(private readonly opts: QuotaFeedOptions) {}

  async start(): Promise<void> {
    this.subs.push(this.opts.events.subscribe((ev) => this.onEvent(ev)));
    this.subs.push(this.opts.resyncs.subscribe(() => void this.reload()));
    await this.reload();
  }

  close(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
  }

  /** Every workspace another replica runs that holds a slot, from the store. */
  private async reload(): Promise<void> {
    try {
      const mark = this.n;
      const { rows } = await this.opts.store.engine.query<KeyRow>(
        `SELECT id, spec, owner, prebuild, state, desired FROM workspaces WHERE destroyed_at IS NULL AND state IN ('starting', 'running', 'stopping')`,
      );
      this.opts.ledger.clearRemote();
      for (const row of rows) {
        const keys = keysOf(row);
        this.keys.set(row.id, keys);
        if (this.opts.local(row.id)) continue;
        const seen = this.latest.get(row.id);
        // A transition that arrived while the read ran is newer than the row.
        const holding = seen && seen.n > mark ? seen.holding : holdsSlot(row.state, row.desired);
        this.opts.ledger.trackRemote(row.id, { ...keys, holding });
      }
      for (const [id, seen] of this.latest) if (seen.n > mark && seen.holding && !this.opts.local(id)) this.apply(id, seen.n);
    } catch (err) {
      this.opts.onError?.(err, 'reading the cluster quota holders failed');
    }
  }

  private onEvent(ev: SupervisorEvent): void {
    if (ev.type !== 'transition' || this.opts.local(ev.id)) return;
    // A restart's stop half (it carries its cycle) keeps its slot; a plain stop gives it up.
    const holding = ev.to === 'starting' || ev.to === 'running' || (ev.to === 'stopping' && ev.cycle != null);
    const n = ++this.n;
    this.latest.set(ev.id, { holding, n });
    if (ev.to === 'destroyed') {
      this.keys.delete(ev.id);
      this.latest.delete(ev.id);
      this.opts.ledger.trackRemote(ev.id, { owner: null, template: null, holding: false });
      return;
    }
    if (this.keys.has(ev.id)) this.apply(ev.id, n);
    // A start may run on a changed spec or owner (a claim, an update): read the keys again.
    if (ev.to === 'starting' || !this.keys.has(ev.id)) void this.readKeys(ev.id, n);
  }

  private apply(id: string, n: number): void {
    const seen = this.latest.get(id);
    const keys = this.keys.get(id);
    if (!seen || !keys || seen.n !== n || this.opts.local(id)) return;
    this.opts.ledger.trackRemote(id, { ...keys, holding: seen.holding });
  }

  private async readKeys(id: string, n: number): Promise<void> {
    try {
      const { rows } = await this.opts.store.engine.query<KeyRow>('SELECT id, spec, owner, prebuild, state, desired FROM workspaces WHERE id = $1', [id]);
      const row = rows[0];
      if (!row) return;
      this.keys.set(id, keysOf(row));
      this.apply(id, this.latest.get(id)?.n ?? n);
    } catch (err) {
      this.opts.onError?.(err, `reading the quota keys of ${id} failed`);
    }
  }
}

function keysOf(row: KeyRow): QuotaKeys {
  return quotaKeys(row.spec, row.prebuild ? row.owner : undefined);
}
