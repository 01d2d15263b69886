/**
 * The workspace list read model: one row per workspace, kept current from `transition` events and
 * workspace views, with filters (state, owner, pool, id search) and per-state counts. Pure and
 * allocation-light, because it holds 10,000 rows and absorbs 1,000 transitions a second: a transition only
 * re-filters when a state filter is active, otherwise the visible order (by id) cannot change.
 *
 * Each row keeps the view's next policy action; its "stops 12m" text is computed when the row is drawn,
 * so no row has a timer. A transition makes a row's deadlines unknown (entering running or idle arms new
 * ones): the row's next action is dropped when it no longer applies, and the row is marked for a fresh view.
 *
 * @example
 * const list = new WorkspaceList();
 * list.upsertViews(views, true);
 * list.setFilter({ state: 'failed' });
 * list.visible(); // ids of failed workspaces, sorted
 */
import { LIFECYCLE_STATES, type LifecycleState, type NextAction, type WorkspaceEvent, type WorkspaceView } from '../../../src/client/index.ts';
import { hasPolicy, nextAppliesTo, shortNext } from './policy.ts';

export interface Row {
  id: string;
  state: LifecycleState;
  /** A prebuild's owner and pool from the view (servers with the store label them), else `spec.owner` / `spec.pool`. */
  owner: string | null;
  pool: string | null;
  cycle: number;
  /** Last time this row changed (server time of the event, or when a view was applied). */
  changedAt: number;
  /** True until a full view has been applied (row learned from an event only). */
  partial: boolean;
  /** The next policy action from the latest view (null: none, or not known since a transition). */
  next: NextAction | null;
  dormant: boolean;
  /** Some rule of its policy can act on its own, so a transition changes its deadlines. */
  policed: boolean;
  /** A transition made `next` unknown; a fresh view tells it again. */
  nextStale: boolean;
}

/** The list's "next" column: `stops 12m`, `dormant`, `…` while a fresh view is awaited, or empty. */
export function nextLabel(row: Row, now: number): string {
  if (row.next) return shortNext(row.next, now);
  if (row.nextStale) return '…';
  return row.dormant ? 'dormant' : '';
}

export interface ListFilter {
  state: LifecycleState | 'all';
  /** An owner, or `'all'`. */
  owner: string;
  /** A pool, or `'all'`. */
  pool: string;
  /** Case-insensitive substring of the id. */
  search: string;
}

export const ALL_FILTER: ListFilter = { state: 'all', owner: 'all', pool: 'all', search: '' };

export type StateCounts = Record<LifecycleState, number>;

const specText = (spec: Record<string, unknown>, key: string): string | null => {
  const v = spec[key];
  return typeof v === 'string' && v.length > 0 ? v : null;
};

export class WorkspaceList {
  private readonly rows = new Map<string, Row>();
  private filter: ListFilter = ALL_FILTER;
  private cache: string[] | null = null;
  private optionsCache: { owners: string[]; pools: string[] } | null = null;
  private readonly counts: StateCounts = Object.fromEntries(LIFECYCLE_STATES.map((s) => [s, 0])) as StateCounts;

  get size(): number {
    return this.rows.size;
  }

  get(id: string): Row | undefined {
    return this.rows.get(id);
  }

  stateCounts(): Readonly<StateCounts> {
    return this.counts;
  }

  currentFilter(): Readonly<ListFilter> {
    return this.filter;
  }

  /** Apply views (initial list, resync, `workspace.get`). `complete`: the views are every workspace, so drop the rest. */
  upsertViews(views: readonly WorkspaceView[], complete: boolean, at = 0): void {
    const seen = complete ? new Set<string>() : null;
    const f = this.filter;
    for (const v of views) {
      seen?.add(v.id);
      const prev = this.rows.get(v.id);
      const owner = v.owner ?? specText(v.spec, 'owner');
      const pool = v.pool ?? specText(v.spec, 'pool');
      this.move(prev?.state ?? null, v.state);
      // One view rarely changes who is visible: only a new row, or a change to a field a filter is on.
      if (!prev || (f.state !== 'all' && prev.state !== v.state) || (f.owner !== 'all' && prev.owner !== owner) || (f.pool !== 'all' && prev.pool !== pool)) this.cache = null;
      if (!prev || prev.owner !== owner || prev.pool !== pool) this.optionsCache = null;
      this.rows.set(v.id, {
        id: v.id,
        state: v.state,
        owner,
        pool,
        cycle: v.cycle,
        changedAt: prev && prev.state === v.state ? prev.changedAt : at,
        partial: false,
        next: v.next ?? null,
        dormant: v.dormant === true,
        policed: hasPolicy(v.policy),
        nextStale: false,
      });
    }
    if (seen) {
      for (const [id, row] of this.rows) {
        if (seen.has(id)) continue;
        this.move(row.state, null);
        this.rows.delete(id);
        this.cache = null;
        this.optionsCache = null;
      }
    }
  }

