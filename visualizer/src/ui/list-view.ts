/**
 * The virtualized workspace list: a keyboard-navigable listbox that keeps only the rows in view (plus a
 * few) in the DOM, so 10,000 workspaces cost ~40 elements. Rows are reused as the list scrolls. The
 * "next" column ("stops 12m") is computed for the rows in view when they are drawn; `tick` redraws those.
 * Scrolling down (or moving down with the keys) to within `NEAR_END_ROWS` of the last row asks for more
 * (`onNearEnd`); the `MoreBar` under the list says how many are loaded and loads more on request too.
 *
 * Keys: ↑/↓ move, PageUp/PageDown move a page, Home/End jump, Enter or Space opens the workspace.
 *
 * @example
 * const list = new ListView(container, { onOpen: (id) => controller.open(id), onNearEnd: () => controller.more(), now: () => Date.now() });
 * list.update(model.list.visible(), (id) => model.list.get(id), model.detail?.id ?? null);
 */
import { nextLabel, type Row } from '../model/list.ts';
import type { VisualizerModel } from '../model/model.ts';
import { badge, h } from './dom.ts';

export const ROW_HEIGHT = 30;
const OVERSCAN = 8;
/** Rows from the end of the loaded list within which scrolling down asks for the next page. */
export const NEAR_END_ROWS = 100;

export interface ListViewOptions {
  onOpen(id: string): void;
  /** The user scrolled or moved down to near the last row (called again on every such scroll). */
  onNearEnd?(): void;
  /** The clock the "next" column counts down with. */
  now(): number;
}

export class ListView {
  readonly el: HTMLDivElement;
  private readonly spacer: HTMLDivElement;
  private readonly pool: HTMLDivElement[] = [];
  private ids: readonly string[] = [];
  private rowOf: (id: string) => Row | undefined = () => undefined;
  private selected: string | null = null;
  private active = 0;
  private lastTop = 0;

  constructor(parent: HTMLElement, private readonly opts: ListViewOptions) {
    this.spacer = h('div', { class: 'spacer' });
    this.el = h('div', { class: 'list', role: 'listbox', tabindex: 0, 'aria-label': 'Workspaces', id: 'ws-list' }, this.spacer);
    this.el.addEventListener('scroll', () => this.onScroll());
    this.el.addEventListener('keydown', (e) => this.onKey(e));
    this.el.addEventListener('click', (e) => {
      const row = (e.target as Element).closest<HTMLElement>('[data-index]');
      if (!row) return;
      this.active = Number(row.dataset.index);
      this.open();
    });
    parent.append(this.el);
  }

  /** New data; cheap to call every frame (only the rows in view are touched). */
  update(ids: readonly string[], rowOf: (id: string) => Row | undefined, selected: string | null): void {
    if (ids !== this.ids) {
      // Keep the active row on the same workspace when the filtered list changes under it.
      const activeId = this.ids[this.active];
      this.ids = ids;
      const at = activeId === undefined ? -1 : ids.indexOf(activeId);
      this.active = at >= 0 ? at : Math.min(this.active, Math.max(0, ids.length - 1));
      this.spacer.style.height = `${ids.length * ROW_HEIGHT}px`;
    }
    this.rowOf = rowOf;
    this.selected = selected;
    this.render();
  }

  /** Redraw the rows in view whose "next" text moved on (a row whose text is unchanged is not touched). */
  tick(): void {
    this.render();
  }

  /** Only a scroll down asks for more: a list that shrank under a filter scrolls up by itself. */
  private onScroll(): void {
    const top = this.el.scrollTop;
    const down = top > this.lastTop;
    this.lastTop = top;
    this.render();
    if (down && this.nearEnd(Math.ceil((top + this.el.clientHeight) / ROW_HEIGHT))) this.opts.onNearEnd?.();
  }

  private nearEnd(lastInView: number): boolean {
    return lastInView >= this.ids.length - NEAR_END_ROWS;
  }

