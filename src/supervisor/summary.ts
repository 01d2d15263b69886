/**
 * The registry summary: how many workspaces are in each state. A small reactive read model (@xstate/store)
 * that the server's /metrics and the visualizer's header read without walking every actor.
 */
import { createStore } from '@xstate/store';
import { LIFECYCLE_STATES, type LifecycleState } from '../../machines/workspace.types.ts';

export type StateCounts = Record<LifecycleState, number>;

export function createSummary() {
  const counts = Object.fromEntries(LIFECYCLE_STATES.map((s) => [s, 0])) as StateCounts;
  return createStore({
    context: { counts, total: 0 },
    on: {
      moved: (ctx, ev: { from: LifecycleState | null; to: LifecycleState }) => {
        const next = { ...ctx.counts, [ev.to]: ctx.counts[ev.to] + 1 };
        if (ev.from !== null) next[ev.from] -= 1;
        return { counts: next, total: ev.from === null ? ctx.total + 1 : ctx.total };
      },
      /** Workspaces counted all at once (read from the store's state index at start). */
      added: (ctx, ev: { counts: Partial<StateCounts> }) => {
        const next = { ...ctx.counts };
        let total = ctx.total;
        for (const s of LIFECYCLE_STATES) {
          next[s] += ev.counts[s] ?? 0;
          total += ev.counts[s] ?? 0;
        }
        return { counts: next, total };
      },
    },
  });
}

export type Summary = ReturnType<typeof createSummary>;
