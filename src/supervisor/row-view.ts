/**
 * A workspace view from its stored row, for reads answered from the store (a cluster replica's, a list
 * of workspaces whose actors are not in memory): the snapshot's context carries what the actor knew.
 *
 * @example
 * const views = (await store.liveRows({ limit: 100 })).map(viewOfRow); // what a list shows of workspaces not in memory
 */
import { NO_POLICY, type PolicyTiming, type WorkspaceContext } from '../../machines/workspace.types.ts';
import type { LiveRow } from '../store/store.ts';
import type { WorkspaceView } from './types.ts';

export function viewOfRow(row: LiveRow): WorkspaceView {
  // A row written before the policy fields were nested into `timing` holds them at the top level.
  type StoredContext = Partial<WorkspaceContext> & Partial<PolicyTiming>;
  let ctx: StoredContext = {};
  try {
    ctx = (row.snapshot === null ? null : (JSON.parse(row.snapshot) as { context?: StoredContext } | null))?.context ?? {};
  } catch {
    // An unreadable snapshot (the owner reports it as corrupt): list the row with what the columns say.
  }
  return {
    id: row.id,
    state: row.state,
    desired: row.desired,
    endpoint: ctx.endpoint ?? null,
    cycle: ctx.cycleCount ?? 0,
    pending: ctx.pending?.length ?? 0,
    deferredUntil: ctx.deferred?.until ?? null,
    backoffUntil: ctx.backoffUntil ?? null,
    lastError: ctx.lastError ?? null,
    spec: row.spec,
    policy: ctx.policy ?? NO_POLICY,
    lastActivityAt: (ctx.timing ?? ctx).lastActivity?.at ?? null,
    dormant: ((ctx.timing ?? ctx).dormantSince ?? null) !== null,
    next: null,
  };
}
