/**
 * Turn `machine.definition` (XState's `machine.toJSON()`, served by the control server from the code in
 * `machines/`) into a graph of states and labelled edges. Pure; the layout and the SVG come later.
 * Transitions with the same source and target are merged into one edge whose label lists their events;
 * targetless transitions (handled in place, e.g. a restart that queues) are kept on the node as `handles`.
 *
 * @example
 * const { definition } = await client.call('machine.definition', {});
 * const graph = chartGraph(definition);
 * graph.edges.find((e) => e.from === 'idle' && e.to === 'starting')?.events; // ['RESTART', 'ENSURE', 'DEFERRED_DUE']
 */

export interface ChartNode {
  id: string;
  initial: boolean;
  /** No transition leaves it (e.g. `destroyed`). */
  terminal: boolean;
  /** Invoked actors (provider calls) and delayed transitions, e.g. `invokes provision`, `after backoffDue`. */
  notes: string[];
  /** Events handled without leaving the state. */
  handles: string[];
}

export interface ChartEdge {
  id: string;
  from: string;
  to: string;
  /** Distinct event labels, in definition order. */
  events: string[];
  /** Every transition, `EVENT [guard]`, for the text alternative and tooltips. */
  detail: string[];
}

export interface ChartGraph {
  id: string;
  nodes: ChartNode[];
  edges: ChartEdge[];
}

interface JsonTransition {
  eventType?: string | null;
  target?: string[] | null;
  guard?: unknown;
}

interface JsonState {
  key?: string;
  type?: string;
  initial?: { target?: string[] } | null;
  states?: Record<string, JsonState>;
  transitions?: JsonTransition[];
  invoke?: Array<{ src?: unknown; id?: string }>;
}

/** `#workspace.starting` → `starting`. */
const stateKey = (target: string): string => target.replace(/^#/, '').split('.').slice(1).join('.') || target;

/** XState's internal event names as a person reads them. */
export function eventLabel(eventType: string, invokes: ReadonlyMap<string, string>): string {
  const done = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  if (done) return `${invokes.get(done[2]!) ?? done[2]} ${done[1] === 'done' ? 'done' : 'error'}`;
  const after = /^xstate\.after\.([^.]+)\./.exec(eventType);
  if (after) return `after ${after[1]}`;
  return eventType;
}

const guardName = (g: unknown): string | null => {
  if (typeof g === 'string') return g;
  if (g && typeof g === 'object' && 'type' in g) return String(g.type);
  return g === undefined || g === null ? null : 'guarded';
};

/** Build the chart graph of a machine definition; throws a clear error when it is not one. */
export function chartGraph(definition: unknown): ChartGraph {
  const root = definition as JsonState & { id?: string };
  if (!root || typeof root !== 'object' || !root.states || typeof root.states !== 'object') {
    throw new Error('machine.definition is not an XState machine JSON (no `states`): is the server the same version as the page?');
  }
  const initial = root.initial?.target?.[0];
  const invokes = new Map<string, string>();
  for (const s of Object.values(root.states))
    for (const inv of s.invoke ?? []) if (inv.id) invokes.set(inv.id, typeof inv.src === 'string' ? inv.src : 'actor');

  const nodes: ChartNode[] = [];
  const edges = new Map<string, ChartEdge>();
  for (const [key, s] of Object.entries(root.states)) {
    const node: ChartNode = {
      id: key,
      initial: initial !== undefined && stateKey(initial) === key,
      terminal: s.type === 'final' || (s.transitions ?? []).every((t) => !t.target || t.target.length === 0),
      notes: (s.invoke ?? []).map((i) => `invokes ${typeof i.src === 'string' ? i.src : 'actor'}`),
      handles: [],
    };
    for (const t of s.transitions ?? []) {
      const label = eventLabel(t.eventType ?? '', invokes);
      if (label.startsWith('after ') && !node.notes.includes(label)) node.notes.push(label);
      const guard = guardName(t.guard);
      const text = guard ? `${label} [${guard}]` : label;
      const targets = t.target ?? [];
      if (targets.length === 0) {
        if (!node.handles.includes(label)) node.handles.push(label);
        continue;
      }
      for (const target of targets) {
        const to = stateKey(target);
        const id = `${key}->${to}`;
        let edge = edges.get(id);
        if (!edge) edges.set(id, (edge = { id, from: key, to, events: [], detail: [] }));
        if (!edge.events.includes(label)) edge.events.push(label);
        edge.detail.push(text);
      }
    }
    nodes.push(node);
  }
  return { id: root.id ?? 'machine', nodes, edges: [...edges.values()] };
}
