/**
 * The control server's view of a cluster replica: every command goes to the workspace's owner (here, or
 * forwarded durably), reads come from the store, events from the whole cluster. A client may connect to
 * any replica. With the runtime's store and ledger it also lists prebuilds with their owner and pool,
 * updates onto a template's current version at the owner, and counts quotas cluster-wide.
 *
 * @example
 * const replica = await Replica.start({ url, provider });
 * const server = createServer({ supervisor: clusterBackend(replica, { store, ledger }), tokens });
 */
import type { CommandOptions, ServerBackend } from '../server/backend.ts';
import { WorkspaceNotFoundError } from '../errors.ts';
import type { WorkspaceStore } from '../store/store.ts';
import type { QuotaLedger } from '../supervisor/quota.ts';
import type { ActivityResult, EnsureResult, RestartResult, SupervisorLifecycle, WorkspaceView } from '../supervisor/types.ts';
import type { Replica } from './replica.ts';

export interface ClusterBackendOptions {
  /** Where prebuild labels are read for lists (views of single workspaces come labelled from their owner). */
  store?: WorkspaceStore;
  /** This replica's quota ledger (its own shards and, through the fan-out, the others'). */
  ledger?: QuotaLedger;
}

export function clusterBackend(replica: Replica, opts: ClusterBackendOptions = {}): ServerBackend & { lifecycle: SupervisorLifecycle } {
  const { store, ledger } = opts;
  return {
    events: replica.events,
    resyncs: replica.resyncs,
    get lifecycle(): SupervisorLifecycle {
      return replica.closed ? 'stopped' : 'ready';
    },
    create: async (id, spec) => (await replica.call('workspace.create', { id, spec: spec ?? {} })) as WorkspaceView,
    ensure: async (id, opts) => (await replica.call('workspace.ensure', { id, ...who(opts) })) as EnsureResult,
    restart: async (id, opts = {}) =>
      (await replica.call('workspace.restart', {
        id,
        ...(opts.source !== undefined ? { source: opts.source } : {}),
        ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
        ...(opts.wait !== undefined ? { wait: opts.wait } : {}),
        ...who(opts),
      })) as RestartResult,
    stop: async (id, opts) => (await replica.call('workspace.stop', { id, ...who(opts) })) as WorkspaceView,
    destroy: async (id, opts) => (await replica.call('workspace.destroy', { id, ...who(opts) })) as WorkspaceView,
    setPolicy: async (id, policy) => (await replica.call('workspace.setPolicy', { id, policy })) as WorkspaceView,
    activity: async (id, source) => (await replica.call('workspace.activity', { id, ...(source !== undefined ? { activitySource: source } : {}) })) as ActivityResult,
    get: async (id) => {
      if (!(await replica.has(id))) throw new WorkspaceNotFoundError(id);
      return (await replica.call('workspace.get', { id })) as WorkspaceView;
    },
    // A restart with source `update` at the owner, onto the spec the server stored just before.
    update: async (id, o = {}) =>
      (await replica.call('workspace.update', {
        id,
        ...(o.reason !== undefined ? { reason: o.reason } : {}),
        ...who(o),
      })) as RestartResult,
    ...(ledger ? { quotaUsage: () => ledger.usage() } : {}),
    list: async (filter) => {
      const views = await replica.list(filter);
      return store ? labelPrebuilds(store, views) : views;
    },
    has: (id) => replica.has(id),
    accepts: (id) => replica.accepts(id),
    members: () => replica.members(),
    routeOf: (id) => replica.routeOf(id),
  };
}

/** The command's label and request id, as the owner needs them (a re-send is recognised by both). */
function who(opts: CommandOptions | undefined): CommandOptions {
  return {
    ...(opts?.requester !== undefined ? { requester: opts.requester } : {}),
    ...(opts?.requestId !== undefined ? { requestId: opts.requestId } : {}),
  };
}

/** Prebuilds in a list with their owner and pool (one query per page), as one node labels them. */
async function labelPrebuilds(store: WorkspaceStore, views: WorkspaceView[]): Promise<WorkspaceView[]> {
  if (views.length === 0) return views;
  const { rows } = await store.engine.query<{ id: string; owner: string; pool: string | null }>(
    'SELECT id, owner, pool FROM workspaces WHERE prebuild AND id = ANY($1::text[])',
    [views.map((v) => v.id)],
  );
  if (rows.length === 0) return views;
  const labels = new Map(rows.map((r) => [r.id, r]));
  return views.map((v) => {
    const l = labels.get(v.id);
    return l ? { ...v, owner: l.owner, pool: l.pool } : v;
  });
}