  /**
   * Apply one event. Returns true when the row changed; a row first seen here is `partial` (no owner or pool
   * yet) until its view arrives.
   */
  applyEvent(ev: WorkspaceEvent): boolean {
    if (ev.type === 'transition') {
      const prev = this.rows.get(ev.id);
      if (prev && prev.state === ev.to) return false;
      this.move(prev?.state ?? null, ev.to);
      const row: Row = prev ?? { id: ev.id, state: ev.to, owner: null, pool: null, cycle: 0, changedAt: ev.at, partial: true, next: null, dormant: false, policed: false, nextStale: false };
      row.state = ev.to;
      row.changedAt = ev.at;
      if (row.next && !nextAppliesTo(row.next, ev.to)) row.next = null;
      if (row.policed && (ev.to === 'running' || ev.to === 'idle')) row.nextStale = true;
      if (ev.cycle) row.cycle = Math.max(row.cycle, ev.cycle.n);
      if (!prev) {
        this.rows.set(ev.id, row);
        this.cache = null;
      } else if (this.filter.state !== 'all') this.cache = null;
      return true;
    }
    if (ev.type === 'policy' && ev.action === 'dormant') {
      const row = this.rows.get(ev.id);
      if (!row) return false;
      row.dormant = true;
      row.next = null;
      row.nextStale = true; // a destroy may follow, at a deadline only the view has
      return true;
    }
    if (ev.type === 'cycle.started') {
      const row = this.rows.get(ev.id);
      if (row && row.cycle < ev.cycle.n) {
        row.cycle = ev.cycle.n;
        return true;
      }
    }
    return false;
  }

  /** Ids learned from events only, whose owner and pool are still unknown. */
  partialIds(limit: number): string[] {
    const out: string[] = [];
    for (const row of this.rows.values()) {
      if (out.length >= limit) break;
      if (row.partial) out.push(row.id);
    }
    return out;
  }

  /** Ids whose next policy action a transition made unknown, for a fresh view at a bounded rate. */
  staleNextIds(limit: number): string[] {
    const out: string[] = [];
    for (const row of this.rows.values()) {
      if (out.length >= limit) break;
      if (row.nextStale) out.push(row.id);
    }
    return out;
  }

  /** Stop asking for a row's view (it could not be fetched, e.g. the workspace is gone). */
  markComplete(id: string): void {
    const row = this.rows.get(id);
    if (row) {
      row.partial = false;
      row.nextStale = false;
    }
  }

  setFilter(patch: Partial<ListFilter>): void {
    const next = { ...this.filter, ...patch, search: (patch.search ?? this.filter.search).trim().toLowerCase() };
    if (JSON.stringify(next) === JSON.stringify(this.filter)) return;
    this.filter = next;
    this.cache = null;
  }

  /** Visible ids in id order, recomputed only when membership can have changed. */
  visible(): readonly string[] {
    if (this.cache) return this.cache;
    const f = this.filter;
    const out: string[] = [];
    for (const row of this.rows.values()) {
      if (f.state !== 'all' && row.state !== f.state) continue;
      if (f.owner !== 'all' && row.owner !== f.owner) continue;
      if (f.pool !== 'all' && row.pool !== f.pool) continue;
      if (f.search && !row.id.includes(f.search)) continue;
      out.push(row.id);
    }
    out.sort();
    this.cache = out;
    return out;
  }

  /** Distinct owners and pools, for the filter menus. */
  options(): { owners: string[]; pools: string[] } {
    if (this.optionsCache) return this.optionsCache;
    const owners = new Set<string>();
    const pools = new Set<string>();
    for (const r of this.rows.values()) {
      if (r.owner) owners.add(r.owner);
      if (r.pool) pools.add(r.pool);
    }
    this.optionsCache = { owners: [...owners].sort(), pools: [...pools].sort() };
    return this.optionsCache;
  }

  private move(from: LifecycleState | null, to: LifecycleState | null): void {
    if (from) this.counts[from] -= 1;
    if (to) this.counts[to] += 1;
  }
}
