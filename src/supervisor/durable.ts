/**
 * A supervisor that survives kill -9: every transition is committed to the store before the command that
 * caused it is answered (the store batches concurrent commits into one transaction), and on start the
 * stored workspaces are restored from their snapshots and reconciled with what the provider actually runs.
 *
 * By default the store is also where idle workspaces live (the supervisor's cold store): a start restores
 * only those with a provider call in flight or due within the wake-ahead window, and every other one is
 * activated by whatever reaches it first. `deactivateAfterMs: 0` keeps every actor in memory and restores
 * them all, as before.
 */
import type { Snapshot } from 'xstate';
import { errorMessage, WsupError } from '../errors.ts';
import { shardOf } from '../protocol/shards.ts';
import type { Provider, ProviderResource } from '../providers/types.ts';
import type { EventWrite, WorkspaceRecord } from '../store/types.ts';
import type { LoadResult, ShardFilter, WorkspaceStore } from '../store/store.ts';
import { systemClock } from './clock.ts';
import { DEFAULT_DEACTIVATE_AFTER_MS, DEFAULT_WAKE_AHEAD_MS, Supervisor, type ColdStore, type PersistWrite, type SupervisorOptions } from './supervisor.ts';
import type { SupervisorEvent } from './types.ts';

/** What to do with a provider resource that no stored workspace owns. */
export type OrphanPolicy = 'report' | 'remove' | 'ignore';

export interface RecoveryReport {
  /** Workspaces brought back from their snapshots into memory. */
  restored: string[];
  /** Live workspaces left in the store, activated when something reaches them (0 when every actor is kept). */
  cold: number;
  /** Rows that could not be restored; each is quarantined by id, never dropped. */
  corrupt: Array<{ id: string; reason: string }>;
  /** Running workspaces whose resource is still there. */
  adopted: string[];
  /** Running workspaces whose resource vanished while we were down: restarted with source `liveness`. */
  vanished: string[];
  /** Resources nobody owns, and what was done with each. */
  orphans: Array<{ id: string; action: 'reported' | 'removed' | 'remove-failed'; detail?: string }>;
}

export interface DurableOptions extends Omit<SupervisorOptions, 'persist' | 'cold'> {
  store: WorkspaceStore;
  orphans?: OrphanPolicy;
  /** Called with the supervisor before any workspace is restored: subscribe here to miss no event of recovery. */
  beforeRecovery?: (supervisor: Supervisor) => void;
  /** Restore only the workspaces of these shards (a cluster replica's), read by shard from the store; default all. */
  shards?: ShardFilter;
}

/** Build a supervisor whose acknowledgements are durable, restore it from the store, and reconcile. */
export async function openDurableSupervisor(opts: DurableOptions): Promise<{ supervisor: Supervisor; recovery: RecoveryReport }> {
  const { store, orphans = 'report', beforeRecovery, shards, ...rest } = opts;
  const cold = (rest.deactivateAfterMs ?? DEFAULT_DEACTIVATE_AFTER_MS) > 0 ? coldStore(store, shards) : undefined;
  const supervisor = new Supervisor({ ...rest, persist: (w) => store.commit(toCommit(w)), ...(cold ? { cold } : {}) });
  beforeRecovery?.(supervisor);
  let recovery: RecoveryReport;
  if (cold) {
    // A server default other than the one the stored workspaces were brought up to: every one of them is
    // restored once (and writes its due times under the new default) before the store is marked with it.
    const scope = policyScope(shards);
    const policy = canonical(supervisor.defaultPolicy);
    const mark = await store.policyMark(scope);
    const same = mark !== null && canonical(mark) === policy;
    const upTo = same ? (rest.clock ?? systemClock).now() + (rest.wakeAheadMs ?? DEFAULT_WAKE_AHEAD_MS) : null;
    recovery = await recoverActive(supervisor, store, opts.provider, orphans, shards, upTo);
    // Marked only once every row it restored is written under the new default (a refused write, e.g. by a
    // cluster's fence after the shard moved on, leaves the mark as it was: the next owner restores them all).
    if (!same && (await supervisor.committed())) await store.setPolicyMark(scope, supervisor.defaultPolicy);
  } else {
    // Every actor kept: rows are rewritten without regard to any mark, so none of this scope's holds now.
    await store.dropPolicyMark(policyScope(shards));
    recovery = await recover(supervisor, store, opts.provider, orphans, shards);
  }
  return { supervisor, recovery };
}

/** The supervisor a policy mark is kept for: the node, or a replica's shards. */
function policyScope(shards: ShardFilter | undefined): string {
  return shards ? `shards:${shards.count}:${[...shards.of].sort((a, b) => a - b).join(',')}` : 'node';
}

/** JSON with keys in order, to compare a policy with one read back from jsonb (which orders keys its own way). */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1))) : x,
  );
}

function parseSnapshot(text: string | null): Snapshot<unknown> | null {
  if (text === null) return null;
  try {
    return JSON.parse(text) as Snapshot<unknown>;
  } catch {
    return null; // unreadable: listed with what its columns say; using it quarantines it
  }
}

