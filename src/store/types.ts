/**
 * Row shapes the store reads and writes, and the validation applied when rows come back from disk.
 * Times are milliseconds since the epoch, like every `at` in the supervisor.
 */
import { z } from 'zod';
import { LIFECYCLE_STATES, type Desired, type LifecycleState } from '../../machines/workspace.types.ts';

/** The owner of prebuilds nobody has claimed yet. */
export const SYSTEM_OWNER = 'system';
export const DESIRED_STATES: readonly Desired[] = ['running', 'stopped', 'destroyed'];

/** An upsert of one workspace. Optional fields keep their stored value (or the default on insert). */
export interface WorkspaceWrite {
  id: string;
  state: LifecycleState;
  desired: Desired;
  /** The actor's `getPersistedSnapshot()`; `null` for a workspace whose actor never ran. */
  snapshot: unknown;
  spec?: Record<string, unknown>;
  /** Default on insert: {@link SYSTEM_OWNER}. Claims change it through `claims.claim`, not here. */
  owner?: string;
  prebuild?: boolean;
  pool?: string | null;
  /**
   * The workspace's next due time (ms; null: none), indexed so that one scheduler finds what is due without
   * an actor in memory. Absent keeps the stored value.
   */
  nextDueAt?: number | null;
}

/** A persisted XState snapshot, as far as the store checks it. */
export interface PersistedSnapshot {
  status: 'active' | 'done' | 'error' | 'stopped';
  value: unknown;
  context: { id: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface WorkspaceRecord {
  id: string;
  spec: Record<string, unknown>;
  desired: Desired;
  state: LifecycleState;
  owner: string;
  prebuild: boolean;
  pool: string | null;
  snapshot: PersistedSnapshot | null;
  /** Bumped by every committed write of this row (a coalesced batch counts once). */
  version: number;
  createdAt: number;
  updatedAt: number;
  destroyedAt: number | null;
  /** See `WorkspaceWrite.nextDueAt`. */
  nextDueAt: number | null;
}

/**
 * A row that could not be read back. Returned next to the good ones (never dropped) so the supervisor can
 * report it by id and keep loading the rest.
 */
export interface CorruptWorkspace {
  id: string;
  reason: string;
  /** `WSUP_CORRUPT_STATE`, naming the workspace: ready to log or to return to a client. */
  error: Error & { code: 'WSUP_CORRUPT_STATE'; workspaceId: string | undefined };
}

/** One entry of the append-only event log: a transition, a request's answer, a cycle's start/end. */
export interface EventWrite {
  workspaceId: string;
  at: number;
  kind: string;
  cycle?: number | null;
  source?: string | null;
  reason?: string | null;
  requesters?: unknown;
  outcome?: string | null;
  stateFrom?: string | null;
  stateTo?: string | null;
  durations?: Record<string, number | null> | null;
  error?: string | null;
  data?: unknown;
}

export interface EventRecord extends Required<Omit<EventWrite, 'requesters' | 'data'>> {
  seq: number;
  requesters: unknown;
  data: unknown;
}

export interface CommitWrite {
  workspaces?: readonly WorkspaceWrite[];
  events?: readonly EventWrite[];
}

const snapshotSchema = z.looseObject({
  status: z.enum(['active', 'done', 'error', 'stopped']),
  value: z.union([z.string(), z.record(z.string(), z.unknown())]),
  context: z.looseObject({ id: z.string() }),
});

/** Why a stored row cannot be used, or null when it can. */
export function rowProblem(id: string, state: unknown, desired: unknown, snapshot: unknown): string | null {
  if (!LIFECYCLE_STATES.includes(state as LifecycleState)) return `unknown state ${JSON.stringify(state)}`;
  if (!DESIRED_STATES.includes(desired as Desired)) return `unknown desired state ${JSON.stringify(desired)}`;
  if (snapshot === null) return null;
  const parsed = snapshotSchema.safeParse(snapshot);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'snapshot';
    return `stored snapshot is unreadable (${where}: ${issue?.message ?? 'invalid'})`;
  }
  if (parsed.data.context.id !== id) return `stored snapshot belongs to workspace ${parsed.data.context.id}`;
  return null;
}
