/**
 * The prebuild pools panel: one row per pool with desired/ready/starting/failing, its health in words
 * and the backoff countdown, and the last error on a line of its own under it. Hidden while the server has no pools (or no `pool.list`).
 *
 * @example
 * const pools = new PoolsView(listPane);
 * model.onChange((c) => c.pools && pools.render(model.pools, clock.now()));
 */
import type { PoolsPanel } from '../model/pools.ts';
import { formatClock } from '../model/format.ts';
import { h } from './dom.ts';

const HEALTH_SYMBOL = { full: '●', filling: '▲', short: '○', 'backing off': '✕' } as const;

export class PoolsView {
  readonly el: HTMLElement;
  private readonly body = h('tbody');
  private readonly note = h('p', { class: 'muted pools-note' });
  private readonly backoffCells = new Map<string, HTMLTableCellElement>();

  constructor(parent: HTMLElement) {
    this.el = h(
      'section',
      { class: 'pools', 'aria-labelledby': 'pools-title', 'data-testid': 'pools', hidden: true },
      h('h2', { id: 'pools-title' }, 'Prebuild pools'),
      h(
        'table',
        { class: 'pools-table' },
        h('thead', {}, h('tr', {}, ...['Pool', 'Desired', 'Ready', 'Starting', 'Failing', 'Health', 'Backoff'].map((c) => h('th', { scope: 'col' }, c)))),
        this.body,
      ),
      this.note,
    );
    parent.append(this.el);
  }

  render(pools: PoolsPanel, now: number): void {
    this.el.hidden = !pools.visible;
    if (!pools.visible) return;
    this.backoffCells.clear();
    this.body.replaceChildren(
      ...pools.rows(now).flatMap((r) => {
        const backoff = h('td', { 'data-col': 'backoff' }, r.backoff ?? '—');
        this.backoffCells.set(r.pool, backoff);
        const error = r.lastError ? h('tr', { class: 'pool-error', 'data-pool-error': r.pool }, h('td', { colspan: 7 }, `last error: ${r.lastError}`)) : null;
        const row = h(
          'tr',
          { 'data-pool': r.pool, 'data-health': r.health },
          h('th', { scope: 'row' }, r.pool),
          h('td', { 'data-col': 'desired' }, r.desired),
          h('td', { 'data-col': 'ready' }, r.ready),
          h('td', { 'data-col': 'starting' }, r.starting),
          h('td', { 'data-col': 'failing' }, r.failing),
          h('td', { 'data-col': 'health', class: `health-${r.health.replace(' ', '-')}` }, h('span', { 'aria-hidden': 'true' }, HEALTH_SYMBOL[r.health]), ` ${r.health}`),
          backoff,
        );
        return error ? [row, error] : [row];
      }),
    );
    this.note.textContent = `${pools.fetchedAt !== null ? `as of ${formatClock(pools.fetchedAt)}` : ''}${pools.error ? ` — refresh failed: ${pools.error}` : ''}`;
  }

  /** Update only the backoff countdowns (called a few times a second). */
  tick(pools: PoolsPanel, now: number): void {
    if (!pools.visible) return;
    for (const r of pools.rows(now)) {
      const cell = this.backoffCells.get(r.pool);
      const text = r.backoff ?? '—';
      if (cell && cell.textContent !== text) cell.textContent = text;
    }
  }
}
