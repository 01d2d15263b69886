/**
 * Lay out a chart graph with elkjs (the Eclipse Layout Kernel's layered algorithm): node boxes, edge
 * routes with bend points, and label positions. The engine is a parameter: the page runs elk in a Web
 * Worker (`elk-browser.ts`), Node runs it in-process (`nodeElk`, used by the unit tests).
 *
 * @example
 * const laid = await layoutChart(chartGraph(definition), await nodeElk());
 * laid.nodes[0]; // { id: 'idle', x: 12, y: 12, width: 120, height: 48, ... }
 */
import type { ELK, ElkExtendedEdge, ElkNode, ElkPoint } from 'elkjs/lib/elk-api.js';
import type { ChartEdge, ChartGraph, ChartNode } from './graph.ts';

export interface LaidNode extends ChartNode {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface LaidEdge extends ChartEdge {
  /** Polyline from source to target. */
  points: ElkPoint[];
  /** One line per event. */
  label: { lines: string[]; x: number; y: number; width: number; height: number } | null;
}

export interface LaidChart {
  width: number;
  height: number;
  nodes: LaidNode[];
  edges: LaidEdge[];
}

const CHAR_W = 7;
const LINE_H = 16;
const NODE_PAD = 16;

/** Box size of a node: its name and one line per note, measured by character count (no DOM needed). */
export function nodeSize(n: ChartNode): { width: number; height: number } {
  const lines = [n.id, ...n.notes];
  const width = Math.max(110, ...lines.map((l) => l.length * CHAR_W)) + NODE_PAD;
  return { width, height: 28 + n.notes.length * LINE_H };
}

export const LABEL_LINE_H = 13;

/** An elk instance: `browserElk()` in the page (layout in a Web Worker), `nodeElk()` in tests. */
export type ElkEngine = Pick<ELK, 'layout'>;

/** elkjs in-process, for Node (the unit tests). */
export async function nodeElk(): Promise<ElkEngine> {
  const m = (await import('elkjs/lib/elk.bundled.js')) as unknown as { default: unknown };
  // elkjs is CommonJS: the constructor is `default` or, through some loaders, `default.default`.
  const Ctor = (typeof m.default === 'function' ? m.default : (m.default as { default: unknown }).default) as new () => ELK;
  return new Ctor();
}

/** Lay out `graph` top to bottom with `elk`; rejects with elk's error if the graph is malformed. */
export async function layoutChart(graph: ChartGraph, elk: ElkEngine): Promise<LaidChart> {
  const children: ElkNode[] = graph.nodes.map((n) => ({ id: n.id, ...nodeSize(n) }));
  const edges: ElkExtendedEdge[] = graph.edges.map((e) => {
    const width = Math.max(...e.events.map((t) => t.length)) * 6.2 + 8;
    const label = { id: `${e.id}:label`, text: e.events.join('\n'), width, height: e.events.length * LABEL_LINE_H + 2 };
    return { id: e.id, sources: [e.from], targets: [e.to], labels: [label] };
  });
  const root: ElkNode = {
    id: graph.id,
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'DOWN',
      // Keep the definition's order (idle first) when breaking the statechart's cycles into layers.
      'elk.layered.cycleBreaking.strategy': 'MODEL_ORDER',
      'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
      'elk.edgeRouting': 'POLYLINE',
      'elk.layered.spacing.nodeNodeBetweenLayers': '50',
      'elk.spacing.nodeNode': '40',
      'elk.spacing.edgeLabel': '4',
      'elk.edgeLabels.inline': 'false',
      'elk.padding': '[top=12,left=12,bottom=12,right=12]',
    },
    children,
    edges,
  };
  const laid: ElkNode = await elk.layout(root);
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const nodes: LaidNode[] = (laid.children ?? []).map((c) => ({
    ...byId.get(c.id)!,
    x: c.x ?? 0,
    y: c.y ?? 0,
    width: c.width ?? 0,
    height: c.height ?? 0,
  }));
  const edgeById = new Map(graph.edges.map((e) => [e.id, e]));
  const laidEdges: LaidEdge[] = (laid.edges ?? []).map((le) => {
    const section = le.sections?.[0];
    const points = section ? [section.startPoint, ...(section.bendPoints ?? []), section.endPoint] : [];
    const l = le.labels?.[0];
    return {
      ...edgeById.get(le.id)!,
      points,
      label: l ? { lines: (l.text ?? '').split('\n'), x: l.x ?? 0, y: l.y ?? 0, width: l.width ?? 0, height: l.height ?? 0 } : null,
    };
  });
  return { width: laid.width ?? 0, height: laid.height ?? 0, nodes, edges: laidEdges };
}
