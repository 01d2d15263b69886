/**
 * Operator controls for one workspace: restart (with a reason), ensure, stop, and the outcome of every
 * action in a live region. Only created for roles that may command (see `VisualizerModel.canCommand`).
 *
 * @example
 * const controls = new ControlsView(slot, 'ws-1', { restart, ensure, stop });
 * controls.render(model.actions);
 */
import type { ActionRow } from '../model/model.ts';
import { formatClock } from '../model/format.ts';
import { h } from './dom.ts';

export interface Actions {
  restart(id: string, reason: string): void;
  ensure(id: string): void;
  stop(id: string): void;
}

export class ControlsView {
  readonly el: HTMLElement;
  private readonly outcomes: HTMLOListElement;

  constructor(parent: HTMLElement, id: string, actions: Actions) {
    const reason = h('input', { type: 'text', id: 'restart-reason', name: 'reason', maxlength: 1024, placeholder: 'why (shown in the timeline)', autocomplete: 'off' });
    const form = h(
      'form',
      { class: 'controls', 'aria-label': `Operator controls for ${id}` },
      h('label', { for: 'restart-reason' }, 'Reason'),
      reason,
      h('button', { type: 'submit', 'data-action': 'restart' }, 'Restart'),
      h('button', { type: 'button', 'data-action': 'ensure', onclick: () => actions.ensure(id) }, 'Ensure'),
      h('button', { type: 'button', 'data-action': 'stop', onclick: () => actions.stop(id) }, 'Stop'),
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      actions.restart(id, reason.value.trim() || 'restarted from the visualizer');
    });
    this.outcomes = h('ol', { class: 'outcomes', 'aria-live': 'polite', 'data-testid': 'outcomes' });
    this.el = h('section', { class: 'controls-box', 'aria-labelledby': 'controls-title' }, h('h3', { id: 'controls-title' }, 'Operator controls'), form, this.outcomes);
    parent.append(this.el);
  }

  /** Newest action first, each with its outcome once answered. */
  render(actions: readonly ActionRow[]): void {
    this.outcomes.replaceChildren(
      ...actions.map((a) =>
        h(
          'li',
          { 'data-status': a.status, 'data-kind': a.kind },
          h('time', {}, formatClock(a.at)),
          ` ${a.kind}: `,
          h('strong', { class: 'outcome' }, a.status === 'failed' ? `✕ ${a.outcome}` : a.outcome),
        ),
      ),
    );
  }
}
