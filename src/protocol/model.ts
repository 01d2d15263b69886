/**
 * Wire shapes of workspaces and events. They mirror `src/supervisor/types.ts` structurally (the server
 * checks the match at compile time) without importing it: the client must not depend on the supervisor.
 */
import { z } from 'zod';

export const LIFECYCLE_STATES = ['idle', 'starting', 'running', 'stopping', 'failed', 'destroyed'] as const;
export const RESTART_SOURCES = ['manual', 'programmatic', 'file-write', 'liveness', 'claim'] as const;
export const OUTCOMES = ['started', 'joined', 'queued', 'deferred'] as const;
export const ROLES = ['admin', 'operator', 'viewer'] as const;

export type LifecycleState = (typeof LIFECYCLE_STATES)[number];
export type RestartSource = (typeof RESTART_SOURCES)[number];
export type Outcome = (typeof OUTCOMES)[number];
export type Role = (typeof ROLES)[number];

/** Same rule as `src/errors.ts` WORKSPACE_ID: ids become container and instance names. */
export const workspaceIdSchema = z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'workspace id: 1-63 chars of a-z, 0-9, _ . -, starting with a letter or digit');

export interface WorkspaceView {
  id: string;
  state: LifecycleState;
  desired: 'running' | 'stopped' | 'destroyed';
  endpoint: string | null;
  cycle: number;
  pending: number;
  deferredUntil: number | null;
  backoffUntil: number | null;
  lastError: { message: string; code: string; at: number; cycle: number } | null;
  spec: Record<string, unknown>;
  /** Prebuilds only (when the server has the store): the owner (the system owner until claimed) and pool. */
  owner?: string;
  pool?: string | null;
}

export interface CycleWhy {
  n: number;
  source: RestartSource;
  reason: string;
  retry: boolean;
  requesters: Array<{ requester: string; source: RestartSource; reason: string; outcome: Outcome; at: number }>;
  startedAt: number;
  provisionAt: number | null;
}

/** One supervisor event with its why: what the `event` notification carries. */
export type WorkspaceEvent =
  | { type: 'transition'; id: string; from: LifecycleState | null; to: LifecycleState; at: number; cycle: CycleWhy | null }
  | { type: 'request'; id: string; requester: string; outcome: Outcome; cycle: number | null; at: number }
  | { type: 'cycle.started'; id: string; cycle: CycleWhy; at: number }
  | { type: 'cycle.provisioning'; id: string; cycle: number; at: number }
  | {
      type: 'cycle.completed';
      id: string;
      cycle: CycleWhy;
      endpoint: string;
      at: number;
      durations: { stopMs: number | null; startMs: number | null; totalMs: number };
    }
  | { type: 'cycle.failed'; id: string; cycle: CycleWhy; error: { code: string; message: string }; at: number };

/** Loose runtime check the client applies to notifications (the server is trusted for the details). */
export const workspaceEventSchema = z.looseObject({ type: z.string(), id: z.string(), at: z.number() });
