/**
 * The statechart as SVG, drawn from the elk layout of `machine.definition`. The current state is marked
 * by a thick outline *and* a "current" caption (never colour alone); the edge of the latest transition is
 * animated. A text list of every transition follows the drawing for screen readers and keyboard users.
 *
 * @example
 * const chart = new ChartView(container, await layoutChart(chartGraph(definition)));
 * chart.show('running', { from: 'starting', to: 'running', at });
 */
import type { LifecycleState } from '../../../src/client/index.ts';
import { LABEL_LINE_H, type LaidChart } from '../chart/layout.ts';
import { h, STATE_SYMBOL, svg } from './dom.ts';

export class ChartView {
  readonly el: HTMLElement;
  private readonly nodes = new Map<string, SVGGElement>();
  private readonly edges = new Map<string, SVGGElement>();
  private lastAnimated = -1;

  constructor(parent: HTMLElement, chart: LaidChart) {
    const drawing = svg('svg', {
      viewBox: `0 0 ${Math.ceil(chart.width)} ${Math.ceil(chart.height)}`,
      role: 'img',
      'aria-labelledby': 'chart-title',
      class: 'chart',
    });
    drawing.append(
      svg('title', { id: 'chart-title' }, 'Workspace statechart'),
      svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z' }))),
    );
    for (const e of chart.edges) {
      const g = svg('g', { class: 'edge', 'data-edge': e.id });
      g.append(svg('title', {}, `${e.from} → ${e.to}: ${e.detail.join(', ')}`));
      g.append(svg('polyline', { points: e.points.map((p) => `${p.x},${p.y}`).join(' '), 'marker-end': 'url(#arrow)' }));
      if (e.label) {
        const t = svg('text', { x: e.label.x + 4, y: e.label.y + LABEL_LINE_H - 2, class: 'edge-label' });
        e.label.lines.forEach((line, i) => t.append(svg('tspan', { x: e.label!.x + 4, dy: i === 0 ? 0 : LABEL_LINE_H }, line)));
        g.append(t);
      }
      this.edges.set(e.id, g);
      drawing.append(g);
    }
    for (const n of chart.nodes) {
      const g = svg('g', { class: `node${n.terminal ? ' terminal' : ''}`, 'data-state': n.id, transform: `translate(${n.x},${n.y})` });
      g.append(
        svg('title', {}, `${n.id}${n.handles.length ? ` — handles in place: ${n.handles.join(', ')}` : ''}`),
        svg('rect', { width: n.width, height: n.height, rx: 8 }),
        svg('text', { x: 10, y: 19, class: 'node-name' }, `${STATE_SYMBOL[n.id as LifecycleState] ?? ''} ${n.id}${n.initial ? ' (initial)' : ''}`),
      );
      n.notes.forEach((note, i) => g.append(svg('text', { x: 10, y: 36 + i * 16, class: 'node-note' }, note)));
      g.append(svg('text', { x: n.width - 8, y: -5, class: 'current-caption', 'text-anchor': 'end' }, '◀ current'));
      this.nodes.set(n.id, g);
      drawing.append(g);
    }
    const alt = h(
      'details',
      { class: 'chart-text' },
      h('summary', {}, 'Transitions as text'),
      h('ul', {}, ...chart.edges.map((e) => h('li', {}, `${e.from} → ${e.to}: ${e.detail.join(', ')}`))),
    );
    this.el = h('figure', { class: 'chart-figure' }, drawing, alt);
    parent.append(this.el);
  }

  /** Mark `current` and animate the edge of `last` when it is a transition not animated before. */
  show(current: LifecycleState | null, last: { from: LifecycleState | null; to: LifecycleState; at: number } | null): void {
    for (const [id, g] of this.nodes) {
      const on = id === current;
      g.classList.toggle('current', on);
      if (on) g.setAttribute('aria-current', 'true');
      else g.removeAttribute('aria-current');
    }
    if (!last || last.from === null || last.at === this.lastAnimated) return;
    this.lastAnimated = last.at;
    const edge = this.edges.get(`${last.from}->${last.to}`);
    const node = this.nodes.get(last.to);
    // Only the latest transition stays marked; its animation restarts on every firing.
    for (const el of [...this.edges.values(), ...this.nodes.values()]) if (el !== edge && el !== node) el.classList.remove('fired');
    for (const el of [edge, node]) {
      if (!el) continue;
      // Restart the CSS animation: remove the class, force a style flush, add it back.
      el.classList.remove('fired');
      void el.getBoundingClientRect();
      el.classList.add('fired');
    }
  }
}