/** The store as the supervisor reads workspaces that are not in memory (only `shards`' for a cluster replica). */
export function coldStore(store: WorkspaceStore, shards?: ShardFilter): ColdStore {
  const only = shards ? { shards } : {};
  return {
    async load(id) {
      const r = await store.getWorkspace(id);
      if (r === null) return null;
      return { id, state: r.state, destroyed: r.destroyedAt !== null || r.state === 'destroyed', snapshot: r.snapshot as Snapshot<unknown> | null, spec: r.spec, nextDueAt: r.nextDueAt };
    },
    page: async (filter) =>
      (await store.liveRows({ ...filter, ...only })).map((r) => ({
        id: r.id,
        state: r.state,
        destroyed: false,
        snapshot: parseSnapshot(r.snapshot),
        spec: r.spec,
        nextDueAt: null,
      })),
    due: (window, limit) => store.dueIds(window, { limit, ...only }),
  };
}

function toCommit(w: PersistWrite) {
  return {
    workspaces: [{ id: w.id, state: w.state, desired: w.desired, snapshot: w.snapshot, spec: w.spec, nextDueAt: w.nextDueAt }],
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
  shards: ShardFilter | undefined,
): Promise<RecoveryReport> {
  const select = shards ? (id: string) => shards.of.includes(shardOf(id, shards.count)) : undefined;
  const report: RecoveryReport = { restored: [], cold: 0, corrupt: [], adopted: [], vanished: [], orphans: [] };
  const loaded = await store.loadWorkspaces({ includeDestroyed: true, ...(shards ? { shards } : {}) });
  const corrupt = loaded.corrupt;
  const workspaces = loaded.workspaces.filter((w) => w.destroyedAt === null && w.state !== 'destroyed');
  for (const w of loaded.workspaces) if (!workspaces.includes(w)) sup.rememberDestroyed(w.id);
  await restoreRows(sup, { workspaces, corrupt }, report);

  const resources = new Map<string, ProviderResource>((await provider.list()).map((r) => [r.id, r]));
  for (const id of report.restored) {
    const view = sup.peek(id)!;
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
  await settleOrphans(provider, resources, known, policy, select, report);
  return report;
}

/**
 * Start on a store that keeps idle workspaces: counts by state and the running slots come from the
 * store's indexes, and only workspaces with a provider call in flight or due by `upTo` are restored.
 * Every stored running workspace is still checked against the provider (one that vanished is activated
 * and restarted); a resource is an orphan when no live row names it.
 */
async function recoverActive(
  sup: Supervisor,
  store: WorkspaceStore,
  provider: Provider,
  policy: OrphanPolicy,
  shards: ShardFilter | undefined,
  upTo: number | null,
): Promise<RecoveryReport> {
  const select = shards ? (id: string) => shards.of.includes(shardOf(id, shards.count)) : undefined;
  const only = shards ? { shards } : {};
  const report: RecoveryReport = { restored: [], cold: 0, corrupt: [], adopted: [], vanished: [], orphans: [] };
  const counts = await store.stateCounts(only);
  sup.seedCounts(counts);
  const holding = await store.holdingRows(only);
  sup.trackStored(holding);
  // Only what has a call in flight or is due by `upTo`; every live workspace when `upTo` is null.
  const loaded = await store.loadWorkspaces({ ...(upTo !== null ? { active: { dueBefore: upTo } } : {}), ...only });
  await restoreRows(sup, loaded, report);
  if (upTo !== null) sup.markWoken(upTo);
  report.cold = Math.max(0, Object.values(counts).reduce((a, n) => a + n, 0) - report.restored.length - report.corrupt.length);

  const resources = new Map<string, ProviderResource>((await provider.list()).map((r) => [r.id, r]));
  const running = new Set(holding.filter((r) => r.state === 'running').map((r) => r.id));
  for (const id of report.restored) if (sup.peek(id)?.state === 'running') running.add(id);
  for (const id of report.restored) if (sup.peek(id)?.state !== 'running') resources.delete(id);
  for (const id of running) {
    const resource = resources.get(id);
    resources.delete(id);
    if (resource && (resource.status === 'running' || resource.status === 'starting')) report.adopted.push(id);
    else {
      sup.liveness(id, false, `resource vanished while the supervisor was down (${resource?.status ?? 'absent'})`);
      report.vanished.push(id);
    }
  }
  const named = [...resources.keys()];
  const known = new Set([...report.corrupt.map((c) => c.id), ...holding.map((r) => r.id)]);
  for (let i = 0; i < named.length; i += 2000) for (const id of await store.liveIds(named.slice(i, i + 2000))) known.add(id);
  await settleOrphans(provider, resources, known, policy, select, report);
  return report;
}

/** Restore each readable row (one already in memory is left as it is); quarantine the unreadable ones by id. */
async function restoreRows(sup: Supervisor, loaded: { workspaces: readonly WorkspaceRecord[]; corrupt: LoadResult['corrupt'] }, report: RecoveryReport): Promise<void> {
  for (const bad of loaded.corrupt) {
    sup.quarantineWorkspace(bad.id, bad.error instanceof WsupError ? bad.error : new WsupError('WSUP_CORRUPT_STATE', bad.error.message, { workspaceId: bad.id }));
    report.corrupt.push({ id: bad.id, reason: bad.reason });
  }
  for (const row of loaded.workspaces) {
    if (sup.peek(row.id)) continue; // already activated by something that reached it first
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
}

/** Resources no live workspace owns: reported, removed or ignored as `policy` says. */
async function settleOrphans(
  provider: Provider,
  resources: Map<string, ProviderResource>,
  known: ReadonlySet<string>,
  policy: OrphanPolicy,
  select: ((id: string) => boolean) | undefined,
  report: RecoveryReport,
): Promise<void> {
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
}

