/**
 * The id-routed methods: one table from method name to what it asks of the backend that runs the
 * workspace. The control server's handlers use it over their backend (a local Supervisor, or a cluster
 * replica that routes to the owner), and a cluster owner uses it over the shard's own Supervisor when it
 * runs a routed command, so the two cannot drift apart.
 *
 * @example
 * const r = await dispatchRouted(supervisor, 'workspace.restart', { id: 'ws-1', reason: 'deploy' }, 'rpc:alice');
 */
import { WsupError } from '../errors.ts';
import type { PolicyPatch, RestartSource } from '../supervisor/types.ts';
import type { CommandOptions, ServerBackend } from './backend.ts';

/** What a routed method asks of a workspace's backend (a Supervisor satisfies it). */
export type RoutedBackend = Pick<ServerBackend, 'create' | 'ensure' | 'restart' | 'stop' | 'destroy' | 'get' | 'setPolicy' | 'activity'>;

/** The params of every routed method, in one shape (each method reads its own). */
export interface RoutedParams {
  id: string;
  /** `workspace.create`: the spec, already rendered from its template by whoever took the request. */
  spec?: Record<string, unknown>;
  source?: RestartSource;
  reason?: string;
  policy?: PolicyPatch;
  /** Where activity came from (`workspace.activity`; named apart from a restart's `source`). */
  activitySource?: string;
  wait?: boolean;
  requester?: string;
  /** The caller's id for this request: the same on every re-send, so the owner runs it once. */
  requestId?: string;
}

export type RoutedMethod =
  | 'workspace.create'
  | 'workspace.ensure'
  | 'workspace.restart'
  | 'workspace.stop'
  | 'workspace.destroy'
  | 'workspace.get'
  | 'workspace.setPolicy'
  | 'workspace.activity';

/** One routed method: the requester labels the request in the workspace's event log. */
export type Route = (backend: RoutedBackend, p: RoutedParams, requester: string) => Promise<unknown>;

export const ROUTED: Readonly<Record<RoutedMethod, Route>> = {
  'workspace.create': (b, p) => b.create(p.id, p.spec ?? {}),
  'workspace.ensure': async (b, p, requester) => {
    const r = await b.ensure(p.id, command(p, requester));
    return { id: r.id, started: r.started, endpoint: r.endpoint, state: r.state };
  },
  'workspace.restart': async (b, p, requester) => {
    const r = await b.restart(p.id, {
      ...command(p, requester),
      ...(p.source !== undefined ? { source: p.source } : {}),
      ...(p.reason !== undefined ? { reason: p.reason } : {}),
      ...(p.wait !== undefined ? { wait: p.wait } : {}),
    });
    return { id: r.id, outcome: r.outcome, cycle: r.cycle, state: r.state };
  },
  'workspace.stop': (b, p, requester) => b.stop(p.id, command(p, requester)),
  'workspace.destroy': (b, p, requester) => b.destroy(p.id, command(p, requester)),
  'workspace.get': async (b, p) => b.get(p.id),
  'workspace.setPolicy': (b, p) => b.setPolicy(p.id, p.policy ?? {}),
  'workspace.activity': async (b, p) => {
    const r = await b.activity(p.id, p.activitySource);
    return { id: r.id, idleDeadline: r.idleDeadline };
  },
};

/** The requester, and the request id when the caller gave one. */
function command(p: RoutedParams, requester: string): CommandOptions {
  return p.requestId === undefined ? { requester } : { requester, requestId: p.requestId };
}

export function isRouted(method: string): method is RoutedMethod {
  return Object.hasOwn(ROUTED, method);
}

/** Run a routed method on `backend`; an unknown method is refused by name. */
export function dispatchRouted(backend: RoutedBackend, method: string, params: RoutedParams, requester: string): Promise<unknown> {
  if (!isRouted(method)) return Promise.reject(new WsupError('WSUP_INVALID_ARGUMENT', `${method} is not a method routed by workspace id`, { workspaceId: params.id }));
  return ROUTED[method](backend, params, requester);
}
