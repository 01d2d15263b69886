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
 * The list holds a loaded range of ids, not necessarily every workspace: pages of `workspace.list` (ids in
 * ascending order) extend it, and `through` is the last id loaded until a page says there is no more
 * (`complete`). A workspace outside the range becomes a row only when a page carries it, so events for the
 * rest of a large fleet cost nothing here. A reload (after a reconnect) fetches the range again page by
 * page and then drops the rows no page and no event mentioned meanwhile: workspaces that are gone.
 *
 * @example
 * const list = new WorkspaceList();
 * list.replaceAll(views);                // every workspace
 * list.applyPage(page.items, page.nextCursor); // or one more page of a longer list
 * list.setFilter({ state: 'failed' });
 * list.visible(); // ids of failed workspaces among the loaded rows, sorted
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
  /** The reload that last saw this row (a page carried it or an event changed it); rows a reload missed are gone. */
  seen: number;
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
  private isComplete = true;
  private last: string | null = null;
  private generation = 0;

  /** Loaded rows. */
  get size(): number {
    return this.rows.size;
  }

  /** Whether the rows are every workspace (no page is left to load). Until a page says otherwise, they are. */
  get complete(): boolean {
    return this.isComplete;
  }

  /** The last id loaded while more exist (the cursor of the next page); null when complete. */
  get through(): string | null {
    return this.isComplete ? null : this.last;
  }

  /** Whether a workspace first heard of now becomes a row: every id when complete, else ids up to `through`. */
  inRange(id: string): boolean {
    return this.isComplete || (this.last !== null && id <= this.last);
  }

  /**
   * The id a reload must reach to cover what is loaded: `through`, or the largest row id when complete (an
   * event may have added rows past the last page). Null: nothing is loaded, so one page will do.
   */
  reloadTarget(): string | null {
    if (!this.isComplete) return this.last;
    let max: string | null = null;
    for (const id of this.rows.keys()) if (max === null || id > max) max = id;
    return max;
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

  /**
   * Apply views of workspaces (a capped resync, `workspace.get` answers): they update loaded rows, and add
   * rows only within the loaded range.
   */
  upsertViews(views: readonly WorkspaceView[], at = 0): void {
    for (const v of views) if (this.rows.has(v.id) || this.inRange(v.id)) this.put(v, at);
  }

  /** Every workspace: replace the rows with these (a list that fit one page, or a complete resync). */
  replaceAll(views: readonly WorkspaceView[], at = 0): void {
    this.beginReload();
    this.applyPage(views, null, at);
    this.endReload(null);
  }

  /** Start loading the range again from its first page: rows no page or event mentions until `endReload` are dropped then. */
  beginReload(): void {
    this.generation++;
  }

  /**
   * One page of `workspace.list`, in order: its rows are added or updated, and the range reaches its end
   * (`nextCursor` null: the list is complete). A page never shrinks the range.
   */
  applyPage(views: readonly WorkspaceView[], nextCursor: string | null, at = 0): void {
    for (const v of views) this.put(v, at);
    if (nextCursor === null) this.isComplete = true;
    else if (!this.isComplete && (this.last === null || nextCursor > this.last)) this.last = nextCursor;
  }

  /**
   * The reload's last page has been applied (`nextCursor` is its cursor): the range ends there, and rows the
   * reload did not see are dropped (deleted workspaces; rows past a range that is no longer complete).
   */
  endReload(nextCursor: string | null): void {
    this.isComplete = nextCursor === null;
    this.last = nextCursor;
    for (const [id, row] of this.rows) {
      if (row.seen === this.generation) continue;
      this.move(row.state, null);
      this.rows.delete(id);
      this.cache = null;
      this.optionsCache = null;
    }
  }

  private put(v: WorkspaceView, at: number): void {
    const f = this.filter;
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
      seen: this.generation,
    });
  }

  /**
   * Apply one event. Returns true when the row changed; a row first seen here is `partial` (no owner or pool
   * yet) until its view arrives. A workspace outside the loaded range is left for the page that reaches it.
   */
  applyEvent(ev: WorkspaceEvent): boolean {
    const prev = this.rows.get(ev.id);
    if (prev) prev.seen = this.generation; // it exists, whatever a reload in progress has fetched so far
    if (ev.type === 'transition') {
      if (!prev && !this.inRange(ev.id)) return false;
      if (prev && prev.state === ev.to) return false;
      this.move(prev?.state ?? null, ev.to);
      const row: Row = prev ?? { id: ev.id, state: ev.to, owner: null, pool: null, cycle: 0, changedAt: ev.at, partial: true, next: null, dormant: false, policed: false, nextStale: false, seen: this.generation };
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
      if (!prev) return false;
      prev.dormant = true;
      prev.next = null;
      prev.nextStale = true; // a destroy may follow, at a deadline only the view has
      return true;
    }
    if (ev.type === 'cycle.started' && prev && prev.cycle < ev.cycle.n) {
      prev.cycle = ev.cycle.n;
      return true;
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
