/**
 * The workspace view: state and flags (dormant, outdated), its lifecycle policy in words, the next policy
 * action as a live countdown, ticking deadlines, operator controls, the statechart, the cycle
 * timeline and recent events. Sections are rebuilt from the model on change; the controls are built once
 * per workspace so typing a reason is never interrupted by live updates.
 *
 * @example
 * const view = new DetailView(pane, { actions, chart: () => laidChart, clock });
 * model.onChange(() => view.render(model));
 */
import type { LaidChart } from '../chart/layout.ts';
import type { CycleRow } from '../model/detail.ts';
import { formatClock, formatDuration } from '../model/format.ts';
import type { Clock, VisualizerModel } from '../model/model.ts';
import { ChartView } from './chart-view.ts';
import { ControlsView, type Actions } from './controls-view.ts';
import { badge, h } from './dom.ts';

export interface DetailViewOptions {
  actions: Actions;
  /** The laid-out chart once elk has finished (null until then). */
  chart: () => LaidChart | null;
  clock: Clock;
}

export class DetailView {
  private readonly header = h('div', { class: 'detail-header' });
  private readonly facts = h('dl', { class: 'facts' });
  private readonly deadlines = h('p', { class: 'deadlines', 'aria-live': 'off', 'data-testid': 'countdowns' });
  private readonly nextAction = h('span', { class: 'deadlines', 'data-testid': 'next-action' });
  private readonly warning = h('span', { class: 'policy-warning', 'data-testid': 'policy-warning' });
  private readonly activity = h('span', { 'data-testid': 'last-activity' });
  private readonly controlsSlot = h('div');
  private readonly chartSlot = h('div', { class: 'chart-slot' });
  private readonly timeline = h('tbody');
  private readonly recent = h('ol', { class: 'recent', 'data-testid': 'recent-events' });
  private readonly empty = h('p', { class: 'empty' }, 'Select a workspace in the list (click it, or focus the list and use ↑ ↓ and Enter) to see its statechart and why it restarted.');
  private readonly body = h('div', { hidden: true });
  private controls: ControlsView | null = null;
  private chart: ChartView | null = null;
  private shownId: string | null = null;

