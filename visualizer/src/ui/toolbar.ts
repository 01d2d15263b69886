/**
 * The page header (connection state, role, resync notice, per-state counts) and the list filters
 * (search by id, state, owner, pool). Everything is text; colour only repeats it. While more workspaces
 * exist than are loaded, the counts and the filters say they are of the loaded rows.
 *
 * @example
 * const bar = new StatusBar(header);
 * bar.render(model);
 * const filters = new Filters(pane, (patch) => { model.list.setFilter(patch); renderList(); });
 */
import { LIFECYCLE_STATES } from '../../../src/client/index.ts';
import type { ListFilter } from '../model/list.ts';
import { formatClock } from '../model/format.ts';
import type { VisualizerModel } from '../model/model.ts';
import { h, STATE_SYMBOL } from './dom.ts';

const CONNECTION_TEXT = {
  idle: 'not connected',
  connecting: 'connecting…',
  open: 'connected',
  reconnecting: 'reconnecting…',
  closed: 'disconnected',
} as const;

export class StatusBar {
  private readonly connection = h('span', { class: 'conn', role: 'status', 'data-testid': 'connection' });
  private readonly role = h('span', { class: 'role', 'data-testid': 'role' });
  private readonly resync = h('span', { class: 'resync', 'data-testid': 'resync' });
  private readonly counts = h('span', { class: 'counts', 'data-testid': 'counts' });

  constructor(parent: HTMLElement) {
    parent.append(h('h1', {}, 'wsup'), this.connection, this.role, this.resync, this.counts);
  }

  render(model: VisualizerModel): void {
    const c = model.connection;
    this.connection.dataset.state = c.state;
    this.connection.textContent = `Connection: ${CONNECTION_TEXT[c.state]}${model.resyncing ? ' (resyncing)' : ''}${c.detail && c.state !== 'open' ? ` — ${c.detail}` : ''}`;
    this.role.textContent = `Role: ${model.role ?? 'unknown'}${model.canCommand ? '' : ' (read only)'}`;
    const r = model.lastResync;
    this.resync.textContent = r ? `Resynced at ${formatClock(r.at)} after ${r.reason === 'lagged' ? `lag (${r.dropped} events dropped)` : 'reconnect'}` : '';
    this.renderCounts(model);
  }

  renderCounts(model: VisualizerModel): void {
    const list = model.list;
    const counts = list.stateCounts();
    const head = list.complete ? `${list.size} workspaces:` : `${list.size} loaded · more — in loaded rows:`;
    this.counts.textContent = `${head} ${LIFECYCLE_STATES.map((s) => `${STATE_SYMBOL[s]} ${s} ${counts[s]}`).join(' · ')}`;
  }
}

export class Filters {
  private readonly owner: HTMLSelectElement;
  private readonly pool: HTMLSelectElement;
  private readonly shown = h('span', { class: 'shown', 'aria-live': 'polite' });
  private optionsKey = '';

  constructor(parent: HTMLElement, onChange: (patch: Partial<ListFilter>) => void) {
    const search = h('input', { type: 'search', id: 'f-search', placeholder: 'workspace id', autocomplete: 'off' });
    search.addEventListener('input', () => onChange({ search: search.value }));
    const state = h('select', { id: 'f-state' }, h('option', { value: 'all' }, 'all states'), ...LIFECYCLE_STATES.map((s) => h('option', { value: s }, s)));
    state.addEventListener('change', () => onChange({ state: state.value as ListFilter['state'] }));
    this.owner = h('select', { id: 'f-owner' }, h('option', { value: 'all' }, 'all owners'));
    this.owner.addEventListener('change', () => onChange({ owner: this.owner.value }));
    this.pool = h('select', { id: 'f-pool' }, h('option', { value: 'all' }, 'all pools'));
    this.pool.addEventListener('change', () => onChange({ pool: this.pool.value }));
    parent.append(
      h(
        'div',
        { class: 'filters', role: 'search' },
        h('label', { for: 'f-search' }, 'Search'),
        search,
        h('label', { for: 'f-state' }, 'State'),
        state,
        h('label', { for: 'f-owner' }, 'Owner'),
        this.owner,
        h('label', { for: 'f-pool' }, 'Pool'),
        this.pool,
        this.shown,
      ),
    );
  }

  render(model: VisualizerModel): void {
    const { owners, pools } = model.list.options();
    const key = `${owners.join('\n')}\u0000${pools.join('\n')}`;
    if (key !== this.optionsKey) {
      this.optionsKey = key;
      fillOptions(this.owner, 'all owners', owners);
      fillOptions(this.pool, 'all pools', pools);
    }
    this.shown.textContent = `showing ${model.list.visible().length} of ${model.list.size}${model.list.complete ? '' : ' loaded'}`;
  }
}

function fillOptions(select: HTMLSelectElement, allText: string, values: string[]): void {
  const current = select.value;
  select.replaceChildren(h('option', { value: 'all' }, allText), ...values.map((v) => h('option', { value: v }, v)));
  select.value = values.includes(current) ? current : 'all';
}
