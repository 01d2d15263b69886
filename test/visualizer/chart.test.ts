import { describe, expect, it } from 'vitest';
import { workspaceMachine } from '../../machines/workspace.machine.ts';
import { chartGraph, eventLabel } from '../../visualizer/src/chart/graph.ts';
import { layoutChart, nodeElk } from '../../visualizer/src/chart/layout.ts';

/** What `machine.definition` sends: the machine's JSON, from the code in machines/. */
const definition = (): unknown => JSON.parse(JSON.stringify(workspaceMachine.toJSON()));

describe('statechart graph from machine.definition', () => {
  it('has one node per state of the workspace machine, idle initial and destroyed terminal', () => {
    const g = chartGraph(definition());
    expect(g.nodes.map((n) => n.id)).toEqual(['idle', 'starting', 'running', 'stopping', 'failed', 'destroyed']);
    expect(g.nodes.filter((n) => n.initial).map((n) => n.id)).toEqual(['idle']);
    expect(g.nodes.filter((n) => n.terminal).map((n) => n.id)).toEqual(['destroyed']);
    expect(g.nodes.find((n) => n.id === 'starting')?.notes).toEqual(['invokes provision']);
    expect(g.nodes.find((n) => n.id === 'failed')?.notes).toContain('after backoffDue');
  });

  it('merges transitions per source and target and names XState internal events for people', () => {
    const g = chartGraph(definition());
    const edge = (from: string, to: string) => g.edges.find((e) => e.from === from && e.to === to);
    expect(edge('idle', 'starting')?.events).toEqual(['RESTART', 'ENSURE', 'DEFERRED_DUE', 'POLICY_DUE']);
    expect(edge('starting', 'running')?.events).toEqual(['provision done']);
    expect(edge('starting', 'running')?.detail).toEqual(['provision done [wantsRunning]']);
    expect(edge('stopping', 'stopping')?.events).toEqual(['deprovision error']);
    expect(edge('running', 'idle')).toBeUndefined();
    // A restart while starting is handled in place (queued or joined), not a transition.
    expect(g.nodes.find((n) => n.id === 'starting')?.handles).toContain('RESTART');
  });

  it('labels done, error and delayed events', () => {
    const invokes = new Map([['0.workspace.starting', 'provision']]);
    expect(eventLabel('xstate.done.actor.0.workspace.starting', invokes)).toBe('provision done');
    expect(eventLabel('xstate.error.actor.0.workspace.starting', invokes)).toBe('provision error');
    expect(eventLabel('xstate.after.backoffDue.workspace.failed', invokes)).toBe('after backoffDue');
  });

  it('refuses something that is not a machine definition, saying what is wrong', () => {
    expect(() => chartGraph({ nope: true })).toThrow(/not an XState machine JSON/);
  });
});

describe('statechart layout with elkjs', () => {
  it('places every state without overlap and routes every edge', async () => {
    const g = chartGraph(definition());
    const laid = await layoutChart(g, await nodeElk());
    expect(laid.nodes).toHaveLength(g.nodes.length);
    expect(laid.edges).toHaveLength(g.edges.length);
    for (const e of laid.edges) expect(e.points.length).toBeGreaterThanOrEqual(2);
    for (const a of laid.nodes) {
      expect(a.x + a.width).toBeLessThanOrEqual(laid.width);
      expect(a.y + a.height).toBeLessThanOrEqual(laid.height);
      for (const b of laid.nodes) {
        if (a === b) continue;
        const apart = a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y;
        expect(apart, `${a.id} overlaps ${b.id}`).toBe(true);
      }
    }
    // The initial state comes first in reading order (top).
    const idle = laid.nodes.find((n) => n.id === 'idle')!;
    expect(Math.min(...laid.nodes.map((n) => n.y))).toBe(idle.y);
  });
});
