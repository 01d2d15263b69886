/**
 * A tiny element builder: enough to write the page as plain DOM without a framework.
 *
 * @example
 * const badge = h('span', { class: 'badge', 'data-state': 'running' }, stateText('running'));
 */
import type { LifecycleState } from '../../../src/client/index.ts';

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;

/** Create an element; `on*` function attributes become listeners, `false`/`null` attributes are left out. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** A symbol per state, always next to the state's name: the name carries the meaning, not the colour. */
export const STATE_SYMBOL: Record<LifecycleState, string> = {
  idle: '○',
  starting: '▲',
  running: '●',
  stopping: '▼',
  failed: '✕',
  destroyed: '⊘',
};

/** A state badge: symbol (hidden from screen readers) + the state's name as text. */
export function badge(state: LifecycleState): HTMLSpanElement {
  return h('span', { class: `badge s-${state}`, 'data-state': state }, h('span', { 'aria-hidden': 'true' }, STATE_SYMBOL[state]), ` ${state}`);
}