  constructor(
    pane: HTMLElement,
    private readonly opts: DetailViewOptions,
  ) {
    pane.hidden = false;
    pane.append(this.empty, this.body);
    this.body.append(
      this.header,
      this.facts,
      this.deadlines,
      this.controlsSlot,
      h('h3', {}, 'Statechart'),
      this.chartSlot,
      h('h3', { id: 'timeline-title' }, 'Cycle timeline (why each cycle ran)'),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'timeline', 'aria-labelledby': 'timeline-title', 'data-testid': 'timeline' },
          h('thead', {}, h('tr', {}, ...['Cycle', 'Source', 'Reason', 'Requesters (outcome)', 'Result', 'Started', 'Stop', 'Start', 'Total', 'Error'].map((c) => h('th', { scope: 'col' }, c)))),
          this.timeline,
        ),
      ),
      h('h3', {}, 'Recent events'),
      this.recent,
    );
  }

  render(model: VisualizerModel, parts: { detail: boolean; status: boolean }): void {
    const d = model.detail;
    this.empty.hidden = d !== null;
    this.body.hidden = d === null;
    if (d === null) return;
    if (this.shownId !== d.id) {
      this.shownId = d.id;
      this.header.replaceChildren(h('h2', { id: 'detail-title', tabindex: -1 }, d.id));
      this.controls?.el.remove();
      this.controls = null;
    }
    this.syncControls(model, d.id);
    if (parts.status) this.controls?.render(model.actions.filter((a) => a.workspaceId === d.id));
    this.syncChart();
    const state = d.state;
    this.chart?.show(state, d.lastTransition);
    if (!parts.detail && this.facts.childElementCount > 0) return;
    const v = d.view;
    const fact = (term: string, ...value: Array<Node | string>) => [h('dt', {}, term), h('dd', {}, ...value)];
    const flags = [
      v?.dormant ? h('span', { class: 'flag flag-dormant', 'data-testid': 'dormant' }, h('span', { 'aria-hidden': 'true' }, '☾'), ' dormant') : null,
      v?.outdated ? h('span', { class: 'flag flag-outdated', 'data-testid': 'outdated', title: 'built from an older version of its template' }, h('span', { 'aria-hidden': 'true' }, '↻'), ' outdated') : null,
    ];
    const rules = d.policyStatus(this.opts.clock.now()).rules;
    this.facts.replaceChildren(
      ...fact('State', h('strong', { 'data-testid': 'current-state' }, state ? badge(state) : 'unknown'), ...flags.flatMap((f) => (f ? [' ', f] : []))),
      ...fact('Desired', v?.desired ?? '—'),
      ...fact('Cycle', String(v?.cycle ?? '—')),
      ...fact('Pending', h('span', { 'data-testid': 'pending' }, d.pending > 0 ? `yes: ${d.pending} request(s) wait for one more cycle` : 'no')),
      ...fact('Endpoint', v?.endpoint ?? '—'),
      ...fact('Last error', v?.lastError ? `cycle ${v.lastError.cycle}: ${v.lastError.message} (${v.lastError.code}) at ${formatClock(v.lastError.at)}` : 'none'),
      ...fact('Policy', h('ul', { class: 'policy-rules', 'data-testid': 'policy' }, ...rules.map((r) => h('li', {}, r)))),
      ...fact('Next', this.nextAction, this.warning),
      ...fact('Activity', this.activity),
    );
    this.tick(model);
    this.timeline.replaceChildren(...d.timeline().map((c) => timelineRow(c)));
    if (d.timeline().length === 0) this.timeline.append(h('tr', {}, h('td', { colspan: 10 }, 'No cycle yet.')));
    this.recent.replaceChildren(
      ...d.recent().map((e) =>
        h(
          'li',
          { 'data-type': e.type, 'data-tone': e.tone, class: e.tone ? `ev-${e.tone}` : null },
          h('time', {}, formatClock(e.at)),
          ' ',
          e.icon ? h('span', { class: 'ev-icon', 'aria-hidden': 'true' }, e.icon) : null,
          e.icon ? ' ' : null,
          e.text,
        ),
      ),
    );
  }

  /** Update only the countdowns (called a few times a second). */
  tick(model: VisualizerModel): void {
    const d = model.detail;
    if (!d) return;
    const now = this.opts.clock.now();
    const c = d.countdowns(now);
    setText(this.deadlines, c.length === 0 ? 'No deadline is ticking.' : c.map((x) => `${x.label} ${x.text}`).join(' · '));
    const p = d.policyStatus(now);
    setText(this.nextAction, p.next);
    setText(this.warning, p.warning ? `⚠ ${p.warning}` : '');
    setText(this.activity, p.lastActivity);
  }

  private syncControls(model: VisualizerModel, id: string): void {
    if (model.canCommand && !this.controls) {
      this.controls = new ControlsView(this.controlsSlot, id, this.opts.actions);
      this.controls.render(model.actions.filter((a) => a.workspaceId === id));
    } else if (!model.canCommand && this.controls) {
      this.controls.el.remove();
      this.controls = null;
    }
  }

  private syncChart(): void {
    if (this.chart) return;
    const laid = this.opts.chart();
    if (laid) this.chart = new ChartView(this.chartSlot, laid);
    else if (this.chartSlot.childElementCount === 0) this.chartSlot.append(h('p', { class: 'muted' }, 'Laying out the statechart…'));
    if (this.chart) this.chartSlot.querySelector('p.muted')?.remove();
  }
}

/** Only touch the DOM when the text changed (the countdowns tick faster than their text does). */
function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

function timelineRow(c: CycleRow): HTMLTableRowElement {
  const ms = (v: number | null | undefined) => (v === null || v === undefined ? '—' : formatDuration(v));
  const total = c.durations?.totalMs ?? (c.endedAt !== null ? c.endedAt - c.startedAt : null);
  return h(
    'tr',
    { 'data-cycle': c.n, 'data-status': c.status },
    h('th', { scope: 'row' }, `#${c.n}${c.retry ? ' (retry)' : ''}`),
    h('td', { 'data-col': 'source' }, c.source),
    h('td', { 'data-col': 'reason' }, c.reason || '—'),
    h('td', {}, h('ul', { class: 'requesters' }, ...c.requesters.map((r) => h('li', {}, `${r.requester} (${r.source}${r.reason && r.reason !== c.reason ? `: ${r.reason}` : ''}): ${r.outcome}`)))),
    h('td', { 'data-col': 'result' }, c.status === 'failed' ? '✕ failed' : c.status === 'completed' ? '✓ completed' : '… in progress'),
    h('td', {}, formatClock(c.startedAt)),
    h('td', {}, ms(c.durations?.stopMs)),
    h('td', {}, ms(c.durations?.startMs)),
    h('td', {}, ms(total)),
    h('td', {}, c.error ? `${c.error.message} (${c.error.code})` : '—'),
  );
}
