/**
 * The control server's view of a cluster replica: every command goes to the workspace's owner (here, or
 * forwarded durably), reads come from the store, events from the whole cluster. A client may connect to
 * any replica.
 *
 * @example
 * const replica = await Replica.start({ url, provider });
 * const server = createServer({ supervisor: clusterBackend(replica), tokens });
 */
import type { ServerBackend } from '../server/backend.ts';
import { WorkspaceNotFoundError } from '../errors.ts';
import type { ActivityResult, EnsureResult, RestartResult, SupervisorLifecycle, WorkspaceView } from '../supervisor/types.ts';
import type { Replica } from './replica.ts';

export function clusterBackend(replica: Replica): ServerBackend & { lifecycle: SupervisorLifecycle } {
  return {
    events: replica.events,
    get lifecycle(): SupervisorLifecycle {
      return replica.closed ? 'stopped' : 'ready';
    },
    create: async (id, spec) => (await replica.call('workspace.create', { id, spec: spec ?? {} })) as WorkspaceView,
    ensure: async (id, opts) => (await replica.call('workspace.ensure', { id, ...(opts?.requester ? { requester: opts.requester } : {}) })) as EnsureResult,
    restart: async (id, opts = {}) =>
      (await replica.call('workspace.restart', {
        id,
        ...(opts.source !== undefined ? { source: opts.source } : {}),
        ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
        ...(opts.wait !== undefined ? { wait: opts.wait } : {}),
        ...(opts.requester !== undefined ? { requester: opts.requester } : {}),
      })) as RestartResult,
    stop: async (id, opts) => (await replica.call('workspace.stop', { id, ...(opts?.requester ? { requester: opts.requester } : {}) })) as WorkspaceView,
    destroy: async (id, opts) => (await replica.call('workspace.destroy', { id, ...(opts?.requester ? { requester: opts.requester } : {}) })) as WorkspaceView,
    setPolicy: async (id, policy) => (await replica.call('workspace.setPolicy', { id, policy })) as WorkspaceView,
    activity: async (id, source) => (await replica.call('workspace.activity', { id, ...(source !== undefined ? { activitySource: source } : {}) })) as ActivityResult,
    get: async (id) => {
      if (!(await replica.has(id))) throw new WorkspaceNotFoundError(id);
      return (await replica.call('workspace.get', { id })) as WorkspaceView;
    },
    list: (filter) => replica.list(filter),
    has: (id) => replica.has(id),
    accepts: (id) => replica.accepts(id),
  };
}
