/**
 * What the control server needs of whatever runs the workspaces: the local Supervisor satisfies it as is;
 * a cluster replica provides it by routing each command to the workspace's owner (src/cluster). Reads may
 * be asynchronous (a cluster answers them from the store).
 */
import type { Observable } from 'rxjs';
import type { LifecycleState } from '../../machines/workspace.types.ts';
import type { ClusterMembers, ClusterRoute } from '../protocol/methods.ts';
import type { QuotaUsage } from '../supervisor/quota.ts';
import type { Summary } from '../supervisor/summary.ts';
import type { ActivityResult, EnsureResult, PolicyPatch, RestartOptions, RestartResult, SupervisorEvent, SupervisorLifecycle, UpdateOptions, WorkspaceView } from '../supervisor/types.ts';

type MaybeAsync<T> = T | Promise<T>;

/**
 * A command's caller: `requester` labels it in the workspace's log; `requestId` is the caller's id for the
 * request (the label already names it), which a cluster carries to the owner so that a re-send is
 * recognised there, whichever replica it reached.
 */
export interface CommandOptions {
  requester?: string;
  requestId?: string;
}

export interface ServerBackend {
  /** Every workspace event this server should publish (a cluster's: all replicas'). */
  readonly events: Observable<SupervisorEvent>;
  /** Events may have been lost (a cluster's listener reconnected): subscribers start again from the state. */
  readonly resyncs?: Observable<void>;
  readonly lifecycle: SupervisorLifecycle;
  /** Per-state counts for the gauge, when the backend keeps them. */
  readonly summary?: Summary;
  /** Actors in memory and how many came and went, when the backend deactivates them. */
  residency?(): { active: number; activations: number; deactivations: number };
  create(id: string, spec?: Record<string, unknown>): Promise<WorkspaceView>;
  ensure(id: string, opts?: CommandOptions): Promise<EnsureResult>;
  restart(id: string, opts?: RestartOptions & CommandOptions): Promise<RestartResult>;
  stop(id: string, opts?: CommandOptions): Promise<WorkspaceView>;
  destroy(id: string, opts?: CommandOptions): Promise<WorkspaceView>;
  /** Replace the workspace's own policy layer; resolves once committed. */
  setPolicy(id: string, policy: PolicyPatch): Promise<WorkspaceView>;
  /** A restart with source `update` (onto a re-rendered spec), when the backend has one. */
  update?(id: string, opts?: UpdateOptions & CommandOptions): Promise<RestartResult>;
  /** Running counts against each quota, when the backend enforces quotas. */
  quotaUsage?(): MaybeAsync<QuotaUsage>;
  /** Activity on the workspace: pushes its idle deadline out. */
  activity(id: string, source?: string): MaybeAsync<ActivityResult>;
  get(id: string): MaybeAsync<WorkspaceView>;
  list(filter?: { state?: LifecycleState; limit?: number; cursor?: string }): MaybeAsync<WorkspaceView[]>;
  has(id: string): MaybeAsync<boolean>;
  /** Whether commands for `id` can be taken (exists, not destroyed). */
  accepts(id: string): MaybeAsync<boolean>;
  /** A cluster's routing table (members, their URLs, each shard's owner); absent on one node. */
  members?(): Promise<ClusterMembers>;
  /** Where `id`'s shard lives when a cluster replica forwards its commands elsewhere; null when here or not yet known. */
  routeOf?(id: string): ClusterRoute | null;
}
