/**
 * Wire shapes of workspaces and events. They mirror `src/supervisor/types.ts` structurally (the server
 * checks the match at compile time) without importing it: the client must not depend on the supervisor.
 */
import { z } from 'zod';

export const LIFECYCLE_STATES = ['idle', 'starting', 'running', 'stopping', 'failed', 'destroyed'] as const;
/** Copies of `machines/workspace.types.ts` (the one definition); test/protocol/sources.test.ts checks them equal. */
export const RESTART_SOURCES = ['manual', 'programmatic', 'file-write', 'liveness', 'claim'] as const;
export const POLICY_SOURCES = ['idle', 'max-lifetime', 'schedule', 'dormancy'] as const;
export const CYCLE_SOURCES = [...RESTART_SOURCES, 'schedule', 'update'] as const;
export const OUTCOMES = ['started', 'joined', 'queued', 'deferred'] as const;
export const ROLES = ['admin', 'operator', 'viewer'] as const;

export type LifecycleState = (typeof LIFECYCLE_STATES)[number];
export type RestartSource = (typeof RESTART_SOURCES)[number];
export type PolicySource = (typeof POLICY_SOURCES)[number];
export type CycleSource = (typeof CYCLE_SOURCES)[number];
export type Outcome = (typeof OUTCOMES)[number];
export type Role = (typeof ROLES)[number];

/** Same rule as `src/errors.ts` WORKSPACE_ID: ids become container and instance names. */
export const workspaceIdSchema = z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'workspace id: 1-63 chars of a-z, 0-9, _ . -, starting with a letter or digit');

export interface Schedule {
  cron: string;
  tz: string;
}

/** A workspace's lifecycle policy: null = off; durations in ms. */
export interface Policy {
  idleTimeoutMs: number | null;
  maxLifetimeMs: number | null;
  maxLifetimeWarnMs: number | null;
  autostart: Schedule | null;
  autostop: Schedule | null;
  dormantAfterMs: number | null;
  deleteDormantAfterMs: number | null;
  autoUpdate: 'on-start' | 'never' | null;
}

export interface NextAction {
  action: 'stop' | 'start' | 'dormant' | 'destroy';
  at: number;
  source: PolicySource;
  reason: string;
}

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
  policy: Policy;
  lastActivityAt: number | null;
  dormant: boolean;
  /** What a policy does next ("stops in 12m: idle"); null when nothing is scheduled. */
  next: NextAction | null;
  /** Built from an older version of its template than the server has now. */
  outdated?: boolean;
  /** Prebuilds only (when the server has the store): the owner (the system owner until claimed) and pool. */
  owner?: string;
  pool?: string | null;
}

/** Running workspaces per owner and per template/pool, each with its limit (null: no limit). */
export interface QuotaUsage {
  perOwner: Array<{ name: string; running: number; limit: number | null }>;
  perTemplate: Array<{ name: string; running: number; limit: number | null }>;
}

/** A prebuild pool and how full it is: what `pool.get` answers. */
export interface PoolView {
  pool: string;
  desired: number;
  /** Unclaimed prebuilds that are running: what a claim takes first. */
  ready: number;
  /** Unclaimed prebuilds on their way to running. */
  starting: number;
  /** Unclaimed prebuilds whose last start failed. */
  failing: number;
  lastError: { message: string; at: number } | null;
  /** While the pool's template keeps failing, no new prebuild is built before this. */
  backoffUntil: number | null;
  template: string | null;
  policy: Partial<Policy> | null;
}

export interface CycleWhy {
  n: number;
  source: CycleSource;
  reason: string;
  retry: boolean;
  requesters: Array<{ requester: string; source: CycleSource; reason: string; outcome: Outcome; at: number }>;
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
  | { type: 'cycle.failed'; id: string; cycle: CycleWhy; error: { code: string; message: string }; at: number }
  | { type: 'policy'; id: string; action: 'stop' | 'start' | 'dormant' | 'destroy' | 'skipped'; source: PolicySource; reason: string; at: number }
  | { type: 'policy.warning'; id: string; source: PolicySource; reason: string; stopAt: number; at: number };

/** Loose runtime check the client applies to notifications (the server is trusted for the details). */
export const workspaceEventSchema = z.looseObject({ type: z.string(), id: z.string(), at: z.number() });
