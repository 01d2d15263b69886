/**
 * A supervisor that survives kill -9: every transition is committed to the store before the command that
 * caused it is answered (the store batches concurrent commits into one transaction), and on start every
 * stored workspace is restored from its snapshot and reconciled with what the provider actually runs.
 */
import type { Snapshot } from 'xstate';
import { errorMessage, WsupError } from '../errors.ts';
import { shardOf } from '../protocol/shards.ts';
import type { Provider, ProviderResource } from '../providers/types.ts';
import type { EventWrite } from '../store/types.ts';
import type { WorkspaceStore } from '../store/store.ts';
import { Supervisor, type PersistWrite, type SupervisorOptions } from './supervisor.ts';
import type { SupervisorEvent } from './types.ts';

/** What to do with a provider resource that no stored workspace owns. */
export type OrphanPolicy = 'report' | 'remove' | 'ignore';

export interface RecoveryReport {
  /** Workspaces brought back from their snapshots. */
  restored: string[];
  /** Rows that could not be restored; each is quarantined by id, never dropped. */
  corrupt: Array<{ id: string; reason: string }>;
  /** Running workspaces whose resource is still there. */
  adopted: string[];
  /** Running workspaces whose resource vanished while we were down: restarted with source `liveness`. */
  vanished: string[];
  /** Resources nobody owns, and what was done with each. */
  orphans: Array<{ id: string; action: 'reported' | 'removed' | 'remove-failed'; detail?: string }>;
}

export interface DurableOptions extends Omit<SupervisorOptions, 'persist'> {
  store: WorkspaceStore;
  orphans?: OrphanPolicy;
  /** Called with the supervisor before any workspace is restored: subscribe here to miss no event of recovery. */
  beforeRecovery?: (supervisor: Supervisor) => void;
  /** Restore only the workspaces of these shards (a cluster replica's), read by shard from the store; default all. */
  shards?: { count: number; of: readonly number[] };
}

/** Build a supervisor whose acknowledgements are durable, restore it from the store, and reconcile. */
export async function openDurableSupervisor(opts: DurableOptions): Promise<{ supervisor: Supervisor; recovery: RecoveryReport }> {
  const { store, orphans = 'report', beforeRecovery, shards, ...rest } = opts;
  const supervisor = new Supervisor({ ...rest, persist: (w) => store.commit(toCommit(w)) });
  beforeRecovery?.(supervisor);
  const recovery = await recover(supervisor, store, opts.provider, orphans, shards);
  return { supervisor, recovery };
}

function toCommit(w: PersistWrite) {
  return {
    workspaces: [{ id: w.id, state: w.state, desired: w.desired, snapshot: w.snapshot, spec: w.spec }],
    events: w.events.map(toEventWrite),
  };
}

/** One log row per supervisor event: queryable columns for the why, and the whole event in `data`. */
export function toEventWrite(e: SupervisorEvent): EventWrite {
  const base = { workspaceId: e.id, at: e.at, kind: e.type, data: e };
  switch (e.type) {
    case 'transition':
      return { ...base, stateFrom: e.from, stateTo: e.to, cycle: e.cycle?.n ?? null, source: e.cycle?.source ?? null, reason: e.cycle?.reason ?? null };
    case 'request':
      return { ...base, cycle: e.cycle, outcome: e.outcome, requesters: [e.requester] };
    case 'cycle.provisioning':
      return { ...base, cycle: e.cycle };
    case 'cycle.started':
      return { ...base, cycle: e.cycle.n, source: e.cycle.source, reason: e.cycle.reason, requesters: e.cycle.requesters };
    case 'cycle.completed':
      return { ...base, cycle: e.cycle.n, source: e.cycle.source, reason: e.cycle.reason, requesters: e.cycle.requesters, durations: e.durations };
    case 'cycle.failed':
      return { ...base, cycle: e.cycle.n, source: e.cycle.source, reason: e.cycle.reason, requesters: e.cycle.requesters, error: e.error.message };
    case 'policy':
    case 'policy.warning':
      return { ...base, source: e.source, reason: e.reason };
  }
}

/** The newest `limit` events of a workspace, oldest first, as the supervisor published them. */
export async function eventHistory(store: WorkspaceStore, id: string, limit: number): Promise<SupervisorEvent[]> {
  return (await store.events(id, { limit })).map((r) => r.data as SupervisorEvent);
}

async function recover(
  sup: Supervisor,
  store: WorkspaceStore,
  provider: Provider,
  policy: OrphanPolicy,
  shards: { count: number; of: readonly number[] } | undefined,
): Promise<RecoveryReport> {
  const select = shards ? (id: string) => shards.of.includes(shardOf(id, shards.count)) : undefined;
  const report: RecoveryReport = { restored: [], corrupt: [], adopted: [], vanished: [], orphans: [] };
  const loaded = await store.loadWorkspaces({ includeDestroyed: true, ...(shards ? { shards } : {}) });
  const corrupt = loaded.corrupt;
  const workspaces = loaded.workspaces.filter((w) => w.destroyedAt === null && w.state !== 'destroyed');
  for (const w of loaded.workspaces) if (!workspaces.includes(w)) sup.rememberDestroyed(w.id);
  for (const bad of corrupt) {
    sup.quarantineWorkspace(bad.id, bad.error instanceof WsupError ? bad.error : new WsupError('WSUP_CORRUPT_STATE', bad.error.message, { workspaceId: bad.id }));
    report.corrupt.push({ id: bad.id, reason: bad.reason });
  }
  for (const row of workspaces) {
    try {
      if (row.snapshot) sup.restore(row.id, row.snapshot as unknown as Snapshot<unknown>);
      else await sup.create(row.id, row.spec);
      report.restored.push(row.id);
    } catch (err) {
      const error = err instanceof WsupError ? err : new WsupError('WSUP_CORRUPT_STATE', `workspace ${row.id}: ${errorMessage(err)}`, { workspaceId: row.id });
      sup.quarantineWorkspace(row.id, error);
      report.corrupt.push({ id: row.id, reason: error.message });
    }
  }

  const resources = new Map<string, ProviderResource>((await provider.list()).map((r) => [r.id, r]));
  for (const id of report.restored) {
    const view = sup.get(id);
    const resource = resources.get(id);
    resources.delete(id);
    if (view.state !== 'running') continue; // starting/stopping re-run their call; idle/failed own nothing live
    if (resource && (resource.status === 'running' || resource.status === 'starting')) report.adopted.push(id);
    else {
      sup.liveness(id, false, `resource vanished while the supervisor was down (${resource?.status ?? 'absent'})`);
      report.vanished.push(id);
    }
  }
  const known = new Set([...report.corrupt.map((c) => c.id), ...workspaces.map((w) => w.id)]);
  for (const [id, resource] of resources) {
    if (known.has(id) || resource.status === 'absent' || policy === 'ignore' || (select && !select(id))) continue;
    if (policy === 'report') {
      report.orphans.push({ id, action: 'reported' });
      continue;
    }
    try {
      await provider.stop(id, AbortSignal.timeout(120_000));
      report.orphans.push({ id, action: 'removed' });
    } catch (err) {
      report.orphans.push({ id, action: 'remove-failed', detail: errorMessage(err) });
    }
  }
  return report;
}