  private render(): void {
    const top = this.el.scrollTop;
    const height = this.el.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.ids.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const needed = last - first;
    while (this.pool.length < needed) {
      const row = h('div', { class: 'row', role: 'option' });
      this.pool.push(row);
      this.spacer.append(row);
    }
    for (let i = 0; i < this.pool.length; i++) {
      const el = this.pool[i]!;
      const index = first + i;
      const id = index < last ? this.ids[index] : undefined;
      if (id === undefined) {
        el.hidden = true;
        continue;
      }
      el.hidden = false;
      this.fill(el, index, id);
    }
    const activeId = this.ids[this.active];
    if (activeId !== undefined && this.active >= first && this.active < last) this.el.setAttribute('aria-activedescendant', `opt-${activeId}`);
    else this.el.removeAttribute('aria-activedescendant');
  }

  private fill(el: HTMLDivElement, index: number, id: string): void {
    const row = this.rowOf(id);
    const next = row ? nextLabel(row, this.opts.now()) : '';
    const key = row ? `${id}|${row.state}|${row.cycle}|${row.owner}|${row.pool}|${next}|${this.selected === id}|${this.active === index}` : id;
    if (el.dataset.key === key && el.dataset.index === String(index)) return;
    el.dataset.key = key;
    el.dataset.index = String(index);
    el.dataset.id = id;
    el.id = `opt-${id}`;
    el.style.transform = `translateY(${index * ROW_HEIGHT}px)`;
    el.setAttribute('aria-selected', String(this.selected === id));
    el.setAttribute('aria-posinset', String(index + 1));
    el.setAttribute('aria-setsize', String(this.ids.length));
    el.classList.toggle('active', this.active === index);
    el.replaceChildren(
      h('span', { class: 'id' }, id),
      row ? badge(row.state) : h('span', { class: 'badge' }, '…'),
      h('span', { class: 'meta' }, `cycle ${row?.cycle ?? '?'}`),
      h('span', { class: 'meta' }, row?.owner ?? '—'),
      h('span', { class: 'meta' }, row?.pool ?? '—'),
      h('span', { class: 'next', 'data-col': 'next' }, next),
    );
  }

  private onKey(e: KeyboardEvent): void {
    const page = Math.max(1, Math.floor(this.el.clientHeight / ROW_HEIGHT) - 1);
    const moves: Record<string, number> = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page, Home: -Infinity, End: Infinity };
    if (e.key in moves) {
      e.preventDefault();
      const next = this.active + moves[e.key]!;
      this.active = Math.max(0, Math.min(this.ids.length - 1, Number.isFinite(next) ? next : next > 0 ? this.ids.length - 1 : 0));
      this.scrollToActive();
      this.render();
      // A move down that stays within the view scrolls nothing, so it asks here.
      if (moves[e.key]! > 0 && this.nearEnd(this.active + 1)) this.opts.onNearEnd?.();
    } else if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      this.open();
    }
  }

  private scrollToActive(): void {
    const y = this.active * ROW_HEIGHT;
    if (y < this.el.scrollTop) this.el.scrollTop = y;
    else if (y + ROW_HEIGHT > this.el.scrollTop + this.el.clientHeight) this.el.scrollTop = y + ROW_HEIGHT - this.el.clientHeight;
  }

  private open(): void {
    const id = this.ids[this.active];
    if (id !== undefined) this.opts.onOpen(id);
  }
}

/**
 * Under the list while more workspaces exist than are loaded: how many are loaded, that more exist, and a
 * button that loads the next page (for a filtered list too short to scroll). Hidden once the list is complete.
 *
 * @example
 * const more = new MoreBar(listPane, () => void controller.more());
 * more.render(model);
 */
export class MoreBar {
  readonly el: HTMLDivElement;
  private readonly text = h('span', { class: 'more-text' });
  private readonly button: HTMLButtonElement;

  constructor(parent: HTMLElement, onMore: () => void) {
    this.button = h('button', { type: 'button' }, 'Load more');
    this.button.addEventListener('click', onMore);
    this.el = h('div', { class: 'more', role: 'status', 'data-testid': 'more', hidden: true }, this.text, this.button);
    parent.append(this.el);
  }

  render(model: VisualizerModel): void {
    const list = model.list;
    this.el.hidden = list.complete;
    if (list.complete) return;
    const text = `${list.size} loaded · ${model.listLoading ? 'loading more…' : 'more: scroll to the end or'}`;
    if (this.text.textContent !== text) this.text.textContent = text;
    // Kept in place (and focus on it) while a page loads; a click then is ignored by the controller.
    this.button.setAttribute('aria-disabled', String(model.listLoading));
  }
}
